"""Bring-your-own logs (`loe_gym.logs.import_logs`): presets, custom mappings, the session / day /
gap rules on hand-built timestamps, every bad input, and a predictor fitted on an import.

Fixture files are written to ``tmp_path`` by the tests themselves: a few rows each, with
times chosen so that every rule has a known answer.
"""

from __future__ import annotations

import datetime
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loe_gym.logs import (
    DUPLICATE_CONFLICT,
    DUPLICATE_EXACT,
    INCOMPLETE,
    ITEM_IDS_FILE,
    LOG_SCHEMA,
    PRESETS,
    REPORT_FILE,
    USER_IDS_FILE,
    ColumnMapping,
    ImportReport,
    LogImportError,
    import_logs,
    read_catalog,
    read_log,
    read_log_metadata,
    resolve_mapping,
    sessionize,
)
from loe_gym.predictor.sequences import load_sequences

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
DAY0 = datetime.datetime(2020, 7, 5, tzinfo=BEIJING)
"""Midnight starting day 0 of the hand-built KuaiRec-style log (its preset cuts days in
Beijing time)."""


def at(day: int, hour: int, minute: int = 0) -> float:
    """Unix seconds of ``hour:minute`` Beijing time on day ``day``."""
    moment = DAY0 + datetime.timedelta(days=day, hours=hour, minutes=minute)
    return moment.timestamp()


# User 10's visits, in time order, and what the rules make of them:
#   day 0 09:00 09:10 09:20 | 15:00 15:05 | day 1 07:00 | day 4 20:00 20:29 | 21:00
#   same-day return (gap 1) | next day    | 3-day gap   | 29 min: same    | 31 min:
#                                                         session          new session,
#                                                                          last: censored
USER_10_TIMES = [
    at(0, 9),
    at(0, 9, 10),
    at(0, 9, 20),
    at(0, 15),
    at(0, 15, 5),
    at(1, 7),
    at(4, 20),
    at(4, 20, 29),
    at(4, 21),
]
EXPECTED_10 = {
    "day": [0, 0, 0, 0, 0, 1, 4, 4, 4],
    "session": [0, 0, 0, 1, 1, 2, 3, 3, 4],
    "step": [0, 1, 2, 0, 1, 0, 0, 1, 0],
    "session_end": [False, False, True, False, True, True, False, True, True],
    "gap_days": [0, 0, 1, 0, 1, 3, 0, 1, 0],
    "returned_next_day": [False, False, True, False, True, False, False, True, False],
}
WATCH_RATIO_10 = [0.2, 0.5, 1.5, 0.9, 0.0, 2.0, 0.7, 0.49, 1.0]
# A shuffled file order: the importer sorts each user's rows by time.
FILE_ORDER = [4, 0, 9, 2, 7, 1, 5, 3, 8, 6]


def kuairec_columns() -> dict[str, list[Any]]:
    """User 10's nine plays and user 20's single play, in a shuffled order."""
    times = [*USER_10_TIMES, at(2, 12)]
    ratios = [*WATCH_RATIO_10, 0.8]
    users = [10] * 9 + [20]
    videos = [3, 5, 3, 7, 9, 5, 3, 7, 9, 5]
    durations = {3: 30_000.0, 5: 60_000.0, 7: 12_000.0, 9: 6_000.0}
    columns: dict[str, list[Any]] = {
        "user_id": users,
        "video_id": videos,
        "play_duration": [ratio * durations[v] for ratio, v in zip(ratios, videos, strict=True)],
        "video_duration": [durations[v] for v in videos],
        "timestamp": times,
        "watch_ratio": ratios,
    }
    return {name: [values[i] for i in FILE_ORDER] for name, values in columns.items()}


def write_csv(path: Path, columns: dict[str, Any]) -> Path:
    pa_csv.write_csv(pa.table(columns), path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_parquet(path: Path, columns: dict[str, Any]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def user_rows(log: pa.Table, user: int) -> dict[str, list[Any]]:
    rows = log.filter(pa.compute.equal(log.column("user_id"), user)).to_pydict()
    return {name: rows[name] for name in EXPECTED_10}


# ------------------------------------------------------------------------- presets


def test_kuairec_preset_end_to_end(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "big_matrix.csv", kuairec_columns())
    report = import_logs(source, tmp_path / "log", "kuairec")

    log = read_log(tmp_path / "log")
    assert log.schema.equals(LOG_SCHEMA, check_metadata=False)
    assert log.num_rows == report.rows_written == report.rows_read == 10
    # Users 10 and 20 become 0 and 1; rows sorted by user, then time.
    assert user_rows(log, 0) == EXPECTED_10
    assert user_rows(log, 1) == {
        "day": [0],
        "session": [0],
        "step": [0],
        "session_end": [True],
        "gap_days": [0],
        "returned_next_day": [False],
    }
    assert set(log.column("position").to_pylist()) == {0}
    assert set(log.column("episode").to_pylist()) == {0}
    assert log.column("policy").to_pylist() == ["imported:kuairec"] * 10
    assert (read_log_metadata(tmp_path / "log") or {})["policy"] == "imported:kuairec"

    # clicked = watch_ratio ≥ 0.5; completion = min(ratio, 1) and watch_time = play
    # minutes on clicks, 0 elsewhere.
    user_10 = log.slice(0, 9).to_pydict()
    ratios = np.array(WATCH_RATIO_10)
    clicked = ratios >= 0.5
    assert user_10["clicked"] == clicked.tolist()
    np.testing.assert_allclose(user_10["completion"], np.where(clicked, np.minimum(ratios, 1), 0))
    lengths = np.array([0.5, 1.0, 0.5, 0.2, 0.1, 1.0, 0.5, 0.2, 0.1])  # minutes, by video
    np.testing.assert_allclose(
        user_10["watch_time"], np.where(clicked, ratios * lengths, 0), rtol=1e-6
    )

    catalog = read_catalog(tmp_path / "log")
    assert catalog is not None
    assert catalog.column_names == ["item_id", "length"]
    np.testing.assert_allclose(catalog.column("length").to_numpy(), [0.5, 1.0, 0.2, 0.1])
    ids = pq.read_table(tmp_path / "log" / ITEM_IDS_FILE).to_pydict()
    assert ids == {"item_id": [0, 1, 2, 3], "source_item_id": [3, 5, 7, 9]}
    users = pq.read_table(tmp_path / "log" / USER_IDS_FILE).to_pydict()
    # first_day: the user's first calendar day, counted from the log's first.
    assert users == {"user_id": [0, 1], "source_user_id": [10, 20], "first_day": [0, 2]}

    assert (report.users, report.items, report.sessions) == (2, 4, 6)
    assert report.next_day_returns == 3
    assert report.censored_last_sessions == 2 and report.max_gap_days == 3
    assert report.clicks == int(clicked.sum()) + 1
    assert report.dropped == {}
    assert report.unclicked_feedback_zeroed == 2  # ratios 0.2 and 0.49 (0.0 had nothing)
    assert ImportReport.from_dict(json.loads((tmp_path / "log" / REPORT_FILE).read_text())) == (
        report
    )
    assert "10 of 10 rows" in report.summary() and "| sessions | 6 |" in report.to_markdown()

    sequences, load_report = load_sequences(tmp_path / "log", num_items=catalog.num_rows)
    assert sequences.num_users == 1 and load_report.users_dropped == 1  # min_length 2
    assert sequences.session.tolist() == EXPECTED_10["session"]


def test_days_are_cut_in_the_mappings_time_zone(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "plays.csv", kuairec_columns())
    import_logs(source, tmp_path / "beijing", "kuairec")
    utc = resolve_mapping("kuairec", {"utc_offset_hours": 0})
    import_logs(source, tmp_path / "utc", utc)
    # Day 1 07:00 in Beijing is 23:00 UTC of day 0: in UTC it is a same-day return.
    assert read_log(tmp_path / "beijing").column("day").to_pylist()[:6] == [0] * 5 + [1]
    assert read_log(tmp_path / "utc").column("day").to_pylist()[:6] == [0] * 6
    assert read_log(tmp_path / "utc").column("gap_days").to_pylist()[4] == 1


def test_movielens_preset_end_to_end(tmp_path: Path) -> None:
    base = 1_000_000_000
    source = write_parquet(
        tmp_path / "ratings.parquet",
        {
            "userId": [1, 1, 1, 1, 2, 2],
            "movieId": [50, 10, 20, 10, 10, 20],
            "rating": [5.0, 3.5, 4.0, 0.5, 4.5, 2.0],
            "timestamp": [base, base + 60, base + 120, base + 3 * 86_400, base, base + 10],
        },
    )
    report = import_logs([source], tmp_path / "log", "movielens")
    log = read_log(tmp_path / "log").to_pydict()
    # clicked = rating ≥ 4; completion = rating / 5 on every row (the graded rating is
    # kept); watch_time = completion (length 1) on clicks, 0 elsewhere.
    assert log["clicked"] == [True, False, True, False, True, False]
    np.testing.assert_allclose(log["completion"], [1.0, 0.7, 0.8, 0.1, 0.9, 0.4], rtol=1e-6)
    np.testing.assert_allclose(log["watch_time"], [1.0, 0.0, 0.8, 0.0, 0.9, 0.0], rtol=1e-6)
    assert report.unclicked_feedback_zeroed == 3
    assert log["item_id"] == [2, 0, 1, 0, 0, 1]
    assert log["session"] == [0, 0, 0, 1, 0, 0]
    assert log["gap_days"] == [0, 0, 3, 0, 0, 0]
    catalog = read_catalog(tmp_path / "log")
    assert catalog is not None
    assert catalog.column("length").to_pylist() == [1.0, 1.0, 1.0]
    assert report.policy == "imported:movielens" and report.sessions == 3
    sequences, _ = load_sequences(tmp_path / "log", num_items=3)
    assert sequences.num_users == 2 and sequences.num_rows == 6


def test_presets_name_their_columns() -> None:
    assert set(PRESETS) >= {"kuairec", "movielens"}
    assert PRESETS["kuairec"].source_columns() == {
        "user": "user_id",
        "item": "video_id",
        "timestamp": "timestamp",
        "watch_time": "play_duration",
        "watch_ratio": "watch_ratio",
        "duration": "video_duration",
    }
    assert PRESETS["movielens"].source_columns() == {
        "user": "userId",
        "item": "movieId",
        "timestamp": "timestamp",
        "rating": "rating",
    }
    for mapping in PRESETS.values():
        assert ColumnMapping.from_dict(mapping.to_dict()) == mapping


# ------------------------------------------------------------------ custom mappings


def test_custom_mapping_with_string_ids_datetimes_and_item_features(tmp_path: Path) -> None:
    source = write_text(
        tmp_path / "events.csv",
        "member,sku,when,bought,seconds,price\n"
        "bob,X-2,2024-05-01T10:00:00+02:00,true,30,2.0\n"
        "alice,X-1,2024-05-01 08:05:00,0,12,1.0\n"
        "bob,X-1,2024-05-03T09:00:00Z,1,60,3.0\n"
        "alice,X-2,2024-05-01 08:00:00,FALSE,0,4.0\n",
    )
    mapping = ColumnMapping(
        user="member",
        item="sku",
        timestamp="when",
        timestamp_unit="datetime",
        clicked="bought",
        watch_time="seconds",
        watch_time_unit="s",
        item_features=("price",),
        zero_unclicked=False,
        name="shop",
    )
    report = import_logs(source, tmp_path / "log", mapping)
    log = read_log(tmp_path / "log").to_pydict()
    # alice (0): 08:00 X-2, 08:05 X-1; bob (1): 08:00 UTC X-2, two days later X-1.
    assert log["user_id"] == [0, 0, 1, 1]
    assert log["item_id"] == [1, 0, 1, 0]
    assert log["clicked"] == [False, False, True, True]
    np.testing.assert_allclose(log["watch_time"], [0.0, 0.2, 0.5, 1.0])
    # No duration: completion falls back on the click.
    assert log["completion"] == [0.0, 0.0, 1.0, 1.0]
    assert log["day"] == [0, 0, 0, 2] and log["gap_days"] == [0, 0, 2, 0]
    assert log["policy"] == ["imported:shop"] * 4
    catalog = read_catalog(tmp_path / "log")
    assert catalog is not None
    assert catalog.column_names == ["item_id", "length", "price"]
    assert catalog.column("price").to_pylist() == [2.0, 3.0]  # mean per item
    assert catalog.column("length").to_pylist() == [1.0, 1.0]
    ids = pq.read_table(tmp_path / "log" / USER_IDS_FILE).column("source_user_id")
    assert ids.to_pylist() == ["alice", "bob"]
    assert report.first_timestamp == "2024-05-01T08:00:00Z"


def test_csv_and_parquet_give_the_same_log(tmp_path: Path) -> None:
    columns = kuairec_columns()
    import_logs(write_csv(tmp_path / "plays.csv", columns), tmp_path / "a", "kuairec")
    import_logs(write_parquet(tmp_path / "plays.parquet", columns), tmp_path / "b", "kuairec")
    assert read_log(tmp_path / "a").equals(read_log(tmp_path / "b"))
    assert read_catalog(tmp_path / "a").equals(read_catalog(tmp_path / "b"))  # type: ignore[union-attr]
    assert pq.read_table(tmp_path / "a" / USER_IDS_FILE).equals(
        pq.read_table(tmp_path / "b" / USER_IDS_FILE)
    )


def test_several_files_with_integer_and_string_ids(tmp_path: Path) -> None:
    columns = kuairec_columns()
    first = {name: values[:5] for name, values in columns.items()}
    second = {name: values[5:] for name, values in columns.items()}
    second["user_id"] = [f"u{user}" for user in second["user_id"]]
    files = [write_csv(tmp_path / "a.csv", first), write_parquet(tmp_path / "b.parquet", second)]
    report = import_logs(files, tmp_path / "log", "kuairec", rows_per_group=3)
    assert report.rows_per_file == (5, 5) and report.rows_read == 10
    assert report.files == tuple(str(file) for file in files)
    # Integer ids of one file and text ids of the other are all compared as text.
    sources = pq.read_table(tmp_path / "log" / USER_IDS_FILE).column("source_user_id")
    assert sources.type == pa.string() and "u10" in sources.to_pylist()
    assert read_log(tmp_path / "log").num_rows == 10
    assert len(list((tmp_path / "log").glob("part-*.parquet"))) == 4


def test_implicit_feedback_every_row_is_a_click(tmp_path: Path) -> None:
    source = write_text(tmp_path / "views.csv", "u,i,t\n1,1,0\n1,2,100\n2,1,50\n")
    import_logs(source, tmp_path / "log", ColumnMapping(user="u", item="i", timestamp="t"))
    log = read_log(tmp_path / "log").to_pydict()
    assert log["clicked"] == [True] * 3
    assert log["completion"] == [1.0] * 3 and log["watch_time"] == [1.0] * 3


def test_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    source = write_text(
        tmp_path / "dups.csv",
        "userId,movieId,rating,timestamp\n"
        "1,10,4.0,100\n"
        "1,10,4.0,100\n"  # exact duplicate
        "1,11,5.0,100\n"  # same user and time, other item: kept
        "1,10,2.0,100\n"  # same user, item and time, other rating: conflicting
        "1,10,4.0,200\n",  # same user and item, later: kept
    )
    report = import_logs(source, tmp_path / "log", "movielens")
    assert report.dropped == {DUPLICATE_EXACT: 1, DUPLICATE_CONFLICT: 1}
    assert report.rows_read == 5 and report.rows_written == 3
    log = read_log(tmp_path / "log").to_pydict()
    # The first row in file order is kept: rating 4 (clicked), not 2.
    assert log["item_id"] == [0, 1, 0] and log["clicked"] == [True, True, True]
    assert "Dropped 2 rows" in report.summary()


def test_incomplete_rows_are_refused_or_dropped_and_counted(tmp_path: Path) -> None:
    source = write_text(
        tmp_path / "holes.csv",
        "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,11,,200\n2,10,3.0,NaN\n2,12,5,300\n",
    )
    with pytest.raises(LogImportError, match=r"row 2 \(line 3\), column 'rating': missing"):
        import_logs(source, tmp_path / "log", "movielens")
    mapping = resolve_mapping("movielens", '{"drop_incomplete_rows": true}')
    report = import_logs(source, tmp_path / "log", mapping)
    assert report.dropped == {INCOMPLETE: 2} and report.rows_written == 2


def test_overwrite_replaces_an_imported_log_only(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "plays.csv", kuairec_columns())
    output = tmp_path / "log"
    import_logs(source, output, "kuairec")
    before = sorted(path.name for path in output.iterdir())
    with pytest.raises(FileExistsError, match=r"not empty.*nothing was written"):
        import_logs(source, output, "kuairec")
    assert sorted(path.name for path in output.iterdir()) == before
    import_logs(source, output, "kuairec", overwrite=True)
    assert sorted(path.name for path in output.iterdir()) == before
    (output / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        import_logs(source, output, "kuairec", overwrite=True)
    assert (output / "notes.txt").exists() and (output / REPORT_FILE).exists()


# ------------------------------------------------------------------------ bad input

KUAIREC_HEADER = "user_id,video_id,play_duration,video_duration,timestamp,watch_ratio\n"
GOOD_ROW = "1,2,1000,2000,1593878400.5,0.5\n"


def kuairec_file(tmp_path: Path, row: str, header: str = KUAIREC_HEADER) -> Path:
    """A KuaiRec-style CSV whose second data row (line 3) is ``row``."""
    return write_text(tmp_path / "bad.csv", header + GOOD_ROW + row + GOOD_ROW)


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        ("1,2,abc,2000,1593878401,0.5\n", "play_duration", "'abc' is not a number"),
        ("1,2,1000,2000,1593878401,NaN\n", "watch_ratio", "missing value"),
        ("1,2,1000,,1593878401,0.5\n", "video_duration", "missing value"),
        ("1,2,-5,2000,1593878401,0.5\n", "play_duration", "-5 is negative"),
        ("1,2,1000,-2000,1593878401,0.5\n", "video_duration", "-2000 is negative"),
        ("1,2,1000,2000,1593878401,-0.1\n", "watch_ratio", "-0.1 is negative"),
        ("1,2,1000,2000,1593878401,inf\n", "watch_ratio", "infinite"),
        ("1,2,1000,2000,2020-07-05,0.5\n", "timestamp", "timestamp_unit='datetime'"),
        (",2,1000,2000,1593878401,0.5\n", "user_id", "missing value"),
    ],
)
def test_bad_values_name_file_row_and_column(
    tmp_path: Path, row: str, column: str, problem: str
) -> None:
    source = kuairec_file(tmp_path, row)
    where = re.escape(f"{str(source)!r} row 2 (line 3), column {column!r}")
    with pytest.raises(LogImportError, match=f"{where}.*{re.escape(problem)}"):
        import_logs(source, tmp_path / "log", "kuairec")
    assert not (tmp_path / "log").exists()


def test_ragged_csv_line_is_named(tmp_path: Path) -> None:
    source = kuairec_file(tmp_path, "1,2,1000\n")
    with pytest.raises(
        LogImportError, match=r"bad\.csv' row 2 \(line 3\): 3 fields where the header has 6"
    ):
        import_logs(source, tmp_path / "log", "kuairec")


def test_bad_values_in_parquet_name_the_row(tmp_path: Path) -> None:
    source = write_parquet(
        tmp_path / "ratings.parquet",
        {
            "userId": [1, 1, 2],
            "movieId": [1, 2, 3],
            "rating": [4.0, 6.0, 3.0],
            "timestamp": [1, 2, 3],
        },
    )
    where = re.escape(f"{str(source)!r} row 2, column 'rating'")
    with pytest.raises(LogImportError, match=f"{where}: the rating 6 is outside rating_range"):
        import_logs(source, tmp_path / "log", "movielens")
    nan = write_parquet(
        tmp_path / "nan.parquet",
        {
            "userId": [1, 1, 2],
            "movieId": [1, 2, 3],
            "rating": [4.0, 3.0, 3.0],
            "timestamp": [1.0, float("nan"), 3.0],
        },
    )
    with pytest.raises(LogImportError, match=r"nan\.parquet' row 2, column 'timestamp': missing"):
        import_logs(nan, tmp_path / "log", "movielens")
    fractional = write_parquet(
        tmp_path / "ids.parquet",
        {"userId": [1, 1], "movieId": [1.0, 2.5], "rating": [4.0, 3.0], "timestamp": [1, 2]},
    )
    with pytest.raises(LogImportError, match=r"ids\.parquet' row 2, column 'movieId': the id 2\.5"):
        import_logs(fractional, tmp_path / "log", "movielens")


def test_missing_column_lists_columns_and_suggests(tmp_path: Path) -> None:
    header = KUAIREC_HEADER.replace("video_id", "videoid")
    source = kuairec_file(tmp_path, GOOD_ROW, header=header)
    with pytest.raises(
        LogImportError,
        match=r"bad\.csv' has no column 'video_id' \(item\).*Columns present: \['user_id', "
        r"'videoid'.*Did you mean 'videoid'\?",
    ):
        import_logs(source, tmp_path / "log", "kuairec")


def test_unparseable_datetimes_and_clicks_name_the_row(tmp_path: Path) -> None:
    source = write_text(
        tmp_path / "events.csv", "u,i,t,c\n1,1,2024-05-01 10:00:00,1\n1,2,yesterday,0\n"
    )
    mapping = ColumnMapping(user="u", item="i", timestamp="t", timestamp_unit="datetime")
    with pytest.raises(
        LogImportError, match=r"events\.csv' row 2 \(line 3\), column 't': 'yesterday' is not"
    ):
        import_logs(source, tmp_path / "log", mapping)
    clicks = write_text(tmp_path / "clicks.csv", "u,i,t,c\n1,1,10,1\n1,2,20,maybe\n")
    mapping = ColumnMapping(user="u", item="i", timestamp="t", clicked="c")
    with pytest.raises(
        LogImportError, match=r"clicks\.csv' row 2 \(line 3\), column 'c': 'maybe' is not a click"
    ):
        import_logs(clicks, tmp_path / "log", mapping)


def test_milliseconds_read_as_seconds_are_caught(tmp_path: Path) -> None:
    start = 1_593_878_400_000  # milliseconds
    source = write_text(
        tmp_path / "ms.csv",
        f"userId,movieId,rating,timestamp\n1,1,4,{start}\n1,2,4,{start + 40 * 86_400_000}\n",
    )
    with pytest.raises(
        LogImportError,
        match=r"ms\.csv' row 1 \(line 2\), column 'timestamp'.*outside the years.*timestamp_unit",
    ):
        import_logs(source, tmp_path / "log", "movielens")
    report = import_logs(
        source, tmp_path / "log", resolve_mapping("movielens", {"timestamp_unit": "ms"})
    )
    assert report.sessions == 2


def test_empty_files_are_refused(tmp_path: Path) -> None:
    empty = write_text(tmp_path / "empty.csv", "")
    with pytest.raises(LogImportError, match=r"empty\.csv' is empty"):
        import_logs(empty, tmp_path / "log", "movielens")
    header = write_text(tmp_path / "header.csv", "userId,movieId,rating,timestamp\n")
    with pytest.raises(LogImportError, match=r"header\.csv' is empty: it has no data rows"):
        import_logs(header, tmp_path / "log", "movielens")
    rows = {"userId": [1], "movieId": [1], "rating": [4.0], "timestamp": [1]}
    table = pa.table(rows).slice(0, 0)
    pq.write_table(table, tmp_path / "none.parquet")
    with pytest.raises(LogImportError, match=r"none\.parquet' is empty"):
        import_logs(tmp_path / "none.parquet", tmp_path / "log", "movielens")
    assert not (tmp_path / "log").exists()


def test_unknown_preset_extension_and_sources(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "plays.csv", kuairec_columns())
    with pytest.raises(ValueError, match=r"Unknown preset 'kuairek'\. Did you mean 'kuairec'\?"):
        import_logs(source, tmp_path / "log", "kuairek")
    other = write_text(tmp_path / "plays.json", "{}")
    with pytest.raises(LogImportError, match=r"plays\.json' has an unsupported extension"):
        import_logs(other, tmp_path / "log", "kuairec")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        import_logs(tmp_path / "nope.csv", tmp_path / "log", "kuairec")
    with pytest.raises(LogImportError, match="is a directory"):
        import_logs(tmp_path, tmp_path / "log", "kuairec")


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"timestamp_unit": "sec"}, ValueError, "timestamp_unit must be one of"),
        ({"watch_time_unit": "mins"}, ValueError, "Did you mean 'min'"),
        ({"session_gap_minutes": 0}, ValueError, "session_gap_minutes must be > 0"),
        ({"utc_offset_hours": 30}, ValueError, r"utc_offset_hours must lie in \[-24, 24\]"),
        ({"rating": "user_id"}, ValueError, "maps the column 'user_id' twice"),
        ({"item_features": ("length",)}, ValueError, "reserves"),
        ({"item_features": "price"}, TypeError, "list of column names"),
        ({"rating_range": (5, 1)}, ValueError, "lowest < highest"),
        ({"zero_unclicked": "yes"}, TypeError, "true or false"),
        ({"user": ""}, TypeError, "non-empty string"),
    ],
)
def test_invalid_mappings_are_refused(fields: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ColumnMapping(**{"user": "user_id", "item": "item_id", "timestamp": "ts", **fields})


def test_resolve_mapping_reads_json(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"user": "u", "item": "i", "timestamp": "t", "rating": "r"}))
    assert resolve_mapping(None, path).rating == "r"
    assert resolve_mapping("kuairec", '{"session_gap_minutes": 60}').session_gap_minutes == 60
    with pytest.raises(ValueError, match=r"Unknown column-mapping field 'sesion_gap_minutes'"):
        resolve_mapping("kuairec", {"sesion_gap_minutes": 60})
    with pytest.raises(ValueError, match="needs the columns of"):
        resolve_mapping(None, {"user": "u"})


# -------------------------------------------------------------------- properties

timestamps = st.lists(
    st.tuples(st.integers(0, 4), st.floats(0, 6 * 86_400, allow_nan=False)),
    min_size=1,
    max_size=40,
)


def check_session_invariants(columns: dict[str, np.ndarray], user: np.ndarray) -> None:
    """The rules every imported log satisfies, user by user."""
    for u in np.unique(user):
        rows = user == u
        day, session, step = columns["day"][rows], columns["session"][rows], columns["step"][rows]
        end, gap = columns["session_end"][rows], columns["gap_days"][rows]
        assert session[0] == 0 and step[0] == 0 and day[0] == 0
        new = np.diff(session)
        assert set(new.tolist()) <= {0, 1}  # sessions increase one at a time
        assert np.all(np.diff(day) >= 0)
        # Steps restart at 0 on a new session and count up within one.
        assert np.all(step[1:] == np.where(new == 1, 0, step[:-1] + 1))
        # session_end exactly on each session's last row.
        assert end.tolist() == [*(new == 1).tolist(), True]
        # gap_days ≥ 1 at every session end but the user's last, 0 elsewhere.
        assert np.all(gap[end][:-1] >= 1) and gap[end][-1] == 0 and np.all(gap[~end] == 0)
        # And it is the day difference to the next session (a same-day return counts 1).
        ends = np.flatnonzero(end)[:-1]
        assert np.all(gap[ends] == np.maximum(day[ends + 1] - day[ends], 1))
        assert np.array_equal(columns["returned_next_day"][rows], end & (gap == 1))


@settings(max_examples=60, deadline=None)
@given(rows=timestamps, gap=st.sampled_from([1.0, 30.0, 600.0]))
def test_sessionize_invariants(rows: list[tuple[int, float]], gap: float) -> None:
    user = np.array([u for u, _ in rows])
    time = np.array([t for _, t in rows])
    order = np.lexsort((time, user))
    user, time = user[order], time[order]
    columns = sessionize(user, time, session_gap_minutes=gap)
    check_session_invariants(columns, user)
    # New sessions exactly where the gap exceeds the threshold.
    same_user = user[1:] == user[:-1]
    split = np.diff(time) > gap * 60
    assert np.array_equal(np.diff(columns["session"])[same_user] == 1, split[same_user])


@settings(max_examples=15, deadline=None)
@given(rows=timestamps)
def test_imported_logs_satisfy_the_session_invariants(rows: list[tuple[int, float]]) -> None:
    # Distinct items keep every row (no duplicate is dropped).
    columns = {
        "userId": [u for u, _ in rows],
        "movieId": list(range(len(rows))),
        "rating": [4.0] * len(rows),
        "timestamp": [1_600_000_000 + t for _, t in rows],
    }
    with tempfile.TemporaryDirectory() as directory:
        source = write_parquet(Path(directory) / "ratings.parquet", columns)
        report = import_logs(source, Path(directory) / "log", "movielens")
        log = read_log(Path(directory) / "log")
    assert report.rows_written == len(rows)
    names = ["day", "session", "step", "session_end", "gap_days", "returned_next_day"]
    arrays = {name: log.column(name).to_numpy(zero_copy_only=False) for name in names}
    user = log.column("user_id").to_numpy()
    assert np.all(np.diff(user) >= 0)
    check_session_invariants(arrays, user)
    assert report.censored_last_sessions == len({u for u, _ in rows})


# ----------------------------------------------------------------- end to end


def test_a_predictor_fits_on_an_imported_log(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import torch

    from loe_gym.predictor.configs import FitPredictorConfig, ModelConfig, TrainingConfig
    from loe_gym.predictor.pipeline import fit_predictor

    rng = np.random.default_rng(0)
    num_users, per_user, num_items = 40, 25, 30
    users = np.repeat(np.arange(num_users) * 7 + 100, per_user)
    start = 1_593_878_400 + rng.integers(0, 86_400, num_users)
    steps = rng.exponential(900.0, (num_users, per_user)).cumsum(axis=1)
    videos = rng.integers(0, num_items, users.size)
    duration = (10_000 + 5_000 * (videos % 5)).astype(float)
    ratio = rng.gamma(2.0, 0.5, users.size)
    source = write_parquet(
        tmp_path / "plays.parquet",
        {
            "user_id": users,
            "video_id": videos,
            "timestamp": (start[:, None] + steps).ravel(),
            "play_duration": ratio * duration,
            "video_duration": duration,
            "watch_ratio": ratio,
        },
    )
    report = import_logs(source, tmp_path / "log", "kuairec")
    assert report.rows_written == num_users * per_user
    config = FitPredictorConfig(
        model=ModelConfig(hidden_size=16, num_hidden_layers=1, max_history_length=8),
        training=TrainingConfig(
            learning_rate=2e-3,
            max_epochs=1,
            steps_per_epoch=3,
            batch_size=64,
            adversarial_epsilon=0.0,
        ),
        gru_epochs=0,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: more threads only contend
    try:
        metrics = fit_predictor(tmp_path / "log", tmp_path / "run", config, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert metrics.feature_names == ["length"]
    assert metrics.users["test"] == 4
    assert 0.0 <= metrics.test["click_auc"] <= 1.0
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
