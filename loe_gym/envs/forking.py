"""Forks of a vector env: copies of some users' rows that can be stepped on their own.

`fork_env` (also ``RecommendationVectorEnv.fork``) returns a new vector env whose slots
copy chosen users' simulator state, clock, history, candidates and life counters; the
original env is not touched. Planners try different actions in the copies of one user.

Comparing actions by simulation needs *common random numbers*: copies of one user that
differ only in their action must see the same random draws, or the comparison measures
noise. `CommonRandomNumbers` wraps a ``np.random.Generator`` so that any draw whose
leading dimension is the forked batch is drawn once per group of copies and repeated
across the group; the fork draws candidates the same way. This needs nothing from the
simulator beyond the contract (per-user draws have leading axis ``num_users``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium.vector.utils import batch_space

from loe_gym.envs.vector_env import PER_USER_ARRAYS, RecommendationVectorEnv
from loe_gym.simulator import take_users
from loe_gym.spaces import SlateSpace
from loe_gym.types import IntArray

__all__ = ["CommonRandomNumbers", "ForkedVectorEnv", "fork_env"]

# Draws of a location-scale family with per-copy parameters are shared through their
# standard draw: the copies then differ only by their parameters, as with one generator.
_AFFINE: dict[str, tuple[str, Callable[..., np.ndarray]]] = {
    "normal": ("standard_normal", lambda z, loc=0.0, scale=1.0: loc + scale * z),
    "uniform": ("random", lambda u, low=0.0, high=1.0: low + (high - low) * u),
    "exponential": ("standard_exponential", lambda e, scale=1.0: scale * e),
    # By inversion (numpy's own algorithm differs: same law, other numbers).
    "geometric": ("random", lambda u, p: _geometric(u, np.asarray(p))),
}


def _geometric(uniform: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Trials until the first success (≥ 1) for uniforms in [0, 1), by inversion."""
    with np.errstate(divide="ignore", invalid="ignore"):
        trials = np.ceil(np.log1p(-uniform) / np.log1p(-np.minimum(p, 1.0)))
    return np.where((p >= 1.0) | ~np.isfinite(trials), 1, np.maximum(trials, 1)).astype(np.int64)


# Methods whose arguments before ``size`` are not element-wise parameters.
_NON_BROADCASTING = frozenset(
    {"choice", "multinomial", "multivariate_normal", "multivariate_hypergeometric", "dirichlet"}
)
_SIGNATURES: dict[str, inspect.Signature | None] = {}


def _signature(name: str) -> inspect.Signature | None:
    """The signature of ``Generator.name`` without ``self``, if it takes a ``size``."""
    if name not in _SIGNATURES:
        try:
            signature = inspect.signature(getattr(np.random.Generator, name))
        except (TypeError, ValueError):
            signature = None
        if signature is not None and "size" in signature.parameters:
            parameters = list(signature.parameters.values())[1:]
            _SIGNATURES[name] = signature.replace(parameters=parameters)
        else:
            _SIGNATURES[name] = None
    return _SIGNATURES[name]


class CommonRandomNumbers:
    """A ``np.random.Generator`` for a batch of ``groups × copies`` rows, copies adjacent.

    A draw whose leading dimension is the batch (``size=(groups * copies, ...)``, or
    parameters of that leading shape) is drawn once per group and repeated over its
    copies, so copies see the same random numbers; every other draw (a reset of some
    users, a catalog draw) passes through unchanged. Where per-copy parameters differ,
    ``normal``, ``uniform``, ``exponential`` and ``geometric`` share a standard draw; any other
    such draw passes through and is counted in ``uncoupled``.

    Args:
        generator: the generator all draws come from.
        groups: distinct users (or (user, sample) pairs) in the batch.
        copies: rows per group (row ``g * copies + c`` is copy ``c`` of group ``g``).
    """

    def __init__(self, generator: np.random.Generator, groups: int, copies: int) -> None:
        if groups < 1 or copies < 1:
            raise ValueError(f"groups and copies must be ≥ 1, got {groups} and {copies}.")
        self.generator = generator
        self.groups, self.copies = int(groups), int(copies)
        self.batch = self.groups * self.copies
        self.uncoupled = 0
        """Draws of batch shape with per-copy parameters that could not be shared."""

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.generator, name)
        signature = _signature(name) if callable(attribute) else None
        if signature is None or self.copies == 1:
            return attribute

        def draw(*args: Any, **kwargs: Any) -> Any:
            return self._draw(name, signature, attribute, args, kwargs)

        return draw

    def _draw(
        self,
        name: str,
        signature: inspect.Signature,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        arguments = signature.bind(*args, **kwargs).arguments
        if arguments.get("out") is not None:
            return method(*args, **kwargs)
        names = list(signature.parameters)
        parameters = {k: v for k, v in arguments.items() if names.index(k) < names.index("size")}
        size = arguments.get("size")
        if size is not None:
            shape = (int(size),) if np.ndim(size) == 0 else tuple(int(d) for d in size)
        elif name in _NON_BROADCASTING:
            return method(*args, **kwargs)
        else:
            shape = np.broadcast_shapes(*(np.shape(v) for v in parameters.values()))
        if not shape or shape[0] != self.batch:
            return method(*args, **kwargs)
        # Parameters of a non-broadcasting method (choice's population, …) are not per row.
        per_copy = {
            k: v
            for k, v in parameters.items()
            if name not in _NON_BROADCASTING and np.ndim(v) == len(shape)
        }
        shared = {k: self._shared(np.asarray(v)) for k, v in per_copy.items()}
        group_shape = (self.groups, *shape[1:])
        if all(v is not None for v in shared.values()):
            arguments.update(shared, size=group_shape)
            return np.repeat(method(**arguments), self.copies, axis=0)
        if name in _AFFINE:
            standard, transform = _AFFINE[name]
            noise = np.repeat(getattr(self.generator, standard)(group_shape), self.copies, axis=0)
            return transform(noise, **parameters)
        self.uncoupled += 1
        return method(*args, **kwargs)

    def _shared(self, value: np.ndarray) -> np.ndarray | None:
        """One row per group where all copies of ``value`` agree (or a broadcast row);
        None where copies differ."""
        if value.shape[0] == 1:
            return value
        grouped = value.reshape(self.groups, self.copies, *value.shape[1:])
        if np.array_equal(grouped, np.broadcast_to(grouped[:, :1], grouped.shape)):
            return grouped[:, 0]
        return None

    def __repr__(self) -> str:
        return f"CommonRandomNumbers(groups={self.groups}, copies={self.copies})"


class ForkedVectorEnv(RecommendationVectorEnv):
    """A `RecommendationVectorEnv` made by `fork_env`: copies of users, stepped apart.

    Its responses come from a `CommonRandomNumbers` generator and its candidates are
    drawn once per group of copies, so copies that take the same actions stay identical.
    """

    copies: int = 1

    @property
    def action_space(self) -> Any:  # type: ignore[override]
        # Built on first use: a planner forks at every decision and rarely reads spaces.
        if "_action_space" not in self.__dict__:
            s, c = self.config.slate_size, self.config.num_candidates
            self._action_space = (
                batch_space(self.single_action_space, self.num_envs)
                if s == 1
                else SlateSpace(c, s, self.num_envs)
            )
        return self._action_space

    @property
    def observation_space(self) -> Any:  # type: ignore[override]
        if "_observation_space" not in self.__dict__:
            self._observation_space = batch_space(self.single_observation_space, self.num_envs)
        return self._observation_space

    def _draw_candidates(self, count: int, days: IntArray) -> IntArray:
        # Copies share their candidates (common random numbers), unless items churn:
        # copies that diverged may be on different days, with different items available.
        if self.copies == 1 or count != self.num_envs or self._retrieval.by_day:
            return super()._draw_candidates(count, days)
        groups = super()._draw_candidates(count // self.copies, days[:: self.copies])
        return np.repeat(groups, self.copies, axis=0)


def fork_env(
    env: RecommendationVectorEnv, users: Any, copies: int = 1, *, seed: int | None = None
) -> ForkedVectorEnv:
    """A new vector env of ``len(users) * copies`` slots: slot ``i * copies + c`` is copy
    ``c`` of user ``users[i]`` (state, clock, history, candidates, life counters).

    Args:
        env: a `RecommendationVectorEnv` after ``reset``; it is not modified.
        users: ``(n,)`` int slot indices of ``env`` (may repeat: repeats are separate
            groups with their own random draws).
        copies: copies per user; copies share their random draws (common random numbers).
        seed: seeds the fork's responses and candidates (None: fresh entropy).
    """
    index = np.asarray(users)
    if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
        raise ValueError(
            f"users must be a non-empty 1-D array of int slot indices, got {index.dtype} of "
            f"shape {index.shape}; for a mask pass np.flatnonzero(mask)."
        )
    if index.min() < 0 or index.max() >= env.num_envs:
        raise ValueError(f"users must lie in [0, {env.num_envs}), got {index.tolist()[:5]}….")
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise ValueError(f"copies must be an int ≥ 1, got {copies!r}.")
    if not env._has_reset:
        raise RuntimeError("Call reset() before fork(): there are no users to copy yet.")
    rows = np.repeat(index, int(copies))
    forked = ForkedVectorEnv.__new__(ForkedVectorEnv)
    shared = {
        k: v for k, v in env.__dict__.items() if k not in ("action_space", "observation_space")
    }
    forked.__dict__.update(shared)
    forked.__dict__.pop("_action_space", None)
    forked.__dict__.pop("_observation_space", None)
    forked.num_envs = forked.num_users = int(rows.size)
    forked.copies = int(copies)
    forked._rows = np.arange(rows.size)[:, None]
    forked._state = take_users(env._state, rows)
    for name in PER_USER_ARRAYS:
        setattr(forked, name, getattr(env, name)[rows])
    user_seed, candidate_seed = np.random.SeedSequence(seed).spawn(2)
    forked._rng = CommonRandomNumbers(  # type: ignore[assignment]
        np.random.default_rng(user_seed), groups=index.size, copies=int(copies)
    )
    forked._candidate_rng = np.random.default_rng(candidate_seed)
    return forked
