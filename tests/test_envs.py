"""The Gymnasium environments: API checkers, determinism, single-vs-vector consistency and
the documented semantics of the batched core (`loe_gym.RecommendationVectorEnv`)."""

from __future__ import annotations

import copy
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    NUM_ITEMS,
    SMALL,
    assert_tree_equal,
    make_vector,
    random_single_action,
    random_slots,
    registry_options,
    rollout_single,
    rollout_vector,
    row,
    tree_equal,
)
from gymnasium.utils.env_checker import check_env as gym_check_env
from scipy import stats
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import loe_gym
from loe_gym.envs.vector_env import RecommendationVectorEnv

# Warnings we accept from the checkers, each with the reason. Any other warning fails.
ACCEPTED_GYMNASIUM_WARNINGS = (
    # watch_time in history_feedback, the context counters (days, steps) and RecSim's
    # response have no finite upper (or lower) bound by nature.
    "A Box observation space maximum value is infinity",
    "A Box observation space minimum value is -infinity",
)
ACCEPTED_SB3_WARNINGS = (
    # candidate_features / history_feedback (and RecSim's doc / response) are 2-D
    # matrices by design; MultiInputPolicy flattens them.
    "has an unconventional shape",
    *ACCEPTED_GYMNASIUM_WARNINGS,
)

INFO_KEYS = (
    "acted",
    "user_id",
    "life",
    "day",
    "session",
    "step_in_session",
    "slate",
    "clicked",
    "watch_time",
    "completion",
    "session_end",
    "gap_days",
    "churned",
    "returned_next_day",
    "reward_parts",
)
PER_ITEM_INFO_KEYS = ("slate", "clicked", "watch_time", "completion")


def unexpected_warnings(
    caught: list[warnings.WarningMessage], accepted: tuple[str, ...]
) -> list[str]:
    return [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not any(text in str(w.message) for text in accepted)
    ]


def assert_in_space(space: gym.spaces.Dict, obs: dict[str, np.ndarray]) -> None:
    """``space.contains(obs)``, naming the offending key when it fails."""
    if space.contains(obs):
        return
    for key, subspace in space.spaces.items():
        value = obs.get(key)
        assert value is not None, f"observation lacks key {key!r}"
        assert subspace.contains(value), (
            f"observation[{key!r}] (dtype {np.asarray(value).dtype}, shape "
            f"{np.shape(value)}, min {np.min(value)}, max {np.max(value)}) is outside {subspace}"
        )
    raise AssertionError(f"observation keys {sorted(obs)} differ from {sorted(space.spaces)}")


# ------------------------------------------------------------------------- checkers


def test_registry_lists_the_documented_ids() -> None:
    for env_id in (
        "loe_gym/Engagement-v0",
        "loe_gym/EngagementSlate-v0",
        "loe_gym/InterestEvolution-v0",
        "loe_gym/LongTermSatisfaction-v0",
        "loe_gym/Recommendation-v0",
    ):
        assert env_id in loe_gym.ENVIRONMENTS
        assert env_id in gym.registry


def test_gymnasium_check_env(env_id: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(gym.make(env_id).unwrapped)
    assert not unexpected_warnings(caught, ACCEPTED_GYMNASIUM_WARNINGS)


def test_sb3_check_env(env_id: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(gym.make(env_id), warn=True)
    assert not unexpected_warnings(caught, ACCEPTED_SB3_WARNINGS)


# ---------------------------------------------------------------------- determinism


def test_single_env_same_seed_same_rollout(env_id: str) -> None:
    first = rollout_single(gym.make(env_id, **registry_options()), seed=3, num_steps=150)
    second = rollout_single(gym.make(env_id, **registry_options()), seed=3, num_steps=150)
    assert_tree_equal(first, second)


def test_vector_env_same_seed_same_rollout(env_id: str) -> None:
    first = rollout_vector(gym.make_vec(env_id, num_envs=4, **registry_options()), 3, 100)
    second = rollout_vector(gym.make_vec(env_id, num_envs=4, **registry_options()), 3, 100)
    assert_tree_equal(first, second)


def test_same_step_vector_env_same_seed_same_rollout(env_id: str) -> None:
    options = registry_options(autoreset_mode="same_step")
    first = rollout_vector(gym.make_vec(env_id, num_envs=4, **options), 3, 100)
    second = rollout_vector(gym.make_vec(env_id, num_envs=4, **options), 3, 100)
    assert_tree_equal(first, second)


def test_different_seeds_differ(env_id: str) -> None:
    single = [rollout_single(gym.make(env_id, **registry_options()), s, 20) for s in (3, 4)]
    assert not tree_equal(*single)
    vector = [
        rollout_vector(gym.make_vec(env_id, num_envs=4, **registry_options()), s, 20)
        for s in (3, 4)
    ]
    assert not tree_equal(*vector)


def test_reseeding_the_same_env_reproduces_the_rollout(env_id: str) -> None:
    """``reset(seed=s)`` on a used env restarts exactly what a fresh env does (Gymnasium's
    check_env relies on it), info included."""
    env = gym.make(env_id, **registry_options())
    first = rollout_single(env, seed=3, num_steps=40)
    second = rollout_single(env, seed=3, num_steps=40)
    assert_tree_equal(first, second)
    vector = gym.make_vec(env_id, num_envs=3, **registry_options())
    first = rollout_vector(vector, 3, 40)
    second = rollout_vector(vector, 3, 40)
    assert_tree_equal(first, second)


def test_unseeded_first_reset_follows_gymnasium_seeding() -> None:
    """Without a seed the first reset draws from ``Env.np_random``: two envs differ."""
    obs = [gym.make("loe_gym/Engagement-v0", **SMALL).reset()[0] for _ in range(2)]
    assert not tree_equal(obs[0], obs[1])


# ------------------------------------------------------------- single vs vector env


def test_single_env_equals_vector_env_of_one_user(env_id: str) -> None:
    options = registry_options()
    single = gym.make(env_id, **options)
    vector = gym.make_vec(env_id, num_envs=1, **options)
    slate_size = single.unwrapped.config.slate_size
    num_candidates = single.unwrapped.config.num_candidates
    single_obs, single_info = single.reset(seed=11)
    vector_obs, vector_info = vector.reset(seed=11)
    assert_tree_equal(single_obs, row(vector_obs, 0))
    assert_tree_equal(single_info, row(vector_info, 0))
    rng = np.random.default_rng(5)
    for _ in range(300):
        action = random_single_action(rng, num_candidates, slate_size)
        batched = np.asarray(action)[None] if slate_size > 1 else np.array([action])
        obs, reward, terminated, truncated, info = single.step(action)
        v_obs, v_reward, v_terminated, v_truncated, v_info = vector.step(batched)
        assert_tree_equal(obs, row(v_obs, 0))
        assert reward == v_reward[0]
        assert terminated == v_terminated[0]
        assert truncated == v_truncated[0]
        assert_tree_equal(info, row(v_info, 0))
        if terminated or truncated:
            break


def _first_episode_stats_vector(env_id: str, num_users: int, seed: int) -> np.ndarray:
    """``(num_users, 2)`` return and length of each user's first episode."""
    env = gym.make_vec(env_id, num_envs=num_users, **SMALL)
    env.reset(seed=seed)
    config = env.unwrapped.config
    rng = np.random.default_rng(seed + 1)
    totals = np.zeros(num_users)
    lengths = np.zeros(num_users, np.int64)
    finished = np.zeros(num_users, bool)
    while not finished.all():
        actions = random_slots(rng, num_users, config.num_candidates, config.slate_size)
        _, reward, terminated, truncated, info = env.step(actions)
        counting = ~finished & info["acted"]
        totals += np.where(counting, reward, 0.0)
        lengths += counting
        finished |= counting & (terminated | truncated)
    return np.stack([totals, lengths], axis=1)


def _first_episode_stats_single(env_id: str, num_users: int, seed: int) -> np.ndarray:
    env = gym.make(env_id, **SMALL)
    config = env.unwrapped.config
    rng = np.random.default_rng(seed + 1)
    out = np.zeros((num_users, 2))
    for user in range(num_users):
        env.reset(seed=seed * 100_000 + user)
        done = False
        while not done:
            action = random_single_action(rng, config.num_candidates, config.slate_size)
            _, reward, terminated, truncated, _ = env.step(action)
            out[user] += (reward, 1)
            done = terminated or truncated
    return out


@pytest.mark.parametrize("env_id", ["loe_gym/Engagement-v0", "loe_gym/EngagementSlate-v0"])
def test_vector_env_matches_single_envs_in_distribution(env_id: str) -> None:
    """N users of one vector env behave like N single envs (same model, other streams).

    The per-user statistics (episode return, episode length, reward per step) are
    i.i.d. across users in both samples, so the difference of the two sample means has
    standard error sqrt(var_v / N + var_s / N). Under equal distributions the z-score is
    ~N(0, 1); we allow |z| < 4 (a false alarm has probability ~6e-5 per statistic, and
    the seeds are fixed, so the test is deterministic). With N = 200 and an episode length
    std of ~13 steps this detects a shift of the mean length by ~5 steps (~13%).
    Only the engagement ids: the vector/single plumbing is shared by every simulator.
    """
    num_users = 200
    vector = _first_episode_stats_vector(env_id, num_users, seed=1)
    single = _first_episode_stats_single(env_id, num_users, seed=2)
    assert vector.shape == single.shape
    samples = {
        "episode return": (vector[:, 0], single[:, 0]),
        "episode length": (vector[:, 1], single[:, 1]),
        "reward per step": (vector[:, 0] / vector[:, 1], single[:, 0] / single[:, 1]),
    }
    for name, (a, b) in samples.items():
        standard_error = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        z = (a.mean() - b.mean()) / standard_error
        assert abs(z) < 4.0, (
            f"{name}: vector mean {a.mean():.3f} vs single {b.mean():.3f}, z={z:.2f}"
        )


# --------------------------------------------------------------- spaces and actions


@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
def test_observations_stay_inside_the_space(env_id: str, autoreset_mode: str) -> None:
    env = gym.make_vec(env_id, num_envs=4, autoreset_mode=autoreset_mode, **registry_options())
    obs, _ = env.reset(seed=0)
    assert_in_space(env.observation_space, obs)
    num_users, config = env.num_envs, env.unwrapped.config
    rng = np.random.default_rng(0)
    for _ in range(150):
        actions = random_slots(rng, num_users, config.num_candidates, config.slate_size)
        obs, _, _, _, info = env.step(actions)
        assert_in_space(env.observation_space, obs)
        for final in info.get("final_obs", []):
            if final is not None:
                assert_in_space(env.single_observation_space, final)


def test_single_env_observations_stay_inside_the_space(env_id: str) -> None:
    env = gym.make(env_id, **registry_options())
    config = env.unwrapped.config
    obs, _ = env.reset(seed=0)
    assert_in_space(env.observation_space, obs)
    rng = np.random.default_rng(0)
    for _ in range(150):
        obs, *_, terminated, truncated, _ = env.step(
            random_single_action(rng, config.num_candidates, config.slate_size)
        )
        assert_in_space(env.observation_space, obs)
        if terminated or truncated:
            obs, _ = env.reset()
            assert_in_space(env.observation_space, obs)


def test_action_space_samples_are_valid_actions(env_id: str) -> None:
    """Samples of the action spaces are accepted (slates: distinct candidates)."""
    single = gym.make(env_id, **registry_options())
    single.action_space.seed(0)
    single.reset(seed=0)
    vector = gym.make_vec(env_id, num_envs=5, **registry_options())
    vector.action_space.seed(0)
    vector.reset(seed=0)
    for _ in range(30):
        action = single.action_space.sample()
        assert single.action_space.contains(action)
        *_, terminated, truncated, _ = single.step(action)
        if terminated or truncated:
            single.reset()
        actions = vector.action_space.sample()
        assert vector.action_space.contains(actions)
        vector.step(actions)


def test_slate_space_rejects_repeats() -> None:
    env = gym.make("loe_gym/EngagementSlate-v0", **SMALL)
    space = env.action_space
    assert space.contains(np.array([0, 1, 2, 3, 4]))
    assert not space.contains(np.array([0, 1, 1, 3, 4]))
    samples = np.stack([space.sample() for _ in range(200)])
    assert all(len(set(s)) == samples.shape[1] for s in samples.tolist())


def test_replacing_repeated_slate_items_keeps_the_chosen_candidates() -> None:
    """``duplicate_slate_items="replace"``: repeats are replaced by unused candidates; every
    distinct candidate the agent chose stays in the slate; slates without repeats pass."""
    env = make_vector(6, "loe_gym/EngagementSlate-v0", duplicate_slate_items="replace")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = rng.integers(0, 20, (6, 5))
        actions[0] = [3, 3, 3, 3, 3]
        actions[1] = [0, 1, 2, 3, 4]
        candidates = obs["candidate_ids"]
        obs, _, _, _, info = env.step(actions)
        for user in range(6):
            shown = info["slate"][user]
            if not info["acted"][user]:
                continue
            assert len(set(shown.tolist())) == 5
            chosen = set(candidates[user, actions[user]].tolist())
            assert chosen <= set(shown.tolist())
            if len(set(actions[user].tolist())) == 5:
                np.testing.assert_array_equal(shown, candidates[user, actions[user]])


def test_slate_shows_the_chosen_candidates(engagement_id: str) -> None:
    env = make_vector(5, engagement_id, horizon_days=30)
    obs, _ = env.reset(seed=0)
    config = env.unwrapped.config
    rng = np.random.default_rng(0)
    for _ in range(50):
        actions = random_slots(rng, 5, config.num_candidates, config.slate_size)
        slots = actions.reshape(5, -1)
        expected = np.take_along_axis(obs["candidate_ids"], slots, axis=1)
        obs, _, _, _, info = env.step(actions)
        np.testing.assert_array_equal(info["slate"], expected)


# ---------------------------------------------------------------------- autoreset


def test_next_step_autoreset_only_resets_finished_users(engagement_id: str) -> None:
    env = make_vector(8, engagement_id)
    obs, info = env.reset(seed=0)
    config = env.unwrapped.config
    rng = np.random.default_rng(0)
    seen_ids = set(info["user_id"].tolist())
    done = np.zeros(8, bool)
    resets = 0
    for _ in range(300):
        actions = random_slots(rng, 8, config.num_candidates, config.slate_size)
        obs, reward, terminated, truncated, info = env.step(actions)
        np.testing.assert_array_equal(info["acted"], ~done)
        for user in np.flatnonzero(done):
            resets += 1
            assert reward[user] == 0.0
            assert not terminated[user] and not truncated[user]
            assert not info["session_end"][user] and not info["churned"][user]
            assert (obs["history_item_ids"][user] == -1).all()
            assert (obs["history_feedback"][user] == 0).all()
            assert (obs["context"][user] == 0).all()
            assert info["user_id"][user] not in seen_ids
            seen_ids.add(int(info["user_id"][user]))
        done = terminated | truncated
        assert "final_obs" not in info
    assert resets > 5


def test_same_step_autoreset_reports_final_observations(engagement_id: str) -> None:
    env = make_vector(8, engagement_id, autoreset_mode="same_step")
    obs, _ = env.reset(seed=0)
    config = env.unwrapped.config
    rng = np.random.default_rng(0)
    finals = 0
    for _ in range(300):
        actions = random_slots(rng, 8, config.num_candidates, config.slate_size)
        obs, _, terminated, truncated, info = env.step(actions)
        assert info["acted"].all()
        done = terminated | truncated
        if not done.any():
            assert "final_obs" not in info and "_final_obs" not in info
            continue
        np.testing.assert_array_equal(info["_final_obs"], done)
        assert info["final_obs"].shape == (8,)
        for user in range(8):
            final = info["final_obs"][user]
            if not done[user]:
                assert final is None
                continue
            finals += 1
            assert_in_space(env.single_observation_space, final)
            # The final observation is the finished user's: the slate just shown ends
            # its history, and its day is where the episode stopped.
            s = config.slate_size
            np.testing.assert_array_equal(final["history_item_ids"][-s:], info["slate"][user])
            if truncated[user]:
                assert final["context"][0] >= config.horizon_days
            # The returned observation is the new user's.
            assert (obs["history_item_ids"][user] == -1).all()
            assert (obs["context"][user] == 0).all()
    assert finals > 5


def test_disabled_autoreset_raises_and_reset_mask_resumes(engagement_id: str) -> None:
    env = make_vector(6, engagement_id, autoreset_mode="disabled")
    obs, info = env.reset(seed=0)
    config = env.unwrapped.config
    rng = np.random.default_rng(0)
    done = np.zeros(6, bool)
    while not done.any():
        actions = random_slots(rng, 6, config.num_candidates, config.slate_size)
        obs, _, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
    finished = [int(u) for u in np.flatnonzero(done)]
    with pytest.raises(RuntimeError, match=r"reset_mask") as error:
        env.step(random_slots(rng, 6, config.num_candidates, config.slate_size))
    assert str(finished[0]) in str(error.value)
    before = copy.deepcopy(obs)
    old_ids = info["user_id"].copy()
    obs, reset_info = env.reset(options={"reset_mask": done})
    for key in obs:
        np.testing.assert_array_equal(obs[key][~done], before[key][~done])
    assert (obs["history_item_ids"][done] == -1).all()
    np.testing.assert_array_equal(reset_info["user_id"][~done], old_ids[~done])
    assert set(reset_info["user_id"][done].tolist()).isdisjoint(old_ids.tolist())
    _, _, _, _, info = env.step(random_slots(rng, 6, config.num_candidates, config.slate_size))
    assert info["acted"].all()


def test_reset_mask_resets_only_masked_users() -> None:
    env = make_vector(4, horizon_days=30)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, _, _, _, info = env.step(random_slots(rng, 4, 20, 1))
    mask = np.array([True, False, True, False])
    before, old_ids = copy.deepcopy(obs), info["user_id"].copy()
    obs, reset_info = env.reset(options={"reset_mask": mask})
    for key in obs:
        np.testing.assert_array_equal(obs[key][~mask], before[key][~mask], err_msg=key)
    assert (obs["history_item_ids"][mask] == -1).all()
    assert (obs["context"][mask] == 0).all()
    assert not np.array_equal(obs["candidate_ids"][mask], before["candidate_ids"][mask])
    np.testing.assert_array_equal(reset_info["user_id"][~mask], old_ids[~mask])
    assert reset_info["user_id"][mask].min() > old_ids.max()
    _, _, _, _, info = env.step(random_slots(rng, 4, 20, 1))
    assert info["acted"].all()
    np.testing.assert_array_equal(info["life"], mask.astype(np.int64))


def test_earlier_observations_are_never_mutated() -> None:
    """The core replaces its arrays instead of writing into them (observations share them)."""
    env = make_vector(4, autoreset_mode="same_step")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    kept = []
    for step in range(60):
        obs, *_ = env.step(random_slots(rng, 4, 20, 1))
        kept.append((obs, copy.deepcopy(obs)))
        if step == 30:
            obs, _ = env.reset(options={"reset_mask": np.array([True, False, False, True])})
            kept.append((obs, copy.deepcopy(obs)))
    for live, snapshot in kept:
        assert_tree_equal(live, snapshot)


# ------------------------------------------------------------------- episode ends


def _run(env: Any, num_steps: int, seed: int = 0) -> list[tuple[Any, ...]]:
    env.reset(seed=seed)
    config = env.unwrapped.config
    rng = np.random.default_rng(seed)
    return [
        env.step(random_slots(rng, env.num_envs, config.num_candidates, config.slate_size))
        for _ in range(num_steps)
    ]


def test_truncation_at_the_horizon() -> None:
    horizon = 2
    env = make_vector(16, horizon_days=horizon)
    truncations = 0
    for _, _, terminated, truncated, info in _run(env, 300):
        acted = info["acted"]
        returns = info["session_end"] & ~info["churned"]
        next_day = info["day"] + np.where(returns, info["gap_days"], 0)
        np.testing.assert_array_equal(truncated, acted & ~terminated & (next_day >= horizon))
        assert not (terminated & truncated).any()
        # A user never acts on or after the horizon day.
        assert (info["day"][acted] < horizon).all()
        truncations += truncated.sum()
    assert truncations > 10


def test_max_episode_steps_truncates() -> None:
    env = make_vector(6, horizon_days=30, max_episode_steps=5)
    steps = np.zeros(6, np.int64)
    for _, _, terminated, truncated, info in _run(env, 60):
        steps = np.where(info["acted"], steps + 1, 0)
        assert (steps <= 5).all()
        np.testing.assert_array_equal(truncated, ~terminated & (steps == 5))
        steps = np.where(terminated | truncated, 0, steps)


def test_terminated_on_churn() -> None:
    # Short sessions (3 minutes) and a 1-day churn threshold: a session end churns with
    # probability 1 − σ(−1.5 + 5·s) ≈ 0.27 at s = 0.5, so churn happens often.
    env = make_vector(
        16,
        horizon_days=30,
        simulator_kwargs={"num_items": NUM_ITEMS, "churn_gap_days": 1, "session_budget": 3.0},
    )
    churns = 0
    for _, _, terminated, truncated, info in _run(env, 200):
        np.testing.assert_array_equal(terminated, info["churned"] & info["acted"])
        assert not (terminated & truncated).any()
        assert (info["session_end"][terminated]).all()
        assert (info["gap_days"][terminated] == 0).all()
        churns += terminated.sum()
    assert churns > 10


def test_single_env_refuses_to_step_after_the_episode_ends() -> None:
    env = gym.make("loe_gym/Engagement-v0", **SMALL).unwrapped
    env.reset(seed=0)
    done = False
    while not done:
        *_, terminated, truncated, _ = env.step(0)
        done = terminated or truncated
    with pytest.raises(RuntimeError, match=r"call reset\(\)"):
        env.step(0)
    env.reset()
    env.step(0)


# --------------------------------------------------------------------------- info


def test_info_keys_are_documented_and_batched(env_id: str) -> None:
    doc = RecommendationVectorEnv.__doc__ or ""
    info_section = doc.split("## Info", 1)[1].split("##", 1)[0]
    env = gym.make_vec(env_id, num_envs=3, **registry_options())
    _, reset_info = env.reset(seed=0)
    assert reset_info["user_id"].shape == (3,)
    slate_size = env.unwrapped.config.slate_size
    for _, _, _, _, info in _run(env, 20):
        for key in INFO_KEYS:
            assert f"``{key}``" in info_section, f"{key!r} is not documented"
            assert key in info, f"info lacks {key!r}"
            if key == "reward_parts":
                assert set(info[key]) == {"watch_time", "click"}
                assert all(np.shape(v) == (3,) for v in info[key].values())
            elif key in PER_ITEM_INFO_KEYS:
                assert np.shape(info[key]) == (3, slate_size), key
            else:
                assert np.shape(info[key]) == (3,), key


@pytest.mark.parametrize("reward", ["watch_time", "click"])
@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
def test_reward_equals_its_named_part(engagement_id: str, reward: str, autoreset_mode: str) -> None:
    env = make_vector(8, engagement_id, reward=reward, autoreset_mode=autoreset_mode)
    for _, rewards, _, _, info in _run(env, 200):
        acted = info["acted"]
        parts = info["reward_parts"]
        np.testing.assert_allclose(
            parts["watch_time"][acted], info["watch_time"][acted].sum(axis=1)
        )
        np.testing.assert_array_equal(parts["click"][acted], info["clicked"][acted].sum(axis=1))
        np.testing.assert_allclose(rewards[acted], parts[reward][acted])


def test_reset_only_step_reports_no_engagement(engagement_id: str) -> None:
    """In next_step mode a reset-only step shows nothing: reward 0 *and* reward parts,
    clicks, watch time and return events 0, so that ``reward == reward_parts[reward]``
    holds on every row and loggers summing the parts count nothing twice."""
    env = make_vector(8, engagement_id)
    reset_rows = 0
    for _, rewards, _, _, info in _run(env, 200):
        idle = ~info["acted"]
        reset_rows += idle.sum()
        assert (rewards[idle] == 0).all()
        assert (info["reward_parts"]["watch_time"][idle] == 0).all()
        assert (info["reward_parts"]["click"][idle] == 0).all()
        assert not info["clicked"][idle].any()
        assert (info["watch_time"][idle] == 0).all()
        assert (info["gap_days"][idle] == 0).all()
    assert reset_rows > 5


def test_user_id_is_unique_per_user_life() -> None:
    env = make_vector(8)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    current = info["user_id"].copy()
    episodes = np.zeros(8, np.int64)
    seen = set(current.tolist())
    assert len(seen) == 8
    for step in range(300):
        _, _, _, _, info = env.step(random_slots(rng, 8, 20, 1))
        for user in range(8):
            uid = int(info["user_id"][user])
            if info["acted"][user]:
                assert uid == current[user]
            else:
                assert uid not in seen
                seen.add(uid)
                current[user] = uid
                episodes[user] += 1
        np.testing.assert_array_equal(info["life"], episodes)
        if step == 150:
            mask = np.array([True] * 3 + [False] * 5)
            _, reset_info = env.reset(options={"reset_mask": mask})
            for user in np.flatnonzero(mask):
                uid = int(reset_info["user_id"][user])
                assert uid not in seen
                seen.add(uid)
                current[user] = uid
                episodes[user] += 1


@pytest.mark.parametrize("history_length", [10, 3])
def test_history_shifts_in_the_shown_items(engagement_id: str, history_length: int) -> None:
    env = make_vector(6, engagement_id, history_length=history_length)
    obs, _ = env.reset(seed=0)
    config = env.unwrapped.config
    s, h = config.slate_size, history_length
    k = min(s, h)
    rng = np.random.default_rng(0)
    for _ in range(150):
        previous = obs
        obs, _, _, _, info = env.step(random_slots(rng, 6, config.num_candidates, s))
        for user in range(6):
            items = obs["history_item_ids"][user]
            feedback = obs["history_feedback"][user]
            if not info["acted"][user]:
                assert (items == -1).all() and (feedback == 0).all()
                continue
            # The slate just shown is last (its last k items when it is longer than h),
            # with its feedback: clicked, watch_time, completion.
            np.testing.assert_array_equal(items[-k:], info["slate"][user, -k:])
            expected = np.stack(
                [info["clicked"][user], info["watch_time"][user], info["completion"][user]],
                axis=-1,
            )[-k:].astype(np.float32)
            np.testing.assert_array_equal(feedback[-k:], expected)
            if h > s:
                np.testing.assert_array_equal(items[:-s], previous["history_item_ids"][user, s:])
                np.testing.assert_array_equal(feedback[:-s], previous["history_feedback"][user, s:])


def test_history_length_zero() -> None:
    env = make_vector(3, history_length=0)
    obs, _ = env.reset(seed=0)
    assert obs["history_item_ids"].shape == (3, 0)
    for obs, *_ in _run(env, 5):
        assert obs["history_feedback"].shape == (3, 0, 3)
        assert env.observation_space.contains(obs)


def test_context_follows_days_and_sessions() -> None:
    env = make_vector(8, horizon_days=30)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        previous = obs["context"]
        obs, _, terminated, truncated, info = env.step(random_slots(rng, 8, 20, 1))
        acted = info["acted"]
        # The step describes the visit the previous observation showed.
        np.testing.assert_array_equal(info["day"][acted], previous[acted, 0])
        np.testing.assert_array_equal(info["step_in_session"][acted], previous[acted, 1])
        live = acted & ~(terminated | truncated)
        ended = info["session_end"]
        returns = ended & ~info["churned"]
        context = obs["context"]
        np.testing.assert_array_equal(
            context[live, 0], (info["day"] + np.where(returns, info["gap_days"], 0))[live]
        )
        np.testing.assert_array_equal(
            context[live, 1], np.where(ended, 0, info["step_in_session"] + 1)[live]
        )
        np.testing.assert_array_equal(context[live & returns, 2], info["gap_days"][live & returns])


# --------------------------------------------------------------------- candidates


@pytest.mark.parametrize("num_candidates", [20, 5], ids=["argpartition", "rejection"])
def test_candidates_are_distinct_and_uniform(num_candidates: int) -> None:
    """Both retrieval paths (20 of 50 items: argpartition of random keys; 5 of 50:
    rejection of rows with repeats) give distinct items per row, uniform over the catalog
    overall and at every position (chi-square, 49 degrees of freedom)."""
    env = make_vector(100, num_candidates=num_candidates, horizon_days=30)
    obs, _ = env.reset(seed=0)
    catalog = env.unwrapped.catalog
    draws = [obs["candidate_ids"]]
    rng = np.random.default_rng(0)
    for _ in range(150):
        obs, *_ = env.step(random_slots(rng, 100, num_candidates, 1))
        draws.append(obs["candidate_ids"])
        np.testing.assert_array_equal(
            obs["candidate_features"], catalog.features[obs["candidate_ids"]]
        )
    ids = np.concatenate(draws)  # (15100, C)
    ordered = np.sort(ids, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all(), "a row holds a repeated candidate"
    assert ids.min() >= 0 and ids.max() < NUM_ITEMS
    # The seeds are fixed, so the test is deterministic; a threshold of 1e-4 for each of
    # the C + 1 tests keeps a correct sampler far from failing under any seed change.
    overall = stats.chisquare(np.bincount(ids.ravel(), minlength=NUM_ITEMS))
    assert overall.pvalue > 1e-4
    for position in range(num_candidates):
        counts = np.bincount(ids[:, position], minlength=NUM_ITEMS)
        assert stats.chisquare(counts).pvalue > 1e-4, f"position {position}"


def test_same_seed_same_candidates_whatever_the_policy() -> None:
    """Users and retrieval use separate streams: under one seed, two policies see the
    same candidates at the same steps as long as no user has finished."""
    streams = []
    for action_seed in (0, 1):
        env = make_vector(4, horizon_days=30)
        obs, _ = env.reset(seed=5)
        rng = np.random.default_rng(action_seed)
        candidates = [obs["candidate_ids"]]
        for _ in range(5):
            obs, *_ = env.step(random_slots(rng, 4, 20, 1))
            candidates.append(obs["candidate_ids"])
        streams.append(np.stack(candidates))
    np.testing.assert_array_equal(streams[0], streams[1])


def test_docstring_example_shapes() -> None:
    envs = gym.make_vec("loe_gym/Engagement-v0", num_envs=4)
    obs, _ = envs.reset(seed=0)
    assert obs["candidate_features"].shape == (4, 20, 13)
    assert re.search(r"\(4, 20, 13\)", RecommendationVectorEnv.__doc__ or "")


@pytest.mark.parametrize("env_id", ["loe_gym/Engagement-v0", "loe_gym/EngagementSlate-v0"])
def test_history_profile_is_the_weighted_mean_of_the_whole_life(env_id: str) -> None:
    # Recomputed from the info of every step: shown items' features, averaged with weights
    # 1, clicked, watch minutes and completion; reset users start from zeros.
    env = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    core: RecommendationVectorEnv = env.unwrapped  # type: ignore[assignment]
    obs, _ = env.reset(seed=4)
    env.action_space.seed(4)  # unseeded, a random slate sometimes ends user 0's life early
    features, weights = [], []
    for _ in range(40):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not (terminated | truncated).any()
        shown = core.catalog.features[info["slate"][0]]  # (S, F)
        clicked, watch = info["clicked"][0], info["watch_time"][0]
        features.append(shown)
        weights.append(np.stack([np.ones_like(watch), clicked, watch, info["completion"][0]], 1))
    shown_features, w = np.concatenate(features), np.concatenate(weights)  # (T·S, F), (T·S, 4)
    profile = obs["history_profile"][0]
    np.testing.assert_allclose(profile[:, -1], w.sum(0), rtol=1e-5)
    for k in range(4):
        expected = (w[:, k : k + 1] * shown_features).sum(0) / w[:, k].sum()
        np.testing.assert_allclose(profile[k, :-1], expected, rtol=1e-4, atol=1e-5)
    obs, _ = env.reset(options={"reset_mask": np.array([True, False, False])})
    assert not obs["history_profile"][0].any()
    assert obs["history_profile"][1, 0, -1] == 40 * core.config.slate_size
