"""`ParquetLogWriter`: streams interaction rows into a log directory, part by part.

Each part is written to a hidden temporary name, synced to disk and renamed into place,
so a crash loses at most the rows not yet flushed and the directory is always a readable
log. A part is a complete Parquet file (footer included), unlike a single growing file,
which is unreadable until it is closed.

The directory layout and the readers are in `loe_gym.logs`, the columns in
`loe_gym.logs.schema`.
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loe_gym.catalog import Catalog
from loe_gym.errors import check_positive_int
from loe_gym.logs.resume import resumable_parts
from loe_gym.logs.schema import (
    _NUMPY_TYPES,
    CATALOG_FILE,
    LOG_FORMAT,
    LOG_SCHEMA,
    LOG_SCHEMA_VERSION,
    METADATA_FILE,
    PRIVILEGED_COLUMNS,
    PRIVILEGED_LOG_SCHEMA,
    _is_log_file,
    catalog_table,
)
from loe_gym.logs.validation import _as_array, _check_range, _integer_limits, _user_column
from loe_gym.simulator import Responses

__all__ = ["ParquetLogWriter"]

# Parquet's default codec: every reader (Spark 2, old pandas, DuckDB, polars) has it.
_COMPRESSION: Final = "snappy"
# Dictionary-encode the low-cardinality columns only: on floats it costs write time
# (about a third of it) and rarely saves space.
_DICTIONARY_COLUMNS: Final = [
    "user_id",
    "episode",
    "day",
    "session",
    "step",
    "item_id",
    "position",
    "gap_days",
    "policy",
]


# The columns a step provides, by numpy kind ("b" bool, "i" integer, "f" real); the
# writer derives item_id and position from the slates and policy from its argument.
_USER_COLUMNS: Final = {
    "user_id": "i",
    "episode": "i",
    "day": "i",
    "session": "i",
    "step": "i",
    "session_end": "b",
    "returned_next_day": "b",
    "gap_days": "i",
}
_ITEM_COLUMNS: Final = {"clicked": "b", "watch_time": "f", "completion": "f"}
# How `ParquetLogWriter.write_step` names each column's source in error messages.
_WRITE_STEP_LABELS: Final = {
    **{name: name for name in ("user_id", "episode", "day", "session", "step")},
    **{name: f"responses.{name}" for name in (*_ITEM_COLUMNS, "session_end", "gap_days")},
    "returned_next_day": "responses.returned_next_day",
    "slates": "slates",
    "mask": "mask",
    **{name: name for name in PRIVILEGED_COLUMNS},
}


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened on Windows.
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace_atomically(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)``, sync it and rename it to ``path``.

    The temporary name starts with ``.`` so that dataset readers never see it.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        write(temporary)
        fd = os.open(temporary, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _prepare_directory(path: Path, overwrite: bool) -> None:
    """Create ``path`` or empty an old log there; refuse anything else."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"An interaction log is a directory, but {str(path)!r} is a file. "
            "Choose a directory path (it is created if missing)."
        )
    if not path.exists():
        path.mkdir(parents=True)
        return
    names = sorted(entry.name for entry in path.iterdir())
    if not names:
        return
    if not overwrite:
        raise FileExistsError(
            f"The log directory {str(path)!r} is not empty ({len(names)} entries, e.g. "
            f"{names[0]!r}). Pass overwrite=True to replace the log there, or choose a "
            "new directory."
        )
    foreign = [name for name in names if not _is_log_file(name)]
    if foreign:
        # overwrite=True deletes an old log, never a directory of unrelated files.
        raise FileExistsError(
            f"overwrite=True would delete {str(path)!r}, but it holds files that are not "
            f"part of an interaction log: {foreign[:5]}. Remove them or choose another "
            "directory."
        )
    # Metadata first: an interrupted clean-up no longer claims to be a complete log.
    for name in sorted(names, key=lambda n: n != METADATA_FILE):
        (path / name).unlink()
    _fsync_directory(path)


class ParquetLogWriter:
    """Streams interaction rows into a Parquet log directory (see `loe_gym.logs`).

    Rows are buffered as numpy column chunks; every ``rows_per_group`` rows become one
    part file, written atomically, so a crash loses at most the rows not yet flushed.
    Use it as a context manager, or call `close` (which flushes).

    Args:
        path: the log directory; created if missing.
        rows_per_group: rows per part file (one Parquet row group each).
        policy: name of the policy whose slates are logged (the ``policy`` column).
        catalog: the item catalog, written to ``_catalog.parquet`` if given; item ids are
            then checked against it.
        overwrite: replace an existing log at ``path``. Without it a non-empty directory
            is refused; with it, a directory holding anything but a log is still refused.
        privileged: also write the privileged columns (`PRIVILEGED_COLUMNS`, evaluation
            only); `write_step` then needs their values.
        policy_components: names of the component policies of a mixture; a row whose
            step was chosen by component ``k`` gets the policy value ``"<policy>:<name>"``
            (`write_step`'s ``policy_component``), the others ``policy``.
        run: a JSON-able description of what produces the rows (a collection's options),
            kept in the metadata; a resume must give the same.
        resume: continue the unclosed log at ``path`` of the same ``run`` (see
            `loe_gym.logs.resume`): its parts are kept and the first rows written, which
            they already hold, are dropped.

    Attributes:
        rows_written: rows accepted so far (flushed or buffered).
        rows_flushed: rows on disk in part files.
        schema: `LOG_SCHEMA`, or `PRIVILEGED_LOG_SCHEMA` when ``privileged``.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from loe_gym.simulator import Responses
        >>> responses = Responses(
        ...     clicked=np.array([[True, False], [False, False]]),
        ...     watch_time=np.array([[2.5, 0.0], [0.0, 0.0]]),
        ...     completion=np.array([[0.5, 0.0], [0.0, 0.0]]),
        ...     session_end=np.array([False, True]),
        ...     gap_days=np.array([0, 1]),
        ...     churned=np.array([False, False]),
        ... )
        >>> directory = tempfile.mkdtemp()
        >>> with ParquetLogWriter(directory, policy="random") as writer:
        ...     writer.write_step(
        ...         user_id=np.array([7, 8]), episode=0, day=0, session=0, step=3,
        ...         slates=np.array([[11, 12], [13, 14]]), responses=responses,
        ...     )
        4
        >>> from loe_gym.logs import read_log
        >>> table = read_log(directory)
        >>> table.column("item_id").to_pylist(), table.column("returned_next_day").to_pylist()
        ([11, 12, 13, 14], [False, False, True, True])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rows_per_group: int = 65_536,
        policy: str,
        catalog: Catalog | None = None,
        overwrite: bool = False,
        privileged: bool = False,
        policy_components: Sequence[str] = (),
        run: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        # Validate everything before touching the file system: never half-write.
        self.rows_per_group = check_positive_int("rows_per_group", rows_per_group)
        if not isinstance(privileged, (bool, np.bool_)):
            raise TypeError(f"privileged must be True or False, got {privileged!r}.")
        if not isinstance(policy, str) or not policy:
            raise ValueError(
                f"policy must be a non-empty string naming the policy, got {policy!r}."
            )
        if catalog is not None and not isinstance(catalog, Catalog):
            raise TypeError(
                f"catalog must be a loe_gym Catalog or None, got {type(catalog).__name__}."
            )
        self.path = Path(path)
        components = tuple(policy_components)
        if any(not isinstance(c, str) or not c for c in components) or len(set(components)) < len(
            components
        ):
            raise ValueError(
                f"policy_components must be distinct non-empty strings, got {components!r}."
            )
        self.policy = policy
        self.policy_components = components
        self.catalog = catalog
        self.privileged = bool(privileged)
        self.schema = PRIVILEGED_LOG_SCHEMA if self.privileged else LOG_SCHEMA
        catalog_rows = catalog_table(catalog) if catalog is not None else None

        self._numpy_types = {
            name: _NUMPY_TYPES[name] for name in self.schema.names if name in _NUMPY_TYPES
        }
        self._chunks: dict[str, list[np.ndarray]] = {name: [] for name in self._numpy_types}
        self._item_columns = dict(_ITEM_COLUMNS)
        self._user_columns = dict(_USER_COLUMNS)
        if self.privileged:
            self._item_columns.update(true_click_probability="f", true_watch_time="f")
            self._user_columns["true_return_probability"] = "f"
        self._buffered = 0
        self.rows_written = 0
        self.rows_flushed = 0
        self._part_rows: dict[str, int] = {}
        self._closed = True  # until the directory is ready (see __del__)
        self._created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.run = None if run is None else dict(run)
        self._skip = 0  # rows a resumed log already holds: dropped as they are written again
        # Row code 0 is the policy; code k > 0 its k-th component ("mixed:random", …).
        self._policy_dictionary = pa.array(
            [policy, *(f"{policy}:{c}" for c in components)], type=pa.string()
        )
        self._chunks["policy_code"] = []

        self._open_directory(overwrite, resume)
        if catalog_rows is not None:
            _replace_atomically(
                self.path / CATALOG_FILE,
                lambda tmp: pq.write_table(catalog_rows, tmp, compression=_COMPRESSION),
            )
        self._closed = False
        try:
            self._write_metadata()
        except BaseException:
            self._closed = True
            raise

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def num_parts(self) -> int:
        """Number of part files written so far."""
        return len(self._part_rows)

    def write_step(
        self,
        *,
        user_id: Any,
        episode: Any,
        day: Any,
        session: Any,
        step: Any,
        slates: Any,
        responses: Responses,
        mask: Any = None,
        true_click_probability: Any = None,
        true_watch_time: Any = None,
        true_return_probability: Any = None,
        policy_component: Any = None,
    ) -> int:
        """Log one step of a batch of users; returns the number of rows added.

        Args:
            user_id, episode, day, session, step: ``(num_users,)`` integers describing
                the step taken (a scalar applies to every user).
            slates: ``(num_users, slate_size)`` item ids shown.
            responses: the users' `Responses` to ``slates``.
            mask: ``(num_users,) bool`` users that really acted this step (all if None);
                only their rows are logged and checked.
            true_click_probability, true_watch_time: ``(num_users, slate_size)`` the
                simulator's expectations for each item shown alone, before the step;
                required by a ``privileged`` writer, refused by any other.
            true_return_probability: ``(num_users,)`` probability of a next-day visit
                after the step (NaN where unknown); logged on users whose session ended,
                NaN on the others whatever is passed.
            policy_component: ``(num_users,)`` index into ``policy_components`` of the
                component that chose each user's slate, −1 for none (None: all −1).
        """
        if not isinstance(responses, Responses):
            raise TypeError(
                f"responses must be a loe_gym.simulator.Responses, got {type(responses).__name__}."
            )
        slates = _as_array(
            "slates", slates, kind="i", shape=(None, None), expected="(num_users, slate_size)"
        )
        num_users = slates.shape[0]
        session_end = _user_column(
            "responses.session_end", responses.session_end, num_users, kind="b"
        )
        churned = _user_column("responses.churned", responses.churned, num_users, kind="b")
        gap_days = _user_column("responses.gap_days", responses.gap_days, num_users)
        columns = {
            "user_id": user_id,
            "episode": episode,
            "day": day,
            "session": session,
            "step": step,
            "clicked": responses.clicked,
            "watch_time": responses.watch_time,
            "completion": responses.completion,
            "session_end": session_end,
            "returned_next_day": session_end & ~churned & (gap_days == 1),
            "gap_days": gap_days,
        }
        privileged = {
            "true_click_probability": true_click_probability,
            "true_watch_time": true_watch_time,
            "true_return_probability": true_return_probability,
        }
        columns.update(self._privileged_arguments(privileged))
        if policy_component is not None:
            columns["policy_component"] = policy_component
        return self._write(columns, slates=slates, mask=mask, labels=_WRITE_STEP_LABELS)

    def flush(self) -> None:
        """Write the buffered rows (if any) as one part file."""
        self._check_open()
        if self._buffered:
            columns = self._take_buffer()
            self._write_part(columns, self._buffered)
            self._buffered = 0
            self._write_metadata()

    def close(self) -> None:
        """Flush and finalise the metadata; further writes are errors. Idempotent."""
        if self._closed:
            return
        self.flush()
        if not self._part_rows:
            # An empty part gives readers the schema of a log without rows.
            empty = {name: np.empty(0, dtype) for name, dtype in self._numpy_types.items()}
            self._write_part(empty, 0)
        self._closed = True
        self._write_metadata()

    def __enter__(self) -> ParquetLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Rows logged before an exception are valid data: keep them.
        self.close()

    def __del__(self) -> None:
        # Like an unclosed file: warn, but do not write from a finaliser (the interpreter
        # may be shutting down); the flushed parts are a readable log already.
        if not getattr(self, "_closed", True):
            warnings.warn(
                f"ParquetLogWriter for {str(self.path)!r} was not closed; "
                f"{self._buffered} buffered rows were not written. Use it as a context "
                "manager or call close().",
                ResourceWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        return (
            f"ParquetLogWriter({str(self.path)!r}, policy={self.policy!r}, "
            f"privileged={self.privileged}, rows_written={self.rows_written}, "
            f"parts={self.num_parts}, closed={self._closed})"
        )

    # ------------------------------------------------------------------ internals

    def _open_directory(self, overwrite: bool, resume: bool) -> None:
        """A fresh log directory, or the kept parts of an unclosed one to resume."""
        if not resume:
            _prepare_directory(self.path, overwrite)
            return
        self._part_rows, self._created = resumable_parts(
            self.path,
            rows_per_group=self.rows_per_group,
            policy=self.policy,
            privileged=self.privileged,
            run=self.run,
        )
        self.rows_flushed = self._skip = sum(self._part_rows.values())

    def _privileged_arguments(self, privileged: Mapping[str, Any]) -> dict[str, Any]:
        """The privileged columns `write_step` got (all or none, as the log was opened)."""
        given = [name for name, value in privileged.items() if value is not None]
        if self.privileged:
            missing = [name for name in PRIVILEGED_COLUMNS if name not in given]
            if missing:
                raise ValueError(
                    f"This log was opened with privileged=True: write_step needs {missing}."
                )
            return dict(privileged)
        if given:
            raise ValueError(
                f"write_step got {given}, but the log was opened without privileged columns; "
                "pass privileged=True to ParquetLogWriter to log them."
            )
        return {}

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"The log writer for {str(self.path)!r} is closed.")

    def _write(
        self,
        columns: Mapping[str, Any],
        *,
        slates: np.ndarray,
        mask: Any,
        labels: Mapping[str, str],
    ) -> int:
        """Validate one step's arrays and buffer the rows of the acted users.

        ``columns`` maps the per-user (``user_id`` … ``gap_days``) and per-item
        (``clicked``, ``watch_time``, ``completion``) log columns to arrays, and for a
        privileged log the privileged columns too; ``labels`` names each argument in
        error messages. Shapes and dtypes are checked for every user, values only for
        acted users, the only ones logged (an autoreset step may carry placeholder values).
        """
        self._check_open()
        num_users, slate_size = slates.shape
        max_slate = int(np.iinfo(np.int16).max) + 1
        if not 1 <= slate_size <= max_slate:
            raise ValueError(
                f"{labels['slates']} must have 1 to {max_slate} items per slate, "
                f"got shape {slates.shape}."
            )
        items = {
            name: _as_array(
                labels[name],
                columns[name],
                kind=kind,
                shape=(num_users, slate_size),
                expected="(num_users, slate_size)",
            )
            for name, kind in self._item_columns.items()
        }
        users = {
            name: _user_column(labels[name], columns[name], num_users, kind=kind)
            for name, kind in self._user_columns.items()
        }
        if mask is None:
            rows = np.arange(num_users)
        else:
            mask = _as_array(
                labels["mask"], mask, kind="b", shape=(num_users,), expected="(num_users,)"
            )
            rows = np.flatnonzero(mask)
        num_acted = rows.size
        if num_acted == 0:
            return 0
        # Fancy indexing copies, so later in-place changes by the caller (envs reuse
        # their buffers) cannot alter the buffered rows.
        acted_slates = slates[rows]
        acted_items = {name: values[rows] for name, values in items.items()}
        acted_users = {name: values[rows] for name, values in users.items()}
        self._check_values(labels, rows, acted_slates, acted_items, acted_users)
        codes = self._policy_codes(columns.get("policy_component"), rows, num_users)
        return self._buffer(codes, acted_slates, acted_items, acted_users)

    def _check_values(
        self,
        labels: Mapping[str, str],
        rows: np.ndarray,
        acted_slates: np.ndarray,
        acted_items: dict[str, np.ndarray],
        acted_users: dict[str, np.ndarray],
    ) -> None:
        """Check the acted users' values (``rows``: their user indices, for messages); on a
        privileged log, set ``acted_users["true_return_probability"]`` to NaN where no
        session ended."""
        int64 = np.dtype(np.int64)
        int64_min, int64_max = _integer_limits(int64)
        max_item = int64_max if self.catalog is None else self.catalog.num_items - 1
        _check_range(labels["slates"], acted_slates, rows, low=0, high=max_item, target=int64)
        _check_range(labels["watch_time"], acted_items["watch_time"], rows, low=0.0, high=np.inf)
        _check_range(labels["completion"], acted_items["completion"], rows, low=0.0, high=1.0)
        for name in ("episode", "day", "session", "step", "gap_days"):
            _check_range(
                labels[name], acted_users[name], rows, low=0, high=np.inf, target=_NUMPY_TYPES[name]
            )
        _check_range(
            labels["user_id"],
            acted_users["user_id"],
            rows,
            low=int64_min,
            high=int64_max,
            target=int64,
        )
        if self.privileged:
            name = "true_click_probability"
            _check_range(labels[name], acted_items[name], rows, low=0.0, high=1.0)
            name = "true_watch_time"
            _check_range(labels[name], acted_items[name], rows, low=0.0, high=np.inf)
            # Defined on session ends only; NaN there means the simulator cannot tell.
            name = "true_return_probability"
            ended = acted_users["session_end"]
            known = ended & ~np.isnan(acted_users[name])
            _check_range(labels[name], acted_users[name][known], rows[known], low=0.0, high=1.0)
            acted_users[name] = np.where(ended, acted_users[name], np.nan)

    def _policy_codes(self, component: Any, rows: np.ndarray, num_users: int) -> np.ndarray:
        """``(num_acted,) int32`` policy code of the acted users: 0 for the policy, k for
        its k-th component (``component`` indexes `policy_components`, −1 for none)."""
        codes = np.zeros(rows.size, dtype=np.int32)
        if component is not None:
            component = _user_column("policy_component", component, num_users)[rows]
            if component.size and (
                component.min() < -1 or component.max() >= len(self.policy_components)
            ):
                raise ValueError(
                    f"policy_component must index policy_components "
                    f"{self.policy_components!r} (or be −1), got {int(component.max())}."
                )
            codes = (component + 1).astype(np.int32)
        return codes

    def _buffer(
        self,
        codes: np.ndarray,
        acted_slates: np.ndarray,
        acted_items: dict[str, np.ndarray],
        acted_users: dict[str, np.ndarray],
    ) -> int:
        """Buffer the checked rows of the acted users (one per shown item), flush the full
        row groups, and return the number of rows added."""
        num_acted, slate_size = acted_slates.shape
        chunks = self._chunks
        chunks["policy_code"].append(codes if slate_size == 1 else np.repeat(codes, slate_size))
        for name, values in acted_users.items():
            values = values.astype(_NUMPY_TYPES[name], copy=False)
            # One row per shown item; with single-item slates that is the array itself.
            chunks[name].append(values if slate_size == 1 else np.repeat(values, slate_size))
        for name, values in acted_items.items():
            chunks[name].append(values.astype(_NUMPY_TYPES[name], copy=False).reshape(-1))
        chunks["item_id"].append(acted_slates.astype(np.int64, copy=False).reshape(-1))
        chunks["position"].append(np.tile(np.arange(slate_size, dtype=np.int16), num_acted))

        added = num_acted * slate_size
        self._buffered += added
        self.rows_written += added
        if self._skip:
            self._drop_skipped_rows()
        if self._buffered >= self.rows_per_group:
            self._flush_full_groups()
        return added

    def _drop_skipped_rows(self) -> None:
        """Drop buffered rows that the parts of a resumed log already hold."""
        dropped = min(self._skip, self._buffered)
        columns = self._take_buffer()
        for name, values in columns.items():
            self._chunks[name].append(values[dropped:])
        self._skip -= dropped
        self._buffered -= dropped

    def _take_buffer(self) -> dict[str, np.ndarray]:
        columns = {name: np.concatenate(parts) for name, parts in self._chunks.items()}
        for parts in self._chunks.values():
            parts.clear()
        return columns

    def _flush_full_groups(self) -> None:
        columns = self._take_buffer()
        size, start = self.rows_per_group, 0
        while self._buffered - start >= size:
            self._write_part({k: v[start : start + size] for k, v in columns.items()}, size)
            start += size
        self._buffered -= start
        if self._buffered:
            for name, values in columns.items():
                self._chunks[name].append(values[start:])
        self._write_metadata()

    def _write_part(self, columns: Mapping[str, np.ndarray], num_rows: int) -> None:
        codes = columns.get("policy_code")
        policy = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(num_rows, dtype=np.int32) if codes is None else codes),
            self._policy_dictionary,
        )
        arrays = [
            policy if field.name == "policy" else pa.array(columns[field.name])
            for field in self.schema
        ]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        name = f"part-{len(self._part_rows):05d}.parquet"
        _replace_atomically(
            self.path / name,
            lambda tmp: pq.write_table(
                table,
                tmp,
                row_group_size=max(num_rows, 1),
                compression=_COMPRESSION,
                use_dictionary=_DICTIONARY_COLUMNS,
            ),
        )
        self._part_rows[name] = num_rows
        self.rows_flushed += num_rows

    def _write_metadata(self) -> None:
        metadata = {
            "format": LOG_FORMAT,
            "schema_version": LOG_SCHEMA_VERSION,
            "policy": self.policy,
            "privileged": self.privileged,
            "created": self._created,
            "closed": self._closed,
            "num_rows": self.rows_flushed,
            "rows_per_group": self.rows_per_group,
            "run": self.run,
            "parts": dict(self._part_rows),
            "catalog": None
            if self.catalog is None
            else {"file": CATALOG_FILE, "num_items": self.catalog.num_items},
        }
        text = json.dumps(metadata, indent=2) + "\n"
        _replace_atomically(self.path / METADATA_FILE, lambda tmp: tmp.write_text(text))
