"""Ready column mappings for public logs, read as they are published (`PRESETS`), and
`resolve_mapping` (a preset with changes, or a mapping of your own as JSON).

Light, like `loe_gym.logs.mapping`: no pyarrow, so that ``loe-gym import-logs --help`` is
fast.

=================  =========================================  ==============================
preset             interactions                               item tables
=================  =========================================  ==============================
kuairec            ``big_matrix.csv`` / ``small_matrix.csv``  ``item_categories.csv``,
                                                              ``kuairec_caption_category.csv``
movielens          ``ratings.csv`` (ml-25m, ml-latest)        ``movies.csv``
movielens-1m       ``ratings.dat`` (``::``, no header)        ``movies.dat`` (latin-1)
movielens-100k     ``u.data`` (tabs, no header)               ``u.item`` (``|``, latin-1)
=================  =========================================  ==============================

Every MovieLens preset reads ratings as explicit, self-selected feedback: clicked = rating
≥ 4, completion = rating / 5 on every row (the graded rating is kept), watch_time =
completion on clicks in engagement units (a movie is one unit long), never minutes. See
docs/importing_logs.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from loe_gym.errors import did_you_mean
from loe_gym.logs.mapping import ColumnMapping, ItemTableMapping

__all__ = ["MOVIELENS_100K_GENRES", "PRESETS", "resolve_mapping"]

MOVIELENS_100K_GENRES: Final = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
"""The 19 genre flags at the end of each line of MovieLens 100k's ``u.item``, in order."""

_ML_100K_FLAGS: Final = tuple(f"genre_{genre}" for genre in MOVIELENS_100K_GENRES)

# The ratings of every MovieLens release: explicit stars, one row per rating the user chose
# to give. The graded rating stays in the log as completion = rating / 5 on every row.
_RATINGS: Final[dict[str, Any]] = {
    "timestamp": "timestamp",
    "rating": "rating",
    "timestamp_unit": "s",
    "rating_click_threshold": 4.0,
    "keep_unclicked_completion": True,
}
# The older releases' rating files: no header, no quoting, whole stars.
_HEADERLESS_RATINGS: Final[dict[str, Any]] = {
    **_RATINGS,
    "rating_range": (1.0, 5.0),
    "quoted": False,
}
# movies.csv (25M) and movies.dat (1M): a title ending in "(year)", pipe-separated genres.
_TITLE_AND_GENRES: Final[dict[str, Any]] = {
    "category_lists": {"genres": "genre"},
    "title_years": ("title",),
    "texts": ("title",),
}

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
        directory_files=("big_matrix.csv", "small_matrix.csv"),
        items=ItemTableMapping(
            item="video_id",
            category_lists={"feat": "category"},
            texts=("manual_cover_text", "caption", "topic_tag", "first_level_category_name"),
            missing_values=("UNKNOWN", "[]"),
            directory_files=("item_categories.csv", "kuairec_caption_category.csv"),
        ),
    ),
    # MovieLens 25M / latest: ratings.csv and movies.csv, CSV with a header.
    "movielens": ColumnMapping(
        name="movielens",
        user="userId",
        item="movieId",
        rating_range=(0.5, 5.0),
        directory_files=("ratings.csv",),
        items=ItemTableMapping(
            item="movieId",
            **_TITLE_AND_GENRES,
            missing_values=("(no genres listed)",),
            directory_files=("movies.csv",),
        ),
        **_RATINGS,
    ),
    # MovieLens 1M: UserID::MovieID::Rating::Timestamp, no header (the columns are named
    # here in snake case); movies.dat (MovieID::Title::Genres) in latin-1.
    "movielens-1m": ColumnMapping(
        name="movielens-1m",
        user="user_id",
        item="movie_id",
        delimiter="::",
        column_names=("user_id", "movie_id", "rating", "timestamp"),
        directory_files=("ratings.dat",),
        items=ItemTableMapping(
            item="movie_id",
            **_TITLE_AND_GENRES,
            delimiter="::",
            column_names=("movie_id", "title", "genres"),
            encoding="latin-1",
            quoted=False,
            directory_files=("movies.dat",),
        ),
        **_HEADERLESS_RATINGS,
    ),
    # MovieLens 100k: u.data (user, item, rating, timestamp; tabs, no header) and u.item
    # (|-separated, latin-1, no header, 19 genre flags).
    "movielens-100k": ColumnMapping(
        name="movielens-100k",
        user="user_id",
        item="item_id",
        delimiter="\t",
        column_names=("user_id", "item_id", "rating", "timestamp"),
        directory_files=("u.data",),
        items=ItemTableMapping(
            item="movie_id",
            flags=_ML_100K_FLAGS,
            dates=("release_date",),
            date_format="%d-%b-%Y",
            texts=("title",),
            delimiter="|",
            column_names=(
                "movie_id",
                "title",
                "release_date",
                "video_release_date",
                "imdb_url",
                *_ML_100K_FLAGS,
            ),
            encoding="latin-1",
            quoted=False,
            directory_files=("u.item",),
        ),
        **_HEADERLESS_RATINGS,
    ),
}
"""Ready mappings by name (see docs/importing_logs.md for their derivations):

* ``kuairec``: ``user_id``, ``video_id``, ``timestamp`` (seconds), ``play_duration`` and
  ``video_duration`` (milliseconds), ``watch_ratio``. clicked = watch_ratio ≥ 0.5 (an
  engaged play, not a swipe past), completion = min(watch_ratio, 1), watch_time =
  play_duration in minutes, length = video_duration in minutes; days in Beijing time.
  Items: ``item_categories.csv`` (``feat`` lists → ``category_<k>``), captions as texts.
* ``movielens``, ``movielens-1m``, ``movielens-100k``: ratings. clicked = rating ≥ 4,
  completion = rating / 5 on every row, watch_time = completion on clicks (engagement
  units: the catalog's ``length`` is the constant 1). Items: genres → ``genre_<name>``,
  the year (of the title, or of the release date for 100k) standardised, titles as texts.
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
            ``items`` is a nested object whose fields change the preset's item table.
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


def preset_hint(path: Path, mapping: ColumnMapping) -> str:
    """A sentence naming the presets whose files look like ``path`` (its first line), when
    ``mapping`` is another preset's; "" otherwise. For the error of a file read with the
    wrong preset (a MovieLens 25M ``ratings.csv`` with ``movielens-1m``)."""
    if mapping.name not in PRESETS or path.suffix in (".parquet", ".pq"):
        return ""
    try:
        import pyarrow as pa

        with pa.input_stream(str(path), compression="detect") as stream:
            head = bytes(stream.read(65_536))
    except (OSError, ValueError):
        return ""
    lines = head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    if not lines:
        return ""
    fitting = [name for name, preset in PRESETS.items() if _fits(lines[0], preset)]
    fitting = [name for name in fitting if name != mapping.name]
    if not fitting:
        return ""
    return f" Its first line looks like a file of the preset {fitting[0]!r}: --preset {fitting[0]}."


def _fits(line: str, preset: ColumnMapping) -> bool:
    """Whether ``line`` (a file's first) reads as the first line of ``preset``'s files."""
    fields = [field.strip().strip('"') for field in line.split(preset.delimiter or ",")]
    if preset.column_names:  # no header: a data row of that many numeric-led fields
        return len(fields) == len(preset.column_names) and fields[0].isdigit()
    return len(fields) > 1 and set(preset.source_columns().values()) <= set(fields)
