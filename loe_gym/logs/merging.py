"""Logs of population shards merged into one log, as if one process had written them.

A population collected as shards (``agents.collect``, in turn or as Ray tasks) writes one
closed log per shard, each with user ids ``0 … n_k − 1``. `merge_logs` concatenates them in
shard order into ``output``: shard ``k``'s parts follow shard ``k − 1``'s with its user ids
moved past the earlier shards' users, the catalog is the shards' (all must agree) and the
metadata is written last, so a killed merge leaves no log that claims to be complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loe_gym.logs.reader import log_part_files, read_log_metadata
from loe_gym.logs.schema import CATALOG_FILE, METADATA_FILE
from loe_gym.logs.writer import _prepare_directory, _replace_atomically

__all__ = ["merge_logs", "prepare_log_directory"]


def prepare_log_directory(output: str | os.PathLike[str], overwrite: bool) -> None:
    """Create ``output`` or empty an old log there (``overwrite``); refuse anything else."""
    _prepare_directory(Path(output), overwrite)


def merge_logs(
    shards: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    run: Mapping[str, Any],
    overwrite: bool = False,
) -> int:
    """Write the closed logs ``shards`` (in order) as one log at ``output``; ``run`` updates
    the first shard's ``run`` record (the options that made the rows). Returns the rows."""
    sources = [Path(shard) for shard in shards]
    metadata = [_closed(source) for source in sources]
    catalogs = {json.dumps(meta.get("catalog")) for meta in metadata}
    if len(catalogs) > 1:
        raise ValueError(f"The shards {sources} log different catalogs; they cannot be merged.")
    destination = Path(output)
    _prepare_directory(destination, overwrite)
    parts: dict[str, int] = {}
    offset = 0
    for source, meta in zip(sources, metadata, strict=True):
        for file in log_part_files(source):
            table = pq.read_table(file)
            kind = table.schema.field("user_id").type
            users = pc.add(table.column("user_id"), pa.scalar(offset, kind))
            table = table.set_column(table.schema.get_field_index("user_id"), "user_id", users)
            name = f"part-{len(parts):05d}.parquet"
            _replace_atomically(destination / name, lambda tmp, t=table: pq.write_table(t, tmp))
            parts[name] = table.num_rows
        offset += int(meta["run"]["num_users"])
    if metadata[0].get("catalog") is not None:
        data = (sources[0] / CATALOG_FILE).read_bytes()
        _replace_atomically(destination / CATALOG_FILE, lambda tmp: tmp.write_bytes(data))
    merged_run = {**metadata[0]["run"], **run}
    merged = {**metadata[0], "run": merged_run, "parts": parts, "num_rows": sum(parts.values())}
    text = json.dumps(merged, indent=2) + "\n"
    _replace_atomically(destination / METADATA_FILE, lambda tmp: tmp.write_text(text))
    return merged["num_rows"]


def _closed(source: Path) -> dict[str, Any]:
    meta = read_log_metadata(source)
    if meta is None or not meta.get("closed"):
        raise ValueError(
            f"{source} is not a closed interaction log (no _metadata.json, or a run that did "
            "not finish); collect that shard again."
        )
    return meta
