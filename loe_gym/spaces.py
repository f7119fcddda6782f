"""Action spaces: a slate is a ``MultiDiscrete`` whose entries must be distinct."""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_differing_spaces, batch_space


class SlateSpace(spaces.MultiDiscrete):
    """``slate_size`` distinct indices among ``num_candidates`` (per user when batched).

    It is a ``MultiDiscrete`` (so SB3 and other libraries accept it) whose ``sample``
    draws distinct indices and whose ``contains`` rejects repeats. Gymnasium's
    ``batch_space`` of a slate space is again a slate space (registered below), so
    vectorisers and clients that batch it (SyncVectorEnv, AsyncVectorEnv, TorchRL)
    sample valid slates.

    Args:
        num_candidates: C, indices lie in ``[0, C)``.
        slate_size: S ≤ C.
        num_users: ``None`` for one user (shape ``(S,)``), N for a batch (``(N, S)``), or
            a tuple of leading batch dimensions (a batch of batches).
    """

    def __init__(
        self,
        num_candidates: int,
        slate_size: int,
        num_users: int | tuple[int, ...] | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if slate_size > num_candidates:
            raise ValueError(
                f"slate_size={slate_size} cannot exceed num_candidates={num_candidates}."
            )
        if num_users is None:
            self.batch_shape: tuple[int, ...] = ()
        elif isinstance(num_users, tuple):
            self.batch_shape = tuple(int(n) for n in num_users)
        else:
            self.batch_shape = (int(num_users),)
        shape = (*self.batch_shape, slate_size)
        super().__init__(np.full(shape, num_candidates, np.int64), dtype=np.int64, seed=seed)
        self.num_candidates = num_candidates
        self.slate_size = slate_size
        self.num_users = self.batch_shape[0] if len(self.batch_shape) == 1 else num_users

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        keys = self.np_random.random((*self.batch_shape, self.num_candidates))
        return np.argsort(keys, axis=-1)[..., : self.slate_size].astype(np.int64)

    def contains(self, x: Any) -> bool:
        if not super().contains(x):
            return False
        ordered = np.sort(np.asarray(x), axis=-1)
        return not bool(np.any(ordered[..., 1:] == ordered[..., :-1]))

    def __repr__(self) -> str:
        users = "" if self.num_users is None else f", num_users={self.num_users}"
        return (
            f"SlateSpace(num_candidates={self.num_candidates}, slate_size={self.slate_size}{users})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlateSpace) and super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


@batch_space.register(SlateSpace)
def _batch_slate_space(space: SlateSpace, n: int = 1) -> SlateSpace:
    """``n`` copies of a slate space: a slate space with one more leading dimension."""
    return SlateSpace(
        space.num_candidates,
        space.slate_size,
        (n, *space.batch_shape),
        seed=deepcopy(space.np_random),
    )


# Gymnasium dispatches batch_differing_spaces on the type of spaces[0], as here.
@batch_differing_spaces.register(SlateSpace)
def _batch_slate_spaces(spaces_: Sequence[SlateSpace]) -> SlateSpace:  # type: ignore[misc]
    """Batched slate spaces of several envs: they must agree (a slate is one shape)."""
    first = spaces_[0]
    if any(space != first for space in spaces_):
        raise ValueError(
            f"Cannot batch different slate spaces {list(spaces_)}; give every env the same "
            "num_candidates and slate_size."
        )
    return _batch_slate_space(first, len(spaces_))


def replace_repeats(slots: np.ndarray, num_candidates: int) -> np.ndarray:
    """Replace each repeated index by the lowest index absent from the slate.

    The first occurrence of an index stays where it is; later occurrences, left to right,
    take the lowest candidate indices that the slate does not hold, so the items the
    policy did choose keep their positions.

    Args:
        slots: ``(num_users, slate_size)`` candidate indices.

    Returns:
        A new array whose rows hold distinct indices; rows without repeats are unchanged.

    Example:
        >>> replace_repeats(np.array([[0, 0, 1, 2, 3]]), num_candidates=6)
        array([[0, 4, 1, 2, 3]])
    """
    slots = slots.copy()
    num_users, slate_size = slots.shape
    rows = np.arange(num_users)
    present = np.zeros((num_users, num_candidates), bool)
    present[rows[:, None], slots] = True
    seen = np.zeros((num_users, num_candidates), bool)
    for position in range(slate_size):
        choice = slots[:, position]
        repeated = seen[rows, choice]
        if repeated.any():
            replacement = np.argmin(present, axis=1)
            choice = np.where(repeated, replacement, choice)
            slots[:, position] = choice
            present[rows[repeated], replacement[repeated]] = True
        seen[rows, choice] = True
    return slots
