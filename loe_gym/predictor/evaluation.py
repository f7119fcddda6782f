"""Evaluation of the predictor: losses, metrics and the Bayes references of a log.

`evaluate` scores a model on batches (`loe_gym.predictor.batches`); `evaluate_perturbed`
does the same on FGM-perturbed inputs. The metrics are those of `loe_gym.predictor.metrics`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from loe_gym.predictor import metrics as metric_functions
from loe_gym.predictor.adversarial import forward_with_gradient, per_example_normalise
from loe_gym.predictor.losses import forward_keys, model_inputs

__all__ = ["EVALUATION_KEYS", "RANKING_CUTOFF", "evaluate", "evaluate_perturbed"]


EVALUATION_KEYS = (
    "user_index",
    "true_click_probability",
    "true_watch_time",
    "true_return_probability",
)
"""Batch keys used by `evaluate` only; they are never passed to the model."""

RANKING_CUTOFF = 10
"""``k`` of the reported NDCG@k and HR@k."""


def evaluate(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """Losses and metrics of ``model`` on ``batches`` (eval mode, no gradient).

    Keys (each only when the batches carry what it needs; NaN where undefined, e.g. an
    AUC over one class):

    | key | what |
    |---|---|
    | ``loss``, ``loss_<task>`` | total and per-task losses: batch means, averaged with the batch rows as weights |
    | ``click_auc``, ``click_gauc``, ``click_ece``, ``click_log_loss`` | clicks; GAUC averages per-user AUCs (``user_index``) |
    | ``<auc>_ci_low``, ``<auc>_ci_high`` | 95 % DeLong interval of ``click_auc``, ``continuation_auc`` and ``return_auc`` (`metrics.auc_interval`) |
    | ``watch_time_rmse_clicked_minutes`` | RMSE in minutes of E[watch │ click] on clicked rows |
    | ``watch_time_rmse_expected_minutes`` | RMSE in minutes of p(click)·E[watch │ click] vs the minutes watched, all rows |
    | ``continuation_auc`` | the session-continuation head |
    | ``return_auc``, ``return_ece``, ``return_log_loss`` | next-day return, on rows that end a session |
    | ``ranking_ndcg_at_10``, ``ranking_hit_rate_at_10`` | full-catalog rank of the clicked item, on clicked rows |
    | ``masked_item_ndcg_at_10``, ``masked_item_hit_rate_at_10`` | masked-item pre-training, on masked positions |
    | ``bayes_click_auc``, ``bayes_click_ece``, ``bayes_click_log_loss`` | the simulator's true click probability (privileged logs) |
    | ``bayes_watch_time_rmse_expected_minutes`` | the true expected minutes vs the minutes watched, all rows |
    | ``bayes_return_auc``, ``bayes_return_ece``, ``bayes_return_log_loss`` | the true return probability, on session-ending rows |

    The Bayes references are the best a predictor can do on this log, in expectation:
    compare ``click_auc`` with ``bayes_click_auc``, ``click_log_loss`` with
    ``bayes_click_log_loss``, ``watch_time_rmse_expected_minutes`` with
    ``bayes_watch_time_rmse_expected_minutes``, ``return_auc`` with ``bayes_return_auc``.
    Ranks are pessimistic on ties (`metrics.target_ranks`).
    """
    return _evaluate(model, batches, epsilon=None)


def evaluate_perturbed(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], epsilon: float
) -> dict[str, float]:
    """`evaluate` on FGM-perturbed inputs: the robustness of the metrics.

    Each batch's summed input embeddings are moved by ``r = ε·g/‖g‖`` (per example), with
    ``g`` the gradient of the model's loss on that batch — the worst first-order change of
    L2 size ε. Same keys as `evaluate`; the Bayes references are those of the clean log.
    """
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a finite number ≥ 0, got {epsilon!r}.")
    return _evaluate(model, batches, epsilon=float(epsilon))


class _Collector:
    """Per-row predictions and labels gathered over batches, as flat numpy arrays."""

    def __init__(self) -> None:
        self.columns: dict[str, list[np.ndarray]] = defaultdict(list)
        self.loss_sums: dict[str, float] = defaultdict(float)
        self.rows = 0

    def add(self, name: str, values: torch.Tensor) -> None:
        values = values.detach()
        # Floats as float64 for the metrics; integers (user index, ranks) keep their kind.
        if values.is_floating_point():
            values = values.double()
        self.columns[name].append(values.cpu().numpy().reshape(-1))

    def get(self, name: str) -> np.ndarray | None:
        parts = self.columns.get(name)
        return np.concatenate(parts) if parts else None


def _label_ranks(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rank from 1 of each label among its row's logits, ties ranked ahead of it (the
    convention of `metrics.target_ranks`): ``logits (N, num_items)``, ``labels (N,)`` →
    ``(N,)`` int64. Ranks are computed per batch so that no ``(rows, num_items)`` matrix
    is kept for the whole evaluation set."""
    label_logits = logits.gather(1, labels.unsqueeze(1))
    return (logits >= label_logits).sum(dim=1)


def _collect_batch(
    collector: _Collector, output: Any, batch: Mapping[str, torch.Tensor], rows: int
) -> None:
    collector.rows += rows
    if output.loss is not None:
        collector.loss_sums["loss"] += float(output.loss) * rows
    for task, value in (output.losses or {}).items():
        collector.loss_sums[f"loss_{task}"] += float(value) * rows

    def column(name: str) -> torch.Tensor | None:
        value = batch.get(name)
        return value if isinstance(value, torch.Tensor) else None

    clicks = column("click_labels")
    if clicks is not None and output.click_logits is not None:
        collector.add("click_labels", clicks)
        collector.add("click_probability", torch.sigmoid(output.click_logits.float()))
        user_index = column("user_index")
        if user_index is not None:
            collector.add("user_index", user_index)
        if output.watch_time is not None:
            # The head predicts log1p(minutes) given a click.
            collector.add(
                "watch_minutes_given_click", torch.expm1(output.watch_time.float()).clamp_min(0)
            )
        true_click = column("true_click_probability")
        if true_click is not None:
            collector.add("true_click_probability", true_click)
        true_watch = column("true_watch_time")
        if true_watch is not None:
            collector.add("true_watch_time", true_watch)
    watch_labels = column("watch_time_labels")
    if watch_labels is not None and output.watch_time is not None:
        mask = column("watch_time_mask")
        mask = torch.ones_like(watch_labels, dtype=torch.bool) if mask is None else mask.bool()
        collector.add("watch_minutes", torch.where(mask, torch.expm1(watch_labels.float()), 0.0))
        collector.add("watch_mask", mask)
    continuation = column("continuation_labels")
    if continuation is not None and output.continuation_logits is not None:
        collector.add("continuation_labels", continuation)
        collector.add("continuation_logits", output.continuation_logits)
    returns = column("return_labels")
    if returns is not None and output.return_logits is not None:
        mask = column("return_mask")
        mask = torch.ones_like(returns, dtype=torch.bool) if mask is None else mask.bool()
        collector.add("return_labels", returns)
        collector.add("return_probability", torch.sigmoid(output.return_logits.float()))
        collector.add("return_mask", mask)
        true_return = column("true_return_probability")
        if true_return is not None:
            collector.add("true_return_probability", true_return)
    ranking = column("ranking_labels")
    if ranking is not None and output.ranking_logits is not None:
        valid = (ranking >= 0) & (ranking < output.ranking_logits.shape[-1])
        if bool(valid.any()):
            collector.add(
                "ranking_ranks", _label_ranks(output.ranking_logits[valid], ranking[valid])
            )
    masked = column("masked_item_labels")
    if masked is not None and output.masked_item_logits is not None:
        logits = output.masked_item_logits  # (B, L, N), L after truncation
        labels = masked[:, -logits.shape[1] :].reshape(-1)
        logits = logits.reshape(-1, logits.shape[-1])
        valid = (labels >= 0) & (labels < logits.shape[-1])
        if bool(valid.any()):
            collector.add("masked_item_ranks", _label_ranks(logits[valid], labels[valid]))


def _has_both_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < int(np.count_nonzero(labels > 0.5)) < labels.size


def _auc_with_interval(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``name``, ``name_ci_low`` and ``name_ci_high`` (95 %, DeLong), NaN where undefined."""
    interval = metric_functions.auc_interval(labels, scores)
    return {name: interval.auc, f"{name}_ci_low": interval.low, f"{name}_ci_high": interval.high}


def _gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    _, group = np.unique(groups, return_inverse=True)
    positives = np.bincount(group, weights=labels > 0.5)
    defined = ((positives > 0) & (positives < np.bincount(group))).any()
    return metric_functions.gauc(labels, scores, groups) if defined else math.nan


def _ece(labels: np.ndarray, probabilities: np.ndarray) -> float:
    if labels.size == 0:
        return math.nan
    return metric_functions.expected_calibration_error(labels, probabilities)


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return metric_functions.log_loss(labels, probabilities) if labels.size else math.nan


def _rmse(targets: np.ndarray, predictions: np.ndarray) -> float:
    return metric_functions.rmse(targets, predictions) if targets.size else math.nan


def _metrics(collector: _Collector) -> dict[str, float]:
    results = {name: total / max(collector.rows, 1) for name, total in collector.loss_sums.items()}
    clicks = collector.get("click_labels")
    click_probability = collector.get("click_probability")
    if clicks is not None and click_probability is not None:
        results.update(_auc_with_interval("click_auc", clicks, click_probability))
        user_index = collector.get("user_index")
        if user_index is not None:
            results["click_gauc"] = _gauc(clicks, click_probability, user_index)
        results["click_ece"] = _ece(clicks, click_probability)
        results["click_log_loss"] = _log_loss(clicks, click_probability)
    watched = collector.get("watch_minutes")
    watch_mask = collector.get("watch_mask")
    given_click = collector.get("watch_minutes_given_click")
    if watched is not None and watch_mask is not None and given_click is not None:
        clicked_rows = watch_mask.astype(bool)
        results["watch_time_rmse_clicked_minutes"] = _rmse(
            watched[clicked_rows], given_click[clicked_rows]
        )
        if click_probability is not None and len(click_probability) == len(watched):
            # The unconditional expectation p(click)·E[w | click]: what an agent that
            # ranks by expected minutes uses, scored on every row (0 minutes if no click).
            results["watch_time_rmse_expected_minutes"] = _rmse(
                watched, click_probability * given_click
            )
    continuation = collector.get("continuation_labels")
    continuation_logits = collector.get("continuation_logits")
    if continuation is not None and continuation_logits is not None:
        results.update(_auc_with_interval("continuation_auc", continuation, continuation_logits))
    returns = collector.get("return_labels")
    return_probability = collector.get("return_probability")
    return_mask = collector.get("return_mask")
    if returns is not None and return_probability is not None and return_mask is not None:
        ending = return_mask.astype(bool)
        results.update(
            _auc_with_interval("return_auc", returns[ending], return_probability[ending])
        )
        results["return_ece"] = _ece(returns[ending], return_probability[ending])
        results["return_log_loss"] = _log_loss(returns[ending], return_probability[ending])
    for name in ("ranking", "masked_item"):
        ranks = collector.get(f"{name}_ranks")
        if ranks is not None:
            cutoff = RANKING_CUTOFF
            results[f"{name}_ndcg_at_{cutoff}"] = metric_functions.ndcg_at_k(ranks, k=cutoff)
            results[f"{name}_hit_rate_at_{cutoff}"] = metric_functions.hit_rate_at_k(
                ranks, k=cutoff
            )
    results.update(_bayes_references(collector))
    return {name: float(value) for name, value in results.items()}


def _bayes_references(collector: _Collector) -> dict[str, float]:
    """The metrics of the simulator's true probabilities (privileged logs only)."""
    results: dict[str, float] = {}
    clicks = collector.get("click_labels")
    true_click = collector.get("true_click_probability")
    if clicks is not None and true_click is not None and _has_both_classes(clicks):
        for name, value in metric_functions.bayes_reference(clicks, true_click).items():
            results[f"bayes_click_{name}"] = value
    watched = collector.get("watch_minutes")
    true_watch = collector.get("true_watch_time")
    if watched is not None and true_watch is not None and len(true_watch) == len(watched):
        results["bayes_watch_time_rmse_expected_minutes"] = _rmse(watched, true_watch)
    returns = collector.get("return_labels")
    return_mask = collector.get("return_mask")
    true_return = collector.get("true_return_probability")
    if returns is not None and return_mask is not None and true_return is not None:
        # NaN where the simulator cannot tell: those rows are left out of the reference.
        rows = return_mask.astype(bool) & np.isfinite(true_return)
        if _has_both_classes(returns[rows]):
            for name, value in metric_functions.bayes_reference(
                returns[rows], true_return[rows]
            ).items():
                results[f"bayes_return_{name}"] = value
    return results


def _evaluate(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], *, epsilon: float | None
) -> dict[str, float]:
    model = extract_model_from_parallel(model)
    keys = forward_keys(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    collector = _Collector()
    try:
        for batch in batches:
            inputs = model_inputs(batch, keys, device)
            rows = int(inputs["history_item_ids"].shape[0])
            if epsilon is None:
                with torch.inference_mode():
                    output = model(**inputs)
            else:
                with torch.enable_grad():
                    _, gradient = forward_with_gradient(model, inputs, None, keep_graph=False)
                with torch.inference_mode():
                    noise = epsilon * per_example_normalise(gradient)
                    output = model(**inputs, inputs_embeds_noise=noise)
            host_batch = {key: value for key, value in batch.items() if key not in inputs}
            host_batch.update(inputs)
            _collect_batch(collector, output, host_batch, rows)
    finally:
        model.train(was_training)
    if collector.rows == 0:
        raise ValueError(
            "evaluate got no rows to score: the users of this split have no rows with a "
            "target (too few users, or lives too short). Collect more users or longer "
            "lives, or pass at least one batch of rows."
        )
    return _metrics(collector)
