"""Tests of the RecSim ports: interest evolution and long-term satisfaction (choc/kale).

Expected values are derived in the comments from RecSim 0.2.4's equations, in the
style of RecSim's own tests.
"""

from __future__ import annotations

import dataclasses
import doctest
from typing import Any

import numpy as np
import pytest

import simulators.interest_evolution as interest_evolution_module
import simulators.long_term_satisfaction as long_term_satisfaction_module
from loe_gym.checker import check_simulator
from loe_gym.simulator import PrivilegedSimulator, Responses, UserSimulator
from simulators.interest_evolution import (
    InterestEvolutionConfig,
    InterestEvolutionState,
    InterestEvolutionUsers,
    cluster_quality_means,
)
from simulators.long_term_satisfaction import (
    LongTermSatisfactionConfig,
    LongTermSatisfactionState,
    LongTermSatisfactionUsers,
)

MANY = 200_000  # users for Monte-Carlo checks: a frequency's std is ≤ 0.5/√MANY ≈ 0.0011


def small_interest_evolution(**overrides: Any) -> InterestEvolutionUsers:
    return InterestEvolutionUsers(num_items=200, **overrides)


def small_long_term_satisfaction(**overrides: Any) -> LongTermSatisfactionUsers:
    return LongTermSatisfactionUsers(num_items=200, **overrides)


def items_of_cluster(sim: InterestEvolutionUsers, cluster: int, count: int = 1) -> list[int]:
    items = np.flatnonzero(sim.catalog.topics == cluster)
    assert items.size >= count, f"the test catalog has too few items in cluster {cluster}"
    return [int(i) for i in items[:count]]


def ie_state(
    sim: InterestEvolutionUsers, num_users: int, interests: dict[int, float], budget: float
):
    """Users with interest 0 everywhere except ``interests`` ({cluster: θ})."""
    theta = np.zeros((num_users, sim.config.num_clusters))
    for cluster, value in interests.items():
        theta[:, cluster] = value
    return InterestEvolutionState(interests=theta, budget=np.full(num_users, budget))


def ie_responses(clicked: np.ndarray, watch_time: np.ndarray) -> Responses:
    num_users = clicked.shape[0]
    return Responses(
        clicked=clicked,
        watch_time=watch_time,
        completion=np.zeros_like(watch_time),
        session_end=np.zeros(num_users, bool),
        gap_days=np.zeros(num_users, np.int64),
        churned=np.zeros(num_users, bool),
    )


def read_only(state):
    """A copy of ``state`` whose arrays raise on any in-place write."""
    fields = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name).copy()
        value.setflags(write=False)
        fields[f.name] = value
    return dataclasses.replace(state, **fields)


# --- interest evolution: catalog ------------------------------------------------------


def test_cluster_quality_means_match_recsim():
    # RecSim: concat(linspace(−3, 0, int(20·0.7) = 14), linspace(0, 3, int(20·0.3) = 6)).
    means = cluster_quality_means(InterestEvolutionConfig())
    assert means.shape == (20,)
    assert means[0] == -3.0 and means[13] == 0.0  # trashy: −3 … 0 in steps of 3/13
    assert means[1] == pytest.approx(-3.0 + 3.0 / 13.0)
    assert means[14] == 0.0 and means[19] == 3.0  # nutritious: 0, 0.6, …, 3
    assert means[15] == pytest.approx(0.6)


def test_cluster_quality_means_cover_every_cluster_count():
    # RecSim's int(0.3·K) part would leave K = 3 with 2 means; the port keeps K means.
    for k in range(1, 41):
        assert cluster_quality_means(InterestEvolutionConfig(num_clusters=k)).shape == (k,)


def test_interest_evolution_catalog_statistics():
    sim = InterestEvolutionUsers(num_items=20_000)
    catalog, topics = sim.catalog, sim.catalog.topics
    assert topics is not None
    assert catalog.features.shape == (20_000, 20) and catalog.features.dtype == np.float32
    # One-hot cluster vectors, and topics = cluster id = the hot column.
    assert np.all(catalog.features.sum(axis=1) == 1.0)
    assert np.array_equal(catalog.features.argmax(axis=1), topics)
    assert np.array_equal(catalog.hidden["cluster_id"], topics)
    assert np.all(catalog.hidden["video_length"] == 4.0)
    # Clusters are uniform: 1000 items each, binomial std √(20000·0.05·0.95) ≈ 31.
    counts = np.bincount(topics, minlength=20)
    assert np.all(np.abs(counts - 1000) < 150)
    # Quality ~ N(μ_k, 0.1²): per-cluster mean within 5 std errors (0.1/√1000 ≈ 0.003),
    # per-cluster std within 5 std errors (0.1/√2000 ≈ 0.0022).
    quality = catalog.hidden["quality"]
    means = cluster_quality_means(sim.config)
    for k in range(20):
        in_cluster = quality[topics == k]
        assert in_cluster.mean() == pytest.approx(means[k], abs=0.016)
        assert in_cluster.std() == pytest.approx(0.1, abs=0.012)


def test_interest_evolution_catalog_seed():
    a = small_interest_evolution()
    b = small_interest_evolution()
    c = small_interest_evolution(catalog_seed=1)
    assert np.array_equal(a.catalog.features, b.catalog.features)
    assert np.array_equal(a.catalog.hidden["quality"], b.catalog.hidden["quality"])
    assert not np.array_equal(a.catalog.hidden["quality"], c.catalog.hidden["quality"])


# --- interest evolution: choice model -----------------------------------------------


def test_choice_probability_of_a_single_item():
    sim = small_interest_evolution()
    [item] = items_of_cluster(sim, 5)
    state = ie_state(sim, MANY, {5: 0.5}, budget=200.0)
    # Weights: item θ − min_normalizer = 0.5 + 1 = 1.5; no click 1 − (−1) = 2.
    # P(click) = 1.5 / 3.5 ≈ 0.4286.
    expected = sim.expected_responses(state, np.full((MANY, 1), item))
    assert expected["click_probability"][0, 0] == pytest.approx(1.5 / 3.5)
    responses = sim.respond(state, np.full((MANY, 1), item), np.random.default_rng(0))
    assert responses.clicked.mean() == pytest.approx(1.5 / 3.5, abs=0.005)


def test_choice_probabilities_of_a_slate_of_three():
    sim = small_interest_evolution()
    a, b, c = items_of_cluster(sim, 0)[0], items_of_cluster(sim, 1)[0], items_of_cluster(sim, 2)[0]
    state = ie_state(sim, MANY, {0: 0.5, 1: -0.5, 2: -1.0}, budget=200.0)
    slates = np.tile([a, b, c], (MANY, 1))
    responses = sim.respond(state, slates, np.random.default_rng(1))
    # Weights 1.5, 0.5, 0 (θ = −1 is never picked) and no click 2; total 4.
    frequencies = responses.clicked.mean(axis=0)
    assert frequencies[0] == pytest.approx(1.5 / 4, abs=0.005)
    assert frequencies[1] == pytest.approx(0.5 / 4, abs=0.005)
    assert frequencies[2] == 0.0
    assert (~responses.clicked.any(axis=1)).mean() == pytest.approx(2 / 4, abs=0.005)
    assert responses.clicked.sum(axis=1).max() == 1  # one pick at most


def test_no_click_mass_and_min_normalizer_are_configurable():
    sim = small_interest_evolution(no_click_mass=3.0, min_normalizer=-2.0)
    [item] = items_of_cluster(sim, 0)
    state = ie_state(sim, 1, {0: 1.0}, budget=200.0)
    # Item weight 1 + 2 = 3, no click 3 + 2 = 5: P = 3/8.
    expected = sim.expected_responses(state, np.array([[item]]))
    assert expected["click_probability"][0, 0] == pytest.approx(3 / 8)


# --- interest evolution: response -------------------------------------------------------


def test_response_content():
    sim = small_interest_evolution()
    [item] = items_of_cluster(sim, 7)
    # θ = 1 and a slate of one: P(click) = 2 / 4; pick the users that clicked.
    state = ie_state(sim, 1000, {7: 1.0}, budget=2.5)
    other = items_of_cluster(sim, 3)[0]
    slates = np.tile([item, other], (1000, 1))
    responses = sim.respond(state, slates, np.random.default_rng(2))
    clicked = responses.clicked[:, 0]
    assert 0 < clicked.sum() < 1000
    # RecSim's test: the watch time is min(budget, video length) = min(2.5, 4) = 2.5.
    assert np.all(responses.watch_time[clicked, 0] == 2.5)
    assert np.all(responses.completion[clicked, 0] == 2.5 / 4.0)
    assert np.all(responses.watch_time[~responses.clicked] == 0.0)
    # Every shown item reports its quality and cluster; liked is never set.
    quality = sim.catalog.hidden["quality"]
    assert np.all(responses.extras["quality"] == quality[[item, other]])
    assert np.all(responses.extras["cluster_id"] == [7.0, 3.0])
    assert np.all(responses.extras["liked"] == 0.0)
    assert tuple(responses.extras) == sim.response_extras


# --- interest evolution: transition ---------------------------------------------------


def test_budget_after_a_click_refunds_quality():
    sim = small_interest_evolution()
    [item] = items_of_cluster(sim, 19)
    q = float(sim.catalog.hidden["quality"][item])
    state = ie_state(sim, 1, {19: 0.0}, budget=200.0)
    responses = ie_responses(np.array([[True]]), np.array([[4.0]]))
    new = sim.update(state, np.array([[item]]), responses, np.random.default_rng(0))
    # 200 − 4 watched + (0.9/3.4)·4·(0·score + 1·q).
    assert new.budget[0] == pytest.approx(200.0 - 4.0 + 0.9 / 3.4 * 4.0 * q)


def test_budget_update_with_user_quality_factor():
    # RecSim's test: budget 0.5, watch time 0.3, user quality factor 0.3, document
    # quality factor 0.7, user update alpha 1, score 2, quality 3.
    sim = small_interest_evolution(
        user_quality_factor=0.3,
        document_quality_factor=0.7,
        user_update_alpha=1.0,
        quality_std=0.0,  # cluster 19's quality is exactly its mean, max_utility = 3
    )
    [item] = items_of_cluster(sim, 19)
    assert sim.catalog.hidden["quality"][item] == 3.0
    # θ = 1: the normalised score is 1 − (−1) = 2.
    state = ie_state(sim, 1, {19: 1.0}, budget=0.5)
    responses = ie_responses(np.array([[True]]), np.array([[0.3]]))
    new = sim.update(state, np.array([[item]]), responses, np.random.default_rng(0))
    # received utility = 0.3·2 + 0.7·3 = 2.7; budget = 0.5 − 0.3 + 1·0.3·2.7 = 1.01.
    assert new.budget[0] == pytest.approx(1.01)


def test_budget_without_a_click_pays_the_step_penalty():
    sim = small_interest_evolution()
    state = ie_state(sim, 1, {}, budget=200.0)
    responses = ie_responses(np.zeros((1, 2), bool), np.zeros((1, 2)))
    new = sim.update(state, np.array([[0, 1]]), responses, np.random.default_rng(0))
    assert new.budget[0] == 199.5  # 200 − 0.5 step penalty
    assert np.array_equal(new.interests, state.interests)  # no click, no interest change


def test_interest_update_moves_only_the_clicked_cluster():
    sim = small_interest_evolution()
    [item] = items_of_cluster(sim, 4)
    state = ie_state(sim, MANY, {4: 0.5, 9: -0.3}, budget=200.0)
    responses = ie_responses(np.ones((MANY, 1), bool), np.full((MANY, 1), 4.0))
    new = sim.update(state, np.full((MANY, 1), item), responses, np.random.default_rng(3))
    # α = 0.3 − (0.3/1)·|0.5| = 0.15; Δ = α·(1 − θ) = 0.15·0.5 = 0.075.
    # θ → 0.575 with probability (0.5 + 1)/2 = 0.75, else 0.425.
    moved = new.interests[:, 4]
    assert set(np.round(np.unique(moved), 12)) == {0.425, 0.575}
    assert (moved > 0.5).mean() == pytest.approx(0.75, abs=0.005)
    others = np.delete(new.interests, 4, axis=1)
    assert np.array_equal(others, np.delete(state.interests, 4, axis=1))
    # E[Δθ] = p_click·θ·Δ; shown alone, p_click = 1.5/3.5.
    expected = sim.expected_responses(select_user(state, 0), np.array([[item]]))
    assert expected["interest_change"][0, 0] == pytest.approx(1.5 / 3.5 * 0.5 * 0.075)


def test_interest_step_vanishes_at_the_extremes():
    sim = small_interest_evolution()
    [item] = items_of_cluster(sim, 2)
    responses = ie_responses(np.ones((100, 1), bool), np.full((100, 1), 4.0))
    for theta in (-1.0, 1.0):
        # α = 0.3 − 0.3·|±1| = 0: interests at ±1 never move.
        state = ie_state(sim, 100, {2: theta}, budget=200.0)
        new = sim.update(state, np.full((100, 1), item), responses, np.random.default_rng(4))
        assert np.all(new.interests[:, 2] == theta)


def test_only_the_first_clicked_item_moves_the_user():
    sim = small_interest_evolution()
    a, b = items_of_cluster(sim, 0)[0], items_of_cluster(sim, 1)[0]
    state = ie_state(sim, 1, {0: 0.2, 1: 0.2}, budget=200.0)
    # Two clicks cannot come from the choice model, but RecSim's update stops at the first.
    responses = ie_responses(np.array([[True, True]]), np.array([[4.0, 4.0]]))
    new = sim.update(state, np.array([[a, b]]), responses, np.random.default_rng(5))
    assert new.interests[0, 0] != 0.2 and new.interests[0, 1] == 0.2
    q = sim.catalog.hidden["quality"][a]
    assert new.budget[0] == pytest.approx(200.0 - 4.0 + 0.9 / 3.4 * 4.0 * q)


# --- interest evolution: termination --------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "ends"),
    [
        (0.6, False),  # 0.6 − 0.5 = 0.1 > 0
        (0.5, True),  # 0.5 − 0.5 = 0: RecSim's is_terminal is budget ≤ 0
        (0.3, True),  # 0.3 − 0.5 = −0.2
    ],
)
def test_session_ends_when_the_budget_runs_out(budget, ends):
    sim = small_interest_evolution()
    [item] = items_of_cluster(sim, 0)
    # θ = −1: weight 0, the item is never clicked, so the step costs the 0.5 penalty.
    state = ie_state(sim, 3, {0: -1.0}, budget=budget)
    responses = sim.respond(state, np.full((3, 1), item), np.random.default_rng(6))
    assert not responses.clicked.any()
    assert np.all(responses.session_end == ends)
    assert np.all(responses.churned == ends)  # one session per episode: end = done
    assert np.all(responses.gap_days == 0)
    new = sim.update(state, np.full((3, 1), item), responses, np.random.default_rng(6))
    assert np.all(new.budget == budget - 0.5)


def test_a_click_on_trash_can_end_the_session():
    sim = small_interest_evolution()
    [item] = items_of_cluster(sim, 0)  # quality ≈ −3
    q = float(sim.catalog.hidden["quality"][item])
    state = ie_state(sim, 2000, {0: 1.0}, budget=3.0)
    responses = sim.respond(state, np.full((2000, 1), item), np.random.default_rng(7))
    clicked = responses.clicked[:, 0]
    # Watch min(3, 4) = 3; budget 3 − 3 + 0.265·3·q < 0 since q < 0.
    assert q < 0 and np.all(responses.watch_time[clicked, 0] == 3.0)
    assert np.all(responses.session_end[clicked])
    # No click: 3 − 0.5 = 2.5 > 0.
    assert not np.any(responses.session_end[~clicked])


def test_every_episode_ends():
    sim = small_interest_evolution()
    rng = np.random.default_rng(8)
    state = sim.reset(64, rng)
    ended = np.zeros(64, bool)
    for _ in range(1000):  # ≥ 0.8 minutes of budget per step: at most 250 steps
        slates = rng.integers(0, sim.catalog.num_items, (64, 2))
        responses = sim.respond(state, slates, rng)
        state = sim.update(state, slates, responses, rng)
        assert np.all(responses.session_end == (state.budget <= 0.0))
        ended |= responses.session_end
        if ended.all():
            break
    assert ended.all()


# --- interest evolution: contract --------------------------------------------------------


def test_interest_evolution_reset():
    sim = small_interest_evolution()
    state = sim.reset(10_000, np.random.default_rng(9))
    assert state.interests.shape == (10_000, 20)
    assert state.interests.min() >= -1.0 and state.interests.max() <= 1.0
    assert state.interests.mean() == pytest.approx(0.0, abs=0.01)  # Uniform[−1, 1]
    assert np.all(state.budget == 200.0)


@pytest.mark.parametrize("slate_size", [1, 2, 5])
def test_interest_evolution_shapes_and_dtypes(slate_size):
    sim = small_interest_evolution()
    assert isinstance(sim, PrivilegedSimulator) and isinstance(sim, UserSimulator)
    rng = np.random.default_rng(10)
    state = sim.reset(7, rng)
    slates = np.stack(
        [rng.choice(sim.catalog.num_items, slate_size, replace=False) for _ in range(7)]
    )
    responses = sim.respond(state, slates, rng)
    assert responses.clicked.shape == (7, slate_size) and responses.clicked.dtype == bool
    for name in ("watch_time", "completion"):
        values = getattr(responses, name)
        assert values.shape == (7, slate_size) and values.dtype == np.float64
        assert values.min() >= 0.0
    assert responses.completion.max() <= 1.0
    assert responses.session_end.shape == (7,) and responses.session_end.dtype == bool
    assert responses.churned.dtype == bool and responses.gap_days.dtype == np.int64
    for name in sim.response_extras:
        assert responses.extras[name].shape == (7, slate_size)
    features = sim.user_features(state)
    assert features.shape == (7, sim.user_feature_size) and features.dtype == np.float32
    assert np.array_equal(features, state.interests.astype(np.float32))
    new = sim.update(state, slates, responses, rng)
    assert new.interests.shape == (7, 20) and new.budget.shape == (7,)
    expected = sim.expected_responses(state, slates)
    for name in ("click_probability", "watch_time", "quality", "budget_change"):
        assert expected[name].shape == (7, slate_size)
    assert np.all((expected["click_probability"] >= 0) & (expected["click_probability"] <= 1))


def test_interest_evolution_never_mutates_inputs():
    sim = small_interest_evolution()
    rng = np.random.default_rng(11)
    state = read_only(sim.reset(5, rng))
    slates = np.arange(10).reshape(5, 2)
    slates.setflags(write=False)
    before = (state.interests.copy(), state.budget.copy())
    for _ in range(20):  # read-only arrays would raise on any in-place write
        responses = sim.respond(state, slates, rng)
        new = sim.update(state, slates, responses, rng)
        sim.expected_responses(state, slates)
    assert np.array_equal(state.interests, before[0]) and np.array_equal(state.budget, before[1])
    assert new.interests is not state.interests


def rollout(sim, seed: int, num_users: int = 6, steps: int = 30):
    rng = np.random.default_rng(seed)
    state = sim.reset(num_users, rng)
    trace = []
    for _ in range(steps):
        slates = rng.integers(0, sim.catalog.num_items, (num_users, 2))
        slates[:, 1] = (slates[:, 0] + 1) % sim.catalog.num_items
        responses = sim.respond(state, slates, rng)
        state = sim.update(state, slates, responses, rng)
        trace.append((responses.clicked, responses.watch_time, *dataclasses.astuple(state)))
    return trace


def same_trace(a, b) -> bool:
    return all(
        np.array_equal(x, y)
        for step_a, step_b in zip(a, b, strict=True)
        for x, y in zip(step_a, step_b, strict=True)
    )


@pytest.mark.parametrize("make", [small_interest_evolution, small_long_term_satisfaction])
def test_same_seed_same_rollout(make):
    assert same_trace(rollout(make(), 12), rollout(make(), 12))
    assert not same_trace(rollout(make(), 12), rollout(make(), 13))


@pytest.mark.parametrize("make", [small_interest_evolution, small_long_term_satisfaction])
def test_batch_of_n_is_n_batches_of_one(make):
    # Each user's draws come from the stream in user order, so responding for the batch
    # equals responding for each user in turn (and the same for updates).
    sim = make()
    state = sim.reset(5, np.random.default_rng(14))
    slates = np.arange(10).reshape(5, 2)
    batch_rng, single_rng = np.random.default_rng(15), np.random.default_rng(15)
    batch = sim.respond(state, slates, batch_rng)
    users = [select_user(state, i) for i in range(5)]
    singles = [sim.respond(users[i], slates[i : i + 1], single_rng) for i in range(5)]
    assert np.array_equal(batch.clicked, np.concatenate([r.clicked for r in singles]))
    assert np.allclose(batch.watch_time, np.concatenate([r.watch_time for r in singles]))
    new = sim.update(state, slates, batch, batch_rng)
    new_singles = [
        sim.update(users[i], slates[i : i + 1], singles[i], single_rng) for i in range(5)
    ]
    for f in dataclasses.fields(new):
        stacked = np.concatenate([getattr(s, f.name) for s in new_singles])
        assert np.allclose(getattr(new, f.name), stacked), f.name


def select_user(state, index: int):
    return dataclasses.replace(
        state,
        **{f.name: getattr(state, f.name)[index : index + 1] for f in dataclasses.fields(state)},
    )


def test_interest_evolution_config_validation():
    with pytest.raises(TypeError, match="Did you mean 'time_budget'"):
        InterestEvolutionUsers(time_budgte=100.0)
    with pytest.raises(ValueError, match="min_normalizer must be ≤ −1"):
        InterestEvolutionConfig(min_normalizer=-0.5)
    with pytest.raises(ValueError, match="num_items must be > 0"):
        InterestEvolutionConfig(num_items=0)
    with pytest.raises(ValueError, match="no-click weight"):
        InterestEvolutionConfig(no_click_mass=-1.0)
    assert InterestEvolutionUsers(InterestEvolutionConfig(num_items=30)).catalog.num_items == 30


# --- long-term satisfaction: catalog and reset ------------------------------------------


def test_long_term_satisfaction_catalog_statistics():
    sim = LongTermSatisfactionUsers(num_items=20_000)
    catalog = sim.catalog
    assert catalog.features.shape == (20_000, 1) and catalog.feature_names == ("clickbait_score",)
    assert catalog.topics is None
    clickbait = catalog.hidden["clickbait_score"]
    assert np.allclose(catalog.features[:, 0], clickbait, atol=1e-7)
    # Uniform[0, 1): mean 0.5 (std error 0.002), std 1/√12 ≈ 0.2887.
    assert clickbait.min() >= 0.0 and clickbait.max() < 1.0
    assert clickbait.mean() == pytest.approx(0.5, abs=0.01)
    assert clickbait.std() == pytest.approx(1 / np.sqrt(12), abs=0.005)


def test_long_term_satisfaction_reset():
    sim = small_long_term_satisfaction()
    state = sim.reset(10_000, np.random.default_rng(16))
    # NPE₀ = (U − 0.5)/(1 − 0.7) ∈ [−5/3, 5/3), mean 0; SAT = σ(0.01·NPE₀); 60 steps.
    npe = state.net_positive_exposure
    assert npe.min() >= -5 / 3 and npe.max() < 5 / 3
    assert npe.mean() == pytest.approx(0.0, abs=0.03)
    assert np.allclose(state.satisfaction, 1 / (1 + np.exp(-0.01 * npe)))
    assert np.all(state.budget == 60.0)
    # The seed is honoured (RecSim's create_environment always used seed 0).
    other = sim.reset(10_000, np.random.default_rng(17))
    assert not np.array_equal(npe, other.net_positive_exposure)


# --- long-term satisfaction: response ---------------------------------------------------


def lts_state(num_users: int, npe: float, satisfaction: float, budget: float = 60.0):
    return LongTermSatisfactionState(
        net_positive_exposure=np.full(num_users, npe),
        satisfaction=np.full(num_users, satisfaction),
        budget=np.full(num_users, budget),
    )


def item_with_clickbait(sim: LongTermSatisfactionUsers, target: float) -> tuple[int, float]:
    clickbait = sim.catalog.hidden["clickbait_score"]
    item = int(np.abs(clickbait - target).argmin())
    return item, float(clickbait[item])


def test_the_first_item_is_always_clicked():
    sim = small_long_term_satisfaction()
    state = sim.reset(50, np.random.default_rng(18))
    slates = np.tile([3, 1, 4], (50, 1))
    responses = sim.respond(state, slates, np.random.default_rng(19))
    assert np.all(responses.clicked[:, 0]) and not responses.clicked[:, 1:].any()
    assert np.all(responses.watch_time[:, 0] > 0) and np.all(responses.watch_time[:, 1:] == 0)
    assert np.all(responses.completion == responses.clicked)
    assert responses.extras == {}


@pytest.mark.parametrize("target", [0.0, 0.25, 1.0])
def test_engagement_is_log_normal_between_kale_and_choc(target):
    sim = small_long_term_satisfaction(choc_stddev=2.0)
    item, c = item_with_clickbait(sim, target)
    state = lts_state(MANY, npe=0.0, satisfaction=0.5)
    responses = sim.respond(state, np.full((MANY, 1), item), np.random.default_rng(20))
    log_engagement = np.log(responses.watch_time[:, 0])
    # μ = (c·5 + (1 − c)·4)·0.5, e.g. 2.5 at c = 1 and 2 at c = 0;
    # s = c·2 + (1 − c)·1, e.g. 1.25 at c = 0.25.
    mu, s = (c * 5 + (1 - c) * 4) * 0.5, c * 2 + (1 - c) * 1
    assert log_engagement.mean() == pytest.approx(mu, abs=0.02)
    assert log_engagement.std() == pytest.approx(s, abs=0.02)
    # E[e] = exp(μ + s²/2) (log-normal mean; 3% covers the Monte-Carlo error).
    expected = sim.expected_responses(select_user(state, 0), np.array([[item]]))
    assert expected["watch_time"][0, 0] == pytest.approx(np.exp(mu + s * s / 2))
    assert responses.watch_time.mean() == pytest.approx(np.exp(mu + s * s / 2), rel=0.03)
    assert expected["click_probability"][0, 0] == 1.0


def test_engagement_scales_with_satisfaction():
    sim = small_long_term_satisfaction(choc_stddev=0.0, kale_stddev=0.0)
    item, c = item_with_clickbait(sim, 1.0)
    responses = sim.respond(lts_state(2, 0.0, 0.8), np.full((2, 1), item), np.random.default_rng(0))
    # Zero noise: e = exp((c·5 + (1 − c)·4)·0.8).
    assert np.allclose(responses.watch_time[:, 0], np.exp((c * 5 + (1 - c) * 4) * 0.8))


# --- long-term satisfaction: transition and termination ---------------------------------


def test_net_positive_exposure_update():
    sim = small_long_term_satisfaction(innovation_stddev=0.0)
    item, c = item_with_clickbait(sim, 0.8)
    state = lts_state(1, npe=1.0, satisfaction=0.5)
    slates = np.array([[item, 0]])
    responses = sim.respond(state, slates, np.random.default_rng(21))
    new = sim.update(state, slates, responses, np.random.default_rng(22))
    # NPE = 0.7·1 − 2·(c − 0.5) + 0 ≈ 0.7 − 0.6 = 0.1 (clickbait lowers exposure);
    # SAT = σ(0.01·NPE); budget 60 − 1 = 59.
    npe = 0.7 - 2.0 * (c - 0.5)
    assert new.net_positive_exposure[0] == pytest.approx(npe)
    assert new.satisfaction[0] == pytest.approx(1 / (1 + np.exp(-0.01 * npe)))
    assert new.budget[0] == 59.0
    expected = sim.expected_responses(state, np.array([[item]]))
    assert expected["next_net_positive_exposure"][0, 0] == pytest.approx(npe)


def test_innovation_noise():
    sim = small_long_term_satisfaction()
    item, c = item_with_clickbait(sim, 0.5)
    state = lts_state(MANY, npe=0.0, satisfaction=0.5)
    slates = np.full((MANY, 1), item)
    responses = sim.respond(state, slates, np.random.default_rng(23))
    new = sim.update(state, slates, responses, np.random.default_rng(24))
    # NPE = 0.7·0 − 2·(c − 0.5) + N(0, 0.05²).
    assert new.net_positive_exposure.mean() == pytest.approx(-2 * (c - 0.5), abs=0.001)
    assert new.net_positive_exposure.std() == pytest.approx(0.05, abs=0.001)


def test_kale_raises_and_choc_lowers_satisfaction():
    sim = small_long_term_satisfaction(innovation_stddev=0.0, sensitivity=1.0)
    kale, _ = item_with_clickbait(sim, 0.0)
    choc, _ = item_with_clickbait(sim, 1.0)
    rng = np.random.default_rng(25)
    kale_state = choc_state = lts_state(1, 0.0, 0.5)
    for _ in range(20):
        kale_state = sim.update(
            kale_state, np.array([[kale]]), sim.respond(kale_state, np.array([[kale]]), rng), rng
        )
        choc_state = sim.update(
            choc_state, np.array([[choc]]), sim.respond(choc_state, np.array([[choc]]), rng), rng
        )
    # The fixed points are ±1/(1 − 0.7) = ±3.33: SAT → σ(±3.33) ≈ 0.966 / 0.034.
    assert kale_state.satisfaction[0] > 0.95 and choc_state.satisfaction[0] < 0.05


def test_episode_lasts_the_time_budget():
    sim = small_long_term_satisfaction()
    rng = np.random.default_rng(26)
    state = sim.reset(4, rng)
    slates = np.arange(8).reshape(4, 2)
    for step in range(1, 61):
        responses = sim.respond(state, slates, rng)
        state = sim.update(state, slates, responses, rng)
        # 60 clicks of 1 step each: the 60th step ends the session (budget 0 ≤ 0).
        assert np.all(responses.session_end == (step == 60))
        assert np.all(responses.churned == responses.session_end)
        assert np.all(responses.gap_days == 0)
    assert np.all(state.budget == 0.0)


# --- long-term satisfaction: contract ----------------------------------------------------


@pytest.mark.parametrize("slate_size", [1, 3])
def test_long_term_satisfaction_shapes_and_dtypes(slate_size):
    sim = small_long_term_satisfaction()
    assert isinstance(sim, PrivilegedSimulator)
    rng = np.random.default_rng(27)
    state = sim.reset(6, rng)
    slates = np.arange(6 * slate_size).reshape(6, slate_size)
    responses = sim.respond(state, slates, rng)
    assert responses.clicked.shape == (6, slate_size) and responses.clicked.dtype == bool
    assert (
        responses.watch_time.shape == (6, slate_size) and responses.watch_time.dtype == np.float64
    )
    assert responses.session_end.dtype == bool and responses.gap_days.dtype == np.int64
    features = sim.user_features(state)
    assert features.shape == (6, 0) and features.dtype == np.float32
    new = sim.update(state, slates, responses, rng)
    for f in dataclasses.fields(new):
        assert getattr(new, f.name).shape == (6,)
    expected = sim.expected_responses(state, slates)
    assert expected["click_probability"].shape == expected["watch_time"].shape == (6, slate_size)


def test_long_term_satisfaction_never_mutates_inputs():
    sim = small_long_term_satisfaction()
    rng = np.random.default_rng(28)
    state = read_only(sim.reset(5, rng))
    before = [getattr(state, f.name).copy() for f in dataclasses.fields(state)]
    slates = np.arange(10).reshape(5, 2)
    slates.setflags(write=False)
    for _ in range(5):
        responses = sim.respond(state, slates, rng)
        sim.update(state, slates, responses, rng)
        sim.expected_responses(state, slates)
    after = [getattr(state, f.name) for f in dataclasses.fields(state)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_long_term_satisfaction_config_validation():
    with pytest.raises(ValueError, match="memory_discount must lie in"):
        LongTermSatisfactionConfig(memory_discount=1.0)
    with pytest.raises(TypeError, match="Did you mean 'sensitivity'"):
        LongTermSatisfactionUsers(sensitivty=0.5)
    with pytest.raises(ValueError, match="choc_stddev must be ≥ 0"):
        LongTermSatisfactionConfig(choc_stddev=-1.0)


# --- both ports ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [small_interest_evolution, small_long_term_satisfaction])
def test_passes_check_simulator(make):
    check_simulator(make(), slate_sizes=(1, 2, 3))


# --- documentation ------------------------------------------------------------------------


@pytest.mark.parametrize("module", [interest_evolution_module, long_term_satisfaction_module])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
