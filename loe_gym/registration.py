"""Registered environment ids (``gym.make`` and a native ``gym.make_vec``).

Variants are keyword arguments of one environment class, not subclasses.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

SINGLE_ENTRY_POINT = "loe_gym.envs.single_env:RecommendationEnv"
VECTOR_ENTRY_POINT = "loe_gym.envs.vector_env:RecommendationVectorEnv"

ENVIRONMENTS: dict[str, dict[str, Any]] = {
    "loe_gym/Engagement-v0": {"simulator": "engagement", "num_candidates": 20, "slate_size": 1},
    "loe_gym/EngagementSlate-v0": {
        "simulator": "engagement",
        "num_candidates": 20,
        "slate_size": 5,
    },
    # RecSim's README setting: a slate of 2 out of 10 candidates resampled every step.
    "loe_gym/InterestEvolution-v0": {
        "simulator": "interest_evolution",
        "num_candidates": 10,
        "slate_size": 2,
        "observation": "recsim",
    },
    "loe_gym/LongTermSatisfaction-v0": {
        "simulator": "long_term_satisfaction",
        "num_candidates": 10,
        "slate_size": 2,
        "observation": "recsim",
    },
    # Any simulator: pass simulator=<instance | class | "module:Class">.
    "loe_gym/Recommendation-v0": {},
}


def register_environments() -> None:
    """Register every id in `ENVIRONMENTS` (idempotent)."""
    for env_id, kwargs in ENVIRONMENTS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=SINGLE_ENTRY_POINT,
            vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs=dict(kwargs),
        )
