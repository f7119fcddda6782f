"""Registered environment ids (``gym.make`` and a native ``gym.make_vec``), and what the
tools need to know of each (`EnvFacts`: which reference policies fit, which metrics apply).

Variants are keyword arguments of one environment class, not subclasses. A user's own id
registers with ``gym.register`` and, optionally, `register_env_facts`.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    # Fresh items every day, known by topic, length and a title only (docs/simulators/item_churn.md).
    "loe_gym/ItemChurn-v0": {
        "simulator": "engagement",
        "simulator_kwargs": {
            "num_items": 1440,
            "item_text": True,
            "public_estimates": False,
            # Headline-driven clicks: the item's appeal weighs more against interest.
            "appeal_weight": 4.0,
            "interest_weight": 2.5,
            "new_items_per_day": 40,
            "item_lifetime_days": 7,
        },
        "num_candidates": 20,
        "slate_size": 1,
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


@dataclass(frozen=True)
class EnvFacts:
    """What the command line and the evaluation need to know of an environment id."""

    reference_policies: tuple[str, ...] = ("random", "max_click")
    """Reference policies (`agents.reference_policies`) that ``simulate`` and ``calibrate``
    compare by default: the ones whose assumptions the simulator meets."""
    multi_day: bool = True
    """Users live over days and come back (False: one session, as in RecSim's envs, so
    days, returns and retention do not apply)."""


_ENGAGEMENT_POLICIES = (
    "random",
    "max_click",
    "myopic",
    "max_quality",
    "one_step_planner",
    "oracle_planner",
)
ENV_FACTS: dict[str, EnvFacts] = {
    "loe_gym/Engagement-v0": EnvFacts(_ENGAGEMENT_POLICIES),
    "loe_gym/EngagementSlate-v0": EnvFacts(_ENGAGEMENT_POLICIES),
    "loe_gym/ItemChurn-v0": EnvFacts(_ENGAGEMENT_POLICIES),
    "loe_gym/InterestEvolution-v0": EnvFacts(
        ("random", "max_click_dot", "myopic", "max_quality"), multi_day=False
    ),
    # Its users always click the first item, so "max-click" is max immediate engagement.
    "loe_gym/LongTermSatisfaction-v0": EnvFacts(
        ("random", "myopic", "max_quality"), multi_day=False
    ),
}
"""`EnvFacts` per registered id; ids without an entry get ``EnvFacts()``."""


def register_env_facts(env_id: str, facts: EnvFacts) -> None:
    """Declare what the tools should know of a user's own env id."""
    ENV_FACTS[env_id] = facts


def env_facts(env_id: str) -> EnvFacts:
    """The `EnvFacts` of ``env_id`` (defaults for ids nobody declared)."""
    return ENV_FACTS.get(env_id, EnvFacts())


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
