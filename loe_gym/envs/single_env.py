"""The single-user ``gymnasium.Env``: a ``num_users=1`` view of the batched core."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import Env

from loe_gym.envs.rendering import RENDER_FPS, RENDER_MODES
from loe_gym.envs.vector_env import RecommendationVectorEnv


class RecommendationEnv(Env):  # type: ignore[type-arg]
    """One user's life on a recommendation platform (see `RecommendationVectorEnv`).

    This class holds no dynamics of its own: it drives a `RecommendationVectorEnv` of
    one user and removes the batch axis, so single and vector environments cannot
    drift apart. Arguments, spaces, rewards and episode ends are those documented on
    `RecommendationVectorEnv` without the leading ``num_users`` axis.

    Example:
        >>> import gymnasium as gym
        >>> import loe_gym
        >>> env = gym.make("loe_gym/Engagement-v0")
        >>> obs, info = env.reset(seed=0)
        >>> sorted(obs)
        ['candidate_features', 'candidate_ids', 'context', 'history_features', 'history_feedback', 'history_item_ids', 'history_profile']
        >>> obs, reward, terminated, truncated, info = env.step(0)
        >>> sorted(info["reward_parts"])
        ['click', 'watch_time']
    """

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "render_fps": RENDER_FPS}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        self.batch = RecommendationVectorEnv(
            num_envs=1, autoreset_mode="disabled", render_mode=render_mode, **options
        )
        self.config = self.batch.config
        self.simulator = self.batch.simulator
        self.catalog = self.batch.catalog
        self.observation_space = self.batch.single_observation_space
        self.action_space = self.batch.single_action_space
        self.render_mode = self.batch.render_mode
        self._slate = self.config.slate_size > 1
        self._episode_over = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and not self.batch._has_reset:
            # Seed the core from Env.np_random so that gym's seeding conventions hold.
            seed = int(self.np_random.integers(2**63 - 1))
        obs, info = self.batch.reset(seed=seed, options=options)
        self._episode_over = False
        return _first(obs), _first(info)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._episode_over:
            raise RuntimeError(
                "The episode is over (the user churned or reached the horizon); call reset() "
                "before step()."
            )
        action = np.asarray(action)
        if self._slate:
            batched = action[None]
        elif action.size == 1:
            batched = action.reshape(1)
        else:
            raise ValueError(
                f"The action must be one candidate index in [0, {self.config.num_candidates}), "
                f"got an array of shape {action.shape}: {action.tolist()}."
            )
        obs, reward, terminated, truncated, info = self.batch.step(batched)
        self._episode_over = bool(terminated[0] or truncated[0])
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _first(info)

    def action_masks(self) -> np.ndarray:
        """``(C,)`` (slates: ``(S·C,)``) True where a candidate may be chosen: all."""
        return self.batch.action_masks()[0]

    def render(self) -> str | None:
        """With ``render_mode="ansi"``, a line of text about the user; else ``None``."""
        lines = self.batch.render()
        return None if lines is None else lines[0]

    @property
    def state(self) -> Any:
        """The simulator's privileged state of the user (for oracles and diagnostics)."""
        return self.batch.state

    def __repr__(self) -> str:
        return f"RecommendationEnv({self.batch!r})"


def _first(tree: dict[str, Any]) -> dict[str, Any]:
    """Index 0 of every array in a (nested) dict of batched arrays."""
    return {k: _first(v) if isinstance(v, dict) else v[0] for k, v in tree.items()}
