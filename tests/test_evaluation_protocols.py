"""Evaluation protocols of the predictor: DeLong intervals on AUCs, the leave-last-out
split, and the ranking protocols (all items, seen items excluded, sampled negatives)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loe_gym.predictor.batches import TargetBatches
from loe_gym.predictor.metrics import auc, auc_interval, hit_rate_at_k, ndcg_at_k
from loe_gym.predictor.protocols import (
    PROTOCOLS,
    SeenItems,
    protocol_ranks,
    rank_with_protocols,
    sample_negatives,
)
from loe_gym.predictor.ranking_baselines import PopularityRanker, ranking_scores
from loe_gym.predictor.sequences import UserSequences
from loe_gym.predictor.splits import MIN_LEAVE_LAST_OUT_CLICKS, leave_last_out_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ------------------------------------------------------------------------- helpers


def random_sequences(
    seed: int, num_users: int = 30, num_items: int = 40, slate_size: int = 2
) -> UserSequences:
    """Users of 0 to 24 steps of ``slate_size`` rows each, at most one click per step
    (a click on one item of a slate excludes the others), a few steps per session."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 25, num_users)
    steps = int(lengths.sum())
    step_in_user = np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)
    step = np.repeat(step_in_user % 3, slate_size)
    session = np.repeat(step_in_user // 3, slate_size)
    clicked_position = rng.integers(-1, slate_size, steps)  # −1: no click in the step
    clicked = np.arange(slate_size)[None, :] == clicked_position[:, None]
    n = steps * slate_size
    offsets = np.concatenate([[0], np.cumsum(lengths * slate_size)]).astype(np.int64)
    return UserSequences(
        offsets=offsets,
        user_id=np.arange(num_users, dtype=np.int64),
        item_id=rng.integers(0, num_items, n),
        clicked=clicked.reshape(-1),
        watch_time=np.zeros(n, np.float32),
        completion=np.zeros(n, np.float32),
        session_end=np.repeat(step_in_user % 3 == 2, slate_size),
        returned_next_day=np.zeros(n, bool),
        gap_bucket=np.ones(n, np.int64),
        day=session.copy(),
        session=session,
        step=step,
        true_click_probability=np.full(n, np.nan, np.float32),
        true_watch_time=np.full(n, np.nan, np.float32),
        true_return_probability=np.full(n, np.nan, np.float32),
        num_items=num_items,
        num_gap_buckets=10,
        has_privileged=False,
    )


def brute_delong_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """DeLong's standard error from the full (positive × negative) comparison matrix."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    psi = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return math.sqrt(v10.var(ddof=1) / positive.size + v01.var(ddof=1) / negative.size)


def synthetic_scores(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~20 % positives and scores that separate them (AUC ≈ 0.76), rounded
    so that ties occur."""
    labels = (rng.random(size) < 0.2).astype(np.int64)
    scores = np.round(rng.normal(size=size) + labels, 1)
    return labels, scores


# -------------------------------------------------------------- DeLong intervals


def test_delong_interval_known_value() -> None:
    # Positives 0.35, 0.8; negatives 0.1, 0.4. V10 = (½, 1) (0.35 beats 0.1 only),
    # V01 = (1, ½) (both positives beat 0.1, one beats 0.4): AUC = 0.75 and
    # Var = var(V10)/2 + var(V01)/2 = 0.125/2 + 0.125/2 = 0.125, SE = 0.3536;
    # 0.75 ± 1.96·0.3536 = [0.057, 1.443], clipped to [0.057, 1].
    interval = auc_interval(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert interval.auc == 0.75
    assert interval.standard_error == pytest.approx(math.sqrt(0.125))
    assert interval.low == pytest.approx(0.75 - 1.959964 * math.sqrt(0.125), abs=1e-6)
    assert interval.high == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_delong_matches_the_comparison_matrix_and_a_bootstrap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, scores = synthetic_scores(rng, 400)
    interval = auc_interval(labels, scores)
    assert interval.auc == auc(labels, scores)
    assert interval.standard_error == pytest.approx(brute_delong_error(labels, scores), rel=1e-9)
    # A stratified bootstrap (positives and negatives resampled apart) agrees within its
    # own noise: 500 replicates estimate a standard error to about ±6 %.
    positive, negative = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    replicates = []
    for _ in range(500):
        rows = np.concatenate(
            [rng.choice(positive, positive.size), rng.choice(negative, negative.size)]
        )
        replicates.append(auc(labels[rows], scores[rows]))
    assert interval.standard_error == pytest.approx(np.std(replicates, ddof=1), rel=0.2)


def test_delong_interval_shrinks_with_more_data() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for size in (200, 2000, 20000):
        interval = auc_interval(*synthetic_scores(rng, size))
        widths.append(interval.high - interval.low)
    # The width goes as 1/√n: ten times the rows, about a third of the width (√10 ≈ 3.2,
    # give or take the sampling noise of the smaller sets).
    assert widths[0] > 2 * widths[1] > 4 * widths[2]


def test_delong_interval_is_nan_where_undefined() -> None:
    assert all(math.isnan(v) for v in auc_interval(np.array([1, 1]), np.array([0.1, 0.2])))
    one_positive = auc_interval(np.array([0, 0, 1]), np.array([0.1, 0.4, 0.3]))
    assert one_positive.auc == 0.5 and math.isnan(one_positive.low)
    with pytest.raises(ValueError, match="level"):
        auc_interval(np.array([0, 1]), np.array([0.1, 0.2]), level=1.5)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0])),
        min_size=4,
        max_size=60,
    ),
    level=st.floats(0.5, 0.99),
)
def test_auc_interval_contains_the_auc_inside_the_unit_interval(
    rows: list[tuple[int, float]], level: float
) -> None:
    labels = np.array([y for y, _ in rows])
    scores = np.array([s for _, s in rows])
    interval = auc_interval(labels, scores, level=level)
    positives = int(labels.sum())
    if min(positives, labels.size - positives) < 2:
        assert math.isnan(interval.low) and math.isnan(interval.high)
        return
    assert 0.0 <= interval.low <= interval.auc <= interval.high <= 1.0
    assert interval.auc == auc(labels, scores)


# ------------------------------------------------------------- leave-last-out


@pytest.mark.parametrize("seed", range(3))
def test_leave_last_out_targets_are_each_users_last_clicked_rows(seed: int) -> None:
    sequences = random_sequences(seed)
    split = leave_last_out_split(sequences)
    keys = np.stack([sequences.day, sequences.session, sequences.step, sequences.item_id], 1)
    test_keys = np.stack(
        [split.test.day, split.test.session, split.test.step, split.test.item_id], 1
    )
    with_targets = 0
    for user in range(sequences.num_users):
        rows = np.arange(sequences.offsets[user], sequences.offsets[user + 1])
        clicks = rows[sequences.clicked[rows]]
        test_rows = np.arange(split.test.offsets[user], split.test.offsets[user + 1])
        train_rows = np.arange(split.train.offsets[user], split.train.offsets[user + 1])
        if clicks.size < MIN_LEAVE_LAST_OUT_CLICKS:
            assert test_rows.size == 0 and train_rows.size == rows.size  # training only
            continue
        with_targets += 1
        last, before = clicks[-1], clicks[-2]
        # The test part holds the user's rows up to the last click; its one target is it.
        assert test_rows.size == last - rows[0] + 1
        np.testing.assert_array_equal(test_keys[test_rows], keys[rows[0] : last + 1])
        assert np.flatnonzero(split.test_rows[test_rows]).tolist() == [test_rows.size - 1]
        validation_rows = np.arange(
            split.validation.offsets[user], split.validation.offsets[user + 1]
        )
        assert validation_rows.size == before - rows[0] + 1
        assert np.flatnonzero(split.validation_rows[validation_rows]).tolist() == [
            validation_rows.size - 1
        ]
        # Training stops before the validation target's step (its slate included).
        same_step = (keys[rows, :3] == keys[before, :3]).all(axis=1)
        assert train_rows.size == np.flatnonzero(same_step)[0]
    assert split.users_with_targets == with_targets
    assert split.users_without_targets == sequences.num_users - with_targets
    # Each target has a history: TargetBatches meets every one of them.
    batches = TargetBatches(split.test, max_history_length=5, target_rows=split.test_rows)
    assert batches.num_targets == with_targets
    assert split.test.clicked[batches.targets].all()


def test_leave_last_out_refuses_a_log_without_enough_clicks() -> None:
    sequences = random_sequences(0)
    sequences = dataclasses.replace(sequences, clicked=np.zeros(sequences.num_rows, bool))
    with pytest.raises(ValueError, match="at least 3 clicked rows"):
        leave_last_out_split(sequences)


# ----------------------------------------------------------- ranking protocols


def brute_seen(sequences: UserSequences, row: int, history_end: int) -> set[int]:
    user = int(np.searchsorted(sequences.offsets, row, side="right") - 1)
    past = range(int(sequences.offsets[user]), history_end)
    return {int(sequences.item_id[r]) for r in past if sequences.clicked[r]}


def test_seen_items_are_the_items_clicked_before_the_targets_step() -> None:
    sequences = random_sequences(1)
    batches = TargetBatches(sequences, max_history_length=3)
    rows = batches.targets
    mask = SeenItems(sequences).mask(rows, batches.history_end(rows))
    for index, row in enumerate(rows):
        expected = brute_seen(sequences, int(row), int(batches.history_end(rows)[index]))
        assert set(np.flatnonzero(mask[index]).tolist()) == expected


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 12),
    num_items=st.integers(2, 150),
    seen_share=st.floats(0.0, 1.0),
)
def test_protocol_ranks_never_count_seen_items_and_sampling_only_raises_ranks(
    seed: int, rows: int, num_items: int, seen_share: float
) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, (rows, num_items)).astype(float)  # many ties
    targets = rng.integers(0, num_items, rows)
    seen = rng.random((rows, num_items)) < seen_share
    # Seen items score highest: any of them ranked would push the target down.
    scores[seen] += 10.0
    negatives, valid = sample_negatives(seen, targets, 100, rng)
    ranks = protocol_ranks(scores, targets, seen, negatives, valid)
    full, unseen, sampled = (ranks[suffix] for suffix in PROTOCOLS)
    for row in range(rows):
        target = targets[row]
        kept = [j for j in range(num_items) if j == target or not seen[row, j]]
        brute = sum(1 for j in kept if scores[row, j] >= scores[row, target])
        assert unseen[row] == brute  # no seen item counted, the target always ranked
        drawn = negatives[row][valid[row]]
        assert len(set(drawn.tolist())) == drawn.size  # without replacement
        assert not seen[row, drawn].any() and target not in drawn
        assert drawn.size == min(100, len(kept) - 1)
    assert np.all(sampled <= unseen) and np.all(unseen <= full)
    for metric in (ndcg_at_k, hit_rate_at_k):
        assert metric(sampled, k=10) >= metric(unseen, k=10) >= metric(full, k=10)


def test_sampled_negatives_are_uniform_over_the_unseen_items() -> None:
    rng = np.random.default_rng(0)
    seen = np.zeros((2000, 30), bool)
    seen[:, :10] = True  # items 0–9 seen; item 10 is the target
    negatives, valid = sample_negatives(seen, np.full(2000, 10), 5, rng)
    assert valid.all()
    counts = np.bincount(negatives.reshape(-1), minlength=30)
    assert counts[:11].sum() == 0
    # 2000·5 draws over 19 items: 526 each, binomial sd ≈ 21.
    assert np.all(np.abs(counts[11:] - 10000 / 19) < 100)


def test_rank_with_protocols_keeps_the_full_catalog_numbers_and_is_seeded() -> None:
    sequences = random_sequences(2, num_items=300)
    batches = TargetBatches(sequences, batch_size=16, max_history_length=4, shuffle=False)
    popularity = PopularityRanker(np.bincount(sequences.item_id[sequences.clicked], minlength=300))
    scorers = {"popularity": popularity, "same": popularity}
    first = rank_with_protocols(scorers, batches, seed=3)
    scores, targets = ranking_scores(popularity, batches)
    assert first.models["popularity"]["ndcg_at_10"] == ndcg_at_k(scores, targets, k=10)
    assert first.models["popularity"]["hit_rate_at_10"] == hit_rate_at_k(scores, targets, k=10)
    # Every scorer meets the same negatives, and a run with the same seed repeats them.
    assert first.models["popularity"] == first.models["same"]
    assert rank_with_protocols({"popularity": popularity}, batches, seed=3).models == {
        "popularity": first.models["popularity"]
    }
    assert first.description["targets"] == targets.size
    assert first.description["repeat_targets"] > 0  # 300 items: some users click one twice


# ------------------------------------------------------------------ fit_predictor


@pytest.fixture(scope="module")
def engagement_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agents.collect import collect_logs

    path = tmp_path_factory.mktemp("protocols") / "log"
    collect_logs(num_users=24, path=path, progress=False, overwrite=True)
    return path


@pytest.mark.parametrize("split", ["users", "temporal", "leave_last_out"])
def test_fit_predictor_reports_every_protocol(
    engagement_log: Path, tmp_path: Path, split: str
) -> None:
    from loe_gym.predictor.configs import FitPredictorConfig, ModelConfig, TrainingConfig
    from loe_gym.predictor.pipeline import fit_predictor

    config = FitPredictorConfig(
        model=ModelConfig(hidden_size=16, num_hidden_layers=1, max_history_length=8),
        training=TrainingConfig(max_epochs=1, steps_per_epoch=2, batch_size=64),
        split=split,
        test_fraction=0.25,
        gru_epochs=1,
    )
    result = fit_predictor(engagement_log, tmp_path / "run", config, progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["split"]["kind"] == split
    for suffix in PROTOCOLS:
        for model in ("transformer", "popularity", "gru"):
            assert 0.0 <= metrics["ranking"][model][f"ndcg_at_10{suffix}"] <= 1.0
        assert f"ranking_hit_rate_at_10{suffix}" in metrics["test"]
    transformer = metrics["ranking"]["transformer"]
    assert transformer["ndcg_at_10"] == pytest.approx(metrics["test"]["ranking_ndcg_at_10"])
    assert transformer["ndcg_at_10_sampled_100"] >= transformer["ndcg_at_10_unseen"]
    assert transformer["ndcg_at_10_unseen"] >= transformer["ndcg_at_10"]
    for name in ("continuation_auc", "return_auc"):
        low, high = (metrics["test"][f"{name}_ci_{end}"] for end in ("low", "high"))
        assert 0.0 <= low <= metrics["test"][name] <= high <= 1.0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "full catalog, seen items excluded" in report
    assert "1 + 100 sampled negatives" in report and "Krichene & Rendle" in report
    if split == "leave_last_out":
        assert math.isnan(result.test["click_auc"])  # every test target is a click
        assert "click AUC and GAUC are undefined" in report
        assert metrics["ranking_protocols"]["targets"] == metrics["split"]["users_with_targets"]
    else:
        assert metrics["test"]["click_auc_ci_low"] < metrics["test"]["click_auc"]
        assert "click AUC [95 % CI]" in report and "[" in report
    if split == "temporal":
        assert "click_auc_ci_low" in metrics["test_by_item_age"]["warm"]
