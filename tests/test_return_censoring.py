"""Right-censored next-day-return labels (`loe_gym.predictor.censoring`): an imported
log's last session per user has an unknown return and is masked; a simulated log's
labels are the simulator's truth and stay as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.collect import collect_logs
from loe_gym.predictor.batches import TargetBatches
from loe_gym.predictor.censoring import return_label_known
from loe_gym.predictor.sequences import load_sequences


def _hand_built_log(policy: str) -> pd.DataFrame:
    """Two users, one item per step. User 0: sessions on days 0 (2 steps), 1 and 3; user
    1: sessions on days 0 and 5 (2 steps). ``returned_next_day`` as an importer writes
    it: only day 0 → day 1 of user 0 is a next-day return."""
    rows = [
        # user, day, session, step, session_end, returned_next_day
        (0, 0, 0, 0, False, False),
        (0, 0, 0, 1, True, True),
        (0, 1, 1, 0, True, False),
        (0, 3, 2, 0, True, False),  # user 0's last session: censored
        (1, 0, 0, 0, True, False),
        (1, 5, 1, 0, False, False),  # user 1's last session (2 steps): censored
        (1, 5, 1, 1, True, False),
    ]
    frame = pd.DataFrame(
        rows, columns=["user_id", "day", "session", "step", "session_end", "returned_next_day"]
    )
    n = len(frame)
    frame["position"] = 0
    frame["item_id"] = np.arange(n) % 3
    frame["clicked"] = np.arange(n) % 2 == 0
    frame["watch_time"] = np.where(frame["clicked"], 1.0, 0.0)
    frame["completion"] = np.where(frame["clicked"], 0.5, 0.0)
    frame["policy"] = policy
    return frame


def test_an_imported_logs_last_sessions_are_censored() -> None:
    sequences, report = load_sequences(_hand_built_log("imported:hand"), num_items=3)
    known = np.asarray(sequences.return_known)
    np.testing.assert_array_equal(known, [True, True, True, False, True, False, False])
    assert report.session_ends == 5 and report.censored_returns == 2
    assert "2 of 5 next-day return labels censored" in str(report)
    # Neither the session-end labels nor the whole-session labels use a censored return.
    for dense in (False, True):
        batches = TargetBatches(
            sequences, batch_size=16, shuffle=False, session_return_labels=dense
        )
        batch = batches.batch(np.arange(sequences.num_rows))
        mask = batch["return_mask"].numpy()
        expected = [False, True, True, False, True, False, False]
        if dense:  # every row of a known session carries its session's outcome
            expected = [True, True, True, False, True, False, False]
        np.testing.assert_array_equal(mask, expected)
        assert batch["return_labels"].numpy()[1] == 1.0


def test_a_simulators_labels_are_unchanged() -> None:
    """The same rows written by a simulator's policy: its gaps are known, nothing is
    censored, and the masks are the session ends as before."""
    sequences, report = load_sequences(_hand_built_log("random"), num_items=3)
    assert np.asarray(sequences.return_known).all() and report.censored_returns == 0
    batch = TargetBatches(sequences, batch_size=16, shuffle=False).batch(np.arange(7))
    np.testing.assert_array_equal(batch["return_mask"].numpy(), sequences.session_end)


def test_a_collected_log_keeps_every_return_label(tmp_path: Path) -> None:
    collect_logs(
        num_users=20, path=tmp_path / "logs", policy="random", seed=0, horizon_days=3,
        progress=False,
    )  # fmt: skip
    sequences, report = load_sequences(tmp_path / "logs", num_items=1000)
    assert report.censored_returns == 0 and report.session_ends > 0
    assert np.asarray(sequences.return_known).all()
    batches = TargetBatches(sequences, batch_size=64, shuffle=False)
    batch = batches.batch(batches.targets)
    np.testing.assert_array_equal(
        batch["return_mask"].numpy(), sequences.session_end[batches.targets]
    )


@pytest.mark.parametrize(
    ("window_end_day", "expected"),
    [
        (None, [True, True, False, True, False]),
        # The window covered day 4: user 0's last session (day 3) was followed by a
        # silent day 4, so "no next-day return" is known; user 1's (day 5) is not.
        (4, [True, True, True, True, False]),
        # Per user: user 1's window ended on day 9, so its day-5 session is known too.
        (np.array([3, 9]), [True, True, False, True, True]),
    ],
)
def test_a_known_window_end_censors_only_sessions_at_its_edge(
    window_end_day: int | np.ndarray | None, expected: list[bool]
) -> None:
    offsets = np.array([0, 3, 5])
    day = np.array([0, 1, 3, 0, 5])
    session = np.array([0, 1, 2, 0, 1])
    imported = np.ones(5, dtype=bool)
    known = return_label_known(offsets, day, session, imported, window_end_day)
    np.testing.assert_array_equal(known, expected)
