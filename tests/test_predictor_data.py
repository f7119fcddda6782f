"""Tests of the predictor's data pipeline (`loe_gym.predictor.sequences`, `.batches`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.collect import collect_logs
from loe_gym.logs import LOG_SCHEMA, PRIVILEGED_COLUMNS, LogSchemaError, ParquetLogWriter
from loe_gym.predictor.batches import (
    IGNORE_INDEX,
    MASK_ID,
    MASKED_ITEM_BATCH_KEYS,
    PAD_ID,
    TARGET_BATCH_KEYS,
    MaskedItemBatches,
    TargetBatches,
)
from loe_gym.predictor.sequences import UserSequences, item_popularity, load_sequences, split_users
from loe_gym.simulator import Responses

NUM_ITEMS = 50


# --------------------------------------------------------------------------- helpers


def log_table(rows: list[dict[str, Any]], *, privileged: bool = False) -> pa.Table:
    """A log table with `LOG_SCHEMA` types from ``rows`` (dicts with at least user_id,
    day, session, step, item_id); other columns default to a plain non-click."""
    defaults = {
        "episode": 0,
        "position": 0,
        "clicked": False,
        "watch_time": 0.0,
        "completion": 0.0,
        "session_end": False,
        "returned_next_day": False,
        "gap_days": 0,
        "policy": "hand",
    }
    if privileged:
        defaults.update(
            true_click_probability=0.5, true_watch_time=1.0, true_return_probability=np.nan
        )
    full = [{**defaults, **row} for row in rows]
    fields = list(LOG_SCHEMA)
    if privileged:
        fields += [pa.field(name, pa.float32()) for name in PRIVILEGED_COLUMNS]
    arrays = {}
    for field in fields:
        values = [row[field.name] for row in full]
        kind = pa.string() if field.name == "policy" else field.type
        arrays[field.name] = pa.array(values, type=kind)
    return pa.table(arrays)


def sequence_rows(lengths: dict[int, int], *, slate_size: int = 1) -> list[dict[str, Any]]:
    """Rows of users ``{user_id: number of steps}`` whose place can be read back: step t
    of user u shows item ``(7·u + 3·t + position) % NUM_ITEMS`` at each slate position,
    and a click (on even steps only) watches ``t`` minutes with completion
    ``position / 10``.

    A session holds 3 steps; sessions are one day apart except every third session,
    which comes 3 days later.
    """
    rows = []
    for user, num_steps in lengths.items():
        day, session = 0, 0
        for t in range(num_steps):
            if t and t % 3 == 0:
                session += 1
                day += 3 if session % 3 == 0 else 1
            end = t % 3 == 2 or t == num_steps - 1
            for position in range(slate_size):
                clicked = t % 2 == 0
                rows.append(
                    {
                        "user_id": user,
                        "day": day,
                        "session": session,
                        "step": t % 3,
                        "position": position,
                        "item_id": (7 * user + 3 * t + position) % NUM_ITEMS,
                        "clicked": clicked,
                        "watch_time": float(t) if clicked else 0.0,
                        "completion": position / 10 if clicked else 0.0,
                        "session_end": end,
                        "returned_next_day": end and (session + 1) % 3 != 0,
                    }
                )
    return rows


def shuffled(table: pa.Table, seed: int = 0) -> pa.Table:
    order = np.random.default_rng(seed).permutation(table.num_rows)
    return table.take(pa.array(order))


def write_log(directory: Path, table: pa.Table, name: str = "part-00000.parquet") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / name)
    return directory / name


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small privileged log of the engagement environment."""
    path = tmp_path_factory.mktemp("collected")
    collect_logs(
        num_users=12,
        path=path,
        horizon_days=4,
        progress=False,
        overwrite=True,
        env_options={"simulator_kwargs": {"num_items": NUM_ITEMS}},
    )
    return path


# --------------------------------------------------------------------------- loading


def test_hand_built_log_is_ordered_with_gap_buckets() -> None:
    rows = sequence_rows({5: 8, 2: 4})
    sequences, report = load_sequences(shuffled(log_table(rows)), num_items=NUM_ITEMS)
    assert sequences.num_users == 2 and sequences.num_rows == 12
    np.testing.assert_array_equal(sequences.user_id, [2, 5])
    np.testing.assert_array_equal(sequences.offsets, [0, 4, 12])
    # Back in time order: watch_time holds the step counter on clicked (even) steps.
    np.testing.assert_array_equal(sequences.watch_time[4:12:2], [0, 2, 4, 6])
    # User 5: sessions of 3 steps on days 0, 1 and 2, so buckets 2 (first row), 1, 1 |
    # 2 (next day), 1, 1 | 2, 1.
    np.testing.assert_array_equal(sequences.gap_bucket[4:], [2, 1, 1, 2, 1, 1, 2, 1])
    np.testing.assert_array_equal(sequences.day[4:], [0, 0, 0, 1, 1, 1, 2, 2])
    assert not sequences.has_privileged
    assert np.isnan(sequences.true_click_probability).all()
    assert report.users_kept == 2 and report.rows_kept == 12 and report.users_dropped == 0
    assert report.source == "the table"


def test_gap_buckets_by_days_and_cap() -> None:
    days = [0, 0, 1, 3, 10, 10, 40]
    sessions = [0, 0, 1, 2, 3, 4, 5]
    rows = [
        {"user_id": 1, "day": d, "session": s, "step": i, "item_id": i}
        for i, (d, s) in enumerate(zip(days, sessions, strict=True))
    ]
    sequences, _ = load_sequences(log_table(rows), num_items=NUM_ITEMS, num_gap_buckets=6)
    # first=2; same session=1; +1 day=2; +2 days=3; +7 days=8→capped 5; same day, new
    # session=2; +30 days → 5.
    np.testing.assert_array_equal(sequences.gap_bucket, [2, 1, 2, 3, 5, 2, 5])


def test_privileged_log_from_collect(collected: Path) -> None:
    sequences, report = load_sequences(collected, num_items=NUM_ITEMS)
    assert sequences.has_privileged
    assert report.source == str(collected)
    assert report.users_kept + report.users_dropped == 12
    assert np.isfinite(sequences.true_click_probability).all()
    ended = sequences.session_end
    assert np.isfinite(sequences.true_return_probability[ended]).all()
    assert np.isnan(sequences.true_return_probability[~ended]).all()
    # Rows are in time order within each user.
    for user in range(sequences.num_users):
        rows = slice(sequences.offsets[user], sequences.offsets[user + 1])
        key = sequences.day[rows] * 10_000 + sequences.session[rows] * 100 + sequences.step[rows]
        assert np.all(np.diff(key) > 0)
    assert (sequences.gap_bucket[sequences.offsets[:-1]] == 2).all()


def test_short_users_are_dropped_and_counted() -> None:
    rows = sequence_rows({1: 5, 2: 1, 3: 2, 4: 1})
    sequences, report = load_sequences(log_table(rows), num_items=NUM_ITEMS, min_length=2)
    np.testing.assert_array_equal(sequences.user_id, [1, 3])
    assert (report.users_kept, report.rows_kept) == (2, 7)
    assert (report.users_dropped, report.rows_dropped) == (2, 2)
    assert report.dropped == {"fewer than min_length=2 rows": (2, 2)}
    assert "dropped 2 users (2 rows): fewer than min_length=2 rows" in str(report)
    kept, report = load_sequences(log_table(rows), num_items=NUM_ITEMS, min_length=3)
    assert kept.num_users == 1 and report.users_dropped == 3 and report.rows_dropped == 4


def test_missing_column_is_named(tmp_path: Path) -> None:
    table = log_table(sequence_rows({1: 3})).drop_columns(["clicked"])
    with pytest.raises(LogSchemaError, match="the table has no column 'clicked'"):
        load_sequences(table, num_items=NUM_ITEMS)
    file = write_log(tmp_path, table)
    with pytest.raises(LogSchemaError, match="no column 'clicked'") as error:
        load_sequences(tmp_path, num_items=NUM_ITEMS)
    assert str(file) in str(error.value)


def test_wrong_dtype_is_named(tmp_path: Path) -> None:
    table = log_table(sequence_rows({1: 3}))
    index = table.schema.get_field_index("clicked")
    table = table.set_column(index, "clicked", pa.array([1, 0, 1], pa.int64()))
    with pytest.raises(LogSchemaError, match=r"Column 'clicked' of the table has type int64"):
        load_sequences(table, num_items=NUM_ITEMS)
    write_log(tmp_path, table)
    with pytest.raises(LogSchemaError, match=r"Column 'clicked' .* has type int64"):
        load_sequences(tmp_path, num_items=NUM_ITEMS)


def test_empty_log_is_an_error(tmp_path: Path) -> None:
    ParquetLogWriter(tmp_path, policy="random").close()
    with pytest.raises(LogSchemaError, match="holds no interaction rows"):
        load_sequences(tmp_path, num_items=NUM_ITEMS)
    with pytest.raises(LogSchemaError, match="the table holds no interaction rows"):
        load_sequences(log_table(sequence_rows({1: 2})).slice(0, 0), num_items=NUM_ITEMS)


def test_out_of_catalog_item_names_file_and_row(tmp_path: Path) -> None:
    ones = np.ones((2, 1), dtype=bool)
    responses = Responses(
        clicked=ones,
        watch_time=ones * 1.0,
        completion=ones * 0.5,
        session_end=np.zeros(2, bool),
        gap_days=np.zeros(2, np.int64),
        churned=np.zeros(2, bool),
    )
    with ParquetLogWriter(tmp_path, policy="p", rows_per_group=4) as writer:
        for step in range(3):
            items = np.array([[3], [60 if step == 2 else 4]])  # row 5 overall: part 1, row 1
            writer.write_step(
                user_id=np.array([0, 1]),
                episode=0,
                day=0,
                session=0,
                step=step,
                slates=items,
                responses=responses,
            )
    with pytest.raises(LogSchemaError, match=r"row 1, column 'item_id': 60 is outside") as error:
        load_sequences(tmp_path, num_items=NUM_ITEMS)
    assert str(tmp_path / "part-00001.parquet") in str(error.value)
    assert "[0, 50)" in str(error.value)
    rows = sequence_rows({1: 3})
    rows[2]["item_id"] = -1
    with pytest.raises(LogSchemaError, match=r"the table row 2, column 'item_id': -1"):
        load_sequences(log_table(rows), num_items=NUM_ITEMS)


def test_nan_label_is_named(tmp_path: Path) -> None:
    rows = sequence_rows({1: 4})
    rows[3]["watch_time"] = float("nan")
    with pytest.raises(LogSchemaError, match=r"the table row 3, column 'watch_time': NaN label"):
        load_sequences(log_table(rows), num_items=NUM_ITEMS)
    rows = sequence_rows({1: 4})
    rows[1]["completion"] = float("nan")
    write_log(tmp_path, log_table(rows))
    # The log reader catches it first and names the file.
    with pytest.raises(LogSchemaError, match=r"row 1, column 'completion'"):
        load_sequences(tmp_path, num_items=NUM_ITEMS)


def test_missing_value_and_other_bad_arguments() -> None:
    table = log_table(sequence_rows({1: 3}))
    day = table.schema.get_field_index("day")
    table_with_null = table.set_column(day, "day", pa.array([0, None, 0], pa.int32()))
    with pytest.raises(LogSchemaError, match=r"row 1, column 'day': missing value"):
        load_sequences(table_with_null, num_items=NUM_ITEMS)
    partial = table.append_column("true_click_probability", pa.array([0.5] * 3, pa.float32()))
    with pytest.raises(LogSchemaError, match="no column 'true_watch_time'"):
        load_sequences(partial, num_items=NUM_ITEMS)
    with pytest.raises(ValueError, match="num_gap_buckets must be at least 3"):
        load_sequences(table, num_items=NUM_ITEMS, num_gap_buckets=2)
    with pytest.raises(ValueError, match="min_length must be a positive integer"):
        load_sequences(table, num_items=NUM_ITEMS, min_length=0)
    with pytest.raises(TypeError, match="got list"):
        load_sequences([1, 2], num_items=NUM_ITEMS)
    with pytest.raises(FileNotFoundError):
        load_sequences("/nonexistent/log", num_items=NUM_ITEMS)


def test_pandas_input_and_privileged_table() -> None:
    pandas = pytest.importorskip("pandas")
    table = log_table(sequence_rows({1: 3, 2: 2}), privileged=True)
    frame = table.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    sequences, _ = load_sequences(frame, num_items=NUM_ITEMS)
    assert sequences.has_privileged
    np.testing.assert_array_equal(sequences.true_click_probability, np.full(5, 0.5, np.float32))


def test_select_gathers_whole_users() -> None:
    sequences, _ = load_sequences(log_table(sequence_rows({1: 3, 2: 5, 3: 4})), num_items=50)
    subset = sequences.select([2, 0])
    np.testing.assert_array_equal(subset.user_id, [3, 1])
    np.testing.assert_array_equal(subset.offsets, [0, 4, 7])
    np.testing.assert_array_equal(
        subset.item_id, np.r_[sequences.item_id[8:12], sequences.item_id[0:3]]
    )
    np.testing.assert_array_equal(subset.gap_bucket[[0, 4]], [2, 2])
    with pytest.raises(IndexError, match=r"indices in \[0, 3\)"):
        sequences.select([3])
    with pytest.raises(ValueError, match="item_id must have shape"):
        UserSequences(
            **{**vars(sequences), "item_id": sequences.item_id[:-1]}  # type: ignore[arg-type]
        )


# ----------------------------------------------------------------------------- split


def test_split_has_no_user_overlap_and_exact_sizes(collected: Path) -> None:
    rows = sequence_rows({user: 3 for user in range(100, 300)})
    sequences, _ = load_sequences(log_table(rows), num_items=NUM_ITEMS)
    train, validation, test = split_users(sequences, validation_fraction=0.1, test_fraction=0.2)
    sets = [set(part.user_id.tolist()) for part in (train, validation, test)]
    assert (len(sets[0]), len(sets[1]), len(sets[2])) == (140, 20, 40)
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sets[0] | sets[1] | sets[2] == set(range(100, 300))
    for part in (train, validation, test):
        assert np.all(np.diff(part.user_id) > 0)  # user-id order
        assert part.num_rows == 3 * part.num_users
    again = split_users(sequences, validation_fraction=0.1, test_fraction=0.2)
    assert [set(p.user_id.tolist()) for p in again] == sets
    other = split_users(sequences, validation_fraction=0.1, test_fraction=0.2, seed=1)
    assert set(other[2].user_id.tolist()) != sets[2]


def test_split_depends_on_user_ids_not_on_the_other_users() -> None:
    rows = sequence_rows({user: 2 for user in range(1000)})
    sequences, _ = load_sequences(log_table(rows), num_items=NUM_ITEMS)
    _, _, test = split_users(sequences, validation_fraction=0.0, test_fraction=0.1)
    half = sequences.select(np.arange(0, 1000, 2))
    _, _, half_test = split_users(half, validation_fraction=0.0, test_fraction=0.1)
    # The even users that are test users in the whole log are, bar the cut, test users in
    # the half log too.
    even_test = {u for u in test.user_id.tolist() if u % 2 == 0}
    assert len(even_test & set(half_test.user_id.tolist())) >= len(even_test) - 5


@pytest.mark.parametrize(
    ("validation", "test", "message"),
    [(-0.1, 0.1, "validation_fraction"), (0.1, 1.0, "test_fraction"), (0.5, 0.5, "below 1")],
)
def test_split_rejects_bad_fractions(validation: float, test: float, message: str) -> None:
    sequences, _ = load_sequences(log_table(sequence_rows({1: 2})), num_items=NUM_ITEMS)
    with pytest.raises(ValueError, match=message):
        split_users(sequences, validation_fraction=validation, test_fraction=test)


# -------------------------------------------------------------------- target batches


EXPECTED_TARGET_BATCH = {
    "history_item_ids": (("B", "L"), torch.int64),
    "history_feedback": (("B", "L", 3), torch.float32),
    "history_gaps": (("B", "L"), torch.int64),
    "target_item_ids": (("B",), torch.int64),
    "target_gaps": (("B",), torch.int64),
    "click_labels": (("B",), torch.float32),
    "watch_time_labels": (("B",), torch.float32),
    "watch_time_mask": (("B",), torch.bool),
    "continuation_labels": (("B",), torch.float32),
    "return_labels": (("B",), torch.float32),
    "return_mask": (("B",), torch.bool),
    "ranking_labels": (("B",), torch.int64),
    "user_index": (("B",), torch.int64),
}
PRIVILEGED_BATCH = {name: (("B",), torch.float32) for name in PRIVILEGED_COLUMNS}


def check_batch(
    batch: dict[str, torch.Tensor], expected: dict[str, Any], batch_size: int, length: int
) -> None:
    assert list(batch) == list(expected)
    for name, (shape, dtype) in expected.items():
        want = tuple({"B": batch_size, "L": length}.get(axis, axis) for axis in shape)
        assert tuple(batch[name].shape) == want, name
        assert batch[name].dtype == dtype, name


@pytest.mark.parametrize("privileged", [False, True])
def test_target_batches_have_exactly_the_keys_shapes_and_dtypes(
    collected: Path, privileged: bool
) -> None:
    if privileged:
        sequences, _ = load_sequences(collected, num_items=NUM_ITEMS)
        expected = {**EXPECTED_TARGET_BATCH, **PRIVILEGED_BATCH}
    else:
        sequences, _ = load_sequences(log_table(sequence_rows({1: 9, 2: 5})), num_items=50)
        expected = EXPECTED_TARGET_BATCH
    batches = TargetBatches(sequences, batch_size=4, max_history_length=6)
    assert set(TARGET_BATCH_KEYS) == set(EXPECTED_TARGET_BATCH)
    sizes = []
    for batch in batches:
        check_batch(batch, expected, batch["click_labels"].shape[0], 6)
        sizes.append(batch["click_labels"].shape[0])
    assert len(sizes) == len(batches) == -(-batches.num_targets // 4)
    assert sum(sizes) == batches.num_targets == sequences.num_rows - sequences.num_users
    assert all(size == 4 for size in sizes[:-1])


def test_histories_hold_exactly_the_previous_rows() -> None:
    """Every target sees the up-to-L rows before it, oldest first, left-padded; never
    itself or a later row. The hand-built log makes each row identifiable."""
    lengths = {1: 11, 2: 3, 3: 2}
    rows = sequence_rows(lengths)
    sequences, _ = load_sequences(shuffled(log_table(rows)), num_items=NUM_ITEMS)
    length = 4
    batches = TargetBatches(sequences, batch_size=3, max_history_length=length, seed=5)
    seen = 0
    for batch in batches:
        for i in range(batch["user_index"].shape[0]):
            user = int(batch["user_index"][i])
            user_id = int(sequences.user_id[user])
            # Recover t from the target's item id: item = (7·user + 3·t) % 50.
            t = next(
                t
                for t in range(lengths[user_id])
                if (7 * user_id + 3 * t) % NUM_ITEMS + 2 == int(batch["target_item_ids"][i])
            )
            assert t >= 1
            previous = list(range(max(0, t - length), t))
            expected_items = [(7 * user_id + 3 * s) % NUM_ITEMS + 2 for s in previous]
            pad = length - len(previous)
            history = batch["history_item_ids"][i].tolist()
            assert history == [PAD_ID] * pad + expected_items
            feedback = batch["history_feedback"][i]
            assert torch.all(feedback[:pad] == 0)
            # log1p(watch_time) encodes s on clicked (even) steps: none is ≥ t.
            watched = torch.expm1(feedback[pad:, 1]).round().tolist()
            assert watched == [float(s) if s % 2 == 0 else 0.0 for s in previous]
            gaps = batch["history_gaps"][i].tolist()
            assert gaps[:pad] == [0] * pad and all(g >= 1 for g in gaps[pad:])
            # Labels are the target row's.
            assert bool(batch["click_labels"][i]) == (t % 2 == 0)
            assert float(batch["watch_time_labels"][i]) == pytest.approx(
                np.log1p(t if t % 2 == 0 else 0.0)
            )
            clicked = t % 2 == 0
            assert bool(batch["watch_time_mask"][i]) == clicked
            target_id = int(batch["target_item_ids"][i])
            # Labels are catalog ids (the model's item logits are in catalog order).
            expected = target_id - 2 if clicked else IGNORE_INDEX
            assert int(batch["ranking_labels"][i]) == expected
            end = t % 3 == 2 or t == lengths[user_id] - 1
            assert bool(batch["return_mask"][i]) == end
            assert float(batch["continuation_labels"][i]) == 1.0 - float(end)  # 1 = stays
            seen += 1
    assert seen == sum(lengths.values()) - len(lengths)


def test_slate_histories_leave_out_the_targets_own_step() -> None:
    rows = sequence_rows({1: 3}, slate_size=2)  # 6 rows: steps 0, 1, 2 × positions 0, 1
    sequences, _ = load_sequences(log_table(rows), num_items=NUM_ITEMS)
    batches = TargetBatches(sequences, batch_size=8, max_history_length=8, shuffle=False)
    # Rows of step 0 have no earlier step: the targets are the 4 rows of steps 1 and 2.
    np.testing.assert_array_equal(batches.targets, [2, 3, 4, 5])
    batch = next(iter(batches))
    model_items = sequences.item_id + 2
    for i, row in enumerate([2, 3, 4, 5]):
        step_start = 2 * (row // 2)
        expected = [PAD_ID] * (8 - step_start) + model_items[:step_start].tolist()
        assert batch["history_item_ids"][i].tolist() == expected


def test_target_batches_are_seeded_and_epochs_differ(collected: Path) -> None:
    sequences, _ = load_sequences(collected, num_items=NUM_ITEMS)

    def order(batches: TargetBatches) -> list[int]:
        return torch.cat(
            [b["target_item_ids"] * 100_000 + b["user_index"] for b in batches]
        ).tolist()

    first = TargetBatches(sequences, batch_size=16, max_history_length=5, seed=3)
    second = TargetBatches(sequences, batch_size=16, max_history_length=5, seed=3)
    epoch_0 = order(first)
    assert epoch_0 == order(second)
    epoch_1 = order(first)
    assert epoch_1 != epoch_0 and sorted(epoch_1) == sorted(epoch_0)
    second.set_epoch(1)
    assert order(second) == epoch_1
    unshuffled = TargetBatches(sequences, batch_size=16, max_history_length=5, shuffle=False)
    users = torch.cat([b["user_index"] for b in unshuffled])
    assert torch.all(users[1:] >= users[:-1])


def test_target_subsample_and_drop_last(collected: Path) -> None:
    sequences, _ = load_sequences(collected, num_items=NUM_ITEMS)
    full = TargetBatches(sequences, batch_size=7)
    half = TargetBatches(sequences, batch_size=7, target_fraction=0.5, seed=1)
    assert half.num_targets == round(0.5 * full.num_targets)
    assert set(half.targets.tolist()) <= set(full.targets.tolist())
    np.testing.assert_array_equal(
        half.targets, TargetBatches(sequences, target_fraction=0.5, seed=1).targets
    )
    dropped = TargetBatches(sequences, batch_size=7, drop_last=True)
    assert len(dropped) == full.num_targets // 7
    assert all(b["click_labels"].shape[0] == 7 for b in dropped)
    with pytest.raises(ValueError, match=r"target_fraction must lie in \(0, 1\]"):
        TargetBatches(sequences, target_fraction=0.0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TargetBatches(sequences, batch_size=0)


def test_privileged_batch_values_match_the_rows(collected: Path) -> None:
    sequences, _ = load_sequences(collected, num_items=NUM_ITEMS)
    batches = TargetBatches(sequences, batch_size=32, shuffle=False)
    batch = next(iter(batches))
    rows = batches.targets[:32]
    for name in PRIVILEGED_COLUMNS:
        np.testing.assert_array_equal(batch[name].numpy(), getattr(sequences, name)[rows])
    # The return probability is known exactly where the return label counts.
    known = torch.isfinite(batch["true_return_probability"])
    assert torch.equal(known, batch["return_mask"])


def test_target_batches_feed_20k_targets_per_second() -> None:
    rng = np.random.default_rng(0)
    num_users, length = 1000, 200
    offsets = np.arange(num_users + 1, dtype=np.int64) * length
    n = num_users * length
    sequences = UserSequences(
        offsets=offsets,
        user_id=np.arange(num_users, dtype=np.int64),
        item_id=rng.integers(0, 1000, n),
        clicked=rng.random(n) < 0.5,
        watch_time=rng.random(n).astype(np.float32),
        completion=rng.random(n).astype(np.float32),
        session_end=rng.random(n) < 0.1,
        returned_next_day=rng.random(n) < 0.05,
        gap_bucket=rng.integers(1, 10, n),
        day=np.zeros(n, np.int64),
        session=np.zeros(n, np.int64),
        step=np.tile(np.arange(length, dtype=np.int64), num_users),
        true_click_probability=rng.random(n).astype(np.float32),
        true_watch_time=rng.random(n).astype(np.float32),
        true_return_probability=np.full(n, np.nan, np.float32),
        num_items=1000,
        num_gap_buckets=10,
        has_privileged=True,
    )
    batches = TargetBatches(sequences, batch_size=256, max_history_length=50)
    started = time.perf_counter()
    count = sum(batch["click_labels"].shape[0] for batch in batches)
    rate = count / (time.perf_counter() - started)
    assert count == n - num_users
    assert rate >= 20_000, f"{rate:.0f} targets/s"


# ---------------------------------------------------------------- masked-item batches


def test_masked_item_batches(collected: Path) -> None:
    sequences, _ = load_sequences(collected, num_items=NUM_ITEMS)
    length = 8
    batches = MaskedItemBatches(sequences, batch_size=5, max_history_length=length, seed=2)
    expected_windows = int(np.sum(-(-sequences.lengths // length)))
    assert batches.num_windows == expected_windows
    assert len(batches) == -(-expected_windows // 5)
    model_items = sequences.item_id + 2
    masked_total = real_total = windows = 0
    for batch in batches:
        assert list(batch) == list(MASKED_ITEM_BATCH_KEYS)
        b = batch["history_item_ids"].shape[0]
        check_batch(
            batch,
            {
                "history_item_ids": (("B", "L"), torch.int64),
                "history_feedback": (("B", "L", 3), torch.float32),
                "history_gaps": (("B", "L"), torch.int64),
                "masked_item_labels": (("B", "L"), torch.int64),
            },
            b,
            length,
        )
        ids, labels = batch["history_item_ids"], batch["masked_item_labels"]
        masked = labels != IGNORE_INDEX
        real = batch["history_gaps"] > 0
        assert torch.all(masked.sum(dim=1) >= 1)  # at least one mask per window
        assert torch.all(ids[masked] == MASK_ID) and torch.all(~masked | real)
        assert torch.all(batch["history_feedback"][masked | ~real] == 0)
        # Real positions are right-aligned.
        first_real = real.int().argmax(dim=1)
        assert torch.all(real.sum(dim=1) == length - first_real)
        # Restoring the labels gives consecutive rows of one user's sequence.
        restored = torch.where(masked, labels + 2, ids).numpy()  # labels are catalog ids
        for i in range(b):
            window = restored[i][real[i].numpy()]
            starts = [
                s
                for s in range(sequences.num_rows - window.size + 1)
                if np.array_equal(model_items[s : s + window.size], window)
            ]
            assert starts, "the window is not a run of consecutive rows"
            user = np.searchsorted(sequences.offsets, starts[0], side="right") - 1
            assert any(
                s + window.size <= sequences.offsets[user + 1]
                for s in starts
                if np.searchsorted(sequences.offsets, s, side="right") - 1 == user
            )
        masked_total += int(masked.sum())
        real_total += int(real.sum())
        windows += b
    assert windows == expected_windows
    # 20% of the real items, plus the windows where the draw masked none.
    assert 0.15 < masked_total / real_total < 0.3


def test_masked_item_batches_are_seeded(collected: Path) -> None:
    sequences, _ = load_sequences(collected, num_items=NUM_ITEMS)

    def epoch(batches: MaskedItemBatches) -> list[list[int]]:
        return [b["history_item_ids"].tolist() for b in batches]

    first = MaskedItemBatches(sequences, batch_size=4, max_history_length=6, seed=9)
    second = MaskedItemBatches(sequences, batch_size=4, max_history_length=6, seed=9)
    assert epoch(first) == epoch(second)
    assert epoch(first) != epoch(
        MaskedItemBatches(sequences, batch_size=4, max_history_length=6, seed=9)
    )
    with pytest.raises(ValueError, match=r"mask_probability must lie in \(0, 1\)"):
        MaskedItemBatches(sequences, mask_probability=1.0)


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    length=st.integers(1, 7),
    seed=st.integers(0, 1000),
)
def test_every_window_masks_only_real_items(lengths: list[int], length: int, seed: int) -> None:
    rows = sequence_rows(dict(enumerate(lengths)))
    sequences, _ = load_sequences(log_table(rows), num_items=NUM_ITEMS, min_length=1)
    for batch in MaskedItemBatches(sequences, batch_size=3, max_history_length=length, seed=seed):
        labels, ids = batch["masked_item_labels"], batch["history_item_ids"]
        masked = labels != IGNORE_INDEX
        assert torch.all(masked.sum(dim=1) >= 1)
        assert torch.all(labels[masked] >= 0) and torch.all(ids[~masked] != MASK_ID)
        assert torch.all((ids == PAD_ID) == (batch["history_gaps"] == 0))


# -------------------------------------------------------------------------- popularity


def test_item_popularity_counts_clicks(collected: Path) -> None:
    sequences, _ = load_sequences(collected, num_items=NUM_ITEMS)
    counts = item_popularity(sequences, NUM_ITEMS)
    expected = np.zeros(NUM_ITEMS, np.int64)
    for item, clicked in zip(sequences.item_id, sequences.clicked, strict=True):
        expected[item] += clicked
    np.testing.assert_array_equal(counts, expected)
    assert counts.dtype == np.int64 and counts.sum() == sequences.clicked.sum()
    with pytest.raises(ValueError, match="num_items=3 is smaller"):
        item_popularity(sequences, 3)


# ------------------------------------------------------------------ long-term profile


def test_target_profiles_sum_every_earlier_step_of_the_user() -> None:
    """`history_profile` covers the whole past, also beyond the L-row window, and agrees
    with the model's own definition (`PredictorModel.history_profile`)."""
    from loe_gym.predictor import PredictorConfig, PredictorModel

    lengths = {1: 11, 2: 3, 3: 2}
    rows = sequence_rows(lengths, slate_size=2)
    sequences, _ = load_sequences(shuffled(log_table(rows)), num_items=NUM_ITEMS)
    features = np.random.default_rng(0).random((NUM_ITEMS, 3)).astype(np.float32)
    decays = (1.0, 0.7)
    options = {"batch_size": 64, "item_features": features, "profile_decays": decays}
    window = TargetBatches(sequences, max_history_length=4, shuffle=False, **options)
    whole = TargetBatches(sequences, max_history_length=64, shuffle=False, **options)
    model = PredictorModel(
        PredictorConfig.tiny(
            num_items=NUM_ITEMS, num_item_features=3, max_history_length=64, profile_decays=decays
        )
    )
    model.set_item_features(features)
    short, full = next(iter(window)), next(iter(whole))
    assert short["history_profile"].shape == (whole.num_targets, 2, 4, 4)
    assert short["history_profile"].dtype == torch.float32
    expected = model.history_profile(full["history_item_ids"], full["history_feedback"])
    torch.testing.assert_close(short["history_profile"], expected)
    # The last row of the profile counts rows: as many as the earlier steps' rows.
    counts = short["history_profile"][:, 0, -1, 0]
    torch.testing.assert_close(counts, (full["history_item_ids"] >= 2).sum(1).float())
    assert counts.max() > 4  # some targets have more past than the window shows
    assert "history_profile" not in next(iter(TargetBatches(sequences, batch_size=8)))
    with pytest.raises(ValueError, match=r"item_features must have shape \(num_items, F\)"):
        TargetBatches(sequences, item_features=features[:10], profile_decays=decays)
    with pytest.raises(ValueError, match="item_features needs profile_decays too"):
        TargetBatches(sequences, item_features=features)


def test_session_return_labels_give_every_row_its_sessions_outcome() -> None:
    lengths = {1: 11, 2: 3}
    sequences, _ = load_sequences(
        shuffled(log_table(sequence_rows(lengths, slate_size=2))), num_items=NUM_ITEMS
    )
    sparse = next(iter(TargetBatches(sequences, batch_size=64, shuffle=False)))
    dense_batches = TargetBatches(
        sequences, batch_size=64, shuffle=False, session_return_labels=True
    )
    dense = next(iter(dense_batches))
    # Sparse: labels on session ends only; dense: on every row of a session that ended.
    assert dense["return_mask"].all() and not sparse["return_mask"].all()
    ends = sparse["return_mask"]
    torch.testing.assert_close(dense["return_labels"][ends], sparse["return_labels"][ends])
    for i, row in enumerate(dense_batches.targets):
        user = int(sequences.row_user_index()[row])
        same_session = np.flatnonzero(
            (sequences.row_user_index() == user)
            & (sequences.day == sequences.day[row])
            & (sequences.session == sequences.session[row])
        )
        outcome = float(sequences.returned_next_day[same_session[-1]])
        assert float(dense["return_labels"][i]) == outcome
    # The other labels do not change.
    for key in ("click_labels", "continuation_labels", "history_item_ids"):
        torch.testing.assert_close(dense[key], sparse[key])
