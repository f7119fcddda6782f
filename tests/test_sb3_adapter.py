"""The stable-baselines3 adapter: `RecommendationSB3VecEnv` is the Gymnasium vector env
in same_step autoreset mode seen through SB3's ``VecEnv`` API, and SB3 agents train on it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    NUM_ITEMS,
    SMALL,
    assert_tree_equal,
    random_slots,
    registry_options,
    tree_equal,
)
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.vec_env import VecEnv

from agents.sb3_vec_env import RecommendationSB3VecEnv, make_sb3_env

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _options(env_id: str) -> dict[str, Any]:
    if env_id.startswith("loe_gym/Engagement"):
        # A 1-day churn threshold makes both episode ends (churn and horizon) frequent.
        return {
            "simulator_kwargs": {"num_items": NUM_ITEMS, "churn_gap_days": 1},
            "horizon_days": 2,
        }
    return registry_options()


def test_adapter_is_an_sb3_vec_env() -> None:
    env = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=3, **SMALL)
    assert isinstance(env, VecEnv)
    assert env.num_envs == 3
    assert env.observation_space == env.core.single_observation_space
    assert env.action_space == env.core.single_action_space
    assert env.get_attr("num_envs") == [3, 3, 3]
    assert env.get_attr("num_envs", indices=1) == [3]
    assert env.env_is_wrapped(gym.Wrapper) == [False, False, False]
    assert len(env.env_method("__repr__")) == 3


def test_adapter_matches_the_same_step_vector_env(env_id: str) -> None:
    options = _options(env_id)
    adapter = RecommendationSB3VecEnv(env_id, num_users=4, **options)
    reference = gym.make_vec(env_id, num_envs=4, autoreset_mode="same_step", **options)
    config = reference.unwrapped.config
    adapter.seed(7)
    obs = adapter.reset()
    reference_obs, _ = reference.reset(seed=7)
    assert_tree_equal(obs, reference_obs)
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(200):
        actions = random_slots(rng, 4, config.num_candidates, config.slate_size)
        obs, rewards, dones, infos = adapter.step(actions)
        reference_obs, reward, terminated, truncated, info = reference.step(actions)
        assert_tree_equal(obs, reference_obs)
        assert rewards.dtype == np.float32
        np.testing.assert_array_equal(rewards, reward.astype(np.float32))
        np.testing.assert_array_equal(dones, terminated | truncated)
        assert isinstance(infos, list) and len(infos) == 4
        for user in range(4):
            if not dones[user]:
                assert "terminal_observation" not in infos[user]
                continue
            assert_tree_equal(infos[user]["terminal_observation"], info["final_obs"][user])
            assert infos[user]["TimeLimit.truncated"] == bool(
                truncated[user] and not terminated[user]
            )
        ends["terminated"] += int(terminated.sum())
        ends["truncated"] += int(truncated.sum())
    assert sum(ends.values()) > 0
    if env_id.startswith("loe_gym/Engagement"):
        assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


def test_adapter_built_from_options_equals_adapter_built_from_id() -> None:
    by_id = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=3, **SMALL)
    by_options = RecommendationSB3VecEnv(None, num_users=3, simulator="engagement", **SMALL)
    for env in (by_id, by_options):
        env.seed(3)
    assert_tree_equal(by_id.reset(), by_options.reset())
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = random_slots(rng, 3, 20, 1)
        assert_tree_equal(by_id.step(actions), by_options.step(actions))


def test_seed_then_reset_is_reproducible() -> None:
    def rollout(seed: int | None) -> list[Any]:
        env = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=3, **SMALL)
        if seed is not None:
            env.seed(seed)
        records: list[Any] = [env.reset()]
        rng = np.random.default_rng(0)
        records += [env.step(random_slots(rng, 3, 20, 1)) for _ in range(40)]
        return records

    assert_tree_equal(rollout(5), rollout(5))
    assert not tree_equal(rollout(5), rollout(6))
    # seed(s) then reset() is the Gymnasium env's reset(seed=s).
    reference = gym.make_vec(
        "loe_gym/Engagement-v0", num_envs=3, autoreset_mode="same_step", **SMALL
    )
    assert_tree_equal(rollout(5)[0], reference.reset(seed=5)[0])


def test_a_seed_is_used_by_one_reset_only() -> None:
    """SB3 semantics: ``seed(s)`` applies to the next ``reset()``; later resets go on."""
    env = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=3, **SMALL)
    env.seed(5)
    first = env.reset()
    second = env.reset()
    assert not tree_equal(first, second)
    env.seed(5)
    assert_tree_equal(env.reset(), first)


def test_step_before_reset() -> None:
    env = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=2, **SMALL)
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.step(np.zeros(2, np.int64))


def test_rejected_actions_change_nothing() -> None:
    env = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=3, **SMALL)
    twin = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=3, **SMALL)
    for e in (env, twin):
        e.seed(0)
        e.reset()
    with pytest.raises(ValueError, match=r"in \[0, 20\); user 2 got 20"):
        env.step(np.array([0, 1, 20]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = random_slots(rng, 3, 20, 1)
        assert_tree_equal(env.step(actions), twin.step(actions))


def test_slates_repair_repeats_from_independent_positions() -> None:
    """SB3 samples slate positions independently: the adapter repairs repeats by default."""
    env = RecommendationSB3VecEnv("loe_gym/EngagementSlate-v0", num_users=2, **SMALL)
    env.reset()
    obs, *_ = env.step(np.array([[1, 1, 1, 1, 1], [0, 1, 2, 3, 4]]))
    shown = obs["history_item_ids"][:, -5:]
    assert all(len(set(r)) == 5 for r in shown.tolist())


# --------------------------------------------------------------------- agents


def _check_predictions(model: Any, env: VecEnv, slate_size: int) -> None:
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    expected = (env.num_envs,) if slate_size == 1 else (env.num_envs, slate_size)
    assert actions.shape == expected
    assert ((actions >= 0) & (actions < 20)).all()
    env.step(actions)


@pytest.mark.parametrize(
    ("algorithm", "kwargs"),
    [
        (PPO, {"n_steps": 16, "batch_size": 32, "n_epochs": 1}),
        (A2C, {"n_steps": 5}),
        (DQN, {"learning_starts": 32, "buffer_size": 500, "batch_size": 16, "train_freq": 4}),
    ],
    ids=["PPO", "A2C", "DQN"],
)
def test_sb3_agents_train_on_engagement(algorithm: Any, kwargs: dict[str, Any]) -> None:
    env = make_sb3_env("loe_gym/Engagement-v0", num_users=4, **SMALL)
    model = algorithm("MultiInputPolicy", env, seed=0, device="cpu", **kwargs)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    # VecMonitor saw whole user lives (a 2-day horizon ends episodes within the run).
    assert len(model.ep_info_buffer) > 0
    _check_predictions(model, env, slate_size=1)


def test_ppo_trains_on_slates() -> None:
    env = make_sb3_env("loe_gym/EngagementSlate-v0", num_users=4, **SMALL)
    model = PPO(
        "MultiInputPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    _check_predictions(model, env, slate_size=5)


def test_single_env_trains_under_sb3s_own_vec_envs() -> None:
    """SB3's Monitor convention reserves info["episode"] for episode summaries: the
    single env's plain DummyVecEnv path trains and logs without tripping on it."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([lambda: gym.make("loe_gym/Engagement-v0", **SMALL) for _ in range(2)])
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(256)
    assert model.num_timesteps >= 256
