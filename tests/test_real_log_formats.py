"""The public logs as they are published (`loe_gym.logs.PRESETS`): MovieLens 100k (``u.data``,
``u.item``), 1M (``ratings.dat``, ``movies.dat``), 25M (``ratings.csv``, ``movies.csv``) and
KuaiRec (``big_matrix.csv``, ``item_categories.csv``, captions), imported with no conversion;
item tables into standardised features, multi-hot genres and texts; header-less files, any
delimiter, encodings; and the errors of files that do not fit.

Every fixture is a small file in the exact real format, written by the test into
``tmp_path``: 6 users × 40 ratings over several weeks, a dozen items.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loe_gym.logs import (
    ITEM_IDS_FILE,
    PRESETS,
    ColumnMapping,
    ImportReport,
    ItemTableMapping,
    LogImportError,
    import_logs,
    read_log,
    read_public_catalog,
    resolve_mapping,
)
from loe_gym.logs.presets import MOVIELENS_100K_GENRES

NUM_USERS, PER_USER = 6, 40


def ratings(seed: int, num_items: int, stars: tuple[float, ...] = (1, 2, 3, 4, 5)) -> list[Any]:
    """``(user, item, rating, timestamp)`` rows: per user, gaps of 5 min, 15 min, 1 day or 3
    days (sessions and returns), so no two rows of a user share a timestamp."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, NUM_USERS + 1):
        time = 880_000_000 + 1_000 * user
        for _ in range(PER_USER):
            time += int(rng.choice([300, 900, 86_400, 3 * 86_400]))
            rows.append((user, int(rng.integers(1, num_items + 1)), rng.choice(stars), time))
    return rows


def ml_100k(directory: Path) -> tuple[Path, Path]:
    """``u.data`` (items 1–12) and ``u.item`` (items 1–14 but 12; item 3's title in latin-1,
    item 5 without a release date, like item 267 of the real file)."""
    directory.mkdir(exist_ok=True)
    data = "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, r, t in ratings(0, 12))
    (directory / "u.data").write_text(data)
    lines = []
    for item in range(1, 15):
        if item == 12:
            continue
        title = "Misérables, Les (1995)" if item == 3 else f"Movie {item} (19{80 + item})"
        date = "" if item == 5 else f"01-Jan-19{80 + item}"
        flags = ["1" if j in (item % 19, (7 * item) % 19) else "0" for j in range(19)]
        lines.append(
            f"{item}|{title}|{date}||http://us.imdb.com/M/title-exact?{item}|" + "|".join(flags)
        )
    (directory / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return directory / "u.data", directory / "u.item"


GENRES_1M = ["Action|Comedy", "Animation|Children's|Comedy", "Drama", "Film-Noir|Sci-Fi", "Comedy"]


def ml_1m(directory: Path, titles: list[str] | None = None) -> tuple[Path, Path]:
    """``ratings.dat`` and ``movies.dat`` (``::``, no header; movies in latin-1)."""
    directory.mkdir(exist_ok=True)
    data = "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in ratings(1, 10))
    (directory / "ratings.dat").write_text(data)
    titles = titles or [f"Movie: part {i} (19{80 + i})" for i in range(1, 12)]
    titles[1] = (
        "Misérables, Les (1982)" if len(titles) > 1 and titles[1].startswith("Movie") else titles[1]
    )
    lines = [f"{i}::{title}::{GENRES_1M[i % 5]}" for i, title in enumerate(titles, start=1)]
    (directory / "movies.dat").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return directory / "ratings.dat", directory / "movies.dat"


def ml_25m(directory: Path) -> tuple[Path, Path]:
    """``ratings.csv`` (half stars) and ``movies.csv`` (quoted titles with commas, a movie
    with ``(no genres listed)``)."""
    directory.mkdir(exist_ok=True)
    rows = ratings(2, 8, stars=(0.5, 1.5, 3.0, 3.5, 4.0, 4.5, 5.0))
    lines = ["userId,movieId,rating,timestamp", *(f"{u},{i},{r:g},{t}" for u, i, r, t in rows)]
    (directory / "ratings.csv").write_text("\n".join(lines) + "\n")
    movies = [
        "movieId,title,genres",
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
        '2,"American President, The (1995)",Comedy|Drama|Romance',
        "3,Heat (1995),Action|Crime|Thriller",
        '4,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama',
        "5,Untitled,(no genres listed)",
        "6,Casino (1995),Crime|Drama",
        "7,Sabrina (1995),Comedy|Romance",
        "8,Balto (1995),Adventure|Animation|Children",
        "9,Sudden Death (1995),Action",
    ]
    (directory / "movies.csv").write_text("\n".join(movies) + "\n")
    return directory / "ratings.csv", directory / "movies.csv"


KUAIREC_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"
CAPTION_HEADER = (
    "video_id,manual_cover_text,caption,topic_tag,first_level_category_id,"
    "first_level_category_name,second_level_category_id,second_level_category_name,"
    "third_level_category_id,third_level_category_name"
)


def kuairec(directory: Path) -> Path:
    """``big_matrix.csv`` (videos 100–109), ``item_categories.csv`` and the captions
    (videos 100–110; a caption with a comma and a line break, UNKNOWN cover texts, video
    104 without any text)."""
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    beijing = datetime.timezone(datetime.timedelta(hours=8))
    lines = [KUAIREC_HEADER]
    for user in range(NUM_USERS):
        time = 1_593_878_400.0 + 500 * user
        for _ in range(PER_USER):
            time += float(rng.choice([30.5, 600.0, 86_400.0]))
            video = int(rng.integers(100, 110))
            duration = 6_000 + 1_000 * (video % 5)
            play = int(rng.gamma(2.0, 0.4) * duration)
            moment = datetime.datetime.fromtimestamp(time, beijing)
            clock = moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            lines.append(
                f"{user},{video},{play},{duration},{clock},{moment:%Y%m%d},{time:.3f},"
                f"{play / duration}"
            )
    (directory / "big_matrix.csv").write_text("\n".join(lines) + "\n")
    categories = ["video_id,feat"]
    categories += [
        f'{v},"[{v % 3}, {v % 7 + 10}]"' if v % 2 else f"{v},[{v % 3}]" for v in range(100, 111)
    ]
    (directory / "item_categories.csv").write_text("\n".join(categories) + "\n")
    captions = [CAPTION_HEADER]
    for video in range(100, 111):
        caption = '"美食, 第一\n二行"' if video == 101 else f"视频{video}"
        cover = "UNKNOWN" if video % 2 else f"封面{video}"
        category = "美食"
        if video == 104:  # no text at all: every text cell empty or UNKNOWN
            cover, caption, category = "UNKNOWN", "", "UNKNOWN"
        captions.append(f"{video},{cover},{caption},[],8,{category},-124,UNKNOWN,-124,UNKNOWN")
    (directory / "kuairec_caption_category.csv").write_text("\n".join(captions) + "\n")
    return directory


def source_ratings(path: Path, separator: str, header: bool = False) -> list[float]:
    lines = path.read_text().splitlines()[1 if header else 0 :]
    return [float(line.split(separator)[2]) for line in lines]


def item_ids(log: Path) -> list[Any]:
    return pq.read_table(log / ITEM_IDS_FILE).column("source_item_id").to_pylist()


def check_standardised(values: np.ndarray) -> None:
    assert abs(values.mean()) < 1e-6 and abs(values.std() - 1.0) < 1e-5


# ------------------------------------------------------------------------- presets


def test_movielens_100k_reads_u_data_and_u_item(tmp_path: Path) -> None:
    data, items = ml_100k(tmp_path / "ml-100k")
    report = import_logs(data, tmp_path / "log", "movielens-100k", items=items)
    log = read_log(tmp_path / "log").to_pydict()
    assert report.rows_written == NUM_USERS * PER_USER == len(log["clicked"])
    # Graded feedback: completion = rating / 5 on every row; clicked = rating ≥ 4;
    # watch_time = completion on clicks only (engagement units, not minutes).
    stars = np.array(sorted(source_ratings(data, "\t")))
    np.testing.assert_allclose(sorted(np.array(log["completion"]) * 5), stars, rtol=1e-6)
    completion, clicked = np.array(log["completion"]), np.array(log["clicked"])
    assert np.array_equal(clicked, completion >= 0.8 - 1e-6)
    np.testing.assert_allclose(log["watch_time"], np.where(clicked, completion, 0.0))
    # Catalog: items 1–14; 13 and 14 only in u.item (cold start); 12 missing from it.
    assert item_ids(tmp_path / "log") == list(range(1, 15))
    assert report.items == 14 and report.items_without_interactions == 2
    assert report.items_missing_from_item_table == 1
    assert report.item_values_missing == {"release_date_year": 1}
    catalog = read_public_catalog(tmp_path / "log")
    names = list(catalog.feature_names)
    assert names == ["length", "release_date_year", *(f"genre_{g}" for g in MOVIELENS_100K_GENRES)]
    year = catalog.features[:, 1]
    known = np.array([i not in (5, 12) for i in range(1, 15)])
    check_standardised(year[known])
    assert year[~known].tolist() == [0.0, 0.0]  # missing: the mean
    flags = catalog.features[:, 2:]
    assert set(np.unique(flags)) <= {0.0, 1.0}
    assert flags[0, (7 * 1) % 19] == 1 and flags[11].sum() == 0  # item 12: not in u.item
    assert catalog.texts is not None
    assert catalog.texts[2] == "Misérables, Les (1995)" and catalog.texts[11] == ""
    assert report.items_with_text == 13


def test_movielens_100k_directory_gives_the_same_log(tmp_path: Path) -> None:
    data, items = ml_100k(tmp_path / "ml-100k")
    import_logs(data, tmp_path / "files", "movielens-100k", items=items)
    report = import_logs(tmp_path / "ml-100k", tmp_path / "directory", "movielens-100k")
    assert read_log(tmp_path / "files").equals(read_log(tmp_path / "directory"))
    assert report.item_files == (str(tmp_path / "ml-100k" / "u.item"),)
    # Without the item table: the interactions' items only, no texts.
    import_logs(data, tmp_path / "alone", "movielens-100k")
    assert read_public_catalog(tmp_path / "alone").texts is None
    assert item_ids(tmp_path / "alone") == list(range(1, 13))


def test_the_report_says_what_ratings_mean(tmp_path: Path) -> None:
    data, items = ml_100k(tmp_path / "ml-100k")
    report = import_logs(data, tmp_path / "log", "movielens-100k", items=items)
    meaning = report.feedback
    assert "self-selected" in meaning["rows"] and "not an impression" in meaning["rows"]
    assert meaning["clicked"].startswith("rating ≥ 4")
    assert "not negatives" in meaning["unobserved"]
    assert "engagement units" in meaning["watch_time"] and "not minutes" in meaning["watch_time"]
    assert "every row" in meaning["completion"]
    summary = report.summary()
    assert "What the feedback means:" in summary and "in minutes" not in summary
    assert "2 items without interactions kept (cold start)" in summary
    assert "not minutes" in report.to_markdown()
    # The predictor's report then labels watch time in those units, not minutes.
    from loe_gym.predictor.report import watch_time_units

    assert watch_time_units(tmp_path / "log") == "engagement units"
    assert watch_time_units(tmp_path) == "minutes"  # not an imported log
    saved = ImportReport.from_dict(report.to_dict())
    assert saved == report


def test_movielens_1m_reads_double_colon_files(tmp_path: Path) -> None:
    data, items = ml_1m(tmp_path / "ml-1m")
    report = import_logs(data, tmp_path / "log", "movielens-1m", items=items)
    log = read_log(tmp_path / "log").to_pydict()
    assert report.rows_written == NUM_USERS * PER_USER
    stars = sorted(source_ratings(data, "::"))
    np.testing.assert_allclose(sorted(np.array(log["completion"]) * 5), stars, rtol=1e-6)
    catalog = read_public_catalog(tmp_path / "log")
    genres = sorted({g for line in GENRES_1M for g in line.split("|")})
    assert list(catalog.feature_names) == ["length", "title_year", *(f"genre_{g}" for g in genres)]
    check_standardised(catalog.features[:, 1])
    column = {name: i for i, name in enumerate(catalog.feature_names)}
    # Movie 1: "Animation|Children's|Comedy" (GENRES_1M[1 % 5]); movie 2: "Drama".
    assert catalog.features[0, column["genre_Children's"]] == 1
    assert catalog.features[1, column["genre_Children's"]] == 0
    assert catalog.features[1, column["genre_Drama"]] == 1
    assert catalog.features[:, 2:].sum() == sum(
        len(GENRES_1M[i % 5].split("|")) for i in range(1, 12)
    )
    assert catalog.texts is not None and catalog.texts[1] == "Misérables, Les (1982)"
    assert catalog.texts[0] == "Movie: part 1 (1981)"
    assert report.items_without_interactions == 1  # movie 11: never rated


def test_movielens_25m_reads_quoted_titles_and_no_genres(tmp_path: Path) -> None:
    data, items = ml_25m(tmp_path / "ml-25m")
    report = import_logs(data, tmp_path / "log", "movielens", items=items)
    log = read_log(tmp_path / "log").to_pydict()
    stars = sorted(source_ratings(data, ",", header=True))
    np.testing.assert_allclose(sorted(np.array(log["completion"]) * 5), stars, rtol=1e-6)
    catalog = read_public_catalog(tmp_path / "log")
    assert catalog.texts is not None
    assert catalog.texts[1] == "American President, The (1995)"
    assert catalog.texts[3] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    names = list(catalog.feature_names)
    assert "genre_(no genres listed)" not in names and "genre_Children" in names
    genre = catalog.features[:, names.index("genre_Action") :]
    assert genre[4].sum() == 0  # (no genres listed)
    # Every title year is 1995 but "Untitled" has none: constant, kept at 0, noted.
    assert np.all(catalog.features[:, names.index("title_year")] == 0)
    assert "constant" in report.item_feature_notes["title_year"]
    assert report.item_values_missing == {"title_year": 1}
    assert "Feature title_year: constant" in report.summary()


def test_kuairec_with_categories_and_captions(tmp_path: Path) -> None:
    directory = kuairec(tmp_path / "KuaiRec")
    report = import_logs(directory, tmp_path / "log", "kuairec")
    assert report.files == (str(directory / "big_matrix.csv"),)
    assert len(report.item_files) == 2 and report.item_rows_per_file == (11, 11)
    catalog = read_public_catalog(tmp_path / "log")
    names = list(catalog.feature_names)
    assert names[0] == "length"
    expected = sorted({v % 3 for v in range(100, 111)} | {v % 7 + 10 for v in range(101, 111, 2)})
    assert names[1:] == [f"category_{k}" for k in expected]
    # Video 101: "[2, 13]"; video 100: "[1]".
    assert catalog.features[1, names.index("category_2")] == 1
    assert catalog.features[1, names.index("category_13")] == 1
    assert (
        catalog.features[0, 1:].sum() == 1 and catalog.features[0, names.index("category_1")] == 1
    )
    assert catalog.texts is not None
    assert catalog.texts[0] == "封面100 | 视频100 | 美食"  # UNKNOWN and [] left out
    assert catalog.texts[1] == "美食, 第一\n二行 | 美食"
    # Video 104 has no text; the items after it keep their own.
    assert catalog.texts[4] == "" and catalog.texts[5] == "视频105 | 美食"
    # Video 110 has no plays: a cold-start item whose length is the mean length.
    assert report.items_without_interactions == 1
    lengths = catalog.features[:, 0]
    assert lengths[-1] == pytest.approx(lengths[:-1].mean())
    assert "impression" in report.feedback["rows"]


def test_kuairec_explicit_files_and_overrides(tmp_path: Path) -> None:
    directory = kuairec(tmp_path / "KuaiRec")
    mapping = resolve_mapping("kuairec", {"items": {"texts": ["caption"]}})
    assert mapping.items is not None and mapping.items.category_lists == {"feat": "category"}
    import_logs(
        directory / "big_matrix.csv",
        tmp_path / "log",
        mapping,
        items=[directory / "item_categories.csv", directory / "kuairec_caption_category.csv"],
    )
    texts = read_public_catalog(tmp_path / "log").texts
    assert texts is not None and texts[0] == "视频100"


def test_presets_round_trip_and_keep_their_names() -> None:
    assert set(PRESETS) == {"kuairec", "movielens", "movielens-1m", "movielens-100k"}
    for mapping in PRESETS.values():
        assert ColumnMapping.from_dict(mapping.to_dict()) == mapping
    assert PRESETS["movielens-1m"].delimiter == "::"
    items = PRESETS["movielens-100k"].items
    assert items is not None and items.encoding == "latin-1" and len(items.flags) == 19


# ----------------------------------------------------- header-less files, delimiters


@pytest.mark.parametrize("delimiter", ["::", ";", "\t", "||", "|"])
def test_header_less_files_with_any_delimiter(tmp_path: Path, delimiter: str) -> None:
    rows = ratings(4, 5)
    text = "".join(
        delimiter.join(str(v) for v in (u, i, f"{r:g}", t)) + "\n" for u, i, r, t in rows
    )
    source = tmp_path / "plays.txt"
    source.write_text(text)
    mapping = ColumnMapping(
        user="u", item="i", timestamp="t", rating="r", rating_range=(1, 5),
        delimiter=delimiter, column_names=("u", "i", "r", "t"),
    )  # fmt: skip
    report = import_logs(source, tmp_path / "log", mapping)
    assert report.rows_written == len(rows)
    assert sorted(item_ids(tmp_path / "log")) == sorted({i for _, i, _, _ in rows})


def test_a_utf16_file_with_a_double_colon_delimiter(tmp_path: Path) -> None:
    rows = ratings(5, 4)
    source = tmp_path / "plays.dat"
    source.write_text("".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in rows), encoding="utf-16")
    mapping = resolve_mapping("movielens-1m", {"encoding": "utf-16"})
    assert import_logs(source, tmp_path / "log", mapping).rows_written == len(rows)


titles = st.text(
    st.characters(codec="latin-1", exclude_categories=("Cc",), exclude_characters="|"),
    min_size=1,
    max_size=30,
).filter(lambda t: t == t.strip() and "::" not in t and not t.endswith(":"))


@settings(max_examples=25, deadline=None)
@given(names=st.lists(titles, min_size=11, max_size=11))
def test_titles_round_trip_through_movies_dat(names: list[str]) -> None:
    # A title ending in ':' is ambiguous in the format itself ('A:' + '::' = 'A:::').
    with tempfile.TemporaryDirectory() as directory:
        data, items = ml_1m(Path(directory) / "ml-1m", titles=list(names))
        import_logs(data, Path(directory) / "log", "movielens-1m", items=items)
        texts = read_public_catalog(Path(directory) / "log").texts
    expected = list(names)
    if expected[1].startswith("Movie"):
        expected[1] = "Misérables, Les (1982)"
    assert texts == tuple(expected)


# -------------------------------------------------------------------------- errors


def test_wrong_delimiter_names_the_line_and_the_fix(tmp_path: Path) -> None:
    data, _ = ml_1m(tmp_path / "ml-1m")
    mapping = resolve_mapping("movielens-1m", {"delimiter": ","})
    with pytest.raises(LogImportError) as error:
        import_logs(data, tmp_path / "log", mapping)
    message = str(error.value)
    assert "ratings.dat' row 1 (line 1): 1 fields where column_names names 4" in message
    assert "(fields separated by ',')" in message
    assert """set --mapping '{"delimiter": "::"}'""" in message
    # A header read with the wrong delimiter is one column: the same hint.
    semicolons = tmp_path / "ratings.csv"
    semicolons.write_text("userId;movieId;rating;timestamp\n1;2;4;880000000\n")
    with pytest.raises(LogImportError, match=r"""set --mapping '\{"delimiter": ";"\}'"""):
        import_logs(semicolons, tmp_path / "log", "movielens")


def test_a_double_colon_header_is_read_without_aborting_at_exit(tmp_path: Path) -> None:
    """The header of a ``::`` file is parsed without pyarrow's streaming reader, whose
    read-ahead thread aborted the process at exit once torch was loaded (in about half
    the runs of this script before the fix)."""
    path = tmp_path / "ratings.dat"
    path.write_text("userId::movieId::rating::timestamp\n1::2::3::880000000\n")
    script = (
        "import torch\n"
        "from pathlib import Path\n"
        "from loe_gym.logs import resolve_mapping\n"
        "from loe_gym.logs.text_files import TextFile, TextFormat\n"
        f"path = Path({str(path)!r})\n"
        "mapping = resolve_mapping('movielens', {'delimiter': '::'})\n"
        "print(TextFile(path, TextFormat.of(path, mapping)).column_names())\n"
    )
    for _ in range(6):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['userId', 'movieId', 'rating', 'timestamp']"


def test_a_file_read_with_another_presets_mapping_names_its_preset(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,88000\n")
    (tmp_path / "ratings.dat").write_text("1::2::3::880000000\n")
    with pytest.raises(LogImportError, match=r"preset 'movielens': --preset movielens\.$"):
        import_logs(tmp_path / "ratings.csv", tmp_path / "a", "movielens-1m")
    with pytest.raises(LogImportError, match=r"--preset movielens-1m\.$"):
        import_logs(tmp_path / "ratings.dat", tmp_path / "b", "movielens-100k")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_missing_item_column_names_the_files_and_the_fix(tmp_path: Path) -> None:
    data, items = ml_25m(tmp_path / "ml-25m")
    items.write_text("movieId,name,genres\n1,Toy Story (1995),Comedy\n")
    with pytest.raises(LogImportError) as error:
        import_logs(data, tmp_path / "log", "movielens", items=items)
    message = str(error.value)
    assert "No item file has the column(s) ['title']" in message
    assert """--mapping '{"items": {"title_years": []}}'""" in message
    items.write_text("id,title,genres\n1,Toy Story (1995),Comedy\n")
    with pytest.raises(LogImportError, match=r"movies\.csv' has no column 'movieId' \(item\)"):
        import_logs(data, tmp_path / "log", "movielens", items=items)


def test_a_latin1_file_read_as_utf8_names_the_line_and_encoding(tmp_path: Path) -> None:
    data, items = ml_100k(tmp_path / "ml-100k")
    mapping = resolve_mapping("movielens-100k", {"items": {"encoding": "utf-8"}})
    with pytest.raises(LogImportError) as error:
        import_logs(data, tmp_path / "log", mapping, items=items)
    message = str(error.value)
    assert "u.item' line 3, character 6: the byte 0xe9 is not utf-8 text" in message
    assert """--mapping '{"items": {"encoding": "latin-1"}}'""" in message
    with pytest.raises(ValueError, match=r"not a known text encoding\. Did you mean 'latin-1'"):
        resolve_mapping("movielens-100k", {"encoding": "latin1x"})


@pytest.mark.parametrize(
    ("cell", "match"),
    [
        ("Action||Comedy", r"has an empty category between two '\|'"),
        ('"Action, Comedy"', r"holds ',' inside a category .*\"category_separator\": \",\""),
        ('"[27, 9"', r"opens a list with '\[' but does not close it"),
        ("8]", r"closes a list with '\]' that no '\[' opens"),
    ],
)
def test_bad_genre_lists_name_the_row(tmp_path: Path, cell: str, match: str) -> None:
    data, items = ml_25m(tmp_path / "ml-25m")
    items.write_text(f"movieId,title,genres\n1,Toy Story (1995),Comedy\n2,Heat (1995),{cell}\n")
    with pytest.raises(LogImportError, match=match) as error:
        import_logs(data, tmp_path / "log", "movielens", items=items)
    assert "movies.csv' row 2 (line 3), column 'genres'" in str(error.value)


def test_bad_dates_flags_and_names(tmp_path: Path) -> None:
    data, items = ml_100k(tmp_path / "ml-100k")
    text = items.read_bytes().decode("latin-1")
    items.write_bytes(text.replace("01-Jan-1984", "1984-01-01").encode("latin-1"))
    with pytest.raises(
        LogImportError, match=r"row 4 \(line 4\), column 'release_date': '1984-01-01' is not a date"
    ):
        import_logs(data, tmp_path / "log", "movielens-100k", items=items)
    lines = text.splitlines()
    lines[0] = lines[0][:-1] + "2"
    items.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(LogImportError, match=r"'genre_Western': '2' is not a 0/1 flag"):
        import_logs(data, tmp_path / "log", "movielens-100k", items=items)
    with pytest.raises(LogImportError, match="says nothing of their columns"):
        import_logs(
            data, tmp_path / "log", ColumnMapping(user="u", item="i", timestamp="t"), items=items
        )
    with pytest.raises(LogImportError, match=r"without the interaction file\(s\) .*\['u\.data'\]"):
        import_logs(tmp_path, tmp_path / "log", "movielens-100k")
    with pytest.raises(ValueError, match="Unknown item-table mapping field 'text'"):
        resolve_mapping("movielens", {"items": {"text": ["title"]}})
    with pytest.raises(ValueError, match="maps the column 'genres' twice"):
        ItemTableMapping(item="id", flags=("genres",), category_lists={"genres": "genre"})
    assert not (tmp_path / "log").exists()


def test_an_empty_header_less_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("")
    with pytest.raises(LogImportError, match=r"u\.data' is empty: it has no data rows"):
        import_logs(tmp_path / "u.data", tmp_path / "log", "movielens-100k")


def test_unsupported_extension_suggests_a_delimiter(tmp_path: Path) -> None:
    data, _ = ml_1m(tmp_path / "ml-1m")
    with pytest.raises(
        LogImportError, match=r"""sets its delimiter \(e\.g\. --mapping '\{"delimiter": "::"\}'"""
    ):
        import_logs(data, tmp_path / "log", "movielens")


# ---------------------------------------------------------------------- command line


def test_import_logs_command_reads_movielens_100k(tmp_path: Path) -> None:
    data, items = ml_100k(tmp_path / "ml-100k")
    command = [
        sys.executable, "-m", "agents.cli", "import-logs", "--source", str(data),
        "--items", str(items), "--preset", "movielens-100k", "--output", str(tmp_path / "log"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "What the feedback means:" in done.stdout and "self-selected" in done.stdout
    assert read_public_catalog(tmp_path / "log").texts is not None


def test_the_bench_fixture_writer_imports_as_movielens_100k(tmp_path: Path) -> None:
    """bench/movielens_fixture.py writes the published layout; the preset reads it as is."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "movielens_fixture.py"
    folder = tmp_path / "ml-100k"
    command = [sys.executable, str(script), "--output", str(folder), "--users", "20"]
    subprocess.run(command, check=True, capture_output=True)
    report = import_logs(
        folder / "u.data", tmp_path / "log", "movielens-100k", items=folder / "u.item"
    )
    assert report.rows_written > 40
    catalog = read_public_catalog(tmp_path / "log")
    assert catalog is not None and catalog.texts is not None
    assert catalog.texts[0].startswith("Movie 1 (")
