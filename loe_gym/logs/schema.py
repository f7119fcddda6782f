"""The schema of an interaction log: its columns, file names, version and error type.

A log holds one row per item shown to a user (the directory layout is in `loe_gym.logs`);
`catalog_table` is the layout of the catalog stored with it (``_catalog.parquet``).

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

import json
import re
from typing import Any, Final

import numpy as np
import pyarrow as pa

from loe_gym.catalog import Catalog

__all__ = [
    "CATALOG_FILE",
    "LOG_FORMAT",
    "LOG_SCHEMA",
    "LOG_SCHEMA_VERSION",
    "METADATA_FILE",
    "PRIVILEGED_COLUMNS",
    "PRIVILEGED_LOG_SCHEMA",
    "LogSchemaError",
    "catalog_table",
]

LOG_SCHEMA_VERSION: Final = 2
CATALOG_FILE: Final = "_catalog.parquet"
METADATA_FILE: Final = "_metadata.json"
LOG_FORMAT: Final = "loe_gym.interaction_log"

_PART_PATTERN: Final = re.compile(r"^part-(\d+)\.parquet$")


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


class LogSchemaError(ValueError):
    """A Parquet file is not a valid interaction log (missing column, wrong type, bad row)."""


def _is_log_file(name: str) -> bool:
    return (
        name in (CATALOG_FILE, METADATA_FILE)
        or _PART_PATTERN.match(name) is not None
        or (name.startswith(".") and name.endswith(".tmp"))
    )


def catalog_table(catalog: Catalog) -> pa.Table:
    """The catalog as a table: ``item_id``, ``topic``, ``text`` and the availability
    ``available_from`` / ``available_until`` (if any), each public feature by name, then each hidden attribute as ``hidden_<name>``.

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
    if catalog.texts is not None:
        add("text", pa.array(catalog.texts, type=pa.string()))
    if catalog.availability is not None:
        add("available_from", pa.array(np.ascontiguousarray(catalog.availability[:, 0])))
        add("available_until", pa.array(np.ascontiguousarray(catalog.availability[:, 1])))
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
