"""Candidate retrieval: the items a user may be shown at a step, drawn uniformly without
replacement from the catalog, or from the items available on the user's day when the
catalog has an availability (item churn)."""

from __future__ import annotations

import math

import numpy as np

from loe_gym.catalog import Catalog
from loe_gym.types import Generator, IntArray

__all__ = ["CandidateRetrieval"]


class CandidateRetrieval:
    """Draws ``(count, num_candidates)`` distinct item ids per row.

    Args:
        catalog: the items; with ``catalog.availability`` each row draws among the items
            available on its day.
        num_candidates: ``C``, distinct items per row.
        horizon_days: days of an episode; with item churn every day ``0 … horizon − 1``
            must offer ``C`` items (checked here, so a bad catalog fails at ``make``).
    """

    def __init__(self, catalog: Catalog, num_candidates: int, horizon_days: int) -> None:
        self.catalog = catalog
        self.num_candidates = num_candidates
        self.horizon_days = horizon_days
        m, c = catalog.num_items, num_candidates
        # Probability that C uniform draws with replacement are distinct: decides how
        # candidates are drawn without replacement (rejection is fastest when it is high).
        self._distinct_probability = math.exp(sum(math.log1p(-i / m) for i in range(c)))
        self._dtype = np.int16 if m <= np.iinfo(np.int16).max else np.int64
        self._available: list[IntArray] | None = None
        if catalog.availability is not None:
            self._available = [catalog.available_items(day) for day in range(horizon_days)]
            self._check_available()

    @property
    def by_day(self) -> bool:
        """Whether a user's candidates depend on the user's day (item churn)."""
        return self._available is not None

    def draw(self, count: int, days: IntArray, rng: Generator) -> IntArray:
        """``(count, C)`` int64 distinct ids per row, for users on ``days (count,)``."""
        if self._available is not None:
            return self._draw_available(days, rng)
        return self._draw_uniform(count, rng)

    def _draw_uniform(self, count: int, rng: Generator) -> IntArray:
        m, c = self.catalog.num_items, self.num_candidates
        if self._distinct_probability < 0.5:
            # Dense case (C close to M): the C smallest of M uniform keys, in key order.
            keys = rng.random((count, m))
            chosen = np.argpartition(keys, c - 1, axis=1)[:, :c]
            order = np.argsort(np.take_along_axis(keys, chosen, axis=1), axis=1)
            return np.take_along_axis(chosen, order, axis=1).astype(np.int64)
        dtype = self._dtype  # small ids sort as int16: half the cost

        def uniform_ids(rows: int) -> np.ndarray:
            # Bounded integer draws carry a fixed cost of microseconds per call, which
            # dominates a single-user step; there, scaled uniform floats are cheaper (and
            # exact enough: catalogs are far smaller than 2**53).
            if rows * c >= 1024:
                return rng.integers(0, m, (rows, c), dtype=dtype)
            return (rng.random((rows, c)) * m).astype(dtype)

        candidates: np.ndarray = uniform_ids(count)
        if c > 1:
            # Rejection: redraw whole rows with a repeat, which keeps every row exactly
            # uniform over ordered tuples of distinct items.
            rows = np.arange(count)
            block = candidates
            while True:
                ordered = np.sort(block, axis=1)
                repeats = np.flatnonzero(ordered[:, 1:] == ordered[:, :-1])
                if repeats.size == 0:
                    break
                # Rows holding a repeat (a scatter is cheaper than np.unique here).
                repeated = np.zeros(rows.size, bool)
                repeated[repeats // (c - 1)] = True
                rows = rows[repeated]
                block = uniform_ids(rows.size)
                candidates[rows] = block
        return candidates.astype(np.int64)

    def _draw_available(self, days: IntArray, rng: Generator) -> IntArray:
        """The C smallest of uniform keys over each row's available items (a day past the
        horizon, a user about to be truncated, draws from the last day)."""
        assert self._available is not None
        c = self.num_candidates
        days = np.clip(days, 0, self.horizon_days - 1)
        candidates = np.empty((days.size, c), np.int64)
        for day in np.unique(days):
            rows = np.flatnonzero(days == day)
            available = self._available[int(day)]
            keys = rng.random((rows.size, available.size))
            candidates[rows] = available[np.argpartition(keys, c - 1, axis=1)[:, :c]]
        return candidates

    def _check_available(self) -> None:
        assert self._available is not None
        for day, items in enumerate(self._available):
            if items.size < self.num_candidates:
                raise ValueError(
                    f"The catalog offers {items.size} items on day {day} but num_candidates="
                    f"{self.num_candidates}: its availability must give every day of "
                    f"horizon_days={self.horizon_days} at least num_candidates items. Add "
                    "items (num_items), lengthen their lifetime or shorten horizon_days."
                )
