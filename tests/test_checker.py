"""`loe_gym.check_simulator`: it passes on the built-in simulators and on a user's own,
and for every rule a deliberately broken simulator fails with an error naming that rule."""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import NUM_ITEMS

import loe_gym
from loe_gym import Catalog, ContractError, Responses, check_simulator
from loe_gym.envs import BUILT_IN_SIMULATORS, make_simulator
from simulators.engagement import EngagementState, EngagementUsers

# The learned simulator needs a fitted predictor: tests/test_learned_simulator.py checks it.
HAND_WRITTEN = sorted(name for name in BUILT_IN_SIMULATORS if name != "learned")


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_built_in_simulators_pass(name: str) -> None:
    check_simulator(make_simulator(name, {"num_items": NUM_ITEMS}))


def test_engagement_users_pass_with_larger_batches_and_slates() -> None:
    check_simulator(
        EngagementUsers(num_items=NUM_ITEMS), num_users=32, num_steps=20, slate_sizes=(1, 3, 5)
    )


# ------------------------------------------------------------ a user's own simulator


@dataclasses.dataclass(frozen=True)
class CoinFlipState:
    budget: np.ndarray  # (num_users,) steps left in the session


class CoinFlipUsers:
    """A minimal plug-in: each shown item is clicked with probability 1/2 (at most one per
    slate), a session lasts 5 steps, and users come back tomorrow with probability 0.9."""

    response_extras: tuple[str, ...] = ()
    user_feature_size = 1

    def __init__(self, num_items: int = 30) -> None:
        self.catalog = Catalog(
            features=np.eye(num_items, 3, dtype=np.float32), feature_names=("a", "b", "c")
        )

    def reset(self, num_users: int, rng: np.random.Generator) -> CoinFlipState:
        return CoinFlipState(budget=np.full(num_users, 5, np.int64))

    def respond(
        self, state: CoinFlipState, slates: np.ndarray, rng: np.random.Generator
    ) -> Responses:
        num_users, slate_size = slates.shape
        pick = rng.integers(0, 2 * slate_size, num_users)  # ≥ slate_size: no click
        clicked = np.arange(slate_size)[None, :] == pick[:, None]
        session_end = state.budget <= 1
        churned = session_end & (rng.random(num_users) < 0.1)
        return Responses(
            clicked=clicked,
            watch_time=clicked * 1.0,
            completion=clicked * 1.0,
            session_end=session_end,
            gap_days=np.where(session_end & ~churned, 1, 0),
            churned=churned,
        )

    def update(
        self,
        state: CoinFlipState,
        slates: np.ndarray,
        responses: Responses,
        rng: np.random.Generator,
    ) -> CoinFlipState:
        return CoinFlipState(budget=np.where(responses.session_end, 5, state.budget - 1))

    def user_features(self, state: CoinFlipState) -> np.ndarray:
        return (state.budget[:, None] / 5.0).astype(np.float32)


def test_user_feature_bounds_may_be_lists_and_become_float32_bounds() -> None:
    class Bounded(CoinFlipUsers):
        user_feature_bounds = ([0.0], [1.0])  # lists, float64 values

    check_simulator(Bounded())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium warns on float64 bounds of a float32 Box
        env = gym.make("loe_gym/Recommendation-v0", simulator=Bounded, num_candidates=5)
    space = env.observation_space["user"]
    assert space.low.dtype == np.float32 and space.low.tolist() == [0.0]
    assert space.high.tolist() == [1.0]


def test_a_users_own_simulator_passes_and_runs() -> None:
    check_simulator(CoinFlipUsers())
    assert isinstance(CoinFlipUsers(), loe_gym.UserSimulator)
    env = gym.make("loe_gym/Recommendation-v0", simulator=CoinFlipUsers, num_candidates=5)
    obs, _ = env.reset(seed=0)
    assert obs["user"].shape == (1,)
    for _ in range(20):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            env.reset()


# ----------------------------------------------------------- broken simulators


class Small(EngagementUsers):
    """The engagement model on a small catalog (each broken variant changes one thing)."""

    def __init__(self) -> None:
        super().__init__(num_items=NUM_ITEMS)


def _replace(responses: Responses, **changes: Any) -> Responses:
    return dataclasses.replace(responses, **changes)


class MutatesStateInRespond(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        state.budget[:] = state.budget - 1.0
        return responses


class MutatesStateInUpdate(Small):
    """The classic slip: ``fatigue = state.fatigue; fatigue *= decay``."""

    def update(self, state: Any, slates: np.ndarray, responses: Responses, rng: Any) -> Any:
        new_state = super().update(state, slates, responses, rng)
        fatigue = state.fatigue
        fatigue *= 0.5
        return new_state


class MutatesSlatesInUpdate(Small):
    def update(self, state: Any, slates: np.ndarray, responses: Responses, rng: Any) -> Any:
        new_state = super().update(state, slates, responses, rng)
        slates[:] = 0
        return new_state


class MutatesResponsesInUpdate(Small):
    def update(self, state: Any, slates: np.ndarray, responses: Responses, rng: Any) -> Any:
        new_state = super().update(state, slates, responses, rng)
        responses.completion[:] = 0.5
        return new_state


class WrongClickedShape(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, clicked=responses.clicked[:, 0])


class IntegerClicks(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, clicked=responses.clicked.astype(np.int64))


class WatchWithoutClick(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(
            responses, watch_time=np.where(responses.clicked, responses.watch_time, 0.5)
        )


class NegativeWatchTime(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, watch_time=-responses.watch_time - 1.0)


class NaNWatchTime(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, watch_time=np.where(responses.clicked, np.nan, 0.0))


class CompletionAboveOne(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, completion=responses.completion * 3.0)


class ChurnWithoutSessionEnd(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, churned=np.ones_like(responses.churned))


class GapDaysWithoutSessionEnd(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, gap_days=responses.gap_days + 1)


class GlobalRandomState(Small):
    """Draws from numpy's global RNG instead of the rng argument (RecSim's defect)."""

    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        seed = np.random.randint(2**31)  # noqa: NPY002 (the defect under test)
        return super().respond(state, slates, np.random.default_rng(seed))


class ExtrasNotDeclared(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, extras={"liked": np.zeros(slates.shape)})


class DeclaredExtrasMissing(Small):
    response_extras = ("liked",)


class ExtrasWrongShape(Small):
    response_extras = ("liked",)

    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, extras={"liked": np.zeros(slates.shape[0])})


class InternalsWithoutUserAxis(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        return _replace(responses, internals={**responses.internals, "total": np.float64(1.0)})


class RespondDropsInternals(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        return _replace(super().respond(state, slates, rng), internals={})


class InternalsKeptOnTheSimulator(Small):
    """A side channel: respond() keeps its internals on the instance for update()."""

    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Responses:
        responses = super().respond(state, slates, rng)
        self.kept = responses.internals
        return _replace(responses, internals={})

    def update(self, state: Any, slates: np.ndarray, responses: Responses, rng: Any) -> Any:
        return super().update(state, slates, _replace(responses, internals=self.kept), rng)


class DictState(Small):
    def reset(self, num_users: int, rng: np.random.Generator) -> Any:
        return dataclasses.asdict(super().reset(num_users, rng))


class StateWithScalarField(Small):
    def reset(self, num_users: int, rng: np.random.Generator) -> Any:
        return dataclasses.replace(super().reset(num_users, rng), budget=20.0)


class UpdateChangesDtype(Small):
    def update(self, state: Any, slates: np.ndarray, responses: Responses, rng: Any) -> Any:
        new_state = super().update(state, slates, responses, rng)
        return dataclasses.replace(new_state, fatigue=new_state.fatigue.astype(np.float32))


class UpdateReturnsOtherType(Small):
    def update(self, state: Any, slates: np.ndarray, responses: Responses, rng: Any) -> Any:
        new_state = super().update(state, slates, responses, rng)
        return CoinFlipState(budget=new_state.budget)


class UpdateDropsUsers(Small):
    def update(self, state: Any, slates: np.ndarray, responses: Responses, rng: Any) -> Any:
        new_state = super().update(state, slates, responses, rng)
        return EngagementState(**{k: v[1:] for k, v in dataclasses.asdict(new_state).items()})


class RespondReturnsDict(Small):
    def respond(self, state: Any, slates: np.ndarray, rng: np.random.Generator) -> Any:
        return dataclasses.asdict(super().respond(state, slates, rng))


class WrongUserFeatures(Small):
    def user_features(self, state: Any) -> np.ndarray:
        return np.zeros((state.budget.shape[0], 2), np.float32)


class ExtrasAsList(Small):
    response_extras = ["liked"]  # type: ignore[assignment]  # noqa: RUF012 (the defect)


class NegativeUserFeatureSize(Small):
    user_feature_size = -1


class NotACatalog(Small):
    def __init__(self) -> None:
        super().__init__()
        self.catalog = {"features": self.catalog.features}  # type: ignore[assignment]


class ClickProbabilityOutOfRange(Small):
    def expected_responses(self, state: Any, items: np.ndarray) -> dict[str, np.ndarray]:
        expected = super().expected_responses(state, items)
        return {**expected, "click_probability": expected["click_probability"] + 1.0}


class NegativeExpectedWatch(Small):
    def expected_responses(self, state: Any, items: np.ndarray) -> dict[str, np.ndarray]:
        expected = super().expected_responses(state, items)
        return {**expected, "watch_time": -expected["watch_time"] - 1.0}


class ExpectedMissingKey(Small):
    def expected_responses(self, state: Any, items: np.ndarray) -> dict[str, np.ndarray]:
        expected = super().expected_responses(state, items)
        return {k: v for k, v in expected.items() if k != "click_probability"}


class ExpectedWrongShape(Small):
    def expected_responses(self, state: Any, items: np.ndarray) -> dict[str, np.ndarray]:
        expected = super().expected_responses(state, items)
        return {**expected, "watch_time": expected["watch_time"][:, :1]}


class BoundsOfTheWrongLength(Small):
    user_feature_bounds = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # 3 bounds, 0 features


class ExpectedCouplesUsers(Small):
    """Users influence each other: probabilities normalised over the batch."""

    def expected_responses(self, state: Any, items: np.ndarray) -> dict[str, np.ndarray]:
        expected = super().expected_responses(state, items)
        click = expected["click_probability"]
        return {**expected, "click_probability": click / click.max()}


BROKEN: dict[str, tuple[type[Any], str, str]] = {
    # name: (simulator class, rule tag, what the message must also say)
    "state mutated in respond": (
        MutatesStateInRespond,
        "rule 7: no mutation",
        r"respond\(\).*state",
    ),
    "state mutated in update": (MutatesStateInUpdate, "rule 7: no mutation", r"update\(\).*state"),
    "slates mutated in update": (
        MutatesSlatesInUpdate,
        "rule 7: no mutation",
        r"update\(\).*slates",
    ),
    "responses mutated in update": (
        MutatesResponsesInUpdate,
        "rule 7: no mutation",
        r"update\(\).*responses",
    ),
    "wrong clicked shape": (WrongClickedShape, "rule 3: responses", r"clicked.*shape \(8, 1\)"),
    "integer clicks": (IntegerClicks, "rule 3: responses", r"clicked must be a bool array"),
    "watch time without click": (WatchWithoutClick, "rule 3: responses", r"watch_time must be 0"),
    "negative watch time": (NegativeWatchTime, "rule 3: responses", r"watch_time must be ≥ 0"),
    "NaN watch time": (NaNWatchTime, "rule 3: responses", r"watch_time has NaN"),
    "completion above 1": (
        CompletionAboveOne,
        "rule 3: responses",
        r"completion must lie in \[0, 1\]",
    ),
    "churn without session end": (
        ChurnWithoutSessionEnd,
        "rule 3: responses",
        r"churned users must also have session_end",
    ),
    "gap days without session end": (GapDaysWithoutSessionEnd, "rule 3: responses", r"gap_days"),
    "global RNG": (GlobalRandomState, "rule 6: determinism", r"rng argument"),
    "undeclared extras": (ExtrasNotDeclared, "rule 3: responses", r"extras has keys \('liked',\)"),
    "declared extras missing": (DeclaredExtrasMissing, "rule 3: responses", r"response_extras"),
    "extras wrong shape": (ExtrasWrongShape, "rule 3: responses", r"extras\['liked'\]"),
    "internals without user axis": (
        InternalsWithoutUserAxis,
        "rule 3: responses",
        r"internals\['total'\].*num_users=8",
    ),
    "respond drops internals": (
        RespondDropsInternals,
        "rule 4: update",
        r"failed on the Responses.*with_internals",
    ),
    "internals kept on the simulator": (
        InternalsKeptOnTheSimulator,
        "rule 4: update",
        r"reads values kept on the simulator",
    ),
    "non-dataclass state": (DictState, "rule 2: state", r"dataclass"),
    "scalar state field": (StateWithScalarField, "rule 2: state", r"'budget'"),
    "update changes a dtype": (
        UpdateChangesDtype,
        "rule 4: update",
        r"'fatigue'.*float64.*float32",
    ),
    "update returns another type": (UpdateReturnsOtherType, "rule 4: update", r"CoinFlipState"),
    "update drops users": (UpdateDropsUsers, "rule 2: state", r"update\(\).*num_users=8"),
    "respond returns a dict": (RespondReturnsDict, "rule 3: responses", r"loe_gym.Responses"),
    "wrong user features": (WrongUserFeatures, "rule 5: user_features", r"\(8, 0\).*\(8, 2\)"),
    "extras as a list": (ExtrasAsList, "rule 1: attributes", r"response_extras"),
    "bounds of the wrong length": (
        BoundsOfTheWrongLength,
        "rule 5: user_features",
        r"user_feature_bounds.*user_feature_size=0",
    ),
    "negative user feature size": (
        NegativeUserFeatureSize,
        "rule 1: attributes",
        r"user_feature_size",
    ),
    "catalog not a Catalog": (NotACatalog, "rule 1: attributes", r"loe_gym.Catalog"),
    "click probability above 1": (
        ClickProbabilityOutOfRange,
        "rule 8: privileged",
        r"click_probability must lie in \[0, 1\]",
    ),
    "negative expected watch": (NegativeExpectedWatch, "rule 8: privileged", r"watch_time be ≥ 0"),
    "expected key missing": (ExpectedMissingKey, "rule 8: privileged", r"'click_probability'"),
    "expected wrong shape": (ExpectedWrongShape, "rule 8: privileged", r"'watch_time'.*shape"),
    "expected couples users": (
        ExpectedCouplesUsers,
        "rule 8: privileged",
        r"differs between the batch",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_broken_simulator_names_the_rule(case: str) -> None:
    simulator_class, rule, detail = BROKEN[case]
    with pytest.raises(ContractError, match=re.escape(f"[{rule}]") + ".*" + detail):
        check_simulator(simulator_class())


def test_broken_simulators_are_otherwise_valid_engagement_users() -> None:
    """Each broken variant differs from a passing simulator only by its defect."""
    check_simulator(Small())


def test_contract_error_is_a_value_error() -> None:
    assert issubclass(ContractError, ValueError)
