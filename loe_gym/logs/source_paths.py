"""Which files an import reads: the interaction and item files named, or found in a
directory by the mapping's ``directory_files`` (a preset knows its dataset's file names)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from loe_gym.logs.formats import _file_format
from loe_gym.logs.mapping import ColumnMapping
from loe_gym.logs.text_files import LogImportError


def _paths(source: object, what: str) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        paths = [Path(source)]
    elif isinstance(source, Iterable):
        paths = [Path(path) for path in source]
    else:
        raise TypeError(f"{what} must be a path or a list of paths, got {type(source).__name__}.")
    if not paths:
        raise ValueError(f"{what} names no files; give at least one file.")
    return paths


def _in_directory(directory: Path, names: tuple[str, ...], what: str, *, all_: bool) -> list[Path]:
    """The files ``names`` in ``directory``: the first present, or all present."""
    found = [directory / name for name in names if (directory / name).is_file()]
    if not found and names:
        present = sorted(entry.name for entry in directory.iterdir())[:12]
        raise LogImportError(
            f"{str(directory)!r} is a directory without the {what} file(s) the mapping looks "
            f"for: {list(names)}. It holds {present}. Pass the files themselves."
        )
    if not names:
        raise LogImportError(
            f"{str(directory)!r} is a directory; pass its files (e.g. "
            f"{str(directory / '*.csv')!r}), or a preset that knows the dataset's file names."
        )
    return found if all_ else found[:1]


def _sources(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    items: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    mapping: ColumnMapping,
) -> tuple[list[Path], list[Path]]:
    """The interaction files and the item files: a directory stands for the files of the
    mapping's ``directory_files`` in it (and, without ``items``, for its item files)."""
    paths: list[Path] = []
    item_paths: list[Path] = []
    for path in _paths(source, "source"):
        if not path.is_dir():
            paths.append(path)
            continue
        paths += _in_directory(path, mapping.directory_files, "interaction", all_=False)
        if items is None and mapping.items is not None:
            names = mapping.items.directory_files
            item_paths += [path / name for name in names if (path / name).is_file()]
    if items is not None:
        if mapping.items is None:
            raise LogImportError(
                f"Item tables were given, but the {mapping.name!r} mapping says nothing of "
                "their columns. Add an item-table mapping, e.g. --mapping "
                '\'{"items": {"item": "<id column>", "texts": ["title"]}}\'.'
            )
        for path in _paths(items, "items"):
            if path.is_dir():
                names = mapping.items.directory_files
                item_paths += _in_directory(path, names, "item", all_=True)
            else:
                item_paths.append(path)
    for path, delimiter in [(p, mapping.delimiter) for p in paths] + [
        (p, mapping.items.delimiter if mapping.items else None) for p in item_paths
    ]:
        _file_format(path, delimiter)
        if not path.exists():
            raise FileNotFoundError(f"No input file {str(path)!r}.")
    return paths, item_paths
