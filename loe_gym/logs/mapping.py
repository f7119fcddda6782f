"""Column mappings: which columns of your own log files hold what (`ColumnMapping`), and of
the item tables beside them (`ItemTableMapping`); how the files are written (delimiter,
header, encoding). The ready mappings (`PRESETS`) and `resolve_mapping` are in
`loe_gym.logs.presets`.

Light on purpose: this module imports neither pyarrow nor torch nor gymnasium, so that the
command line builds ``loe-gym import-logs --help`` from it at once. `loe_gym.logs.importing` applies
a mapping.

Feedback (each rule is the first that applies; "ratio", "rating", … are the columns the
mapping names, every duration in minutes):

==============  ==============================================================================
log column      derivation
==============  ==============================================================================
clicked         the ``clicked`` column (true/false or 0/1); else ratio ≥
                ``click_watch_ratio_threshold``; else rating ≥ ``rating_click_threshold``;
                else watch time > 0; else every row is a click (implicit feedback)
watch_time      the ``watch_time`` column, in minutes; else ratio × duration; else
                completion × length (minutes, or engagement units when ``length`` is 1)
completion      min(ratio, 1); else min(watch time / duration, 1) (where the duration is 0:
                1 if anything was watched, else 0); else rating / max rating; else clicked
==============  ==============================================================================

With ``zero_unclicked`` (the default) ``watch_time`` and ``completion`` are then set to 0
on rows that are not clicked, as the log schema defines them (the predictor learns watch
time on clicked rows, and simulators produce no watch time without a click); the report
counts the rows where that changed a value.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from loe_gym.errors import check_choice, did_you_mean

__all__ = [
    "DURATION_UNITS",
    "TIMESTAMP_UNITS",
    "ColumnMapping",
    "ItemTableMapping",
]

TIMESTAMP_UNITS: Final = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "datetime": 1.0}
"""Timestamp units: seconds per unit of a numeric timestamp, or ``datetime`` (date-times
as text, e.g. ISO 8601, or a timestamp column)."""
DURATION_UNITS: Final = {"ms": 1.0 / 60_000.0, "s": 1.0 / 60.0, "min": 1.0}
"""Units of watch-time and duration columns: minutes per unit."""

_RESERVED_FEATURES: Final = (
    "item_id",
    "topic",
    "text",
    "available_from",
    "available_until",
    "length",
)
_COMMON_ENCODINGS: Final = ("utf-8", "latin-1", "cp1252", "gb18030", "shift_jis", "utf-16")


def _check_number(name: str, value: object, *, low: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"ColumnMapping.{name} must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number < low:
        bound = "" if low == -math.inf else f" ≥ {low:g}"
        raise ValueError(f"ColumnMapping.{name} must be a finite number{bound}, got {value!r}.")
    return number


def _column_tuple(owner: str, name: str, value: object) -> tuple[str, ...]:
    """``value`` (a list of column names) as a tuple, checked."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(
            f"{owner}.{name} must be a list of column names, got {value!r}; write "
            f"({value!r},) for one column."
        )
    names = tuple(value)
    for column in names:
        if not isinstance(column, str) or not column:
            raise TypeError(f"{owner}.{name} must hold column names, got {column!r}.")
    return names


def _check_text_format(owner: str, mapping: Any) -> None:
    """Check (and normalise) the fields that say how a text file is written: ``delimiter``,
    ``column_names``, ``encoding``, ``quoted`` and ``directory_files``."""
    delimiter = mapping.delimiter
    if delimiter is not None and (
        not isinstance(delimiter, str) or not delimiter or set(delimiter) & {"\n", "\r"}
    ):
        raise ValueError(
            f"{owner}.delimiter must be None (by extension: ',' or a tab for .tsv) or a "
            f"non-empty string without line breaks, e.g. '\\t', '|' or '::'; got {delimiter!r}."
        )
    if delimiter is not None and mapping.quoted and '"' in delimiter:
        raise ValueError(f"{owner}.delimiter {delimiter!r} holds '\"'; set quoted=false.")
    names = _column_tuple(owner, "column_names", mapping.column_names)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{owner}.column_names names {repeated} more than once.")
    object.__setattr__(mapping, "column_names", names)
    files = _column_tuple(owner, "directory_files", mapping.directory_files)
    object.__setattr__(mapping, "directory_files", files)
    encoding = mapping.encoding
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(
            f"{owner}.encoding {encoding!r} is not a known text encoding."
            f"{did_you_mean(str(encoding), _COMMON_ENCODINGS)} Common ones: "
            f"{list(_COMMON_ENCODINGS)} (MovieLens 100k and 1M item files are 'latin-1')."
        ) from None
    if not isinstance(mapping.quoted, bool):
        raise TypeError(f"{owner}.quoted must be true or false, got {mapping.quoted!r}.")


@dataclass(frozen=True)
class ItemTableMapping:
    """Which columns of an item table (one row per item: a title, genres, a release date,
    …) hold what; `import_logs` joins them to the interactions by item id.

    Numeric columns, dates and years become catalog features **standardised** over the
    catalog's items (mean 0, standard deviation 1; an item without a value gets 0, the
    mean; a constant column is all 0, noted in the report). Flags and category lists
    become 0/1 multi-hot features. Texts are joined into `loe_gym.catalog.Catalog.texts`.
    Several item files may each hold some of the columns (KuaiRec's categories and
    captions); each must hold the ``item`` column.

    Attributes:
        item: column of item ids, the same ids as the interactions' item column.
        numeric: numeric columns, standardised, under their own names.
        flags: 0/1 columns kept as 0/1 under their own names (MovieLens 100k's genres).
        category_lists: column → prefix: columns holding a list of categories, either
            ``Action|Comedy`` (separated by ``category_separator``) or ``[27, 9]`` (a
            bracketed, comma-separated list); each category ``c`` becomes the 0/1
            feature ``<prefix>_<c>``.
        category_separator: separates the categories of an unbracketed list.
        dates: date columns (written as ``date_format``); each becomes the numeric
            feature ``<column>_year``.
        date_format: ``strptime`` format of ``dates``, e.g. ``"%d-%b-%Y"`` for
            ``01-Jan-1995``.
        title_years: text columns ending in a year in brackets (``Toy Story (1995)``);
            each becomes the numeric feature ``<column>_year``.
        texts: text columns joined (with ``text_separator``, empty parts left out) into
            the item's text.
        text_separator: joins the ``texts`` of an item.
        missing_values: values that mean "none" in texts and category lists (e.g.
            ``(no genres listed)``, ``UNKNOWN``), besides empty cells.
        keep_uninteracted: keep items of the table that no interaction names, as catalog
            items without interactions (cold-start candidates); false drops them.
        delimiter, column_names, encoding, quoted: how the item files are written, as
            for `ColumnMapping`.
        directory_files: names of item files to read from a directory given as the
            source (all of those present).
    """

    item: str
    numeric: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    category_lists: Mapping[str, str] = dataclasses.field(default_factory=dict)
    category_separator: str = "|"
    dates: tuple[str, ...] = ()
    date_format: str = "%Y-%m-%d"
    title_years: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    text_separator: str = " | "
    missing_values: tuple[str, ...] = ()
    keep_uninteracted: bool = True
    delimiter: str | None = None
    column_names: tuple[str, ...] = ()
    encoding: str = "utf-8"
    quoted: bool = True
    directory_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        owner = "ItemTableMapping"
        if not isinstance(self.item, str) or not self.item:
            raise TypeError(f"{owner}.item must be a non-empty string, got {self.item!r}.")
        for name in ("numeric", "flags", "dates", "title_years", "texts", "missing_values"):
            object.__setattr__(self, name, _column_tuple(owner, name, getattr(self, name)))
        lists = self.category_lists
        if not isinstance(lists, Mapping) or not all(
            isinstance(key, str) and key and isinstance(value, str) and value
            for key, value in lists.items()
        ):
            raise TypeError(
                f"{owner}.category_lists must map columns to feature prefixes, e.g. "
                f'{{"genres": "genre"}}, got {lists!r}.'
            )
        object.__setattr__(self, "category_lists", dict(lists))
        for name in ("category_separator", "text_separator", "date_format"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(
                    f"{owner}.{name} must be a non-empty string, got {getattr(self, name)!r}."
                )
        if not isinstance(self.keep_uninteracted, bool):
            raise TypeError(f"{owner}.keep_uninteracted must be true or false.")
        _check_text_format(owner, self)
        roles: dict[str, str] = {}
        for role, columns in (
            ("item", (self.item,)),
            ("numeric", self.numeric),
            ("flags", self.flags),
            ("category_lists", tuple(self.category_lists)),
            ("dates", self.dates),
        ):
            for column in columns:
                if column in roles:
                    raise ValueError(
                        f"{owner} maps the column {column!r} twice ({roles[column]} and "
                        f"{role}); each column can play one of these roles."
                    )
                roles[column] = role

    def source_columns(self) -> dict[str, str]:
        """Column → role of every column the mapping reads, the id first."""
        columns = {self.item: "item"}
        for role in ("numeric", "flags", "dates", "title_years", "texts"):
            for column in getattr(self, role):
                columns.setdefault(column, role)
        for column in self.category_lists:
            columns.setdefault(column, "category_lists")
        return columns

    def to_dict(self) -> dict[str, Any]:
        """The mapping as a JSON-ready dict (`from_dict` reads it back)."""
        return {
            f.name: list(value) if isinstance(value, tuple) else value
            for f in dataclasses.fields(self)
            for value in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: ItemTableMapping | None = None
    ) -> ItemTableMapping:
        """A mapping from field values, on top of ``base`` when given."""
        _check_fields(cls, data, what="an item-table mapping", field="item-table mapping field")
        values: dict[str, Any] = {
            key: tuple(v) if isinstance(v, list) else v for key, v in data.items()
        }
        if base is not None:
            return dataclasses.replace(base, **values)
        if "item" not in values:
            raise ValueError('An item-table mapping needs its item id column: {"item": ...}.')
        return cls(**values)


@dataclass(frozen=True)
class ColumnMapping:
    """Which source columns hold what, and how to turn them into the log's columns.

    Only ``user``, ``item`` and ``timestamp`` are required; the feedback columns are
    optional and the rules of the module docstring derive ``clicked``, ``watch_time``
    and ``completion`` from those given. Build one directly, take a `PRESETS` entry, or
    use `resolve_mapping` (a preset with changes, or a JSON object).

    Attributes:
        user: column of user ids (integers or strings).
        item: column of item ids (integers or strings).
        timestamp: column of the interaction's time.
        timestamp_unit: ``"s"``, ``"ms"`` or ``"us"`` since the Unix epoch (numbers), or
            ``"datetime"`` (a timestamp column, or text such as ``2024-05-01 12:30:00``
            or ISO 8601 with a zone offset; text without an offset is read as UTC).
        clicked: column of clicks (true/false, or 0/1).
        watch_time: column of time watched, in ``watch_time_unit``; must be ≥ 0.
        watch_time_unit: ``"ms"``, ``"s"`` or ``"min"``.
        watch_ratio: column of time watched / item duration (≥ 0; above 1 for re-watches).
        rating: column of explicit ratings within ``rating_range``.
        duration: column of the item's duration, in ``duration_unit``; must be ≥ 0.
            Becomes the catalog feature ``length`` (minutes, mean per item).
        duration_unit: ``"ms"``, ``"s"`` or ``"min"``.
        item_features: numeric columns describing the item (not the interaction), kept
            as public catalog features under their own names (mean per item). Never map
            feedback here: the predictor would read its labels from them.
        session_gap_minutes: a gap longer than this between two rows of a user starts a
            new session (> 0).
        utc_offset_hours: calendar days are cut at midnight of UTC plus this offset (e.g.
            8 for Beijing time), in [−24, 24].
        click_watch_ratio_threshold: with a watch-ratio column and no click column, a
            row is a click when its ratio is at least this (≥ 0).
        rating_click_threshold: with a rating column and neither a click nor a ratio
            column, a row is a click when its rating is at least this.
        rating_range: ``(lowest, highest)`` valid rating; completion = rating / highest.
        zero_unclicked: set ``watch_time`` and ``completion`` to 0 on rows that are not
            clicks, as the log schema defines them.
        keep_unclicked_completion: with ``zero_unclicked``, keep ``completion`` on rows
            that are not clicks (``watch_time`` is still 0 there): the graded feedback,
            e.g. every rating as rating / highest, stays in the log.
        drop_incomplete_rows: drop (and count) rows with a missing value (empty cell,
            null, NaN) in a mapped column, instead of refusing them.
        name: names the mapping in the ``policy`` column (``"imported:<name>"``) and the
            report.
        delimiter: separates the fields of a text file: None (by extension: ``,``, or a
            tab for ``.tsv``), one character (``"\\t"``, ``"|"``, ``";"``) or several
            (``"::"`` of MovieLens 1M). With a delimiter, any file that is not Parquet is
            read as delimited text, whatever its extension (``u.data``, ``ratings.dat``).
        column_names: the names of the columns of files **without a header row**, in
            order; empty: the first line is the header.
        encoding: text encoding of the files (``"utf-8"``, ``"latin-1"``, …).
        quoted: fields may be enclosed in double quotes (CSV); false for formats without
            quoting, where ``"`` is an ordinary character.
        directory_files: names of interaction files to look for when the source is a
            directory, in order of preference: the first present is read.
        items: how to read item tables given beside the interactions
            (`ItemTableMapping`), or None.
    """

    user: str
    item: str
    timestamp: str
    timestamp_unit: str = "s"
    clicked: str | None = None
    watch_time: str | None = None
    watch_time_unit: str = "s"
    watch_ratio: str | None = None
    rating: str | None = None
    duration: str | None = None
    duration_unit: str = "s"
    item_features: tuple[str, ...] = ()
    session_gap_minutes: float = 30.0
    utc_offset_hours: float = 0.0
    click_watch_ratio_threshold: float = 0.5
    rating_click_threshold: float = 4.0
    rating_range: tuple[float, float] = (0.5, 5.0)
    zero_unclicked: bool = True
    drop_incomplete_rows: bool = False
    name: str = "custom"
    keep_unclicked_completion: bool = False
    delimiter: str | None = None
    column_names: tuple[str, ...] = ()
    encoding: str = "utf-8"
    quoted: bool = True
    directory_files: tuple[str, ...] = ()
    items: ItemTableMapping | None = None

    def __post_init__(self) -> None:
        self._check_columns()
        self._check_settings()
        _check_text_format("ColumnMapping", self)
        if isinstance(self.items, Mapping):
            object.__setattr__(self, "items", ItemTableMapping.from_dict(self.items))
        if self.items is not None and not isinstance(self.items, ItemTableMapping):
            raise TypeError(
                f"ColumnMapping.items must be an ItemTableMapping or None, got {self.items!r}."
            )

    def _check_columns(self) -> None:
        """Check the column names (and normalise ``item_features`` to a tuple)."""
        for role in ("user", "item", "timestamp", "name"):
            value = getattr(self, role)
            if not isinstance(value, str) or not value:
                raise TypeError(f"ColumnMapping.{role} must be a non-empty string, got {value!r}.")
        for role in ("clicked", "watch_time", "watch_ratio", "rating", "duration"):
            value = getattr(self, role)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(
                    f"ColumnMapping.{role} must be a column name or None, got {value!r}."
                )
        features = self.item_features
        if isinstance(features, str) or not isinstance(features, Sequence):
            raise TypeError(
                "ColumnMapping.item_features must be a list of column names, got "
                f"{features!r}; write ({features!r},) for one column."
            )
        features = tuple(features)
        for name in features:
            if not isinstance(name, str) or not name:
                raise TypeError(
                    f"ColumnMapping.item_features must hold column names, got {name!r}."
                )
            if name in _RESERVED_FEATURES or name.startswith("hidden_"):
                raise ValueError(
                    f"ColumnMapping.item_features cannot hold a column named {name!r}: the "
                    f"catalog reserves {list(_RESERVED_FEATURES)} and names starting with "
                    "'hidden_' (map an item duration with duration=..., it becomes 'length'); "
                    "rename the column in the file."
                )
        object.__setattr__(self, "item_features", features)
        columns = [(role, column) for role, column in self.source_columns().items()]
        seen: dict[str, str] = {}
        for role, column in columns:
            if column in seen:
                raise ValueError(
                    f"ColumnMapping maps the column {column!r} twice ({seen[column]} and "
                    f"{role}); each source column can play one role."
                )
            seen[column] = role

    def _check_settings(self) -> None:
        """Check the units, thresholds, ranges and flags (and normalise numbers to floats)."""
        check_choice("ColumnMapping.timestamp_unit", self.timestamp_unit, tuple(TIMESTAMP_UNITS))
        check_choice("ColumnMapping.watch_time_unit", self.watch_time_unit, tuple(DURATION_UNITS))
        check_choice("ColumnMapping.duration_unit", self.duration_unit, tuple(DURATION_UNITS))
        gap = _check_number("session_gap_minutes", self.session_gap_minutes)
        if gap <= 0:
            raise ValueError(f"ColumnMapping.session_gap_minutes must be > 0, got {gap:g}.")
        object.__setattr__(self, "session_gap_minutes", gap)
        offset = _check_number("utc_offset_hours", self.utc_offset_hours)
        if not -24.0 <= offset <= 24.0:
            raise ValueError(
                f"ColumnMapping.utc_offset_hours must lie in [-24, 24], got {offset:g}."
            )
        object.__setattr__(self, "utc_offset_hours", offset)
        object.__setattr__(
            self,
            "click_watch_ratio_threshold",
            _check_number("click_watch_ratio_threshold", self.click_watch_ratio_threshold, low=0),
        )
        object.__setattr__(
            self,
            "rating_click_threshold",
            _check_number("rating_click_threshold", self.rating_click_threshold),
        )
        rating_range = self.rating_range
        if isinstance(rating_range, str) or not isinstance(rating_range, Sequence):
            raise TypeError(
                f"ColumnMapping.rating_range must be (lowest, highest), got {rating_range!r}."
            )
        if len(rating_range) != 2:
            raise ValueError(
                f"ColumnMapping.rating_range must be (lowest, highest), got {rating_range!r}."
            )
        low = _check_number("rating_range[0]", rating_range[0])
        high = _check_number("rating_range[1]", rating_range[1])
        if not low < high or high <= 0:
            raise ValueError(
                "ColumnMapping.rating_range must be (lowest, highest) with lowest < highest "
                f"and highest > 0, got {tuple(rating_range)!r}."
            )
        object.__setattr__(self, "rating_range", (low, high))
        for flag in ("zero_unclicked", "drop_incomplete_rows", "keep_unclicked_completion"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(
                    f"ColumnMapping.{flag} must be true or false, got {getattr(self, flag)!r}."
                )

    def source_columns(self) -> dict[str, str]:
        """Role → source column of every column the mapping reads (in reading order)."""
        roles = ("user", "item", "timestamp", "clicked", "watch_time", "watch_ratio")
        columns = {role: getattr(self, role) for role in (*roles, "rating", "duration")}
        columns.update({f"item_features[{i}]": name for i, name in enumerate(self.item_features)})
        return {role: column for role, column in columns.items() if column is not None}

    @property
    def policy(self) -> str:
        """The ``policy`` column of an imported log: ``"imported:<name>"``."""
        return f"imported:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """The mapping as a JSON-ready dict (`from_dict` reads it back)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("item_features", "rating_range", "column_names", "directory_files"):
            data[name] = list(data[name])
        data["items"] = None if self.items is None else self.items.to_dict()
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: ColumnMapping | None = None
    ) -> ColumnMapping:
        """A mapping from a dict of field values (e.g. parsed JSON), on top of ``base``
        when given (a preset whose fields ``data`` changes)."""
        _check_fields(cls, data, what="a column mapping", field="column-mapping field")
        values = dict(data)
        for key in ("item_features", "rating_range", "column_names", "directory_files"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        items = values.get("items")
        if isinstance(items, Mapping):
            # Nested: the fields given change the base's item table, the others stay.
            base_items = None if base is None else base.items
            values["items"] = ItemTableMapping.from_dict(items, base=base_items)
        if base is not None:
            return dataclasses.replace(base, **values)
        missing = [key for key in ("user", "item", "timestamp") if key not in values]
        if missing:
            from loe_gym.logs.presets import PRESETS

            raise ValueError(
                f"A column mapping needs the columns of {missing} (or a preset to start "
                f"from: {sorted(PRESETS)})."
            )
        return cls(**values)


def _check_fields(cls: type, data: Any, *, what: str, field: str) -> None:
    """``data`` is a mapping whose keys are fields of the dataclass ``cls``; ``what`` and
    ``field`` name it in errors ("a column mapping", "column-mapping field")."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{what[0].upper()}{what[1:]} must be a JSON object, got {data!r}.")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        raise ValueError(
            f"Unknown {field} {unknown[0]!r}.{did_you_mean(str(unknown[0]), names)} "
            f"The fields are {names}."
        )
