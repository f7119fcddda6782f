"""Evaluation metrics of the predictor: numpy arrays in, floats out.

| metric | for | definition |
|---|---|---|
| `auc` | click, continuation, return | P(score of a random positive > that of a random negative), ties ½ |
| `auc_interval` | click, continuation, return | the AUC and its 95 % interval, DeLong's variance (normal approximation, clipped to [0, 1]) |
| `gauc` | click | per-user AUC, averaged with weights = the user's rows, over users with both classes |
| `log_loss` | binary heads | mean binary cross-entropy of probabilities |
| `rmse` | watch time | root mean squared error |
| `expected_calibration_error` | binary heads | Σ_b (n_b / n)·\\|mean label − mean probability\\| over equal-width bins |
| `ndcg_at_k`, `hit_rate_at_k` | ranking | the target's rank among *all* items; ties ranked ahead of it |
| `bayes_reference` | binary heads | AUC, ECE and log loss of the simulator's true probabilities |

`bayes_reference` is the physical limit on a log written with privileged columns: no
predictor's AUC can beat, in expectation, that of the true probabilities, and their ECE
is the calibration error that sampling noise alone leaves with that many rows.

A metric that is undefined on its rows is NaN, so that an evaluation loop reports it
rather than stops: no rows at all, or (AUC, GAUC) no positive or no negative row.
Malformed inputs raise: mismatched shapes, labels other than 0/1, NaN scores,
probabilities outside [0, 1].

Example:
    >>> import numpy as np
    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    >>> hit_rate_at_k(np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]]), np.array([2, 0]), k=1)
    0.5
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.stats import norm, rankdata

__all__ = [
    "AUCInterval",
    "auc",
    "auc_interval",
    "bayes_reference",
    "expected_calibration_error",
    "gauc",
    "hit_rate_at_k",
    "log_loss",
    "ndcg_at_k",
    "rmse",
    "target_ranks",
]


# ---------------------------------------------------------------------- validation


def _vector(name: str, values: Any, *, size: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {array.shape}.")
    if size is not None and array.size != size:
        raise ValueError(f"{name} must have {size} values like the labels, got {array.size}.")
    return array


def _labels(labels: Any) -> np.ndarray:
    """``(n,) float64`` 0/1 labels from bools or numbers that are all 0 or 1."""
    array = _vector("labels", labels)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"labels must be bool or 0/1 numbers, got dtype {array.dtype}.")
    values = array.astype(np.float64)
    bad = (values != 0.0) & (values != 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"labels must be 0 or 1; row {row} has {array[row].item()!r}. Mask rows "
            "without a label (e.g. with return_mask) before computing the metric."
        )
    return values


def _reals(name: str, values: Any, size: int) -> np.ndarray:
    array = _vector(name, values, size=size)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {array.dtype}.")
    array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{name} must be finite; row {row} has {float(array[row])}. Mask rows without a "
            "value before computing the metric."
        )
    return array


def _probabilities(name: str, values: Any, size: int) -> np.ndarray:
    array = _reals(name, values, size)
    bad = (array < 0.0) | (array > 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must lie in [0, 1]; row {row} has {float(array[row])}. Pass probabilities, "
            "not logits (apply a sigmoid)."
        )
    return array


def _has_both_classes(labels: np.ndarray) -> bool:
    positives = int(labels.sum())
    return 0 < positives < labels.size


# -------------------------------------------------------------------------- binary


def auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve, from ranks (Mann–Whitney U); tied scores count ½.

    Args:
        labels: ``(n,)`` bool or 0/1.
        scores: ``(n,)`` finite scores (probabilities or logits: only their order counts).

    Returns:
        The AUC, or NaN when the labels do not hold both classes.
    """
    y = _labels(labels)
    s = _reals("scores", scores, y.size)
    if not _has_both_classes(y):
        return float("nan")
    ranks = rankdata(s)  # average ranks of ties, from 1
    positives = y.sum()
    negatives = y.size - positives
    u = ranks[y == 1.0].sum() - positives * (positives + 1.0) / 2.0
    return float(u / (positives * negatives))


class AUCInterval(NamedTuple):
    """An AUC with its confidence interval (`auc_interval`)."""

    auc: float
    low: float
    high: float
    standard_error: float


def auc_interval(labels: Any, scores: Any, level: float = 0.95) -> AUCInterval:
    """The AUC and its ``level`` confidence interval from DeLong's variance (DeLong et al.
    1988, with the midrank algorithm of Sun & Xu 2014: O(n log n), no pair loop).

    Each positive ``i`` gets ``V10_i``, the share of negatives it outscores (ties ½), and
    each negative ``j`` ``V01_j``, the share of positives that outscore it; the AUC is the
    mean of either, and ``Var(AUC) = var(V10)/m + var(V01)/n`` over ``m`` positives and
    ``n`` negatives. The interval is ``AUC ± z·SE``, clipped to [0, 1]. With few positives
    it is wide, as it should be: read a small test's AUC with it.

    Args:
        labels: ``(n,)`` bool or 0/1.
        scores: ``(n,)`` finite scores.
        level: coverage of the interval, in (0, 1).

    Returns:
        ``(auc, low, high, standard_error)``: all NaN without both classes, the bounds and
        the error NaN with fewer than two positives or two negatives (no variance).
    """
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}.")
    y = _labels(labels)
    s = _reals("scores", scores, y.size)
    nan = float("nan")
    if not _has_both_classes(y):
        return AUCInterval(nan, nan, nan, nan)
    positive, negative = s[y == 1.0], s[y == 0.0]
    m, n = positive.size, negative.size
    ranks = rankdata(np.concatenate([positive, negative]))  # midranks of all rows
    # The same formula as `auc`, so that the two agree to the last bit.
    value = float((ranks[:m].sum() - m * (m + 1.0) / 2.0) / (m * n))
    if m < 2 or n < 2:
        return AUCInterval(value, nan, nan, nan)
    # Rank among all minus rank among its own class: the rows of the other class below it.
    v10 = (ranks[:m] - rankdata(positive)) / n
    v01 = 1.0 - (ranks[m:] - rankdata(negative)) / m
    error = float(np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n))
    half = float(norm.ppf(0.5 + level / 2.0)) * error
    return AUCInterval(value, max(0.0, value - half), min(1.0, value + half), error)


def gauc(labels: Any, scores: Any, groups: Any) -> float:
    """Group AUC: per-group (per-user) AUC averaged with the group's row count as weight,
    over the groups that have both classes.

    Args:
        labels: ``(n,)`` bool or 0/1.
        scores: ``(n,)`` finite scores.
        groups: ``(n,)`` integer group of each row (e.g. ``user_index``).

    Returns:
        The GAUC, or NaN when no group has both classes.
    """
    y = _labels(labels)
    s = _reals("scores", scores, y.size)
    g = _vector("groups", groups, size=y.size)
    if g.dtype.kind not in "iu":
        raise TypeError(f"groups must be integers, got dtype {g.dtype}.")
    if not _has_both_classes(y):
        return float("nan")
    order = np.lexsort((s, g))  # by group, then score
    g, s, y = g[order], s[order], y[order]
    n = y.size
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    group = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    # Ties: rows of one group with one score share the mean of their positions.
    new_block = new_group.copy()
    new_block[1:] |= s[1:] != s[:-1]
    block = np.cumsum(new_block) - 1
    block_start = np.flatnonzero(new_block)
    block_end = np.append(block_start[1:], n)
    mean_position = (block_start + block_end - 1) / 2.0
    rank = mean_position[block] - group_start[group] + 1.0  # 1-based within the group
    rank_sum = np.bincount(group, weights=rank * y)
    positives = np.bincount(group, weights=y)
    size = np.bincount(group).astype(np.float64)
    negatives = size - positives
    both = (positives > 0) & (negatives > 0)
    if not both.any():
        return float("nan")
    group_auc = (rank_sum[both] - positives[both] * (positives[both] + 1.0) / 2.0) / (
        positives[both] * negatives[both]
    )
    return float(np.sum(size[both] * group_auc) / np.sum(size[both]))


def log_loss(labels: Any, probabilities: Any, *, epsilon: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities are clipped to ``[ε, 1 − ε]``."""
    y = _labels(labels)
    p = np.clip(_probabilities("probabilities", probabilities, y.size), epsilon, 1.0 - epsilon)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def expected_calibration_error(labels: Any, probabilities: Any, bins: int = 15) -> float:
    """Σ_b (n_b / n)·|mean label − mean probability| over ``bins`` equal-width bins of
    [0, 1] (a probability of exactly 1 falls in the last bin; empty bins count 0).

    Args:
        labels: ``(n,)`` bool or 0/1.
        probabilities: ``(n,)`` in [0, 1].
        bins: number of bins.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}.")
    y = _labels(labels)
    p = _probabilities("probabilities", probabilities, y.size)
    if y.size == 0:
        return float("nan")
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    gap = np.bincount(index, weights=y, minlength=bins) - np.bincount(
        index, weights=p, minlength=bins
    )
    return float(np.abs(gap).sum() / y.size)


def bayes_reference(labels: Any, true_probabilities: Any, bins: int = 15) -> dict[str, float]:
    """AUC, ECE and log loss of the simulator's true probabilities on these labels.

    The true probabilities are the best predictions possible (Bayes-optimal): their AUC
    is the most a predictor can reach in expectation, their log loss the least, and
    their ECE the calibration error that sampling noise leaves with this many rows.

    Args:
        labels: ``(n,)`` bool or 0/1 outcomes (e.g. clicks).
        true_probabilities: ``(n,)`` the log's privileged column for them (e.g.
            ``true_click_probability``); mask NaN rows first (``true_return_probability``
            is NaN where no session ended: keep the ``return_mask`` rows).

    Returns:
        ``{"auc": …, "ece": …, "log_loss": …}``.
    """
    y = _labels(labels)
    p = _probabilities("true_probabilities", true_probabilities, y.size)
    return {
        "auc": auc(y, p),
        "ece": expected_calibration_error(y, p, bins=bins),
        "log_loss": log_loss(y, p),
    }


def rmse(targets: Any, predictions: Any) -> float:
    """Root mean squared error of ``(n,)`` predictions against ``(n,)`` targets."""
    t = _reals("targets", targets, _vector("targets", targets).size)
    p = _reals("predictions", predictions, t.size)
    if t.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((p - t) ** 2)))


# ------------------------------------------------------------------------- ranking


def target_ranks(scores: Any, targets: Any) -> np.ndarray:
    """``(B,) int64`` rank of each target among all items, from 1; pessimistic on ties.

    A target's rank is the number of items whose score is at least its own (itself
    included): an item tied with the target is ranked ahead of it, so a constant
    scorer ranks every target last rather than first.

    Args:
        scores: ``(B, num_items)`` finite scores (logits) of every item.
        targets: ``(B,)`` column of each row's target in ``scores``.
    """
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(
            f"scores must have shape (B, num_items) with num_items ≥ 1, got {s.shape}."
        )
    if s.dtype.kind not in "biuf":
        raise TypeError(f"scores must be real numbers, got dtype {s.dtype}.")
    if s.dtype.kind == "f" and not np.isfinite(s).all():
        row = int(np.flatnonzero(~np.isfinite(s).all(axis=1))[0])
        raise ValueError(f"scores must be finite; row {row} has a NaN or infinite score.")
    t = _vector("targets", targets, size=s.shape[0])
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer item columns, got dtype {t.dtype}.")
    bad = (t < 0) | (t >= s.shape[1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"targets must lie in [0, {s.shape[1]}); row {row} has {int(t[row])}. Drop rows "
            "without a target (label −100) first."
        )
    target_score = s[np.arange(s.shape[0]), t]
    return np.count_nonzero(s >= target_score[:, None], axis=1).astype(np.int64)


def _ranks(scores_or_ranks: Any, targets: Any) -> np.ndarray:
    array = np.asarray(scores_or_ranks)
    if array.ndim == 2:
        if targets is None:
            raise ValueError("targets are needed with a (B, num_items) score array.")
        return target_ranks(array, targets)
    if targets is not None:
        hint = (
            f" To set the cut-off pass it by keyword: k={targets}." if np.ndim(targets) == 0 else ""
        )
        raise ValueError(
            f"Got targets with a {array.ndim}-d first argument; pass either (B, num_items) "
            f"scores and (B,) targets, or (B,) ranks alone.{hint}"
        )
    ranks = _vector("ranks", array)
    if ranks.dtype.kind not in "iu":
        raise TypeError(f"ranks must be integers, got dtype {ranks.dtype}.")
    if ranks.size and ranks.min() < 1:
        raise ValueError(
            f"ranks must be ≥ 1 (1 = best), got {int(ranks.min())}; add 1 to 0-based ranks."
        )
    return ranks.astype(np.int64)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return int(k)


def ndcg_at_k(scores_or_ranks: Any, targets: Any = None, k: int = 10) -> float:
    """Mean NDCG@k with one relevant item per row: ``1 / log2(rank + 1)`` if the
    target's rank is at most ``k``, else 0.

    Args:
        scores_or_ranks: ``(B, num_items)`` scores of every item (with ``targets``), or
            ``(B,)`` target ranks from 1 (e.g. from `target_ranks`).
        targets: ``(B,)`` target columns, with scores only.
        k: cut-off.
    """
    k = _check_k(k)
    ranks = _ranks(scores_or_ranks, targets)
    if ranks.size == 0:
        return float("nan")
    gain = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
    return float(gain.mean())


def hit_rate_at_k(scores_or_ranks: Any, targets: Any = None, k: int = 10) -> float:
    """Share of rows whose target ranks at most ``k`` (arguments as in `ndcg_at_k`)."""
    k = _check_k(k)
    ranks = _ranks(scores_or_ranks, targets)
    if ranks.size == 0:
        return float("nan")
    return float(np.mean(ranks <= k))
