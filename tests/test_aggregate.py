"""Aggregates over training seeds (rliable's IQM and bootstrap CIs) and sample efficiency."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from agents.aggregate import aggregate_runs, reach_summary, steps_to_reach

SCORES = arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(2, 5)),
    elements=st.floats(0, 1000, allow_nan=False, width=32),
)


@settings(max_examples=25, deadline=None)
@given(SCORES)
def test_iqm_lies_in_its_interval_and_in_the_scores_range(scores: np.ndarray) -> None:
    result = aggregate_runs({"policy": scores}, reps=200)["policy"]
    low, high = result.iqm_ci
    tolerance = 1e-9 * max(1.0, float(np.abs(scores).max()))
    assert scores.min() - tolerance <= low <= result.iqm + tolerance
    assert result.iqm - tolerance <= high <= scores.max() + tolerance
    assert result.mean == pytest.approx(scores.mean())
    assert result.runs == scores.shape[0]


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    scores = np.array([[0.0, 10.0, 11.0, 12.0], [13.0, 14.0, 15.0, 1000.0]])
    result = aggregate_runs({"ppo": scores}, reps=100)["ppo"]
    assert result.iqm == pytest.approx(stats.trim_mean(scores.ravel(), 0.25))
    assert result.iqm == pytest.approx(12.5)  # the outliers 0 and 1000 do not count
    assert str(result).startswith("12.5 [")


def test_a_bad_score_array_is_named() -> None:
    with pytest.raises(ValueError, match=r"scores\['ppo'\] must be a finite"):
        aggregate_runs({"ppo": np.array([[1.0, np.nan]])})


def test_steps_to_reach_takes_the_first_crossing_or_nan() -> None:
    curves = [[(100, 1.0), (200, 5.0), (300, 4.0)], [(100, 0.0), (200, 1.0)]]
    reached = steps_to_reach(curves, target=4.0)
    assert reached[0] == 200 and np.isnan(reached[1])


def test_reach_summary_counts_the_runs_that_reached_and_bounds_their_mean() -> None:
    summary = reach_summary([100.0, 300.0, np.nan, 200.0])
    assert (summary.runs, summary.reached, summary.mean) == (4, 3, 200.0)
    assert 100.0 <= summary.ci[0] < 200.0 < summary.ci[1] <= 300.0
    assert "(3 of 4 runs)" in str(summary)
    never = reach_summary([np.nan, np.nan])
    assert never.reached == 0 and np.isnan(never.mean)
    assert str(never) == "not reached within the budget (0 of 2 runs)"
