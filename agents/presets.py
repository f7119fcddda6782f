"""Smoke-test sizes of the workflow configs (``--quick``): plain instances of
`agents.configs`, numbers meaningless."""

import dataclasses

from agents.configs import (
    CollectConfig,
    EvaluationConfig,
    ExperimentConfig,
    LookaheadConfig,
    LoopConfig,
    ValidationConfig,
    _experiment_predictor,
    _learned_simulator_predictor,
    _loop_predictor,
    reward_model_agent,
)
from loe_gym.predictor.configs import FitPredictorConfig

__all__ = ["QUICK_EXPERIMENT", "QUICK_LOOKAHEAD", "QUICK_LOOP", "QUICK_VALIDATION"]


def _quick_predictor(base: FitPredictorConfig, steps: int, history: int) -> FitPredictorConfig:
    return dataclasses.replace(
        base,
        model=dataclasses.replace(
            base.model, hidden_size=16, num_hidden_layers=1, max_history_length=history
        ),
        training=dataclasses.replace(base.training, max_epochs=1, steps_per_epoch=steps),
    )


QUICK_EXPERIMENT = ExperimentConfig(
    collect=CollectConfig(num_users=150, policy="mixed", seed=100),
    predictor=_quick_predictor(_experiment_predictor(), steps=25, history=20),
    agent=reward_model_agent(total_steps=8192, num_users=64),
    evaluation=EvaluationConfig(num_users=64, seeds=(0, 1)),
)
"""`ExperimentConfig` at smoke-test size: a couple of minutes on two CPU cores."""

QUICK_LOOP = LoopConfig(
    rounds=1,
    horizon_days=3,
    users_per_round=40,
    predictor=_quick_predictor(_loop_predictor(), steps=10, history=10),
    agent=reward_model_agent(total_steps=2048, num_users=32),
)
"""`LoopConfig` at smoke-test size: about a minute on two CPU cores."""

QUICK_VALIDATION = ValidationConfig(
    horizon_days=3,
    collect=CollectConfig(num_users=60, policy="deployable", seed=100),
    predictor=_quick_predictor(_learned_simulator_predictor(), steps=10, history=10),
    evaluation=EvaluationConfig(num_users=24, seeds=(0, 1)),
)
"""`ValidationConfig` at smoke-test size: a minute or two on two CPU cores."""


QUICK_LOOKAHEAD = LookaheadConfig(
    switch_every=2,
    switch_samples=2,
    switch_horizon=4,
    pilot_users=4,
    top_k=2,
    samples=2,
    horizon=3,
)
"""Smoke-test sizes: numbers meaningless."""
