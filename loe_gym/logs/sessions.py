"""Sessions, days and return gaps of an imported log, from its timestamps (`sessionize`).

The rules, per user, rows sorted by timestamp (stable: ties keep the order of the files
and of the rows in them):

* a new session starts at the user's first row and wherever the time since the user's
  previous row exceeds ``session_gap_minutes``; ``session`` and ``step`` count from 0;
* ``day`` is the calendar day (UTC shifted by ``utc_offset_hours``) of the session's first
  row minus that of the user's first row: every row of a session has its session's day;
* ``session_end`` marks each session's last row;
* ``gap_days`` on a session's last row is the next session's day minus this session's
  day, **at least 1**: a same-day return counts as 1, because in the log schema
  ``gap_days ≥ 1`` means "the user came back" and 0 at a session end means "no further
  visit"; elsewhere 0;
* the user's last session gets ``gap_days`` 0: the log ends there, which the schema reads
  as the end of the user's life (right-censored; `ImportReport.censored_last_sessions`
  counts these sessions);
* ``returned_next_day`` = ``session_end`` and ``gap_days == 1``;
* ``episode`` and ``position`` are 0 (one life per user, one item per step); ``policy``
  is ``"imported:<mapping name>"``.
"""

from __future__ import annotations

from typing import Final

import numpy as np

__all__ = ["sessionize"]

_SECONDS_PER_DAY: Final = 86_400.0


def sessionize(
    user: np.ndarray,
    timestamp: np.ndarray,
    *,
    session_gap_minutes: float = 30.0,
    utc_offset_hours: float = 0.0,
) -> dict[str, np.ndarray]:
    """Sessions, days and return gaps of rows sorted by user, then timestamp.

    Applies the rules of the module docstring. The rows must be sorted by ``user`` and,
    within a user, by ``timestamp`` (ties allowed).

    Args:
        user: ``(n,)`` integer user of each row.
        timestamp: ``(n,)`` float seconds since the Unix epoch (UTC).
        session_gap_minutes: a longer gap between two rows of a user starts a session.
        utc_offset_hours: calendar days are cut at midnight of UTC plus this offset.

    Returns:
        ``(n,)`` arrays named as log columns: ``day``, ``session``, ``step``,
        ``gap_days`` (int64), ``session_end`` and ``returned_next_day`` (bool).
    """
    user = np.asarray(user)
    timestamp = np.asarray(timestamp, dtype=np.float64)
    if user.ndim != 1 or timestamp.shape != user.shape:
        raise ValueError(
            f"user and timestamp must have one shape (n,), got {user.shape} and {timestamp.shape}."
        )
    if user.dtype.kind not in "iu":
        raise TypeError(f"user must hold integers, got dtype {user.dtype}.")
    if not np.isfinite(timestamp).all():
        raise ValueError("timestamp must be finite; found NaN or inf.")
    n = user.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return {
            "day": empty,
            "session": empty.copy(),
            "step": empty.copy(),
            "gap_days": empty.copy(),
            "session_end": np.zeros(0, dtype=bool),
            "returned_next_day": np.zeros(0, dtype=bool),
        }
    same_user = user[1:] == user[:-1]
    if not np.all((user[1:] > user[:-1]) | (same_user & (timestamp[1:] >= timestamp[:-1]))):
        raise ValueError("Rows must be sorted by user, then by timestamp within each user.")
    rows = np.arange(n, dtype=np.int64)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = ~same_user
    new_session = new_user.copy()
    new_session[1:] |= (timestamp[1:] - timestamp[:-1]) > session_gap_minutes * 60.0
    # Global session index of each row, and each session's first row and user start.
    session_index = np.cumsum(new_session) - 1
    session_start = rows[new_session]
    user_start = np.maximum.accumulate(np.where(new_user, rows, 0))
    first_session_of_user = session_index[user_start]
    session = session_index - first_session_of_user
    step = rows - session_start[session_index]
    calendar = np.floor((timestamp + utc_offset_hours * 3600.0) / _SECONDS_PER_DAY).astype(np.int64)
    session_day = calendar[session_start] - calendar[user_start[session_start]]
    day = session_day[session_index]
    session_end = np.ones(n, dtype=bool)
    session_end[:-1] = new_session[1:]
    # Per session: days to the user's next session (at least 1), 0 after the last one.
    num_sessions = session_start.size
    next_in_user = np.zeros(num_sessions, dtype=bool)
    next_in_user[:-1] = ~new_user[session_start[1:]]
    session_gap = np.zeros(num_sessions, dtype=np.int64)
    session_gap[:-1] = np.maximum(session_day[1:] - session_day[:-1], 1)
    session_gap = np.where(next_in_user, session_gap, 0)
    gap_days = np.where(session_end, session_gap[session_index], 0)
    return {
        "day": day,
        "session": session,
        "step": step,
        "gap_days": gap_days,
        "session_end": session_end,
        "returned_next_day": session_end & (gap_days == 1),
    }


def user_first_days(
    user: np.ndarray, timestamp: np.ndarray, *, num_users: int, utc_offset_hours: float = 0.0
) -> np.ndarray:
    """``(num_users,) int64`` calendar day of each user's first row, counted from the log's
    first calendar day: a row's calendar day in the log is ``day + first_day[user]`` (its
    ``day`` counts from the user's first visit). Users without rows get 0."""
    calendar = np.floor((timestamp + utc_offset_hours * 3600.0) / _SECONDS_PER_DAY).astype(np.int64)
    first = np.full(num_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, user, calendar)
    seen = first != np.iinfo(np.int64).max
    start = first[seen].min() if seen.any() else 0
    return np.where(seen, first - start, 0)
