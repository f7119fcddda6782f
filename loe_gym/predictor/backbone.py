"""The predictor's backbone: a BERT (bidirectional) or GPT-2 (causal) transformer.

Built from `PredictorConfig` (never fetched), without word embeddings: the predictor feeds
``inputs_embeds``. Pretrained weights come from a local directory only
(`load_pretrained_backbone`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.embeddings import PAD_ID

__all__ = ["backbone_config", "build_backbone", "load_pretrained_backbone"]

# Backbone tables the predictor may take the first rows of (a pretrained BERT has 512
# positions and 2 token types; the predictor needs `max_history_length + 1` and 1).
_ROW_SLICEABLE_KEYS = (
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "wpe.weight",
)


def backbone_config(config: PredictorConfig) -> BertConfig | GPT2Config:
    """The Hugging Face config of the backbone ``config`` asks for (built, never fetched).

    The vocabulary has one token: the predictor feeds ``inputs_embeds`` and removes the
    backbone's word embeddings.
    """
    if config.backbone == "bert":
        return BertConfig(
            vocab_size=1,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            hidden_act="gelu",
            hidden_dropout_prob=config.hidden_dropout_prob,
            attention_probs_dropout_prob=config.attention_dropout_prob,
            max_position_embeddings=config.max_sequence_length,
            type_vocab_size=1,
            initializer_range=config.initializer_range,
            pad_token_id=PAD_ID,
        )
    return GPT2Config(
        vocab_size=1,
        n_positions=config.max_sequence_length,
        n_embd=config.hidden_size,
        n_layer=config.num_hidden_layers,
        n_head=config.num_attention_heads,
        n_inner=config.intermediate_size,
        resid_pdrop=config.hidden_dropout_prob,
        embd_pdrop=config.hidden_dropout_prob,
        attn_pdrop=config.attention_dropout_prob,
        initializer_range=config.initializer_range,
        bos_token_id=None,
        eos_token_id=None,
        use_cache=False,
    )


def _backbone_class(backbone: str) -> type[BertModel] | type[GPT2Model]:
    return BertModel if backbone == "bert" else GPT2Model


def build_backbone(config: PredictorConfig) -> BertModel | GPT2Model:
    """A freshly initialised backbone for ``config``, with no word embeddings: tokens reach
    it as ``inputs_embeds``, and an unused parameter is one that distributed training
    rejects."""
    settings = backbone_config(config)
    backbone: BertModel | GPT2Model
    if isinstance(settings, BertConfig):
        backbone = BertModel(settings, add_pooling_layer=False)
    else:
        backbone = GPT2Model(settings)
    backbone.set_input_embeddings(_NoTokenEmbeddings())
    return backbone


class _NoTokenEmbeddings(nn.Module):
    """Stands in for the backbone's word embeddings, which the predictor never uses."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(
            "The predictor's backbone takes inputs_embeds, not token ids; call "
            "PredictorModel.forward instead of the backbone."
        )


@torch.no_grad()
def load_pretrained_backbone(
    backbone: BertModel | GPT2Model, config: PredictorConfig, path: str
) -> None:
    """Copy the weights of the pretrained backbone saved at ``path`` (a local directory of
    ``save_pretrained``) into ``backbone``, after checking that its sizes fit ``config``."""
    expected_type = config.backbone
    with open(os.path.join(path, "config.json"), encoding="utf-8") as file:
        found_type = json.load(file).get("model_type")
    if found_type != expected_type:
        raise ValueError(
            f"backbone_path={path!r} holds a {found_type!r} model but "
            f"PredictorConfig.backbone={expected_type!r}; set backbone={found_type!r} or "
            "point backbone_path to a saved "
            f"{_backbone_class(expected_type).__name__}."
        )
    try:
        loaded: Any = _backbone_class(expected_type).from_pretrained(
            path, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ValueError(f"Could not load the backbone at {path!r}: {error}") from error
    pretrained, info = loaded
    _check_backbone_sizes(config, pretrained.config, path)
    source = {
        key: value
        for key, value in pretrained.state_dict().items()
        if key not in info["missing_keys"]
    }
    state: dict[str, torch.Tensor] = {}
    for key, target in backbone.state_dict().items():
        if key not in source:
            raise ValueError(
                f"The backbone at {path!r} has no weight {key!r}; save a complete "
                f"{type(backbone).__name__} there with save_pretrained."
            )
        value = source[key]
        if value.shape != target.shape and key in _ROW_SLICEABLE_KEYS:
            if value.shape[0] < target.shape[0] or value.shape[1:] != target.shape[1:]:
                raise ValueError(
                    f"The backbone at {path!r} has {value.shape[0]} rows of {key!r}; the "
                    f"predictor needs {target.shape[0]} (max_history_length + 1 for "
                    "positions); lower max_history_length."
                )
            value = value[: target.shape[0]]
        if value.shape != target.shape:
            raise ValueError(
                f"The backbone weight {key!r} at {path!r} has shape {tuple(value.shape)}, the "
                f"predictor needs {tuple(target.shape)}."
            )
        state[key] = value.to(target.dtype)
    backbone.load_state_dict(state, strict=True)


def _check_backbone_sizes(
    config: PredictorConfig, pretrained: BertConfig | GPT2Config, path: str
) -> None:
    if config.backbone == "bert":
        found = {
            "hidden_size": pretrained.hidden_size,
            "num_hidden_layers": pretrained.num_hidden_layers,
            "num_attention_heads": pretrained.num_attention_heads,
            "intermediate_size": pretrained.intermediate_size,
        }
    else:
        found = {
            "hidden_size": pretrained.n_embd,
            "num_hidden_layers": pretrained.n_layer,
            "num_attention_heads": pretrained.n_head,
            "intermediate_size": pretrained.n_inner or 4 * pretrained.n_embd,
        }
    wrong = {name: value for name, value in found.items() if getattr(config, name) != value}
    if wrong:
        have = ", ".join(f"{name}={getattr(config, name)}" for name in wrong)
        fix = ", ".join(f"{name}={value}" for name, value in wrong.items())
        raise ValueError(
            f"The backbone at {path!r} does not fit the predictor: PredictorConfig has "
            f"{have}, the backbone has {fix}; build PredictorConfig({fix}, ...)."
        )
