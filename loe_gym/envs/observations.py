"""Observation layouts: flat ``Dict`` spaces that SB3's ``MultiInputPolicy`` accepts.

``history`` (default): what a recommender platform sees — candidate ids and public
features, the recent history of shown items (ids, public features, feedback), and the
visit context.
``recsim``: RecSim's observation content (``user``, ``doc``, ``response``) with fixed
shapes, so that RecSim policies carry over.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from loe_gym.catalog import Catalog

HISTORY_FEEDBACK = ("clicked", "watch_time", "completion")
"""Columns of ``history_feedback``."""
PROFILE_WEIGHTS = ("shown", "clicked", "watch_time", "completion")
"""Rows of ``history_profile``: how each shown item of the life weighs in its average."""
CONTEXT = ("day", "step_in_session", "days_since_last_visit")
"""Columns of ``context``."""


@dataclass(frozen=True)
class ObservationLayout:
    """Shapes of one user's observation (the vector env adds a leading ``num_users`` axis)."""

    kind: str
    num_candidates: int
    slate_size: int
    history_length: int
    user_feature_size: int
    response_fields: tuple[str, ...]

    def space(self, catalog: Catalog, user_bounds: tuple[Any, Any]) -> spaces.Dict:
        """The single-user observation space."""
        c, f = self.num_candidates, catalog.num_features
        low = np.broadcast_to(catalog.features.min(axis=0), (c, f)).astype(np.float32)
        high = np.broadcast_to(catalog.features.max(axis=0), (c, f)).astype(np.float32)
        max_id = catalog.num_items - 1
        ids = spaces.Box(0, max_id, (c,), np.int64)
        candidate_features = spaces.Box(low, high, (c, f), np.float32)
        user = spaces.Box(user_bounds[0], user_bounds[1], (self.user_feature_size,), np.float32)
        if self.kind == "recsim":
            return spaces.Dict(
                {
                    "user": user,
                    "doc": candidate_features,
                    "doc_ids": ids,
                    "response": spaces.Box(
                        -np.inf, np.inf, (self.slate_size, len(self.response_fields)), np.float32
                    ),
                }
            )
        h = self.history_length
        # A history row before the first step is all zeros, so 0 joins the features' range.
        row_low, row_high = np.minimum(low[0], 0.0), np.maximum(high[0], 0.0)
        history_low = np.broadcast_to(row_low, (h, f)).astype(np.float32)
        history_high = np.broadcast_to(row_high, (h, f)).astype(np.float32)
        feedback_high = np.broadcast_to(np.array([1.0, np.inf, 1.0], np.float32), (h, 3))
        layout: dict[str, spaces.Space[Any]] = {
            "candidate_ids": ids,
            "candidate_features": candidate_features,
            "history_item_ids": spaces.Box(-1, max_id, (h,), np.int64),
            "history_features": spaces.Box(history_low, history_high, (h, f), np.float32),
            "history_feedback": spaces.Box(0.0, feedback_high, (h, 3), np.float32),
            "history_profile": self._profile_space(row_low, row_high),
            "context": spaces.Box(0.0, np.inf, (len(CONTEXT),), np.float32),
        }
        if self.user_feature_size:
            layout["user"] = user
        return spaces.Dict(layout)

    @staticmethod
    def _profile_space(low: np.ndarray, high: np.ndarray) -> spaces.Box:
        """``(K, F + 1)``: per weight of `PROFILE_WEIGHTS`, the weighted mean of the shown
        items' features (zeros before the first step), then the weights' total."""
        k = len(PROFILE_WEIGHTS)
        low = np.broadcast_to(np.append(low, 0.0), (k, low.size + 1)).astype(np.float32)
        high = np.broadcast_to(np.append(high, np.inf), (k, high.size + 1)).astype(np.float32)
        return spaces.Box(low, high, low.shape, np.float32)


def history_features(features: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``(N, H, F)`` public features of the history ``items (N, H)`` (−1 = none: zeros):
    what a platform knows about what it showed, so that policies without an item table
    (SB3's networks) can relate candidates to the user's past."""
    shown = np.take(features, np.maximum(items, 0), axis=0)
    shown[items < 0] = 0.0
    return shown


def updated_profile(profile: np.ndarray, features: np.ndarray, responses: Any) -> np.ndarray:
    """A new ``(N, K, F + 1)`` profile after showing items with ``features (N, S, F)``: each
    weighted mean moves towards this step's items by their weight's share of the new total."""
    shown = np.ones(responses.clicked.shape)
    weights = np.stack(  # (N, S, K), in PROFILE_WEIGHTS' order
        [shown, responses.clicked, responses.watch_time, responses.completion], -1
    ).astype(np.float32)
    step_totals = weights.sum(1)  # (N, K)
    totals = profile[..., -1] + step_totals
    added = np.einsum("nsk,nsf->nkf", weights, features)
    means = profile[..., :-1]
    share = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)[..., None]
    new = np.empty_like(profile)
    moved = means + (added - step_totals[..., None] * means) * share
    # A weighted mean lies between the old mean and this step's items; clipping there keeps
    # float32 rounding from stepping outside the catalog's range (the observation space).
    low = np.minimum(means, features.min(1)[:, None, :])
    high = np.maximum(means, features.max(1)[:, None, :])
    new[..., :-1] = np.clip(moved, low, high)
    new[..., -1] = totals
    return new


def check_memory(num_users: int, single_space: spaces.Dict) -> None:
    """Raise ``MemoryError`` with the fix before allocating for ``num_users`` users whose
    observations alone (kept about three times over: observation, history, buffers)
    would not fit in this machine's memory."""
    per_user = sum(
        math.prod(space.shape or ()) * np.dtype(space.dtype).itemsize
        for space in single_space.spaces.values()
    )
    needed = 3 * num_users * per_user
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: let numpy decide
        return
    if needed > available:
        raise MemoryError(
            f"num_envs={num_users} users need about {needed / 2**30:,.0f} GiB "
            f"({per_user:,} bytes of observation each, kept ~3 times) but this machine has "
            f"{available / 2**30:,.0f} GiB. Lower num_envs, or shard the population across "
            "processes (agents.evaluation evaluates several seeds' populations in turn)."
        )
