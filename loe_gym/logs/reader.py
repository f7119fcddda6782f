"""Reading interaction logs back: `read_log` checks every part's schema and values;
`read_catalog`, `read_public_catalog`, `read_log_metadata` and `log_part_files` read the
files stored beside the parts."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loe_gym.catalog import Catalog
from loe_gym.logs.schema import (
    _PART_PATTERN,
    CATALOG_FILE,
    LOG_SCHEMA,
    LOG_SCHEMA_VERSION,
    METADATA_FILE,
    PRIVILEGED_COLUMNS,
    PRIVILEGED_LOG_SCHEMA,
    LogSchemaError,
)
from loe_gym.logs.validation import _bound

__all__ = [
    "log_fingerprint",
    "log_part_files",
    "read_catalog",
    "read_log",
    "read_log_metadata",
    "read_public_catalog",
]


def _part_files(directory: Path) -> list[Path]:
    parts = [
        (int(match.group(1)), entry)
        for entry in directory.iterdir()
        if (match := _PART_PATTERN.match(entry.name)) is not None
    ]
    return [entry for _, entry in sorted(parts)]


def log_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 over the log's parts, catalog and metadata (names and bytes): equal for
    the same log, different as soon as one byte of it differs."""
    path = Path(path)
    files = log_part_files(path, allow_partial=True)
    if path.is_dir():
        files += [path / name for name in (CATALOG_FILE, METADATA_FILE) if (path / name).is_file()]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _parquet(read: Any, file: Path, **options: Any) -> Any:
    """``read(file, **options)`` with pyarrow's errors on a corrupt, truncated or foreign
    file turned into a `LogSchemaError` that names the file and the fix."""
    try:
        return read(file, **options)
    except (pa.ArrowException, OSError) as error:
        raise LogSchemaError(
            f"{str(file)!r} is not a readable Parquet file ({error}): it is truncated, "
            "corrupt or not Parquet. Remove it (and its entry in _metadata.json) or "
            "write the log again."
        ) from error


def read_log_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The contents of a log's ``_metadata.json``, or None if it has none."""
    file = Path(path) / METADATA_FILE
    if not file.exists():
        return None
    try:
        metadata = json.loads(file.read_text())
    except ValueError as error:  # JSONDecodeError and bad UTF-8
        raise LogSchemaError(
            f"{str(file)!r} is not valid JSON ({error}): the log's metadata is corrupt. "
            "Collect or import the log again (or delete that file to read the parts alone)."
        ) from error
    if not isinstance(metadata, dict):
        raise LogSchemaError(f"{str(file)!r} must hold a JSON object, got {metadata!r:.80}.")
    return metadata


def _check_schema(file: Path, schema: pa.Schema) -> pa.Schema:
    """Raise naming ``file`` unless ``schema`` is a log's; return the log schema it has
    (`LOG_SCHEMA`, or `PRIVILEGED_LOG_SCHEMA` when it has the privileged columns)."""
    present = [name for name in PRIVILEGED_COLUMNS if schema.get_field_index(name) >= 0]
    if present and len(present) < len(PRIVILEGED_COLUMNS):
        missing = [name for name in PRIVILEGED_COLUMNS if name not in present]
        raise LogSchemaError(
            f"{str(file)!r} has the privileged column(s) {present} but no column "
            f"{missing[0]!r}; a privileged log has all of {list(PRIVILEGED_COLUMNS)}."
        )
    expected = PRIVILEGED_LOG_SCHEMA if present else LOG_SCHEMA
    for field in expected:
        index = schema.get_field_index(field.name)
        if index < 0:
            raise LogSchemaError(
                f"{str(file)!r} has no column {field.name!r}; an interaction log needs "
                f"the columns {LOG_SCHEMA.names}."
            )
        found = schema.field(index).type
        if field.name == "policy":
            value_type = found.value_type if pa.types.is_dictionary(found) else found
            ok = pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
        else:
            ok = found == field.type
        if not ok:
            raise LogSchemaError(
                f"Column {field.name!r} of {str(file)!r} has type {found}, expected {field.type}."
            )
    extra = [name for name in schema.names if name not in expected.names]
    if extra:
        raise LogSchemaError(
            f"{str(file)!r} has columns that are not in the log schema: {extra}. "
            f"Expected exactly {LOG_SCHEMA.names}, optionally followed by "
            f"{list(PRIVILEGED_COLUMNS)}."
        )
    return expected


def _first_bad_row(file: Path, name: str, bad: np.ndarray, values: np.ndarray, why: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LogSchemaError(
            f"{str(file)!r} row {row}, column {name!r}: {values[row].item()!r} {why}."
        )


def _check_rows(file: Path, table: pa.Table) -> None:
    """Raise naming the file, row and column of the first null or out-of-range value."""
    for name in table.column_names:
        column = table.column(name)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise LogSchemaError(f"{str(file)!r} row {row}, column {name!r}: missing value.")
    checks = {
        "item_id": (0, np.inf),
        "position": (0, np.inf),
        "day": (0, np.inf),
        "session": (0, np.inf),
        "step": (0, np.inf),
        "gap_days": (0, np.inf),
        "watch_time": (0.0, np.inf),
        "completion": (0.0, 1.0),
    }
    if "true_click_probability" in table.column_names:
        checks["true_click_probability"] = (0.0, 1.0)
        checks["true_watch_time"] = (0.0, np.inf)
    for name, (low, high) in checks.items():
        values = table.column(name).to_numpy()
        bad = ~((values >= low) & (values <= high))
        _first_bad_row(file, name, bad, values, f"is outside [{_bound(low)}, {_bound(high)}]")
    if "true_return_probability" in table.column_names:
        name = "true_return_probability"
        values = table.column(name).to_numpy()
        ended = table.column("session_end").to_numpy(zero_copy_only=False)
        missing = np.isnan(values)
        _first_bad_row(
            file, name, ~ended & ~missing, values, "is given on a row that did not end a session"
        )
        with np.errstate(invalid="ignore"):
            bad = ~missing & ~((values >= 0.0) & (values <= 1.0))
        _first_bad_row(file, name, bad, values, "is outside [0, 1]")


def log_part_files(path: str | os.PathLike[str], *, allow_partial: bool = False) -> list[Path]:
    """The part files of the log at ``path`` in order (``[path]`` for a single part file).

    Raises `FileNotFoundError` when there is no log, and `LogSchemaError` when parts
    listed in ``_metadata.json`` are missing, the log has a newer schema version, or its
    writer never closed it (a killed run: its last lives are cut short) unless
    ``allow_partial``.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"No interaction log at {str(path)!r}.")
    files = _part_files(path)
    metadata = read_log_metadata(path)
    if metadata is not None:
        version = metadata.get("schema_version", 1)
        if isinstance(version, int) and version > LOG_SCHEMA_VERSION:
            raise LogSchemaError(
                f"The log {str(path)!r} has schema version {version}, newer than this "
                f"loe_gym's {LOG_SCHEMA_VERSION}; upgrade loe_gym to read it."
            )
        if metadata.get("closed") is False and not allow_partial:
            raise LogSchemaError(
                f"The log {str(path)!r} was never closed: its writer stopped before the end "
                "(killed or crashed), so its last lives are cut short. Finish it with "
                "`loe-gym collect-logs --resume` (same options), or pass allow_partial=True "
                "(--allow-partial) to use the rows it holds."
            )
        missing = sorted(set(metadata.get("parts", {})) - {file.name for file in files})
        if missing:
            raise LogSchemaError(
                f"The log {str(path)!r} lists part files that are missing: {missing}."
            )
    elif not files:
        raise FileNotFoundError(
            f"{str(path)!r} holds no interaction log (no part-*.parquet files and no "
            f"{METADATA_FILE})."
        )
    return files


def read_log(path: str | os.PathLike[str], *, allow_partial: bool = False) -> pa.Table:
    """Read an interaction log directory (or one part file) as a table with `LOG_SCHEMA`,
    or `PRIVILEGED_LOG_SCHEMA` for a log written with ``privileged=True``.

    Every part's schema and values are checked: a missing column, a wrong type, a
    missing value or an out-of-range value raises `LogSchemaError` naming the file
    (and row and column). Parts listed in ``_metadata.json`` but absent are an error too,
    and so are parts that disagree on having the privileged columns. Logs of schema
    version 1 (before the privileged columns) read unchanged. An unclosed log (a killed
    writer) is refused unless ``allow_partial``; a file that is not readable Parquet
    raises `LogSchemaError` naming it.
    """
    files = log_part_files(path, allow_partial=allow_partial)
    policy_field = LOG_SCHEMA.field("policy")
    tables = []
    schema: pa.Schema | None = None
    for file in files:
        part_schema = _check_schema(file, _parquet(pq.read_schema, file))
        if schema is not None and part_schema is not schema:
            raise LogSchemaError(
                f"{str(file)!r} {'has' if part_schema is PRIVILEGED_LOG_SCHEMA else 'lacks'} "
                f"the privileged columns but {str(files[0])!r} "
                f"{'lacks' if part_schema is PRIVILEGED_LOG_SCHEMA else 'has'} them; the parts "
                "of one log must share a schema."
            )
        schema = part_schema
        table = _parquet(pq.read_table, file, columns=schema.names)
        _check_rows(file, table)
        policy = table.column("policy")
        if policy.type != policy_field.type:
            # A plain or large string column (e.g. from another writer): encode it.
            encoded = policy.cast(pa.string()).dictionary_encode()
            table = table.set_column(table.schema.get_field_index("policy"), "policy", encoded)
        tables.append(table.cast(schema))
    if not tables:
        metadata = read_log_metadata(path) or {}
        return (PRIVILEGED_LOG_SCHEMA if metadata.get("privileged") else LOG_SCHEMA).empty_table()
    # Parts may carry different policy dictionaries; unify them into one.
    return pa.concat_tables(tables).unify_dictionaries().combine_chunks()


_NOT_FEATURES = ("item_id", "topic", "text", "available_from", "available_until")
"""Columns of ``_catalog.parquet`` that are not public features."""


def read_catalog(path: str | os.PathLike[str]) -> pa.Table | None:
    """The catalog stored with the log at ``path`` (a directory), or None if it has none."""
    file = Path(path) / CATALOG_FILE
    if not Path(path).is_dir():
        raise FileNotFoundError(f"No interaction log directory at {str(path)!r}.")
    return _parquet(pq.read_table, file) if file.exists() else None


def read_public_catalog(path: str | os.PathLike[str]) -> Catalog | None:
    """The public part of the catalog stored with the log at ``path``: its features (by
    name), topics and texts, never the hidden attributes; None if the log has no catalog."""
    table = read_catalog(path)
    if table is None:
        return None
    names = tuple(
        name
        for name in table.column_names
        if name not in _NOT_FEATURES and not name.startswith("hidden_")
    )
    features = np.stack([table.column(name).to_numpy() for name in names], axis=1)
    topics = table.column("topic").to_numpy() if "topic" in table.column_names else None
    texts = tuple(table.column("text").to_pylist()) if "text" in table.column_names else None
    availability = None
    if "available_from" in table.column_names:
        availability = np.stack(
            [table.column(name).to_numpy() for name in ("available_from", "available_until")],
            axis=1,
        )
    return Catalog(
        features=features,
        feature_names=names,
        topics=topics,
        texts=texts,
        availability=availability,
    )


def read_user_first_days(path: str | os.PathLike[str]) -> np.ndarray | None:
    """``(max user id + 1,) int64``: each user's first calendar day in an imported log,
    counted from the log's first (``first_day`` of ``_user_ids.parquet``); a row's day on
    the log's calendar is ``day + first_days[user_id]``. None for a log whose ``day`` is
    already one calendar for every user (simulated logs) or a path that is not a log
    directory."""
    file = Path(path) / "_user_ids.parquet"
    if not file.is_file():
        return None
    table = _parquet(pq.read_table, file)
    if "first_day" not in table.column_names or table.num_rows == 0:
        return None
    users = table.column("user_id").to_numpy()
    first_days = np.zeros(int(users.max()) + 1, np.int64)
    first_days[users] = table.column("first_day").to_numpy()
    return first_days
