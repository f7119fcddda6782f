"""Property-based tests (hypothesis) of the engagement model's batch invariants, and of the
environment's spaces, over random batch sizes, slate sizes and seeds."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from conftest import NUM_ITEMS, assert_tree_equal, random_slots
from hypothesis import given, settings
from hypothesis import strategies as st

from loe_gym.envs import BUILT_IN_SIMULATORS
from loe_gym.simulator import (
    Responses,
    concatenate_states,
    select_responses,
    select_users,
    state_fields,
)
from loe_gym.spaces import replace_repeats
from simulators.engagement import EngagementUsers

# The learned simulator needs a fitted predictor: tests/test_learned_simulator.py checks it.
HAND_WRITTEN = sorted(name for name in BUILT_IN_SIMULATORS if name != "learned")

# One simulator for all examples: hypothesis runs many examples per test, and the model
# is a pure function of its arguments (no state between calls).
SIMULATOR = EngagementUsers(num_items=NUM_ITEMS)
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)

num_users_strategy = st.integers(1, 64)
slate_size_strategy = st.integers(1, 5)
seed_strategy = st.integers(0, 2**32 - 1)
num_steps_strategy = st.integers(0, 8)


def random_item_slates(rng: np.random.Generator, num_users: int, slate_size: int) -> np.ndarray:
    """``(num_users, slate_size)`` distinct item ids per row."""
    return random_slots(rng, num_users, NUM_ITEMS, slate_size).reshape(num_users, slate_size)


def advanced_state(
    num_users: int, slate_size: int, seed: int, num_steps: int
) -> tuple[Any, np.random.Generator]:
    """Users after ``num_steps`` random steps (so fatigue, drift and budgets have moved)."""
    rng = np.random.default_rng(seed)
    state = SIMULATOR.reset(num_users, rng)
    for _ in range(num_steps):
        slates = random_item_slates(rng, num_users, slate_size)
        responses = SIMULATOR.respond(state, slates, rng)
        state = SIMULATOR.update(state, slates, responses, rng)
    return state, rng


def assert_valid_state(state: Any) -> None:
    assert ((state.satisfaction >= 0) & (state.satisfaction <= 1)).all()
    assert (state.fatigue >= 0).all()
    assert ((state.interests >= -1) & (state.interests <= 1)).all()
    assert np.isfinite(state.budget).all()


def assert_valid_responses(responses: Responses, num_users: int, slate_size: int) -> None:
    clicked = responses.clicked
    assert clicked.shape == (num_users, slate_size) and clicked.dtype == np.bool_
    assert (clicked.sum(axis=1) <= 1).all(), "more than one click on a slate"
    assert ((responses.completion >= 0) & (responses.completion <= 1)).all()
    assert (responses.completion[~clicked] == 0).all()
    assert (responses.watch_time >= 0).all()
    assert (responses.watch_time[~clicked] == 0).all()
    assert (responses.session_end[responses.churned]).all(), "churned without session_end"
    returning = responses.session_end & ~responses.churned
    assert (responses.gap_days[returning] >= 1).all()
    assert (responses.gap_days[~returning] == 0).all()


@PROPERTY_SETTINGS
@given(num_users_strategy, slate_size_strategy, seed_strategy, num_steps_strategy)
def test_responses_and_states_stay_in_range(
    num_users: int, slate_size: int, seed: int, num_steps: int
) -> None:
    rng = np.random.default_rng(seed)
    state = SIMULATOR.reset(num_users, rng)
    assert_valid_state(state)
    for _ in range(num_steps + 1):
        slates = random_item_slates(rng, num_users, slate_size)
        expected = SIMULATOR.expected_responses(state, slates)
        click = expected["click_probability"]
        assert ((click >= 0) & (click <= 1)).all()
        assert ((expected["completion"] >= 0) & (expected["completion"] <= 1)).all()
        assert (expected["watch_time"] >= 0).all()
        responses = SIMULATOR.respond(state, slates, rng)
        assert_valid_responses(responses, num_users, slate_size)
        state = SIMULATOR.update(state, slates, responses, rng)
        assert_valid_state(state)
        # A session end refills the budget.
        np.testing.assert_array_equal(
            state.budget[responses.session_end], SIMULATOR.config.session_budget
        )


@PROPERTY_SETTINGS
@given(num_users_strategy, slate_size_strategy, seed_strategy, num_steps_strategy)
def test_inputs_are_never_mutated(
    num_users: int, slate_size: int, seed: int, num_steps: int
) -> None:
    state, rng = advanced_state(num_users, slate_size, seed, num_steps)
    slates = random_item_slates(rng, num_users, slate_size)
    state_before, slates_before = copy.deepcopy(state), slates.copy()
    SIMULATOR.expected_responses(state, slates)
    responses = SIMULATOR.respond(state, slates, rng)
    responses_before = copy.deepcopy(responses)
    SIMULATOR.update(state, slates, responses, rng)
    assert_tree_equal(state_fields(state), state_fields(state_before))
    np.testing.assert_array_equal(slates, slates_before)
    assert_tree_equal(dataclasses.asdict(responses), dataclasses.asdict(responses_before))


@PROPERTY_SETTINGS
@given(num_users_strategy, slate_size_strategy, seed_strategy, num_steps_strategy)
def test_expected_responses_of_a_batch_equal_each_user_alone(
    num_users: int, slate_size: int, seed: int, num_steps: int
) -> None:
    state, rng = advanced_state(num_users, slate_size, seed, num_steps)
    items = random_item_slates(rng, num_users, slate_size)
    batch = SIMULATOR.expected_responses(state, items)
    for user in range(num_users):
        alone = SIMULATOR.expected_responses(
            select_users(state, np.array([user])), items[user : user + 1]
        )
        assert set(alone) == set(batch)
        for name, values in batch.items():
            np.testing.assert_allclose(
                alone[name][0], values[user], rtol=1e-12, atol=0, err_msg=name
            )


@PROPERTY_SETTINGS
@given(num_users_strategy, slate_size_strategy, seed_strategy, num_steps_strategy)
def test_update_is_row_wise_independent(
    num_users: int, slate_size: int, seed: int, num_steps: int
) -> None:
    """Given fixed responses, updating the batch equals updating each user alone and
    concatenating (``select_responses`` slices ``Responses.internals`` by user too)."""
    state, rng = advanced_state(num_users, slate_size, seed, num_steps)
    slates = random_item_slates(rng, num_users, slate_size)
    responses = SIMULATOR.respond(state, slates, rng)
    batch = SIMULATOR.update(state, slates, responses, np.random.default_rng(0))
    singles = concatenate_states(
        [
            SIMULATOR.update(
                select_users(state, np.array([user])),
                slates[user : user + 1],
                select_responses(responses, np.array([user])),
                np.random.default_rng(0),
            )
            for user in range(num_users)
        ]
    )
    for name, values in state_fields(batch).items():
        single_values = getattr(singles, name)
        assert single_values.shape == values.shape and single_values.dtype == values.dtype
        np.testing.assert_allclose(single_values, values, rtol=1e-12, atol=1e-15, err_msg=name)


@PROPERTY_SETTINGS
@given(num_users_strategy, slate_size_strategy, seed_strategy)
def test_same_seed_same_responses(num_users: int, slate_size: int, seed: int) -> None:
    def run() -> list[Any]:
        rng = np.random.default_rng(seed)
        state = SIMULATOR.reset(num_users, rng)
        out = []
        for _ in range(3):
            slates = random_item_slates(rng, num_users, slate_size)
            responses = SIMULATOR.respond(state, slates, rng)
            state = SIMULATOR.update(state, slates, responses, rng)
            out.append((dataclasses.asdict(responses), state_fields(state)))
        return out

    assert_tree_equal(run(), run())


# ------------------------------------------------------------------- environment


@settings(max_examples=25, deadline=None)
@given(
    num_users=st.integers(1, 16),
    num_candidates=st.integers(1, 12),
    slate_size=st.integers(1, 4),
    history_length=st.integers(0, 6),
    autoreset_mode=st.sampled_from(["next_step", "same_step"]),
    simulator=st.sampled_from(HAND_WRITTEN),
    observation=st.sampled_from(["history", "recsim"]),
    seed=seed_strategy,
)
def test_vector_env_outputs_stay_inside_their_spaces(
    simulator: str,
    observation: str,
    num_users: int,
    num_candidates: int,
    slate_size: int,
    history_length: int,
    autoreset_mode: str,
    seed: int,
) -> None:
    slate_size = min(slate_size, num_candidates)
    env = gym.make_vec(
        "loe_gym/Recommendation-v0",
        num_envs=num_users,
        simulator=simulator,
        observation=observation,
        simulator_kwargs={"num_items": NUM_ITEMS},
        num_candidates=num_candidates,
        slate_size=slate_size,
        history_length=history_length,
        horizon_days=2,
        autoreset_mode=autoreset_mode,
    )
    obs, _ = env.reset(seed=seed)
    assert env.observation_space.contains(obs)
    env.action_space.seed(seed)
    for _ in range(10):
        actions = env.action_space.sample()
        assert env.action_space.contains(actions)
        obs, reward, terminated, truncated, info = env.step(actions)
        assert env.observation_space.contains(obs)
        assert reward.shape == (num_users,) and np.isfinite(reward).all() and (reward >= 0).all()
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
        assert not (terminated & truncated).any()
        for final in info.get("final_obs", []):
            assert final is None or env.single_observation_space.contains(final)


@settings(max_examples=60, deadline=None)
@given(
    num_candidates=st.integers(1, 10),
    slate_size=st.integers(1, 10),
    num_users=st.integers(1, 8),
    seed=seed_strategy,
)
def test_replacing_repeats_keeps_every_chosen_candidate(
    num_candidates: int, slate_size: int, num_users: int, seed: int
) -> None:
    slate_size = min(slate_size, num_candidates)
    rng = np.random.default_rng(seed)
    slots = rng.integers(0, num_candidates, (num_users, slate_size))
    before = slots.copy()
    repaired = replace_repeats(slots, num_candidates)
    np.testing.assert_array_equal(slots, before)  # input not mutated
    assert repaired.shape == slots.shape
    assert ((repaired >= 0) & (repaired < num_candidates)).all()
    for original, fixed in zip(slots.tolist(), repaired.tolist(), strict=True):
        assert len(set(fixed)) == slate_size
        assert set(original) <= set(fixed)
        if len(set(original)) == slate_size:
            assert fixed == original
