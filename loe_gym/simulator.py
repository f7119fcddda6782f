"""The simulator contract: what a user model must provide to run in loe_gym.

A user simulator works on a *batch* of users with numpy. Its state is a frozen
dataclass whose fields are arrays with leading axis ``num_users``; every method takes
the state and returns new values (inputs are never mutated), and all randomness flows
through the ``np.random.Generator`` passed in. One step of the environment is::

    responses = simulator.respond(state, slates, rng)         # what the users do
    state = simulator.update(state, slates, responses, rng)   # how they change

Whatever ``update`` needs from ``respond`` travels in ``responses.internals``, never in
attributes of the simulator, so ``update`` depends on its arguments alone.

Candidate retrieval, histories, days and the episode horizon belong to the environment,
so a simulator only models users. `loe_gym.check_simulator` verifies a plug-in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from loe_gym.catalog import Catalog
from loe_gym.types import BoolArray, FloatArray, Generator, IntArray

StateT = TypeVar("StateT")


@dataclass(frozen=True)
class Responses:
    """What a batch of users did with the slates they were shown in one step.

    Attributes:
        clicked: ``(num_users, slate_size) bool``; at most one click per slate for
            choice models with a single pick.
        watch_time: ``(num_users, slate_size) float`` minutes watched, 0 where not clicked.
        completion: ``(num_users, slate_size) float`` fraction of the item consumed,
            in [0, 1], 0 where not clicked.
        session_end: ``(num_users,) bool`` the user closed the app after this step.
        gap_days: ``(num_users,) int64`` days until the next visit where the session
            ended and the user will return (1 = tomorrow); 0 otherwise.
        churned: ``(num_users,) bool`` the user never comes back (ends the episode);
            implies ``session_end``.
        extras: simulator-specific per-item responses, each ``(num_users, slate_size)``
            float (RecSim's ``liked``, ``quality``, ``cluster_id``, …). Their names
            are the simulator's ``response_extras``, in that order.
        internals: values the simulator computed in ``respond`` for its own ``update``
            (e.g. the satisfaction a session ends with), each an array with leading
            axis ``num_users``; never observed by agents, never logged. Empty for
            responses not made by ``respond`` (hand-written, imported from logs).
    """

    clicked: BoolArray
    watch_time: FloatArray
    completion: FloatArray
    session_end: BoolArray
    gap_days: IntArray
    churned: BoolArray
    extras: Mapping[str, FloatArray] = field(default_factory=dict)
    internals: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return int(self.clicked.shape[0])

    @property
    def returned_next_day(self) -> BoolArray:
        """``(num_users,) bool`` the session ended and the next visit is tomorrow."""
        return self.session_end & ~self.churned & (self.gap_days == 1)


@runtime_checkable
class UserSimulator(Protocol[StateT]):
    """A batched user model (see the module docstring for the step contract).

    Attributes:
        catalog: the items users can be shown.
        response_extras: names of the simulator-specific fields in ``Responses.extras``.
        user_feature_size: size of the *observable* per-user vector returned by
            ``user_features`` (0 when the platform observes nothing about the user
            beyond the interaction history).
    """

    catalog: Catalog
    response_extras: tuple[str, ...]
    user_feature_size: int

    def reset(self, num_users: int, rng: Generator) -> StateT:
        """Sample ``num_users`` new users; returns their initial state."""
        ...

    def respond(self, state: StateT, slates: IntArray, rng: Generator) -> Responses:
        """Users' responses to ``slates``: ``(num_users, slate_size)`` item ids."""
        ...

    def update(
        self, state: StateT, slates: IntArray, responses: Responses, rng: Generator
    ) -> StateT:
        """The users' next state after seeing ``slates`` and responding ``responses``."""
        ...

    def user_features(self, state: StateT) -> FloatArray:
        """``(num_users, user_feature_size) float`` what the platform observes of users."""
        ...


@runtime_checkable
class PrivilegedSimulator(UserSimulator[StateT], Protocol[StateT]):
    """A simulator that can tell oracles the true expectations of responses.

    These quantities never enter the agent's observation; oracle baselines and
    diagnostics (e.g. the Bayes-optimal AUC of a predictor) use them.

    Optionally, ``return_probability(state) -> (num_users,) float``: the probability
    that a user whose session ends in ``state`` visits again the next day (privileged
    logs use it for ``true_return_probability``; without it that column is NaN).
    """

    def expected_responses(self, state: StateT, items: IntArray) -> dict[str, FloatArray]:
        """True expectations for each user and item shown *alone*.

        Args:
            items: ``(num_users, num_items_per_user)`` item ids.

        Returns:
            Arrays of shape ``(num_users, num_items_per_user)`` with at least
            ``click_probability`` and ``watch_time`` (expected minutes, unconditional).
        """
        ...


def user_feature_bounds(simulator: Any) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's declared ``user_feature_bounds`` (default ±∞) as float64 arrays of
    shape ``(user_feature_size,)``; scalars and sequences are broadcast.

    Raises:
        ContractError: bounds that are not two numbers or sequences of that length, or a
            low bound above the high one.
    """
    from loe_gym.errors import ContractError

    size = int(simulator.user_feature_size)
    declared = getattr(simulator, "user_feature_bounds", (-np.inf, np.inf))
    try:
        low, high = declared
        bounds = [np.broadcast_to(np.asarray(b, np.float64), (size,)) for b in (low, high)]
    except (TypeError, ValueError):
        raise ContractError(
            f"[rule 5: user_features] user_feature_bounds must be (low, high), each a number "
            f"or a sequence of user_feature_size={size} numbers; got {declared!r}."
        ) from None
    if np.any(np.isnan(bounds[0]) | np.isnan(bounds[1]) | (bounds[0] > bounds[1])):
        raise ContractError(
            f"[rule 5: user_features] user_feature_bounds {declared!r} must have low ≤ high "
            "and no NaN."
        )
    return bounds[0].copy(), bounds[1].copy()


def is_privileged(simulator: Any) -> bool:
    """Whether ``simulator`` tells its true expectations (`PrivilegedSimulator`'s
    ``expected_responses``), which the privileged baselines and log columns read."""
    return callable(getattr(simulator, "expected_responses", None))


# --- helpers for states: frozen dataclasses (possibly nested, or holding mappings) of
# arrays with leading axis num_users ---


def state_fields(state: Any) -> dict[str, np.ndarray]:
    """The leaves of a simulator state (arrays, if it follows the contract) by path:
    ``"fatigue.level"`` for a field ``level`` of a nested dataclass ``fatigue``,
    ``"traits['age']"`` in a mapping."""
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        raise TypeError(
            "A simulator state must be a dataclass instance whose fields are numpy "
            f"arrays with leading axis num_users; got {type(state).__name__}."
        )
    leaves: dict[str, Any] = {}

    def walk(node: Any, where: str) -> None:
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            for f in dataclasses.fields(node):
                walk(getattr(node, f.name), f"{where}.{f.name}" if where else f.name)
        elif isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{where}[{key!r}]")
        else:
            leaves[where] = node

    walk(state, "")
    return leaves


def map_users(fn: Any, state: StateT, *others: Any) -> StateT:
    """``state`` with every array leaf ``a`` replaced by ``fn(a, *other_leaves)`` (the
    leaves at the same path in ``others``, states of the same structure).

    A state is a dataclass or mapping, possibly nested, whose leaves are arrays with
    leading axis ``num_users``.

    Raises:
        TypeError: a leaf that is not an array with a leading user axis, named by its path.
    """

    def walk(node: Any, rest: tuple[Any, ...], where: str) -> Any:
        if isinstance(node, np.ndarray) and node.ndim > 0:
            return fn(node, *rest)
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            return dataclasses.replace(  # type: ignore[type-var]
                node,  # type: ignore[arg-type]
                **{
                    f.name: walk(
                        getattr(node, f.name),
                        tuple(getattr(o, f.name) for o in rest),
                        f"{where}.{f.name}",
                    )
                    for f in dataclasses.fields(node)
                },
            )
        if isinstance(node, Mapping):
            return type(node)(  # type: ignore[call-arg]
                {k: walk(v, tuple(o[k] for o in rest), f"{where}[{k!r}]") for k, v in node.items()}
            )
        shape = getattr(node, "shape", None)
        raise TypeError(
            f"{where} is {type(node).__name__}{'' if shape is None else f' of shape {shape}'}, "
            "not an array with leading axis num_users, so the state cannot be indexed by "
            "users. Store per-user values as arrays of shape (num_users, ...), and keep "
            "per-simulator constants (catalog arrays, parameters) on the simulator, not in "
            "the state."
        )

    return walk(state, others, "state")  # type: ignore[no-any-return]


def select_users(state: StateT, index: IntArray | BoolArray) -> StateT:
    """The sub-batch of users ``index`` (an int or bool index along axis 0)."""
    return map_users(lambda leaf: leaf[index], state)


take_users = select_users
"""The users ``index`` of ``state``; rows may repeat (a fork of those users). Leaves are
indexed, never shared, so the result can be stepped without touching ``state``."""


def replace_users(state: StateT, mask: BoolArray, new_users: StateT) -> StateT:
    """A copy of ``state`` where users with ``mask`` are taken from ``new_users``.

    ``new_users`` holds exactly ``mask.sum()`` users, in order.
    """

    def merge(leaf: np.ndarray, new: np.ndarray) -> np.ndarray:
        merged = leaf.copy()
        merged[mask] = new
        return merged

    return map_users(merge, state, new_users)


def concatenate_states(states: list[StateT]) -> StateT:
    """Stack several states along the user axis."""
    return map_users(lambda *leaves: np.concatenate(leaves), states[0], *states[1:])


def select_responses(responses: Responses, index: IntArray | BoolArray) -> Responses:
    """The responses of users ``index``."""
    return Responses(
        clicked=responses.clicked[index],
        watch_time=responses.watch_time[index],
        completion=responses.completion[index],
        session_end=responses.session_end[index],
        gap_days=responses.gap_days[index],
        churned=responses.churned[index],
        extras={k: v[index] for k, v in responses.extras.items()},
        internals={k: v[index] for k, v in responses.internals.items()},
    )


# --- fast row reductions: most steps have slate_size 1, where numpy's axis-1
# reductions cost more than the arithmetic they reduce.


def row_any(values: np.ndarray) -> BoolArray:
    """``values.any(axis=1)`` for a ``(num_users, slate_size)`` array."""
    if values.shape[1] == 1:
        return values[:, 0].astype(bool)
    return np.asarray(values.any(axis=1), dtype=bool)


def row_sum(values: np.ndarray) -> np.ndarray:
    """``values.sum(axis=1)`` for a ``(num_users, slate_size)`` array."""
    return values[:, 0].copy() if values.shape[1] == 1 else values.sum(axis=1)


def check_step(simulator: Any, responses: Responses, watch: np.ndarray) -> None:
    """The cheap checks the env runs on every step, before it uses ``responses``: the
    minutes (``watch``, ``(N,)``, their row sums) are finite, and a session that ends
    without churn returns after ``gap_days ≥ 1`` (else days would run backwards).
    Raises ``ValueError`` naming the simulator; `loe_gym.check_simulator` checks the rest."""
    if not np.isfinite(watch.sum()):
        users = np.flatnonzero(~np.isfinite(watch))[:5].tolist()
        raise ValueError(
            f"{type(simulator).__name__} ({simulator!r}) returned NaN or inf watch_time for "
            f"users {users}; the env does "
            "not pass non-finite rewards to an agent. Fix the simulator (loe_gym."
            "check_simulator finds such bugs)."
        )
    if np.count_nonzero(responses.session_end):
        returning = responses.session_end & ~responses.churned
        if np.count_nonzero(responses.gap_days[returning] < 1):
            users = np.flatnonzero(returning & (responses.gap_days < 1))[:5].tolist()
            raise ValueError(
                f"{type(simulator).__name__} ({simulator!r}) ended sessions without churn "
                "with gap_days < 1 for users "
                f"{users} ({responses.gap_days[users].tolist()}); a returning user comes "
                "back after gap_days ≥ 1 days. Fix the simulator."
            )


# --- sampling building blocks shared by user models -----------------------------------


def multinomial_logit_choice(utility: FloatArray, rng: Generator) -> BoolArray:
    """``(num_users, slate_size) bool``: one pick per row or none, by a multinomial logit
    over the slate's ``utility`` and a no-click option of utility 0 (a slate of one item
    clicks with probability ``σ(utility)``)."""
    weights = np.exp(np.clip(utility, -50.0, 50.0))
    cumulative = np.cumsum(weights, axis=1)
    total = cumulative[:, -1:] + 1.0  # + exp(0) for the no-click option
    draw = rng.random((utility.shape[0], 1)) * total
    pick = (cumulative < draw).sum(axis=1)  # == slate_size means no click
    return np.arange(utility.shape[1])[None, :] == pick[:, None]


def geometric_gaps(probability: FloatArray, rng: Generator) -> IntArray:
    """``(num_users,) int64`` days until the next visit for a daily return probability:
    Geometric draws (trials until the first success, ≥ 1), by inversion (one uniform each)."""
    uniform = rng.random(probability.shape)
    p = np.minimum(np.maximum(probability, 1e-12), 1.0 - 1e-12)
    return 1 + (np.log1p(-uniform) / np.log1p(-p)).astype(np.int64)
