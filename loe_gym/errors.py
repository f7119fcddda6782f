"""Error types and helpers for messages that name the value received and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ContractError(ValueError):
    """A user simulator breaks the simulator contract (see `loe_gym.check_simulator`)."""


class ForkWarning(UserWarning):
    """A simulator runs in every env but cannot be forked with common random numbers, so
    planners that compare forked copies of users (`lookahead_oracle`) compare noise too."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them and suggesting
    the closest (``name`` as the message shows it, e.g. ``"TrainConfig.reward"``)."""
    choices = tuple(choices)
    if value not in choices:
        hint = did_you_mean(str(value).lower(), choices)
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.{hint}"
        )
    return str(value)


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int if it is an integer ≥ 1, else raise naming it."""
    if isinstance(value, bool) or (
        not isinstance(value, (int,)) and not hasattr(value, "__index__")
    ):
        raise TypeError(
            f"{name} must be a positive integer, got {value!r} ({type(value).__name__})."
        )
    as_int = int(value)  # type: ignore[call-overload]
    if as_int < 1:
        raise ValueError(f"{name} must be a positive integer (≥ 1), got {as_int}.")
    return as_int


def check_probability(name: str, value: float) -> float:
    """Return ``value`` if it lies in [0, 1], else raise naming it."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}.")
    return value
