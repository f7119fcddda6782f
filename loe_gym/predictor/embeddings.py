"""The predictor's input layers: item ids, item embeddings and history tokens.

Model item ids are catalog ids + 2: `PAD_ID` (0) pads histories, `MASK_ID` (1) is the query
token and the masked items of pre-training. `ItemEmbeddings` gives every item a vector (a
learned id embedding plus its projected public features); `PredictorEmbeddings` turns a
history and the query into the backbone's input tokens.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import nn

from loe_gym.predictor.configuration_predictor import PredictorConfig

__all__ = [
    "MASK_ID",
    "NUM_SPECIAL_IDS",
    "PAD_ID",
    "ItemEmbeddings",
    "PredictorEmbeddings",
    "to_catalog_ids",
    "to_model_ids",
]

PAD_ID = 0
"""Model item id of padding (history sequences are left-padded with it)."""

MASK_ID = 1
"""Model item id of ``[MASK]``: the query token, and masked items in pre-training."""

NUM_SPECIAL_IDS = 2
"""Model ids below this are special; catalog item ``i`` has model id ``i + 2``."""

IdsT = TypeVar("IdsT", int, np.ndarray, torch.Tensor)


def to_model_ids(catalog_ids: IdsT) -> IdsT:
    """Shift catalog ids (``0 … num_items − 1``) to model ids (``2 … num_items + 1``).

    >>> to_model_ids(0)
    2
    >>> to_model_ids(torch.tensor([[0, 5]]))
    tensor([[2, 7]])
    """
    return catalog_ids + NUM_SPECIAL_IDS


def to_catalog_ids(model_ids: IdsT) -> IdsT:
    """Inverse of `to_model_ids` (meaningless for `PAD_ID` and `MASK_ID`).

    >>> to_catalog_ids(2)
    0
    """
    return model_ids - NUM_SPECIAL_IDS


class ItemEmbeddings(nn.Module):
    """Item vectors ``(*ids.shape, H)`` of model ids ``(*)``: id embedding + projected
    features (+ projected text vectors ``(N, D)`` when ``config.text_embedding_size``).

    ``item_features (N, F)`` are the catalog's public features (the model's buffer: they
    are shared with the long-term profile). The feature part is zero for `PAD_ID` and
    `MASK_ID`; the id part is zero for catalog items when ``config.item_id_embeddings`` is
    False (items are their features only).
    """

    item_text_vectors: torch.Tensor | None

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        self.config = config
        self.item_id_embeddings = nn.Embedding(
            config.num_items + NUM_SPECIAL_IDS, config.hidden_size, padding_idx=PAD_ID
        )
        self.item_feature_projection = nn.Linear(config.num_item_features, config.hidden_size)
        # Frozen text vectors of the catalog: data saved with the weights, like features.
        size = config.text_embedding_size
        self.register_buffer(
            "item_text_vectors", torch.zeros(config.num_items, size) if size else None
        )
        self.text_projection = nn.Linear(size, config.hidden_size) if size else None

    def forward(self, model_ids: torch.Tensor, item_features: torch.Tensor) -> torch.Tensor:
        is_item = model_ids >= NUM_SPECIAL_IDS
        catalog_ids = (model_ids - NUM_SPECIAL_IDS).clamp_min(0)
        features = self.item_feature_projection(item_features[catalog_ids])
        if self.text_projection is not None and self.item_text_vectors is not None:
            features = features + self.text_projection(self.item_text_vectors[catalog_ids])
        if not self.config.item_id_embeddings:
            # Catalog items look up the (zero, frozen) padding row: features only.
            model_ids = torch.where(is_item, PAD_ID, model_ids)
        return self.item_id_embeddings(model_ids) + features * is_item.unsqueeze(-1)

    def catalog(self, item_features: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(N, H)`` of every catalog item, in catalog id order."""
        ids = torch.arange(
            NUM_SPECIAL_IDS,
            self.config.num_items + NUM_SPECIAL_IDS,
            device=self.item_id_embeddings.weight.device,
        )
        return self(ids, item_features)


class PredictorEmbeddings(nn.Module):
    """The backbone's input tokens ``(B, L + 1, H)``: a history of ``L`` rows and the query.

    Each token is the sum of its item's vector (`ItemEmbeddings`), a projection of its
    feedback ``(clicked, log1p(watch minutes), completion)`` and its time-gap embedding,
    normalised. `MASK_ID` tokens (the query, masked items) get a learned "unknown
    feedback" vector instead of their feedback, which would leak the answer. With a
    long-term profile, its projection (`LongTermProfile.query`) is added to the query token.
    """

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.feedback_projection = nn.Linear(config.feedback_size, hidden)
        # Initialised by `PredictorPreTrainedModel._init_weights` on the model's visit.
        self.unknown_feedback = nn.Parameter(torch.zeros(hidden))
        self.gap_embeddings = nn.Embedding(config.num_gap_buckets, hidden, padding_idx=0)
        self.layer_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(
        self,
        item_ids: torch.Tensor,
        items: torch.Tensor,
        history_feedback: torch.Tensor,
        gaps: torch.Tensor,
        profile: torch.Tensor | None,
    ) -> torch.Tensor:
        """Tokens of ``item_ids (B, L + 1)`` (the query last) with item vectors ``items
        (B, L + 1, H)``, ``history_feedback (B, L, feedback_size)``, ``gaps (B, L + 1)`` and
        the profile's query vector ``profile (B, H)`` (or ``None``)."""
        batch_size = item_ids.shape[0]
        feedback = self.feedback_projection(history_feedback.to(self.feedback_projection.weight))
        feedback = torch.cat([feedback, feedback.new_zeros(batch_size, 1, feedback.shape[-1])], 1)
        # Query and masked tokens must not see feedback: it would leak the hidden answer.
        unknown = (item_ids == MASK_ID).unsqueeze(-1)
        feedback = torch.where(unknown, self.unknown_feedback.to(feedback), feedback)
        tokens = items + feedback + self.gap_embeddings(gaps)
        if profile is not None:
            tokens = torch.cat([tokens[:, :-1], tokens[:, -1:] + profile.unsqueeze(1)], dim=1)
        return self.layer_norm(tokens)
