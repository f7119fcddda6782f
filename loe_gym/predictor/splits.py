"""Temporal splits of a log: train on the past, evaluate on the future.

A user split (`loe_gym.predictor.sequences.split_users`) holds out whole users; a temporal
split holds out the *latest days* of every user, as a deployed model meets them: histories
keep every earlier row, targets are the rows after the cut, and items first seen after
the cut are *cold* (no row of them was trained on). Metrics comparable with the
literature's "temporal split" protocol.

A leave-last-out split (`leave_last_out_split`) is the next-item literature's protocol
(SASRec, BERT4Rec): each user's last clicked row is the test target, the clicked row before
it the validation target, and training takes the rows before that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loe_gym.logs import read_user_first_days
from loe_gym.predictor.sequences import UserSequences

__all__ = [
    "MIN_LEAVE_LAST_OUT_CLICKS",
    "LeaveLastOutSplit",
    "TemporalSplit",
    "keep_rows",
    "leave_last_out_split",
    "log_calendar_days",
    "temporal_split",
]

MIN_LEAVE_LAST_OUT_CLICKS = 3
"""Clicked rows a user needs for a leave-last-out target: one to test, one to validate and
one to train on."""


def keep_rows(sequences: UserSequences, keep: np.ndarray) -> UserSequences:
    """``sequences`` with only the rows where ``keep (num_rows,) bool`` (users kept, even
    with no row left)."""
    users = sequences.row_user_index()
    counts = np.bincount(users[keep], minlength=sequences.num_users)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(sequences.offsets.dtype)
    rows = {name: getattr(sequences, name)[keep] for name in UserSequences._ROW_FIELDS}
    return dataclasses.replace(sequences, offsets=offsets, **rows)


@dataclass(frozen=True)
class TemporalSplit:
    """Training rows before ``validation_day``, validation targets in ``[validation_day,
    test_day)`` and test targets from ``test_day`` on; each part's histories hold every
    earlier row."""

    train: UserSequences
    validation: UserSequences
    validation_rows: np.ndarray
    """``(validation.num_rows,) bool`` the validation targets."""
    test: UserSequences
    test_rows: np.ndarray
    """``(test.num_rows,) bool`` the test targets."""
    validation_day: int
    test_day: int

    def cold_items(self, num_items: int) -> np.ndarray:
        """``(num_items,) bool`` items with no row before the test day (never trained on,
        never validated on)."""
        seen = np.zeros(num_items, bool)
        seen[self.validation.item_id] = True
        return ~seen


def temporal_split(
    sequences: UserSequences,
    *,
    validation_fraction: float,
    test_fraction: float,
    calendar_days: np.ndarray | None = None,
) -> TemporalSplit:
    """Cut the log's days so that about ``test_fraction`` of the rows fall on test days and
    ``validation_fraction`` on the validation days before them (whole days each).

    ``calendar_days (num_rows,)`` are the rows' days on one clock for every user; by default
    ``sequences.day``, which is that clock in simulated logs. An imported log counts each
    user's days from the user's first visit: pass ``day + first_day[user]``
    (`log_calendar_days`)."""
    days = sequences.day if calendar_days is None else np.asarray(calendar_days)
    if days.size == 0:
        raise ValueError("A temporal split needs rows; the log has none.")
    order = np.sort(days)

    def cut(fraction: float) -> int:
        # The first day whose rows start the last `fraction` of rows.
        return int(order[min(order.size - 1, round((1.0 - fraction) * order.size))])

    test_day = cut(test_fraction)
    validation_day = min(cut(test_fraction + validation_fraction), test_day)
    if test_day <= int(order[0]):
        raise ValueError(
            f"The log's rows span days {int(order[0])} to {int(order[-1])}: a temporal split "
            f"with test_fraction={test_fraction} leaves no earlier day to train on. Use "
            "split='users', a smaller test_fraction or a log over more days."
        )
    before_test = days < test_day
    validation = keep_rows(sequences, before_test)
    return TemporalSplit(
        train=keep_rows(sequences, days < validation_day),
        validation=validation,
        validation_rows=days[before_test] >= validation_day,
        test=sequences,
        test_rows=~before_test,
        validation_day=validation_day,
        test_day=test_day,
    )


def log_calendar_days(sequences: UserSequences, log_path: Path) -> np.ndarray | None:
    """``(num_rows,)`` days of an imported log on one clock (``day`` + the user's first
    day, `loe_gym.logs.read_user_first_days`), or None for a log whose days already are."""
    first_days = read_user_first_days(log_path)
    if first_days is None:
        return None
    return sequences.day + first_days[sequences.user_id][sequences.row_user_index()]


@dataclass(frozen=True)
class LeaveLastOutSplit:
    """Per user with at least `MIN_LEAVE_LAST_OUT_CLICKS` clicked rows: the last clicked
    row is the test target, the clicked row before it the validation target, and the rows
    before the validation target's step train. Users with fewer clicks have no target:
    all their rows train. Each part's histories hold every earlier row of the user."""

    train: UserSequences
    validation: UserSequences
    validation_rows: np.ndarray
    """``(validation.num_rows,) bool`` one row per user with targets."""
    test: UserSequences
    test_rows: np.ndarray
    """``(test.num_rows,) bool`` one row per user with targets."""
    users_with_targets: int
    users_without_targets: int
    """Users with fewer than `MIN_LEAVE_LAST_OUT_CLICKS` clicked rows (training only)."""


def leave_last_out_split(sequences: UserSequences) -> LeaveLastOutSplit:
    """Hold out each user's last clicked row (test) and the one before it (validation)."""
    user = sequences.row_user_index()
    clicked_rows = np.flatnonzero(sequences.clicked)
    clicks = np.bincount(user[clicked_rows], minlength=sequences.num_users)
    has_targets = clicks >= MIN_LEAVE_LAST_OUT_CLICKS
    if not has_targets.any():
        raise ValueError(
            f"A leave-last-out split needs users with at least {MIN_LEAVE_LAST_OUT_CLICKS} "
            f"clicked rows; none of the log's {sequences.num_users} users has (most clicks "
            f"of one user: {int(clicks.max(initial=0))}). Use split='users' or a log of "
            "longer lives."
        )
    # Rows are ordered by user, then time: each user's clicked rows are consecutive in
    # `clicked_rows`, the last ones ending at the running count of clicks.
    ends = np.cumsum(clicks)
    row = np.arange(sequences.num_rows)
    beyond = sequences.num_rows  # past every row: the user's rows all stay
    last = np.where(has_targets, clicked_rows[np.maximum(ends - 1, 0)], beyond)[user]
    second = np.where(has_targets, clicked_rows[np.maximum(ends - 2, 0)], beyond)[user]
    anchor = np.minimum(second, beyond - 1)  # a valid index to compare steps with
    same_step = (
        (sequences.day == sequences.day[anchor])
        & (sequences.session == sequences.session[anchor])
        & (sequences.step == sequences.step[anchor])
    )
    with_targets = has_targets[user]
    train = keep_rows(sequences, (row < second) & ~(with_targets & same_step))
    validation = keep_rows(sequences, with_targets & (row <= second))
    test = keep_rows(sequences, with_targets & (row <= last))
    return LeaveLastOutSplit(
        train=train,
        validation=validation,
        validation_rows=(row == second)[with_targets & (row <= second)],
        test=test,
        test_rows=(row == last)[with_targets & (row <= last)],
        users_with_targets=int(has_targets.sum()),
        users_without_targets=int((~has_targets).sum()),
    )
