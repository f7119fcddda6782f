"""Run folders: which folders the project may replace.

Every command that writes a folder of results (``train``, ``fit-predictor``, ``evaluate``,
``experiment``, ``loop``, ``validate-simulator``) marks it with `MARKER` when it creates
it. ``--overwrite`` deletes a folder only if it carries that marker: a folder the project
did not write (a thesis, a home directory, a typo) is refused with a clear error, never
deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MARKER = ".loe_gym_run.json"
"""File that marks a folder as written by a loe_gym command (JSON: the command's name)."""


def is_run_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder that a loe_gym command wrote (it holds `MARKER`)."""
    return (Path(path) / MARKER).is_file()


def mark_run_folder(path: str | os.PathLike[str], command: str, *, finished: bool = False) -> None:
    """Create ``path`` if needed and mark it as ``command``'s run folder (an existing
    marker is kept, unless ``finished`` records that the run completed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if finished or not marker.exists():
        record = {"written_by": "loe_gym", "command": command, "finished": finished}
        temporary = path / f".{MARKER}.tmp"
        temporary.write_text(json.dumps(record) + "\n")
        os.replace(temporary, marker)


def finish_run_folder(path: str | os.PathLike[str], command: str) -> None:
    """Record that ``command``'s run in ``path`` completed (see `prepare_run_folder`)."""
    mark_run_folder(path, command, finished=True)


def _unfinished_run_of(path: Path, command: str) -> bool:
    try:
        record = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return record.get("command") == command and record.get("finished") is False


def remove_run_folder(path: str | os.PathLike[str]) -> None:
    """Delete the run folder ``path``; refuse (``FileExistsError``) unless it holds `MARKER`."""
    path = Path(path)
    if path.exists():
        _check_deletable(path)
        shutil.rmtree(path)


def _check_deletable(path: Path) -> None:
    """Raise unless ``path`` is an empty folder or one that loe_gym wrote."""
    if not path.is_dir():
        raise FileExistsError(
            f"{str(path)!r} is a file, not a run folder; --overwrite does not delete it. "
            "Choose another output folder."
        )
    if any(path.iterdir()) and not is_run_folder(path):
        names = sorted(entry.name for entry in path.iterdir())
        raise FileExistsError(
            f"--overwrite refuses to delete {str(path)!r}: loe_gym did not write it (it has "
            f"no {MARKER} marker) and it holds {len(names)} entries, e.g. {names[:3]}. "
            "Choose another output folder, or move or delete its contents yourself. (A run "
            "folder written by a loe_gym older than the marker: delete it yourself.)"
        )


def prepare_run_folder(path: str | os.PathLike[str], command: str, *, overwrite: bool) -> Path:
    """An empty folder marked as ``command``'s run folder.

    An existing non-empty folder is refused unless ``overwrite``; then it is deleted first
    if (and only if) a loe_gym command wrote it (see `remove_run_folder`). A run of the
    same command that failed or was killed before `finish_run_folder` never blocks its
    own retry: its folder is replaced without ``overwrite``.
    """
    path = Path(path)
    if check_run_folder(path, command, overwrite=overwrite):
        if _unfinished_run_of(path, command):
            print(f"[{command}] replacing the unfinished run in {path}", flush=True)
        shutil.rmtree(path)
    mark_run_folder(path, command)
    return path


def check_run_folder(path: str | os.PathLike[str], command: str, *, overwrite: bool) -> bool:
    """Raise what `prepare_run_folder` would raise for ``path``, deleting nothing (so a
    command can refuse before its work, not after); return whether it would replace an
    existing non-empty folder."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return False
    if path.is_dir() and _unfinished_run_of(path, command):
        return True
    if not overwrite:
        raise FileExistsError(
            f"{str(path)!r} exists and is not empty; choose another output folder or "
            "pass --overwrite (overwrite=True) to replace a previous run there."
        )
    _check_deletable(path)
    return True
