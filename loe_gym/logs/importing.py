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

The column mapping and the feedback it derives are in `loe_gym.logs.mapping`, the session,
day and return-gap rules in `loe_gym.logs.sessions`, the reading of the files in
`loe_gym.logs.formats`.

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

import datetime
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loe_gym.catalog import Catalog
from loe_gym.errors import check_positive_int
from loe_gym.logs.formats import (
    LogImportError,
    _concatenate,
    _read_source,
    _Rows,
    _Source,
)
from loe_gym.logs.item_tables import CatalogColumns, ItemTable, catalog_columns, read_item_tables
from loe_gym.logs.mapping import ColumnMapping
from loe_gym.logs.presets import PRESETS, resolve_mapping
from loe_gym.logs.report import (
    DUPLICATE_CONFLICT,
    DUPLICATE_EXACT,
    INCOMPLETE,
    ImportReport,
    feedback_meaning,
)
from loe_gym.logs.schema import _is_log_file
from loe_gym.logs.sessions import sessionize, user_first_days
from loe_gym.logs.source_paths import _sources
from loe_gym.logs.writer import ParquetLogWriter
from loe_gym.simulator import Responses

__all__ = ["IMPORT_FILES", "ITEM_IDS_FILE", "REPORT_FILE", "USER_IDS_FILE", "import_logs"]

USER_IDS_FILE: Final = "_user_ids.parquet"
"""Table ``user_id`` (the log's) → ``source_user_id`` (the source's), in the log directory."""
ITEM_IDS_FILE: Final = "_item_ids.parquet"
"""Table ``item_id`` (the log's and catalog's) → ``source_item_id``, in the log directory."""
REPORT_FILE: Final = "_import_report.json"
"""The `ImportReport` as JSON, in the log directory."""
IMPORT_FILES: Final = (USER_IDS_FILE, ITEM_IDS_FILE, REPORT_FILE)
"""Files `import_logs` writes beside the log's own files."""
_MAX_GAP_DAYS: Final = int(np.iinfo(np.int16).max)
_MAX_INT32: Final = int(np.iinfo(np.int32).max)


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
    """``(clicked, watch_time, completion, zeroed)`` by the rules of `loe_gym.logs.mapping`;
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
        keep_completion = mapping.keep_unclicked_completion
        changed = ~clicked & ((watch_time > 0) | ((completion > 0) & (not keep_completion)))
        zeroed = int(np.count_nonzero(changed))
        watch_time = np.where(clicked, watch_time, 0.0)
        if not keep_completion:
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
    """The mean per item; for an item without rows (listed only by an item table), the
    mean over the items with rows."""
    counts = np.bincount(item, minlength=num_items).astype(np.float64)
    means = np.bincount(item, weights=values, minlength=num_items) / np.maximum(counts, 1.0)
    seen = counts > 0
    if not seen.all() and seen.any():
        means[~seen] = means[seen].mean()
    return means


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


def _write_all(
    output: Path,
    columns: Mapping[str, np.ndarray],
    catalog: Catalog,
    mapping: ColumnMapping,
    ids: tuple[pa.Array, pa.Array, np.ndarray],
    rows_per_group: int,
    overwrite: bool,
) -> int:
    """Write the log, its catalog and the ``(user, item)`` id mappings (users with their
    ``first_day``, `user_first_days`); the rows written."""
    _check_output(output, overwrite)
    rows_written = _write_log(output, columns, catalog, mapping.policy, rows_per_group, overwrite)
    _write_ids(output / USER_IDS_FILE, "user_id", ids[0], {"first_day": ids[2]})
    _write_ids(output / ITEM_IDS_FILE, "item_id", ids[1])
    return rows_written


def _write_ids(
    path: Path, name: str, ids: pa.Array, extra: Mapping[str, np.ndarray] | None = None
) -> None:
    table = pa.table(
        {
            name: pa.array(np.arange(len(ids), dtype=np.int64)),
            f"source_{name}": ids,
            **{key: pa.array(values) for key, values in (extra or {}).items()},
        }
    )
    pq.write_table(table, path)


# ---------------------------------------------------------------------- importing


def _check_arguments(
    mapping: ColumnMapping | str, rows_per_group: int, overwrite: bool
) -> tuple[ColumnMapping, int]:
    """The mapping (a preset name resolved) and ``rows_per_group``, checked."""
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
    return mapping, rows_per_group


def _read_sources(
    paths: list[Path], mapping: ColumnMapping
) -> tuple[list[_Source], list[int], _Rows, int]:
    """Read and check every file: the files, the offsets of their rows (one more than
    files; the last is the rows read), their rows concatenated, and the incomplete rows
    dropped."""
    parts: list[_Rows] = []
    files: list[_Source] = []
    offsets = [0]
    incomplete = 0
    for path in paths:
        file = _Source.of_interactions(path, mapping)
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
    return files, offsets, rows, incomplete


def _namer(files: list[_Source], offsets: list[int]) -> Callable[[int, str], str]:
    """Names a row by its global number (`_Rows.origin`): file, row, line, column."""

    def where(origin: int, column: str) -> str:
        index = int(np.searchsorted(offsets, origin, side="right")) - 1
        return files[index].where(origin - offsets[index], column)

    return where


def _order_and_deduplicate(
    rows: _Rows, extra_items: pa.Array | None = None
) -> tuple[_Rows, np.ndarray, np.ndarray, pa.Array, pa.Array, int, int]:
    """The rows sorted by user, then timestamp, without duplicates; their user and item
    codes; the source's user and item ids (by code; with ``extra_items``, the ids of
    items without rows too); the exact and conflicting duplicates dropped."""
    user, user_ids = _encode(rows.user)
    if extra_items is None:
        item, item_ids = _encode(rows.item)
    else:
        named, extra = _same_type(rows.item, extra_items)
        codes, item_ids = _encode(pa.chunked_array([named, extra]).combine_chunks())
        item = codes[: len(rows)]
    # By user, then timestamp; lexsort is stable, so ties keep the file order.
    order = np.lexsort((rows.timestamp, user))
    rows, user, item = rows.select(order), user[order], item[order]
    keep, exact, conflicting = _duplicates(user, item, rows)
    if not keep.all():
        rows, user, item = rows.select(keep), user[keep], item[keep]
    return rows, user, item, user_ids, item_ids, exact, conflicting


def _same_type(first: pa.Array, second: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Both id arrays as they are, or as text when one holds integers and one text."""
    if first.type == second.type:
        return first, second
    return pc.cast(first, pa.string()), pc.cast(second, pa.string())


def _item_catalog(
    rows: _Rows,
    item: np.ndarray,
    item_ids: pa.Array,
    mapping: ColumnMapping,
    item_table: ItemTable | None = None,
) -> tuple[Catalog, np.ndarray, list[str], CatalogColumns | None]:
    """The catalog (public item features only, never from feedback; then those of the
    item table, and its texts), each item's length, the feature names and the item
    table's part of the catalog."""
    num_items = len(item_ids)
    table = None
    if item_table is not None:
        table = catalog_columns(item_table, _same_type(item_ids, item_table.ids)[0])
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
    texts = None
    if table is not None:
        clash = sorted(set(names) & set(table.names))
        if clash:
            raise LogImportError(
                f"The interactions' item_features and the item tables both give the catalog "
                f"feature {clash[0]!r}. Map it from one of them only."
            )
        columns_by_item.extend(table.features.T)
        names.extend(table.names)
        texts = table.texts
    catalog = Catalog(
        features=np.stack(columns_by_item, axis=1), feature_names=tuple(names), texts=texts
    )
    return catalog, length_by_item, names, table


def _log_columns(
    rows: _Rows,
    user: np.ndarray,
    item: np.ndarray,
    mapping: ColumnMapping,
    length_by_item: np.ndarray,
    where: Callable[[int, str], str],
) -> tuple[dict[str, np.ndarray], int]:
    """The log's columns of the sorted rows (feedback, sessions, days and gaps), and the
    rows whose feedback ``zero_unclicked`` set to 0; ``where`` names a row in messages."""
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
    columns = {
        "user_id": user,
        "item_id": item,
        "clicked": clicked,
        "watch_time": watch_time,
        "completion": completion,
        **sessions,
    }
    return columns, zeroed


def _dropped(exact: int, conflicting: int, incomplete: int) -> dict[str, int]:
    """Rows dropped by reason (`ImportReport.dropped`), the reasons with none left out."""
    return {
        reason: count
        for reason, count in (
            (DUPLICATE_EXACT, exact),
            (DUPLICATE_CONFLICT, conflicting),
            (INCOMPLETE, incomplete),
        )
        if count
    }


def _report(
    output: Path,
    mapping: ColumnMapping,
    files: list[_Source],
    columns: Mapping[str, np.ndarray],
    timestamp: np.ndarray,
    *,
    rows_read: int,
    rows_written: int,
    users: int,
    items: int,
    dropped: dict[str, int],
    zeroed: int,
    item_features: list[str],
    seconds: float,
    tables: tuple[ItemTable, CatalogColumns] | None = None,
) -> ImportReport:
    """The `ImportReport` of an import: ``columns`` are the log's, ``timestamp`` its
    rows' times (seconds), ``tables`` the item tables read and their catalog part."""
    session_end = columns["session_end"]
    item_table: dict[str, Any] = {}
    if tables is not None:
        table, part = tables
        item_table = {
            "item_files": tuple(table.files),
            "item_rows_per_file": tuple(table.rows_per_file),
            "items_without_interactions": items - len(np.unique(columns["item_id"])),
            "items_missing_from_item_table": part.missing_from_table,
            "item_table_duplicates": table.duplicates,
            "item_values_missing": part.missing_values,
            "item_feature_notes": part.notes,
            "items_with_text": sum(1 for text in part.texts or () if text),
        }
    return ImportReport(
        output=str(output),
        mapping=mapping.to_dict(),
        policy=mapping.policy,
        files=tuple(str(file.path) for file in files),
        rows_per_file=tuple(file.num_rows for file in files),
        rows_read=rows_read,
        rows_written=rows_written,
        users=users,
        items=items,
        sessions=int(np.count_nonzero(session_end)),
        clicks=int(np.count_nonzero(columns["clicked"])),
        next_day_returns=int(np.count_nonzero(columns["returned_next_day"])),
        censored_last_sessions=int(np.count_nonzero(session_end & (columns["gap_days"] == 0))),
        max_gap_days=int(columns["gap_days"].max()),
        dropped=dropped,
        unclicked_feedback_zeroed=zeroed,
        item_features=tuple(item_features),
        first_timestamp=_iso(float(timestamp.min())) if timestamp.size else "",
        last_timestamp=_iso(float(timestamp.max())) if timestamp.size else "",
        seconds=seconds,
        feedback=feedback_meaning(mapping),
        **item_table,
    )


def _read_item_tables(
    paths: list[Path], mapping: ColumnMapping
) -> tuple[ItemTable | None, pa.Array | None]:
    """The item tables (None without item files) and the ids of their items that the
    catalog keeps beyond those of the interactions (all of them, or None)."""
    if not paths or mapping.items is None:
        return None, None
    table = read_item_tables(paths, mapping.items)
    return table, table.ids if mapping.items.keep_uninteracted else None


def import_logs(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    mapping: ColumnMapping | str,
    *,
    items: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    overwrite: bool = False,
    rows_per_group: int = 65_536,
) -> ImportReport:
    """Import interaction files (CSV, Parquet, delimited text) into a log directory.

    Reads every file (Parquet, or text: by extension, or any file with the mapping's
    ``delimiter``), checks and maps its columns with ``mapping``, derives feedback,
    sessions, days and return gaps (`loe_gym.logs.mapping`, `loe_gym.logs.sessions`),
    and writes the log, its catalog, the id mappings and the report (see the module
    docstring). Every file is read and checked before anything is written: a refused
    import leaves the output untouched.

    Args:
        source: one file, or a list (any iterable, e.g. ``Path.glob``) of files, read in
            that order (it breaks ties of equal timestamps and picks which duplicate is
            kept); a directory stands for the mapping's ``directory_files`` in it
            (``ml-100k/`` reads ``u.data`` and, without ``items``, ``u.item``).
        output: the log directory to write (created if missing).
        mapping: a `ColumnMapping`, or the name of one of `PRESETS`.
        items: item tables (one row per item: titles, genres, dates, captions) read with
            ``mapping.items`` and joined by item id into the catalog's features and texts
            (see `loe_gym.logs.item_tables`); a file, a list, or a directory.
        overwrite: replace the log at ``output`` (a directory holding anything else is
            still refused).
        rows_per_group: rows per part file of the log.

    Returns:
        The `ImportReport` (also written to ``_import_report.json``).

    Raises:
        LogImportError: a file cannot be imported; the message names the file, the row
            (1-based data row; for CSV also the line) and the column, and the fix.
        FileNotFoundError: a source file does not exist; FileExistsError: ``output`` is
            not empty and ``overwrite`` is False; ValueError: an invalid mapping.
    """
    start = time.perf_counter()
    mapping, rows_per_group = _check_arguments(mapping, rows_per_group, overwrite)
    paths, item_paths = _sources(source, items, mapping)
    _check_output(output := Path(output), overwrite)

    files, offsets, rows, incomplete = _read_sources(paths, mapping)
    table, extra_items = _read_item_tables(item_paths, mapping)
    where = _namer(files, offsets)
    ordered = _order_and_deduplicate(rows, extra_items)
    rows, user, item, user_ids, item_ids, exact, conflicting = ordered
    catalog, length_by_item, names, part = _item_catalog(rows, item, item_ids, mapping, table)
    columns, zeroed = _log_columns(rows, user, item, mapping, length_by_item, where)

    # ---- write (only now: every check has passed)
    days = user_first_days(
        user, rows.timestamp, num_users=len(user_ids), utc_offset_hours=mapping.utc_offset_hours
    )
    ids = (user_ids, item_ids, days)
    rows_written = _write_all(output, columns, catalog, mapping, ids, rows_per_group, overwrite)
    report = _report(
        output,
        mapping,
        files,
        columns,
        rows.timestamp,
        rows_read=offsets[-1],
        rows_written=rows_written,
        users=len(user_ids),
        items=len(item_ids),
        dropped=_dropped(exact, conflicting, incomplete),
        zeroed=zeroed,
        item_features=names,
        seconds=time.perf_counter() - start,
        tables=None if table is None or part is None else (table, part),  # both or none
    )
    if report.rows_written + sum(report.dropped.values()) != offsets[-1]:  # pragma: no cover
        raise AssertionError("import_logs lost rows: written + dropped != read.")
    (output / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
