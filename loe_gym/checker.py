"""`check_simulator`: verify that a user simulator honours the contract.

Modelled on Gymnasium's ``check_env``: it runs the simulator on small random batches
and raises `ContractError` naming the broken rule, what was seen and how to fix it.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from loe_gym.catalog import Catalog
from loe_gym.errors import ContractError, ForkWarning
from loe_gym.simulator import (
    Responses,
    replace_users,
    select_responses,
    select_users,
    state_fields,
    take_users,
    user_feature_bounds,
)


def check_simulator(
    simulator: Any,
    *,
    num_users: int = 8,
    num_steps: int = 10,
    slate_sizes: tuple[int, ...] = (1, 2),
    seed: int = 0,
) -> None:
    """Check ``simulator`` against the `loe_gym.UserSimulator` contract.

    Rules checked (each failure names its rule):

    1. ``catalog`` is a `Catalog`; ``response_extras`` a tuple of names;
       ``user_feature_size`` an int ≥ 0.
    2. ``reset(n, rng)`` returns a dataclass state whose fields are arrays with leading
       axis ``n`` (for n = 1 and ``num_users``).
    3. ``respond`` returns `Responses` with the documented shapes and dtypes, finite
       values, ``watch_time ≥ 0`` and 0 without a click, ``completion`` in [0, 1],
       ``churned`` ⇒ ``session_end``, ``gap_days ≥ 1`` exactly where a session ended
       without churn, one extra per name in ``response_extras``, and ``internals``
       arrays with leading axis ``n``.
    4. ``update`` accepts the responses ``respond`` returned and returns a state of the
       same type, field shapes and dtypes; it depends on its arguments only (the same
       call after another ``respond`` gives the same state).
    5. ``user_features`` has shape ``(n, user_feature_size)`` and finite values.
    6. Same seed → same outputs (randomness only through the ``rng`` argument).
    7. Inputs (state, slates, responses) are never mutated.
    8. ``expected_responses`` (if provided) gives ``click_probability`` in [0, 1] and
       ``watch_time ≥ 0`` of shape ``(n, k)``, and a batch equals its users one by one.
    10. Sessions end within a few thousand random steps (a churned user is replaced; runs
        on until a few users returned, unless every session ends in churn), and every response on the way keeps rule 3 (``gap_days ≥ 1`` where a
        session ends without churn) and rule 5 (features finite, within the declared
        ``user_feature_bounds``): short runs may see no session end at all.
    9. A state can be indexed by users (`loe_gym.simulator.take_users`, which forks of an
       env use), and two copies of a user shown the same slates under common random
       numbers (`loe_gym.envs.forking.CommonRandomNumbers`) respond and change alike:
       users do not influence each other and per-user draws have leading axis ``n``.

    Raises:
        ContractError: the first of rules 1–8 and 10 the simulator breaks.
        ValueError: ``num_users`` or ``num_steps`` below 1.

    Warns:
        ForkWarning: rule 9 does not hold (only `lookahead_oracle` needs it).
    """
    for name, value in (("num_users", num_users), ("num_steps", num_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"check_simulator: {name} must be an int ≥ 1, got {value!r}.")
    _check_attributes(simulator)
    num_items = simulator.catalog.num_items
    for slate_size in slate_sizes:
        if slate_size > num_items:
            continue
        first = _rollout(simulator, num_users, num_steps, slate_size, seed)
        second = _rollout(simulator, num_users, num_steps, slate_size, seed)
        for step, (a, b) in enumerate(zip(first, second, strict=True)):
            if not _equal(a, b):
                raise ContractError(
                    f"[rule 6: determinism] two runs with seed {seed} differ at step {step} "
                    f"(slate_size={slate_size}). Draw all randomness from the rng argument; "
                    "never use np.random.* module functions, Python's random, or hidden state."
                )
    _check_sessions(simulator, num_users, seed)
    _check_update_uses_its_arguments(simulator, num_users, seed)
    _check_privileged(simulator, num_users, seed)
    try:
        _check_forkable(simulator, num_users, seed)
    except ContractError as error:
        # Envs and agents do not need forks; only planners that compare forked copies do,
        # so a simulator written before rule 9 keeps passing, with a warning.
        warnings.warn(str(error), ForkWarning, stacklevel=2)


def _check_attributes(simulator: Any) -> None:
    for name in ("catalog", "response_extras", "user_feature_size"):
        if not hasattr(simulator, name):
            raise ContractError(f"[rule 1: attributes] simulator has no attribute {name!r}.")
    for name in ("reset", "respond", "update", "user_features"):
        if not callable(getattr(simulator, name, None)):
            raise ContractError(f"[rule 1: attributes] simulator has no method {name}().")
    if not isinstance(simulator.catalog, Catalog):
        raise ContractError(
            f"[rule 1: attributes] simulator.catalog must be a loe_gym.Catalog, got "
            f"{type(simulator.catalog).__name__}."
        )
    extras = simulator.response_extras
    if not isinstance(extras, tuple) or not all(isinstance(e, str) for e in extras):
        raise ContractError(
            f"[rule 1: attributes] response_extras must be a tuple of str, got {extras!r}."
        )
    size = simulator.user_feature_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ContractError(
            f"[rule 1: attributes] user_feature_size must be an int ≥ 0, got {size!r}."
        )


def _check_user_features(simulator: Any, state: Any, num_users: int) -> np.ndarray:
    """Rule 5: shape, finiteness and the declared ``user_feature_bounds``."""
    features = np.asarray(simulator.user_features(state))
    if features.shape != (num_users, simulator.user_feature_size) or not np.all(
        np.isfinite(features)
    ):
        raise ContractError(
            f"[rule 5: user_features] expected finite values of shape "
            f"({num_users}, {simulator.user_feature_size}), got shape {features.shape}."
        )
    low, high = user_feature_bounds(simulator)
    outside = (features < low) | (features > high)
    if outside.any():
        user, column = (int(i) for i in np.argwhere(outside)[0])
        raise ContractError(
            f"[rule 5: user_features] user {user}'s feature {column} is "
            f"{features[user, column]}, outside the declared user_feature_bounds "
            f"({low}, {high}); clip the features or widen the bounds."
        )
    return features


def _check_sessions(
    simulator: Any, num_users: int, seed: int, max_steps: int = 5000, wanted: int = 3
) -> None:
    """Rule 10: run users (a churned one is replaced by a new one) until ``wanted``
    sessions have ended with a return, checking every response (gap_days ≥ 1 above all,
    which short runs never reach) and feature; fail if no session ends."""
    rng, slate_rng = np.random.default_rng(seed + 2), np.random.default_rng(seed + 3)
    num_items = simulator.catalog.num_items
    state = simulator.reset(num_users, rng)
    ended = returned = 0
    for _ in range(max_steps):
        slates = _random_slates(slate_rng, num_users, num_items, 1)
        responses = simulator.respond(state, slates, rng)
        _check_responses(simulator, responses, num_users, 1)
        state = _update(simulator, state, slates, responses, rng)
        _check_user_features(simulator, state, num_users)
        churned = np.asarray(responses.churned, bool)
        ended += int(np.count_nonzero(responses.session_end))
        returned += int(np.count_nonzero(responses.session_end & ~churned))
        # Enough returns seen, or so many ends without one that users of this simulator
        # live one session (RecSim's interest evolution): nothing more to exercise.
        if returned >= wanted or (returned == 0 and ended >= 10 * wanted):
            return
        if churned.any():
            state = replace_users(state, churned, simulator.reset(int(churned.sum()), rng))
    if ended == 0:
        raise ContractError(
            f"[rule 10: sessions] no session ended in {max_steps} steps of {num_users} users "
            "under random slates, so session ends and return gaps were never checked. The "
            "env advances days only at session ends: end sessions (session_end) and bring "
            "users back (gap_days ≥ 1) or let them churn."
        )


def _random_slates(
    rng: np.random.Generator, num_users: int, num_items: int, slate_size: int
) -> np.ndarray:
    return np.stack([rng.choice(num_items, slate_size, replace=False) for _ in range(num_users)])


def _rollout(
    simulator: Any, num_users: int, num_steps: int, slate_size: int, seed: int
) -> list[tuple[Any, ...]]:
    """Run a few steps checking shapes, dtypes and non-mutation; return the outputs."""
    rng = np.random.default_rng(seed)
    slate_rng = np.random.default_rng(seed + 1)
    num_items = simulator.catalog.num_items
    for size in (1, num_users):
        _check_state(simulator.reset(size, np.random.default_rng(seed)), size, "reset")
    state = simulator.reset(num_users, rng)
    reference = _check_state(state, num_users, "reset")
    outputs: list[tuple[Any, ...]] = []
    for _ in range(num_steps):
        slates = _random_slates(slate_rng, num_users, num_items, slate_size)
        state_copy, slates_copy = copy.deepcopy(state), slates.copy()
        responses = simulator.respond(state, slates, rng)
        _check_unchanged(state, state_copy, "respond", "state")
        _check_unchanged(slates, slates_copy, "respond", "slates")
        _check_responses(simulator, responses, num_users, slate_size)
        responses_copy = copy.deepcopy(responses)
        new_state = _update(simulator, state, slates, responses, rng)
        _check_unchanged(state, state_copy, "update", "state")
        _check_unchanged(responses, responses_copy, "update", "responses")
        _check_unchanged(slates, slates_copy, "update", "slates")
        if type(new_state) is not type(state):
            raise ContractError(
                f"[rule 4: update] update() returned {type(new_state).__name__}, expected "
                f"{type(state).__name__}."
            )
        fields = _check_state(new_state, num_users, "update")
        for name, (shape, dtype) in reference.items():
            if fields[name] != (shape, dtype):
                raise ContractError(
                    f"[rule 4: update] state field {name!r} changed from shape {shape} dtype "
                    f"{dtype} to shape {fields[name][0]} dtype {fields[name][1]}; keep each "
                    "field's shape and dtype fixed."
                )
        features = _check_user_features(simulator, new_state, num_users)
        outputs.append((responses, state_fields(new_state), features))
        state = new_state
    return outputs


def _update(simulator: Any, state: Any, slates: np.ndarray, responses: Any, rng: Any) -> Any:
    """``simulator.update``, turning a failure on ``respond``'s own responses into a
    `ContractError`."""
    try:
        return simulator.update(state, slates, responses, rng)
    except Exception as error:
        raise ContractError(
            "[rule 4: update] update() failed on the Responses that respond() returned "
            f"({type(error).__name__}: {error}). Whatever update() needs from respond() "
            "must travel in those Responses (Responses.internals)."
        ) from error


def _check_update_uses_its_arguments(simulator: Any, num_users: int, seed: int) -> None:
    """Rule 4: ``update`` gives the same state for the same arguments after another
    ``respond`` call (no values kept on the simulator between the two)."""
    rng = np.random.default_rng(seed)
    slate_rng = np.random.default_rng(seed + 1)
    num_items = simulator.catalog.num_items
    state = simulator.reset(num_users, rng)
    slates = _random_slates(slate_rng, num_users, num_items, 1)
    responses = simulator.respond(state, slates, rng)
    first = _update(simulator, state, slates, responses, np.random.default_rng(seed + 2))
    simulator.respond(state, _random_slates(slate_rng, num_users, num_items, 1), rng)
    again = _update(
        simulator, state, slates, copy.deepcopy(responses), np.random.default_rng(seed + 2)
    )
    if not _equal(state_fields(first), state_fields(again)):
        raise ContractError(
            "[rule 4: update] update() returned a different state for the same state, "
            "slates and responses once respond() had been called again: it reads values "
            "kept on the simulator. Put what update() needs from respond() into "
            "Responses.internals."
        )


def _check_state(state: Any, num_users: int, where: str) -> dict[str, tuple[tuple[int, ...], Any]]:
    if not dataclasses.is_dataclass(state) or isinstance(state, type):
        raise ContractError(
            f"[rule 2: state] {where}() must return a dataclass instance of arrays, got "
            f"{type(state).__name__}. Define the state as @dataclass(frozen=True)."
        )
    out = {}
    for name, value in state_fields(state).items():
        if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != num_users:
            shape = getattr(value, "shape", type(value).__name__)
            raise ContractError(
                f"[rule 2: state] field {name!r} returned by {where}() must be an array with "
                f"leading axis num_users={num_users}, got {shape}."
            )
        out[name] = (value.shape, value.dtype)
    return out


def _check_responses(simulator: Any, responses: Any, num_users: int, slate_size: int) -> None:
    if not isinstance(responses, Responses):
        raise ContractError(
            f"[rule 3: responses] respond() must return loe_gym.Responses, got "
            f"{type(responses).__name__}."
        )
    per_item, per_user = (num_users, slate_size), (num_users,)
    expected = {
        "clicked": (per_item, "b"),
        "watch_time": (per_item, "f"),
        "completion": (per_item, "f"),
        "session_end": (per_user, "b"),
        "gap_days": (per_user, "iu"),
        "churned": (per_user, "b"),
    }
    for name, (shape, kinds) in expected.items():
        value = getattr(responses, name)
        if (
            not isinstance(value, np.ndarray)
            or value.shape != shape
            or value.dtype.kind not in kinds
        ):
            got = (
                f"{value.dtype} of shape {value.shape}"
                if isinstance(value, np.ndarray)
                else type(value).__name__
            )
            kind = {"b": "bool", "f": "float", "iu": "integer"}[kinds]
            raise ContractError(
                f"[rule 3: responses] Responses.{name} must be a {kind} array of shape "
                f"{shape}, got {got}."
            )
    for name in ("watch_time", "completion"):
        if not np.all(np.isfinite(getattr(responses, name))):
            raise ContractError(
                f"[rule 3: responses] Responses.{name} has NaN or inf values; every response "
                "must be finite (look for a log of 0, a division by 0 or an overflow)."
            )
    if np.any(responses.watch_time < 0):
        raise ContractError("[rule 3: responses] watch_time must be ≥ 0.")
    if np.any(responses.watch_time[~responses.clicked] != 0):
        raise ContractError(
            "[rule 3: responses] watch_time must be 0 where the item was not clicked."
        )
    if np.any((responses.completion < 0) | (responses.completion > 1)):
        raise ContractError("[rule 3: responses] completion must lie in [0, 1].")
    if np.any(responses.churned & ~responses.session_end):
        raise ContractError("[rule 3: responses] churned users must also have session_end=True.")
    returning = responses.session_end & ~responses.churned
    if np.any(responses.gap_days[returning] < 1) or np.any(responses.gap_days[~returning] != 0):
        raise ContractError(
            "[rule 3: responses] gap_days must be ≥ 1 where a session ended without churn "
            "and 0 elsewhere."
        )
    names = tuple(responses.extras)
    if names != tuple(simulator.response_extras):
        raise ContractError(
            f"[rule 3: responses] Responses.extras has keys {names}, but response_extras "
            f"declares {simulator.response_extras}; keep them equal and in the same order."
        )
    for name, value in responses.extras.items():
        value = np.asarray(value)
        if value.shape != per_item or not np.all(np.isfinite(value)):
            raise ContractError(
                f"[rule 3: responses] Responses.extras[{name!r}] must be finite with shape "
                f"{per_item}, got shape {value.shape}."
            )
    _check_internals(responses, num_users)


def _check_internals(responses: Responses, num_users: int) -> None:
    if not isinstance(responses.internals, Mapping):
        raise ContractError(
            "[rule 3: responses] Responses.internals must be a mapping of names to arrays, "
            f"got {type(responses.internals).__name__}."
        )
    for name, value in responses.internals.items():
        if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != num_users:
            shape = getattr(value, "shape", type(value).__name__)
            raise ContractError(
                f"[rule 3: responses] Responses.internals[{name!r}] must be an array with "
                f"leading axis num_users={num_users}, got {shape}: code that slices "
                "responses by user (select_responses) slices internals too."
            )


def _check_unchanged(value: Any, before: Any, method: str, what: str) -> None:
    if not _equal(value, before):
        raise ContractError(
            f"[rule 7: no mutation] {method}() modified its {what} argument in place. Return "
            "new arrays instead (e.g. x = x.copy() before assigning into it)."
        )


def _check_privileged(simulator: Any, num_users: int, seed: int) -> None:
    expected_responses = getattr(simulator, "expected_responses", None)
    if expected_responses is None:
        return
    rng = np.random.default_rng(seed)
    state = simulator.reset(num_users, rng)
    k = min(3, simulator.catalog.num_items)
    items = _random_slates(rng, num_users, simulator.catalog.num_items, k)
    batch = expected_responses(state, items)
    for name in ("click_probability", "watch_time"):
        if name not in batch:
            raise ContractError(
                f"[rule 8: privileged] expected_responses() must return {name!r}; got keys "
                f"{sorted(batch)}."
            )
    for name, value in batch.items():
        if np.shape(value) != items.shape:
            raise ContractError(
                f"[rule 8: privileged] expected_responses()[{name!r}] must have shape "
                f"{items.shape}, got {np.shape(value)}."
            )
    click = np.asarray(batch["click_probability"])
    if np.any((click < 0) | (click > 1)) or np.any(np.asarray(batch["watch_time"]) < 0):
        raise ContractError(
            "[rule 8: privileged] click_probability must lie in [0, 1] and watch_time be ≥ 0."
        )
    for user in range(num_users):
        single = expected_responses(select_users(state, np.array([user])), items[user : user + 1])
        for name, value in batch.items():
            if not np.allclose(np.asarray(value)[user], np.asarray(single[name])[0]):
                raise ContractError(
                    f"[rule 8: privileged] expected_responses()[{name!r}] of user {user} "
                    "differs between the batch and that user alone: users must not "
                    "influence each other."
                )


def _check_forkable(simulator: Any, num_users: int, seed: int) -> None:
    """Rule 9: ``take_users`` forks a state, and copies of a user stay alike when shown
    the same slates with the same random draws."""
    from loe_gym.envs.forking import CommonRandomNumbers

    rng = np.random.default_rng(seed)
    state = simulator.reset(num_users, rng)
    rows = np.repeat(np.arange(num_users), 2)  # user u in rows 2u and 2u + 1
    try:
        forked = take_users(state, rows)
    except TypeError as error:
        raise ContractError(f"[rule 9: forkable] {error}") from error
    _check_state(forked, rows.size, "take_users")
    slates = np.repeat(_random_slates(rng, num_users, simulator.catalog.num_items, 1), 2, axis=0)
    draws = CommonRandomNumbers(np.random.default_rng(seed + 3), groups=num_users, copies=2)
    responses = simulator.respond(forked, slates, draws)
    new_state = simulator.update(forked, slates, responses, draws)
    pairs = (
        (
            "responses",
            select_responses(responses, rows[::2] * 2),
            select_responses(responses, rows[::2] * 2 + 1),
        ),
        (
            "updated state",
            take_users(new_state, rows[::2] * 2),
            take_users(new_state, rows[::2] * 2 + 1),
        ),
    )
    for what, first, second in pairs:
        if not _equal(first, second):
            raise ContractError(
                f"[rule 9: forkable] two copies of one user (take_users(state, [u, u])) shown "
                f"the same slates with the same random draws got different {what}. Users "
                "must not influence each other, and per-user draws must have leading axis "
                "num_users (rng.random((num_users, k)), not rng.random((k, num_users)) or one "
                "draw per user in a loop), so that planners comparing copies compare actions."
            )


def _equal(a: Any, b: Any) -> bool:
    """Deep equality for the nested outputs of a rollout (NaN == NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and _equal(state_fields_any(a), state_fields_any(b))
    if isinstance(a, dict) or hasattr(a, "items"):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def state_fields_any(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
