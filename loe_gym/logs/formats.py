"""Reading the source files of an import: CSV and Parquet files (`_Source`), their columns
checked and converted to ids, numbers, clicks and timestamps, and gathered into rows
(`_Rows`) by a `loe_gym.logs.mapping.ColumnMapping`.

Every problem raises `LogImportError` naming the file, the row (1-based data row; for CSV
also the line) and the column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loe_gym.errors import did_you_mean
from loe_gym.logs.mapping import DURATION_UNITS, TIMESTAMP_UNITS, ColumnMapping
from loe_gym.logs.presets import preset_hint
from loe_gym.logs.text_files import LogImportError, TextFile, TextFormat, delimiter_hint

__all__ = ["LogImportError"]

_CSV_SUFFIXES: Final = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".csv.bz2", ".tsv.bz2")
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_INT_TEXT: Final = r"^-?(0|[1-9][0-9]{0,17})$"  # fits int64, no leading zeros
_ZONE_TEXT: Final = r":\d\d(:\d\d(\.\d*)?)?\s*(Z|z|[+-]\d\d(:?\d\d)?)$"
_TRUE_TEXT: Final = ("true", "t", "yes", "y", "1", "1.0")
_FALSE_TEXT: Final = ("false", "f", "no", "n", "0", "0.0")
# Seconds since the epoch of 0001-01-01 and 9999-12-31T23:59:59 (Python's datetime range).
_EARLIEST: Final = -62_135_596_800.0
_LATEST: Final = 253_402_300_799.0


def _file_format(path: Path, delimiter: str | None = None) -> str:
    """``"parquet"`` or ``"csv"`` (delimited text) by extension; with a ``delimiter``, any
    file that is not Parquet is delimited text (``u.data``, ``ratings.dat``)."""
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES) or delimiter is not None:
        return "csv"
    raise LogImportError(
        f"{str(path)!r} has an unsupported extension: import_logs reads CSV "
        f"({', '.join(_CSV_SUFFIXES)}) and Parquet ({', '.join(_PARQUET_SUFFIXES)}) files, "
        "chosen by extension, and any text file when the mapping sets its delimiter (e.g. "
        '--mapping \'{"delimiter": "::"}\', or a preset such as movielens-1m). Rename '
        "the file, set the delimiter, or convert it."
    )


class _Source:
    """One input file: its columns as arrow arrays and how to name its rows.

    ``file_mapping`` is a `ColumnMapping` or an `ItemTableMapping` (how the file is
    written); ``roles`` maps each column to read to its role (for messages); the
    ``optional`` ones are read where present.
    """

    def __init__(
        self,
        path: Path,
        file_mapping: Any,
        roles: dict[str, str],
        *,
        name: str,
        optional: tuple[str, ...] = (),
        scope: str = "",
    ) -> None:
        self.path = path
        self.format = _file_format(path, file_mapping.delimiter)
        self.name = name
        self.scope = scope
        self.roles = roles
        self.text: TextFile | None = None
        if self.format == "csv":
            self.text = TextFile(path, TextFormat.of(path, file_mapping, scope=scope))
        present = self._column_names()
        needed = [column for column in roles if column not in optional]
        self._check_columns(needed, present)
        self.columns = needed + [c for c in roles if c in optional and c in present]
        self.table = self._read(self.columns)
        if self.table.num_rows == 0:
            raise LogImportError(
                f"{str(path)!r} is empty: it has no data rows. Remove it from the sources "
                "or fill it."
            )
        self.num_rows = self.table.num_rows

    @classmethod
    def of_interactions(cls, path: Path, mapping: ColumnMapping) -> _Source:
        roles = {column: role for role, column in mapping.source_columns().items()}
        try:
            return cls(path, mapping, roles, name=mapping.name)
        except LogImportError as error:
            hint = preset_hint(path, mapping)  # read with another preset than its own?
            if not hint:
                raise
            raise LogImportError(f"{error}{hint}") from None

    def where(self, row: int, column: str) -> str:
        """``'file' row 3 (line 4), column 'x'`` for the 0-based data row ``row``."""
        line = f" (line {self.text.line_of(row)})" if self.text is not None else ""
        return f"{str(self.path)!r} row {row + 1}{line}, column {column!r}"

    def _column_names(self) -> list[str]:
        if self.text is not None:
            return self.text.column_names()
        try:
            return list(pq.read_schema(self.path).names)
        except pa.ArrowInvalid as error:
            if self.path.stat().st_size == 0:
                raise LogImportError(
                    f"{str(self.path)!r} is empty (no header, no rows). Remove it from the "
                    "sources or fill it."
                ) from None
            raise LogImportError(
                f"{str(self.path)!r} cannot be read as a Parquet file: {error}"
            ) from None

    def _check_columns(self, needed: list[str], present: list[str]) -> None:
        missing = [column for column in needed if column not in present]
        if not missing:
            return
        hints = "".join(
            f" For {column!r}:{did_you_mean(column, present)}"
            for column in missing
            if did_you_mean(column, present)
        )
        if self.text is not None and len(present) == 1:
            text_format = self.text.format
            fix = text_format.fix("delimiter", "<delimiter>")
            hints += delimiter_hint(present[0], text_format.delimiter, fix)
        named = ", ".join(f"{column!r} ({self.roles[column]})" for column in missing)
        role = self.roles[missing[0]].split("[")[0]
        fix = f'{{"{role}": "<column>"}}'
        if self.scope:
            fix = f'{{"{self.scope}": {fix}}}'
        raise LogImportError(
            f"{str(self.path)!r} has no column {named} that the {self.name!r} mapping "
            f"reads. Columns present: {present}.{hints} Rename the column in the file or "
            f"map the column that holds it (e.g. --mapping '{fix}')."
        )

    def _read(self, needed: list[str]) -> pa.Table:
        if self.text is not None:
            # Read as text and convert here: errors then name the row, and a bad value
            # late in a large file cannot break pyarrow's type inference.
            return self.text.read(needed)
        try:
            return pq.read_table(self.path, columns=needed)
        except pa.ArrowInvalid as error:
            raise LogImportError(
                f"{str(self.path)!r} cannot be read as a Parquet file: {error}"
            ) from None

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
