"""Checks of the predictor's inputs; each error names the argument, the value and the fix.

Histories longer than ``max_history_length`` are truncated here, from the left, for every
``(B, L, …)`` argument alike.
"""

from __future__ import annotations

import torch

from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.embeddings import NUM_SPECIAL_IDS, PAD_ID
from loe_gym.predictor.profile import history_profile as profile_of_history
from loe_gym.predictor.profile import profile_statistics

__all__ = [
    "IGNORE_INDEX",
    "check_class_labels",
    "check_history",
    "check_ids",
    "check_labels",
    "check_mask",
    "check_masked_item_labels",
    "check_target",
    "describe",
]

IGNORE_INDEX = -100
"""Label of rows (ranking) or positions (masked item) that carry no loss."""


def check_history(
    config: PredictorConfig,
    item_features: torch.Tensor,
    history_item_ids: torch.Tensor,
    history_feedback: torch.Tensor,
    history_gaps: torch.Tensor,
    history_profile: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Checked ``(ids, feedback, gaps)``, truncated to the last ``max_history_length``,
    and the profile statistics (``None`` without ``config.long_term_profile``)."""
    ids = check_ids(config, history_item_ids, "history_item_ids", ndim=2, low=PAD_ID)
    shape = tuple(ids.shape)
    feedback_shape = (*shape, config.feedback_size)
    if not torch.is_tensor(history_feedback) or tuple(history_feedback.shape) != feedback_shape:
        raise ValueError(
            f"history_feedback must be a float tensor of shape (batch, length, "
            f"feedback_size) = {feedback_shape}, got {describe(history_feedback)}."
        )
    if not torch.is_floating_point(history_feedback):
        raise ValueError(
            f"history_feedback must be a float tensor, got dtype {history_feedback.dtype}; "
            "convert it with .float()."
        )
    gaps = check_ids(
        config, history_gaps, "history_gaps", ndim=2, low=0, high=config.num_gap_buckets
    )
    if tuple(gaps.shape) != shape:
        raise ValueError(
            f"history_gaps must have the shape of history_item_ids, {shape}, got "
            f"{tuple(gaps.shape)}."
        )
    max_length = config.max_history_length
    # The model reads every token's feedback when it computes the profile itself, else
    # only the last `max_history_length`: those must be finite.
    profiled = config.long_term_profile and history_profile is None
    read = history_feedback if profiled else history_feedback[:, -max_length:]
    if not torch.isfinite(read).all():
        index = torch.nonzero(~torch.isfinite(read))[0].tolist()
        scope = (
            "the long-term profile sums every item token"
            if profiled
            else f"after truncation to the last {max_length} tokens"
        )
        raise ValueError(
            f"history_feedback must be finite, got {read[tuple(index)].item()} at index "
            f"{index} ({scope}); use 0 for padding and unknown feedback."
        )
    statistics = None
    if profiled:
        statistics = profile_statistics(
            profile_of_history(item_features, config.profile_decays, ids, history_feedback)
        )
    elif config.long_term_profile:
        expected = (shape[0], *config.profile_shape)
        if not torch.is_tensor(history_profile) or tuple(history_profile.shape) != expected:
            raise ValueError(
                f"history_profile must be a float tensor of shape (batch, time scales, "
                f"num_item_features + 1, 1 + feedback_size) = {expected}, got "
                f"{describe(history_profile)}; compute it with model.history_profile."
            )
        if not torch.isfinite(history_profile).all():
            raise ValueError("history_profile must be finite; found NaN or inf.")
        statistics = profile_statistics(history_profile.float())
    if shape[1] > max_length:
        ids = ids[:, -max_length:]
        history_feedback = history_feedback[:, -max_length:]
        gaps = gaps[:, -max_length:]
    return ids, history_feedback, gaps, statistics


def check_target(
    config: PredictorConfig,
    values: torch.Tensor | None,
    name: str,
    batch_size: int,
    *,
    low: int,
    high: int | None,
) -> torch.Tensor | None:
    """``values`` checked like `_check_ids`, with shape ``(batch_size,)``."""
    if values is None:
        return None
    checked = check_ids(config, values, name, ndim=1, low=low, high=high)
    if checked.shape[0] != batch_size:
        raise ValueError(
            f"{name} must have shape (batch,) = ({batch_size},), got {tuple(checked.shape)}."
        )
    return checked


def check_ids(
    config: PredictorConfig,
    values: torch.Tensor,
    name: str,
    *,
    ndim: int,
    low: int,
    high: int | None = None,
) -> torch.Tensor:
    """``values`` as long, after checking rank, integer dtype and range ``[low, high)``
    (default ``high``: ``num_items + 2``, the model id range)."""
    dims = {1: "(batch,)", 2: "(batch, length)"}[ndim]
    if not torch.is_tensor(values) or values.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d tensor {dims}, got {describe(values)}.")
    if torch.is_floating_point(values) or torch.is_complex(values) or values.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integers, got dtype {values.dtype}; convert it with .long()."
        )
    is_item_id = high is None
    high = config.num_items + NUM_SPECIAL_IDS if high is None else high
    bad = (values < low) | (values >= high)
    if bad.any():
        index = tuple(torch.nonzero(bad)[0].tolist())
        fix = (
            "model ids are catalog ids + 2 (0 = padding, 1 = [MASK]); convert catalog ids "
            "with to_model_ids()"
            if is_item_id
            else "gap buckets are 0 (padding), 1 (same session), 2 (next day), 3… (later)"
        )
        raise ValueError(
            f"{name} must lie in [{low}, {high}), got {values[index].item()} at index "
            f"{list(index)}; {fix}."
        )
    return values.long()


def check_class_labels(
    config: PredictorConfig, labels: torch.Tensor, name: str, shape: tuple[int, ...]
) -> torch.Tensor:
    if not torch.is_tensor(labels) or tuple(labels.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {describe(labels)}.")
    if torch.is_floating_point(labels) or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {labels.dtype}.")
    num_items = config.num_items
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_items))
    if bad.any():
        index = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(
            f"{name} must be catalog ids in [0, {num_items}) or {IGNORE_INDEX} (ignored), "
            f"got {labels[index].item()} at index {list(index)}; labels index the logits, "
            "so use catalog ids, not model ids."
        )
    return labels.long()


def check_masked_item_labels(
    config: PredictorConfig, labels: torch.Tensor, history_item_ids: torch.Tensor
) -> torch.Tensor:
    labels = check_class_labels(config, labels, "masked_item_labels", tuple(history_item_ids.shape))
    return labels[:, -config.max_history_length :]


def check_mask(mask: torch.Tensor | None, name: str, batch_size: int) -> torch.Tensor | None:
    if mask is None:
        return None
    if not torch.is_tensor(mask) or tuple(mask.shape) != (batch_size,):
        raise ValueError(
            f"{name} must be a bool tensor of shape ({batch_size},), got {describe(mask)}."
        )
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"{name} must be bool (or 0/1), got values other than 0 and 1.")
        mask = mask.bool()
    return mask


def check_labels(
    labels: torch.Tensor,
    name: str,
    batch_size: int,
    *,
    unit_interval: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    if not torch.is_tensor(labels) or tuple(labels.shape) != (batch_size,):
        raise ValueError(
            f"{name} must be a tensor of shape ({batch_size},), got {describe(labels)}."
        )
    values = labels.float()
    bad = ~torch.isfinite(values)
    if unit_interval:
        bad = bad | (values < 0) | (values > 1)
    if mask is not None:
        bad = bad & mask
    if bad.any():
        row = int(torch.nonzero(bad)[0, 0])
        allowed = "in [0, 1]" if unit_interval else "finite"
        raise ValueError(f"{name} must be {allowed}, got {values[row].item()} at row {row}.")
    return labels


def describe(value: object) -> str:
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:200]
