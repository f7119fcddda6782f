"""The multi-task predictor: learns users' behaviour from interaction logs (``docs/predictor.md``).

Importing the package is light: its options (`loe_gym.predictor.configs`) import neither
torch nor transformers. The names below are loaded on first use (PEP 562); importing
``PredictorConfig`` / ``PredictorModel`` (from here or their modules) registers them with
``AutoConfig`` / ``AutoModel`` under the model type ``"loe_predictor"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loe_gym.lazy import lazy_exports
from loe_gym.predictor.configs import BACKBONES, TASKS

if TYPE_CHECKING:
    from loe_gym.predictor.configuration_predictor import PredictorConfig
    from loe_gym.predictor.embeddings import MASK_ID, PAD_ID, to_catalog_ids, to_model_ids
    from loe_gym.predictor.input_checks import IGNORE_INDEX
    from loe_gym.predictor.loading import load_predictor
    from loe_gym.predictor.modeling_predictor import (
        EncodedHistory,
        PredictorModel,
        PredictorOutput,
    )

_LAZY = {
    "IGNORE_INDEX": "input_checks",
    "MASK_ID": "embeddings",
    "PAD_ID": "embeddings",
    "EncodedHistory": "modeling_predictor",
    "PredictorConfig": "configuration_predictor",
    "PredictorModel": "modeling_predictor",
    "PredictorOutput": "modeling_predictor",
    "load_predictor": "loading",
    "to_catalog_ids": "embeddings",
    "to_model_ids": "embeddings",
}
"""Name → the module of this package that defines it (imported on first use)."""

__all__ = [
    "BACKBONES",
    "IGNORE_INDEX",
    "MASK_ID",
    "PAD_ID",
    "TASKS",
    "EncodedHistory",
    "PredictorConfig",
    "PredictorModel",
    "PredictorOutput",
    "load_predictor",
    "to_catalog_ids",
    "to_model_ids",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
