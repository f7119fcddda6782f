"""Right-censored next-day-return labels: which session ends have a known return.

A session end's label ``returned_next_day`` says whether the user's next visit was the
next day. In a log written by a simulator the answer is always known: the simulator drew
the return gap (``gap_days``, 0 = churned) whether or not the next visit fell inside the
collection. In a log imported from a real platform (policy ``imported:<name>``,
`loe_gym.logs.import_logs`) the next visit is only known if it happened before the log
ends: a user's **last session** is followed by no visit in the log, and the user may
come back after the observation window closes. Its label is *unknown*, not "did not
return".

The rule (`return_label_known`), per session-ending row:

* rows chosen by any policy but ``imported:*``: known (the simulator's truth);
* imported rows followed by a later visit of the same user: known (the log saw the next
  visit, so whether it was the next day is known — a session near the window's end
  followed by a visit is known too);
* imported rows of a user's last session: unknown, unless ``window_end_day`` says the
  window still covered the next day (``day + 1 ≤ window_end_day``: the log would have
  seen a next-day visit, so "did not return the next day" is known).

Imported logs count days from each user's first visit (`loe_gym.logs.sessions`); their
``_user_ids.parquet`` keeps each user's first calendar day, so `load_sequences` passes each
user's window end (the log's last calendar day in the user's day count) and only last
sessions on the log's last day are censored. A log without those first days censors
every last session, which drops the session ends that were truly last (the users who
left) and biases the return rate upwards; a learned world takes its churn from a
Kaplan–Meier estimate (`simulators.return_gaps`) either way.

There is no churn label in the predictor; the session-continuation label is not
censored (a session cut by the window's end is a rare case of at most one session per
user).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

__all__ = ["IMPORTED_POLICY_PREFIX", "imported_policy_rows", "return_label_known"]

IMPORTED_POLICY_PREFIX: Final = "imported:"
"""The ``policy`` value of an imported log starts with this (``imported:<mapping>``)."""


def imported_policy_rows(policy: np.ndarray, policy_names: Sequence[str]) -> np.ndarray:
    """``(num_rows,) bool``: rows whose ``policy`` (codes into ``policy_names``) names
    an imported log."""
    imported = np.array(
        [str(name).startswith(IMPORTED_POLICY_PREFIX) for name in policy_names], dtype=bool
    )
    if not imported.any():
        return np.zeros(policy.shape, dtype=bool)
    return imported[policy]


def return_label_known(
    offsets: np.ndarray,
    day: np.ndarray,
    session: np.ndarray,
    imported: np.ndarray,
    window_end_day: int | np.ndarray | None = None,
) -> np.ndarray:
    """``(num_rows,) bool``: whether the next-day return after each row's session is
    known (module rules; every row of a session gets its session's answer).

    Args:
        offsets: ``(num_users + 1,)`` row offsets of the users (rows sorted by user,
            then ``(day, session, step, position)``).
        day, session: ``(num_rows,)`` of each row.
        imported: ``(num_rows,) bool`` rows of an imported log (`imported_policy_rows`).
        window_end_day: the last day the log observed, in the users' day count: one
            number for every user, ``(num_users,)`` per user, or None (unknown: every
            imported last session is censored).
    """
    num_rows = int(offsets[-1])
    known = np.ones(num_rows, dtype=bool)
    if num_rows == 0 or not imported.any():
        return known
    lengths = np.diff(offsets)
    user = np.repeat(np.arange(lengths.size), lengths)
    last_row = offsets[1:][user] - 1  # each row's user's last row
    in_last_session = (day == day[last_row]) & (session == session[last_row])
    censored = imported & in_last_session
    if window_end_day is not None:
        end = np.broadcast_to(np.asarray(window_end_day, dtype=np.int64), lengths.shape)
        censored &= day + 1 > end[user]
    known[censored] = False
    return known
