"""PPO and A2C with the discount on the users' clock, not per step.

A user's life is hundreds of steps over 30 days, and what a recommendation does to the
user's return shows up as *days without a visit*. Under a per-step discount those days cost
nothing: the same steps simply happen later (only the horizon, far beyond the discount's
reach, notices). Discounting per day makes every day a user stays away cost a factor
``day_discount`` on everything after it, so bringing users back sooner has a value the
critic can see and the advantage can carry.

For the transition from observation ``t`` to ``t + 1`` of a user the discount is::

    γ_t = gamma · day_discount ** (day_{t+1} − day_t)

with ``day`` read from the observation's ``context`` (`loe_gym.envs.observations.CONTEXT`),
so it works with any simulator the env hosts and with the predictor's wrappers; an env whose
users never change day (one session) gets the per-step ``gamma`` alone. ``day_discount = 1``
is exactly SB3's GAE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import DictRolloutBuffer

from loe_gym.envs.observations import CONTEXT

__all__ = ["ClockA2C", "ClockPPO", "ClockRolloutBuffer"]

DAY = CONTEXT.index("day")


class ClockRolloutBuffer(DictRolloutBuffer):
    """SB3's ``DictRolloutBuffer`` whose GAE discounts each transition by the days it spans.

    SB3 calls ``compute_returns_and_advantage`` before the last transition's next day is
    known to the buffer, so that call only records its arguments; the algorithm then calls
    `finish` with the next observations' days ``(n_envs,)``.
    """

    def __init__(self, *args: Any, day_discount: float = 1.0, **kwargs: Any) -> None:
        if not 0 < day_discount <= 1:
            raise ValueError(f"day_discount must lie in (0, 1], got {day_discount}.")
        self.day_discount = day_discount
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.days = np.zeros((self.buffer_size, self.n_envs), np.float32)
        self._pending: tuple[torch.Tensor, np.ndarray] | None = None

    def add(self, obs: dict[str, np.ndarray], *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.days[self.pos] = np.asarray(obs["context"])[:, DAY]
        super().add(obs, *args, **kwargs)

    def compute_returns_and_advantage(self, last_values: torch.Tensor, dones: np.ndarray) -> None:
        self._pending = (last_values, dones)

    def finish(self, next_days: np.ndarray) -> None:
        """GAE over the buffer, with ``next_days (n_envs,)`` the days of the observations that
        follow its last row."""
        if self._pending is None:
            raise RuntimeError("finish() before compute_returns_and_advantage().")
        last_values, dones = self._pending
        following = np.concatenate([self.days[1:], np.asarray(next_days)[None]], 0)
        # A user who finished restarts at day 0; those rows are cut by the episode start.
        elapsed = np.maximum(following - self.days, 0.0)
        discounts = self.gamma * self.day_discount**elapsed  # (T, N)
        next_values = np.concatenate([self.values[1:], last_values.cpu().numpy().reshape(1, -1)], 0)
        next_non_terminal = np.concatenate(
            [1.0 - self.episode_starts[1:], (1.0 - dones.astype(np.float32))[None]], 0
        )
        last_gae = np.zeros(self.n_envs, np.float32)
        for step in reversed(range(self.buffer_size)):
            carry = discounts[step] * next_non_terminal[step]
            delta = self.rewards[step] + carry * next_values[step] - self.values[step]
            last_gae = delta + carry * self.gae_lambda * last_gae
            self.advantages[step] = last_gae
        self.returns = self.advantages + self.values
        self._pending = None


class _ClockDiscounting:
    """Mixin for SB3's on-policy algorithms: a `ClockRolloutBuffer` and its `finish`."""

    _last_obs: Any

    def __init__(self, *args: Any, day_discount: float = 1.0, **kwargs: Any) -> None:
        self.day_discount = day_discount
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        # Set here, not in __init__: SB3's load() restores the saved attributes first.
        algorithm: Any = self
        algorithm.rollout_buffer_class = ClockRolloutBuffer
        algorithm.rollout_buffer_kwargs = {"day_discount": self.day_discount}
        super()._setup_model()  # type: ignore[misc]

    def collect_rollouts(
        self, env: Any, callback: Any, rollout_buffer: Any, n_rollout_steps: int
    ) -> bool:
        finished = super().collect_rollouts(  # type: ignore[misc]
            env, callback, rollout_buffer, n_rollout_steps=n_rollout_steps
        )
        if finished:
            rollout_buffer.finish(np.asarray(self._last_obs["context"])[:, DAY])
        return bool(finished)


class ClockPPO(_ClockDiscounting, PPO):
    """SB3's PPO with ``day_discount`` (see the module docstring); the rest is PPO's."""


class ClockA2C(_ClockDiscounting, A2C):
    """SB3's A2C with ``day_discount`` (see the module docstring); the rest is A2C's."""
