"""SB3 adapter: a stable-baselines3 ``VecEnv`` over the batched core.

stable-baselines3 2.x consumes its own ``VecEnv`` API, not Gymnasium's ``VectorEnv``.
This adapter drives one `loe_gym.RecommendationVectorEnv` in ``same_step`` autoreset
mode, so PPO/A2C/DQN train on thousands of simulated users in one process with no
per-user Python objects: obs-only ``reset``, same-step autoreset with
``terminal_observation`` and ``TimeLimit.truncated`` in the finished users' infos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from loe_gym import RecommendationVectorEnv


class RecommendationSB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` of ``num_users`` simulated users.

    Args:
        env_id: a registered id (``"loe_gym/Engagement-v0"``) or ``None`` to build
            `RecommendationVectorEnv` directly from ``options``.
        num_users: users simulated side by side (SB3's ``n_envs``).
        wrappers: Gymnasium vector wrappers applied to the core in order (e.g.
            ``lambda env: PredictorObservations(env, service)``); the adapter exposes the
            outermost one's spaces.
        options: environment options (``simulator``, ``num_candidates``, …).

    Example:
        >>> from stable_baselines3 import PPO
        >>> env = RecommendationSB3VecEnv("loe_gym/Engagement-v0", num_users=8)
        >>> model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=64, seed=0)
        >>> model = model.learn(128)
    """

    def __init__(
        self,
        env_id: str | None = "loe_gym/Engagement-v0",
        num_users: int = 64,
        *,
        wrappers: Sequence[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]] = (),
        **options: Any,
    ) -> None:
        if env_id is None:
            core = RecommendationVectorEnv(
                num_envs=num_users, autoreset_mode="same_step", **options
            )
        else:
            core = gym.make_vec(  # type: ignore[assignment]
                env_id,
                num_envs=num_users,
                vectorization_mode="vector_entry_point",
                autoreset_mode="same_step",
                **options,
            ).unwrapped
        self.core: RecommendationVectorEnv = core  # type: ignore[assignment]
        env: gym.vector.VectorEnv = core
        for wrap in wrappers:
            env = wrap(env)
        self.env = env
        super().__init__(num_users, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]
        obs, _ = self.env.reset(seed=seed, options=self._options[0] or None)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions).")
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            final_obs = info["final_obs"]
            for user in np.flatnonzero(done):
                infos[user] = {
                    "terminal_observation": final_obs[user],
                    "TimeLimit.truncated": bool(truncated[user] and not terminated[user]),
                }
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.env.close()

    # SB3 asks each sub-environment for attributes and method results; here one batched
    # env holds all users. A result with a leading ``num_users`` axis (an array or tuple,
    # e.g. ``action_masks()``, ``candidates``, ``render()``) is split per user; anything
    # else is shared by all users.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return self._per_user(self._lookup(attr_name), indices)

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        if len(self._indices(indices)) != self.num_envs:
            raise ValueError(
                f"set_attr({attr_name!r}) for some users only: all {self.num_envs} users share "
                "one environment, so its attributes are set for all (pass indices=None)."
            )
        setattr(self.core, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        result = self._lookup(method_name)(*method_args, **method_kwargs)
        return self._per_user(result, indices)

    def _lookup(self, name: str) -> Any:
        """``name`` on the outermost wrapper that has it, down to the core."""
        env: Any = self.env
        while not hasattr(env, name) and hasattr(env, "env"):
            env = env.env
        return getattr(env, name)

    def _per_user(self, value: Any, indices: Any) -> list[Any]:
        users = self._indices(indices)
        if isinstance(value, (np.ndarray, tuple)) and len(value) == self.num_envs:
            return [value[user] for user in users]
        return [value] * len(users)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:  # type: ignore[type-arg]
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)


def make_sb3_env(
    env_id: str = "loe_gym/Engagement-v0",
    num_users: int = 64,
    *,
    wrappers: Sequence[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]] = (),
    **options: Any,
) -> VecMonitor:
    """`RecommendationSB3VecEnv` wrapped in ``VecMonitor`` (episode returns for SB3's logger)."""
    return VecMonitor(RecommendationSB3VecEnv(env_id, num_users, wrappers=wrappers, **options))
