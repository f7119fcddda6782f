"""The lookahead oracle: Bertsekas' rollout algorithm on top of a reference policy.

At each decision, for each user, the base policy's ``top_k`` candidates (its own choice
first) are each shown first, then the base policy is followed for ``horizon`` steps,
``samples`` times, in one forked vector env of ``users × top_k × samples`` slots
(`loe_gym.envs.forking`). The copies of one (user, sample) share their random draws
(common random numbers), so the paired difference *candidate − base choice* measures the
action, not the noise. A candidate replaces the base's choice only where the mean paired
gain exceeds ``z`` standard errors; otherwise the base's choice stands, so a noisy
estimate falls back to the base policy.

Works on any simulator that follows the contract: forking needs only states indexed by
users (`loe_gym.simulator.take_users`), and the rollouts read only the env's reward.
Cost: ``users × top_k × samples × horizon`` env steps (and base-policy calls on
that batch) per decision.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from agents.configs import LookaheadConfig
from agents.ranking import top_slates
from agents.reference_policies import OraclePlanner, Policy, TopicAffinityPolicy, make_policy
from loe_gym import RecommendationVectorEnv

__all__ = ["LookaheadOracle", "base_policy", "paired_choice"]


def base_policy(name: str, env: RecommendationVectorEnv) -> Any:
    """The base policy ``name`` for ``env``; ``auto`` is `OraclePlanner` where the
    simulator has ``expected_responses`` (the privileged interface), else the
    non-privileged `TopicAffinityPolicy` (topic click rates in the observed history)."""
    if name != "auto":
        policy = make_policy(name)
    elif hasattr(env.simulator, "expected_responses"):
        policy = OraclePlanner()
    else:
        policy = TopicAffinityPolicy(weight_features=())
    if not callable(getattr(policy, "scores", None)):
        raise TypeError(
            f"The lookahead's base policy {name!r} has no scores() to rank candidates by; "
            "pass LookaheadConfig(base=...) naming a scoring reference policy."
        )
    return policy


def paired_choice(returns: np.ndarray, z: float) -> np.ndarray:
    """``(users,) int`` the first action to take from rollout ``returns``.

    Args:
        returns: ``(users, samples, top_k)`` rollout returns; column 0 is the base's choice.
        z: a candidate wins only where its mean paired gain over column 0 exceeds
            ``z`` standard errors (over samples); the best such candidate is taken, else 0.
            ``z ≥ 1e12`` always keeps column 0.
    """
    gain = returns - returns[..., :1]
    samples = returns.shape[1]
    mean = gain.mean(axis=1)
    stderr = gain.std(axis=1, ddof=1) / np.sqrt(samples)
    # A gain without spread over samples (a deterministic stretch) still passes any
    # practical z, but z ≥ 1e12 then never switches: the base policy exactly.
    better = mean > z * np.maximum(stderr, 1e-11 * np.abs(mean))
    better[:, 0] = False
    best = np.where(better, mean, -np.inf).argmax(axis=1)
    return np.where(better.any(axis=1), best, 0)


class LookaheadOracle:
    """A privileged upper-bound policy: one-step rollout improvement of a base policy.

    Args:
        config: settings (`agents.configs.LookaheadConfig`); the defaults' cost is
            ``users × 3 × 4 ×`` (the steps of about two sessions) env steps per decision.
        base: a scoring policy to improve on (overrides ``config.base``).
    """

    name = "lookahead_oracle"
    privileged = True

    def __init__(self, config: LookaheadConfig | None = None, base: Policy | None = None) -> None:
        self.config = config or LookaheadConfig()
        self._base = base
        self.switched = 0
        """Decisions (user steps) where a candidate replaced the base's choice."""
        self.decisions = 0
        """Decisions taken (user steps of users that acted)."""

    def __repr__(self) -> str:
        return f"LookaheadOracle({self.config!r})"

    def base(self, env: RecommendationVectorEnv) -> Any:
        """The base policy (built for ``env`` on first use)."""
        if self._base is None:
            self._base = base_policy(self.config.base, env)
        return self._base

    def act(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        base = self.base(env)
        choice = np.asarray(base.act(obs, env))
        active = np.flatnonzero(~env.needs_reset)
        k = min(self.config.top_k, env.config.num_candidates - env.config.slate_size + 1)
        if active.size == 0 or k < 2:
            return choice
        first = self.first_actions(base.scores(obs, env), choice, k)[active]
        returns = self.rollouts(env, active, first)
        pick = paired_choice(returns, self.config.z)
        self.decisions += active.size
        self.switched += int(np.count_nonzero(pick))
        actions = choice.copy()
        actions[active] = first[np.arange(active.size), pick]
        return actions

    @staticmethod
    def first_actions(scores: np.ndarray, choice: np.ndarray, k: int) -> np.ndarray:
        """``(users, k)`` (or ``(users, k, slate_size)``) first actions: the base's
        ``choice`` then, by descending score, slates led by each next candidate (the
        rest of a slate: the best other candidates)."""
        users, num_candidates = scores.shape
        rows = np.arange(users)[:, None]
        lead = choice if choice.ndim == 1 else choice[:, 0]
        ranked = np.argsort(-scores, axis=1, kind="stable")
        others = ranked[ranked != lead[:, None]].reshape(users, num_candidates - 1)[:, : k - 1]
        if choice.ndim == 1:
            return np.concatenate([choice[:, None], others], axis=1)
        slate_size = choice.shape[1]
        slates = [choice]
        for j in range(k - 1):
            forced = scores.astype(np.float64, copy=True)
            forced[rows[:, 0], others[:, j]] = np.inf
            slates.append(top_slates(forced, slate_size))
        return np.stack(slates, axis=1)

    def rollouts(
        self, env: RecommendationVectorEnv, users: np.ndarray, first: np.ndarray
    ) -> np.ndarray:
        """``(len(users), samples, k)`` sums of the env's reward over ``horizon`` steps:
        ``first[:, j]`` first, then the base policy, with common random numbers."""
        cfg, base = self.config, self.base(env)
        k = first.shape[1]
        seed = np.random.SeedSequence([cfg.seed, zlib.crc32(env.candidates.tobytes())])
        forked = env.fork(np.repeat(users, cfg.samples), copies=k, seed=seed.generate_state(1)[0])
        # Slot (u, s, j): user u, sample s, first action j (copies adjacent).
        actions = np.repeat(first, cfg.samples, axis=0).reshape(forked.num_envs, *first.shape[2:])
        total = np.zeros(forked.num_envs)
        counting = np.ones(forked.num_envs, bool)  # the rollout still sums this slot
        ended = np.zeros(forked.num_envs, bool)  # its life ended within the rollout
        start_day = forked.day.copy()
        end_day = start_day.copy()
        for _ in range(cfg.horizon):
            obs, reward, terminated, truncated, _ = forked.step(actions)
            # A finished life's slot holds a new user next: count its own reward only.
            total += np.where(counting, reward, 0.0)
            ended |= counting & (terminated | truncated)
            counting &= ~(terminated | truncated)
            end_day = np.where(counting, forked.day, end_day)
            if cfg.days:
                counting &= forked.day < start_day + cfg.days
            if not counting.any():
                break
            actions = base.act(obs, forked)
        if cfg.terminal == "days":
            total += self.days_left_value(forked, total, end_day - start_day, end_day, ~ended)
        return total.reshape(users.size, cfg.samples, k)

    @staticmethod
    def days_left_value(
        env: RecommendationVectorEnv,
        total: np.ndarray,
        elapsed: np.ndarray,
        end_day: np.ndarray,
        alive: np.ndarray,
    ) -> np.ndarray:
        """``(slots,)`` the ``days`` terminal estimate: days left before the horizon at
        the rollout's end times the rollouts' watch per elapsed day (a copy whose gaps
        ran longer has fewer days left); 0 where the life ended or no day elapsed."""
        days = np.where(alive, elapsed, 0)
        if not days.any():
            return np.zeros_like(total)
        per_day = total[alive].sum() / days.sum()
        left = np.maximum(env.config.horizon_days - end_day, 0)
        return np.where(alive, per_day * left, 0.0)
