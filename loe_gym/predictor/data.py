"""Interaction logs → per-user sequences → batches of tensors for the predictor.

A log (see `loe_gym.logs`) becomes `UserSequences`: every user's rows, ordered by
``(day, session, step, position)``, in flat numpy arrays cut by ``offsets``. Two
iterables then assemble batches with numpy fancy indexing over those arrays, with no
Python loop per row:

* `TargetBatches` for the multi-task heads: one target row and the rows before it;
* `MaskedItemBatches` for masked-item pre-training: windows of consecutive rows.

Item ids inside the model are catalog ids + 2: 0 is padding (`PAD_ID`) and 1 is
``[MASK]`` (`MASK_ID`). Labels that a loss must ignore are −100 (`IGNORE_INDEX`,
PyTorch's default ``ignore_index``).

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
in `loe_gym.predictor.metrics`); batches expose them under their own keys, never as
model inputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np
import pyarrow as pa
import torch

from loe_gym.errors import check_positive_int
from loe_gym.logs import PRIVILEGED_COLUMNS, LogSchemaError, log_part_files, read_log

__all__ = [
    "IGNORE_INDEX",
    "ITEM_ID_OFFSET",
    "MASK_ID",
    "PAD_ID",
    "LoadReport",
    "MaskedItemBatches",
    "TargetBatches",
    "UserSequences",
    "item_popularity",
    "load_sequences",
    "profile_prefix_sums",
    "split_users",
]

# Local copies of the model's constants, so that data loading does not import the model.
PAD_ID: Final = 0
"""Model item id of padding."""
MASK_ID: Final = 1
"""Model item id of the ``[MASK]`` token."""
ITEM_ID_OFFSET: Final = 2
"""Model item id = catalog id + ``ITEM_ID_OFFSET``."""
IGNORE_INDEX: Final = -100
"""Label value that losses ignore."""

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

TARGET_BATCH_KEYS: Final = (
    "history_item_ids",
    "history_feedback",
    "history_gaps",
    "target_item_ids",
    "target_gaps",
    "click_labels",
    "watch_time_labels",
    "watch_time_mask",
    "continuation_labels",
    "return_labels",
    "return_mask",
    "ranking_labels",
    "user_index",
)
"""Keys of every `TargetBatches` batch (plus `PRIVILEGED_COLUMNS` for privileged logs)."""

MASKED_ITEM_BATCH_KEYS: Final = (
    "history_item_ids",
    "history_feedback",
    "history_gaps",
    "masked_item_labels",
)
"""Keys of every `MaskedItemBatches` batch."""


# --------------------------------------------------------------------- sequences


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
    )

    def __post_init__(self) -> None:
        if self.policy is None:
            object.__setattr__(self, "policy", np.zeros(self.item_id.shape, dtype=np.int32))
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
    """

    source: str
    users_kept: int
    rows_kept: int
    users_dropped: int
    rows_dropped: int
    dropped: Mapping[str, tuple[int, int]]

    def __str__(self) -> str:
        text = f"{self.source}: kept {self.users_kept} users ({self.rows_kept} rows)"
        for reason, (users, rows) in self.dropped.items():
            text += f"; dropped {users} users ({rows} rows): {reason}"
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
    log: str | os.PathLike[str] | pa.Table | Any, num_items: int
) -> tuple[str, list[pa.Table], bool]:
    """The checked tables of ``log`` (one per part file), its name and privileged flag."""
    if isinstance(log, (str, os.PathLike)):
        source = str(log)
        tables = []
        flags = []
        for file in log_part_files(log):
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

    Returns:
        The sequences, ordered by user id then ``(day, session, step, position)``,
        and a `LoadReport` of the users and rows kept and dropped.

    Raises:
        LogSchemaError: naming the file (or "the table"), row and column of a missing
            column, a wrong type, a missing or NaN value, or an item id outside the
            catalog; or when the log has no rows.
    """
    num_items = check_positive_int("num_items", num_items)
    num_gap_buckets = check_positive_int("num_gap_buckets", num_gap_buckets)
    if num_gap_buckets < 3:
        raise ValueError(
            f"num_gap_buckets must be at least 3 (padding, same session, next day), "
            f"got {num_gap_buckets}."
        )
    min_length = check_positive_int("min_length", min_length)
    source, tables, privileged = _read_parts(log, num_items)
    num_rows = sum(table.num_rows for table in tables)
    if num_rows == 0:
        raise LogSchemaError(f"{source} holds no interaction rows; there is nothing to learn.")
    names = [*_COLUMN_KINDS, *(PRIVILEGED_COLUMNS if privileged else ())]
    columns = {
        name: np.concatenate(
            [_numpy(table.column(name).fill_null(np.nan)) for table in tables]
            if name in PRIVILEGED_COLUMNS
            else [_numpy(table.column(name)) for table in tables]
        )
        for name in names
    }

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
    columns["policy"] = np.concatenate(policy_parts).astype(np.int32)

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

    day = columns["day"].astype(np.int64)
    session = columns["session"].astype(np.int64)
    gap = np.full(day.size, 2, dtype=np.int64)
    if day.size > 1:
        same_user = np.ones(day.size - 1, dtype=bool)
        same_user[offsets[1:-1] - 1] = False  # the row before each user's first row
        same_session = same_user & (session[1:] == session[:-1])
        by_days = new_session_gap(day[1:] - day[:-1], num_gap_buckets)
        gap[1:] = np.where(same_session, 1, np.where(same_user, by_days, 2))

    nan = np.full(day.size, np.nan, dtype=np.float32)
    sequences = UserSequences(
        offsets=offsets,
        user_id=users[keep_user].astype(np.int64),
        item_id=columns["item_id"].astype(np.int64),
        clicked=columns["clicked"].astype(bool),
        watch_time=columns["watch_time"].astype(np.float32),
        completion=columns["completion"].astype(np.float32),
        session_end=columns["session_end"].astype(bool),
        returned_next_day=columns["returned_next_day"].astype(bool),
        gap_bucket=gap,
        day=day,
        session=session,
        step=columns["step"].astype(np.int64),
        true_click_probability=columns.get("true_click_probability", nan).astype(np.float32),
        true_watch_time=columns.get("true_watch_time", nan).astype(np.float32),
        true_return_probability=columns.get("true_return_probability", nan).astype(np.float32),
        num_items=num_items,
        num_gap_buckets=num_gap_buckets,
        has_privileged=privileged,
        policy=columns["policy"],
        policy_names=tuple(policy_names) or ("unknown",),
    )
    dropped = {f"fewer than min_length={min_length} rows": (dropped_users, dropped_rows)}
    report = LoadReport(
        source=source,
        users_kept=sequences.num_users,
        rows_kept=sequences.num_rows,
        users_dropped=dropped_users,
        rows_dropped=dropped_rows,
        dropped=dropped if dropped_users else {},
    )
    return sequences, report


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


# ------------------------------------------------------------------------ batches


def _feedback(sequences: UserSequences) -> np.ndarray:
    """``(num_rows, 3) float32``: clicked, log1p(watch_time), completion."""
    feedback = np.empty((sequences.num_rows, 3), dtype=np.float32)
    feedback[:, 0] = sequences.clicked
    feedback[:, 1] = np.log1p(sequences.watch_time)
    feedback[:, 2] = sequences.completion
    return feedback


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value}.")
    return value


# Streams of the batch generators: one for the target subsample, one per epoch.
_SUBSAMPLE_STREAM: Final = 0
_EPOCH_STREAM: Final = 1


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, _EPOCH_STREAM, epoch])


class TargetBatches:
    """Shuffled batches of target rows with their left-padded histories.

    Every row with an earlier step of the same user is a target (for single-item slates:
    every row at index ``t ≥ 1`` within its user). Its history is the up to
    ``max_history_length`` rows before the target's *step*: with slates of several
    items, the other items of the target's own step are left out, because their
    feedback was produced at the same moment as the target's (a click on one excludes a
    click on another). Histories are left-padded, so the most recent row is last.

    Each batch is a dict of tensors, ``B`` targets and ``L = max_history_length``:

    ======================  ==========  =======  =========================================
    key                     shape       dtype    meaning
    ======================  ==========  =======  =========================================
    history_item_ids        (B, L)      long     model item ids (catalog id + 2), 0 = pad
    history_feedback        (B, L, 3)   float32  clicked, log1p(watch_time), completion
    history_gaps            (B, L)      long     gap buckets, 0 = pad
    target_item_ids         (B,)        long     model item id of the target row
    target_gaps             (B,)        long     gap bucket of the target row
    click_labels            (B,)        float32  clicked
    watch_time_labels       (B,)        float32  log1p(watch_time)
    watch_time_mask         (B,)        bool     clicked (watch time is learnt on clicks)
    continuation_labels     (B,)        float32  1 − session_end (1 = the user stays)
    return_labels           (B,)        float32  returned_next_day
    return_mask             (B,)        bool     session_end
    ranking_labels          (B,)        long     target catalog id if clicked, else −100
    user_index              (B,)        long     index of the user in ``sequences``
    ======================  ==========  =======  =========================================

    ``user_index`` is for evaluation (GAUC), not a model input; so are the privileged
    columns, ``true_click_probability``, ``true_watch_time`` and
    ``true_return_probability`` ``(B,) float32``, present when the log has them.

    With ``item_features``, batches also hold ``history_profile (B, T, F + 1, 4) float32``:
    the long-term profile of *every* row of the user before the target's step (not only
    the last ``L``), as `PredictorModel.history_profile` defines it.

    Args:
        sequences: the users to draw targets from.
        batch_size: targets per batch.
        max_history_length: ``L``.
        shuffle: shuffle the targets each epoch (seeded); else log order.
        target_fraction: keep this seeded fraction of the targets (fixed at
            construction, the same every epoch).
        drop_last: drop the last, smaller batch.
        item_features: ``(num_items, F)`` the catalog's public features
            (``Catalog.features``), for the ``history_profile`` key; ``None`` leaves it out.
        profile_decays: the time scales of the profile, the model's
            ``config.profile_decays``; required with ``item_features``.
        target_policies: only rows whose slate these policies chose are targets (every
            row stays in the histories): e.g. ``("diverse:random",)``, the randomised
            exposures of a mixture, whose outcomes carry no selection bias of the logging
            policy. Empty: every row.
        click_target_policies: only rows whose slate these policies chose train the click
            and watch-time heads; every target row trains the other tasks. Batches then
            hold ``click_mask (B,) bool`` and ``watch_time_mask`` keeps clicked rows of
            these policies. The cure for selection bias where it bites (which item gets
            clicked) without starving the session and return heads of data.
        session_return_labels: label next-day return on *every* row with the outcome of
            its session (``return_mask``: rows whose session ended in the log), not only
            on the session's last step. Training signal for the return head grows by the
            mean session length; evaluation keeps the default (the Bayes reference is
            defined at session ends).
        seed: seeds the subsample and the shuffles. The order of an epoch depends only on
            ``seed`` and the epoch number: `set_epoch` chooses it (a resumed run repeats
            the orders), else each iteration starts the next epoch.
    """

    def __init__(
        self,
        sequences: UserSequences,
        *,
        batch_size: int = 256,
        max_history_length: int = 50,
        shuffle: bool = True,
        target_fraction: float = 1.0,
        drop_last: bool = False,
        item_features: np.ndarray | None = None,
        profile_decays: Sequence[float] | None = None,
        session_return_labels: bool = False,
        target_policies: Sequence[str] = (),
        click_target_policies: Sequence[str] = (),
        seed: int = 0,
    ) -> None:
        self.sequences = sequences
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.max_history_length = check_positive_int("max_history_length", max_history_length)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        target_fraction = _check_fraction("target_fraction", target_fraction)
        self.seed = int(seed)
        self.epoch = 0

        s = sequences
        num_rows = s.num_rows
        self._user = s.row_user_index()
        self._user_start = s.offsets[:-1][self._user]
        # First row of each row's step: the history of a target ends before it.
        new_step = np.ones(num_rows, dtype=bool)
        if num_rows > 1:
            new_step[1:] = (
                (self._user[1:] != self._user[:-1])
                | (s.day[1:] != s.day[:-1])
                | (s.session[1:] != s.session[:-1])
                | (s.step[1:] != s.step[:-1])
            )
        self._step_start = np.maximum.accumulate(
            np.where(new_step, np.arange(num_rows, dtype=np.int64), 0)
        )
        is_target = self._step_start > self._user_start
        if target_policies:
            is_target &= _rows_chosen_by(s, target_policies, "target_policies")
        self._click_rows = (
            _rows_chosen_by(s, click_target_policies, "click_target_policies")
            if click_target_policies
            else None
        )
        targets = np.flatnonzero(is_target)
        if target_fraction < 1.0:
            size = round(target_fraction * targets.size)
            subsample = np.random.default_rng([self.seed, _SUBSAMPLE_STREAM])
            targets = np.sort(subsample.choice(targets, size=size, replace=False))
        self.targets = targets
        """``(num_targets,) int64`` row indices of the targets, ascending."""

        # Per-row arrays in the dtypes of the batch, gathered per batch without copies
        # beyond the gather itself.
        self._model_items = s.item_id + ITEM_ID_OFFSET
        self._feedback = _feedback(s)
        self._gaps = s.gap_bucket
        self._clicked = s.clicked.astype(np.float32)
        self._watch_labels = self._feedback[:, 1].copy()
        self._session_end = s.session_end.astype(np.float32)
        self._returned = s.returned_next_day.astype(np.float32)
        self._return_mask = s.session_end.copy()
        if session_return_labels and num_rows:
            # The last row of each row's session carries the session's outcome.
            is_last = np.ones(num_rows, dtype=bool)
            is_last[:-1] = (
                (self._user[1:] != self._user[:-1])
                | (s.day[1:] != s.day[:-1])
                | (s.session[1:] != s.session[:-1])
            )
            last = np.where(is_last, np.arange(num_rows), num_rows)
            last = np.minimum.accumulate(last[::-1])[::-1]
            self._returned = self._returned[last]
            self._return_mask = s.session_end[last]
        # Labels over items are catalog ids: the model's item logits are in catalog order.
        self._ranking = np.where(s.clicked, self._model_items - ITEM_ID_OFFSET, IGNORE_INDEX)
        self._privileged = (
            {name: getattr(s, name) for name in PRIVILEGED_COLUMNS} if s.has_privileged else {}
        )
        self._positions = np.arange(-self.max_history_length, 0, dtype=np.int64)
        self._profiles = None
        if item_features is not None:
            if profile_decays is None:
                raise ValueError(
                    "item_features needs profile_decays too: pass the model's "
                    "config.profile_decays, so the profiles are those the model expects."
                )
            self._profiles = profile_prefix_sums(s, item_features, profile_decays, self._feedback)

    @property
    def num_targets(self) -> int:
        return int(self.targets.size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_targets // self.batch_size
        return math.ceil(self.num_targets / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order depends on seed and epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = _epoch_rng(self.seed, self.epoch)
        self.epoch += 1
        order = rng.permutation(self.targets) if self.shuffle else self.targets
        for batch in range(len(self)):
            yield self.batch(order[batch * self.batch_size : (batch + 1) * self.batch_size])

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of the target rows ``rows`` (``(B,)`` row indices, e.g. from
        `targets`)."""
        rows = np.asarray(rows, dtype=np.int64)
        # (B, L) row indices ending just before each target's step; invalid ones are
        # those before the user's first row (left padding).
        index = self._step_start[rows, None] + self._positions
        valid = index >= self._user_start[rows, None]
        index = np.where(valid, index, 0)
        feedback = self._feedback[index]
        feedback[~valid] = 0.0
        clicked = self._clicked[rows]
        session_end = self._session_end[rows]
        arrays: dict[str, np.ndarray] = {
            "history_item_ids": np.where(valid, self._model_items[index], PAD_ID),
            "history_feedback": feedback,
            "history_gaps": np.where(valid, self._gaps[index], 0),
            "target_item_ids": self._model_items[rows],
            "target_gaps": self._gaps[rows],
            "click_labels": clicked,
            "watch_time_labels": self._watch_labels[rows],
            "watch_time_mask": clicked > 0,
            "continuation_labels": 1.0 - session_end,  # 1 = the user stays
            "return_labels": self._returned[rows],
            "return_mask": self._return_mask[rows],
            "ranking_labels": self._ranking[rows],
            "user_index": self._user[rows],
        }
        if self._click_rows is not None:
            arrays["click_mask"] = self._click_rows[rows]
            arrays["watch_time_mask"] &= arrays["click_mask"]
        if self._profiles is not None:
            arrays["history_profile"] = self._profiles[self._step_start[rows]]
        for name, values in self._privileged.items():
            arrays[name] = values[rows]
        return {name: torch.from_numpy(values) for name, values in arrays.items()}

    def __repr__(self) -> str:
        return (
            f"TargetBatches(num_targets={self.num_targets}, batch_size={self.batch_size}, "
            f"max_history_length={self.max_history_length}, batches={len(self)})"
        )


def _rows_chosen_by(sequences: UserSequences, policies: Sequence[str], option: str) -> np.ndarray:
    """``(num_rows,) bool``: the rows whose slate one of ``policies`` chose."""
    unknown = [p for p in policies if p not in sequences.policy_names]
    if unknown:
        raise ValueError(
            f"{option} {unknown} name no policy of the log; its rows were chosen by "
            f"{list(sequences.policy_names)}."
        )
    wanted = [sequences.policy_names.index(p) for p in policies]
    return np.isin(np.asarray(sequences.policy), wanted)


def profile_prefix_sums(
    sequences: UserSequences,
    item_features: np.ndarray,
    profile_decays: Sequence[float],
    feedback: np.ndarray | None = None,
) -> np.ndarray:
    """``(num_rows, T, F + 1, 4) float32``: row ``r`` holds the long-term profile of the
    rows of its user *before* ``r`` (see `PredictorModel.history_profile`): per decay
    ``λ`` of ``profile_decays`` and public feature ``f`` of the items shown (and a
    constant 1), the sums of ``λ^(rows after it) · x_f · (1, clicked, log1p(watch_time),
    completion)``."""
    from scipy.signal import lfilter

    features = np.asarray(item_features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != sequences.num_items:
        raise ValueError(
            f"item_features must have shape (num_items, F) with num_items = "
            f"{sequences.num_items}, got shape {features.shape}; pass Catalog.features."
        )
    if not np.isfinite(features).all():
        raise ValueError("item_features must be finite; found NaN or inf.")
    decays = [float(decay) for decay in profile_decays]
    if not decays or any(not 0.0 < decay <= 1.0 for decay in decays):
        raise ValueError(
            f"profile_decays must be non-empty numbers in (0, 1], got {decays!r}; pass the "
            "model's config.profile_decays."
        )
    if feedback is None:
        feedback = _feedback(sequences)
    rows = sequences.item_id
    values = np.column_stack([np.ones(sequences.num_rows), feedback.astype(np.float64)])
    starts = np.repeat(sequences.offsets[:-1], sequences.lengths)
    # Rows since the user's first row: how much a sum carried over from earlier users
    # has decayed by row r.
    age = np.arange(sequences.num_rows) - starts
    num_features = features.shape[1] + 1
    profiles = np.empty(
        (sequences.num_rows, len(decays), num_features, values.shape[1]), dtype=np.float32
    )
    for f in range(num_features):
        column = features[rows, f] if f < features.shape[1] else np.ones(sequences.num_rows)
        for k in range(values.shape[1]):
            term = column * values[:, k]
            for s, decay in enumerate(decays):
                # y[r] = λ·y[r − 1] + term[r − 1] over all rows, in float64 (float32 over
                # millions of rows would lose the small per-user values), then minus what
                # earlier users left: λ^age · y[user start].
                carried = lfilter([0.0, 1.0], [1.0, -decay], term)
                if starts.size:
                    carried = carried - decay**age * carried[starts]
                profiles[:, s, f, k] = carried
    return profiles


class MaskedItemBatches:
    """Batches of windows of consecutive rows with masked items, for pre-training.

    Each epoch, every user with ``n`` rows gives ``ceil(n / L)`` windows of
    ``min(n, L)`` consecutive rows at seeded random places (``L = max_history_length``),
    left-padded to ``L``; so each row is seen about once per epoch. In each window each
    real item is replaced by `MASK_ID` with probability ``mask_probability`` (BERT4Rec's
    20%), and at least one is.

    Masked positions keep their time gap but their feedback is zeroed. BERT4Rec masks
    item ids only, because its tokens carry nothing else; ours carry the item's outcome,
    and watch time / completion is the item's length, a catalog feature that would
    identify the masked item without any sequence modelling. The model should read a
    `MASK_ID` position's feedback as unknown (as for its query token), not as "not
    clicked".

    Keys, all ``(B, L)``: ``history_item_ids`` (long, masked ids), ``history_feedback``
    (``(B, L, 3)`` float32), ``history_gaps`` (long), ``masked_item_labels`` (long: the
    original model id at masked positions, −100 elsewhere).

    Args:
        sequences: the users to draw windows from.
        batch_size: windows per batch.
        max_history_length: ``L``.
        mask_probability: probability of masking each real item, in (0, 1).
        shuffle: shuffle the windows each epoch; else by user.
        seed: seeds the window places, the masks and the shuffles; as in `TargetBatches`,
            an epoch depends only on ``seed`` and its number (see `set_epoch`).
    """

    def __init__(
        self,
        sequences: UserSequences,
        *,
        batch_size: int = 256,
        max_history_length: int = 50,
        mask_probability: float = 0.2,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.sequences = sequences
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.max_history_length = check_positive_int("max_history_length", max_history_length)
        mask_probability = float(mask_probability)
        if not 0.0 < mask_probability < 1.0:
            raise ValueError(f"mask_probability must lie in (0, 1), got {mask_probability}.")
        self.mask_probability = mask_probability
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        lengths = sequences.lengths
        users = np.flatnonzero(lengths > 0)
        windows = -(-lengths[users] // self.max_history_length)
        self._window_user = np.repeat(users, windows)
        self._width = np.minimum(lengths, self.max_history_length)[self._window_user]
        self._model_items = sequences.item_id + ITEM_ID_OFFSET
        self._feedback = _feedback(sequences)
        self._gaps = sequences.gap_bucket
        self._columns = np.arange(self.max_history_length, dtype=np.int64)

    @property
    def num_windows(self) -> int:
        return int(self._window_user.size)

    def __len__(self) -> int:
        return math.ceil(self.num_windows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its windows and masks depend on seed
        and epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = _epoch_rng(self.seed, self.epoch)
        self.epoch += 1
        s = self.sequences
        user = self._window_user
        room = s.lengths[user] - self._width + 1
        start = s.offsets[user] + (rng.random(user.size) * room).astype(np.int64)
        order = rng.permutation(user.size) if self.shuffle else np.arange(user.size)
        for batch in range(len(self)):
            chosen = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield self._batch(start[chosen], self._width[chosen], rng)

    def _batch(
        self, start: np.ndarray, width: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        length = self.max_history_length
        pad = length - width  # real rows occupy columns pad … L − 1
        valid = self._columns >= pad[:, None]
        index = np.where(valid, start[:, None] + self._columns - pad[:, None], 0)
        items = np.where(valid, self._model_items[index], PAD_ID)
        masked = valid & (rng.random(items.shape) < self.mask_probability)
        # Windows where the draw masked nothing get one uniformly chosen real position.
        empty = np.flatnonzero(~masked.any(axis=1))
        if empty.size:
            column = pad[empty] + (rng.random(empty.size) * width[empty]).astype(np.int64)
            masked[empty, column] = True
        feedback = self._feedback[index]
        feedback[~valid | masked] = 0.0
        arrays = {
            "history_item_ids": np.where(masked, MASK_ID, items),
            "history_feedback": feedback,
            "history_gaps": np.where(valid, self._gaps[index], 0),
            "masked_item_labels": np.where(masked, items - ITEM_ID_OFFSET, IGNORE_INDEX),
        }
        return {name: torch.from_numpy(values) for name, values in arrays.items()}

    def __repr__(self) -> str:
        return (
            f"MaskedItemBatches(num_windows={self.num_windows}, batch_size={self.batch_size}, "
            f"max_history_length={self.max_history_length}, "
            f"mask_probability={self.mask_probability})"
        )


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
