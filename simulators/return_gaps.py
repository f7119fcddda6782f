"""Return gaps of a log, right-censored, and the churn of a learned world calibrated on them.

A session end is followed by the user's next visit ``gap`` days later, or by none. In a
log written by a simulator the answer is known (``gap_days`` ≥ 1, or 0 = churned: never
returns). In a log imported from a platform (policy ``imported:*``) a session end with no
later visit is only *silent until the window closes*: the user may come back after the
log ends. Such a gap is right-censored at the days of silence the window still saw,
``window_end_day − day`` (the window's end is the log's last day unless given; an imported
log's days are counted on its calendar, from the users' first days).

`kaplan_meier` estimates ``S(t) = P(no return within t days)`` from those observations
(censored gaps leave the risk set without counting as non-returns, the honest use of
"silent until the end"). The churn estimate is ``π̂ = S(K)``, the share of session ends
followed by more than ``K`` days of silence, with ``K`` the longest observed return gap
at which at least ``min_at_risk`` session ends are still at risk (beyond it the estimate
rests on too few sessions; a later return counts as churn).

`simulators.learned.LearnedUsers` draws a return gap ``g ~ Geometric(p̂_return)`` and
calls ``g > churn_gap_days`` churn, so a session end churns with probability
``(1 − p̂)^churn_gap_days``. `calibrate_churn_gap_days` picks the smallest threshold
whose mean churn over the logged session ends (the predictor's own ``p̂`` there) is at
most ``π̂``: the learned world's share of session ends never followed by a return, and
with it its sessions per user, match the log's. The longest return gap in the log (the
former rule) makes a learned world that never churns on a long real log: every gap a
Geometric draw gives is shorter than that.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from loe_gym.logs import read_log, read_public_catalog, read_user_first_days
from loe_gym.predictor.censoring import IMPORTED_POLICY_PREFIX

__all__ = [
    "ChurnCalibration",
    "ReturnGapSurvival",
    "calibrate_churn",
    "calibrate_churn_gap_days",
    "kaplan_meier",
    "logged_return_probabilities",
    "return_gap_observations",
]

MIN_AT_RISK = 20
"""Session ends that must still be at risk at the churn horizon ``K``."""


@dataclass(frozen=True)
class ReturnGapSurvival:
    """A Kaplan–Meier estimate of the return gap: ``survival[t − 1] = S(t)``, the
    probability that a session end is followed by no visit within ``t`` days.

    Attributes:
        survival: ``(T,) float64`` ``S(1) … S(T)``, ``T`` the longest observed gap.
        at_risk: ``(T,) int64`` session ends still silent, and observed, at day ``t``.
        returns: ``(T,) int64`` returns observed after exactly ``t`` days.
        session_ends: observations in all.
        censored: of those, the gaps cut by the window (or churned, in a simulator's log).
    """

    survival: np.ndarray
    at_risk: np.ndarray
    returns: np.ndarray
    session_ends: int
    censored: int

    def no_return_within(self, days: int) -> float:
        """``S(days)``: 1 before the first day, constant after the last observed gap."""
        if days < 1 or self.survival.size == 0:
            return 1.0
        return float(self.survival[min(days, self.survival.size) - 1])

    def horizon(self, min_at_risk: int = MIN_AT_RISK) -> int:
        """``K``: the longest observed return gap with at least ``min_at_risk`` session
        ends at risk (1 when none has)."""
        days = np.flatnonzero((self.returns > 0) & (self.at_risk >= min_at_risk)) + 1
        return int(days[-1]) if days.size else 1


def return_gap_observations(
    log: str | os.PathLike[str] | pa.Table, window_end_day: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(days (n,) float64, observed (n,) bool)`` for the log's ``n`` session ends.

    ``observed``: the next visit came after ``days`` days. Otherwise ``days`` is the
    silence seen before censoring: ``inf`` for a simulator's churned user (never
    returns), ``window_end_day − day`` for an imported log's last session
    (``window_end_day``: the log's last day by default; an imported log's days are put
    on its calendar with `loe_gym.logs.read_user_first_days`, so a user who arrived late is
    silent only from the last session to the log's end).
    """
    table = read_log(log) if isinstance(log, (str, os.PathLike)) else log
    columns = {
        name: table.column(name).to_numpy(zero_copy_only=False)
        for name in ("day", "session_end", "gap_days", "position")
    }
    first_days = read_user_first_days(log) if isinstance(log, (str, os.PathLike)) else None
    if first_days is not None:  # an imported log: every user's days on the log's calendar
        columns["user_id"] = table.column("user_id").to_numpy(zero_copy_only=False)
        columns["day"] = columns["day"] + first_days[columns["user_id"]]
    policy = table.column("policy").cast(pa.string()).to_numpy(zero_copy_only=False)
    # session_end and gap_days describe the step: one observation per step, at position 0.
    ends = columns["session_end"].astype(bool) & (columns["position"] == 0)
    day = columns["day"].astype(np.int64)
    gap = columns["gap_days"][ends].astype(np.float64)
    if window_end_day is None:
        window_end_day = int(day.max()) if day.size else 0
    imported = np.char.startswith(policy[ends].astype(str), IMPORTED_POLICY_PREFIX)
    observed = gap >= 1
    silence = np.where(
        imported, np.maximum(window_end_day - day[ends], 0).astype(np.float64), math.inf
    )
    return np.where(observed, gap, silence), observed


def kaplan_meier(days: np.ndarray, observed: np.ndarray) -> ReturnGapSurvival:
    """The Kaplan–Meier estimate of the return gap from `return_gap_observations`.

    ``S(t) = Π_{s ≤ t} (1 − returns(s) / at_risk(s))``, where ``at_risk(s)`` counts the
    observations with ``days ≥ s`` (censored ones at ``s = days`` included: silent for
    the whole of that day's window).
    """
    days = np.asarray(days, dtype=np.float64)
    observed = np.asarray(observed, dtype=bool)
    if days.shape != observed.shape or days.ndim != 1:
        raise ValueError(
            f"days and observed must have one shape (n,), got {days.shape} and {observed.shape}."
        )
    longest = int(days[observed].max()) if observed.any() else 0
    returns = np.bincount(days[observed].astype(np.int64), minlength=longest + 1)[1:]
    capped = np.minimum(days, longest + 1).astype(np.int64)
    # at_risk(s) = #{days ≥ s}: a reversed cumulative count over the (capped) days.
    counts = np.bincount(capped, minlength=longest + 2)
    at_risk = np.cumsum(counts[::-1])[::-1][1 : longest + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, returns / np.maximum(at_risk, 1), 0.0)
    return ReturnGapSurvival(
        survival=np.cumprod(1.0 - hazard),
        at_risk=at_risk.astype(np.int64),
        returns=returns.astype(np.int64),
        session_ends=int(days.size),
        censored=int(np.count_nonzero(~observed)),
    )


def calibrate_churn_gap_days(
    return_probability: np.ndarray, never_return_share: float, max_days: int = 3650
) -> int:
    """The smallest ``K ≥ 1`` with ``mean((1 − p̂)^K) ≤ never_return_share``.

    Args:
        return_probability: ``(n,)`` the predictor's next-day return probabilities at
            logged session ends.
        never_return_share: ``π̂``, the share of session ends never followed by a return.
        max_days: the largest threshold returned (a predictor that almost always
            returns would need an endless one).
    """
    p = np.clip(np.asarray(return_probability, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"return_probability must be a non-empty (n,) array, got {p.shape}.")
    if not 0.0 <= never_return_share <= 1.0:
        raise ValueError(f"never_return_share must lie in [0, 1], got {never_return_share!r}.")
    churn = [float(np.mean((1.0 - p) ** k)) for k in range(1, max_days + 1)]
    below = np.flatnonzero(np.asarray(churn) <= never_return_share)
    return int(below[0]) + 1 if below.size else max_days


@dataclass(frozen=True)
class ChurnCalibration:
    """The churn of a learned world, calibrated on a log (`calibrate_churn`).

    Attributes:
        horizon_days: ``K``: more silence than this counts as churn in the log.
        never_return_share: ``π̂ = S(K)``, share of session ends never followed by a return.
        churn_gap_days: the `LearnedUsers` threshold that reproduces ``π̂``.
        learned_never_return_share: ``mean((1 − p̂)^churn_gap_days)`` at the logged
            session ends: the learned world's churn per session end there.
        session_ends, censored_session_ends: the log's session ends, and those whose
            gap the window cut.
        longest_gap_days: the longest observed return gap (the former threshold).
    """

    horizon_days: int
    never_return_share: float
    churn_gap_days: int
    learned_never_return_share: float
    session_ends: int
    censored_session_ends: int
    longest_gap_days: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def logged_return_probabilities(
    service: Any, log: str | os.PathLike[str], max_session_ends: int = 20_000, seed: int = 0
) -> np.ndarray:
    """``(n,)`` the predictor's next-day return probabilities at (up to
    ``max_session_ends``, drawn at random) session ends of ``log``, given each one's
    history in the log. ``service``: a `loe_gym.predictor.serving.PredictorService`."""
    import torch

    from loe_gym.predictor.batches import TargetBatches
    from loe_gym.predictor.losses import forward_keys, model_inputs
    from loe_gym.predictor.sequences import load_sequences

    model, config = service.model, service.config
    sequences, _ = load_sequences(
        log, num_items=service.num_items, num_gap_buckets=int(config.num_gap_buckets)
    )
    features = model.item_features.detach().cpu().numpy()
    batches = TargetBatches(
        sequences,
        batch_size=1024,
        max_history_length=int(config.max_history_length),
        shuffle=False,
        item_features=features if config.long_term_profile else None,
        profile_decays=config.profile_decays if config.long_term_profile else None,
    )
    rows = batches.targets[sequences.session_end[batches.targets]]
    if rows.size > max_session_ends:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_session_ends, replace=False))
    # The model's inputs only: without labels and masks it computes no loss.
    keys = frozenset(k for k in forward_keys(model) if not k.endswith(("_labels", "_mask")))
    parts = []
    with torch.inference_mode():
        for start in range(0, rows.size, batches.batch_size):
            batch = batches.batch(rows[start : start + batches.batch_size])
            output = model(**model_inputs(batch, keys, service.device))
            parts.append(torch.sigmoid(output.return_logits).double().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros(0)


def calibrate_churn(
    service: Any, log: str | os.PathLike[str], *, min_at_risk: int = MIN_AT_RISK
) -> ChurnCalibration:
    """The churn threshold of a learned world running ``service``'s predictor, from the
    return gaps of ``log`` (the module docstring's rule)."""
    if read_public_catalog(log) is None:
        raise ValueError(f"The log at {str(log)!r} has no catalog (_catalog.parquet).")
    survival = kaplan_meier(*return_gap_observations(log))
    horizon = survival.horizon(min_at_risk)
    share = survival.no_return_within(horizon)
    probabilities = logged_return_probabilities(service, log)
    if probabilities.size == 0:
        raise ValueError(
            f"The log at {str(log)!r} has no session end after a user's first step: there is "
            "nothing to calibrate churn on. Pass churn_gap_days yourself."
        )
    threshold = calibrate_churn_gap_days(probabilities, share)
    return ChurnCalibration(
        horizon_days=horizon,
        never_return_share=share,
        churn_gap_days=threshold,
        learned_never_return_share=float(np.mean((1.0 - probabilities) ** threshold)),
        session_ends=survival.session_ends,
        censored_session_ends=survival.censored,
        longest_gap_days=int(survival.survival.size),
    )
