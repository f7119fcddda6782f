"""The engagement user model, with expected values derived by hand (RecSim-style)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loe_gym import Catalog, Responses, check_simulator
from loe_gym.simulator import geometric_gaps
from simulators.engagement import (
    EngagementConfig,
    EngagementState,
    EngagementUsers,
    _expected_clipped_normal,
)

# Three items on two topics:      quality appeal length topic
#   0: good and not clickbait       0.8    0.3    2.0    0
#   1: clickbait                    0.2    0.9    1.0    1
#   2: middling                     0.5    0.5    1.5    0
TOPICS = np.array([0, 1, 0])
QUALITY = np.array([0.8, 0.2, 0.5])
APPEAL = np.array([0.3, 0.9, 0.5])
LENGTH = np.array([2.0, 1.0, 1.5])


@pytest.fixture
def users() -> EngagementUsers:
    catalog = Catalog(
        features=np.eye(3),
        feature_names=("a", "b", "c"),
        hidden={"quality": QUALITY, "appeal": APPEAL, "length": LENGTH},
        topics=TOPICS,
    )
    return EngagementUsers(catalog=catalog, num_topics=2)


def one_user(budget: float = 10.0, satisfaction: float = 0.5) -> EngagementState:
    return EngagementState(
        interests=np.array([[0.5, -0.2]]),
        satisfaction=np.array([satisfaction]),
        fatigue=np.array([[0.0, 1.0]]),
        budget=np.array([budget]),
    )


def responses_for(clicked: bool, completion: float, length: float, end: bool = False) -> Responses:
    """Hand-written responses of one user to a slate of one item (without internals)."""
    return Responses(
        clicked=np.array([[clicked]]),
        watch_time=np.array([[length * completion if clicked else 0.0]]),
        completion=np.array([[completion if clicked else 0.0]]),
        session_end=np.array([end]),
        gap_days=np.array([1 if end else 0]),
        churned=np.array([False]),
    )


def update_after(
    users: EngagementUsers, state: EngagementState, slates: np.ndarray, responses: Responses
) -> EngagementState:
    """``update`` on hand-written responses, with the internals ``respond`` would attach."""
    return users.update(
        state, slates, users.with_internals(state, slates, responses), np.random.default_rng(0)
    )


def test_click_probability_matches_the_spec(users: EngagementUsers) -> None:
    expected = users.expected_responses(one_user(), np.array([[0, 1]]))
    # item 0: z = −1 + 3.5·0.5 + 2·0.3 − 1.2·0 = 1.35, σ(1.35) = 0.79413
    # item 1: z = −1 + 3.5·(−0.2) + 2·0.9 − 1.2·1 = −1.1, σ(−1.1) = 0.24974
    np.testing.assert_allclose(expected["click_probability"], [[0.79413, 0.24974]], atol=1e-5)


def test_update_after_a_click_on_good_content(users: EngagementUsers) -> None:
    state = one_user()
    new = update_after(users, state, np.array([[0]]), responses_for(True, 0.9, 2.0))
    # satisfaction: 0.5 + 0.08·(0.8·0.9 − 0.5·max(0.3 − 0.8, 0) − 0.5) = 0.5 + 0.08·0.22 = 0.5176
    np.testing.assert_allclose(new.satisfaction, [0.5176])
    # fatigue: 0.8·[0, 1] = [0, 0.8], then the shown topic 0 gets +1 → [1.0, 0.8]
    np.testing.assert_allclose(new.fatigue, [[1.0, 0.8]])
    # interest drift on topic 0: 0.5 + 0.05·(1 − 0.5) = 0.525
    np.testing.assert_allclose(new.interests, [[0.525, -0.2]])
    # budget: 10 − watch·(1 − 0.5·q) = 10 − 1.8·0.6 = 8.92
    np.testing.assert_allclose(new.budget, [8.92])


def test_update_after_a_clickbait_click_lowers_satisfaction(users: EngagementUsers) -> None:
    new = update_after(users, one_user(), np.array([[1]]), responses_for(True, 0.5, 1.0))
    # 0.5 + 0.08·(0.2·0.5 − 0.5·(0.9 − 0.2) − 0.5) = 0.5 + 0.08·(0.1 − 0.35 − 0.5) = 0.44
    np.testing.assert_allclose(new.satisfaction, [0.44])


def test_update_without_click(users: EngagementUsers) -> None:
    new = update_after(users, one_user(), np.array([[1]]), responses_for(False, 0.0, 1.0))
    np.testing.assert_allclose(new.satisfaction, [0.5])  # unchanged without a click
    np.testing.assert_allclose(new.fatigue, [[0.0, 1.8]])  # 0.8·1 + 1 on topic 1
    np.testing.assert_allclose(new.interests, [[0.5, -0.2]])  # no drift without a click
    np.testing.assert_allclose(new.budget, [9.0])  # 10 − no_click_cost 1


def test_session_end_refills_budget_and_rests_fatigue(users: EngagementUsers) -> None:
    state = one_user(budget=0.5)
    new = update_after(users, state, np.array([[0]]), responses_for(True, 0.9, 2.0, end=True))
    # within the step fatigue becomes [1.0, 0.8] (see above); between sessions ×0.2
    np.testing.assert_allclose(new.fatigue, [[0.2, 0.16]])
    np.testing.assert_allclose(new.budget, [20.0])


def test_update_reads_what_respond_computed_from_the_responses(users: EngagementUsers) -> None:
    """``respond`` hands satisfaction and budget to ``update`` in ``Responses.internals``,
    equal to what `with_internals` derives from the observable responses."""
    rng = np.random.default_rng(2)
    state = users.reset(50, rng)
    slates = rng.integers(0, 3, (50, 1))
    responses = users.respond(state, slates, rng)
    assert set(responses.internals) == {"satisfaction", "budget"}
    for name, value in responses.internals.items():
        assert value.shape == (50,), name
    derived = users.with_internals(state, slates, dataclasses.replace(responses, internals={}))
    for name, value in responses.internals.items():
        np.testing.assert_array_equal(derived.internals[name], value, err_msg=name)


def test_update_without_internals_names_the_fix(users: EngagementUsers) -> None:
    with pytest.raises(ValueError, match=r"internals.*with_internals"):
        users.update(
            one_user(), np.array([[0]]), responses_for(True, 0.9, 2.0), np.random.default_rng(0)
        )


def test_respond_ends_the_session_when_the_budget_runs_out(users: EngagementUsers) -> None:
    # No click costs 1 minute, a click costs ≥ 0: with 0.5 minutes left, a no-click ends
    # the session; with 30 minutes left nothing can end it in one step (max cost 2.0).
    rng = np.random.default_rng(0)
    state = EngagementState(
        interests=np.full((4000, 2), -1.0),
        satisfaction=np.full(4000, 0.5),
        fatigue=np.zeros((4000, 2)),
        budget=np.where(np.arange(4000) < 2000, 0.5, 30.0),
    )
    responses = users.respond(state, np.ones((4000, 1), np.int64), rng)
    ended = responses.session_end
    assert not ended[2000:].any()
    np.testing.assert_array_equal(ended[:2000][~responses.clicked[:2000, 0]], True)


def test_multinomial_logit_slate_choice(users: EngagementUsers) -> None:
    # Slate [0, 1]: utilities 1.35 and −1.1, no-click utility 0:
    # P(0) = e^1.35 / (1 + e^1.35 + e^−1.1) = 3.8574 / 5.1903 = 0.7432
    # P(none) = 1 / 5.1903 = 0.1927
    n = 40_000
    state = EngagementState(
        interests=np.tile([0.5, -0.2], (n, 1)),
        satisfaction=np.full(n, 0.5),
        fatigue=np.tile([0.0, 1.0], (n, 1)),
        budget=np.full(n, 10.0),
    )
    clicked = users.respond(state, np.tile([0, 1], (n, 1)), np.random.default_rng(1)).clicked
    assert clicked.sum(axis=1).max() == 1
    se = np.sqrt(0.25 / n)
    assert abs(clicked[:, 0].mean() - 0.7432) < 4 * se
    assert abs((~clicked.any(axis=1)).mean() - 0.1927) < 4 * se


def test_single_item_click_rate_matches_probability(users: EngagementUsers) -> None:
    n = 40_000
    state = EngagementState(
        interests=np.tile([0.5, -0.2], (n, 1)),
        satisfaction=np.full(n, 0.5),
        fatigue=np.tile([0.0, 1.0], (n, 1)),
        budget=np.full(n, 10.0),
    )
    clicked = users.respond(state, np.zeros((n, 1), np.int64), np.random.default_rng(2)).clicked
    assert abs(clicked.mean() - 0.79413) < 4 * np.sqrt(0.25 / n)


def test_geometric_gaps_and_churn_probability() -> None:
    rng = np.random.default_rng(3)
    # s = 0: p = σ(−1.5) = 0.18243; mean gap 1/p = 5.4816; P(gap > 7) = (1 − p)^7 = 0.2442
    p = np.full(200_000, 0.18243)
    gaps = geometric_gaps(p, rng)
    assert gaps.min() >= 1
    assert abs(gaps.mean() - 5.4816) < 0.05
    assert abs((gaps > 7).mean() - 0.2442) < 0.005


def test_expected_completion_closed_form_matches_monte_carlo() -> None:
    rng = np.random.default_rng(4)
    for mean in (0.05, 0.5, 0.8909, 0.99):
        draws = np.clip(mean + 0.1 * rng.standard_normal(400_000), 0, 1)
        assert abs(_expected_clipped_normal(np.array(mean), 0.1) - draws.mean()) < 1e-3


def test_catalog_is_clickbait_anticorrelated() -> None:
    sim = EngagementUsers()
    quality, appeal = sim.catalog.hidden["quality"], sim.catalog.hidden["appeal"]
    # a = clip(1 − q + noise): strongly negative correlation by construction
    assert np.corrcoef(quality, appeal)[0, 1] < -0.6
    assert sim.catalog.features.shape == (1000, 13)
    assert sim.catalog.feature_names[-3:] == ("length", "ctr_estimate", "completion_estimate")


def test_catalog_seed_reproducible_and_distinct() -> None:
    a, b, c = EngagementUsers(), EngagementUsers(), EngagementUsers(catalog_seed=1)
    np.testing.assert_array_equal(a.catalog.features, b.catalog.features)
    assert not np.array_equal(a.catalog.features, c.catalog.features)


def test_passes_check_simulator() -> None:
    check_simulator(EngagementUsers(num_items=40))


def test_config_rejects_unknown_and_out_of_range_values() -> None:
    with pytest.raises(TypeError, match="Did you mean 'num_items'"):
        EngagementUsers(num_itmes=5)
    with pytest.raises(ValueError, match=r"satisfaction_rate must lie in \[0, 1\], got 1.5"):
        EngagementConfig(satisfaction_rate=1.5)
    with pytest.raises(ValueError, match="num_items must be > 0"):
        EngagementConfig(num_items=0)
    with pytest.raises(ValueError, match="must be finite"):
        EngagementConfig(click_bias=float("nan"))


def test_custom_catalog_must_carry_hidden_attributes() -> None:
    bare = Catalog(features=np.eye(2), feature_names=("a", "b"), topics=np.array([0, 1]))
    with pytest.raises(ValueError, match="lacks quality, appeal, length"):
        EngagementUsers(catalog=bare)
