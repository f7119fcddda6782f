"""The item catalog: what a platform knows about its items, and what only the simulator knows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from loe_gym.types import FloatArray, IntArray


@dataclass(frozen=True)
class Catalog:
    """Items that can be recommended.

    Item ids are the row indices ``0 … num_items - 1``; they are stable for the life of
    the catalog, so logs and predictors can refer to them.

    Attributes:
        features: ``(num_items, num_features) float32`` public item features, what a
            platform knows (they enter the agent's observation).
        feature_names: one name per feature column.
        hidden: named ``(num_items, ...)`` arrays only the simulator may use (true
            quality, appeal, …). They never enter the agent's observation; oracle
            baselines and diagnostics may read them.
        topics: ``(num_items,) int64`` topic of each item, or ``None`` if the catalog
            has no topics. Used for diversity metrics and topic-aware baselines.
        texts: one text per item (title, caption, description), public like
            ``features``, or ``None`` if the items have no text. A text encoder
            (`loe_gym.predictor.text`) turns them into item vectors.
        availability: ``(num_items, 2) int64`` ``[first day, retirement day)`` of each
            item, or ``None`` if every item is available every day. Environments draw a
            user's candidates from the items available on the user's day (item churn:
            news and short videos arrive and retire).
    """

    features: FloatArray
    feature_names: tuple[str, ...]
    hidden: Mapping[str, np.ndarray] = field(default_factory=dict)
    topics: IntArray | None = None
    texts: tuple[str, ...] | None = None
    availability: IntArray | None = None

    def __post_init__(self) -> None:
        features = np.asarray(self.features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] < 1:
            raise ValueError(
                "Catalog.features must have shape (num_items, num_features) with "
                f"num_items ≥ 1, got shape {features.shape}."
            )
        if not np.all(np.isfinite(features)):
            row = int(np.argwhere(~np.isfinite(features))[0][0])
            raise ValueError(f"Catalog.features must be finite; item {row} has NaN or inf.")
        names = tuple(self.feature_names)
        if len(names) != features.shape[1]:
            raise ValueError(
                f"Catalog.feature_names has {len(names)} names for "
                f"{features.shape[1]} feature columns; give one name per column."
            )
        hidden = {}
        for name, values in self.hidden.items():
            values = np.asarray(values)
            if values.shape[:1] != (features.shape[0],):
                raise ValueError(
                    f"Catalog.hidden[{name!r}] must have leading axis num_items="
                    f"{features.shape[0]}, got shape {values.shape}."
                )
            values.setflags(write=False)
            hidden[name] = values
        topics = None
        if self.topics is not None:
            topics = np.asarray(self.topics, dtype=np.int64)
            if topics.shape != (features.shape[0],) or topics.min() < 0:
                raise ValueError(
                    "Catalog.topics must be non-negative ints of shape "
                    f"({features.shape[0]},), got shape {topics.shape}."
                )
            topics.setflags(write=False)
        texts = None
        if self.texts is not None:
            texts = tuple(self.texts)
            if len(texts) != features.shape[0] or not all(isinstance(t, str) for t in texts):
                raise ValueError(
                    f"Catalog.texts must hold one str per item ({features.shape[0]}), got "
                    f"{len(texts)} values; use '' for an item without text."
                )
        availability = None
        if self.availability is not None:
            availability = np.asarray(self.availability, dtype=np.int64)
            if availability.shape != (features.shape[0], 2) or np.any(
                availability[:, 1] <= availability[:, 0]
            ):
                raise ValueError(
                    "Catalog.availability must be (num_items, 2) [first day, retirement day) "
                    f"with retirement after the first day, got shape {availability.shape}."
                )
            availability.setflags(write=False)
        features.setflags(write=False)
        # Frozen dataclass: assign the normalised, read-only arrays once.
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "hidden", MappingProxyType(hidden))
        object.__setattr__(self, "topics", topics)
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "availability", availability)

    def __reduce__(self) -> tuple[type[Catalog], tuple[object, ...]]:
        # A mappingproxy cannot be pickled: rebuild from a plain dict (pickle, deepcopy,
        # subprocess vectorisers).
        return (
            Catalog,
            (
                self.features,
                self.feature_names,
                dict(self.hidden),
                self.topics,
                self.texts,
                self.availability,
            ),
        )

    @property
    def num_items(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    def available_items(self, day: int) -> IntArray:
        """Ids of the items available on ``day`` (every item without an availability)."""
        if self.availability is None:
            return np.arange(self.num_items)
        first, retired = self.availability[:, 0], self.availability[:, 1]
        return np.flatnonzero((first <= day) & (day < retired))

    @property
    def num_topics(self) -> int:
        """Number of topics (0 when the catalog has none)."""
        return 0 if self.topics is None else int(self.topics.max()) + 1


def release_schedule(num_items: int, items_per_day: int, lifetime_days: int) -> IntArray:
    """``(num_items, 2)`` availability of items released ``items_per_day`` a day, in id
    order, each available for ``lifetime_days`` days; day 0 starts with a full shelf of
    ``items_per_day × lifetime_days`` items of staggered ages.

    >>> release_schedule(6, 2, 2).tolist()
    [[-1, 1], [-1, 1], [0, 2], [0, 2], [1, 3], [1, 3]]
    """
    if items_per_day < 1 or lifetime_days < 1:
        raise ValueError(
            f"release_schedule needs items_per_day ≥ 1 and lifetime_days ≥ 1, got "
            f"{items_per_day} and {lifetime_days}."
        )
    first = np.arange(num_items) // items_per_day - (lifetime_days - 1)
    return np.stack([first, first + lifetime_days], axis=1).astype(np.int64)
