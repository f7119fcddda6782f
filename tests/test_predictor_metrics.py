"""Tests of the predictor's metrics (`loe_gym.predictor.metrics`) against brute-force
references written as plain loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from loe_gym.predictor.metrics import (
    auc,
    bayes_reference,
    expected_calibration_error,
    gauc,
    hit_rate_at_k,
    log_loss,
    ndcg_at_k,
    rmse,
    target_ranks,
)

# ------------------------------------------------------------------- references


def brute_auc(labels: list[int], scores: list[float]) -> float:
    """Share of (positive, negative) pairs ordered right; a tie counts ½."""
    wins, pairs = 0.0, 0
    for y_i, s_i in zip(labels, scores, strict=True):
        for y_j, s_j in zip(labels, scores, strict=True):
            if y_i == 1 and y_j == 0:
                pairs += 1
                wins += 1.0 if s_i > s_j else 0.5 if s_i == s_j else 0.0
    return wins / pairs if pairs else math.nan


def brute_ece(labels: list[int], probabilities: list[float], bins: int) -> float:
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [
            i
            for i, p in enumerate(probabilities)
            if low <= p < high or (b == bins - 1 and p == 1.0)
        ]
        if members:
            accuracy = sum(labels[i] for i in members) / len(members)
            confidence = sum(probabilities[i] for i in members) / len(members)
            total += len(members) / len(labels) * abs(accuracy - confidence)
    return total


def brute_rank(scores: list[float], target: int) -> int:
    """1 + the number of other items scoring at least as high as the target."""
    return 1 + sum(1 for j, s in enumerate(scores) if j != target and s >= scores[target])


# Scores from a small set, so that ties are frequent.
tied_scores = st.sampled_from([-1.0, 0.0, 0.25, 0.5, 2.0])
labelled = st.lists(st.tuples(st.integers(0, 1), tied_scores), min_size=2, max_size=40)


# -------------------------------------------------------------------------- AUC


@settings(max_examples=200, deadline=None)
@given(rows=labelled)
def test_auc_matches_pair_counting(rows: list[tuple[int, float]]) -> None:
    labels, scores = [r[0] for r in rows], [r[1] for r in rows]
    assume(0 < sum(labels) < len(labels))
    assert auc(np.array(labels), np.array(scores)) == pytest.approx(brute_auc(labels, scores))


def test_auc_known_values_and_invariance() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc(labels, np.array([1, 2, 3, 4])) == 1.0
    assert auc(labels, np.array([4, 3, 2, 1])) == 0.0
    assert auc(labels, np.zeros(4)) == 0.5  # all tied
    scores = np.random.default_rng(0).normal(size=4)
    # Only the order counts: logits and probabilities give one AUC.
    assert auc(labels, scores) == auc(labels, 1 / (1 + np.exp(-scores)))
    assert auc(labels.astype(bool), scores) == auc(labels.astype(np.float32), scores)


def test_auc_is_nan_when_undefined() -> None:
    assert math.isnan(auc(np.ones(5), np.arange(5.0)))
    assert math.isnan(auc(np.zeros(0), np.zeros(0)))


@pytest.mark.parametrize(
    ("labels", "scores", "error", "message"),
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], ValueError, "labels must be 0 or 1; row 1 has 2"),
        ([0, 1, 1], [0.1, np.nan, 0.3], ValueError, "scores must be finite; row 1 has nan"),
        ([0, 1], [0.1, 0.2, 0.3], ValueError, "scores must have 2 values"),
        ([[0, 1]], [[0.1, 0.2]], ValueError, r"labels must be 1-d, got shape \(1, 2\)"),
        (["a", "b"], [0.1, 0.2], TypeError, "labels must be bool or 0/1 numbers"),
    ],
)
def test_auc_rejects_malformed_inputs(
    labels: list[object], scores: list[float], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        auc(np.array(labels), np.array(scores))


# ------------------------------------------------------------------------- GAUC


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 1), tied_scores, st.integers(0, 4)), min_size=1, max_size=60
    )
)
def test_gauc_matches_weighted_per_group_pair_counting(
    rows: list[tuple[int, float, int]],
) -> None:
    labels = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows])
    groups = np.array([r[2] for r in rows])
    numerator = denominator = 0.0
    for group in set(groups.tolist()):
        member = groups == group
        value = brute_auc(labels[member].tolist(), scores[member].tolist())
        if not math.isnan(value):
            numerator += member.sum() * value
            denominator += member.sum()
    result = gauc(labels, scores, groups)
    if denominator == 0:
        assert math.isnan(result)
    else:
        assert result == pytest.approx(numerator / denominator)


def test_gauc_weights_and_skips_one_class_groups() -> None:
    # Group 7: 4 rows, AUC 1; group 3: 2 rows, AUC 0; group 5: one class, left out.
    labels = np.array([1, 0, 1, 0, 0, 1, 1, 1])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.9, 0.1, 0.5, 0.6])
    groups = np.array([7, 7, 7, 7, 3, 3, 5, 5])
    assert gauc(labels, scores, groups) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)
    # A single group is plain AUC.
    assert gauc(labels, scores, np.zeros(8, np.int64)) == pytest.approx(auc(labels, scores))
    assert math.isnan(gauc(labels[6:], scores[6:], groups[6:]))
    with pytest.raises(TypeError, match="groups must be integers"):
        gauc(labels, scores, groups.astype(float))


def test_inputs_are_not_mutated() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 50)
    scores = rng.random(50)
    groups = rng.integers(0, 5, 50)
    copies = labels.copy(), scores.copy(), groups.copy()
    gauc(labels, scores, groups)
    auc(labels, scores)
    expected_calibration_error(labels, scores)
    for array, copy in zip((labels, scores, groups), copies, strict=True):
        np.testing.assert_array_equal(array, copy)


# -------------------------------------------------------------- RMSE, log loss, ECE


def test_rmse_and_log_loss_known_values() -> None:
    # Errors 3 and 4: sqrt((9 + 16) / 2).
    assert rmse(np.array([0.0, 0.0]), np.array([3.0, -4.0])) == pytest.approx(math.sqrt(12.5))
    assert rmse(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert math.isnan(rmse(np.zeros(0), np.zeros(0)))
    with pytest.raises(ValueError, match="predictions must have 2 values"):
        rmse(np.zeros(2), np.zeros(3))
    # −(ln 0.8 + ln 0.5) / 2.
    value = log_loss(np.array([1, 0]), np.array([0.8, 0.5]))
    assert value == pytest.approx(-(math.log(0.8) + math.log(0.5)) / 2)
    assert log_loss(np.array([1]), np.array([1.0])) == pytest.approx(-math.log(1 - 1e-7))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 1), st.floats(0.0, 1.0, allow_nan=False)),
        min_size=1,
        max_size=50,
    ),
    bins=st.integers(1, 20),
)
def test_ece_matches_the_bin_loop(rows: list[tuple[int, float]], bins: int) -> None:
    labels, probabilities = [r[0] for r in rows], [r[1] for r in rows]
    value = expected_calibration_error(np.array(labels), np.array(probabilities), bins=bins)
    assert value == pytest.approx(brute_ece(labels, probabilities, bins), abs=1e-12)
    assert 0.0 <= value <= 1.0


def test_ece_known_values() -> None:
    # Two bins: {0.2, 0.2} with labels {0, 1} → |0.5 − 0.2|; {0.9} with label 1 → 0.1.
    labels = np.array([0, 1, 1])
    probabilities = np.array([0.2, 0.2, 0.9])
    assert expected_calibration_error(labels, probabilities, bins=2) == pytest.approx(
        (2 * 0.3 + 1 * 0.1) / 3
    )
    # Probability exactly 1 lands in the last bin.
    assert expected_calibration_error(np.array([1]), np.array([1.0]), bins=15) == 0.0
    with pytest.raises(ValueError, match="probabilities must lie in"):
        expected_calibration_error(np.array([1]), np.array([1.5]))
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        expected_calibration_error(np.array([1]), np.array([0.5]), bins=0)


def test_bayes_reference_of_true_probabilities() -> None:
    rng = np.random.default_rng(2)
    probabilities = rng.beta(2.0, 2.0, 20_000)
    labels = rng.random(20_000) < probabilities
    reference = bayes_reference(labels, probabilities)
    assert set(reference) == {"auc", "ece", "log_loss"}
    assert reference["auc"] == auc(labels, probabilities)
    # True probabilities are calibrated: the ECE is sampling noise only.
    assert reference["ece"] < 0.02
    # No other predictor beats them in expectation; a noisy one does worse here.
    noisy = np.clip(probabilities + rng.normal(0, 0.2, probabilities.size), 0, 1)
    assert auc(labels, noisy) < reference["auc"]
    assert log_loss(labels, noisy) > reference["log_loss"]
    with pytest.raises(ValueError, match="true_probabilities must be finite; row 1 has nan"):
        bayes_reference(labels[:2], np.array([0.5, np.nan]))


# ---------------------------------------------------------------------- ranking


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    batch=st.integers(1, 6),
    num_items=st.integers(1, 12),
    k=st.integers(1, 12),
)
def test_ranking_metrics_match_brute_force(
    data: st.DataObject, batch: int, num_items: int, k: int
) -> None:
    scores = np.array(
        data.draw(
            st.lists(
                st.lists(tied_scores, min_size=num_items, max_size=num_items),
                min_size=batch,
                max_size=batch,
            )
        )
    )
    targets = np.array(
        data.draw(st.lists(st.integers(0, num_items - 1), min_size=batch, max_size=batch))
    )
    ranks = [brute_rank(scores[i].tolist(), int(targets[i])) for i in range(batch)]
    np.testing.assert_array_equal(target_ranks(scores, targets), ranks)
    ndcg = np.mean([1 / math.log2(r + 1) if r <= k else 0.0 for r in ranks])
    hits = np.mean([r <= k for r in ranks])
    assert ndcg_at_k(scores, targets, k=k) == pytest.approx(ndcg)
    assert hit_rate_at_k(scores, targets, k=k) == pytest.approx(hits)
    # Precomputed ranks give the same values.
    assert ndcg_at_k(np.array(ranks), k=k) == pytest.approx(ndcg)
    assert hit_rate_at_k(np.array(ranks), k=k) == pytest.approx(hits)


def test_ties_are_counted_against_the_target() -> None:
    # A constant scorer ranks every target last, not first.
    scores = np.zeros((3, 20))
    np.testing.assert_array_equal(target_ranks(scores, np.array([0, 5, 19])), [20, 20, 20])
    assert hit_rate_at_k(scores, np.array([0, 5, 19]), k=10) == 0.0
    # Perfect scores: rank 1, NDCG 1.
    perfect = np.eye(4)
    assert ndcg_at_k(perfect, np.arange(4), k=1) == 1.0
    # Rank 3 at k = 10: 1 / log2(4) = 0.5.
    assert ndcg_at_k(np.array([3]), k=10) == pytest.approx(0.5)
    assert math.isnan(ndcg_at_k(np.zeros(0, np.int64)))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ndcg_at_k(np.array([1, 2]), 10), ValueError, "pass it by keyword: k=10"),
        (lambda: ndcg_at_k(np.array([0, 2])), ValueError, "add 1 to 0-based ranks"),
        (lambda: ndcg_at_k(np.zeros((2, 3))), ValueError, "targets are needed"),
        (lambda: hit_rate_at_k(np.zeros((2, 3)), np.array([0, 3])), ValueError, r"\[0, 3\)"),
        (lambda: hit_rate_at_k(np.array([1]), k=0), ValueError, "k must be a positive"),
        (
            lambda: target_ranks(np.array([[0.0, np.nan]]), np.array([0])),
            ValueError,
            "row 0 has a NaN",
        ),
        (lambda: target_ranks(np.zeros((2, 3)), np.array([0.0, 1.0])), TypeError, "integer"),
        (lambda: ndcg_at_k(np.array([1.0, 2.0])), TypeError, "ranks must be integers"),
    ],
)
def test_ranking_rejects_malformed_inputs(
    call: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]
