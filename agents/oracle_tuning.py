"""Tune the oracle planner's weights by the cross-entropy method (CEM).

A one-step heuristic is not a strong enough oracle: a linear policy over observable
features tuned by search can match it, and then "fraction of the oracle" means
little. The oracle is therefore the best linear value over *privileged* features
that a search finds, tuned on populations (seeds) disjoint from evaluation seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from agents.evaluation import run_population
from agents.reference_policies import (
    ORACLE_FEATURES,
    REFERENCE_PLANNER_WEIGHTS,
    OraclePlanner,
    OracleWeights,
)
from loe_gym import RecommendationVectorEnv


@dataclass(frozen=True)
class TuningResult:
    weights: OracleWeights
    score: float
    """Mean total watch minutes per user of the best weights on the tuning seeds."""
    history: tuple[float, ...]
    """Best score after each iteration."""


def tune_oracle(
    env_id: str = "loe_gym/Engagement-v0",
    *,
    num_users: int = 500,
    seeds: Sequence[int] = (1000, 1001),
    iterations: int = 6,
    population: int = 12,
    elite: int = 3,
    initial: OracleWeights | None = None,
    initial_std: Sequence[float] | None = None,
    search_seed: int = 0,
    progress: bool = True,
    env_options: Mapping[str, Any] | None = None,
) -> TuningResult:
    """Search oracle weights that maximise mean total watch minutes per user.

    Args:
        seeds: population seeds used for tuning; keep them apart from evaluation seeds.
        iterations, population, elite: CEM schedule (Gaussian over weights, refitted
            to the ``elite`` best of ``population`` samples each iteration).
        initial: starting mean (default: the reference spec's one-step planner).
        env_options: options of the environment (your simulator, ``simulator_kwargs``).
    """
    if not 1 <= elite <= population:
        raise ValueError(f"elite must lie in [1, population={population}], got {elite}.")
    start = initial or REFERENCE_PLANNER_WEIGHTS
    names = tuple(ORACLE_FEATURES)
    mean = np.array(
        [dict(zip(start.features, start.values, strict=True)).get(n, 0.0) for n in names]
    )
    std = np.asarray(initial_std if initial_std is not None else [30.0, 2.0, 5.0, 5.0, 30.0], float)
    if std.shape != mean.shape:
        raise ValueError(f"initial_std needs {mean.size} values (one per {names}), got {std.size}.")
    rng = np.random.default_rng(search_seed)
    env = gym.make_vec(
        env_id,
        num_envs=num_users,
        vectorization_mode="vector_entry_point",
        **dict(env_options or {}),
    )
    core: RecommendationVectorEnv = env.unwrapped  # type: ignore[assignment]

    def score(values: np.ndarray) -> float:
        planner = OraclePlanner(OracleWeights(names, tuple(float(v) for v in values)))
        return float(np.mean([run_population(core, planner, s).watch.mean() for s in seeds]))

    best_values, best_score = mean.copy(), score(mean)
    history = []
    for _ in tqdm(range(iterations), desc="CEM", disable=not progress):
        samples = mean + std * rng.standard_normal((population, mean.size))
        scores = np.array([score(sample) for sample in samples])
        top = samples[np.argsort(scores)[::-1][:elite]]
        if scores.max() > best_score:
            best_score, best_values = float(scores.max()), samples[int(scores.argmax())]
        mean, std = top.mean(axis=0), top.std(axis=0) + 1e-3
        history.append(best_score)
    env.close()
    weights = OracleWeights(names, tuple(round(float(v), 3) for v in best_values))
    return TuningResult(weights=weights, score=best_score, history=tuple(history))
