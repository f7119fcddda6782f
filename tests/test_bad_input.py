"""Every public entry point rejects bad input with an error naming the value and the fix,
and a rejected call changes nothing: the next valid call gives what it would have given
in an environment that never saw the bad one."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import NUM_ITEMS, SMALL, assert_tree_equal, make_vector, random_slots

import loe_gym
from loe_gym.envs import make_simulator
from simulators.engagement import EngagementUsers

ENGAGEMENT = "loe_gym/Engagement-v0"
SLATE = "loe_gym/EngagementSlate-v0"

# ------------------------------------------------------------------- actions (vector)

BAD_VECTOR_ACTIONS = {
    "index too large": (np.array([0, 20, 1]), r"in \[0, 20\); user 1 got 20"),
    "negative index": (np.array([0, -1, 1]), r"in \[0, 20\); user 1 got -1"),
    "too few users": (np.array([0, 1]), r"shape \(3,\).*got shape \(2,\)"),
    "extra axis": (np.zeros((3, 2), np.int64), r"shape \(3,\).*got shape \(3, 2\)"),
    "scalar": (np.int64(1), r"shape \(3,\).*got shape \(\)"),
    # Floats are rejected even when whole: an index that went through a float is a
    # bug upstream. The message names the dtype received and the fix.
    "fractional float": (np.array([0.5, 1.0, 1.0]), r"integer candidate indices.*float64"),
    "whole floats": (np.array([0.0, 1.0, 1.0]), r"integer candidate indices.*float64"),
    "NaN": (np.array([np.nan, 1.0, 1.0]), r"NaN"),
    "inf": (np.array([np.inf, 1.0, 1.0]), r"inf"),
    "strings": (np.array(["a", "b", "c"]), r"integer candidate indices"),
    "booleans": (np.array([True, False, True]), r"integer candidate indices"),
}

BAD_SLATE_ACTIONS = {
    "repeated candidate": (
        np.array([[0, 1, 2, 3, 4], [0, 1, 1, 3, 4]]),
        r"distinct.*\[0, 1, 1, 3, 4\]",
    ),
    "slate too short": (
        np.array([[0, 1, 2, 3], [0, 1, 5, 3]]),
        r"shape \(2, 5\).*slate_size=5.*\(2, 4\)",
    ),
    "index too large": (np.array([[0, 1, 2, 3, 4], [0, 1, 5, 3, 20]]), r"\[0, 20\); user 1"),
    "NaN in slate": (np.array([[0, 1, 2, 3, 4], [0, 1, np.nan, 3, 4]]), r"NaN"),
}


def _twin_vectors(
    env_id: str, num_envs: int, **options: Any
) -> tuple[Any, Any, np.random.Generator]:
    """Two identical envs stepped identically a few times, and the action generator."""
    first = make_vector(num_envs, env_id, horizon_days=30, **options)
    second = make_vector(num_envs, env_id, horizon_days=30, **options)
    config = first.unwrapped.config
    rng = np.random.default_rng(0)
    for env in (first, second):
        env.reset(seed=0)
    for _ in range(3):
        actions = random_slots(rng, num_envs, config.num_candidates, config.slate_size)
        assert_tree_equal(first.step(actions), second.step(actions))
    return first, second, rng


def _assert_twins_agree(first: Any, second: Any, rng: np.random.Generator, steps: int = 3) -> None:
    config = first.unwrapped.config
    for _ in range(steps):
        actions = random_slots(rng, first.num_envs, config.num_candidates, config.slate_size)
        assert_tree_equal(first.step(actions), second.step(actions))


@pytest.mark.parametrize("case", BAD_VECTOR_ACTIONS, ids=str)
def test_bad_vector_action_is_rejected_and_changes_nothing(case: str) -> None:
    actions, message = BAD_VECTOR_ACTIONS[case]
    env, twin, rng = _twin_vectors(ENGAGEMENT, 3)
    with pytest.raises((ValueError, TypeError), match=message):
        env.step(actions)
    _assert_twins_agree(env, twin, rng)


@pytest.mark.parametrize("case", BAD_SLATE_ACTIONS, ids=str)
def test_bad_slate_action_is_rejected_and_changes_nothing(case: str) -> None:
    actions, message = BAD_SLATE_ACTIONS[case]
    env, twin, rng = _twin_vectors(SLATE, 2, duplicate_slate_items="error")
    with pytest.raises((ValueError, TypeError), match=message):
        env.step(actions)
    _assert_twins_agree(env, twin, rng)


BAD_SINGLE_ACTIONS = {
    "index too large": (20, r"\[0, 20\).*got 20"),
    "negative index": (-1, r"\[0, 20\).*got -1"),
    "fractional float": (1.5, r"integer candidate indices.*float"),
    "NaN": (float("nan"), r"NaN"),
    # A Discrete action is one index; the error must say so rather than leak numpy's
    # "cannot reshape" message.
    "two indices": ([1, 2], r"(?i)action.*shape"),
}


@pytest.mark.parametrize("case", BAD_SINGLE_ACTIONS, ids=str)
def test_bad_single_action_is_rejected_and_changes_nothing(case: str) -> None:
    action, message = BAD_SINGLE_ACTIONS[case]
    env = gym.make(ENGAGEMENT, **SMALL)
    twin = gym.make(ENGAGEMENT, **SMALL)
    for e in (env, twin):
        e.reset(seed=0)
        e.step(3)
    with pytest.raises((ValueError, TypeError), match=message):
        env.step(action)
    for action in (4, 7, 1):
        assert_tree_equal(env.step(action), twin.step(action))


def test_single_slate_with_repeat_is_rejected() -> None:
    env = gym.make(SLATE, **SMALL, duplicate_slate_items="error")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"distinct candidates.*\[0, 0, 1, 2, 3\]"):
        env.step(np.array([0, 0, 1, 2, 3]))
    env.step(np.array([0, 5, 1, 2, 3]))


def test_slate_size_larger_than_num_candidates() -> None:
    with pytest.raises(ValueError, match=r"slate_size=6 cannot exceed num_candidates=5"):
        gym.make(ENGAGEMENT, slate_size=6, num_candidates=5, **SMALL)


def test_stepping_a_finished_user_in_disabled_mode_changes_nothing() -> None:
    env = make_vector(4, autoreset_mode="disabled")
    twin = make_vector(4, autoreset_mode="disabled")
    rng = np.random.default_rng(0)
    for e in (env, twin):
        e.reset(seed=0)
    done = np.zeros(4, bool)
    while not done.any():
        actions = random_slots(rng, 4, 20, 1)
        _, _, terminated, truncated, _ = env.step(actions)
        twin.step(actions)
        done = terminated | truncated
    with pytest.raises(RuntimeError, match=r"autoreset_mode='disabled'.*reset_mask"):
        env.step(random_slots(rng, 4, 20, 1))
    assert_tree_equal(*(e.reset(options={"reset_mask": done}) for e in (env, twin)))
    actions = random_slots(rng, 4, 20, 1)
    assert_tree_equal(env.step(actions), twin.step(actions))


# ------------------------------------------------------------------------ reset


def test_reset_with_a_list_of_seeds() -> None:
    env = make_vector(3)
    with pytest.raises(TypeError, match=r"one int seed, not a list of 3 seeds"):
        env.reset(seed=[1, 2, 3])


def test_first_reset_with_a_mask() -> None:
    env = make_vector(3)
    with pytest.raises(ValueError, match=r"first reset must reset every user"):
        env.reset(options={"reset_mask": np.array([True, False, True])})


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.array([1, 0, 1]), r"bool array of shape \(3,\), got int64"),
        (np.array([True, False]), r"bool array of shape \(3,\), got bool of shape \(2,\)"),
    ],
    ids=["ints", "wrong length"],
)
def test_bad_reset_mask_is_rejected_and_changes_nothing(mask: np.ndarray, message: str) -> None:
    env, twin, rng = _twin_vectors(ENGAGEMENT, 3)
    with pytest.raises(ValueError, match=message):
        env.reset(options={"reset_mask": mask})
    _assert_twins_agree(env, twin, rng)


def test_rejected_seeded_reset_does_not_reseed() -> None:
    """A reset rejected for its options must not have reseeded the generators."""
    env, twin, rng = _twin_vectors(ENGAGEMENT, 3)
    with pytest.raises(ValueError, match=r"reset_mask"):
        env.reset(seed=123, options={"reset_mask": np.array([1, 0, 1])})
    _assert_twins_agree(env, twin, rng)


def test_unknown_reset_option_is_rejected() -> None:
    """A misspelt option must not silently reset every user."""
    env, twin, rng = _twin_vectors(ENGAGEMENT, 3)
    with pytest.raises((ValueError, TypeError), match=r"reset_msk.*reset_mask"):
        env.reset(options={"reset_msk": np.array([True, False, True])})
    _assert_twins_agree(env, twin, rng)


@pytest.mark.parametrize("make", ["single", "vector", "wrapped"])
def test_step_before_reset(make: str) -> None:
    if make == "wrapped":
        # gym.make's OrderEnforcing wrapper answers first, with Gymnasium's own error.
        with pytest.raises(gym.error.ResetNeeded, match=r"before calling env.reset"):
            gym.make(ENGAGEMENT, **SMALL).step(0)
        return
    env = gym.make(ENGAGEMENT, **SMALL).unwrapped if make == "single" else make_vector(2)
    action = 0 if make == "single" else np.zeros(2, np.int64)
    with pytest.raises(RuntimeError, match=r"Call reset\(\) before step\(\)"):
        env.step(action)


# ----------------------------------------------------------------- construction


@pytest.mark.parametrize("num_envs", [0, -1, 1.5, True])
def test_non_positive_num_envs(num_envs: Any) -> None:
    with pytest.raises(ValueError, match=rf"num_envs .*positive integer, got {num_envs!r}"):
        gym.make_vec(ENGAGEMENT, num_envs=num_envs, **SMALL)


@pytest.mark.parametrize("name", ["num_candidates", "slate_size", "horizon_days"])
@pytest.mark.parametrize("value", [0, -3, 2.5, float("nan")])
def test_bad_positive_integer_options(name: str, value: Any) -> None:
    options = {**SMALL, name: value}
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer, got {value!r}"):
        gym.make(ENGAGEMENT, **options)
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer"):
        gym.make_vec(ENGAGEMENT, num_envs=2, **options)


def test_bad_history_length_and_step_cap() -> None:
    with pytest.raises(ValueError, match=r"history_length must be a non-negative integer, got -1"):
        gym.make(ENGAGEMENT, history_length=-1, **SMALL)
    with pytest.raises(
        ValueError, match=r"max_episode_steps must be a positive integer or None, got 0"
    ):
        gym.make_vec(ENGAGEMENT, num_envs=2, max_episode_steps=0, **SMALL)


def test_more_candidates_than_items() -> None:
    with pytest.raises(
        ValueError, match=rf"num_candidates=60 exceeds the catalog's {NUM_ITEMS} items"
    ):
        gym.make(ENGAGEMENT, num_candidates=60, **SMALL)


def test_unknown_env_option_suggests_the_near_match() -> None:
    with pytest.raises(TypeError, match=r"'num_candiates'.*Did you mean 'num_candidates'\?"):
        gym.make(ENGAGEMENT, num_candiates=5)
    with pytest.raises(TypeError, match=r"Did you mean 'num_candidates'\?"):
        gym.make_vec(ENGAGEMENT, num_envs=2, num_candiates=5)


def test_unknown_simulator_option_suggests_the_near_match() -> None:
    with pytest.raises(TypeError, match=r"'num_itmes'.*Did you mean 'num_items'\?"):
        gym.make(ENGAGEMENT, simulator_kwargs={"num_itmes": 5})


@pytest.mark.parametrize(
    ("option", "value", "suggestion"),
    [
        ("reward", "watchtime", "watch_time"),
        ("reward", "clicks", "click"),
        ("observation", "histroy", "history"),
        ("observation", "recsm", "recsim"),
    ],
)
def test_unknown_reward_or_observation(option: str, value: str, suggestion: str) -> None:
    with pytest.raises(
        ValueError, match=rf"Unknown {option} '{value}'\. Did you mean '{suggestion}'\?"
    ):
        gym.make(ENGAGEMENT, **{option: value}, **SMALL)


def test_unknown_autoreset_mode() -> None:
    with pytest.raises(ValueError, match=r"'same-step'\. Did you mean 'same_step'\?"):
        gym.make_vec(ENGAGEMENT, num_envs=2, autoreset_mode="same-step", **SMALL)


def test_unknown_env_id_suggests_the_near_match() -> None:
    # Gymnasium's own message (its registry answers before loe_gym is involved).
    with pytest.raises(gym.error.NameNotFound, match=r"`Engagment`.*Did you mean: `Engagement`\?"):
        gym.make("loe_gym/Engagment-v0")
    with pytest.raises(gym.error.NameNotFound, match=r"Did you mean: `Engagement`\?"):
        gym.make_vec("loe_gym/Engagment-v0", num_envs=2)
    with pytest.raises(gym.error.VersionNotFound, match=r"`v0`"):
        gym.make("loe_gym/Engagement-v1")


@pytest.mark.parametrize(
    ("simulator", "error", "message"),
    [
        (
            "simulators.engagement:EngagmentUsers",
            ImportError,  # as `from module import Name`: the CLI prints one line, no traceback
            r"has no attribute 'EngagmentUsers'.*Did you mean 'EngagementUsers'\?",
        ),
        (
            "simulators.engagment:EngagementUsers",
            ImportError,
            r"Cannot import module 'simulators.engagment'",
        ),
        ("engagment", ValueError, r"'package.module:ClassName'.*Did you mean 'engagement'\?"),
        (42, loe_gym.ContractError, r"42 is not a user simulator.*check_simulator"),
    ],
    ids=["class typo", "module typo", "built-in typo", "not a simulator"],
)
def test_bad_simulator_entry_point(simulator: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        gym.make("loe_gym/Recommendation-v0", simulator=simulator)


def test_simulator_kwargs_with_a_built_simulator() -> None:
    simulator = EngagementUsers(num_items=NUM_ITEMS)
    with pytest.raises(ValueError, match=r"\['num_items'\].*already built.*pass the class"):
        make_simulator(simulator, {"num_items": 5})


def test_simulator_kwargs_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"simulator_kwargs must be a mapping.*got list"):
        gym.make(ENGAGEMENT, simulator_kwargs=[("num_items", 5)])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("click_bias", float("nan"), r"click_bias must be finite, got nan"),
        ("appeal_noise", float("nan"), r"appeal_noise must be finite, got nan"),
        ("session_budget", float("inf"), r"session_budget must be finite, got inf"),
        ("num_items", "50", r"num_items must be a number, got '50'"),
        # The config must name the field itself: Gymnasium appends the kwargs to any
        # error raised while making the env, so "num_items.*50.5" alone would match.
        ("num_items", 50.5, r"EngagementConfig\.num_items must be .*50\.5"),
        ("num_items", 0, r"num_items must be > 0, got 0"),
        ("num_topics", 2.5, r"EngagementConfig\.num_topics must be .*2\.5"),
        ("churn_gap_days", 2.5, r"EngagementConfig\.churn_gap_days must be .*2\.5"),
        ("catalog_seed", 1.5, r"EngagementConfig\.catalog_seed must be .*1\.5"),
        ("satisfaction_rate", 1.5, r"satisfaction_rate must lie in \[0, 1\], got 1\.5"),
    ],
    ids=[
        "NaN bias",
        "NaN noise",
        "inf budget",
        "string size",
        "fractional size",
        "zero size",
        "fractional topics",
        "fractional churn gap",
        "fractional seed",
        "rate > 1",
    ],
)
def test_bad_simulator_config_values(key: str, value: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        gym.make(ENGAGEMENT, simulator_kwargs={"num_items": NUM_ITEMS, key: value})


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
def test_unsupported_render_mode_warns_and_does_not_render() -> None:
    """Gymnasium lets clients ask for any mode (SB3's make_vec_env asks for rgb_array):
    the env warns naming the supported one and renders nothing."""
    with pytest.warns(UserWarning, match=r"render_mode='human' is not supported.*ansi"):
        env = gym.make(ENGAGEMENT, render_mode="human", **SMALL)
    assert env.unwrapped.render() is None
