"""Shape, dtype and range checks of the arrays a log is written from, with messages that
name the argument, the user and the slate position at fault."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


def _as_array(
    name: str, value: Any, *, kind: str, shape: tuple[int | None, ...], expected: str
) -> np.ndarray:
    """``value`` as an array of numpy kind ``kind`` ("b", "i" or "f") and ``shape``.

    ``None`` in ``shape`` accepts any size; ``expected`` describes the shape in the
    error message (``"(num_users, slate_size)"``).
    """
    array = np.asarray(value)
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=False)
    ):
        raise ValueError(
            f"{name} must have shape {expected}="
            f"({', '.join('?' if s is None else str(s) for s in shape)}), "
            f"got shape {array.shape}."
        )
    allowed = {"b": "b", "i": "iu", "f": "fiu"}[kind]
    if array.dtype.kind not in allowed:
        wanted = {"b": "bool", "i": "an integer dtype", "f": "a real (float) dtype"}[kind]
        raise TypeError(f"{name} must have {wanted}, got dtype {array.dtype}.")
    return array


def _bound(value: float) -> str:
    """A range bound for messages: ``32767``, ``0.5`` or ``inf``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@functools.cache
def _integer_limits(dtype: np.dtype[Any]) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _check_range(
    name: str,
    values: np.ndarray,
    rows: np.ndarray,
    *,
    low: float,
    high: float,
    target: np.dtype[Any] | None = None,
) -> None:
    """Raise if ``values`` fall outside ``[low, high]`` (or are NaN), and, for integers,
    outside the range of ``target``; ``rows`` maps the first axis back to the caller's
    user index for the message."""
    if values.size == 0:
        return
    if target is not None and values.dtype.kind in "iu":
        source_min, source_max = _integer_limits(values.dtype)
        target_min, target_max = _integer_limits(target)
        low, high = max(low, target_min), min(high, target_max)
        # No scan when the source dtype cannot leave the range (int32 day into int32).
        if source_min >= low and source_max <= high:
            return
    # Two reductions on the common path; NaN propagates and fails the comparison.
    if values.min() >= low and values.max() <= high:
        return
    with np.errstate(invalid="ignore"):
        bad = ~((values >= low) & (values <= high))
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    place = f"user {int(rows[where[0]])}"
    if len(where) > 1:
        place += f", slate position {where[1]}"
    raise ValueError(
        f"{name} must lie in [{_bound(low)}, {_bound(high)}]; {place} has {values[where].item()!r}."
    )


def _user_column(name: str, value: Any, num_users: int, *, kind: str = "i") -> np.ndarray:
    """A per-user array ``(num_users,)``; a scalar is broadcast to every user."""
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.broadcast_to(array, (num_users,))
    return _as_array(name, array, kind=kind, shape=(num_users,), expected="(num_users,)")
