"""loe_gym: a simulation lab for long-term engagement in recommender systems.

Importing the package registers the ``loe_gym/*`` environments; everything else is
imported when first used, so that a command line reading only configs starts at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loe_gym.lazy import lazy_exports
from loe_gym.registration import ENVIRONMENTS, register_environments

if TYPE_CHECKING:
    from loe_gym.catalog import Catalog
    from loe_gym.checker import check_simulator
    from loe_gym.config import FrozenConfig
    from loe_gym.envs import EnvConfig, RecommendationEnv, RecommendationVectorEnv, make_simulator
    from loe_gym.errors import ContractError
    from loe_gym.logs import LOG_SCHEMA, LogInteractions, ParquetLogWriter, read_catalog, read_log
    from loe_gym.simulator import PrivilegedSimulator, Responses, UserSimulator

__version__ = "0.1.0"

register_environments()

_EXPORTS = {
    "Catalog": "catalog",
    "check_simulator": "checker",
    "FrozenConfig": "config",
    "EnvConfig": "envs",
    "RecommendationEnv": "envs",
    "RecommendationVectorEnv": "envs",
    "make_simulator": "envs",
    "ContractError": "errors",
    "LOG_SCHEMA": "logs",
    "LogInteractions": "logs",
    "ParquetLogWriter": "logs",
    "read_catalog": "logs",
    "read_log": "logs",
    "PrivilegedSimulator": "simulator",
    "Responses": "simulator",
    "UserSimulator": "simulator",
}


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
    "register_environments",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
