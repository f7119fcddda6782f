"""Interaction logs → per-user sequences (`UserSequences`), and the users' split.

A log (see `loe_gym.logs`) becomes `UserSequences`: every user's rows, ordered by
``(day, session, step, position)``, in flat numpy arrays cut by ``offsets``; batches of
tensors for the predictor are assembled from them in `loe_gym.predictor.batches`.

Gap buckets, the time between a row and the row before it in the user's sequence:

======  =====================================================
bucket  meaning
======  =====================================================
0       padding
1       same session as the previous row
2       new session on the same or the next day; a user's first row
3 …     new session after 2, 3, … days; the last bucket,
        ``num_gap_buckets − 1``, holds that many days or more
======  =====================================================

The privileged columns of a log (``true_click_probability``, ``true_watch_time``,
``true_return_probability``) are carried along for evaluation only (Bayes references
in `loe_gym.predictor.metrics`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import pyarrow as pa

from loe_gym.errors import check_positive_int
from loe_gym.logs import (
    PRIVILEGED_COLUMNS,
    LogSchemaError,
    log_part_files,
    read_log,
    read_user_first_days,
)
from loe_gym.predictor.censoring import imported_policy_rows, return_label_known

__all__ = [
    "LoadReport",
    "UserSequences",
    "item_popularity",
    "load_sequences",
    "logged_item_popularity",
    "new_session_gap",
    "split_users",
]

# Columns read from a log, by the kind of values they must hold.
_COLUMN_KINDS: Final = {
    "user_id": "integer",
    "day": "integer",
    "session": "integer",
    "step": "integer",
    "position": "integer",
    "item_id": "integer",
    "clicked": "bool",
    "watch_time": "float",
    "completion": "float",
    "session_end": "bool",
    "returned_next_day": "bool",
}
_TYPE_CHECKS: Final = {
    "integer": pa.types.is_integer,
    "bool": pa.types.is_boolean,
    "float": pa.types.is_floating,
}


@dataclass(frozen=True, eq=False)
class UserSequences:
    """Every user's interaction rows, ordered in time, as flat arrays cut by ``offsets``.

    User ``u`` owns rows ``offsets[u]:offsets[u + 1]`` of every per-row array. Build it
    with `load_sequences`; `select` and `split_users` make subsets.

    Attributes:
        offsets: ``(num_users + 1,) int64`` row offsets, from 0 to ``num_rows``.
        user_id: ``(num_users,) int64`` the log's user ids, ascending.
        item_id: ``(num_rows,) int64`` catalog ids of the items shown.
        clicked: ``(num_rows,) bool``.
        watch_time: ``(num_rows,) float32`` minutes watched, 0 where not clicked.
        completion: ``(num_rows,) float32`` in [0, 1].
        session_end: ``(num_rows,) bool`` the row's step ended the session.
        returned_next_day: ``(num_rows,) bool`` the session ended and the next visit
            was the next day.
        gap_bucket: ``(num_rows,) int64`` time since the previous row, in
            ``[1, num_gap_buckets)`` (see the module docstring).
        day, session, step: ``(num_rows,) int64`` when the row happened.
        true_click_probability, true_watch_time, true_return_probability:
            ``(num_rows,) float32`` the log's privileged columns, for evaluation only;
            all NaN when the log has none (``has_privileged`` False).
        num_items: catalog size; item ids lie in ``[0, num_items)``.
        num_gap_buckets: number of gap buckets, padding included.
        has_privileged: the log had the privileged columns.
        policy: ``(num_rows,) int32`` index into ``policy_names`` of the policy that
            chose each row's slate (all 0 when not given).
        policy_names: the log's ``policy`` values (a mixture logs its components as
            ``"<mixture>:<component>"``).
        return_known: ``(num_rows,) bool`` whether the next-day return after the row's
            session is known; False on the last session of each user of an imported log,
            whose return the log cannot tell (right-censored,
            `loe_gym.predictor.censoring`). All True when not given.
    """

    offsets: np.ndarray
    user_id: np.ndarray
    item_id: np.ndarray
    clicked: np.ndarray
    watch_time: np.ndarray
    completion: np.ndarray
    session_end: np.ndarray
    returned_next_day: np.ndarray
    gap_bucket: np.ndarray
    day: np.ndarray
    session: np.ndarray
    step: np.ndarray
    true_click_probability: np.ndarray
    true_watch_time: np.ndarray
    true_return_probability: np.ndarray
    num_items: int
    num_gap_buckets: int
    has_privileged: bool
    policy: np.ndarray | None = None
    policy_names: tuple[str, ...] = ("unknown",)
    return_known: np.ndarray | None = None

    _ROW_FIELDS: ClassVar[tuple[str, ...]] = (
        "item_id",
        "clicked",
        "watch_time",
        "completion",
        "session_end",
        "returned_next_day",
        "gap_bucket",
        "day",
        "session",
        "step",
        "true_click_probability",
        "true_watch_time",
        "true_return_probability",
        "policy",
        "return_known",
    )

    def __post_init__(self) -> None:
        if self.policy is None:
            object.__setattr__(self, "policy", np.zeros(self.item_id.shape, dtype=np.int32))
        if self.return_known is None:
            object.__setattr__(self, "return_known", np.ones(self.item_id.shape, dtype=bool))
        offsets = self.offsets
        if offsets.ndim != 1 or offsets.size != self.user_id.size + 1 or offsets[0] != 0:
            raise ValueError(
                f"offsets must have shape (num_users + 1,) = ({self.user_id.size + 1},) and "
                f"start at 0, got shape {offsets.shape}."
            )
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing.")
        for name in self._ROW_FIELDS:
            size = getattr(self, name).shape
            if size != (int(offsets[-1]),):
                raise ValueError(
                    f"{name} must have shape (num_rows,) = ({int(offsets[-1])},), got {size}."
                )

    @property
    def num_users(self) -> int:
        return int(self.user_id.size)

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """``(num_users,) int64`` rows per user."""
        return np.diff(self.offsets)

    def row_user_index(self) -> np.ndarray:
        """``(num_rows,) int64`` the index (in this object, not the log's id) of each
        row's user."""
        return np.repeat(np.arange(self.num_users, dtype=np.int64), self.lengths)

    def select(self, users: Sequence[int] | np.ndarray) -> UserSequences:
        """The sequences of the users at indices ``users`` (in that order)."""
        users = np.asarray(users, dtype=np.int64)
        if users.ndim != 1 or (users.size and (users.min() < 0 or users.max() >= self.num_users)):
            raise IndexError(
                f"users must be a 1-d array of indices in [0, {self.num_users}), got "
                f"shape {users.shape}."
            )
        lengths = self.lengths[users]
        offsets = np.zeros(users.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Row r of the result is row (start of its user) + (r − new start of its user).
        shift = np.repeat(self.offsets[:-1][users] - offsets[:-1], lengths)
        rows = shift + np.arange(offsets[-1], dtype=np.int64)
        return UserSequences(
            offsets=offsets,
            user_id=self.user_id[users],
            **{name: getattr(self, name)[rows] for name in self._ROW_FIELDS},
            num_items=self.num_items,
            num_gap_buckets=self.num_gap_buckets,
            has_privileged=self.has_privileged,
            policy_names=self.policy_names,
        )

    def __repr__(self) -> str:
        return (
            f"UserSequences(num_users={self.num_users}, num_rows={self.num_rows}, "
            f"num_items={self.num_items}, has_privileged={self.has_privileged})"
        )


@dataclass(frozen=True)
class LoadReport:
    """What `load_sequences` kept and dropped, and why.

    Attributes:
        source: the log path, or ``"the table"``.
        users_kept, rows_kept: users and rows in the sequences.
        users_dropped, rows_dropped: users and rows left out.
        dropped: reason → ``(users, rows)`` dropped for it.
        session_ends: sessions ended in the sequences (next-day return labels).
        censored_returns: of those, the ones whose return is unknown (the last session
            of each user of an imported log; `loe_gym.predictor.censoring`): masked out
            of the return loss and the return AUC, not labelled "did not return".
    """

    source: str
    users_kept: int
    rows_kept: int
    users_dropped: int
    rows_dropped: int
    dropped: Mapping[str, tuple[int, int]]
    session_ends: int = 0
    censored_returns: int = 0

    def __str__(self) -> str:
        text = f"{self.source}: kept {self.users_kept} users ({self.rows_kept} rows)"
        for reason, (users, rows) in self.dropped.items():
            text += f"; dropped {users} users ({rows} rows): {reason}"
        if self.censored_returns:
            text += (
                f"; {self.censored_returns} of {self.session_ends} next-day return labels "
                "censored (last sessions of an imported log)"
            )
        return text + "."


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy()


def _check_table(table: pa.Table, source: str, num_items: int) -> bool:
    """Raise `LogSchemaError` naming ``source``, row and column of the first problem;
    return whether the table has the privileged columns."""
    for name, kind in _COLUMN_KINDS.items():
        if name not in table.column_names:
            raise LogSchemaError(
                f"{source} has no column {name!r}; the predictor needs the columns "
                f"{list(_COLUMN_KINDS)}."
            )
        found = table.schema.field(name).type
        if not _TYPE_CHECKS[kind](found):
            raise LogSchemaError(
                f"Column {name!r} of {source} has type {found}, expected {kind} values."
            )
    present = [name for name in PRIVILEGED_COLUMNS if name in table.column_names]
    if present and len(present) < len(PRIVILEGED_COLUMNS):
        missing = [name for name in PRIVILEGED_COLUMNS if name not in present]
        raise LogSchemaError(
            f"{source} has the privileged column(s) {present} but no column {missing[0]!r}."
        )
    for name in present:
        found = table.schema.field(name).type
        if not pa.types.is_floating(found):
            raise LogSchemaError(
                f"Column {name!r} of {source} has type {found}, expected float values."
            )
    # Privileged columns may be null where unknown (pandas turns NaN into null): NaN then.
    for name in _COLUMN_KINDS:
        column = table.column(name)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise LogSchemaError(f"{source} row {row}, column {name!r}: missing value.")
    items = _numpy(table.column("item_id"))
    bad = (items < 0) | (items >= num_items)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LogSchemaError(
            f"{source} row {row}, column 'item_id': {int(items[row])} is outside the catalog "
            f"[0, {num_items}). Pass the num_items of the catalog the log was written with."
        )
    labels = {"watch_time": (0.0, np.inf), "completion": (0.0, 1.0)}
    for name, (low, high) in labels.items():
        values = _numpy(table.column(name))
        with np.errstate(invalid="ignore"):
            bad = ~((values >= low) & (values <= high)) | ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = float(values[row])
            what = "NaN label" if math.isnan(value) else f"{value!r} is outside [{low:g}, {high:g}]"
            raise LogSchemaError(f"{source} row {row}, column {name!r}: {what}.")
    return bool(present)


def _read_parts(
    log: str | os.PathLike[str] | pa.Table | Any, num_items: int, allow_partial: bool
) -> tuple[str, list[pa.Table], bool]:
    """The checked tables of ``log`` (one per part file), its name and privileged flag."""
    if isinstance(log, (str, os.PathLike)):
        source = str(log)
        tables = []
        flags = []
        for file in log_part_files(log, allow_partial=allow_partial):
            table = read_log(file)  # checks the log schema, naming the file
            flags.append(_check_table(table, repr(str(file)), num_items))
            tables.append(table)
        return source, tables, bool(flags) and all(flags)
    if not isinstance(log, pa.Table):
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is optional
            pd = None
        if pd is None or not isinstance(log, pd.DataFrame):
            raise TypeError(
                "load_sequences needs a log directory path, a Parquet file path, a "
                f"pyarrow.Table or a pandas.DataFrame; got {type(log).__name__}."
            )
        log = pa.Table.from_pandas(log, preserve_index=False)
    return "the table", [log], _check_table(log, "the table", num_items)


def load_sequences(
    log: str | os.PathLike[str] | pa.Table | Any,
    *,
    num_items: int,
    num_gap_buckets: int = 10,
    min_length: int = 2,
    allow_partial: bool = False,
) -> tuple[UserSequences, LoadReport]:
    """Read an interaction log into per-user sequences.

    Args:
        log: a log directory or part file (see `loe_gym.logs`), or a ``pyarrow.Table``
            or ``pandas.DataFrame`` with the log's columns (``user_id``, ``day``,
            ``session``, ``step``, ``position``, ``item_id``, ``clicked``,
            ``watch_time``, ``completion``, ``session_end``, ``returned_next_day``;
            privileged columns optional).
        num_items: the catalog size; every item id must lie in ``[0, num_items)``.
        num_gap_buckets: gap buckets including padding (≥ 3; see the module docstring).
        min_length: users with fewer rows are dropped and counted in the report.
        allow_partial: read an unclosed log (`loe_gym.logs.log_part_files`).

    Returns:
        The sequences, ordered by user id then ``(day, session, step, position)``,
        and a `LoadReport` of the users and rows kept and dropped.

    Raises:
        LogSchemaError: naming the file (or "the table"), row and column of a missing
            column, a wrong type, a missing or NaN value, an item id outside the catalog,
            or a log without rows.
    """
    num_items = check_positive_int("num_items", num_items)
    num_gap_buckets = check_positive_int("num_gap_buckets", num_gap_buckets)
    if num_gap_buckets < 3:
        raise ValueError(
            f"num_gap_buckets must be at least 3 (padding, same session, next day), "
            f"got {num_gap_buckets}."
        )
    min_length = check_positive_int("min_length", min_length)
    source, tables, privileged = _read_parts(log, num_items, allow_partial)
    num_rows = sum(table.num_rows for table in tables)
    if num_rows == 0:
        raise LogSchemaError(f"{source} holds no interaction rows; there is nothing to learn.")
    columns = _read_columns(tables, privileged)
    columns["policy"], policy_names = _policies(tables)
    # lexsort sorts by the last key first: user, day, session, step, then position.
    order = np.lexsort(
        tuple(columns[name] for name in ("position", "step", "session", "day", "user_id"))
    )
    columns = {name: values[order] for name, values in columns.items()}
    users, counts = np.unique(columns["user_id"], return_counts=True)

    keep_user = counts >= min_length
    keep_row = np.repeat(keep_user, counts)
    dropped_users = int(np.count_nonzero(~keep_user))
    dropped_rows = int(counts[~keep_user].sum())
    if dropped_users:
        columns = {name: values[keep_row] for name, values in columns.items()}
    counts = counts[keep_user]
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    day, session = columns["day"].astype(np.int64), columns["session"].astype(np.int64)
    gap = _gap_buckets(day, session, offsets, num_gap_buckets)

    window_end = _window_end_days(log, users[keep_user], day, offsets)
    sequences = _user_sequences(
        columns, users[keep_user], offsets, gap, num_items, num_gap_buckets, privileged,
        policy_names, window_end,
    )  # fmt: skip
    dropped = {f"fewer than min_length={min_length} rows": (dropped_users, dropped_rows)}
    report = LoadReport(
        source=source,
        users_kept=sequences.num_users,
        rows_kept=sequences.num_rows,
        users_dropped=dropped_users,
        rows_dropped=dropped_rows,
        dropped=dropped if dropped_users else {},
        **_censoring_counts(sequences),
    )
    return sequences, report


def _censoring_counts(sequences: UserSequences) -> dict[str, int]:
    """`LoadReport`'s ``session_ends`` and ``censored_returns``."""
    ends = sequences.session_end
    censored = ends & ~np.asarray(sequences.return_known, dtype=bool)
    return {"session_ends": int(ends.sum()), "censored_returns": int(censored.sum())}


def _read_columns(tables: list[pa.Table], privileged: bool) -> dict[str, np.ndarray]:
    """The log's columns (the privileged ones too if ``privileged``), over all parts."""
    names = [*_COLUMN_KINDS, *(PRIVILEGED_COLUMNS if privileged else ())]
    return {
        name: np.concatenate(
            [_numpy(table.column(name).fill_null(np.nan)) for table in tables]
            if name in PRIVILEGED_COLUMNS
            else [_numpy(table.column(name)) for table in tables]
        )
        for name in names
    }


def _window_end_days(
    log: Any, user_ids: np.ndarray, day: np.ndarray, offsets: np.ndarray
) -> np.ndarray | None:
    """Per user, the log's last calendar day in the user's own day count, for an imported
    log whose users' first days are known (None otherwise): a last session ending before
    that day has a known next-day return."""
    if not isinstance(log, (str, os.PathLike)) or user_ids.size == 0:
        return None
    first_days = read_user_first_days(log)
    if first_days is None:
        return None
    first = first_days[user_ids]
    last_calendar_day = int((day + np.repeat(first, np.diff(offsets))).max())
    return last_calendar_day - first


def _user_sequences(
    columns: dict[str, np.ndarray],
    user_ids: np.ndarray,
    offsets: np.ndarray,
    gap_bucket: np.ndarray,
    num_items: int,
    num_gap_buckets: int,
    privileged: bool,
    policy_names: list[str],
    window_end: np.ndarray | None = None,
) -> UserSequences:
    """`UserSequences` of the sorted, kept ``columns`` of a log; ``window_end (num_users,)``
    the last day the log observed, in each user's day count (None: unknown)."""
    nan = np.full(offsets[-1], np.nan, dtype=np.float32)
    day, session = columns["day"].astype(np.int64), columns["session"].astype(np.int64)
    imported = imported_policy_rows(columns["policy"], policy_names)
    return UserSequences(
        offsets=offsets,
        user_id=user_ids.astype(np.int64),
        item_id=columns["item_id"].astype(np.int64),
        clicked=columns["clicked"].astype(bool),
        watch_time=columns["watch_time"].astype(np.float32),
        completion=columns["completion"].astype(np.float32),
        session_end=columns["session_end"].astype(bool),
        returned_next_day=columns["returned_next_day"].astype(bool),
        gap_bucket=gap_bucket,
        day=columns["day"].astype(np.int64),
        session=columns["session"].astype(np.int64),
        step=columns["step"].astype(np.int64),
        true_click_probability=columns.get("true_click_probability", nan).astype(np.float32),
        true_watch_time=columns.get("true_watch_time", nan).astype(np.float32),
        true_return_probability=columns.get("true_return_probability", nan).astype(np.float32),
        num_items=num_items,
        num_gap_buckets=num_gap_buckets,
        has_privileged=privileged,
        policy=columns["policy"],
        policy_names=tuple(policy_names) or ("unknown",),
        return_known=return_label_known(offsets, day, session, imported, window_end),
    )


def _policies(tables: list[pa.Table]) -> tuple[np.ndarray, list[str]]:
    """``(codes (num_rows,) int32, names)`` of the logging policy of every row of the
    parts (code 0 where a part has no ``policy`` column)."""
    # The policy column is dictionary-encoded per part: map every part onto one list.
    policy_names: list[str] = []
    policy_parts = []
    for table in tables:
        if "policy" not in table.column_names:
            policy_parts.append(np.zeros(table.num_rows, dtype=np.int32))
            continue
        values = table.column("policy").cast(pa.string()).to_numpy(zero_copy_only=False)
        part_names, codes = np.unique(values.astype(str), return_inverse=True)
        for name in part_names:
            if name not in policy_names:
                policy_names.append(str(name))
        lookup = np.array([policy_names.index(n) for n in part_names], dtype=np.int32)
        policy_parts.append(lookup[codes.reshape(-1)] if codes.size else codes.astype(np.int32))
    return np.concatenate(policy_parts).astype(np.int32), policy_names


def _gap_buckets(
    day: np.ndarray, session: np.ndarray, offsets: np.ndarray, num_gap_buckets: int
) -> np.ndarray:
    """Gap bucket ``(num_rows,) int64`` of every row of sorted sequences cut by
    ``offsets`` (see the module docstring)."""
    gap = np.full(day.size, 2, dtype=np.int64)
    if day.size > 1:
        same_user = np.ones(day.size - 1, dtype=bool)
        same_user[offsets[1:-1] - 1] = False  # the row before each user's first row
        same_session = same_user & (session[1:] == session[:-1])
        by_days = new_session_gap(day[1:] - day[:-1], num_gap_buckets)
        gap[1:] = np.where(same_session, 1, np.where(same_user, by_days, 2))
    return gap


# -------------------------------------------------------------------------- split


def _user_hash(user_id: np.ndarray, seed: int) -> np.ndarray:
    """``(num_users,)`` uniform numbers in [0, 1) that depend only on each id and ``seed``
    (the splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = user_id.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def split_users(
    sequences: UserSequences,
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[UserSequences, UserSequences, UserSequences]:
    """Split users (never rows) into train, validation and test sequences.

    Users are ordered by a hash of their user id and ``seed``; the first
    ``round(test_fraction · num_users)`` are the test users, the next
    ``round(validation_fraction · num_users)`` the validation users, the rest train.
    The order depends on the ids only, so two logs of one population split their
    common users alike (up to the users at the cuts).

    Returns:
        ``(train, validation, test)``; each keeps its users in user-id order.
    """
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {value}.")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be below 1 to leave training users, "
            f"got {validation_fraction} + {test_fraction}."
        )
    num_users = sequences.num_users
    num_test = round(test_fraction * num_users)
    num_validation = round(validation_fraction * num_users)
    # Ties of the 53-bit key are broken by user id (lexsort's last key comes first).
    order = np.lexsort((sequences.user_id, _user_hash(sequences.user_id, int(seed))))
    test = np.sort(order[:num_test])
    validation = np.sort(order[num_test : num_test + num_validation])
    train = np.sort(order[num_test + num_validation :])
    return sequences.select(train), sequences.select(validation), sequences.select(test)


def new_session_gap(days_later: np.ndarray, num_gap_buckets: int) -> np.ndarray:
    """Gap bucket of a row that starts a new session ``days_later`` days after the user's
    previous row: ``d`` days later → bucket ``d + 1`` (the same or the next day → 2), capped
    at the last bucket (see the module docstring)."""
    return np.clip(np.asarray(days_later, dtype=np.int64) + 1, 2, num_gap_buckets - 1)


def item_popularity(sequences: UserSequences, num_items: int | None = None) -> np.ndarray:
    """``(num_items,) int64`` clicks per catalog item: the popularity baseline's scores.

    Args:
        num_items: catalog size; the sequences' by default.
    """
    num_items = sequences.num_items if num_items is None else num_items
    num_items = check_positive_int("num_items", num_items)
    clicked = sequences.item_id[sequences.clicked]
    if clicked.size and clicked.max() >= num_items:
        raise ValueError(
            f"num_items={num_items} is smaller than the catalog of the sequences "
            f"(item id {int(clicked.max())} was clicked)."
        )
    return np.bincount(clicked, minlength=num_items).astype(np.int64)


def logged_item_popularity(log: str | os.PathLike[str], num_items: int) -> np.ndarray:
    """``(num_items,) int64`` clicks per catalog item over a whole log (the popularity
    baseline's counts, sized from the catalog the policy acts on)."""
    return item_popularity(load_sequences(log, num_items=num_items)[0], num_items)
