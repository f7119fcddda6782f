"""A tiny simulator where only a policy that plans across sessions wins (tests only).

Item 0 gives the most minutes now (10) but ends the session and the user never returns;
items 1-3 give 1-3 minutes (±10 % noise) and keep the user, who comes back the next day.
Sessions last 4 steps. Over ``horizon_days`` days, always taking item 3 earns about
12 minutes a day; the greedy policy earns 10 minutes once. The catalog's public features
show each item's minutes and whether it is the trap, so a learner can tell them apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from loe_gym import Catalog, Responses


@dataclasses.dataclass(frozen=True)
class TrapState:
    steps: np.ndarray  # (num_users,) steps taken in the current session


class TrapUsers:
    """Greedy users' trap: see the module docstring."""

    response_extras: tuple[str, ...] = ()
    user_feature_size = 0
    minutes = np.array([10.0, 1.0, 2.0, 3.0])

    def __init__(self) -> None:
        features = np.column_stack([self.minutes / 10.0, [1.0, 0.0, 0.0, 0.0]])
        self.catalog = Catalog(
            features=features.astype(np.float32), feature_names=("minutes", "trap")
        )

    def reset(self, num_users: int, rng: Any) -> TrapState:
        return TrapState(steps=np.zeros(num_users, np.int64))

    def respond(self, state: TrapState, slates: np.ndarray, rng: Any) -> Responses:
        n = slates.shape[0]
        watch = self.minutes[slates] * (0.9 + 0.2 * rng.random((n, 1)))
        trapped = slates[:, 0] == 0
        session_end = trapped | (state.steps >= 3)
        return Responses(
            clicked=np.ones(slates.shape, bool),
            watch_time=watch,
            completion=np.ones(slates.shape),
            session_end=session_end,
            gap_days=np.where(session_end & ~trapped, 1, 0),
            churned=trapped,
        )

    def update(self, state: TrapState, slates: Any, responses: Responses, rng: Any) -> TrapState:
        return TrapState(steps=np.where(responses.session_end, 0, state.steps + 1))

    def user_features(self, state: TrapState) -> np.ndarray:
        return np.zeros((state.steps.shape[0], 0), np.float32)

    def expected_responses(self, state: TrapState, items: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "click_probability": np.ones(items.shape),
            "watch_time": self.minutes[items],
            "quality": np.array([0.0, 1.0, 2.0, 3.0])[items],  # the trap has none
        }


class AbsenceUsers:
    """Where only a discount on the clock sees the cost of absence (tests only).

    Every visit is one step. Item 0 gives 3 minutes (±10 %) and the next visit comes in 5
    days; item 1 gives 2 minutes and the user is back tomorrow. Per step item 0 pays more,
    so a per-step discount far from the horizon prefers it; per day item 1 earns 2 minutes
    and item 0 0.6. The features show each item's minutes and days away.
    """

    response_extras: tuple[str, ...] = ()
    user_feature_size = 0
    minutes = np.array([3.0, 2.0])
    days_away = np.array([5, 1])

    def __init__(self) -> None:
        features = np.column_stack([self.minutes / 3.0, self.days_away / 5.0])
        self.catalog = Catalog(
            features=features.astype(np.float32), feature_names=("minutes", "days_away")
        )

    def reset(self, num_users: int, rng: Any) -> TrapState:
        return TrapState(steps=np.zeros(num_users, np.int64))

    def respond(self, state: TrapState, slates: np.ndarray, rng: Any) -> Responses:
        n = slates.shape[0]
        return Responses(
            clicked=np.ones(slates.shape, bool),
            watch_time=self.minutes[slates] * (0.9 + 0.2 * rng.random((n, 1))),
            completion=np.ones(slates.shape),
            session_end=np.ones(n, bool),
            gap_days=self.days_away[slates[:, 0]],
            churned=np.zeros(n, bool),
        )

    def update(self, state: TrapState, slates: Any, responses: Responses, rng: Any) -> TrapState:
        return state

    def user_features(self, state: TrapState) -> np.ndarray:
        return np.zeros((state.steps.shape[0], 0), np.float32)


@dataclasses.dataclass(frozen=True)
class _Session:
    steps: np.ndarray  # (num_users,)


@dataclasses.dataclass(frozen=True)
class NestedTrapState:
    session: _Session
    counts: dict[str, np.ndarray]  # {"shown": (num_users, 4)} items shown so far


class NestedTrapUsers(TrapUsers):
    """`TrapUsers` with a nested state (a dataclass and a mapping inside the state): the
    same responses under the same draws."""

    def reset(self, num_users: int, rng: Any) -> NestedTrapState:  # type: ignore[override]
        return NestedTrapState(
            _Session(np.zeros(num_users, np.int64)), {"shown": np.zeros((num_users, 4))}
        )

    def respond(self, state: Any, slates: np.ndarray, rng: Any) -> Responses:
        return super().respond(TrapState(state.session.steps), slates, rng)

    def update(self, state: Any, slates: Any, responses: Responses, rng: Any) -> Any:
        steps = super().update(TrapState(state.session.steps), slates, responses, rng).steps
        shown = state.counts["shown"] + np.eye(4)[slates[:, 0]]
        return NestedTrapState(_Session(steps), {"shown": shown})

    def user_features(self, state: Any) -> np.ndarray:
        return super().user_features(TrapState(state.session.steps))

    def expected_responses(self, state: Any, items: np.ndarray) -> dict[str, np.ndarray]:
        return super().expected_responses(TrapState(state.session.steps), items)


class BlindTrapUsers:
    """`NestedTrapUsers` without ``expected_responses``: no privileged policy acts on it,
    only rollouts of the env and what the observation shows."""

    response_extras: tuple[str, ...] = ()
    user_feature_size = 0

    def __init__(self, constant_features: bool = False) -> None:
        self._users = NestedTrapUsers()
        self.catalog = self._users.catalog
        if constant_features:  # a catalog that tells nothing about its items
            features = np.ones_like(self.catalog.features)
            self.catalog = dataclasses.replace(self.catalog, features=features)

    def reset(self, num_users: int, rng: Any) -> Any:
        return self._users.reset(num_users, rng)

    def respond(self, state: Any, slates: np.ndarray, rng: Any) -> Responses:
        return self._users.respond(state, slates, rng)

    def update(self, state: Any, slates: Any, responses: Responses, rng: Any) -> Any:
        return self._users.update(state, slates, responses, rng)

    def user_features(self, state: Any) -> np.ndarray:
        return self._users.user_features(state)
