"""Tests of the Parquet interaction logs (`loe_gym.logs`)."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from gymnasium.vector import VectorEnv
from hypothesis import given, settings
from hypothesis import strategies as st

import loe_gym.logs.schema
from loe_gym.catalog import Catalog
from loe_gym.logs import (
    CATALOG_FILE,
    LOG_SCHEMA,
    LOG_SCHEMA_VERSION,
    METADATA_FILE,
    PRIVILEGED_COLUMNS,
    PRIVILEGED_LOG_SCHEMA,
    LogInteractions,
    LogSchemaError,
    ParquetLogWriter,
    log_part_files,
    read_catalog,
    read_log,
    read_log_metadata,
)
from loe_gym.simulator import Responses

REPOSITORY = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def make_catalog(num_items: int = 20) -> Catalog:
    rng = np.random.default_rng(0)
    return Catalog(
        features=rng.random((num_items, 2)),
        feature_names=("length", "ctr_estimate"),
        hidden={"quality": rng.random(num_items), "embedding": rng.random((num_items, 2, 3))},
        topics=np.arange(num_items) % 3,
    )


def make_step(
    rng: np.random.Generator, num_users: int, slate_size: int, num_items: int = 20
) -> dict[str, Any]:
    """Keyword arguments of `ParquetLogWriter.write_step` with random values."""
    clicked = rng.random((num_users, slate_size)) < 0.4
    completion = np.where(clicked, rng.random((num_users, slate_size)), 0.0)
    session_end = rng.random(num_users) < 0.5
    churned = session_end & (rng.random(num_users) < 0.3)
    gap_days = np.where(session_end & ~churned, rng.integers(1, 4, num_users), 0)
    return {
        "user_id": rng.integers(0, 1000, num_users),
        "episode": rng.integers(0, 5, num_users),
        "day": rng.integers(0, 30, num_users).astype(np.int32),
        "session": rng.integers(0, 10, num_users),
        "step": rng.integers(0, 50, num_users),
        "slates": rng.integers(0, num_items, (num_users, slate_size)),
        "responses": Responses(
            clicked=clicked,
            watch_time=completion * 3.0,
            completion=completion,
            session_end=session_end,
            gap_days=gap_days,
            churned=churned,
        ),
    }


def expected_rows(step: dict[str, Any], mask: np.ndarray | None = None) -> pd.DataFrame:
    """The rows a step should produce, built with an explicit loop (the reference)."""
    responses: Responses = step["responses"]
    num_users, slate_size = step["slates"].shape
    rows = []
    for user in range(num_users):
        if mask is not None and not mask[user]:
            continue
        for position in range(slate_size):
            rows.append(
                {
                    "user_id": step["user_id"][user],
                    "episode": step["episode"][user],
                    "day": step["day"][user],
                    "session": step["session"][user],
                    "step": step["step"][user],
                    "item_id": step["slates"][user, position],
                    "position": position,
                    "clicked": responses.clicked[user, position],
                    "watch_time": np.float32(responses.watch_time[user, position]),
                    "completion": np.float32(responses.completion[user, position]),
                    "session_end": responses.session_end[user],
                    # Ended, not churned, next visit tomorrow.
                    "returned_next_day": responses.session_end[user]
                    and not responses.churned[user]
                    and responses.gap_days[user] == 1,
                    "gap_days": responses.gap_days[user],
                }
            )
    return pd.DataFrame(rows, columns=[n for n in LOG_SCHEMA.names if n != "policy"])


def assert_table_matches(table: pa.Table, expected: pd.DataFrame, policy: str) -> None:
    assert table.schema.equals(LOG_SCHEMA)
    frame = table.to_pandas()
    assert len(frame) == len(expected)
    for name in expected.columns:
        np.testing.assert_array_equal(
            frame[name].to_numpy(), expected[name].to_numpy().astype(frame[name].dtype), name
        )
    assert set(frame["policy"]) <= {policy}


# ------------------------------------------------------------------------ schema


def test_schema_matches_design_and_is_documented() -> None:
    expected = {
        "user_id": pa.int64(),
        "episode": pa.int64(),
        "day": pa.int32(),
        "session": pa.int32(),
        "step": pa.int32(),
        "item_id": pa.int64(),
        "position": pa.int16(),
        "clicked": pa.bool_(),
        "watch_time": pa.float32(),
        "completion": pa.float32(),
        "session_end": pa.bool_(),
        "returned_next_day": pa.bool_(),
        "gap_days": pa.int16(),
        "policy": pa.dictionary(pa.int32(), pa.string()),
    }
    assert {f.name: f.type for f in LOG_SCHEMA} == expected
    assert list(LOG_SCHEMA.names) == list(expected)
    # The privileged schema only appends float32 columns, so base readers are unaffected.
    assert PRIVILEGED_LOG_SCHEMA.names == [*LOG_SCHEMA.names, *PRIVILEGED_COLUMNS]
    assert all(PRIVILEGED_LOG_SCHEMA.field(n).type == pa.float32() for n in PRIVILEGED_COLUMNS)
    module_doc = loe_gym.logs.schema.__doc__ or ""
    assert "evaluation only" in module_doc.lower()
    for field in PRIVILEGED_LOG_SCHEMA:
        assert field.metadata and field.metadata[b"description"], field.name
        assert f"\n{field.name} " in module_doc, f"{field.name} missing from the docstring table"
    for name in PRIVILEGED_COLUMNS:
        description = PRIVILEGED_LOG_SCHEMA.field(name).metadata[b"description"].decode()
        assert description.startswith("Evaluation only"), name
    for schema in (LOG_SCHEMA, PRIVILEGED_LOG_SCHEMA):
        assert schema.metadata == {b"loe_gym.schema_version": str(LOG_SCHEMA_VERSION).encode()}


# -------------------------------------------------------------------- round trip


def test_round_trip_values_dtypes_catalog_and_metadata(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    catalog = make_catalog()
    steps = [make_step(rng, num_users=3, slate_size=2) for _ in range(5)]
    with ParquetLogWriter(tmp_path, rows_per_group=4, policy="myopic", catalog=catalog) as writer:
        for step in steps:
            assert writer.write_step(**step) == 6
        assert writer.rows_written == 30
    table = read_log(tmp_path)
    assert_table_matches(table, pd.concat([expected_rows(s) for s in steps]), "myopic")
    assert table.column("policy").to_pylist() == ["myopic"] * 30
    # Field descriptions travel with the files.
    assert table.schema.field("gap_days").metadata == LOG_SCHEMA.field("gap_days").metadata

    stored = read_catalog(tmp_path)
    assert stored is not None
    assert stored.column_names == [
        "item_id",
        "topic",
        "length",
        "ctr_estimate",
        "hidden_quality",
        "hidden_embedding",
    ]
    np.testing.assert_array_equal(stored["item_id"].to_numpy(), np.arange(20))
    np.testing.assert_array_equal(stored["topic"].to_numpy(), catalog.topics)
    np.testing.assert_array_equal(stored["length"].to_numpy(), catalog.features[:, 0])
    np.testing.assert_array_equal(stored["hidden_quality"].to_numpy(), catalog.hidden["quality"])
    embedding = np.stack(stored["hidden_embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(embedding.reshape(20, 2, 3), catalog.hidden["embedding"])
    assert json.loads(stored.schema.field("hidden_embedding").metadata[b"shape"]) == [2, 3]

    metadata = read_log_metadata(tmp_path)
    assert metadata is not None
    assert metadata["closed"] is True
    assert metadata["policy"] == "myopic"
    assert metadata["schema_version"] == LOG_SCHEMA_VERSION == 2
    assert metadata["privileged"] is False
    assert metadata["num_rows"] == 30
    assert sum(metadata["parts"].values()) == 30
    assert metadata["catalog"] == {"file": CATALOG_FILE, "num_items": 20}


def test_log_without_catalog_has_none(tmp_path: Path) -> None:
    with ParquetLogWriter(tmp_path, policy="random") as writer:
        writer.write_step(**make_step(np.random.default_rng(0), 2, 1))
    assert read_catalog(tmp_path) is None
    assert not (tmp_path / CATALOG_FILE).exists()


def test_other_readers_see_exactly_the_interactions(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    steps = [make_step(rng, num_users=4, slate_size=3) for _ in range(3)]
    with ParquetLogWriter(tmp_path, rows_per_group=5, policy="random", catalog=make_catalog()) as w:
        for step in steps:
            w.write_step(**step)
    expected = pd.concat([expected_rows(s) for s in steps], ignore_index=True)
    # The catalog and metadata beside the parts must not confuse dataset readers.
    frame = pd.read_parquet(tmp_path)
    assert len(frame) == 36
    assert list(frame.columns) == LOG_SCHEMA.names
    # A directory dataset is unordered in general: compare sorted rows.
    key = ["user_id", "episode", "day", "session", "step", "position", "item_id"]
    got = frame.drop(columns="policy").sort_values(key, ignore_index=True)
    want = expected.astype(got.dtypes.to_dict()).sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    assert ds.dataset(tmp_path, format="parquet").count_rows() == 36


def test_polars_reads_the_parts(tmp_path: Path) -> None:
    polars = pytest.importorskip("polars")
    with ParquetLogWriter(tmp_path, rows_per_group=3, policy="random") as writer:
        writer.write_step(**make_step(np.random.default_rng(0), 4, 2))
    frame = polars.read_parquet(str(tmp_path / "part-*.parquet"))
    assert frame.height == 8
    assert frame.columns == LOG_SCHEMA.names


def test_empty_log_is_readable(tmp_path: Path) -> None:
    with ParquetLogWriter(tmp_path, policy="random"):
        pass
    table = read_log(tmp_path)
    assert table.num_rows == 0
    assert table.schema.equals(LOG_SCHEMA)
    assert list(pd.read_parquet(tmp_path).columns) == LOG_SCHEMA.names


# ---------------------------------------------------------- row groups and crashes


def part_names(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("part-*.parquet"))


def test_parts_appear_as_row_groups_fill(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    writer = ParquetLogWriter(tmp_path, rows_per_group=4, policy="random")
    writer.write_step(**make_step(rng, num_users=1, slate_size=3))  # 3 buffered
    assert part_names(tmp_path) == []
    writer.write_step(**make_step(rng, num_users=1, slate_size=3))  # 6: one group of 4
    assert part_names(tmp_path) == ["part-00000.parquet"]
    assert writer.rows_flushed == 4
    writer.write_step(**make_step(rng, num_users=3, slate_size=3))  # 2 + 9 = 11: two more
    assert part_names(tmp_path) == [f"part-0000{i}.parquet" for i in range(3)]
    assert writer.rows_flushed == 12
    writer.flush()  # the remaining 3 rows become a smaller part
    assert part_names(tmp_path)[-1] == "part-00003.parquet"
    writer.flush()  # nothing buffered: no empty part
    writer.close()
    sizes = [pq.ParquetFile(tmp_path / name).metadata for name in part_names(tmp_path)]
    assert [m.num_rows for m in sizes] == [4, 4, 4, 3]
    assert all(m.num_row_groups == 1 for m in sizes)
    assert read_log(tmp_path).num_rows == 15
    # Nothing temporary is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [METADATA_FILE, *part_names(tmp_path)]


def test_abandoned_writer_leaves_every_flushed_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    writer = ParquetLogWriter(tmp_path, rows_per_group=4, policy="random", catalog=make_catalog())
    steps = [make_step(rng, num_users=1, slate_size=2) for _ in range(5)]  # 10 rows
    for step in steps:
        writer.write_step(**step)
    with pytest.warns(ResourceWarning, match="2 buffered rows were not written"):
        del writer
        gc.collect()
    # An unclosed log is refused by default, and readable on request.
    with pytest.raises(LogSchemaError, match=r"never closed.*--resume.*allow_partial=True"):
        read_log(tmp_path)
    table = read_log(tmp_path, allow_partial=True)
    assert_table_matches(table, pd.concat([expected_rows(s) for s in steps[:4]]), "random")
    assert len(pd.read_parquet(tmp_path)) == 8
    assert read_catalog(tmp_path) is not None
    metadata = read_log_metadata(tmp_path)
    assert metadata is not None and metadata["closed"] is False and metadata["num_rows"] == 8


def test_process_killed_mid_stream_leaves_a_readable_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = textwrap.dedent(
        f"""
        import os
        import numpy as np
        from loe_gym.logs import ParquetLogWriter
        from loe_gym.simulator import Responses

        writer = ParquetLogWriter({str(log)!r}, rows_per_group=10, policy="random")
        ones = np.ones((5, 3), dtype=bool)
        responses = Responses(
            clicked=ones, watch_time=ones * 1.5, completion=ones * 0.5,
            session_end=np.zeros(5, bool), gap_days=np.zeros(5, np.int64),
            churned=np.zeros(5, bool),
        )
        for step in range(5):  # 75 rows: 7 full groups, 5 rows buffered
            writer.write_step(user_id=np.arange(5), episode=0, day=0, session=0,
                              step=step, slates=np.full((5, 3), step), responses=responses)
        os._exit(3)  # no close, no finalisers, no atexit
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    result = subprocess.run([sys.executable, "-c", script], env=environment, timeout=120)
    assert result.returncode == 3
    # A crash while writing the next part leaves at most a hidden temporary file.
    (log / ".part-00007.parquet.tmp").write_bytes(b"PAR1 truncated")
    table = read_log(log, allow_partial=True)
    assert table.num_rows == 70
    assert len(pd.read_parquet(log)) == 70
    assert table.column("watch_time").to_pylist() == [1.5] * 70


# -------------------------------------------------------------------- overwrite


def test_refuses_non_empty_directory_without_overwrite(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with ParquetLogWriter(tmp_path, policy="first") as writer:
        writer.write_step(**make_step(rng, 2, 2))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite=True") as error:
        ParquetLogWriter(tmp_path, policy="second")
    assert str(tmp_path) in str(error.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # untouched

    with ParquetLogWriter(tmp_path, policy="second", overwrite=True) as writer:
        writer.write_step(**make_step(rng, 1, 1))
    table = read_log(tmp_path)
    assert table.num_rows == 1
    assert table.column("policy").to_pylist() == ["second"]


def test_overwrite_never_deletes_unrelated_files(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match=r"thesis\.tex"):
        ParquetLogWriter(tmp_path, policy="random", overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_empty_directory_is_accepted_and_a_file_is_refused(tmp_path: Path) -> None:
    ParquetLogWriter(tmp_path, policy="random").close()
    (tmp_path.parent / "a_file").write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        ParquetLogWriter(tmp_path.parent / "a_file", policy="random")


def test_bad_constructor_arguments_create_nothing(tmp_path: Path) -> None:
    target = tmp_path / "log"
    with pytest.raises(ValueError, match="policy"):
        ParquetLogWriter(target, policy="")
    with pytest.raises(ValueError, match="rows_per_group"):
        ParquetLogWriter(target, policy="random", rows_per_group=0)
    clash = Catalog(
        features=np.zeros((2, 1)),
        feature_names=("hidden_quality",),
        hidden={"quality": np.array([0.0, 1.0])},
    )
    with pytest.raises(ValueError, match="hidden_quality"):
        ParquetLogWriter(target, policy="random", catalog=clash)
    assert not target.exists()


# ------------------------------------------------------------------- bad inputs


def replace_response(step: dict[str, Any], **changes: Any) -> dict[str, Any]:
    fields = {name: getattr(step["responses"], name) for name in Responses.__dataclass_fields__}
    return {**step, "responses": Responses(**{**fields, **changes})}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            lambda s: {**s, "slates": s["slates"][:, 0]},
            ValueError,
            r"slates must have shape \(num_users, slate_size\)=\(\?, \?\), got shape \(3,\)",
        ),
        (
            lambda s: {**s, "slates": s["slates"].astype(float)},
            TypeError,
            "slates must have an integer dtype, got dtype float64",
        ),
        (
            lambda s: replace_response(s, clicked=s["responses"].clicked[:, :1]),
            ValueError,
            r"responses.clicked must have shape \(num_users, slate_size\)=\(3, 2\), "
            r"got shape \(3, 1\)",
        ),
        (
            lambda s: replace_response(s, clicked=s["responses"].clicked.astype(int)),
            TypeError,
            "responses.clicked must have bool, got dtype int64",
        ),
        (
            lambda s: replace_response(
                s, watch_time=np.where([[False, True]] * 3, np.nan, s["responses"].watch_time)
            ),
            ValueError,
            r"responses.watch_time must lie in \[0, inf\]; user 0, slate position 1 has nan",
        ),
        (
            lambda s: replace_response(s, completion=s["responses"].completion + 2.0),
            ValueError,
            r"responses.completion must lie in \[0, 1\]; user 0, slate position 0",
        ),
        (
            lambda s: replace_response(s, session_end=s["responses"].session_end[:2]),
            ValueError,
            r"responses.session_end must have shape \(num_users,\)=\(3\), got shape \(2,\)",
        ),
        (
            lambda s: replace_response(s, gap_days=np.array([0, 40_000, 0])),
            ValueError,
            r"responses.gap_days must lie in \[0, 32767\]; user 1 has",
        ),
        (
            lambda s: {**s, "day": np.array([0, -1, 0])},
            ValueError,
            r"day must lie in \[0, 2147483647\]; user 1 has",
        ),
        (
            lambda s: {**s, "user_id": np.zeros((3, 1), dtype=np.int64)},
            ValueError,
            r"user_id must have shape \(num_users,\)=\(3\), got shape \(3, 1\)",
        ),
        (
            lambda s: {**s, "mask": np.ones(4, dtype=bool)},
            ValueError,
            r"mask must have shape \(num_users,\)=\(3\), got shape \(4,\)",
        ),
        (
            lambda s: {**s, "mask": np.ones(3, dtype=int)},
            TypeError,
            "mask must have bool, got dtype int64",
        ),
        (
            lambda s: {**s, "slates": np.full((3, 2), 20)},
            ValueError,
            r"slates must lie in \[0, 19\]; user 0, slate position 0 has",
        ),
        (lambda s: {**s, "responses": {"clicked": 1}}, TypeError, "responses must be"),
    ],
)
def test_bad_inputs_are_named(
    tmp_path: Path, change: Any, error: type[Exception], message: str
) -> None:
    step = make_step(np.random.default_rng(6), num_users=3, slate_size=2)
    with ParquetLogWriter(tmp_path, policy="random", catalog=make_catalog()) as writer:
        with pytest.raises(error, match=message):
            writer.write_step(**change(step))
        assert writer.rows_written == 0  # a rejected step adds nothing
        writer.write_step(**step)  # the writer is still usable
    assert read_log(tmp_path).num_rows == 6


def test_writing_after_close_is_an_error(tmp_path: Path) -> None:
    writer = ParquetLogWriter(tmp_path, policy="random")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write_step(**make_step(np.random.default_rng(0), 1, 1))


# ------------------------------------------------------------------------- masks


def test_mask_logs_only_acted_users_and_ignores_placeholders(tmp_path: Path) -> None:
    step = make_step(np.random.default_rng(7), num_users=4, slate_size=2)
    mask = np.array([True, False, True, False])
    # Users who did not act may carry garbage (an autoreset step): it is not checked.
    watch_time = step["responses"].watch_time.copy()
    watch_time[1] = np.nan
    step = replace_response(step, watch_time=watch_time)
    step["day"] = np.where(mask, step["day"], -1)
    with ParquetLogWriter(tmp_path, policy="random") as writer:
        assert writer.write_step(**step, mask=mask) == 4
        assert writer.write_step(**step, mask=np.zeros(4, dtype=bool)) == 0
    assert_table_matches(read_log(tmp_path), expected_rows(step, mask), "random")


def test_buffered_rows_are_copies(tmp_path: Path) -> None:
    step = make_step(np.random.default_rng(8), num_users=2, slate_size=2)
    expected = expected_rows(step)
    with ParquetLogWriter(tmp_path, policy="random") as writer:
        writer.write_step(**step)
        # An env reusing its buffers must not change rows already logged.
        step["slates"][:] = 0
        step["responses"].watch_time[:] = 99.0
        step["user_id"][:] = -5
    assert_table_matches(read_log(tmp_path), expected, "random")


@settings(max_examples=30, deadline=None)
@given(
    num_users=st.integers(0, 6),
    slate_size=st.integers(1, 4),
    num_steps=st.integers(1, 4),
    rows_per_group=st.integers(2, 12),
    seed=st.integers(0, 2**32 - 1),
    use_mask=st.booleans(),
)
def test_row_count_is_acted_users_times_slate_size(
    num_users: int, slate_size: int, num_steps: int, rows_per_group: int, seed: int, use_mask: bool
) -> None:
    rng = np.random.default_rng(seed)
    steps, masks = [], []
    for _ in range(num_steps):
        steps.append(make_step(rng, num_users, slate_size))
        masks.append(rng.random(num_users) < 0.5 if use_mask else None)
    with tempfile.TemporaryDirectory() as directory:
        with ParquetLogWriter(directory, rows_per_group=rows_per_group, policy="p") as writer:
            for step, mask in zip(steps, masks, strict=True):
                writer.write_step(**step, mask=mask)
        table = read_log(directory)
        acted = sum(num_users if m is None else int(m.sum()) for m in masks)
        assert table.num_rows == writer.rows_written == acted * slate_size
        expected = pd.concat(
            [expected_rows(s, m) for s, m in zip(steps, masks, strict=True)], ignore_index=True
        )
        assert_table_matches(table, expected, "p")
        parts = sorted(Path(directory).glob("part-*.parquet"))
        sizes = [pq.ParquetFile(p).metadata.num_rows for p in parts]
        # Every part but the last (flushed at close) holds exactly one full group.
        assert all(size == rows_per_group for size in sizes[:-1])
        assert 0 <= sizes[-1] <= rows_per_group


# ------------------------------------------------------------ reading other logs


def write_part(directory: Path, table: pa.Table, name: str = "part-00000.parquet") -> Path:
    directory.mkdir(exist_ok=True)
    pq.write_table(table, directory / name)
    return directory / name


def valid_table(num_rows: int = 3) -> pa.Table:
    arrays = {
        field.name: pa.array(np.zeros(num_rows, dtype=field.type.to_pandas_dtype()))
        for field in LOG_SCHEMA
        if field.name != "policy"
    }
    arrays["policy"] = pa.array(["external"] * num_rows)  # plain strings are accepted
    return pa.table(arrays)


def test_read_log_accepts_plain_string_policy(tmp_path: Path) -> None:
    write_part(tmp_path, valid_table())
    table = read_log(tmp_path)
    assert table.schema.equals(LOG_SCHEMA)
    assert table.column("policy").to_pylist() == ["external"] * 3


def test_read_log_names_file_and_missing_column(tmp_path: Path) -> None:
    file = write_part(tmp_path, valid_table().drop_columns(["gap_days"]))
    with pytest.raises(LogSchemaError, match="no column 'gap_days'") as error:
        read_log(tmp_path)
    assert str(file) in str(error.value)


def test_read_log_names_file_and_wrong_dtype(tmp_path: Path) -> None:
    table = valid_table()
    table = table.set_column(table.schema.get_field_index("day"), "day", pa.array([0, 1, 2]))
    file = write_part(tmp_path, table)
    with pytest.raises(LogSchemaError, match=r"Column 'day' .* has type int64, expected int32"):
        read_log(tmp_path)
    with pytest.raises(LogSchemaError, match=re.escape(str(file))):
        read_log(file)


def test_read_log_names_file_row_and_column_of_bad_value(tmp_path: Path) -> None:
    table = valid_table()
    index = table.schema.get_field_index("watch_time")
    table = table.set_column(index, "watch_time", pa.array([0.0, 1.0, np.nan], pa.float32()))
    file = write_part(tmp_path, table, "part-00001.parquet")
    with pytest.raises(LogSchemaError, match="row 2, column 'watch_time'") as error:
        read_log(tmp_path)
    assert str(file) in str(error.value)


def test_read_log_reports_missing_parts(tmp_path: Path) -> None:
    with ParquetLogWriter(tmp_path, rows_per_group=2, policy="random") as writer:
        writer.write_step(**make_step(np.random.default_rng(9), 3, 2))
    (tmp_path / "part-00001.parquet").unlink()
    with pytest.raises(LogSchemaError, match=r"missing: \['part-00001.parquet'\]"):
        read_log(tmp_path)


def test_read_log_of_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no interaction log"):
        read_log(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_log(tmp_path / "missing")


# ----------------------------------------------------------------------- wrapper


class FakeVectorEnv(VectorEnv):  # type: ignore[type-arg]
    """Emits the step info of a loe_gym vector env; each user's life lasts 3 steps.

    Gymnasium's next-step autoreset: the step after a user's last one only resets that
    user (``acted`` False, placeholder values).
    """

    def __init__(self, num_envs: int = 3, slate_size: int = 2, num_items: int = 20) -> None:
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}
        self.num_envs = num_envs
        self.slate_size = slate_size
        self.single_observation_space = gym.spaces.Discrete(1)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.single_action_space = gym.spaces.Discrete(1)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.catalog = make_catalog(num_items)
        self.infos: list[dict[str, Any]] = []
        self.closed = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self.rng = np.random.default_rng(seed)
        self.user_id = np.arange(self.num_envs, dtype=np.int64)
        self.next_user = self.num_envs
        self.episode = np.zeros(self.num_envs, dtype=np.int64)
        self.steps = np.zeros(self.num_envs, dtype=np.int32)
        self.needs_reset = np.zeros(self.num_envs, dtype=bool)
        return np.zeros(self.num_envs, dtype=np.int64), {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        n, s = self.num_envs, self.slate_size
        acted = ~self.needs_reset
        step = make_step(self.rng, n, s)
        responses: Responses = step["responses"]
        watch_time = np.where(acted[:, None], responses.watch_time, np.nan)  # placeholders
        info = {
            "acted": acted,
            "user_id": self.user_id.copy(),
            "life": self.episode.copy(),
            "day": self.steps.copy(),
            "session": self.steps.copy(),
            "step_in_session": np.zeros(n, dtype=np.int32),
            "slate": step["slates"],
            "clicked": responses.clicked,
            "watch_time": watch_time,
            "completion": responses.completion,
            "session_end": responses.session_end,
            "gap_days": responses.gap_days.astype(np.int64),
            "churned": responses.churned,
            "returned_next_day": responses.returned_next_day,
            "_acted": np.ones(n, dtype=bool),
        }
        self.infos.append(info)
        self.steps = np.where(acted, self.steps + 1, 0)
        done = acted & (self.steps >= 3)
        # Reset users whose previous step ended their life.
        restarted = self.needs_reset
        count = int(restarted.sum())
        self.user_id[restarted] = np.arange(self.next_user, self.next_user + count)
        self.next_user += count
        self.episode[restarted] += 1
        self.needs_reset = done
        zeros = np.zeros(n)
        return np.zeros(n, dtype=np.int64), zeros, done, np.zeros(n, dtype=bool), info

    def close_extras(self, **kwargs: Any) -> None:
        self.closed_extras = True


def test_wrapper_logs_acted_users_from_step_info(tmp_path: Path) -> None:
    env = FakeVectorEnv(num_envs=3, slate_size=2)
    wrapped = LogInteractions(env, tmp_path, policy="fake", rows_per_group=4)
    wrapped.reset(seed=0)
    for _ in range(8):
        wrapped.step(np.zeros(3, dtype=np.int64))
    acted_users = sum(int(info["acted"].sum()) for info in env.infos)
    assert acted_users < 8 * 3  # autoreset steps happened and were skipped
    wrapped.close()
    assert wrapped.writer.closed and env.closed_extras

    table = read_log(tmp_path).to_pandas()
    assert len(table) == acted_users * 2
    rows = []
    for info in env.infos:
        for user in np.flatnonzero(info["acted"]):
            for position in range(2):
                rows.append(
                    (
                        info["user_id"][user],
                        info["life"][user],
                        info["day"][user],
                        info["slate"][user, position],
                        np.float32(info["watch_time"][user, position]),
                        info["returned_next_day"][user],
                    )
                )
    columns = ["user_id", "episode", "day", "item_id", "watch_time", "returned_next_day"]
    assert list(table[columns].itertuples(index=False, name=None)) == rows
    assert set(table["policy"]) == {"fake"}
    # The catalog is taken from the environment.
    stored = read_catalog(tmp_path)
    assert stored is not None and stored.num_rows == 20


def test_wrapper_flushes_on_reset(tmp_path: Path) -> None:
    env = FakeVectorEnv(num_envs=2, slate_size=1)
    wrapped = LogInteractions(env, tmp_path, policy="fake", rows_per_group=1000)
    wrapped.reset(seed=1)
    wrapped.step(np.zeros(2, dtype=np.int64))
    assert part_names(tmp_path) == []
    wrapped.reset(seed=2)
    assert part_names(tmp_path) == ["part-00000.parquet"]
    assert read_log(tmp_path, allow_partial=True).num_rows == 2
    wrapped.close()


def test_wrapper_names_missing_info_keys(tmp_path: Path) -> None:
    env = FakeVectorEnv(num_envs=2)
    wrapped = LogInteractions(env, tmp_path, policy="fake")
    wrapped.reset(seed=0)
    original = env.step

    def step_without_slate(actions: Any) -> tuple[Any, ...]:
        *rest, info = original(actions)
        del info["slate"]
        return (*rest, info)

    env.step = step_without_slate  # type: ignore[method-assign]
    with pytest.raises(KeyError, match=r"lacks \['slate'\]"):
        wrapped.step(np.zeros(2, dtype=np.int64))
    wrapped.close()


def test_wrapper_on_registered_engagement_env(tmp_path: Path) -> None:
    registration = pytest.importorskip("loe_gym.registration")
    registration.register_environments()
    if "loe_gym/Engagement-v0" not in gym.registry:
        pytest.skip("loe_gym/Engagement-v0 is not registered")
    envs = gym.make_vec("loe_gym/Engagement-v0", num_envs=8)
    wrapped = LogInteractions(envs, tmp_path, policy="random", rows_per_group=64)
    wrapped.reset(seed=0)
    wrapped.action_space.seed(0)
    acted = 0
    for _ in range(200):
        *_, info = wrapped.step(wrapped.action_space.sample())
        acted += int(info["acted"].sum())
    wrapped.close()
    table = read_log(tmp_path)
    slate_size = info["slate"].shape[1]
    assert table.num_rows == acted * slate_size
    frame = table.to_pandas()
    catalog = read_catalog(tmp_path)
    assert catalog is not None
    assert frame["item_id"].between(0, catalog.num_rows - 1).all()
    assert (frame["watch_time"][~frame["clicked"]] == 0).all()
    # Within one user life, time never goes backwards.
    ordered = frame.groupby("user_id")["day"].apply(lambda d: d.is_monotonic_increasing)
    assert ordered.all()


# ------------------------------------------------------------ privileged columns


def privileged_values(rng: np.random.Generator, num_users: int, slate_size: int) -> dict[str, Any]:
    """Keyword arguments of the privileged columns of `write_step`, random but valid."""
    return {
        "true_click_probability": rng.random((num_users, slate_size)),
        "true_watch_time": rng.random((num_users, slate_size)) * 4.0,
        "true_return_probability": rng.random(num_users),
    }


def test_privileged_round_trip_and_nan_off_session_ends(tmp_path: Path) -> None:
    rng = np.random.default_rng(20)
    steps = [make_step(rng, num_users=4, slate_size=2) for _ in range(3)]
    extras = [privileged_values(rng, 4, 2) for _ in steps]
    with ParquetLogWriter(tmp_path, rows_per_group=5, policy="p", privileged=True) as writer:
        for step, extra in zip(steps, extras, strict=True):
            assert writer.write_step(**step, **extra) == 8
    table = read_log(tmp_path)
    assert table.schema.equals(PRIVILEGED_LOG_SCHEMA)
    frame = table.to_pandas()
    base = pd.concat([expected_rows(s) for s in steps], ignore_index=True)
    for name in base.columns:
        np.testing.assert_array_equal(frame[name], base[name].astype(frame[name].dtype), name)
    # Reference, built per row: item columns per position, the return probability per
    # user and only where the step ended a session.
    click, watch, back = [], [], []
    for step, extra in zip(steps, extras, strict=True):
        for user in range(4):
            for position in range(2):
                click.append(extra["true_click_probability"][user, position])
                watch.append(extra["true_watch_time"][user, position])
                ended = step["responses"].session_end[user]
                back.append(extra["true_return_probability"][user] if ended else np.nan)
    np.testing.assert_array_equal(frame["true_click_probability"], np.array(click, np.float32))
    np.testing.assert_array_equal(frame["true_watch_time"], np.array(watch, np.float32))
    np.testing.assert_array_equal(frame["true_return_probability"], np.array(back, np.float32))
    assert frame["true_return_probability"].isna().any()
    assert frame["true_return_probability"].notna().any()
    metadata = read_log_metadata(tmp_path)
    assert metadata is not None and metadata["privileged"] is True


def test_empty_privileged_log_keeps_its_schema(tmp_path: Path) -> None:
    ParquetLogWriter(tmp_path, policy="p", privileged=True).close()
    assert read_log(tmp_path).schema.equals(PRIVILEGED_LOG_SCHEMA)


def test_privileged_values_must_match_the_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    step, extra = make_step(rng, 2, 1), privileged_values(rng, 2, 1)
    with (
        ParquetLogWriter(tmp_path / "plain", policy="p") as writer,
        pytest.raises(ValueError, match="privileged=True to ParquetLogWriter"),
    ):
        writer.write_step(**step, **extra)
    with ParquetLogWriter(tmp_path / "privileged", policy="p", privileged=True) as writer:
        with pytest.raises(ValueError, match=r"needs \['true_watch_time'\]"):
            writer.write_step(
                **step,
                true_click_probability=extra["true_click_probability"],
                true_return_probability=extra["true_return_probability"],
            )
        assert writer.rows_written == 0
    with pytest.raises(TypeError, match="privileged must be True or False"):
        ParquetLogWriter(tmp_path / "bad", policy="p", privileged="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("true_click_probability", 1.5, r"true_click_probability must lie in \[0, 1\]; user 1"),
        ("true_watch_time", -1.0, r"true_watch_time must lie in \[0, inf\]; user 1"),
        ("true_return_probability", 2.0, r"true_return_probability must lie in \[0, 1\]; user 1"),
    ],
)
def test_privileged_values_out_of_range_are_named(
    tmp_path: Path, name: str, value: float, message: str
) -> None:
    rng = np.random.default_rng(22)
    step, extra = make_step(rng, 3, 2), privileged_values(rng, 3, 2)
    step = replace_response(step, session_end=np.ones(3, bool), churned=np.zeros(3, bool))
    extra[name] = extra[name].copy()
    extra[name][1] = value
    with (
        ParquetLogWriter(tmp_path, policy="p", privileged=True) as writer,
        pytest.raises(ValueError, match=message),
    ):
        writer.write_step(**step, **extra)


def test_return_probability_is_only_checked_on_session_ends(tmp_path: Path) -> None:
    rng = np.random.default_rng(23)
    step, extra = make_step(rng, 3, 1), privileged_values(rng, 3, 1)
    step = replace_response(step, session_end=np.array([True, False, True]))
    # Placeholders where no session ended, and NaN ("cannot tell") on a session end.
    extra["true_return_probability"] = np.array([np.nan, 7.0, 0.25])
    with ParquetLogWriter(tmp_path, policy="p", privileged=True) as writer:
        writer.write_step(**step, **extra)
    values = read_log(tmp_path).column("true_return_probability").to_numpy()
    np.testing.assert_array_equal(values, np.array([np.nan, np.nan, 0.25], np.float32))


def privileged_table(num_rows: int = 3) -> pa.Table:
    table = valid_table(num_rows)
    for name in PRIVILEGED_COLUMNS:
        table = table.append_column(name, pa.array(np.zeros(num_rows, np.float32)))
    # No row of valid_table ends a session: the return probability must be NaN.
    index = table.schema.get_field_index("true_return_probability")
    return table.set_column(
        index, "true_return_probability", pa.array(np.full(num_rows, np.nan, np.float32))
    )


def test_version_1_logs_still_read(tmp_path: Path) -> None:
    # A log as schema version 1 wrote it: base columns and a version-1 metadata file.
    file = write_part(tmp_path, valid_table().replace_schema_metadata({"version": "1"}))
    (tmp_path / METADATA_FILE).write_text(
        json.dumps({"schema_version": 1, "parts": {file.name: 3}, "closed": True})
    )
    table = read_log(tmp_path)
    assert table.schema.equals(LOG_SCHEMA)
    assert table.num_rows == 3


def test_log_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    write_part(tmp_path, valid_table())
    (tmp_path / METADATA_FILE).write_text(json.dumps({"schema_version": 99, "parts": {}}))
    with pytest.raises(LogSchemaError, match="schema version 99, newer"):
        read_log(tmp_path)


def test_read_log_of_privileged_parts_from_another_writer(tmp_path: Path) -> None:
    write_part(tmp_path, privileged_table())
    assert read_log(tmp_path).schema.equals(PRIVILEGED_LOG_SCHEMA)


def test_read_log_names_incomplete_privileged_columns(tmp_path: Path) -> None:
    write_part(tmp_path, privileged_table().drop_columns(["true_watch_time"]))
    with pytest.raises(LogSchemaError, match="no column 'true_watch_time'"):
        read_log(tmp_path)


def test_read_log_refuses_parts_that_disagree_on_privileged_columns(tmp_path: Path) -> None:
    write_part(tmp_path, valid_table(), "part-00000.parquet")
    second = write_part(tmp_path, privileged_table(), "part-00001.parquet")
    with pytest.raises(LogSchemaError, match="share a schema") as error:
        read_log(tmp_path)
    assert str(second) in str(error.value)


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("true_click_probability", [0.0, 1.5, 0.0], r"row 1, column 'true_click_probability'"),
        ("true_watch_time", [0.0, 0.0, np.nan], r"row 2, column 'true_watch_time'"),
        ("true_return_probability", [np.nan, 0.5, np.nan], "did not end a session"),
    ],
)
def test_read_log_names_bad_privileged_values(
    tmp_path: Path, name: str, values: list[float], message: str
) -> None:
    table = privileged_table()
    index = table.schema.get_field_index(name)
    table = table.set_column(index, name, pa.array(np.array(values, np.float32)))
    write_part(tmp_path, table)
    with pytest.raises(LogSchemaError, match=message):
        read_log(tmp_path)


def test_read_log_checks_return_probability_range_on_session_ends(tmp_path: Path) -> None:
    table = privileged_table()
    table = table.set_column(
        table.schema.get_field_index("session_end"), "session_end", pa.array([True] * 3)
    )
    index = table.schema.get_field_index("true_return_probability")
    table = table.set_column(
        index, "true_return_probability", pa.array(np.array([0.5, np.nan, 1.5], np.float32))
    )
    write_part(tmp_path, table)
    with pytest.raises(LogSchemaError, match=r"row 2, column 'true_return_probability'"):
        read_log(tmp_path)


def test_log_part_files_lists_parts_in_order(tmp_path: Path) -> None:
    with ParquetLogWriter(tmp_path, rows_per_group=2, policy="p") as writer:
        writer.write_step(**make_step(np.random.default_rng(24), 11, 1))
    files = log_part_files(tmp_path)
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(6)]
    assert log_part_files(files[0]) == [files[0]]


def test_wrapper_log_mask_skips_slots(tmp_path: Path) -> None:
    env = FakeVectorEnv(num_envs=3, slate_size=1)
    wrapped = LogInteractions(env, tmp_path, policy="fake")
    wrapped.reset(seed=0)
    with pytest.raises(ValueError, match=r"log_mask must have shape \(num_envs,\)=\(3\)"):
        wrapped.log_mask = np.ones(2, bool)
    wrapped.log_mask = np.array([True, False, True])
    wrapped.step(np.zeros(3, dtype=np.int64))
    wrapped.log_mask = None
    wrapped.step(np.zeros(3, dtype=np.int64))
    wrapped.close()
    users = read_log(tmp_path).column("user_id").to_pylist()
    assert users == [0, 2, 0, 1, 2]


def test_privileged_wrapper_needs_a_privileged_core(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"exposing \.state and \.simulator"):
        LogInteractions(FakeVectorEnv(), tmp_path / "log", policy="fake", privileged=True)
    envs = gym.make_vec(
        "loe_gym/Engagement-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        autoreset_mode="same_step",
        simulator_kwargs={"num_items": 50},
    )
    with pytest.raises(ValueError, match="autoreset_mode 'next_step'"):
        LogInteractions(envs, tmp_path / "log", policy="random", privileged=True)
    assert not (tmp_path / "log").exists()  # a refused wrapper creates no log


def engagement_vector(env_id: str = "loe_gym/Engagement-v0", **options: Any) -> Any:
    return gym.make_vec(
        env_id,
        num_envs=6,
        vectorization_mode="vector_entry_point",
        simulator_kwargs={"num_items": 50},
        horizon_days=3,
        **options,
    )


@pytest.mark.parametrize("env_id", ["loe_gym/Engagement-v0", "loe_gym/EngagementSlate-v0"])
def test_privileged_wrapper_logs_the_simulators_expectations(tmp_path: Path, env_id: str) -> None:
    """The logged columns equal expectations recomputed on a twin environment."""
    wrapped = LogInteractions(engagement_vector(env_id), tmp_path, policy="random", privileged=True)
    twin = engagement_vector(env_id).unwrapped
    wrapped.reset(seed=3)
    twin.reset(seed=3)
    rng = np.random.default_rng(0)
    num_candidates, slate_size = twin.config.num_candidates, twin.config.slate_size
    expected_click, expected_watch, expected_return = [], [], []
    for _ in range(60):
        keys = rng.random((6, num_candidates))
        actions = np.argsort(keys, axis=1)[:, :slate_size]
        actions = actions[:, 0] if slate_size == 1 else actions
        state = twin.state
        slates = twin.candidates[np.arange(6)[:, None], actions.reshape(6, -1)]
        expected = twin.simulator.expected_responses(state, slates)
        *_, info = twin.step(actions)
        wrapped.step(actions)
        back = twin.simulator.return_probability(twin.state)
        for user in np.flatnonzero(info["acted"]):
            expected_click.extend(expected["click_probability"][user])
            expected_watch.extend(expected["watch_time"][user])
            ended = info["session_end"][user]
            expected_return.extend([back[user] if ended else np.nan] * slate_size)
    wrapped.close()
    frame = read_log(tmp_path).to_pandas()
    assert len(frame) == len(expected_click) > 0
    np.testing.assert_array_equal(
        frame["true_click_probability"], np.array(expected_click, np.float32)
    )
    np.testing.assert_array_equal(frame["true_watch_time"], np.array(expected_watch, np.float32))
    np.testing.assert_array_equal(
        frame["true_return_probability"], np.array(expected_return, np.float32)
    )
    assert frame["session_end"].any()


def test_privileged_columns_are_calibrated(tmp_path: Path) -> None:
    """Outcomes match their true probabilities on average (a statistical check).

    With n rows the standard error of a mean of Bernoulli outcomes is at most
    0.5 / sqrt(n); the tolerance is five of them.
    """
    envs = gym.make_vec(
        "loe_gym/Engagement-v0",
        num_envs=200,
        vectorization_mode="vector_entry_point",
        simulator_kwargs={"num_items": 200},
        horizon_days=6,
    )
    wrapped = LogInteractions(envs, tmp_path, policy="random", privileged=True)
    wrapped.reset(seed=5)
    wrapped.action_space.seed(5)
    for _ in range(300):
        wrapped.step(wrapped.action_space.sample())
    wrapped.close()
    frame = read_log(tmp_path).to_pandas()
    clicks = frame["clicked"].to_numpy(float)
    assert abs(clicks.mean() - frame["true_click_probability"].mean()) < 2.5 / np.sqrt(len(frame))
    watch_error = frame["watch_time"].mean() - frame["true_watch_time"].mean()
    assert abs(watch_error) < 5 * frame["watch_time"].std() / np.sqrt(len(frame))
    ends = frame[frame["session_end"]]
    assert len(ends) > 500
    returned = ends["returned_next_day"].to_numpy(float)
    assert abs(returned.mean() - ends["true_return_probability"].mean()) < 2.5 / np.sqrt(len(ends))
    assert ends["true_return_probability"].notna().all()


def test_catalog_texts_round_trip_and_stay_out_of_the_features(tmp_path: Path) -> None:
    from loe_gym.logs import ParquetLogWriter, read_public_catalog

    catalog = Catalog(
        features=np.ones((3, 1)), feature_names=("length",), texts=("a cat", "", "news: rain")
    )
    with ParquetLogWriter(tmp_path / "log", policy="test", catalog=catalog):
        pass
    public = read_public_catalog(tmp_path / "log")
    assert public is not None
    assert public.texts == ("a cat", "", "news: rain")
    assert public.feature_names == ("length",)
    with pytest.raises(ValueError, match="one str per item"):
        Catalog(features=np.ones((3, 1)), feature_names=("length",), texts=("a", "b"))
