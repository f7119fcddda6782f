"""The multi-task predictor: learns users' behaviour from interaction logs (``docs/predictor.md``).

Importing this package registers ``PredictorConfig`` /
``PredictorModel`` with ``AutoConfig`` / ``AutoModel`` under the model type
``"loe_predictor"``.
"""

from transformers import AutoConfig, AutoModel

from loe_gym.predictor.configuration_predictor import BACKBONES, TASKS, PredictorConfig
from loe_gym.predictor.modeling_predictor import (
    IGNORE_INDEX,
    MASK_ID,
    PAD_ID,
    EncodedHistory,
    PredictorModel,
    PredictorOutput,
    load_predictor,
    to_catalog_ids,
    to_model_ids,
)

# `exist_ok`: re-importing (e.g. after `importlib.reload`) must not fail.
AutoConfig.register(PredictorConfig.model_type, PredictorConfig, exist_ok=True)
AutoModel.register(PredictorConfig, PredictorModel, exist_ok=True)

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
