"""Gymnasium environments over user simulators."""

from loe_gym.envs.config import EnvConfig
from loe_gym.envs.simulators import BUILT_IN_SIMULATORS, make_simulator
from loe_gym.envs.single_env import RecommendationEnv
from loe_gym.envs.vector_env import RecommendationVectorEnv

__all__ = [
    "BUILT_IN_SIMULATORS",
    "EnvConfig",
    "RecommendationEnv",
    "RecommendationVectorEnv",
    "make_simulator",
]
