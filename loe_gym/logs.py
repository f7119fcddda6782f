"""Interaction logs in Parquet: one row per item shown to a user.

A log is a **directory** that Parquet readers treat as one dataset::

    my_log/
        part-00000.parquet    # one row group per part, written atomically
        part-00001.parquet
        _catalog.parquet      # the item catalog (optional)
        _metadata.json        # schema version, policy, row counts

Readers skip names that start with ``_`` or ``.`` (the Hadoop convention that pyarrow,
pandas, Spark and Ray follow), so ``pandas.read_parquet("my_log")`` and
``pyarrow.dataset.dataset("my_log")`` read exactly the interactions. Polars does not
skip them by default; give it the parts, ``polars.read_parquet("my_log/part-*.parquet")``
(the glob works in DuckDB and Spark too), or ``polars.scan_parquet("my_log",
hidden_file_prefix=["_", "."])``. `read_log` also checks the schema and values of
every part.

Each part is written to a hidden temporary name, synced to disk and renamed into place,
so a crash loses at most the rows not yet flushed and the directory is always a readable
log. A part is a complete Parquet file (footer included), unlike a single growing file,
which is unreadable until it is closed.

Columns (`LOG_SCHEMA`; every field also carries its description in its metadata):

=================  =================  ====================================================
column             type               meaning
=================  =================  ====================================================
user_id            int64              simulated user (unique per user life)
episode            int64              episode (user life) counter of the environment slot
day                int32              day of the step, 0 = first day of the episode
session            int32              session index within the episode, from 0
step               int32              step within the session, from 0
item_id            int64              catalog id of the item shown
position           int16              position of the item in the slate, from 0
clicked            bool               the user clicked the item
watch_time         float32            minutes watched, 0 where not clicked
completion         float32            fraction of the item consumed, in [0, 1]
session_end        bool               the session ended after this step (whole slate)
returned_next_day  bool               the session ended and the next visit is tomorrow
gap_days           int16              days to the next visit after a session end, else 0
policy             dictionary<string> name of the policy that chose the slate
=================  =================  ====================================================

``session_end``, ``returned_next_day`` and ``gap_days`` describe the step, so they are
repeated on every row of the step's slate. A session end with ``gap_days == 0`` is a
user who churned (never returns).

Privileged columns (`PRIVILEGED_LOG_SCHEMA`, written only with ``privileged=True``):

=======================  =======  ==============================================
column                   type     meaning
=======================  =======  ==============================================
true_click_probability   float32  simulator's click probability of the item shown
                                  alone, in the state before the step
true_watch_time          float32  expected minutes watched of the item shown alone
                                  (unconditional), in the state before the step
true_return_probability  float32  on rows whose step ended a session (churned or
                                  not): probability that the next visit is the
                                  next day, in the state after the step; NaN on
                                  other rows and where the simulator cannot tell
=======================  =======  ==============================================

They come from the simulator's hidden state (`loe_gym.simulator.PrivilegedSimulator`),
which no recommender can observe. **They are for evaluation only** (the Bayes-optimal
AUC or RMSE a predictor could reach on the log): never use them as model inputs or
training labels. ``true_return_probability`` is per step, repeated on every row of the
step's slate.

Version history: schema version 1 had the columns of `LOG_SCHEMA` only; version 2 adds
the optional privileged columns. `read_log` reads both (a log without privileged
columns reads as `LOG_SCHEMA`) and refuses logs of a newer version.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from loe_gym.catalog import Catalog
from loe_gym.errors import check_positive_int
from loe_gym.simulator import Responses

__all__ = [
    "CATALOG_FILE",
    "LOG_SCHEMA",
    "LOG_SCHEMA_VERSION",
    "METADATA_FILE",
    "PRIVILEGED_COLUMNS",
    "PRIVILEGED_LOG_SCHEMA",
    "LogInteractions",
    "LogSchemaError",
    "ParquetLogWriter",
    "catalog_table",
    "log_part_files",
    "read_catalog",
    "read_log",
    "read_log_metadata",
    "read_public_catalog",
]

LOG_SCHEMA_VERSION: Final = 2
CATALOG_FILE: Final = "_catalog.parquet"
METADATA_FILE: Final = "_metadata.json"
LOG_FORMAT: Final = "loe_gym.interaction_log"

_PART_PATTERN: Final = re.compile(r"^part-(\d+)\.parquet$")
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


def _field(name: str, type_: pa.DataType, description: str) -> pa.Field:
    return pa.field(name, type_, nullable=False, metadata={"description": description})


LOG_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        _field("user_id", pa.int64(), "Simulated user, unique per user life."),
        _field("episode", pa.int64(), "Episode (user life) counter of the environment slot."),
        _field("day", pa.int32(), "Day of the step; 0 is the first day of the episode."),
        _field("session", pa.int32(), "Session index within the episode, from 0."),
        _field("step", pa.int32(), "Step within the session, from 0."),
        _field("item_id", pa.int64(), "Catalog id of the item shown."),
        _field("position", pa.int16(), "Position of the item in the slate, from 0."),
        _field("clicked", pa.bool_(), "The user clicked the item."),
        _field("watch_time", pa.float32(), "Minutes watched; 0 where not clicked."),
        _field("completion", pa.float32(), "Fraction of the item consumed, in [0, 1]."),
        _field("session_end", pa.bool_(), "The session ended after this step (per step)."),
        _field(
            "returned_next_day",
            pa.bool_(),
            "The session ended and the next visit is tomorrow (per step).",
        ),
        _field(
            "gap_days",
            pa.int16(),
            "Days to the next visit after a session end (1 = tomorrow); 0 if the session "
            "continues or the user churned (per step).",
        ),
        _field(
            "policy",
            pa.dictionary(pa.int32(), pa.string()),
            "Name of the policy that chose the slate.",
        ),
    ],
    metadata={"loe_gym.schema_version": str(LOG_SCHEMA_VERSION)},
)
"""The columns of an interaction log, one row per shown item (see the module docstring)."""

PRIVILEGED_COLUMNS: Final = (
    "true_click_probability",
    "true_watch_time",
    "true_return_probability",
)
"""The columns a ``privileged=True`` log adds, for evaluation only."""

PRIVILEGED_LOG_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        *LOG_SCHEMA,
        _field(
            "true_click_probability",
            pa.float32(),
            "Evaluation only: the simulator's click probability of the item shown alone, "
            "in the state before the step.",
        ),
        _field(
            "true_watch_time",
            pa.float32(),
            "Evaluation only: expected minutes watched of the item shown alone "
            "(unconditional), in the state before the step.",
        ),
        _field(
            "true_return_probability",
            pa.float32(),
            "Evaluation only: on rows whose step ended a session, the probability that the "
            "next visit is the next day (state after the step); NaN elsewhere (per step).",
        ),
    ],
    metadata={"loe_gym.schema_version": str(LOG_SCHEMA_VERSION)},
)
"""`LOG_SCHEMA` plus the privileged columns (see the module docstring)."""

_NUMPY_TYPES: Final[dict[str, np.dtype[Any]]] = {
    field.name: np.dtype(field.type.to_pandas_dtype())
    for field in PRIVILEGED_LOG_SCHEMA
    if not pa.types.is_dictionary(field.type)
}


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


class LogSchemaError(ValueError):
    """A Parquet file is not a valid interaction log (missing column, wrong type, bad row)."""


# ----------------------------------------------------------------------- validation


def _as_array(
    name: str, value: Any, *, kind: str, shape: tuple[int | None, ...], expected: str
) -> np.ndarray:
    """``value`` as an array of numpy kind ``kind`` ("b", "i" or "f") and ``shape``.

    ``None`` in ``shape`` accepts any size; ``expected`` describes the shape in the
    error message (``"(num_users, slate_size)"``).
    """
    array = np.asarray(value)
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=False)
    ):
        raise ValueError(
            f"{name} must have shape {expected}="
            f"({', '.join('?' if s is None else str(s) for s in shape)}), "
            f"got shape {array.shape}."
        )
    allowed = {"b": "b", "i": "iu", "f": "fiu"}[kind]
    if array.dtype.kind not in allowed:
        wanted = {"b": "bool", "i": "an integer dtype", "f": "a real (float) dtype"}[kind]
        raise TypeError(f"{name} must have {wanted}, got dtype {array.dtype}.")
    return array


def _bound(value: float) -> str:
    """A range bound for messages: ``32767``, ``0.5`` or ``inf``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@functools.cache
def _integer_limits(dtype: np.dtype[Any]) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _check_range(
    name: str,
    values: np.ndarray,
    rows: np.ndarray,
    *,
    low: float,
    high: float,
    target: np.dtype[Any] | None = None,
) -> None:
    """Raise if ``values`` fall outside ``[low, high]`` (or are NaN), and, for integers,
    outside the range of ``target``; ``rows`` maps the first axis back to the caller's
    user index for the message."""
    if values.size == 0:
        return
    if target is not None and values.dtype.kind in "iu":
        source_min, source_max = _integer_limits(values.dtype)
        target_min, target_max = _integer_limits(target)
        low, high = max(low, target_min), min(high, target_max)
        # No scan when the source dtype cannot leave the range (int32 day into int32).
        if source_min >= low and source_max <= high:
            return
    # Two reductions on the common path; NaN propagates and fails the comparison.
    if values.min() >= low and values.max() <= high:
        return
    with np.errstate(invalid="ignore"):
        bad = ~((values >= low) & (values <= high))
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    place = f"user {int(rows[where[0]])}"
    if len(where) > 1:
        place += f", slate position {where[1]}"
    raise ValueError(
        f"{name} must lie in [{_bound(low)}, {_bound(high)}]; {place} has {values[where].item()!r}."
    )


def _user_column(name: str, value: Any, num_users: int, *, kind: str = "i") -> np.ndarray:
    """A per-user array ``(num_users,)``; a scalar is broadcast to every user."""
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.broadcast_to(array, (num_users,))
    return _as_array(name, array, kind=kind, shape=(num_users,), expected="(num_users,)")


# --------------------------------------------------------------------------- writer


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


def _is_log_file(name: str) -> bool:
    return (
        name in (CATALOG_FILE, METADATA_FILE)
        or _PART_PATTERN.match(name) is not None
        or (name.startswith(".") and name.endswith(".tmp"))
    )


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


def catalog_table(catalog: Catalog) -> pa.Table:
    """The catalog as a table: ``item_id``, ``topic`` (if any), each public feature by
    name, then each hidden attribute as ``hidden_<name>``.

    Hidden attributes of shape ``(num_items, ...)`` with more than one axis become
    fixed-size list columns; the field metadata ``shape`` keeps the trailing shape.
    """
    columns: dict[str, pa.Array] = {
        "item_id": pa.array(np.arange(catalog.num_items, dtype=np.int64)),
    }
    fields = [pa.field("item_id", pa.int64(), nullable=False)]

    def add(name: str, array: pa.Array, metadata: dict[str, str] | None = None) -> None:
        if name in columns:
            raise ValueError(
                f"The catalog cannot be logged: two columns would be named {name!r}. "
                "Rename the catalog feature or hidden attribute."
            )
        columns[name] = array
        fields.append(pa.field(name, array.type, nullable=False, metadata=metadata))

    if catalog.topics is not None:
        add("topic", pa.array(np.asarray(catalog.topics, dtype=np.int64)))
    for index, name in enumerate(catalog.feature_names):
        add(name, pa.array(np.ascontiguousarray(catalog.features[:, index])))
    for name, values in catalog.hidden.items():
        values = np.asarray(values)
        if values.ndim == 1:
            add(f"hidden_{name}", pa.array(values))
        else:
            width = int(np.prod(values.shape[1:]))
            flat = pa.array(np.ascontiguousarray(values).reshape(-1))
            add(
                f"hidden_{name}",
                pa.FixedSizeListArray.from_arrays(flat, width),
                {"shape": json.dumps(list(values.shape[1:]))},
            )
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


class ParquetLogWriter:
    """Streams interaction rows into a Parquet log directory (see the module docstring).

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
        # Row code 0 is the policy; code k > 0 its k-th component ("mixed:random", …).
        self._policy_dictionary = pa.array(
            [policy, *(f"{policy}:{c}" for c in components)], type=pa.string()
        )
        self._chunks["policy_code"] = []

        _prepare_directory(self.path, overwrite)
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
        given = [name for name, value in privileged.items() if value is not None]
        if self.privileged:
            missing = [name for name in PRIVILEGED_COLUMNS if name not in given]
            if missing:
                raise ValueError(
                    f"This log was opened with privileged=True: write_step needs {missing}."
                )
            columns.update(privileged)
        elif given:
            raise ValueError(
                f"write_step got {given}, but the log was opened without privileged columns; "
                "pass privileged=True to ParquetLogWriter to log them."
            )
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

        codes = np.zeros(num_acted, dtype=np.int32)
        component = columns.get("policy_component")
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
        if self._buffered >= self.rows_per_group:
            self._flush_full_groups()
        return added

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
            "parts": dict(self._part_rows),
            "catalog": None
            if self.catalog is None
            else {"file": CATALOG_FILE, "num_items": self.catalog.num_items},
        }
        text = json.dumps(metadata, indent=2) + "\n"
        _replace_atomically(self.path / METADATA_FILE, lambda tmp: tmp.write_text(text))


# --------------------------------------------------------------------------- reading


def _part_files(directory: Path) -> list[Path]:
    parts = [
        (int(match.group(1)), entry)
        for entry in directory.iterdir()
        if (match := _PART_PATTERN.match(entry.name)) is not None
    ]
    return [entry for _, entry in sorted(parts)]


def read_log_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The contents of a log's ``_metadata.json``, or None if it has none."""
    file = Path(path) / METADATA_FILE
    if not file.exists():
        return None
    return json.loads(file.read_text())  # type: ignore[no-any-return]


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


def log_part_files(path: str | os.PathLike[str]) -> list[Path]:
    """The part files of the log at ``path`` in order (``[path]`` for a single part file).

    Raises `FileNotFoundError` when there is no log, and `LogSchemaError` when parts
    listed in ``_metadata.json`` are missing or the log has a newer schema version.
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


def read_log(path: str | os.PathLike[str]) -> pa.Table:
    """Read an interaction log directory (or one part file) as a table with `LOG_SCHEMA`,
    or `PRIVILEGED_LOG_SCHEMA` for a log written with ``privileged=True``.

    Every part's schema and values are checked: a missing column, a wrong type, a
    missing value or an out-of-range value raises `LogSchemaError` naming the file
    (and row and column). Parts listed in ``_metadata.json`` but absent are an error too,
    and so are parts that disagree on having the privileged columns. Logs of schema
    version 1 (before the privileged columns) read unchanged.
    """
    files = log_part_files(path)
    policy_field = LOG_SCHEMA.field("policy")
    tables = []
    schema: pa.Schema | None = None
    for file in files:
        part_schema = _check_schema(file, pq.read_schema(file))
        if schema is not None and part_schema is not schema:
            raise LogSchemaError(
                f"{str(file)!r} {'has' if part_schema is PRIVILEGED_LOG_SCHEMA else 'lacks'} "
                f"the privileged columns but {str(files[0])!r} "
                f"{'lacks' if part_schema is PRIVILEGED_LOG_SCHEMA else 'has'} them; the parts "
                "of one log must share a schema."
            )
        schema = part_schema
        table = pq.read_table(file, columns=schema.names)
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


def read_catalog(path: str | os.PathLike[str]) -> pa.Table | None:
    """The catalog stored with the log at ``path`` (a directory), or None if it has none."""
    file = Path(path) / CATALOG_FILE
    if not Path(path).is_dir():
        raise FileNotFoundError(f"No interaction log directory at {str(path)!r}.")
    return pq.read_table(file) if file.exists() else None


def read_public_catalog(path: str | os.PathLike[str]) -> Catalog | None:
    """The public part of the catalog stored with the log at ``path``: its features (by
    name) and topics, never the hidden attributes; None if the log has no catalog."""
    table = read_catalog(path)
    if table is None:
        return None
    names = tuple(
        name
        for name in table.column_names
        if name not in ("item_id", "topic") and not name.startswith("hidden_")
    )
    features = np.stack([table.column(name).to_numpy() for name in names], axis=1)
    topics = table.column("topic").to_numpy() if "topic" in table.column_names else None
    return Catalog(features=features, feature_names=names, topics=topics)


# -------------------------------------------------------------------------- wrapper

# Log column -> key of the loe_gym vector env's step info.
_INFO_KEYS: Final = {
    "user_id": "user_id",
    "episode": "life",
    "day": "day",
    "session": "session",
    "step": "step_in_session",
    "clicked": "clicked",
    "watch_time": "watch_time",
    "completion": "completion",
    "session_end": "session_end",
    "returned_next_day": "returned_next_day",
    "gap_days": "gap_days",
    "slates": "slate",
    "mask": "acted",
}
_INFO_LABELS: Final = {
    **{name: f"info[{key!r}]" for name, key in _INFO_KEYS.items()},
    "true_click_probability": "simulator.expected_responses()['click_probability']",
    "true_watch_time": "simulator.expected_responses()['watch_time']",
    "true_return_probability": "simulator.return_probability()",
}


def _find_catalog(env: VectorEnv) -> Catalog | None:
    unwrapped = env.unwrapped
    catalog = getattr(unwrapped, "catalog", None)
    if catalog is None:
        catalog = getattr(getattr(unwrapped, "simulator", None), "catalog", None)
    return catalog if isinstance(catalog, Catalog) else None


def _privileged_core(env: VectorEnv) -> Any:
    """The unwrapped loe_gym core of ``env``, checked to support privileged logging."""
    core = env.unwrapped
    simulator = getattr(core, "simulator", None)
    # Looked up on the class too: the core's state property is unset before reset.
    if not (hasattr(type(core), "state") or hasattr(core, "state")) or simulator is None:
        raise TypeError(
            "privileged=True needs a loe_gym vector environment exposing .state and "
            f".simulator (gym.make_vec('loe_gym/...', ...)); got {type(core).__name__}."
        )
    if not callable(getattr(simulator, "expected_responses", None)):
        raise TypeError(
            f"privileged=True needs a simulator with expected_responses(); "
            f"{type(simulator).__name__} has none (see loe_gym.PrivilegedSimulator)."
        )
    mode = env.metadata.get("autoreset_mode", getattr(core, "autoreset_mode", None))
    if mode == AutoresetMode.SAME_STEP:
        # The return probability needs each user's state after the step; same-step
        # autoreset replaces the finished users' state before the wrapper can read it.
        raise ValueError(
            "privileged=True needs autoreset_mode 'next_step' (the default) or 'disabled': "
            "with 'same_step' the state of users who finish is replaced within the step."
        )
    return core


class LogInteractions(VectorWrapper):
    """Logs every real step of a loe_gym vector environment to a Parquet log.

    Reads the per-step arrays of the environment's ``info`` (``acted``, ``user_id``,
    ``episode``, ``day``, ``session``, ``step_in_session``, ``slate``, ``clicked``,
    ``watch_time``, ``completion``, ``session_end``, ``gap_days``,
    ``returned_next_day``); users with ``acted`` False (an autoreset step) are skipped,
    and so are slots outside `log_mask` when it is set.
    Buffered rows are flushed on `reset`; `close` closes the log and the environment.

    With ``privileged=True`` it also logs the privileged columns (evaluation only) from
    the unwrapped core's ``simulator`` and ``state``: ``expected_responses(state, slate)``
    of the state before the step, and ``simulator.return_probability(state)`` of the
    state after it where the simulator has that method (else NaN).

    Args:
        env: a loe_gym vector environment (``gym.make_vec("loe_gym/Engagement-v0", ...)``).
        path: the log directory (see `ParquetLogWriter`).
        policy: name of the policy acting in the environment (the ``policy`` column).
        rows_per_group: rows per part file.
        overwrite: replace an existing log at ``path``.
        catalog: catalog to store with the log; by default the environment's.
        privileged: log the privileged columns (needs a `PrivilegedSimulator` and
            ``next_step`` or ``disabled`` autoreset).
        policy_components: component names of a mixture policy (see `ParquetLogWriter`).

    Attributes:
        writer: the `ParquetLogWriter`.
        policy_component: ``(num_envs,)`` index into ``policy_components`` of the
            component that chose the coming step's slates (−1 for none), or None; the
            acting policy sets it before each step.
    """

    def __init__(
        self,
        env: VectorEnv,
        path: str | os.PathLike[str],
        *,
        policy: str,
        rows_per_group: int = 65_536,
        overwrite: bool = False,
        catalog: Catalog | None = None,
        privileged: bool = False,
        policy_components: Sequence[str] = (),
    ) -> None:
        super().__init__(env)
        self.policy_component: np.ndarray | None = None
        # Checked before the writer exists, so a refused wrapper creates no log.
        # The unwrapped core when logging privileged columns, else None.
        self._core: Any = _privileged_core(env) if privileged else None
        self._log_mask: np.ndarray | None = None
        self.writer = ParquetLogWriter(
            path,
            rows_per_group=rows_per_group,
            policy=policy,
            catalog=catalog if catalog is not None else _find_catalog(env),
            overwrite=overwrite,
            privileged=privileged,
            policy_components=policy_components,
        )

    @property
    def log_mask(self) -> np.ndarray | None:
        """``(num_envs,) bool`` slots whose steps are logged (with ``acted``), or None
        for every slot. Set it to stop logging slots, e.g. once a population's user has
        finished and the slot holds a new user."""
        return self._log_mask

    @log_mask.setter
    def log_mask(self, mask: Any) -> None:
        if mask is not None:
            mask = _as_array(
                "log_mask", mask, kind="b", shape=(self.num_envs,), expected="(num_envs,)"
            ).copy()
        self._log_mask = mask

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        # A reset ends the episodes in flight: make their rows durable.
        self.writer.flush()
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        # Simulator states are never mutated (rule 7 of the simulator contract), so this
        # reference still holds the pre-step state after the step. The expectations are
        # taken on the slate the env reports, which is the slate shown even when the env
        # replaced repeated candidates.
        state_before = self._core.state if self._core is not None else None
        observations, rewards, terminations, truncations, info = self.env.step(actions)
        self._log(info, state_before)
        return observations, rewards, terminations, truncations, info

    def close(self, **kwargs: Any) -> None:
        try:
            self.writer.close()
        finally:
            super().close(**kwargs)

    def _log(self, info: Mapping[str, Any], state_before: Any = None) -> None:
        missing = [key for key in _INFO_KEYS.values() if key not in info]
        if missing:
            raise KeyError(
                "LogInteractions needs the step info of a loe_gym vector environment; "
                f"the info lacks {missing}. Wrap an environment made by "
                "gym.make_vec('loe_gym/...', ...)."
            )
        slates = _as_array(
            _INFO_LABELS["slates"],
            info["slate"],
            kind="i",
            shape=(self.num_envs, None),
            expected="(num_envs, slate_size)",
        )
        columns = {name: info[key] for name, key in _INFO_KEYS.items()}
        mask = np.asarray(info["acted"])
        if self._log_mask is not None:
            mask = mask & self._log_mask
        if self._core is not None:
            if not np.count_nonzero(mask):
                return
            columns.update(self._privileged_columns(slates, state_before))
        if self.policy_component is not None:
            columns["policy_component"] = self.policy_component
        self.writer._write(columns, slates=slates, mask=mask, labels=_INFO_LABELS)

    def _privileged_columns(self, slates: np.ndarray, state_before: Any) -> dict[str, Any]:
        """The privileged columns of a step: expectations of ``slates`` in the pre-step
        state, and the next-day return probability in the post-step state."""
        core = self._core
        simulator = core.simulator
        expected = simulator.expected_responses(state_before, slates)
        lacking = [key for key in ("click_probability", "watch_time") if key not in expected]
        if lacking:
            raise KeyError(
                f"{type(simulator).__name__}.expected_responses() returns no {lacking}; "
                "privileged logging needs 'click_probability' and 'watch_time'."
            )
        return_probability = getattr(simulator, "return_probability", None)
        if callable(return_probability):
            after = np.asarray(return_probability(core.state), dtype=np.float64)
        else:
            after = np.full(self.num_envs, np.nan)
        return {
            "true_click_probability": expected["click_probability"],
            "true_watch_time": expected["watch_time"],
            "true_return_probability": after,
        }
