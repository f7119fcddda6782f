"""loe_gym: a simulation lab for long-term engagement in recommender systems."""

from loe_gym.catalog import Catalog
from loe_gym.checker import check_simulator
from loe_gym.config import FrozenConfig
from loe_gym.envs import EnvConfig, RecommendationEnv, RecommendationVectorEnv, make_simulator
from loe_gym.errors import ContractError
from loe_gym.logs import LOG_SCHEMA, LogInteractions, ParquetLogWriter, read_catalog, read_log
from loe_gym.registration import ENVIRONMENTS, register_environments
from loe_gym.simulator import PrivilegedSimulator, Responses, UserSimulator

__version__ = "0.1.0"

register_environments()

__all__ = [
    "ENVIRONMENTS",
    "LOG_SCHEMA",
    "Catalog",
    "ContractError",
    "EnvConfig",
    "FrozenConfig",
    "LogInteractions",
    "ParquetLogWriter",
    "PrivilegedSimulator",
    "RecommendationEnv",
    "RecommendationVectorEnv",
    "Responses",
    "UserSimulator",
    "check_simulator",
    "make_simulator",
    "read_catalog",
    "read_log",
]
