"""The predictor's task losses and their weighting.

`task_losses` gives the unweighted loss of each task whose labels are given;
`weighted_loss` sums them with the config's weights, ``Σ w_i L_i``, or with learned
uncertainties, ``Σ w_i (exp(−s_i) L_i + s_i)`` (Kendall et al. 2018).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from loe_gym.predictor.configs import TASKS
from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.input_checks import (
    IGNORE_INDEX,
    check_class_labels,
    check_labels,
    check_mask,
)

if TYPE_CHECKING:
    from loe_gym.predictor.modeling_predictor import PredictorOutput

__all__ = ["task_losses", "weighted_loss"]


def task_losses(
    config: PredictorConfig,
    output: PredictorOutput,
    batch_size: int,
    *,
    click_labels: torch.Tensor | None,
    click_mask: torch.Tensor | None,
    watch_time_labels: torch.Tensor | None,
    watch_time_mask: torch.Tensor | None,
    continuation_labels: torch.Tensor | None,
    return_labels: torch.Tensor | None,
    return_mask: torch.Tensor | None,
    ranking_labels: torch.Tensor | None,
    masked_item_labels: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Unweighted loss of each task whose labels are given."""
    losses: dict[str, torch.Tensor] = {}
    candidate_labels = {
        "click_labels": click_labels,
        "watch_time_labels": watch_time_labels,
        "continuation_labels": continuation_labels,
        "return_labels": return_labels,
    }
    if output.click_logits is None:
        given = [name for name, value in candidate_labels.items() if value is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} given without target_item_ids; pass the (B,) model ids "
                "of the items these labels belong to."
            )
        return _catalog_losses(config, output, batch_size, ranking_labels, masked_item_labels)
    if click_labels is not None:
        mask = check_mask(click_mask, "click_mask", batch_size)
        labels = check_labels(
            click_labels, "click_labels", batch_size, unit_interval=True, mask=mask
        )
        losses["click"] = _binary_cross_entropy(output.click_logits, labels, mask)
    if watch_time_labels is not None:
        mask = check_mask(watch_time_mask, "watch_time_mask", batch_size)
        labels = check_labels(watch_time_labels, "watch_time_labels", batch_size, mask=mask)
        assert output.watch_time is not None
        labels = labels.to(output.watch_time)
        if mask is not None:
            # Labels of masked-out rows may be anything (NaN included); zeroed here, as
            # NaN would reach the gradient through `torch.where` (0 · NaN = NaN).
            labels = torch.where(mask, labels, torch.zeros_like(labels))
        losses["watch_time"] = _masked_mean((output.watch_time - labels) ** 2, mask)
    if continuation_labels is not None:
        labels = check_labels(
            continuation_labels, "continuation_labels", batch_size, unit_interval=True
        )
        losses["continuation"] = _binary_cross_entropy(output.continuation_logits, labels, None)
    if return_labels is not None:
        mask = check_mask(return_mask, "return_mask", batch_size)
        labels = check_labels(
            return_labels, "return_labels", batch_size, unit_interval=True, mask=mask
        )
        losses["return"] = _binary_cross_entropy(output.return_logits, labels, mask)
    losses.update(_catalog_losses(config, output, batch_size, ranking_labels, masked_item_labels))
    return losses


def _catalog_losses(
    config: PredictorConfig,
    output: PredictorOutput,
    batch_size: int,
    ranking_labels: torch.Tensor | None,
    masked_item_labels: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    losses: dict[str, torch.Tensor] = {}
    if ranking_labels is not None:
        labels = check_class_labels(config, ranking_labels, "ranking_labels", (batch_size,))
        assert output.ranking_logits is not None
        losses["ranking"] = _cross_entropy(output.ranking_logits, labels)
    if masked_item_labels is not None:
        assert output.masked_item_logits is not None
        losses["masked_item"] = _cross_entropy(output.masked_item_logits, masked_item_labels)
    return losses


def weighted_loss(
    config: PredictorConfig, losses: dict[str, torch.Tensor], log_variances: torch.Tensor | None
) -> torch.Tensor:
    total = torch.zeros((), device=next(iter(losses.values())).device)
    for task, loss in losses.items():
        weight = config.task_weights[task]
        if log_variances is None:
            total = total + weight * loss
        else:
            log_variance = log_variances[TASKS.index(task)]
            total = total + weight * (torch.exp(-log_variance) * loss + log_variance)
    return total


# --- input checks; each error names the argument, the value and the fix ---


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (all if ``None``); 0 when the mask is empty, so a
    batch without e.g. session-ending rows adds nothing instead of NaN."""
    if mask is None:
        return values.mean()
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum() / mask.sum().clamp_min(1)


def _binary_cross_entropy(
    logits: torch.Tensor | None, labels: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    assert logits is not None
    labels = labels.to(logits)
    if mask is not None:
        # Labels of masked-out rows may be anything (NaN included): zero them first.
        labels = torch.where(mask, labels, torch.zeros_like(labels))
    values = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return _masked_mean(values, mask)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labels ≠ `IGNORE_INDEX`; 0 when all are ignored."""
    flat_labels = labels.reshape(-1)
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        flat_labels,
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return total / (flat_labels != IGNORE_INDEX).sum().clamp_min(1)
