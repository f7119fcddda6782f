"""Bring your own logs: import interaction logs from CSV or Parquet files.

`import_logs` reads files with one row per interaction (a user, an item, a time and some
feedback), maps their columns onto the log format of `loe_gym.logs` with a `ColumnMapping`,
derives sessions, days and return gaps from the timestamps, and writes a log directory that
`loe_gym.logs.read_log` reads and `loe_gym.predictor` fits on::

    my_log/
        part-00000.parquet     # the interactions (`loe_gym.logs.LOG_SCHEMA`)
        _catalog.parquet       # public item features ("length", ...)
        _metadata.json         # written by `loe_gym.logs.ParquetLogWriter`
        _user_ids.parquet      # user_id (0 … U−1) → the source's user id
        _item_ids.parquet      # item_id (0 … I−1) → the source's item id
        _import_report.json    # what was read, written and dropped (`ImportReport`)

Readers skip the names that start with ``_``, so the directory reads as the interactions
alone. Everything runs as vectorised numpy and pyarrow over whole columns: logs of
millions of rows import in seconds.

Feedback (each rule is the first that applies; "ratio", "rating", … are the columns the
mapping names, every duration in minutes):

==============  ==============================================================================
log column      derivation
==============  ==============================================================================
clicked         the ``clicked`` column (true/false or 0/1); else ratio ≥
                ``click_watch_ratio_threshold``; else rating ≥ ``rating_click_threshold``;
                else watch time > 0; else every row is a click (implicit feedback)
watch_time      the ``watch_time`` column, in minutes; else ratio × duration; else
                completion × length (minutes, or engagement units when ``length`` is 1)
completion      min(ratio, 1); else min(watch time / duration, 1) (where the duration is 0:
                1 if anything was watched, else 0); else rating / max rating; else clicked
==============  ==============================================================================

With ``zero_unclicked`` (the default) ``watch_time`` and ``completion`` are then set to 0
on rows that are not clicked, as the log schema defines them (the predictor learns watch
time on clicked rows, and simulators produce no watch time without a click); the report
counts the rows where that changed a value.

Sessions, days and return gaps (`sessionize`), per user, rows sorted by timestamp
(stable: ties keep the order of the files and of the rows in them):

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

User and item ids of the source (integers or strings) become contiguous ids ``0 … n−1``
in sorted order of the source ids; ids written as text that are all plain integers are
read as integers, so a CSV and a Parquet file of the same data give the same log.

Catalog: the feature ``length`` is the item's duration in minutes (mean over its rows)
when the mapping names a duration column, else the constant 1.0 (watch time is then in
units of an item's length, "engagement units"); the mapping's ``item_features`` follow,
averaged per item. Features never come from feedback (no click rates), so the predictor
cannot read its labels from them.

Dropped rows are counted in the report by reason, never silently: exact duplicates (same
user, item and timestamp, same values), conflicting duplicates (same user, item and
timestamp, other values: the first in file order is kept) and, with
``drop_incomplete_rows``, rows with a missing value. Every other problem in the input is
an error naming the file, the row (1-based data row, the header not counted; for CSV also
the line) and the column, and saying how to fix it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from loe_gym.catalog import Catalog
from loe_gym.errors import check_choice, check_positive_int, did_you_mean
from loe_gym.logs import ParquetLogWriter, _is_log_file
from loe_gym.simulator import Responses

__all__ = [
    "DUPLICATE_CONFLICT",
    "DUPLICATE_EXACT",
    "IMPORT_FILES",
    "INCOMPLETE",
    "ITEM_IDS_FILE",
    "PRESETS",
    "REPORT_FILE",
    "USER_IDS_FILE",
    "ColumnMapping",
    "ImportReport",
    "LogImportError",
    "import_logs",
    "resolve_mapping",
    "sessionize",
]

USER_IDS_FILE: Final = "_user_ids.parquet"
"""Table ``user_id`` (the log's) → ``source_user_id`` (the source's), in the log directory."""
ITEM_IDS_FILE: Final = "_item_ids.parquet"
"""Table ``item_id`` (the log's and catalog's) → ``source_item_id``, in the log directory."""
REPORT_FILE: Final = "_import_report.json"
"""The `ImportReport` as JSON, in the log directory."""
IMPORT_FILES: Final = (USER_IDS_FILE, ITEM_IDS_FILE, REPORT_FILE)
"""Files `import_logs` writes beside the log's own files."""

TIMESTAMP_UNITS: Final = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "datetime": 1.0}
"""Timestamp units: seconds per unit of a numeric timestamp, or ``datetime`` (date-times
as text, e.g. ISO 8601, or a timestamp column)."""
DURATION_UNITS: Final = {"ms": 1.0 / 60_000.0, "s": 1.0 / 60.0, "min": 1.0}
"""Units of watch-time and duration columns: minutes per unit."""

_CSV_SUFFIXES: Final = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".csv.bz2", ".tsv.bz2")
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_RESERVED_FEATURES: Final = ("item_id", "topic", "length")
_INT_TEXT: Final = r"^-?(0|[1-9][0-9]{0,17})$"  # fits int64, no leading zeros
_ZONE_TEXT: Final = r":\d\d(:\d\d(\.\d*)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$"
_TRUE_TEXT: Final = ("true", "t", "yes", "y", "1", "1.0")
_FALSE_TEXT: Final = ("false", "f", "no", "n", "0", "0.0")
_SECONDS_PER_DAY: Final = 86_400.0
_MAX_GAP_DAYS: Final = int(np.iinfo(np.int16).max)
_MAX_INT32: Final = int(np.iinfo(np.int32).max)
# Seconds since the epoch of 0001-01-01 and 9999-12-31T23:59:59 (Python's datetime range).
_EARLIEST: Final = -62_135_596_800.0
_LATEST: Final = 253_402_300_799.0

DUPLICATE_EXACT: Final = "exact duplicate (same user, item, timestamp and values)"
"""Drop reason: a row equal to an earlier one."""
DUPLICATE_CONFLICT: Final = (
    "duplicate user, item and timestamp with other values (the first in file order is kept)"
)
"""Drop reason: same user, item and timestamp as an earlier row, other feedback."""
INCOMPLETE: Final = "missing value in a mapped column (drop_incomplete_rows)"
"""Drop reason: a row with a missing value, dropped because of ``drop_incomplete_rows``."""


class LogImportError(ValueError):
    """An input file cannot be imported: the message names the file, row and column."""


# ------------------------------------------------------------------------- mapping


def _check_number(name: str, value: object, *, low: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"ColumnMapping.{name} must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number < low:
        bound = "" if low == -math.inf else f" ≥ {low:g}"
        raise ValueError(f"ColumnMapping.{name} must be a finite number{bound}, got {value!r}.")
    return number


@dataclass(frozen=True)
class ColumnMapping:
    """Which source columns hold what, and how to turn them into the log's columns.

    Only ``user``, ``item`` and ``timestamp`` are required; the feedback columns are
    optional and the rules of the module docstring derive ``clicked``, ``watch_time``
    and ``completion`` from those given. Build one directly, take a `PRESETS` entry, or
    use `resolve_mapping` (a preset with changes, or a JSON object).

    Attributes:
        user: column of user ids (integers or strings).
        item: column of item ids (integers or strings).
        timestamp: column of the interaction's time.
        timestamp_unit: ``"s"``, ``"ms"`` or ``"us"`` since the Unix epoch (numbers), or
            ``"datetime"`` (a timestamp column, or text such as ``2024-05-01 12:30:00``
            or ISO 8601 with a zone offset; text without an offset is read as UTC).
        clicked: column of clicks (true/false, or 0/1).
        watch_time: column of time watched, in ``watch_time_unit``; must be ≥ 0.
        watch_time_unit: ``"ms"``, ``"s"`` or ``"min"``.
        watch_ratio: column of time watched / item duration (≥ 0; above 1 for re-watches).
        rating: column of explicit ratings within ``rating_range``.
        duration: column of the item's duration, in ``duration_unit``; must be ≥ 0.
            Becomes the catalog feature ``length`` (minutes, mean per item).
        duration_unit: ``"ms"``, ``"s"`` or ``"min"``.
        item_features: numeric columns describing the item (not the interaction), kept
            as public catalog features under their own names (mean per item). Never map
            feedback here: the predictor would read its labels from them.
        session_gap_minutes: a gap longer than this between two rows of a user starts a
            new session (> 0).
        utc_offset_hours: calendar days are cut at midnight of UTC plus this offset (e.g.
            8 for Beijing time), in [−24, 24].
        click_watch_ratio_threshold: with a watch-ratio column and no click column, a
            row is a click when its ratio is at least this (≥ 0).
        rating_click_threshold: with a rating column and neither a click nor a ratio
            column, a row is a click when its rating is at least this.
        rating_range: ``(lowest, highest)`` valid rating; completion = rating / highest.
        zero_unclicked: set ``watch_time`` and ``completion`` to 0 on rows that are not
            clicks, as the log schema defines them.
        drop_incomplete_rows: drop (and count) rows with a missing value (empty cell,
            null, NaN) in a mapped column, instead of refusing them.
        name: names the mapping in the ``policy`` column (``"imported:<name>"``) and the
            report.
    """

    user: str
    item: str
    timestamp: str
    timestamp_unit: str = "s"
    clicked: str | None = None
    watch_time: str | None = None
    watch_time_unit: str = "s"
    watch_ratio: str | None = None
    rating: str | None = None
    duration: str | None = None
    duration_unit: str = "s"
    item_features: tuple[str, ...] = ()
    session_gap_minutes: float = 30.0
    utc_offset_hours: float = 0.0
    click_watch_ratio_threshold: float = 0.5
    rating_click_threshold: float = 4.0
    rating_range: tuple[float, float] = (0.5, 5.0)
    zero_unclicked: bool = True
    drop_incomplete_rows: bool = False
    name: str = "custom"

    def __post_init__(self) -> None:
        for role in ("user", "item", "timestamp", "name"):
            value = getattr(self, role)
            if not isinstance(value, str) or not value:
                raise TypeError(f"ColumnMapping.{role} must be a non-empty string, got {value!r}.")
        for role in ("clicked", "watch_time", "watch_ratio", "rating", "duration"):
            value = getattr(self, role)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(
                    f"ColumnMapping.{role} must be a column name or None, got {value!r}."
                )
        features = self.item_features
        if isinstance(features, str) or not isinstance(features, Sequence):
            raise TypeError(
                "ColumnMapping.item_features must be a list of column names, got "
                f"{features!r}; write ({features!r},) for one column."
            )
        features = tuple(features)
        for name in features:
            if not isinstance(name, str) or not name:
                raise TypeError(
                    f"ColumnMapping.item_features must hold column names, got {name!r}."
                )
            if name in _RESERVED_FEATURES or name.startswith("hidden_"):
                raise ValueError(
                    f"ColumnMapping.item_features cannot hold a column named {name!r}: the "
                    f"catalog reserves {list(_RESERVED_FEATURES)} and names starting with "
                    "'hidden_' (map an item duration with duration=..., it becomes 'length'); "
                    "rename the column in the file."
                )
        object.__setattr__(self, "item_features", features)
        columns = [(role, column) for role, column in self.source_columns().items()]
        seen: dict[str, str] = {}
        for role, column in columns:
            if column in seen:
                raise ValueError(
                    f"ColumnMapping maps the column {column!r} twice ({seen[column]} and "
                    f"{role}); each source column can play one role."
                )
            seen[column] = role
        check_choice("ColumnMapping.timestamp_unit", self.timestamp_unit, tuple(TIMESTAMP_UNITS))
        check_choice("ColumnMapping.watch_time_unit", self.watch_time_unit, tuple(DURATION_UNITS))
        check_choice("ColumnMapping.duration_unit", self.duration_unit, tuple(DURATION_UNITS))
        gap = _check_number("session_gap_minutes", self.session_gap_minutes)
        if gap <= 0:
            raise ValueError(f"ColumnMapping.session_gap_minutes must be > 0, got {gap:g}.")
        object.__setattr__(self, "session_gap_minutes", gap)
        offset = _check_number("utc_offset_hours", self.utc_offset_hours)
        if not -24.0 <= offset <= 24.0:
            raise ValueError(
                f"ColumnMapping.utc_offset_hours must lie in [-24, 24], got {offset:g}."
            )
        object.__setattr__(self, "utc_offset_hours", offset)
        object.__setattr__(
            self,
            "click_watch_ratio_threshold",
            _check_number("click_watch_ratio_threshold", self.click_watch_ratio_threshold, low=0),
        )
        object.__setattr__(
            self,
            "rating_click_threshold",
            _check_number("rating_click_threshold", self.rating_click_threshold),
        )
        rating_range = self.rating_range
        if isinstance(rating_range, str) or not isinstance(rating_range, Sequence):
            raise TypeError(
                f"ColumnMapping.rating_range must be (lowest, highest), got {rating_range!r}."
            )
        if len(rating_range) != 2:
            raise ValueError(
                f"ColumnMapping.rating_range must be (lowest, highest), got {rating_range!r}."
            )
        low = _check_number("rating_range[0]", rating_range[0])
        high = _check_number("rating_range[1]", rating_range[1])
        if not low < high or high <= 0:
            raise ValueError(
                "ColumnMapping.rating_range must be (lowest, highest) with lowest < highest "
                f"and highest > 0, got {tuple(rating_range)!r}."
            )
        object.__setattr__(self, "rating_range", (low, high))
        for flag in ("zero_unclicked", "drop_incomplete_rows"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(
                    f"ColumnMapping.{flag} must be true or false, got {getattr(self, flag)!r}."
                )

    def source_columns(self) -> dict[str, str]:
        """Role → source column of every column the mapping reads (in reading order)."""
        roles = ("user", "item", "timestamp", "clicked", "watch_time", "watch_ratio")
        columns = {role: getattr(self, role) for role in (*roles, "rating", "duration")}
        columns.update({f"item_features[{i}]": name for i, name in enumerate(self.item_features)})
        return {role: column for role, column in columns.items() if column is not None}

    @property
    def policy(self) -> str:
        """The ``policy`` column of an imported log: ``"imported:<name>"``."""
        return f"imported:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """The mapping as a JSON-ready dict (`from_dict` reads it back)."""
        data = dataclasses.asdict(self)
        data["item_features"] = list(self.item_features)
        data["rating_range"] = list(self.rating_range)
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: ColumnMapping | None = None
    ) -> ColumnMapping:
        """A mapping from a dict of field values (e.g. parsed JSON), on top of ``base``
        when given (a preset whose fields ``data`` changes)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"A column mapping must be a JSON object, got {data!r}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            raise ValueError(
                f"Unknown column-mapping field {unknown[0]!r}.{did_you_mean(str(unknown[0]), names)}"
                f" The fields are {names}."
            )
        values = dict(data)
        for key in ("item_features", "rating_range"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if base is not None:
            return dataclasses.replace(base, **values)
        missing = [key for key in ("user", "item", "timestamp") if key not in values]
        if missing:
            raise ValueError(
                f"A column mapping needs the columns of {missing} (or a preset to start "
                f"from: {sorted(PRESETS)})."
            )
        return cls(**values)


PRESETS: Final[dict[str, ColumnMapping]] = {
    # KuaiRec / KuaiRand-style short-video logs: every row is a play of a video.
    "kuairec": ColumnMapping(
        name="kuairec",
        user="user_id",
        item="video_id",
        timestamp="timestamp",
        timestamp_unit="s",
        watch_time="play_duration",
        watch_time_unit="ms",
        watch_ratio="watch_ratio",
        duration="video_duration",
        duration_unit="ms",
        click_watch_ratio_threshold=0.5,
        utc_offset_hours=8.0,
    ),
    # MovieLens ratings.csv: every row is a rating; the rating is the feedback.
    "movielens": ColumnMapping(
        name="movielens",
        user="userId",
        item="movieId",
        timestamp="timestamp",
        timestamp_unit="s",
        rating="rating",
        rating_range=(0.5, 5.0),
        rating_click_threshold=4.0,
    ),
}
"""Ready mappings by name (see docs/importing_logs.md for their derivations):

* ``kuairec``: ``user_id``, ``video_id``, ``timestamp`` (seconds), ``play_duration`` and
  ``video_duration`` (milliseconds), ``watch_ratio``. clicked = watch_ratio ≥ 0.5 (an
  engaged play, not a swipe past), completion = min(watch_ratio, 1), watch_time =
  play_duration in minutes, length = video_duration in minutes; days in Beijing time.
* ``movielens``: ``userId``, ``movieId``, ``rating`` (0.5–5), ``timestamp`` (seconds).
  clicked = rating ≥ 4, completion = rating / 5, watch_time = completion (engagement
  units: the catalog's ``length`` is the constant 1).
"""


def resolve_mapping(
    preset: str | ColumnMapping | None = None,
    overrides: Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> ColumnMapping:
    """The mapping of a preset name (or a mapping) changed by ``overrides``.

    Args:
        preset: a `PRESETS` name, a `ColumnMapping`, or None (then ``overrides`` must
            name at least ``user``, ``item`` and ``timestamp``).
        overrides: field values: a dict, a JSON object as text, or the path of a
            ``.json`` file holding one (what ``loe-gym import-logs --mapping`` passes).
    """
    base: ColumnMapping | None
    if preset is None or isinstance(preset, ColumnMapping):
        base = preset
    elif isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(
                f"Unknown preset {preset!r}.{did_you_mean(preset, PRESETS)} The presets are "
                f"{sorted(PRESETS)}; or pass a ColumnMapping."
            )
        base = PRESETS[preset]
    else:
        raise TypeError(f"preset must be a preset name or a ColumnMapping, got {preset!r}.")
    if overrides is None:
        if base is None:
            raise ValueError(
                f"Give a preset ({sorted(PRESETS)}) or a mapping naming the user, item and "
                "timestamp columns."
            )
        return base
    if isinstance(overrides, os.PathLike) or (
        isinstance(overrides, str) and not overrides.lstrip().startswith("{")
    ):
        path = Path(overrides)
        if not path.is_file():
            raise FileNotFoundError(
                f"The mapping {str(overrides)!r} is neither a JSON object nor a JSON file."
            )
        overrides = path.read_text()
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as error:
            raise ValueError(f"The mapping is not valid JSON: {error}.") from None
    assert not isinstance(overrides, (str, os.PathLike))
    return ColumnMapping.from_dict(overrides, base=base)


# ------------------------------------------------------------------------ sessions


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


# ------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ImportReport:
    """What `import_logs` read, wrote and dropped.

    ``rows_read = rows_written + sum(dropped.values())``: every row read is either in the
    log or counted under a reason.

    Attributes:
        output: the log directory written.
        mapping: the mapping used (`ColumnMapping.to_dict`).
        policy: the log's ``policy`` value.
        files: the source files, in reading order.
        rows_per_file: data rows read from each file.
        rows_read: data rows read in all.
        rows_written: rows in the log.
        users, items: distinct users and items in the log.
        sessions: sessions in the log.
        clicks: rows with ``clicked``.
        next_day_returns: sessions followed by a session the next calendar day (or the
            same day, counted as the next: see the module docstring).
        censored_last_sessions: users' last sessions, whose ``gap_days`` is 0 because the
            log ends there (right-censored).
        max_gap_days: the longest return gap in the log, in days (0 if nobody returned);
            a natural ``churn_gap_days`` for a simulator learned from the log.
        dropped: rows dropped, by reason.
        unclicked_feedback_zeroed: rows not clicked whose derived watch time or
            completion was above 0 and was set to 0 (``zero_unclicked``).
        item_features: the catalog's public features, in order.
        first_timestamp, last_timestamp: the earliest and latest time in the log, ISO 8601
            in UTC ("" for an empty log).
        seconds: wall time of the import.
    """

    output: str
    mapping: dict[str, Any]
    policy: str
    files: tuple[str, ...]
    rows_per_file: tuple[int, ...]
    rows_read: int
    rows_written: int
    users: int
    items: int
    sessions: int
    clicks: int
    next_day_returns: int
    censored_last_sessions: int
    max_gap_days: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    unclicked_feedback_zeroed: int = 0
    item_features: tuple[str, ...] = ()
    first_timestamp: str = ""
    last_timestamp: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["files"] = list(self.files)
        data["rows_per_file"] = list(self.rows_per_file)
        data["item_features"] = list(self.item_features)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportReport:
        """Read back `to_dict` (e.g. the log directory's ``_import_report.json``)."""
        values = dict(data)
        for key in ("files", "rows_per_file", "item_features"):
            values[key] = tuple(values[key])
        return cls(**values)

    def summary(self) -> str:
        """A few lines of plain text."""
        dropped = sum(self.dropped.values())
        lines = [
            f"Imported {self.rows_written} of {self.rows_read} rows from "
            f"{len(self.files)} file(s) into {self.output} (policy {self.policy}).",
            f"{self.users} users, {self.items} items, {self.sessions} sessions, "
            f"{self.clicks} clicks, {self.next_day_returns} next-day returns; "
            f"{self.censored_last_sessions} last sessions right-censored (gap_days 0); "
            f"longest return gap {self.max_gap_days} days.",
            f"Time span: {self.first_timestamp} to {self.last_timestamp} (UTC).",
            f"Catalog features: {', '.join(self.item_features)}.",
        ]
        if dropped:
            reasons = "; ".join(f"{count} {reason}" for reason, count in self.dropped.items())
            lines.append(f"Dropped {dropped} rows: {reasons}.")
        else:
            lines.append("Dropped no rows.")
        if self.unclicked_feedback_zeroed:
            lines.append(
                f"Watch time and completion set to 0 on {self.unclicked_feedback_zeroed} "
                "rows that are not clicks."
            )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The report as a Markdown section with tables."""
        lines = [
            f"## Log import: {self.output}",
            "",
            "| | |",
            "|---|---|",
            f"| mapping | `{self.mapping.get('name', '')}` (policy `{self.policy}`) |",
            f"| rows read | {self.rows_read} |",
            f"| rows written | {self.rows_written} |",
            f"| users | {self.users} |",
            f"| items | {self.items} |",
            f"| sessions | {self.sessions} |",
            f"| clicks | {self.clicks} |",
            f"| next-day returns | {self.next_day_returns} |",
            f"| censored last sessions | {self.censored_last_sessions} |",
            f"| longest return gap (days) | {self.max_gap_days} |",
            f"| watch time / completion zeroed (not clicked) | {self.unclicked_feedback_zeroed} |",
            f"| time span (UTC) | {self.first_timestamp} – {self.last_timestamp} |",
            f"| catalog features | {', '.join(self.item_features)} |",
            "",
            "| file | rows |",
            "|---|---|",
            *(
                f"| `{file}` | {rows} |"
                for file, rows in zip(self.files, self.rows_per_file, strict=True)
            ),
            "",
        ]
        if self.dropped:
            lines += ["| dropped because | rows |", "|---|---|"]
            lines += [f"| {reason} | {count} |" for reason, count in self.dropped.items()]
        else:
            lines.append("No rows dropped.")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.summary()


# ------------------------------------------------------------------------ reading


def _file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise LogImportError(
        f"{str(path)!r} has an unsupported extension: import_logs reads CSV "
        f"({', '.join(_CSV_SUFFIXES)}) and Parquet ({', '.join(_PARQUET_SUFFIXES)}) files, "
        "chosen by extension. Rename the file or convert it."
    )


class _Source:
    """One input file: its columns as arrow arrays and how to name its rows."""

    def __init__(self, path: Path, mapping: ColumnMapping) -> None:
        self.path = path
        self.format = _file_format(path)
        self.mapping = mapping
        needed = list(mapping.source_columns().values())
        present = self._column_names()
        self._check_columns(needed, present)
        self.table = self._read(needed)
        if self.table.num_rows == 0:
            raise LogImportError(
                f"{str(path)!r} is empty: it has no data rows. Remove it from the sources "
                "or fill it."
            )
        self.num_rows = self.table.num_rows

    def where(self, row: int, column: str) -> str:
        """``'file' row 3 (line 4), column 'x'`` for the 0-based data row ``row``."""
        line = f" (line {row + 2})" if self.format == "csv" else ""
        return f"{str(self.path)!r} row {row + 1}{line}, column {column!r}"

    def _csv_options(self) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions]:
        delimiter = "\t" if ".tsv" in self.path.name.lower() else ","
        return pa_csv.ReadOptions(use_threads=True), pa_csv.ParseOptions(delimiter=delimiter)

    def _column_names(self) -> list[str]:
        try:
            if self.format == "parquet":
                return list(pq.read_schema(self.path).names)
            read, parse = self._csv_options()
            reader = pa_csv.open_csv(self.path, read_options=read, parse_options=parse)
            try:
                return list(reader.schema.names)
            finally:
                reader.close()
        except pa.ArrowInvalid as error:
            if "empty" in str(error).lower() or self.path.stat().st_size == 0:
                raise LogImportError(
                    f"{str(self.path)!r} is empty (no header, no rows). Remove it from the "
                    "sources or fill it."
                ) from None
            raise self._unreadable(error) from None

    def _unreadable(self, error: Exception) -> LogImportError:
        """The error for a file pyarrow cannot parse, naming the bad CSV line if any."""
        if self.format == "csv":
            invalid: list[Any] = []

            def handler(row: Any) -> str:
                invalid.append(row)
                return "error"

            # Single-threaded, the parser knows the line number of a bad row.
            read, parse = self._csv_options()
            read.use_threads = False
            parse.invalid_row_handler = handler
            with contextlib.suppress(pa.ArrowInvalid):
                pa_csv.read_csv(self.path, read_options=read, parse_options=parse)
            if invalid and invalid[0].number is not None:
                row = invalid[0]
                return LogImportError(
                    f"{str(self.path)!r} row {row.number - 1} (line {row.number}): "
                    f"{row.actual_columns} fields where the header has "
                    f"{row.expected_columns}: {row.text!r}. Fix the line (quote fields that "
                    "contain the delimiter)."
                )
        kind = "a Parquet" if self.format == "parquet" else "a CSV"
        return LogImportError(f"{str(self.path)!r} cannot be read as {kind} file: {error}")

    def _check_columns(self, needed: list[str], present: list[str]) -> None:
        roles = {column: role for role, column in self.mapping.source_columns().items()}
        missing = [column for column in needed if column not in present]
        if not missing:
            return
        hints = "".join(
            f" For {column!r}:{did_you_mean(column, present)}"
            for column in missing
            if did_you_mean(column, present)
        )
        named = ", ".join(f"{column!r} ({roles[column]})" for column in missing)
        raise LogImportError(
            f"{str(self.path)!r} has no column {named} that the {self.mapping.name!r} mapping "
            f"reads. Columns present: {present}.{hints} Rename the column in the file or "
            "map the column that holds it (e.g. --mapping '{\""
            + roles[missing[0]].split("[")[0]
            + '": "<column>"}\').'
        )

    def _read(self, needed: list[str]) -> pa.Table:
        try:
            if self.format == "parquet":
                return pq.read_table(self.path, columns=needed)
            read, parse = self._csv_options()
            # Read as text and convert here: errors then name the row, and a bad value
            # late in a large file cannot break pyarrow's type inference.
            convert = pa_csv.ConvertOptions(
                include_columns=needed, column_types=dict.fromkeys(needed, pa.string())
            )
            return pa_csv.read_csv(
                self.path, read_options=read, parse_options=parse, convert_options=convert
            )
        except pa.ArrowInvalid as error:
            raise self._unreadable(error) from None

    def column(self, name: str) -> pa.Array:
        """The column ``name`` as one array (dictionary columns decoded)."""
        array = self.table.column(name).combine_chunks()
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        return array


def _first_failure(array: pa.Array, convert: Callable[[pa.Array], Any]) -> int:
    """Index of the first element of ``array`` that ``convert`` refuses (``convert`` of the
    whole array must fail): bisection over slices, vectorised, O(n) in all."""
    low, high = 0, len(array)
    # Invariant: array[:low] converts; some element of array[low:high] does not.
    while high - low > 1:
        middle = (low + high) // 2
        try:
            convert(array.slice(low, middle - low))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
        else:
            low = middle
    return low


def _missing_text(array: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Trimmed text and ``(n,) bool`` missing (null or blank) of a string array."""
    trimmed = pc.utf8_trim_whitespace(array)
    missing = pc.or_kleene(pc.is_null(array), pc.equal(trimmed, "")).fill_null(True)
    return trimmed, missing.to_numpy(zero_copy_only=False)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_number(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _type_error(source: _Source, column: str, kind: pa.DataType, expected: str) -> LogImportError:
    return LogImportError(
        f"{str(source.path)!r}, column {column!r} has type {kind}, but the mapping needs "
        f"{expected}. Map another column or convert this one."
    )


def _numbers(source: _Source, column: str, hint: str = "") -> np.ndarray:
    """``(n,) float64`` values of a numeric column; NaN where missing. Raises naming the
    row for text that is not a number and for infinite values."""
    array = source.column(column)
    kind = array.type
    if _is_number(kind):
        values = pc.cast(array, pa.float64()).fill_null(math.nan).to_numpy(zero_copy_only=False)
    elif _is_text(kind):
        trimmed, missing = _missing_text(array)
        filled = pc.if_else(pa.array(missing), pa.scalar("nan"), trimmed)
        try:
            values = pc.cast(filled, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            row = _first_failure(filled, lambda part: pc.cast(part, pa.float64()))
            raise LogImportError(
                f"{source.where(row, column)}: {array[row].as_py()!r} is not a number. Fix "
                f"the value, or map another column.{hint}"
            ) from None
    else:
        raise _type_error(source, column, kind, "numbers")
    values = np.array(values, dtype=np.float64)  # writable copy
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise LogImportError(
            f"{source.where(row, column)}: {float(values[row])!r} is infinite; give a finite number."
        )
    return values


def _ids(source: _Source, column: str) -> tuple[pa.Array, np.ndarray]:
    """Ids as int64 or string arrow values, and ``(n,) bool`` missing."""
    array = source.column(column)
    kind = array.type
    if pa.types.is_integer(kind):
        missing = pc.is_null(array).to_numpy(zero_copy_only=False)
        return pc.cast(array, pa.int64()).fill_null(0), missing
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = _numbers(source, column)
        missing = np.isnan(values)
        fractional = ~missing & (values != np.round(values))
        if fractional.any():
            row = int(np.flatnonzero(fractional)[0])
            raise LogImportError(
                f"{source.where(row, column)}: the id {float(values[row]):g} is not a whole number; "
                "ids must be integers or strings."
            )
        return pa.array(np.where(missing, 0, values).astype(np.int64)), missing
    if _is_text(kind):
        trimmed, missing = _missing_text(array)
        integral = pc.match_substring_regex(trimmed, _INT_TEXT).fill_null(False)
        if bool(np.all(integral.to_numpy(zero_copy_only=False) | missing)):
            filled = pc.if_else(pa.array(missing), pa.scalar("0"), trimmed)
            return pc.cast(filled, pa.int64()), missing
        return pc.cast(trimmed, pa.string()).fill_null(""), missing
    raise _type_error(source, column, kind, "integer or string ids")


def _clicks(source: _Source, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(n,) bool`` clicks and ``(n,) bool`` missing."""
    array = source.column(column)
    kind = array.type
    if pa.types.is_boolean(kind):
        missing = pc.is_null(array).to_numpy(zero_copy_only=False)
        return array.fill_null(False).to_numpy(zero_copy_only=False), missing
    if _is_number(kind):
        values = _numbers(source, column)
        missing = np.isnan(values)
        bad = ~missing & (values != 0) & (values != 1)
        clicked = values == 1
    elif _is_text(kind):
        trimmed, missing = _missing_text(array)
        lower = pc.utf8_lower(trimmed)
        clicked = pc.is_in(lower, value_set=pa.array(_TRUE_TEXT)).to_numpy(zero_copy_only=False)
        unclicked = pc.is_in(lower, value_set=pa.array(_FALSE_TEXT))
        bad = ~missing & ~clicked & ~unclicked.to_numpy(zero_copy_only=False)
    else:
        raise _type_error(source, column, kind, "clicks (true/false or 0/1)")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LogImportError(
            f"{source.where(row, column)}: {array[row].as_py()!r} is not a click value; "
            "write true/false or 1/0."
        )
    return np.asarray(clicked, dtype=bool), np.asarray(missing, dtype=bool)


def _datetime_seconds(source: _Source, column: str) -> np.ndarray:
    """``(n,) float64`` seconds since the epoch (UTC) of a date-time column; NaN where
    missing."""
    array = source.column(column)
    kind = array.type
    hint = (
        " Write date-times as e.g. '2024-05-01 12:30:00' or ISO 8601 "
        "'2024-05-01T12:30:00+08:00', or set timestamp_unit to 's' or 'ms' for numbers."
    )
    if pa.types.is_date(kind):
        array = pc.cast(array, pa.timestamp("s"))
        kind = array.type
    if pa.types.is_timestamp(kind):
        per_second = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[kind.unit]
        raw = pc.cast(array, pa.int64())
        values = pc.cast(raw, pa.float64()).fill_null(math.nan).to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float64) / per_second
    if _is_number(kind):
        raise LogImportError(
            f"{str(source.path)!r}, column {column!r} holds numbers, but the mapping reads "
            "it as date-times (timestamp_unit='datetime'). Set timestamp_unit to 's', 'ms' "
            "or 'us'."
        )
    if not _is_text(kind):
        raise _type_error(source, column, kind, "date-times")
    trimmed, missing = _missing_text(array)
    zoned = pc.match_substring_regex(trimmed, _ZONE_TEXT).fill_null(False)
    zoned_mask = zoned.to_numpy(zero_copy_only=False) & ~missing
    seconds = np.full(len(array), math.nan)
    for mask, target in (
        (zoned_mask, pa.timestamp("us", tz="UTC")),
        (~zoned_mask & ~missing, pa.timestamp("us")),
    ):
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            continue
        part = trimmed.take(pa.array(rows))

        def convert(values: pa.Array, target: pa.DataType = target) -> pa.Array:
            return pc.cast(values, target)

        try:
            parsed = convert(part)
        except pa.ArrowInvalid:
            row = int(rows[_first_failure(part, convert)])
            raise LogImportError(
                f"{source.where(row, column)}: {array[row].as_py()!r} is not a date-time." + hint
            ) from None
        micros = pc.cast(parsed, pa.int64()).to_numpy(zero_copy_only=False)
        seconds[rows] = np.asarray(micros, dtype=np.float64) / 1e6
    return seconds


def _timestamps(source: _Source, mapping: ColumnMapping) -> np.ndarray:
    column = mapping.timestamp
    if mapping.timestamp_unit == "datetime":
        return _datetime_seconds(source, column)
    kind = source.table.schema.field(column).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        raise LogImportError(
            f"{str(source.path)!r}, column {column!r} holds date-times, but the mapping reads "
            f"numbers in {mapping.timestamp_unit!r}. Set timestamp_unit='datetime'."
        )
    hint = (
        " If the column holds date-times (e.g. '2024-05-01 12:30:00'), set "
        "timestamp_unit='datetime'."
    )
    return _numbers(source, column, hint) * TIMESTAMP_UNITS[mapping.timestamp_unit]


def _check_nonnegative(source: _Source, column: str, values: np.ndarray, what: str) -> None:
    bad = values < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LogImportError(
            f"{source.where(row, column)}: {values[row]:g} is negative; {what} must be ≥ 0. "
            "Fix the value, or drop the row from the file."
        )


@dataclass
class _Rows:
    """The mapped columns of one or more files, row-aligned (n rows)."""

    user: pa.Array
    item: pa.Array
    timestamp: np.ndarray  # float64 seconds, UTC
    origin: np.ndarray  # int64 global row number (file offset + data row)
    clicked: np.ndarray | None = None
    watch_time: np.ndarray | None = None  # minutes
    watch_ratio: np.ndarray | None = None
    rating: np.ndarray | None = None
    duration: np.ndarray | None = None  # minutes
    features: np.ndarray | None = None  # (n, k)

    _ROW_ARRAYS = (
        "timestamp",
        "origin",
        "clicked",
        "watch_time",
        "watch_ratio",
        "rating",
        "duration",
        "features",
    )

    def __len__(self) -> int:
        return int(self.timestamp.size)

    def select(self, keep: np.ndarray) -> _Rows:
        """The rows of a ``(n,) bool`` mask, or of ``(m,)`` row indices in that order."""
        index = pa.array(keep)
        pick = (lambda a: a.filter(index)) if keep.dtype == bool else (lambda a: a.take(index))
        values: dict[str, Any] = {"user": pick(self.user), "item": pick(self.item)}
        for name in self._ROW_ARRAYS:
            array = getattr(self, name)
            values[name] = None if array is None else array[keep]
        return _Rows(**values)


def _read_source(source: _Source, mapping: ColumnMapping, offset: int) -> tuple[_Rows, int]:
    """The mapped, checked columns of one file, and the number of incomplete rows dropped."""
    missing: dict[str, np.ndarray] = {}
    user, missing[mapping.user] = _ids(source, mapping.user)
    item, missing[mapping.item] = _ids(source, mapping.item)
    timestamp = _timestamps(source, mapping)
    missing[mapping.timestamp] = np.isnan(timestamp)
    with np.errstate(invalid="ignore"):
        outside = (timestamp < _EARLIEST) | (timestamp > _LATEST)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise LogImportError(
            f"{source.where(row, mapping.timestamp)}: {source.column(mapping.timestamp)[row]} "
            f"read in {mapping.timestamp_unit!r} is outside the years 1–9999. Check "
            "timestamp_unit ('s', 'ms' or 'us' since 1970-01-01)."
        )
    rows = _Rows(
        user=user,
        item=item,
        timestamp=timestamp,
        origin=offset + np.arange(source.num_rows, dtype=np.int64),
    )
    if mapping.clicked is not None:
        rows.clicked, missing[mapping.clicked] = _clicks(source, mapping.clicked)
    numeric = {
        "watch_time": (mapping.watch_time, DURATION_UNITS[mapping.watch_time_unit]),
        "watch_ratio": (mapping.watch_ratio, 1.0),
        "rating": (mapping.rating, 1.0),
        "duration": (mapping.duration, DURATION_UNITS[mapping.duration_unit]),
    }
    for name, (column, scale) in numeric.items():
        if column is None:
            continue
        values = _numbers(source, column)
        missing[column] = np.isnan(values)
        if name == "rating":
            low, high = mapping.rating_range
            bad = ~missing[column] & ((values < low) | (values > high))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise LogImportError(
                    f"{source.where(row, column)}: the rating {values[row]:g} is outside "
                    f"rating_range [{low:g}, {high:g}]. Fix the value, or set the mapping's "
                    "rating_range to the scale of the file."
                )
        else:
            what = {
                "watch_time": "watch times",
                "watch_ratio": "watch ratios",
                "duration": "durations",
            }[name]
            _check_nonnegative(source, column, values, what)
        setattr(rows, name, values * scale)
    if mapping.item_features:
        features = np.empty((source.num_rows, len(mapping.item_features)), dtype=np.float64)
        for index, column in enumerate(mapping.item_features):
            features[:, index] = _numbers(source, column)
            missing[column] = np.isnan(features[:, index])
        rows.features = features
    incomplete = np.zeros(source.num_rows, dtype=bool)
    for mask in missing.values():
        incomplete |= mask
    if incomplete.any() and not mapping.drop_incomplete_rows:
        row = int(np.flatnonzero(incomplete)[0])
        column = next(column for column, mask in missing.items() if mask[row])
        raise LogImportError(
            f"{source.where(row, column)}: missing value (empty, null or NaN). Fill it, "
            "or drop such rows with drop_incomplete_rows=True "
            "(--mapping '{\"drop_incomplete_rows\": true}'); they are then counted in "
            "the report."
        )
    if incomplete.any():
        rows = rows.select(~incomplete)
    return rows, int(np.count_nonzero(incomplete))


def _concatenate(parts: list[_Rows]) -> _Rows:
    values: dict[str, Any] = {}
    for name in ("user", "item"):
        arrays = [getattr(part, name) for part in parts]
        if len({array.type for array in arrays}) > 1:
            # Integer ids in one file, text ids in another: compare them all as text.
            arrays = [pc.cast(array, pa.string()) for array in arrays]
        values[name] = pa.chunked_array(arrays).combine_chunks()
    for name in _Rows._ROW_ARRAYS:
        arrays = [getattr(part, name) for part in parts]
        values[name] = None if arrays[0] is None else np.concatenate(arrays)
    return _Rows(**values)


def _encode(ids: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """``(n,) int64`` contiguous codes in sorted order of the ids, and the sorted ids."""
    encoded = ids.dictionary_encode()
    dictionary = encoded.dictionary
    order = pc.sort_indices(dictionary).to_numpy(zero_copy_only=False)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return rank[indices], dictionary.take(pa.array(order))


# ----------------------------------------------------------------------- deriving


def _feedback(
    rows: _Rows, mapping: ColumnMapping, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(clicked, watch_time, completion, zeroed)`` by the rules of the module docstring;
    ``length`` is each row's item length in minutes (or 1)."""
    n = len(rows)
    if rows.clicked is not None:
        clicked = rows.clicked
    elif rows.watch_ratio is not None:
        clicked = rows.watch_ratio >= mapping.click_watch_ratio_threshold
    elif rows.rating is not None:
        clicked = rows.rating >= mapping.rating_click_threshold
    elif rows.watch_time is not None:
        clicked = rows.watch_time > 0
    else:
        clicked = np.ones(n, dtype=bool)
    if rows.watch_ratio is not None:
        completion = np.minimum(rows.watch_ratio, 1.0)
    elif rows.watch_time is not None and rows.duration is not None:
        positive = rows.duration > 0
        ratio = rows.watch_time / np.where(positive, rows.duration, 1.0)
        completion = np.where(positive, np.minimum(ratio, 1.0), (rows.watch_time > 0) * 1.0)
    elif rows.rating is not None:
        completion = rows.rating / mapping.rating_range[1]
    else:
        completion = clicked.astype(np.float64)
    if rows.watch_time is not None:
        watch_time = rows.watch_time
    elif rows.watch_ratio is not None and rows.duration is not None:
        watch_time = rows.watch_ratio * rows.duration
    else:
        watch_time = completion * length
    zeroed = 0
    if mapping.zero_unclicked:
        changed = ~clicked & ((watch_time > 0) | (completion > 0))
        zeroed = int(np.count_nonzero(changed))
        watch_time = np.where(clicked, watch_time, 0.0)
        completion = np.where(clicked, completion, 0.0)
    return clicked, watch_time, completion, zeroed


def _duplicates(user: np.ndarray, item: np.ndarray, rows: _Rows) -> tuple[np.ndarray, int, int]:
    """``(n,) bool`` rows to keep, and the exact and conflicting duplicates dropped.

    The rows must be sorted by user, then timestamp, then file order; only groups of rows
    with an equal user and timestamp (usually few) are sorted again, by item.
    """
    n = len(rows)
    keep = np.ones(n, dtype=bool)
    tie = np.zeros(n, dtype=bool)
    tie[1:] = (user[1:] == user[:-1]) & (rows.timestamp[1:] == rows.timestamp[:-1])
    if not tie.any():
        return keep, 0, 0
    group = np.cumsum(~tie) - 1
    candidates = np.flatnonzero(np.bincount(group)[group] > 1)
    # By group, then item, then position (= file order among equal user and timestamp).
    candidates = candidates[np.lexsort((candidates, item[candidates], group[candidates]))]
    same_group = group[candidates]
    same_item = item[candidates]
    duplicate = np.zeros(candidates.size, dtype=bool)
    duplicate[1:] = (same_group[1:] == same_group[:-1]) & (same_item[1:] == same_item[:-1])
    if not duplicate.any():
        return keep, 0, 0
    first = candidates[np.maximum.accumulate(np.where(duplicate, 0, np.arange(candidates.size)))]
    same = np.ones(candidates.size, dtype=bool)
    for name in ("clicked", "watch_time", "watch_ratio", "rating", "duration"):
        values = getattr(rows, name)
        if values is not None:
            same &= values[candidates] == values[first]
    if rows.features is not None:
        same &= np.all(rows.features[candidates] == rows.features[first], axis=1)
    keep[candidates[duplicate]] = False
    exact = int(np.count_nonzero(duplicate & same))
    return keep, exact, int(np.count_nonzero(duplicate)) - exact


def _item_means(item: np.ndarray, values: np.ndarray, num_items: int) -> np.ndarray:
    counts = np.bincount(item, minlength=num_items).astype(np.float64)
    return np.bincount(item, weights=values, minlength=num_items) / np.maximum(counts, 1.0)


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------ writing


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that would lose data; nothing is written or deleted here."""
    if output.exists() and not output.is_dir():
        raise FileExistsError(
            f"The output {str(output)!r} is a file; a log is a directory. Choose a directory "
            "path (it is created if missing)."
        )
    if not output.is_dir():
        return
    names = sorted(entry.name for entry in output.iterdir())
    if not names:
        return
    if not overwrite:
        raise FileExistsError(
            f"The output directory {str(output)!r} is not empty ({len(names)} entries, e.g. "
            f"{names[0]!r}); nothing was written. Pass overwrite=True (--overwrite) to "
            "replace the log there, or choose a new directory."
        )
    foreign = [name for name in names if not _is_log_file(name) and name not in IMPORT_FILES]
    if foreign:
        raise FileExistsError(
            f"overwrite=True would delete {str(output)!r}, but it holds files that are not "
            f"part of an imported log: {foreign[:5]}. Remove them or choose another directory."
        )


def _write_log(
    output: Path,
    columns: Mapping[str, np.ndarray],
    catalog: Catalog,
    policy: str,
    rows_per_group: int,
    overwrite: bool,
) -> int:
    # The writer empties an old log but refuses files it does not know: ours go first.
    if overwrite and output.is_dir():
        for name in IMPORT_FILES:
            (output / name).unlink(missing_ok=True)
    n = columns["item_id"].size
    with ParquetLogWriter(
        output,
        rows_per_group=rows_per_group,
        policy=policy,
        catalog=catalog,
        overwrite=overwrite,
    ) as writer:
        for start in range(0, n, rows_per_group):
            part = slice(start, start + rows_per_group)
            session_end = columns["session_end"][part]
            gap_days = columns["gap_days"][part]
            writer.write_step(
                user_id=columns["user_id"][part],
                episode=0,
                day=columns["day"][part],
                session=columns["session"][part],
                step=columns["step"][part],
                slates=columns["item_id"][part, None],
                responses=Responses(
                    clicked=columns["clicked"][part, None],
                    watch_time=columns["watch_time"][part, None],
                    completion=columns["completion"][part, None],
                    session_end=session_end,
                    gap_days=gap_days,
                    churned=session_end & (gap_days == 0),
                ),
            )
        return writer.rows_written


def _write_ids(path: Path, name: str, ids: pa.Array) -> None:
    table = pa.table(
        {
            name: pa.array(np.arange(len(ids), dtype=np.int64)),
            f"source_{name}": ids,
        }
    )
    pq.write_table(table, path)


# ---------------------------------------------------------------------- importing


def _sources(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        paths = [Path(source)]
    elif isinstance(source, Iterable):
        paths = [Path(path) for path in source]
    else:
        raise TypeError(f"source must be a path or a list of paths, got {type(source).__name__}.")
    if not paths:
        raise ValueError("source names no files; give at least one CSV or Parquet file.")
    for path in paths:
        if path.is_dir():
            raise LogImportError(
                f"{str(path)!r} is a directory; pass its files (e.g. {str(path / '*.csv')!r})."
            )
        _file_format(path)
        if not path.exists():
            raise FileNotFoundError(f"No input file {str(path)!r}.")
    return paths


def import_logs(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    mapping: ColumnMapping | str,
    *,
    overwrite: bool = False,
    rows_per_group: int = 65_536,
) -> ImportReport:
    """Import CSV or Parquet interaction files into a log directory.

    Reads every file (CSV or Parquet, by extension; ``.csv.gz``/``.tsv`` too), checks
    and maps its columns with ``mapping``, derives feedback, sessions, days and return
    gaps (rules in the module docstring), and writes the log with
    `loe_gym.logs.ParquetLogWriter`, its catalog (``_catalog.parquet``), the id mappings
    (``_user_ids.parquet``, ``_item_ids.parquet``) and the report
    (``_import_report.json``). Every file is read and checked before anything is
    written: a refused import leaves the output untouched.

    Args:
        source: one file, or a list (any iterable, e.g. ``Path.glob``) of files, read in
            that order (the order breaks ties of equal timestamps and picks which
            duplicate is kept).
        output: the log directory to write (created if missing).
        mapping: a `ColumnMapping`, or the name of one of `PRESETS`.
        overwrite: replace the log at ``output`` (a directory holding anything else is
            still refused).
        rows_per_group: rows per part file of the log.

    Returns:
        The `ImportReport` (also written to ``_import_report.json``).

    Raises:
        LogImportError: a file cannot be imported; the message names the file, the row
            (1-based data row; for CSV also the line) and the column, and the fix.
        FileNotFoundError: a source file does not exist.
        FileExistsError: ``output`` is not empty and ``overwrite`` is False.
        ValueError: an unknown preset or an invalid mapping.
    """
    start = time.perf_counter()
    if isinstance(mapping, str):
        mapping = resolve_mapping(mapping)
    elif not isinstance(mapping, ColumnMapping):
        raise TypeError(
            f"mapping must be a ColumnMapping or a preset name ({sorted(PRESETS)}), got "
            f"{type(mapping).__name__}."
        )
    rows_per_group = check_positive_int("rows_per_group", rows_per_group)
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}.")
    paths = _sources(source)
    output = Path(output)
    _check_output(output, overwrite)

    # ---- read and check every file
    parts: list[_Rows] = []
    files: list[_Source] = []
    offsets = [0]
    incomplete = 0
    for path in paths:
        file = _Source(path, mapping)
        rows, incomplete_rows = _read_source(file, mapping, offsets[-1])
        files.append(file)
        parts.append(rows)
        offsets.append(offsets[-1] + file.num_rows)
        incomplete += incomplete_rows
    rows_read = offsets[-1]
    rows = _concatenate(parts)
    del parts
    if len(rows) == 0:
        raise LogImportError(
            f"Every one of the {rows_read} rows has a missing value and was dropped "
            "(drop_incomplete_rows): nothing is left to import. Check the mapping's columns."
        )

    def where(origin: int, column: str) -> str:
        index = int(np.searchsorted(offsets, origin, side="right")) - 1
        return files[index].where(origin - offsets[index], column)

    # ---- ids, order, duplicates
    user, user_ids = _encode(rows.user)
    item, item_ids = _encode(rows.item)
    # By user, then timestamp; lexsort is stable, so ties keep the file order.
    order = np.lexsort((rows.timestamp, user))
    rows, user, item = rows.select(order), user[order], item[order]
    keep, exact, conflicting = _duplicates(user, item, rows)
    if not keep.all():
        rows, user, item = rows.select(keep), user[keep], item[keep]
    num_items = len(item_ids)

    # ---- catalog: public item features only, never from feedback
    names = ["length"]
    if rows.duration is not None:
        length_by_item = _item_means(item, rows.duration, num_items)
    else:
        length_by_item = np.ones(num_items)
    columns_by_item = [length_by_item]
    for index, name in enumerate(mapping.item_features):
        assert rows.features is not None
        columns_by_item.append(_item_means(item, rows.features[:, index], num_items))
        names.append(name)
    catalog = Catalog(features=np.stack(columns_by_item, axis=1), feature_names=tuple(names))

    # ---- feedback and sessions
    length = rows.duration if rows.duration is not None else length_by_item[item]
    clicked, watch_time, completion, zeroed = _feedback(rows, mapping, length)
    sessions = sessionize(
        user,
        rows.timestamp,
        session_gap_minutes=mapping.session_gap_minutes,
        utc_offset_hours=mapping.utc_offset_hours,
    )
    if sessions["gap_days"].size and sessions["gap_days"].max() > _MAX_GAP_DAYS:
        row = int(np.argmax(sessions["gap_days"]))
        raise LogImportError(
            f"{where(int(rows.origin[row]), mapping.timestamp)}: the user's next visit comes "
            f"{int(sessions['gap_days'][row])} days later, more than the log's limit of "
            f"{_MAX_GAP_DAYS}. Check timestamp_unit ({mapping.timestamp_unit!r}): "
            "milliseconds read as seconds spread visits over millennia."
        )
    for name in ("day", "session", "step"):
        values = sessions[name]
        if values.size and values.max() > _MAX_INT32:
            row = int(np.argmax(values))
            raise LogImportError(
                f"{where(int(rows.origin[row]), mapping.timestamp)}: {name} {int(values[row])} "
                f"exceeds the log's limit of {_MAX_INT32}. Check timestamp_unit."
            )

    # ---- write (only now: every check has passed)
    _check_output(output, overwrite)
    columns = {
        "user_id": user,
        "item_id": item,
        "clicked": clicked,
        "watch_time": watch_time,
        "completion": completion,
        **sessions,
    }
    rows_written = _write_log(output, columns, catalog, mapping.policy, rows_per_group, overwrite)
    _write_ids(output / USER_IDS_FILE, "user_id", user_ids)
    _write_ids(output / ITEM_IDS_FILE, "item_id", item_ids)

    dropped = {
        reason: count
        for reason, count in (
            (DUPLICATE_EXACT, exact),
            (DUPLICATE_CONFLICT, conflicting),
            (INCOMPLETE, incomplete),
        )
        if count
    }
    session_end = sessions["session_end"]
    report = ImportReport(
        output=str(output),
        mapping=mapping.to_dict(),
        policy=mapping.policy,
        files=tuple(str(file.path) for file in files),
        rows_per_file=tuple(file.num_rows for file in files),
        rows_read=rows_read,
        rows_written=rows_written,
        users=len(user_ids),
        items=num_items,
        sessions=int(np.count_nonzero(session_end)),
        clicks=int(np.count_nonzero(clicked)),
        next_day_returns=int(np.count_nonzero(sessions["returned_next_day"])),
        censored_last_sessions=int(np.count_nonzero(session_end & (sessions["gap_days"] == 0))),
        max_gap_days=int(sessions["gap_days"].max()),
        dropped=dropped,
        unclicked_feedback_zeroed=zeroed,
        item_features=tuple(names),
        first_timestamp=_iso(float(rows.timestamp.min())) if len(rows) else "",
        last_timestamp=_iso(float(rows.timestamp.max())) if len(rows) else "",
        seconds=time.perf_counter() - start,
    )
    if report.rows_written + sum(dropped.values()) != rows_read:  # pragma: no cover
        raise AssertionError("import_logs lost rows: written + dropped != read.")
    (output / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
