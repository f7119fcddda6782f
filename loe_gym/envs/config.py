"""Typed configuration of the recommendation environments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gymnasium.vector import AutoresetMode

from loe_gym.config import FrozenConfig
from loe_gym.errors import did_you_mean

REWARDS = ("watch_time", "click")
OBSERVATIONS = ("history", "recsim")
AUTORESET_MODES = ("next_step", "same_step", "disabled")
DUPLICATE_SLATE_ITEMS = ("error", "replace")


@dataclass(frozen=True)
class EnvConfig(FrozenConfig):
    """Options of `RecommendationVectorEnv` and `RecommendationEnv` (``gym.make`` kwargs)."""

    simulator: Any = "simulators.engagement:EngagementUsers"
    """A simulator instance, class, ``"module:Class"`` string or a built-in name
    (``engagement``, ``interest_evolution``, ``long_term_satisfaction``)."""
    simulator_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for the simulator's constructor (its config options)."""
    num_candidates: int = 20
    """Candidates retrieved per step, uniformly without replacement from the catalog."""
    slate_size: int = 1
    """Items shown per step (1: the action is one candidate index)."""
    history_length: int = 10
    """Most recent shown items kept in the ``history_*`` observation keys."""
    horizon_days: int = 30
    """The episode is truncated when the next visit would be on this day or later."""
    max_episode_steps: int | None = None
    """Optional cap on steps per episode (truncation); ``None`` for no cap."""
    reward: str = "watch_time"
    """``watch_time`` (minutes watched) or ``click`` (clicks, for myopic training)."""
    observation: str = "history"
    """``history`` (ids, features, history, context) or ``recsim`` (RecSim's user/doc/response)."""
    duplicate_slate_items: str = "replace"
    """``replace``: replace each repeated candidate by the lowest unused candidate index
    (policies of SB3, TorchRL and others sample a ``MultiDiscrete``'s positions
    independently, so repeats happen; ``info["slate"]`` holds what was shown);
    ``error``: reject a slate with a repeat."""

    def __post_init__(self) -> None:
        for name in ("num_candidates", "slate_size", "horizon_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if (
            isinstance(self.history_length, bool)
            or not isinstance(self.history_length, int)
            or self.history_length < 0
        ):
            raise ValueError(
                f"history_length must be a non-negative integer, got {self.history_length!r}."
            )
        steps = self.max_episode_steps
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise ValueError(
                f"max_episode_steps must be a positive integer or None, got {self.max_episode_steps!r}."
            )
        if self.slate_size > self.num_candidates:
            raise ValueError(
                f"slate_size={self.slate_size} cannot exceed num_candidates={self.num_candidates}: "
                "a slate holds distinct candidates. Lower slate_size or raise num_candidates."
            )
        for name, choices in (
            ("reward", REWARDS),
            ("observation", OBSERVATIONS),
            ("duplicate_slate_items", DUPLICATE_SLATE_ITEMS),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(
                    f"Unknown {name} {value!r}.{did_you_mean(str(value), choices)} "
                    f"Choose one of {', '.join(choices)}."
                )
        if not isinstance(self.simulator_kwargs, Mapping):
            raise TypeError(
                f"simulator_kwargs must be a mapping of option names to values, "
                f"got {type(self.simulator_kwargs).__name__}."
            )


def parse_autoreset(mode: str | AutoresetMode) -> AutoresetMode:
    """Gymnasium's `AutoresetMode` from itself or its name (``"next_step"`` …)."""
    if isinstance(mode, AutoresetMode):
        return mode
    key = str(mode).lower()
    if key not in AUTORESET_MODES:
        raise ValueError(
            f"Unknown autoreset_mode {mode!r}.{did_you_mean(key, AUTORESET_MODES)} "
            f"Choose one of {', '.join(AUTORESET_MODES)}."
        )
    return AutoresetMode[key.upper()]
