"""Column mappings: which columns of your own log files hold what (`ColumnMapping`), the
ready mappings (`PRESETS`) and `resolve_mapping` (a preset with changes, or JSON).

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

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from loe_gym.errors import check_choice, did_you_mean

__all__ = [
    "DURATION_UNITS",
    "PRESETS",
    "TIMESTAMP_UNITS",
    "ColumnMapping",
    "resolve_mapping",
]

TIMESTAMP_UNITS: Final = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "datetime": 1.0}
"""Timestamp units: seconds per unit of a numeric timestamp, or ``datetime`` (date-times
as text, e.g. ISO 8601, or a timestamp column)."""
DURATION_UNITS: Final = {"ms": 1.0 / 60_000.0, "s": 1.0 / 60.0, "min": 1.0}
"""Units of watch-time and duration columns: minutes per unit."""

_RESERVED_FEATURES: Final = ("item_id", "topic", "text", "length")


def _check_number(name: str, value: object, *, low: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"ColumnMapping.{name} must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number < low:
        bound = "" if low == -math.inf else f" ≥ {low:g}"
        raise ValueError(f"ColumnMapping.{name} must be a finite number{bound}, got {value!r}.")
    return number


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
        drop_incomplete_rows: drop (and count) rows with a missing value (empty cell,
            null, NaN) in a mapped column, instead of refusing them.
        name: names the mapping in the ``policy`` column (``"imported:<name>"``) and the
            report.
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

    def __post_init__(self) -> None:
        self._check_columns()
        self._check_settings()

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
        for flag in ("zero_unclicked", "drop_incomplete_rows"):
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
        data = dataclasses.asdict(self)
        data["item_features"] = list(self.item_features)
        data["rating_range"] = list(self.rating_range)
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: ColumnMapping | None = None
    ) -> ColumnMapping:
        """A mapping from a dict of field values (e.g. parsed JSON), on top of ``base``
        when given (a preset whose fields ``data`` changes)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"A column mapping must be a JSON object, got {data!r}.")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            raise ValueError(
                f"Unknown column-mapping field {unknown[0]!r}.{did_you_mean(str(unknown[0]), names)}"
                f" The fields are {names}."
            )
        values = dict(data)
        for key in ("item_features", "rating_range"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if base is not None:
            return dataclasses.replace(base, **values)
        missing = [key for key in ("user", "item", "timestamp") if key not in values]
        if missing:
            raise ValueError(
                f"A column mapping needs the columns of {missing} (or a preset to start "
                f"from: {sorted(PRESETS)})."
            )
        return cls(**values)


PRESETS: Final[dict[str, ColumnMapping]] = {
    # KuaiRec / KuaiRand-style short-video logs: every row is a play of a video.
    "kuairec": ColumnMapping(
        name="kuairec",
        user="user_id",
        item="video_id",
        timestamp="timestamp",
        timestamp_unit="s",
        watch_time="play_duration",
        watch_time_unit="ms",
        watch_ratio="watch_ratio",
        duration="video_duration",
        duration_unit="ms",
        click_watch_ratio_threshold=0.5,
        utc_offset_hours=8.0,
    ),
    # MovieLens ratings.csv: every row is a rating; the rating is the feedback.
    "movielens": ColumnMapping(
        name="movielens",
        user="userId",
        item="movieId",
        timestamp="timestamp",
        timestamp_unit="s",
        rating="rating",
        rating_range=(0.5, 5.0),
        rating_click_threshold=4.0,
    ),
}
"""Ready mappings by name (see docs/importing_logs.md for their derivations):

* ``kuairec``: ``user_id``, ``video_id``, ``timestamp`` (seconds), ``play_duration`` and
  ``video_duration`` (milliseconds), ``watch_ratio``. clicked = watch_ratio ≥ 0.5 (an
  engaged play, not a swipe past), completion = min(watch_ratio, 1), watch_time =
  play_duration in minutes, length = video_duration in minutes; days in Beijing time.
* ``movielens``: ``userId``, ``movieId``, ``rating`` (0.5–5), ``timestamp`` (seconds).
  clicked = rating ≥ 4, completion = rating / 5, watch_time = completion (engagement
  units: the catalog's ``length`` is the constant 1).
"""


def resolve_mapping(
    preset: str | ColumnMapping | None = None,
    overrides: Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> ColumnMapping:
    """The mapping of a preset name (or a mapping) changed by ``overrides``.

    Args:
        preset: a `PRESETS` name, a `ColumnMapping`, or None (then ``overrides`` must
            name at least ``user``, ``item`` and ``timestamp``).
        overrides: field values: a dict, a JSON object as text, or the path of a
            ``.json`` file holding one (what ``loe-gym import-logs --mapping`` passes).
    """
    base: ColumnMapping | None
    if preset is None or isinstance(preset, ColumnMapping):
        base = preset
    elif isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(
                f"Unknown preset {preset!r}.{did_you_mean(preset, PRESETS)} The presets are "
                f"{sorted(PRESETS)}; or pass a ColumnMapping."
            )
        base = PRESETS[preset]
    else:
        raise TypeError(f"preset must be a preset name or a ColumnMapping, got {preset!r}.")
    if overrides is None:
        if base is None:
            raise ValueError(
                f"Give a preset ({sorted(PRESETS)}) or a mapping naming the user, item and "
                "timestamp columns."
            )
        return base
    if isinstance(overrides, os.PathLike) or (
        isinstance(overrides, str) and not overrides.lstrip().startswith("{")
    ):
        path = Path(overrides)
        if not path.is_file():
            raise FileNotFoundError(
                f"The mapping {str(overrides)!r} is neither a JSON object nor a JSON file."
            )
        overrides = path.read_text()
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as error:
            raise ValueError(f"The mapping is not valid JSON: {error}.") from None
    assert not isinstance(overrides, (str, os.PathLike))
    return ColumnMapping.from_dict(overrides, base=base)
