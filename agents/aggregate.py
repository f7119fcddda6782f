"""Results over training seeds as the RL field reports them (Agarwal et al., 2021).

Scores of several training runs, each judged on the same evaluation populations, are
summarised by the interquartile mean (IQM) and the mean with stratified-bootstrap 95 %
intervals, computed by the ``rliable`` library; sample efficiency is the number of
environment steps each run's learning curve needs to reach a target.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Aggregate", "Reach", "aggregate_runs", "reach_summary", "steps_to_reach"]


@dataclass(frozen=True)
class Aggregate:
    """IQM and mean of one policy's ``(runs, populations)`` scores, with 95 % intervals."""

    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    mean_ci: tuple[float, float]
    runs: int

    def __str__(self) -> str:
        low, high = self.iqm_ci
        return f"{self.iqm:.1f} [{low:.1f}, {high:.1f}]"


def aggregate_runs(
    scores: Mapping[str, np.ndarray], *, reps: int = 2000, seed: int = 0
) -> dict[str, Aggregate]:
    """IQM and mean with stratified-bootstrap 95 % intervals (``rliable``).

    Args:
        scores: per policy, ``(runs, populations)`` scores (training seeds × evaluation
            seeds); a policy that is not trained (a baseline) has one run.
        reps: bootstrap resamples.
        seed: seeds the bootstrap.
    """
    from rliable import library, metrics

    def both(values: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(values), metrics.aggregate_mean(values)])

    arrays = {name: np.atleast_2d(np.asarray(value, float)) for name, value in scores.items()}
    for name, value in arrays.items():
        if value.ndim != 2 or value.size == 0 or not np.isfinite(value).all():
            raise ValueError(
                f"scores[{name!r}] must be a finite (runs, populations) array, got shape "
                f"{value.shape}."
            )
    # Each (training seed, population) pair is one run of the one task: the bootstrap
    # resamples pairs, so a baseline (one run, several populations) gets an interval too.
    flat = {name: value.reshape(-1, 1) for name, value in arrays.items()}
    with warnings.catch_warnings():
        # rliable 1.2 passes arch a RandomState, which arch 7 deprecates.
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = library.get_interval_estimates(
            flat, both, reps=reps, random_state=np.random.RandomState(seed)
        )
    return {
        name: Aggregate(
            iqm=float(point[name][0]),
            iqm_ci=(float(interval[name][0, 0]), float(interval[name][1, 0])),
            mean=float(point[name][1]),
            mean_ci=(float(interval[name][0, 1]), float(interval[name][1, 1])),
            runs=arrays[name].shape[0],
        )
        for name in arrays
    }


def steps_to_reach(curves: Sequence[Sequence[tuple[int, float]]], target: float) -> np.ndarray:
    """``(runs,)`` the first environment step at which each learning curve (``(steps,
    score)`` points in order) reaches ``target``; NaN for a run that never does."""
    reached = []
    for curve in curves:
        hits = [steps for steps, score in curve if score >= target]
        reached.append(float(hits[0]) if hits else np.nan)
    return np.array(reached)


@dataclass(frozen=True)
class Reach:
    """How many environment steps the runs needed to reach a target: ``reached`` of
    ``runs`` did within the budget; ``mean`` over those, with a percentile-bootstrap 95 %
    interval over runs (NaN when none reached it)."""

    runs: int
    reached: int
    mean: float
    ci: tuple[float, float]

    def __str__(self) -> str:
        if not self.reached:
            return f"not reached within the budget (0 of {self.runs} runs)"
        low, high = self.ci
        return (
            f"{self.mean:,.0f} steps [{low:,.0f}, {high:,.0f}] ({self.reached} of {self.runs} runs)"
        )


def reach_summary(steps: Sequence[float], *, reps: int = 2000, seed: int = 0) -> Reach:
    """Summarise `steps_to_reach`'s ``(runs,)`` result (NaN: a run that never reached)."""
    values = np.asarray(steps, float)
    reached = values[np.isfinite(values)]
    if reached.size == 0:
        return Reach(values.size, 0, float("nan"), (float("nan"), float("nan")))
    rng = np.random.default_rng(seed)
    means = rng.choice(reached, (reps, reached.size)).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Reach(values.size, int(reached.size), float(reached.mean()), (float(low), float(high)))
