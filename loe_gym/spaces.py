"""Action spaces: a slate is a ``MultiDiscrete`` whose entries must be distinct."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


class SlateSpace(spaces.MultiDiscrete):
    """``slate_size`` distinct indices among ``num_candidates`` (per user when batched).

    It is a ``MultiDiscrete`` (so SB3 and other libraries accept it) whose ``sample``
    draws distinct indices and whose ``contains`` rejects repeats.

    Args:
        num_candidates: C, indices lie in ``[0, C)``.
        slate_size: S ≤ C.
        num_users: ``None`` for one user (shape ``(S,)``) or N for a batch (``(N, S)``).
    """

    def __init__(
        self,
        num_candidates: int,
        slate_size: int,
        num_users: int | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if slate_size > num_candidates:
            raise ValueError(
                f"slate_size={slate_size} cannot exceed num_candidates={num_candidates}."
            )
        shape = (slate_size,) if num_users is None else (num_users, slate_size)
        super().__init__(np.full(shape, num_candidates, np.int64), dtype=np.int64, seed=seed)
        self.num_candidates = num_candidates
        self.slate_size = slate_size
        self.num_users = num_users

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        rows = 1 if self.num_users is None else self.num_users
        keys = self.np_random.random((rows, self.num_candidates))
        slate = np.argsort(keys, axis=1)[:, : self.slate_size].astype(np.int64)
        return slate[0] if self.num_users is None else slate

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
