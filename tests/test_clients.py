"""The RL ecosystem's own clients, at tiny size, with the real libraries: each test is one
row of the client matrix in docs/clients.md (client × feature × works), and a test checks
that the page lists exactly these rows."""

from __future__ import annotations

import copy
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import SMALL

from agents.sb3_vec_env import make_sb3_env
from simulators.engagement import EngagementUsers

ROOT = Path(__file__).resolve().parents[1]
SINGLE, SLATE = "loe_gym/Engagement-v0", "loe_gym/EngagementSlate-v0"
MATRIX: dict[tuple[str, str], str] = {}
"""(client, feature) → the test that shows it works; filled by `row`."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def row(client: str, feature: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(test: Callable[..., None]) -> Callable[..., None]:
        MATRIX[(client, feature)] = test.__name__
        return test

    return register


# ------------------------------------------------------------------------- Gymnasium


@row("Gymnasium", "SyncVectorEnv over gym.make, slates included")
@pytest.mark.parametrize("env_id", [SINGLE, SLATE])
def test_gymnasium_sync_vector_env(env_id: str) -> None:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **SMALL)] * 3)
    _run_vector(envs)


@row("Gymnasium", "AsyncVectorEnv (subprocesses), slates included")
@pytest.mark.parametrize("env_id", [SINGLE, SLATE])
def test_gymnasium_async_vector_env(env_id: str) -> None:
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="async", **SMALL)
    try:
        _run_vector(envs)
    finally:
        envs.close()


@row("Gymnasium", "an env built from a simulator instance: check_env, pickle, deepcopy")
def test_env_from_simulator_instance_is_checked_pickled_and_copied() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("loe_gym/Recommendation-v0", simulator=EngagementUsers(num_items=50))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gymnasium's advice on infinite Box bounds
        check_env(env.unwrapped)
    assert env.spec is not None and env.spec.id == "loe_gym/Recommendation-v0"
    env.reset(seed=3)
    for twin in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
        assert twin.spec is not None and twin.spec.id == env.spec.id
        first, second = (e.unwrapped.batch.fork([0], seed=1) for e in (env, twin))
        for action in (1, 4, 2):
            np.testing.assert_array_equal(first.step([action])[1], second.step([action])[1])


@row("Gymnasium", "render_mode: 'ansi' renders text, others are accepted and ignored")
def test_render_modes() -> None:
    env = gym.make(SINGLE, render_mode="ansi", **SMALL)
    env.reset(seed=0)
    env.step(0)
    assert re.match(r"user \d+: day 0, session 0, step 1, 1 shown", env.render())
    with pytest.warns(UserWarning, match="render_mode='rgb_array' is not supported"):
        env = gym.make(SINGLE, render_mode="rgb_array", **SMALL)
    assert env.unwrapped.render_mode is None and env.unwrapped.render() is None


# ---------------------------------------------------------------------- SB3


@row("Stable-Baselines3", "make_vec_env(id, n_envs=2) and PPO, slates included")
@pytest.mark.parametrize("env_id", [SINGLE, SLATE])
def test_sb3_make_vec_env(env_id: str) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    # make_vec_env asks for render_mode="rgb_array"; the env warns and builds.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        envs = make_vec_env(env_id, n_envs=2, env_kwargs=SMALL)
    PPO("MultiInputPolicy", envs, n_steps=16, batch_size=16, n_epochs=1, seed=0).learn(32)


@row("Stable-Baselines3", "PPO(policy, 'loe_gym/<id>') on slates without the adapter")
def test_sb3_on_slate_id_without_adapter() -> None:
    from stable_baselines3 import PPO

    # SB3 samples a MultiDiscrete's positions independently: repeats are replaced. SB3
    # asks for render_mode="rgb_array"; the env warns and builds.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PPO("MultiInputPolicy", SLATE, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)


@row("Stable-Baselines3", "gym.make_vec(...) passed to SB3: refused by SB3; use make_sb3_env")
def test_sb3_refuses_gymnasium_vector_env_and_make_sb3_env_is_the_fix() -> None:
    from stable_baselines3 import PPO

    with pytest.raises(ValueError, match="not a Gymnasium environment"):
        PPO("MultiInputPolicy", gym.make_vec(SINGLE, num_envs=2, **SMALL))
    PPO("MultiInputPolicy", make_sb3_env(SINGLE, 2, **SMALL), n_steps=8, batch_size=16)


# -------------------------------------------------------------------- sb3-contrib


@row("sb3-contrib", "MaskablePPO (action_masks per user), slates included")
@pytest.mark.parametrize("env_id", [SINGLE, SLATE])
def test_maskable_ppo(env_id: str) -> None:
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks

    envs = make_sb3_env(env_id, 3, **SMALL)
    masks = get_action_masks(envs)
    core = envs.venv.core  # type: ignore[attr-defined]
    assert masks.shape == (3, core.config.num_candidates * core.config.slate_size)
    assert masks.all()
    model = MaskablePPO("MultiInputPolicy", envs, n_steps=16, batch_size=24, n_epochs=1, seed=0)
    model.learn(48)


@row("sb3-contrib", "RecurrentPPO (LSTM policy)")
def test_recurrent_ppo() -> None:
    from sb3_contrib import RecurrentPPO

    envs = make_sb3_env(SINGLE, 2, **SMALL)
    model = RecurrentPPO(
        "MultiInputLstmPolicy", envs, n_steps=16, batch_size=16, n_epochs=1, seed=0
    )
    model.learn(32)


# ------------------------------------------------------------------------- TorchRL


@row("TorchRL", "GymEnv(id) and check_env_specs, slates included")
@pytest.mark.parametrize("env_id", [SINGLE, SLATE])
def test_torchrl_gym_env(env_id: str) -> None:
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    # GymEnv passes frameskip and drops it on Python's own TypeError wording.
    env = GymEnv(env_id, **SMALL)
    env.set_seed(0)
    check_env_specs(env)
    rollout = env.rollout(6)  # random actions from the spec (slates may repeat: replaced)
    assert rollout["next", "reward"].shape == (6, 1)


# --------------------------------------------------------------------------- helpers


def _run_vector(envs: gym.vector.VectorEnv) -> None:
    envs.reset(seed=0)
    for _ in range(8):
        action = envs.action_space.sample()
        assert envs.action_space.contains(action)
        _, reward, *_ = envs.step(action)
        assert reward.shape == (envs.num_envs,) and np.all(np.isfinite(reward))


def test_client_matrix_page_lists_exactly_these_rows() -> None:
    text = (ROOT / "docs" / "clients.md").read_text()
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| [^|]+ \| `(\w+)` \|$", text, re.MULTILINE)
    assert {(client, feature): test for client, feature, test in rows} == MATRIX
