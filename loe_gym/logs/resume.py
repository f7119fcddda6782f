"""Continuing an interrupted log so that it ends as an uninterrupted run's would.

A writer killed mid-run leaves complete part files (each written atomically) and a
``_metadata.json`` that says ``"closed": false``. A collection is deterministic under its
seed, so `ParquetLogWriter` with ``resume=True`` keeps the listed parts, and the run
replays its steps from the start while the writer drops the rows those parts already
hold: the next part begins exactly where a full run's would, and the resumed log's
parts are byte for byte those of an uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loe_gym.logs.schema import _PART_PATTERN, METADATA_FILE, LogSchemaError


def resumable_parts(
    path: Path, *, rows_per_group: int, policy: str, privileged: bool, run: Mapping[str, Any] | None
) -> tuple[dict[str, int], str]:
    """``(parts kept, creation time)`` of the unclosed log at ``path`` that a run described
    by ``run`` (and these writer options) wrote; raises if there is none or it differs.
    Part files the metadata does not list (written just before a kill) are removed: the
    resumed run writes them again."""
    file = path / METADATA_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"Nothing to resume at {str(path)!r}: it holds no log ({METADATA_FILE} is "
            "missing). Start the log without resume."
        )
    try:
        metadata = json.loads(file.read_text())
    except ValueError as error:
        raise LogSchemaError(f"{str(file)!r} is not valid JSON ({error}).") from error
    if metadata.get("closed", True):
        raise FileExistsError(
            f"The log at {str(path)!r} is complete (closed); there is nothing to resume. "
            "Pass overwrite to collect it again."
        )
    expected = {
        "run": json.loads(json.dumps(run)) if run is not None else None,
        "rows_per_group": rows_per_group,
        "policy": policy,
        "privileged": privileged,
    }
    differs = [key for key, value in expected.items() if metadata.get(key) != value]
    if differs:
        raise ValueError(
            f"The unfinished log at {str(path)!r} was written with other {differs} "
            f"({ {k: metadata.get(k) for k in differs} } vs { {k: expected[k] for k in differs} }); "
            "resume it with the same options, or start afresh with overwrite."
        )
    parts = {str(name): int(rows) for name, rows in metadata.get("parts", {}).items()}
    for name, rows in parts.items():
        if not (path / name).is_file() or rows != rows_per_group:
            raise LogSchemaError(
                f"{str(path / name)!r} is missing or not a full part ({rows} rows); the "
                "log cannot be resumed. Start it afresh with overwrite."
            )
    for entry in path.iterdir():
        if (_PART_PATTERN.match(entry.name) and entry.name not in parts) or (
            entry.name.startswith(".") and entry.name.endswith(".tmp")
        ):
            entry.unlink()
    return parts, str(metadata.get("created", ""))
