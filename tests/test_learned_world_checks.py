"""A learned world's churn, calibrated on right-censored return gaps
(`simulators.return_gaps`), and its refusal of indistinguishable items."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.modeling_predictor import PredictorModel
from simulators.learned import IndistinguishableItemsError, LearnedUsers
from simulators.return_gaps import (
    calibrate_churn_gap_days,
    kaplan_meier,
    return_gap_observations,
)

TRUE_CHURN = 0.1
DAILY_RETURN = 0.3
WINDOW_END = 30


def _imported_gap_log(num_users: int, seed: int, policy: str = "imported:synthetic") -> pa.Table:
    """Session ends of users observed from day 0 to ``WINDOW_END``, one row per step, as an
    importer writes them. After each session a user never returns with probability
    ``TRUE_CHURN``, else after a Geometric(``DAILY_RETURN``) gap; the last session seen
    in the window gets ``gap_days`` 0, churned or not (the log cannot tell)."""
    rng = np.random.default_rng(seed)
    day, gap_days = [], []
    for _ in range(num_users):
        today = 0
        while True:
            gap = 0 if rng.random() < TRUE_CHURN else int(rng.geometric(DAILY_RETURN))
            seen = gap > 0 and today + gap <= WINDOW_END
            day.append(today)
            gap_days.append(gap if seen else 0)
            if not seen:
                break
            today += gap
    n = len(day)
    return pa.table(
        {
            "day": pa.array(day, pa.int32()),
            "session_end": pa.array(np.ones(n, dtype=bool)),
            "gap_days": pa.array(gap_days, pa.int16()),
            "position": pa.array(np.zeros(n, dtype=np.int16)),
            "policy": pa.array([policy] * n).dictionary_encode(),
        }
    )


def test_kaplan_meier_recovers_the_known_churn_of_a_censored_log() -> None:
    table = _imported_gap_log(3000, seed=0)
    days, observed = return_gap_observations(table, window_end_day=WINDOW_END)
    survival = kaplan_meier(days, observed)
    horizon = survival.horizon()
    # A returner's gap exceeds K with probability 0.7^K, negligible at the horizon:
    # S(K) = 0.1 + 0.9 · 0.7^K ≈ 0.1.
    assert horizon >= 12
    expected = TRUE_CHURN + (1 - TRUE_CHURN) * (1 - DAILY_RETURN) ** horizon
    assert survival.no_return_within(horizon) == pytest.approx(expected, abs=0.03)
    # Reading every silent last session as churn (the uncensored count) overstates it.
    # Users live 10 sessions of 3.3 days on average, longer than the 30-day window.
    naive = np.count_nonzero(~observed) / observed.size
    assert naive > expected + 0.03
    assert survival.censored == np.count_nonzero(~observed)


def test_a_simulators_churn_is_its_logged_churn() -> None:
    """The same rows written by a simulator: ``gap_days`` 0 is churn (never returns),
    so S(K) is exactly the share of such session ends."""
    table = _imported_gap_log(500, seed=1, policy="random")
    days, observed = return_gap_observations(table)
    assert np.all(np.isinf(days[~observed]))
    survival = kaplan_meier(days, observed)
    longest = int(days[observed].max())
    assert survival.no_return_within(longest) == pytest.approx(np.mean(~observed))


def test_kaplan_meier_by_hand() -> None:
    # Gaps 1, 2 (returns), silences of 1 and 3 days (censored):
    # at risk at day 1: all 4 → S(1) = 1 − 1/4 = 0.75; day 2: gaps ≥ 2 are 2 and 3
    # (the silence of 1 day has left) → S(2) = 0.75 · (1 − 1/2) = 0.375.
    survival = kaplan_meier(np.array([1.0, 2.0, 1.0, 3.0]), np.array([True, True, False, False]))
    np.testing.assert_allclose(survival.survival, [0.75, 0.375])
    np.testing.assert_array_equal(survival.at_risk, [4, 2])
    assert survival.no_return_within(10) == 0.375 and survival.no_return_within(0) == 1.0


def test_the_churn_threshold_matches_the_share_never_returning() -> None:
    # A constant daily return of 0.2 churns after a threshold K with 0.8^K:
    # 0.8^6 = 0.262, 0.8^7 = 0.2097 → the smallest K with 0.8^K ≤ 0.21 is 7.
    assert calibrate_churn_gap_days(np.full(50, 0.2), 0.21) == 7
    # Mixed users: mean(0.5^K, 0.9^K) ≤ 0.3 from K = 5 (0.5·(0.031 + 0.590) = 0.311 at 5,
    # 0.5·(0.016 + 0.531) = 0.273 at 6) → 6.
    assert calibrate_churn_gap_days(np.array([0.5, 0.1]), 0.3) == 6
    with pytest.raises(ValueError, match="never_return_share must lie in"):
        calibrate_churn_gap_days(np.full(3, 0.2), 1.5)


def _features_only_model(features: np.ndarray, item_id_embeddings: bool = False) -> PredictorModel:
    """A tiny predictor whose weights are drawn large (an initialised one scores every
    item nearly alike, whatever its inputs)."""
    torch.manual_seed(0)
    config = PredictorConfig(
        num_items=features.shape[0],
        num_item_features=features.shape[1],
        hidden_size=8,
        num_attention_heads=1,
        num_hidden_layers=1,
        max_history_length=4,
        item_id_embeddings=item_id_embeddings,
    )
    model = PredictorModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    model.set_item_features(torch.as_tensor(features, dtype=torch.float32))
    return model


def test_indistinguishable_items_are_refused() -> None:
    same = np.ones((12, 3), dtype=np.float32)
    with pytest.raises(IndistinguishableItemsError) as error:
        LearnedUsers(_features_only_model(same))
    message = str(error.value)
    assert "item_id_embeddings=False" in message and "same for every item" in message
    assert "--model.item-id-embeddings" in message and "features or text" in message
    # Item id embeddings, or features that differ, tell the items apart.
    with_ids = _features_only_model(same, item_id_embeddings=True)
    assert LearnedUsers(with_ids).item_spread > 1e-3
    # Unless the embeddings learned nothing: the advice is then not to turn them on.
    with torch.no_grad():
        with_ids.items.item_id_embeddings.weight.zero_()
    with pytest.raises(IndistinguishableItemsError, match="train the predictor longer") as error:
        LearnedUsers(with_ids)
    assert "--model.item-id-embeddings" not in str(error.value)
    rng = np.random.default_rng(0)
    distinct = LearnedUsers(_features_only_model(rng.random((12, 3)).astype(np.float32)))
    assert distinct.item_spread > 1e-3
