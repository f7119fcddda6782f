"""Item tables beside the interactions: one row per item (a title, genres, a release date,
a caption), read by an `loe_gym.logs.mapping.ItemTableMapping` into the catalog's public
features and texts.

=================  ===============================================  =======================
mapping field      a cell such as                                   catalog features
=================  ===============================================  =======================
numeric            ``12.5``                                         the column, standardised
dates              ``01-Jan-1995`` (``date_format``)                ``<column>_year``, std.
title_years        ``Toy Story (1995)``                             ``<column>_year``, std.
flags              ``0`` / ``1``                                    the column, 0/1
category_lists     ``Action|Comedy`` or ``[27, 9]``                 ``<prefix>_<category>``
texts              ``Toy Story (1995)``                             `Catalog.texts`
=================  ===============================================  =======================

Standardised features have mean 0 and standard deviation 1 over the catalog's items that
have a value; an item without one (an empty cell, or an item missing from the table) gets
0, the mean; a constant column is 0 everywhere (the report notes it). 0/1 features are 0
where missing. Everything is vectorised over whole columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loe_gym.logs.formats import _first_failure, _ids, _missing_text, _numbers, _Source
from loe_gym.logs.mapping import ItemTableMapping
from loe_gym.logs.text_files import LogImportError

__all__ = ["ItemTable", "catalog_columns", "read_item_tables"]

_RESERVED: Final = ("item_id", "topic", "text", "length")
_LIST_MARKS: Final = ("|", ",", ";", "[", "]")
_YEAR_IN_TITLE: Final = r"\((?P<year>\d{4})\)\s*$"


@dataclass
class ItemTable:
    """The item tables read, one row per distinct item id (the first row of an id wins).

    Attributes:
        ids: ``(m,)`` the source's item ids (int64 or string).
        values: ``(m, k) float64`` feature values before standardisation; NaN: missing.
        names: the ``k`` feature names.
        standardised: ``k`` flags: standardise the column (else it is 0/1).
        texts: ``(m,)`` the joined texts (null: none), or None without text columns.
        files, rows_per_file: the item files read and their data rows.
        duplicates: rows whose item id an earlier row of the same file had (ignored).
    """

    ids: pa.Array
    values: np.ndarray
    names: list[str]
    standardised: list[bool]
    texts: pa.Array | None
    files: list[str] = field(default_factory=list)
    rows_per_file: list[int] = field(default_factory=list)
    duplicates: int = 0


# ------------------------------------------------------------------------- cells


def _flags(source: _Source, column: str) -> np.ndarray:
    values = _numbers(source, column)
    bad = ~np.isnan(values) & (values != 0) & (values != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LogImportError(
            f"{source.where(row, column)}: {source.column(column)[row].as_py()!r} is not a "
            "0/1 flag. Fix the value, or map the column as numeric (items.numeric)."
        )
    return values


def _years_of_dates(source: _Source, column: str, date_format: str) -> np.ndarray:
    array = source.column(column)
    if pa.types.is_date(array.type) or pa.types.is_timestamp(array.type):
        return pc.cast(pc.year(array), pa.float64()).fill_null(np.nan).to_numpy(False)
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        return _numbers(source, column)  # already a year
    trimmed, missing = _missing_text(array)
    text = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), trimmed)

    def parse(part: pa.Array) -> pa.Array:
        return pc.strptime(part, format=date_format, unit="s", error_is_null=False)

    try:
        parsed = parse(text)
    except pa.ArrowInvalid:
        row = _first_failure(text, parse)
        raise LogImportError(
            f"{source.where(row, column)}: {array[row].as_py()!r} is not a date written as "
            f"{date_format!r}. Fix the value, or set the date format: --mapping "
            f'\'{{"items": {{"date_format": "%Y-%m-%d"}}}}\' (strptime codes; '
            "'%d-%b-%Y' reads 01-Jan-1995)."
        ) from None
    return np.asarray(pc.cast(pc.year(parsed), pa.float64()).fill_null(np.nan).to_numpy(False))


def _years_of_titles(source: _Source, column: str) -> np.ndarray:
    trimmed, _ = _missing_text(pc.cast(source.column(column), pa.string()))
    found = pc.extract_regex(trimmed, _YEAR_IN_TITLE)
    years = pc.cast(pc.struct_field(found, [0]), pa.float64())
    return np.asarray(years.fill_null(np.nan).to_numpy(zero_copy_only=False))


def _texts(source: _Source, column: str, missing_values: tuple[str, ...]) -> pa.Array:
    """The trimmed texts of a column, null where empty or one of ``missing_values``."""
    trimmed, missing = _missing_text(pc.cast(source.column(column), pa.string()))
    if missing_values:
        listed = pc.is_in(trimmed, value_set=pa.array(missing_values, pa.string()))
        missing |= listed.fill_null(False).to_numpy(zero_copy_only=False)
    return pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), trimmed)


def _list_error(source: _Source, row: int, column: str, problem: str, fix: str) -> LogImportError:
    value = source.column(column)[row].as_py()
    return LogImportError(f"{source.where(row, column)}: {value!r} {problem}. {fix}")


def _category_lists(
    source: _Source, column: str, items: ItemTableMapping
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, categories)``: the row of each category named in the column, and the
    category (text). Cells are ``a|b`` (``category_separator``) or ``[a, b]``."""
    array = source.column(column)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        rows = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        values = pc.cast(pc.list_flatten(array), pa.string())
        return np.asarray(rows), np.asarray(values.to_pylist(), dtype=object)
    text = _texts(source, column, items.missing_values)
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    opened = pc.starts_with(text, "[").fill_null(False).to_numpy(zero_copy_only=False)
    closed = pc.ends_with(text, "]").fill_null(False).to_numpy(zero_copy_only=False)
    example = "e.g. '[27, 9]' (bracketed, comma-separated) or 'Action|Comedy'"
    if (opened != closed).any():
        row = int(np.flatnonzero(opened != closed)[0])
        problem = (
            "opens a list with '[' but does not close it with ']'"
            if opened[row]
            else ("closes a list with ']' that no '[' opens")
        )
        raise _list_error(source, row, column, problem, f"Write the list as {example}.")
    rows_all: list[np.ndarray] = []
    values_all: list[pa.Array] = []
    for mask, separator in ((opened, ","), (~opened, items.category_separator)):
        rows = np.flatnonzero(mask & present)
        if rows.size == 0:
            continue
        cells = text.take(pa.array(rows))
        if separator == ",":
            cells = pc.utf8_slice_codeunits(cells, 1, -1)
        blank = pc.equal(pc.utf8_trim_whitespace(cells), "").to_numpy(zero_copy_only=False)
        rows, cells = rows[~blank], cells.filter(pa.array(~blank))  # '[]': no category
        parts = pc.split_pattern(cells, separator)
        parents = rows[pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)]
        values = pc.utf8_trim(pc.list_flatten(parts), characters=" '\"\t")
        empty = pc.equal(values, "").to_numpy(zero_copy_only=False)
        if empty.any():
            row = int(parents[np.flatnonzero(empty)[0]])
            problem = f"has an empty category between two {separator!r}"
            raise _list_error(source, row, column, problem, f"Write the list as {example}.")
        _check_marks(source, column, parents, values, separator)
        rows_all.append(parents)
        values_all.append(values)
    if not rows_all:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    values = pa.chunked_array(values_all).combine_chunks()
    return np.concatenate(rows_all), np.asarray(values.to_pylist(), dtype=object)


def _check_marks(
    source: _Source, column: str, parents: np.ndarray, values: pa.Array, separator: str
) -> None:
    """Refuse categories holding another list mark: the list is split with the wrong
    separator."""
    for mark in _LIST_MARKS:
        if mark == separator:
            continue
        holds = pc.match_substring(values, mark).to_numpy(zero_copy_only=False)
        if holds.any():
            row = int(parents[np.flatnonzero(holds)[0]])
            problem = f"holds {mark!r} inside a category (categories split at {separator!r})"
            fix = (
                f"If the categories are separated by {mark!r}, set --mapping "
                f'\'{{"items": {{"category_separator": "{mark}"}}}}\'; bracketed lists '
                "are written '[27, 9]'."
            )
            raise _list_error(source, row, column, problem, fix)


def _category_names(values: np.ndarray) -> list[str]:
    """Distinct categories, in numeric order when all are integers, else text order."""
    distinct = sorted(set(values.tolist()))
    if all(value.lstrip("-").isdigit() for value in distinct):
        return sorted(distinct, key=int)
    return distinct


# ------------------------------------------------------------------------- files


@dataclass
class _FileItems:
    """What one item file says, row by row (before items are merged across files)."""

    source: _Source
    ids: pa.Array
    features: dict[str, tuple[np.ndarray, bool]] = field(default_factory=dict)
    categories: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    texts: dict[str, pa.Array] = field(default_factory=dict)


def _read_file(path: Path, items: ItemTableMapping) -> _FileItems:
    roles = items.source_columns()
    optional = tuple(column for column in roles if column != items.item)
    source = _Source(path, items, roles, name="items", optional=optional, scope="items")
    ids, missing = _ids(source, items.item)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise LogImportError(
            f"{source.where(row, items.item)}: missing item id. Every row of an item table "
            "needs one; fix or remove the row."
        )
    file = _FileItems(source, ids)
    present = set(source.columns)
    for column in (c for c in items.numeric if c in present):
        file.features[column] = (_numbers(source, column), True)
    for column in (c for c in items.dates if c in present):
        years = _years_of_dates(source, column, items.date_format)
        file.features[f"{column}_year"] = (years, True)
    for column in (c for c in items.title_years if c in present):
        file.features[f"{column}_year"] = (_years_of_titles(source, column), True)
    for column in (c for c in items.flags if c in present):
        file.features[column] = (_flags(source, column), False)
    for column, prefix in items.category_lists.items():
        if column in present:
            file.categories[prefix] = _category_lists(source, column, items)
    for column in (c for c in items.texts if c in present):
        file.texts[column] = _texts(source, column, items.missing_values)
    return file


def _check_found(files: list[_FileItems], items: ItemTableMapping) -> None:
    found = {column for file in files for column in file.source.columns}
    absent = [column for column in items.source_columns() if column not in found]
    if absent:
        present = {str(file.source.path): file.source.columns for file in files}
        role = items.source_columns()[absent[0]]
        empty = "{}" if role == "category_lists" else "[]"  # a mapping, the others lists
        raise LogImportError(
            f"No item file has the column(s) {absent} that the items mapping reads; the "
            f"files read and the mapped columns they hold: {present}. Pass the file that "
            f"holds them (--items FILE ...), or leave them out: --mapping "
            f'\'{{"items": {{"{role}": {empty}}}}}\'.'
        )


def _union_ids(files: list[_FileItems]) -> tuple[pa.Array, list[np.ndarray]]:
    """The distinct ids of all files, and each file's row → position in them."""
    arrays = [file.ids for file in files]
    if len({array.type for array in arrays}) > 1:
        arrays = [pc.cast(array, pa.string()) for array in arrays]
    distinct = pc.unique(pa.chunked_array(arrays).combine_chunks())
    positions = [
        np.asarray(pc.index_in(array, value_set=distinct).to_numpy(zero_copy_only=False))
        for array in arrays
    ]
    return distinct, positions


def read_item_tables(paths: list[Path], items: ItemTableMapping) -> ItemTable:
    """Read the item files and merge them by item id: in each file the first row of an
    id counts (later ones are counted as duplicates); across files, a value a file
    leaves missing is taken from the next file that has it."""
    files = [_read_file(path, items) for path in paths]
    _check_found(files, items)
    ids, positions = _union_ids(files)
    columns: dict[str, np.ndarray] = {}
    standardised: dict[str, bool] = {}
    categories: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    texts: dict[str, np.ndarray] = {}
    texts_known: dict[str, np.ndarray] = {}
    duplicates = 0
    for file, position in zip(files, positions, strict=True):
        _, first = np.unique(position, return_index=True)
        duplicates += position.size - first.size
        at = position[first]
        for name, (values, standardise) in file.features.items():
            column = columns.setdefault(name, np.full(len(ids), np.nan))
            standardised[name] = standardise
            fill = np.isnan(column[at])
            column[at[fill]] = values[first][fill]
        kept = np.zeros(position.size, dtype=bool)
        kept[first] = True
        for prefix, (rows, values) in file.categories.items():
            keep = kept[rows]
            categories.setdefault(prefix, []).append((position[rows[keep]], values[keep]))
        for name, text in file.texts.items():
            column = texts.setdefault(name, np.full(len(ids), None, dtype=object))
            taken = text.take(pa.array(first))
            values = np.asarray(taken.to_pylist(), dtype=object)
            have = texts_known.setdefault(name, np.zeros(len(ids), dtype=bool))
            fill = ~have[at] & pc.is_valid(taken).to_numpy(zero_copy_only=False)
            column[at[fill]] = values[fill]
            have[at[fill]] = True
    names, matrix = list(columns), [columns[name] for name in columns]
    flags = [standardised[name] for name in names]
    for prefix in items.category_lists.values():
        pairs = categories.get(prefix, [])
        item = np.concatenate([p for p, _ in pairs]) if pairs else np.zeros(0, np.int64)
        labels = np.concatenate([v for _, v in pairs]) if pairs else np.zeros(0, object)
        for category in _category_names(labels):
            column = np.zeros(len(ids))
            column[item[labels == category]] = 1.0
            names.append(f"{prefix}_{category}")
            matrix.append(column)
            flags.append(False)
    _check_names(names)
    joined = None
    if items.texts:
        parts = [
            pa.array(texts[name], pa.string()).to_pylist() for name in items.texts if name in texts
        ]
        # Joined in Python: pyarrow's binary_join_element_wise(null_handling="skip") drops
        # the rows null in every part (pyarrow 26), which shifts every later item's text.
        joined = pa.array(
            [
                items.text_separator.join(p for p in row if p) or None
                for row in zip(*parts, strict=True)
            ],
            pa.string(),
        )
    values = np.stack(matrix, axis=1) if matrix else np.zeros((len(ids), 0))
    return ItemTable(
        ids=ids,
        values=values,
        names=names,
        standardised=flags,
        texts=joined,
        files=[str(file.source.path) for file in files],
        rows_per_file=[file.source.num_rows for file in files],
        duplicates=duplicates,
    )


def _check_names(names: list[str]) -> None:
    for name in names:
        if name in _RESERVED or name.startswith("hidden_") or names.count(name) > 1:
            raise LogImportError(
                f"The item tables give two catalog features, or a reserved one, the name "
                f"{name!r} (reserved: {list(_RESERVED)} and 'hidden_*'). Rename the column "
                "in the file (or its column_names), or change the category prefix."
            )


# ----------------------------------------------------------------------- catalog


@dataclass
class CatalogColumns:
    """The item-table part of a catalog, one row per catalog item.

    Attributes:
        features: ``(num_items, k) float64``, standardised or 0/1, 0 where missing.
        names: the ``k`` feature names.
        texts: one text per item ("" without one), or None.
        missing_from_table: catalog items the item tables do not list.
        missing_values: feature → items of the tables without a value for it.
        notes: feature → why it is 0 everywhere (constant, or no value at all).
    """

    features: np.ndarray
    names: list[str]
    texts: tuple[str, ...] | None
    missing_from_table: int
    missing_values: dict[str, int]
    notes: dict[str, str]


def catalog_columns(table: ItemTable, catalog_ids: pa.Array) -> CatalogColumns:
    """The item table's features and texts for the catalog items ``catalog_ids`` (the
    source's ids, in catalog order; same type as ``table.ids``)."""
    found = pc.index_in(catalog_ids, value_set=table.ids)
    present = pc.is_valid(found).to_numpy(zero_copy_only=False)
    index = np.asarray(found.fill_null(0).to_numpy(zero_copy_only=False))[present]
    values = np.full((len(catalog_ids), len(table.names)), np.nan)
    values[present] = table.values[index]
    missing = np.isnan(values[present]).sum(axis=0)
    missing_values = {n: int(c) for n, c in zip(table.names, missing, strict=True) if c}
    notes: dict[str, str] = {}
    for j, name in enumerate(table.names):
        column = values[:, j]
        known = ~np.isnan(column)
        if not table.standardised[j]:
            continue
        if not known.any():
            notes[name] = "no item has a value: 0 for every item"
            continue
        spread = float(column[known].std())
        if spread == 0.0:
            notes[name] = f"constant ({float(column[known][0]):g} on every item): kept at 0"
            column[known] = 0.0
        else:
            column[known] = (column[known] - column[known].mean()) / spread
    texts = None
    if table.texts is not None:
        text = np.full(len(catalog_ids), "", dtype=object)
        text[present] = np.asarray(table.texts.take(pa.array(index)).fill_null("").to_pylist())
        texts = tuple(str(value) for value in text)
    return CatalogColumns(
        features=np.nan_to_num(values, nan=0.0),
        names=list(table.names),
        texts=texts,
        missing_from_table=int(np.count_nonzero(~present)),
        missing_values=missing_values,
        notes=notes,
    )
