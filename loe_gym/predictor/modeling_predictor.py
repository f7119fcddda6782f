"""`PredictorModel`: a transformer over a user's interaction history with multi-task heads.

The design is in ``docs/predictor.md``. In short: each history token is the sum of an item
embedding (id + projected public features), a feedback embedding and a time-gap embedding;
a query token (``[MASK]`` item, unknown feedback, the gap of the step being predicted) is
appended; a BERT (bidirectional) or GPT-2 (causal) backbone built from the config encodes
the sequence, and its output at the query token is the user state ``h``. Candidate heads
score an item ``c`` with one MLP over ``[h, e_c, h ⊙ e_c]``; the ranking head scores the
whole catalog with ``h · E_itemsᵀ + b``.

With ``config.long_term_profile`` the model also keeps a *long-term profile* of the whole
history, however long: per time scale and public item feature, decayed sums of the feature
times (1, feedback). Its statistics enter the query token (so ``h`` sees them) and,
multiplied by the candidate's own features, the candidate MLP: for a one-hot topic feature
that is the user's exposure count, click rate and completion on the candidate's topic over
their whole life (decay 1) and recently (decay < 1).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model, PreTrainedModel
from transformers.utils import ModelOutput

from loe_gym.predictor.configuration_predictor import TASKS, PredictorConfig

try:  # transformers ≥ 5: init functions that skip weights already loaded from a checkpoint.
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init  # type: ignore[no-redef]

PAD_ID = 0
"""Model item id of padding (history sequences are left-padded with it)."""

MASK_ID = 1
"""Model item id of ``[MASK]``: the query token, and masked items in pre-training."""

NUM_SPECIAL_IDS = 2
"""Model ids below this are special; catalog item ``i`` has model id ``i + 2``."""

IGNORE_INDEX = -100
"""Label of rows (ranking) or positions (masked item) that carry no loss."""

# Columns of the shared candidate trunk's output layer.
_CLICK, _WATCH_TIME, _CONTINUATION, _RETURN = range(4)

# Backbone tables the predictor may take the first rows of (a pretrained BERT has 512
# positions and 2 token types; the predictor needs `max_history_length + 1` and 1).
_ROW_SLICEABLE_KEYS = (
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "wpe.weight",
)

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


@dataclass
class PredictorOutput(ModelOutput):
    """Outputs of `PredictorModel.forward`; ``B`` batch, ``L`` history length (after
    truncation to ``max_history_length``), ``H`` hidden size, ``N`` catalog size.

    Candidate fields are ``None`` when no ``target_item_ids`` are given.

    Attributes:
        loss: ``()`` weighted sum of the task losses; ``None`` when no labels are given.
        losses: task name → ``()`` unweighted loss, for the tasks whose labels are given.
        click_logits: ``(B,)`` logit of a click on the target item.
        watch_time: ``(B,)`` predicted ``log1p(watch minutes)`` if the target is clicked.
        continuation_logits: ``(B,)`` logit that the session continues after this step.
        return_logits: ``(B,)`` logit that the user returns the next day (meaningful on
            session-ending steps).
        ranking_logits: ``(B, N)`` scores of every catalog item as the next click, in
            catalog id order (no special ids).
        masked_item_logits: ``(B, L, N)`` scores of the item at each history position;
            only computed when ``masked_item_labels`` are given.
        user_state: ``(B, H)`` backbone output at the query token.
        embeddings: ``(B, L + 1, H)`` input token embeddings before ``inputs_embeds_noise``
            (the tensor adversarial training perturbs).
    """

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    click_logits: torch.Tensor | None = None
    watch_time: torch.Tensor | None = None
    continuation_logits: torch.Tensor | None = None
    return_logits: torch.Tensor | None = None
    ranking_logits: torch.Tensor | None = None
    masked_item_logits: torch.Tensor | None = None
    user_state: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


class EncodedHistory(NamedTuple):
    """What `PredictorModel.encode_with_history` returns and `score_candidates` takes.

    Attributes:
        user_state: ``(B, H)`` backbone output at the query token.
        history_outputs: ``(B, L, H)`` backbone outputs at the history tokens.
        history_mask: ``(B, L)`` True on real history items.
        profile_statistics: ``(B, T, F + 1, 1 + 2·feedback_size)`` statistics of the
            long-term profile (see `PredictorModel.profile_statistics`); ``None`` without
            ``config.long_term_profile``.
    """

    user_state: torch.Tensor
    history_outputs: torch.Tensor
    history_mask: torch.Tensor
    profile_statistics: torch.Tensor | None


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


def _build_backbone(config: PredictorConfig) -> BertModel | GPT2Model:
    settings = backbone_config(config)
    if isinstance(settings, BertConfig):
        return BertModel(settings, add_pooling_layer=False)
    return GPT2Model(settings)


class _NoTokenEmbeddings(nn.Module):
    """Stands in for the backbone's word embeddings, which the predictor never uses."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(
            "The predictor's backbone takes inputs_embeds, not token ids; call "
            "PredictorModel.forward instead of the backbone."
        )


class PredictorPreTrainedModel(PreTrainedModel):
    """Base class: config class, weight initialisation, safetensors save/load."""

    config_class = PredictorConfig
    config: PredictorConfig
    base_model_prefix = "predictor"
    main_input_name = "history_item_ids"

    def _init_weights(self, module: nn.Module) -> None:
        # The base class covers Linear, Embedding (zero padding row) and LayerNorm; the
        # free parameters of `PredictorModel` itself are initialised here. The backbone's
        # modules are initialised by the backbone's own `_init_weights`.
        super()._init_weights(module)
        if isinstance(module, PredictorModel):
            init.normal_(module.unknown_feedback, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.ranking_bias)
            init.zeros_(module.masked_item_bias)
            if module.log_variances is not None:
                init.zeros_(module.log_variances)


class PredictorModel(PredictorPreTrainedModel):
    """Multi-task engagement predictor over left-padded interaction histories.

    Model item ids are catalog ids + 2 (`PAD_ID` = 0, `MASK_ID` = 1); see `to_model_ids`.
    Histories longer than ``config.max_history_length`` keep their most recent
    ``max_history_length`` tokens (truncated from the left, without error), for every
    ``(B, L, …)`` argument alike.

    Example:
        >>> config = PredictorConfig.tiny(num_items=30, num_item_features=4)
        >>> model = PredictorModel(config).eval()
        >>> model.set_item_features(torch.rand(30, 4))
        >>> history = to_model_ids(torch.tensor([[3, 1, 4]]))
        >>> output = model(history, torch.zeros(1, 3, 3), torch.ones(1, 3, dtype=torch.long),
        ...                target_item_ids=to_model_ids(torch.tensor([5])))
        >>> output.click_logits.shape, output.ranking_logits.shape, output.loss is None
        (torch.Size([1]), torch.Size([1, 30]), True)
    """

    item_features: torch.Tensor

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size
        self.item_id_embeddings = nn.Embedding(
            config.num_items + NUM_SPECIAL_IDS, hidden, padding_idx=PAD_ID
        )
        self.item_feature_projection = nn.Linear(config.num_item_features, hidden)
        # Public catalog features; a buffer, not a parameter: they are data, but saved with
        # the weights so a checkpoint scores items without the catalog at hand.
        self.register_buffer(
            "item_features",
            torch.zeros(config.num_items, config.num_item_features, dtype=torch.float32),
            persistent=True,
        )
        self.feedback_projection = nn.Linear(config.feedback_size, hidden)
        self.unknown_feedback = nn.Parameter(torch.zeros(hidden))
        self.gap_embeddings = nn.Embedding(config.num_gap_buckets, hidden, padding_idx=0)
        self.embedding_layer_norm = nn.LayerNorm(hidden, eps=1e-12)
        profile_width = 0
        if config.long_term_profile:
            scales, features, sums = config.profile_shape
            profile_width = scales * features * (2 * sums - 1)
        # Long-term profile: into the query token (the user state) and, crossed with the
        # candidate's features, into the candidate trunk (see the module docstring).
        # The statistics mix counts, rates and logs of very different scales: each input
        # is normalised first, or a few large counts swamp the token and slow learning.
        self.profile_projection = _normalised_projection(profile_width, hidden)
        self.profile_cross_projection = _normalised_projection(profile_width, hidden)
        # A linear ("wide", Cheng et al. 2016) path from the crossed statistics to the
        # outputs: sparse long-term labels (next-day return) are nearly linear in them and
        # are learnt far sooner this way than through the trunk alone.
        self.profile_wide = nn.Linear(profile_width, 4) if profile_width else None
        # Dropout on the tokens is the backbone's own embedding dropout (applied after its
        # position embeddings): a second one here would drop twice as often.
        self.backbone = _build_backbone(config)
        # Tokens reach the backbone as `inputs_embeds`: its word embeddings would be an
        # unused parameter (which distributed training rejects), so there are none.
        self.backbone.set_input_embeddings(_NoTokenEmbeddings())
        # Target attention: a candidate queries the history outputs, so the heads see the
        # user's behaviour on similar items directly (DIN, Zhou et al. 2018).
        self.target_query = (
            nn.Linear(hidden, hidden, bias=False) if config.target_attention else None
        )
        trunk_parts = 3 + (2 if config.target_attention else 0) + (1 if profile_width else 0)
        self.candidate_trunk = nn.Sequential(
            nn.Linear(trunk_parts * hidden, hidden),
            nn.GELU(),
            nn.Dropout(config.hidden_dropout_prob),
            nn.Linear(hidden, hidden),
            nn.GELU(),
        )
        # One output column per candidate task: click, watch time, continuation, return.
        self.candidate_output = nn.Linear(hidden, 4)
        self.ranking_bias = nn.Parameter(torch.zeros(config.num_items))
        self.masked_item_bias = nn.Parameter(torch.zeros(config.num_items))
        self.log_variances: nn.Parameter | None = None
        if config.loss_weighting == "uncertainty":
            # s_i = log σ_i² per task (Kendall et al. 2018), in the order of `TASKS`.
            self.log_variances = nn.Parameter(torch.zeros(len(TASKS)))
        self.post_init()
        # `from_pretrained` builds the model on the meta device and then loads the full
        # checkpoint; pretrained backbone weights only matter for a fresh model.
        if config.backbone_path is not None and self.unknown_feedback.device.type != "meta":
            self._load_pretrained_backbone(config.backbone_path)

    # --- item embeddings ---

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_id_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.item_id_embeddings = value  # type: ignore[assignment]

    @torch.no_grad()
    def set_item_features(self, features: torch.Tensor | np.ndarray) -> None:
        """Copy the catalog's public features ``(num_items, num_item_features)`` into the
        model (e.g. ``model.set_item_features(catalog.features)``)."""
        if torch.is_tensor(features):
            values = features.detach().to(torch.float32)
        else:  # a copy: catalog arrays are read-only
            values = torch.from_numpy(np.array(features, dtype=np.float32))
        expected = (self.config.num_items, self.config.num_item_features)
        if tuple(values.shape) != expected:
            raise ValueError(
                f"item features must have shape (num_items, num_item_features) = {expected}, "
                f"got {tuple(values.shape)}; pass the catalog the config was built for "
                f"(Catalog.features)."
            )
        if not torch.isfinite(values).all():
            row = int(torch.nonzero(~torch.isfinite(values))[0, 0])
            raise ValueError(f"item features must be finite; item {row} has NaN or inf.")
        self.item_features.copy_(values.to(self.item_features))

    def embed_items(self, model_ids: torch.Tensor) -> torch.Tensor:
        """Item embeddings ``(*ids.shape, H)``: id embedding + projected features (the
        feature part is zero for `PAD_ID` and `MASK_ID`; the id part is zero for catalog
        items when ``config.item_id_embeddings`` is False)."""
        is_item = model_ids >= NUM_SPECIAL_IDS
        catalog_ids = (model_ids - NUM_SPECIAL_IDS).clamp_min(0)
        features = self.item_feature_projection(self.item_features[catalog_ids])
        if not self.config.item_id_embeddings:
            # Catalog items look up the (zero, frozen) padding row: features only.
            model_ids = torch.where(is_item, PAD_ID, model_ids)
        return self.item_id_embeddings(model_ids) + features * is_item.unsqueeze(-1)

    def catalog_item_embeddings(self) -> torch.Tensor:
        """Embeddings ``(N, H)`` of every catalog item, in catalog id order."""
        ids = torch.arange(
            NUM_SPECIAL_IDS,
            self.config.num_items + NUM_SPECIAL_IDS,
            device=self.item_id_embeddings.weight.device,
        )
        return self.embed_items(ids)

    # --- encoder ---

    def encode(
        self,
        history_item_ids: torch.Tensor,
        history_feedback: torch.Tensor,
        history_gaps: torch.Tensor,
        target_gaps: torch.Tensor | None = None,
        history_profile: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """User states ``(B, H)`` of histories (arguments as in `forward`)."""
        return self.encode_with_history(
            history_item_ids, history_feedback, history_gaps, target_gaps, history_profile
        ).user_state

    def encode_with_history(
        self,
        history_item_ids: torch.Tensor,
        history_feedback: torch.Tensor,
        history_gaps: torch.Tensor,
        target_gaps: torch.Tensor | None = None,
        history_profile: torch.Tensor | None = None,
    ) -> EncodedHistory:
        """Everything `score_candidates` needs about histories (arguments as in
        `forward`)."""
        ids, feedback, gaps, statistics = self._check_history(
            history_item_ids, history_feedback, history_gaps, history_profile
        )
        target_gaps = self._check_target(
            target_gaps, "target_gaps", ids.shape[0], low=0, high=self.config.num_gap_buckets
        )
        sequence_output, _ = self._encode(ids, feedback, gaps, target_gaps, None, statistics)
        return EncodedHistory(
            sequence_output[:, -1], sequence_output[:, :-1], ids != PAD_ID, statistics
        )

    # --- long-term profile ---

    def history_profile(
        self,
        history_item_ids: torch.Tensor,
        history_feedback: torch.Tensor,
        previous_profile: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Long-term profiles ``(B, T, F + 1, 1 + feedback_size)`` of histories ``(B, L)``
        (model ids) with feedback ``(B, L, feedback_size)``, *all* ``L`` tokens counted.

        ``profile[b, s, f] = Σ_t λ_s^(rows after t) · x_f(item_t) · (1, feedback_t)`` over
        the item tokens of history ``b``, for each decay ``λ_s`` of
        ``config.profile_decays``; ``x`` is the item's public features with a constant 1
        appended (its row holds the plain counts). Padding counts nothing; a ``[MASK]``
        token is a row (it ages the rows before it) whose item and feedback are unknown.

        Profiles compose: with ``previous_profile`` (the profile of the rows before these),
        the result is the profile of the whole, so an agent can keep one per user and
        update it with each new row.
        """
        is_row = history_item_ids != PAD_ID
        is_item = (history_item_ids >= NUM_SPECIAL_IDS).unsqueeze(-1)
        features = self.item_features[(history_item_ids - NUM_SPECIAL_IDS).clamp_min(0)]
        features = torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)
        features = torch.where(is_item, features, torch.zeros_like(features))
        feedback = torch.where(is_item, history_feedback.to(features), torch.zeros(()).to(features))
        values = torch.cat([torch.ones_like(feedback[..., :1]), feedback], dim=-1)
        # Rows after each token (B, L), and each time scale's weight λ^age (B, T, L).
        rows = is_row.to(torch.float64)
        later = rows.flip(-1).cumsum(-1).flip(-1) - rows
        decays = torch.tensor(self.config.profile_decays, dtype=torch.float64, device=later.device)
        weights = (decays[None, :, None] ** later[:, None, :]).to(features)
        profile = torch.einsum("btl,blf,blk->btfk", weights, features, values)
        if previous_profile is not None:
            aged = decays[None, :] ** rows.sum(-1, keepdim=True)  # (B, T)
            profile = profile + previous_profile.to(profile) * aged.to(profile)[..., None, None]
        return profile

    @staticmethod
    def profile_statistics(profile: torch.Tensor) -> torch.Tensor:
        """Statistics ``(…, 2K − 1)`` of profiles ``(…, K)``: per time scale and feature,
        the (sign-preserving) log of the exposure sum and of each feedback sum, and each
        feedback sum per exposure (for a one-hot topic: counts, click rate, completion)."""
        exposures, sums = profile[..., :1], profile[..., 1:]
        return torch.cat([_symlog(exposures), _symlog(sums), sums / (exposures.abs() + 1.0)], -1)

    def _encode(
        self,
        history_item_ids: torch.Tensor,
        history_feedback: torch.Tensor,
        history_gaps: torch.Tensor,
        target_gaps: torch.Tensor | None,
        inputs_embeds_noise: torch.Tensor | None,
        profile_statistics: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone outputs ``(B, L + 1, H)`` and input embeddings ``(B, L + 1, H)`` of
        checked, truncated inputs."""
        batch_size, length = history_item_ids.shape
        device = history_item_ids.device
        query_ids = torch.full((batch_size, 1), MASK_ID, dtype=torch.long, device=device)
        item_ids = torch.cat([history_item_ids, query_ids], dim=1)
        if target_gaps is None:
            target_gaps = torch.zeros(batch_size, dtype=torch.long, device=device)
        gaps = torch.cat([history_gaps, target_gaps.unsqueeze(1)], dim=1)
        feedback = self.feedback_projection(history_feedback.to(self.feedback_projection.weight))
        feedback = torch.cat([feedback, feedback.new_zeros(batch_size, 1, feedback.shape[-1])], 1)
        # Query and masked tokens must not see feedback: it would leak the hidden answer.
        unknown = (item_ids == MASK_ID).unsqueeze(-1)
        feedback = torch.where(unknown, self.unknown_feedback.to(feedback), feedback)
        tokens = self.embed_items(item_ids) + feedback + self.gap_embeddings(gaps)
        if self.profile_projection is not None:
            assert profile_statistics is not None
            profile = self.profile_projection(profile_statistics.flatten(1).to(tokens))
            tokens = torch.cat([tokens[:, :-1], tokens[:, -1:] + profile.unsqueeze(1)], dim=1)
        embeddings = self.embedding_layer_norm(tokens)
        inputs_embeds = (
            embeddings if inputs_embeds_noise is None else embeddings + inputs_embeds_noise
        )
        attention_mask = torch.cat(
            [(history_item_ids != PAD_ID).long(), query_ids.new_ones(batch_size, 1)], dim=1
        )
        # Positions count back from the query token, which always sits at position
        # `max_history_length`: the most recent item has the same position however much
        # left padding the batch has (as in SASRec/BERT4Rec with fixed-length padding).
        offset = self.config.max_history_length - length
        position_ids = (torch.arange(length + 1, device=device) + offset).expand(batch_size, -1)
        backbone_kwargs: dict[str, Any] = {}
        if self.config.backbone == "gpt2":
            backbone_kwargs["use_cache"] = False
        outputs = self.backbone(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **backbone_kwargs,
        )
        return outputs.last_hidden_state, embeddings

    # --- heads ---

    def _candidate_outputs(
        self, encoded: EncodedHistory, candidate_item_ids: torch.Tensor
    ) -> torch.Tensor:
        """Outputs ``(B, 4)`` or ``(B, C, 4)`` (click, watch, continuation, return) of the
        shared trunk for candidates ``(B,)`` or ``(B, C)`` (model ids)."""
        items = self.embed_items(candidate_item_ids)
        user_state = encoded.user_state
        if items.ndim == 3:
            user_state = user_state.unsqueeze(1).expand_as(items)
        parts = [user_state, items, user_state * items]
        if self.profile_cross_projection is not None:
            statistics = encoded.profile_statistics
            assert statistics is not None
            features = self.item_features[candidate_item_ids - NUM_SPECIAL_IDS]
            features = torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)
            if features.ndim == 3:
                statistics = statistics.unsqueeze(1)
            # (…, T, F + 1, S): the user's statistics on each feature the candidate has.
            crossed = features[..., None, :, None] * statistics.to(features)
            normalised = self.profile_cross_projection[0](crossed.flatten(-3).to(items))
            parts.append(self.profile_cross_projection[1](normalised))
        if self.target_query is not None:
            history_outputs, history_mask = encoded.history_outputs, encoded.history_mask
            query = self.target_query(items)
            flat = query if query.ndim == 3 else query.unsqueeze(1)  # (B, C, H)
            scores = flat @ history_outputs.transpose(1, 2) / math.sqrt(flat.shape[-1])
            scores = scores.masked_fill(~history_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
            pooled = torch.softmax(scores, dim=-1) @ history_outputs
            # A user without history attends to nothing.
            pooled = pooled * history_mask.any(dim=1).to(pooled)[:, None, None]
            pooled = pooled if query.ndim == 3 else pooled.squeeze(1)
            parts += [pooled, pooled * items]
        outputs = self.candidate_output(self.candidate_trunk(torch.cat(parts, dim=-1)))
        if self.profile_wide is not None:
            outputs = outputs + self.profile_wide(normalised)
        return outputs

    def score_candidates(
        self, encoded: EncodedHistory, candidate_item_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Score ``C`` candidates per user in one pass of the candidate trunk.

        Args:
            encoded: `encode_with_history` of ``B`` histories.
            candidate_item_ids: ``(B, C)`` model ids (`to_model_ids` of catalog ids).

        Returns:
            ``(B, C)`` tensors: ``click_probability``; ``watch_time_if_clicked``
            (expected minutes given a click, ``expm1`` of the predicted log1p value,
            clamped at 0); ``watch_time = click_probability · watch_time_if_clicked``
            (unconditional expected minutes); ``continuation_probability`` (1 − p(session
            ends)); ``return_probability`` (next-day return, if the session ends here).
        """
        if not isinstance(encoded, EncodedHistory):
            raise TypeError(
                f"encoded must be the EncodedHistory that encode_with_history returns, got "
                f"{_describe(encoded)}."
            )
        candidates = self._check_ids(
            candidate_item_ids, "candidate_item_ids", ndim=2, low=NUM_SPECIAL_IDS
        )
        if candidates.shape[0] != encoded.user_state.shape[0]:
            raise ValueError(
                f"candidate_item_ids has {candidates.shape[0]} rows but {encoded.user_state.shape[0]} "
                "histories were encoded; give one row of candidates per user, shape (B, C)."
            )
        outputs = self._candidate_outputs(encoded, candidates)
        click_probability = torch.sigmoid(outputs[..., _CLICK])
        watch_time_if_clicked = torch.expm1(outputs[..., _WATCH_TIME]).clamp_min(0.0)
        return {
            "click_probability": click_probability,
            "watch_time_if_clicked": watch_time_if_clicked,
            "watch_time": click_probability * watch_time_if_clicked,
            "continuation_probability": torch.sigmoid(outputs[..., _CONTINUATION]),
            "return_probability": torch.sigmoid(outputs[..., _RETURN]),
        }

    def forward(
        self,
        history_item_ids: torch.Tensor,
        history_feedback: torch.Tensor,
        history_gaps: torch.Tensor,
        target_item_ids: torch.Tensor | None = None,
        target_gaps: torch.Tensor | None = None,
        *,
        click_labels: torch.Tensor | None = None,
        click_mask: torch.Tensor | None = None,
        watch_time_labels: torch.Tensor | None = None,
        watch_time_mask: torch.Tensor | None = None,
        continuation_labels: torch.Tensor | None = None,
        return_labels: torch.Tensor | None = None,
        return_mask: torch.Tensor | None = None,
        ranking_labels: torch.Tensor | None = None,
        masked_item_labels: torch.Tensor | None = None,
        history_profile: torch.Tensor | None = None,
        inputs_embeds_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> PredictorOutput | tuple[Any, ...]:
        """Encode histories, score the target items, and compute the losses whose labels
        are given.

        Args:
            history_item_ids: ``(B, L)`` model ids, left-padded with `PAD_ID`; `MASK_ID`
                marks items masked for pre-training. `PAD_ID` tokens are masked out
                wherever they are, but only left padding keeps the positions of the most
                recent items independent of the padding.
            history_feedback: ``(B, L, feedback_size)`` float: clicked, log1p(watch
                minutes), completion of each history item (0 on padding).
            history_gaps: ``(B, L)`` gap bucket of each token (0 on padding).
            target_item_ids: ``(B,)`` model ids of the items to score, or ``None``.
            target_gaps: ``(B,)`` gap bucket of the predicted step; ``None`` → bucket 0.
            click_labels: ``(B,)`` 1 if the target was clicked, else 0.
            click_mask: ``(B,)`` bool, rows with a click loss (e.g. randomised exposures
                only, see `data.TargetBatches`); ``None`` → all rows.
            watch_time_labels: ``(B,)`` log1p(watch minutes) of the target.
            watch_time_mask: ``(B,)`` bool, rows with a watch-time loss (clicked rows);
                ``None`` → all rows.
            continuation_labels: ``(B,)`` 1 if the session continues after this step,
                i.e. ``1 − session_end``.
            return_labels: ``(B,)`` 1 if the user returns the next day.
            return_mask: ``(B,)`` bool, rows with a return loss (session-ending rows);
                ``None`` → all rows.
            ranking_labels: ``(B,)`` catalog id (not model id: it indexes
                ``ranking_logits``) of the next clicked item, `IGNORE_INDEX` to skip a row.
            masked_item_labels: ``(B, L)`` catalog ids of the masked items,
                `IGNORE_INDEX` elsewhere.
            history_profile: ``(B, T, F + 1, 1 + feedback_size)`` long-term profiles of the
                users' *whole* histories (`history_profile`; `data.TargetBatches` gives
                them). ``None`` → computed from the history given, before truncation.
                Ignored without ``config.long_term_profile``.
            inputs_embeds_noise: ``(B, L + 1, H)`` added to the token embeddings (the hook
                of adversarial training, FGM/PGD); ``L`` after truncation.
            return_dict: ``False`` returns ``PredictorOutput.to_tuple()``.

        Returns:
            `PredictorOutput`; ``loss`` is ``Σ w_i L_i`` over the tasks with labels
            (``Σ w_i (exp(−s_i) L_i + s_i)`` with ``loss_weighting="uncertainty"``).
        """
        ids, feedback, gaps, statistics = self._check_history(
            history_item_ids, history_feedback, history_gaps, history_profile
        )
        batch_size, length = ids.shape
        target_item_ids = self._check_target(
            target_item_ids, "target_item_ids", batch_size, low=NUM_SPECIAL_IDS, high=None
        )
        target_gaps = self._check_target(
            target_gaps, "target_gaps", batch_size, low=0, high=self.config.num_gap_buckets
        )
        if masked_item_labels is not None:
            masked_item_labels = self._check_masked_item_labels(
                masked_item_labels, history_item_ids
            )
        if inputs_embeds_noise is not None:
            expected = (batch_size, length + 1, self.config.hidden_size)
            if tuple(inputs_embeds_noise.shape) != expected:
                raise ValueError(
                    f"inputs_embeds_noise must have the shape of output.embeddings, {expected} "
                    f"(history truncated to max_history_length, plus the query), got "
                    f"{tuple(inputs_embeds_noise.shape)}."
                )
        sequence_output, embeddings = self._encode(
            ids, feedback, gaps, target_gaps, inputs_embeds_noise, statistics
        )
        user_state = sequence_output[:, -1]
        catalog_items = self.catalog_item_embeddings()
        # A `ModelOutput` only lists the fields set when it is built: collect them first.
        fields: dict[str, Any] = {
            "ranking_logits": user_state @ catalog_items.T + self.ranking_bias,
            "user_state": user_state,
            "embeddings": embeddings,
        }
        if target_item_ids is not None:
            encoded = EncodedHistory(user_state, sequence_output[:, :-1], ids != PAD_ID, statistics)
            outputs = self._candidate_outputs(encoded, target_item_ids)
            fields["click_logits"] = outputs[:, _CLICK]
            fields["watch_time"] = outputs[:, _WATCH_TIME]
            fields["continuation_logits"] = outputs[:, _CONTINUATION]
            fields["return_logits"] = outputs[:, _RETURN]
        if masked_item_labels is not None:
            fields["masked_item_logits"] = (
                sequence_output[:, :-1] @ catalog_items.T + self.masked_item_bias
            )

        losses = self._losses(
            PredictorOutput(**fields),
            batch_size,
            click_labels=click_labels,
            click_mask=click_mask,
            watch_time_labels=watch_time_labels,
            watch_time_mask=watch_time_mask,
            continuation_labels=continuation_labels,
            return_labels=return_labels,
            return_mask=return_mask,
            ranking_labels=ranking_labels,
            masked_item_labels=masked_item_labels,
        )
        if losses:
            fields["losses"] = losses
            fields["loss"] = self._weighted_loss(losses)
        output = PredictorOutput(**fields)
        return output if return_dict else output.to_tuple()

    # --- losses ---

    def _losses(
        self,
        output: PredictorOutput,
        batch_size: int,
        *,
        click_labels: torch.Tensor | None,
        click_mask: torch.Tensor | None,
        watch_time_labels: torch.Tensor | None,
        watch_time_mask: torch.Tensor | None,
        continuation_labels: torch.Tensor | None,
        return_labels: torch.Tensor | None,
        return_mask: torch.Tensor | None,
        ranking_labels: torch.Tensor | None,
        masked_item_labels: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss of each task whose labels are given."""
        losses: dict[str, torch.Tensor] = {}
        candidate_labels = {
            "click_labels": click_labels,
            "watch_time_labels": watch_time_labels,
            "continuation_labels": continuation_labels,
            "return_labels": return_labels,
        }
        if output.click_logits is None:
            given = [name for name, value in candidate_labels.items() if value is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} given without target_item_ids; pass the (B,) model ids "
                    "of the items these labels belong to."
                )
            return self._catalog_losses(output, batch_size, ranking_labels, masked_item_labels)
        if click_labels is not None:
            mask = _check_mask(click_mask, "click_mask", batch_size)
            labels = _check_labels(
                click_labels, "click_labels", batch_size, unit_interval=True, mask=mask
            )
            losses["click"] = _binary_cross_entropy(output.click_logits, labels, mask)
        if watch_time_labels is not None:
            mask = _check_mask(watch_time_mask, "watch_time_mask", batch_size)
            labels = _check_labels(watch_time_labels, "watch_time_labels", batch_size, mask=mask)
            assert output.watch_time is not None
            labels = labels.to(output.watch_time)
            if mask is not None:
                # Labels of masked-out rows may be anything (NaN included); zeroed here, as
                # NaN would reach the gradient through `torch.where` (0 · NaN = NaN).
                labels = torch.where(mask, labels, torch.zeros_like(labels))
            losses["watch_time"] = _masked_mean((output.watch_time - labels) ** 2, mask)
        if continuation_labels is not None:
            labels = _check_labels(
                continuation_labels, "continuation_labels", batch_size, unit_interval=True
            )
            losses["continuation"] = _binary_cross_entropy(output.continuation_logits, labels, None)
        if return_labels is not None:
            mask = _check_mask(return_mask, "return_mask", batch_size)
            labels = _check_labels(
                return_labels, "return_labels", batch_size, unit_interval=True, mask=mask
            )
            losses["return"] = _binary_cross_entropy(output.return_logits, labels, mask)
        losses.update(self._catalog_losses(output, batch_size, ranking_labels, masked_item_labels))
        return losses

    def _catalog_losses(
        self,
        output: PredictorOutput,
        batch_size: int,
        ranking_labels: torch.Tensor | None,
        masked_item_labels: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        if ranking_labels is not None:
            labels = self._check_class_labels(ranking_labels, "ranking_labels", (batch_size,))
            assert output.ranking_logits is not None
            losses["ranking"] = _cross_entropy(output.ranking_logits, labels)
        if masked_item_labels is not None:
            assert output.masked_item_logits is not None
            losses["masked_item"] = _cross_entropy(output.masked_item_logits, masked_item_labels)
        return losses

    def _weighted_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((), device=next(iter(losses.values())).device)
        for task, loss in losses.items():
            weight = self.config.task_weights[task]
            if self.log_variances is None:
                total = total + weight * loss
            else:
                log_variance = self.log_variances[TASKS.index(task)]
                total = total + weight * (torch.exp(-log_variance) * loss + log_variance)
        return total

    # --- input checks; each error names the argument, the value and the fix ---

    def _check_history(
        self,
        history_item_ids: torch.Tensor,
        history_feedback: torch.Tensor,
        history_gaps: torch.Tensor,
        history_profile: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Checked ``(ids, feedback, gaps)``, truncated to the last ``max_history_length``,
        and the profile statistics (``None`` without ``config.long_term_profile``)."""
        ids = self._check_ids(history_item_ids, "history_item_ids", ndim=2, low=PAD_ID)
        shape = tuple(ids.shape)
        feedback_shape = (*shape, self.config.feedback_size)
        if not torch.is_tensor(history_feedback) or tuple(history_feedback.shape) != feedback_shape:
            raise ValueError(
                f"history_feedback must be a float tensor of shape (batch, length, "
                f"feedback_size) = {feedback_shape}, got {_describe(history_feedback)}."
            )
        if not torch.is_floating_point(history_feedback):
            raise ValueError(
                f"history_feedback must be a float tensor, got dtype {history_feedback.dtype}; "
                "convert it with .float()."
            )
        gaps = self._check_ids(
            history_gaps, "history_gaps", ndim=2, low=0, high=self.config.num_gap_buckets
        )
        if tuple(gaps.shape) != shape:
            raise ValueError(
                f"history_gaps must have the shape of history_item_ids, {shape}, got "
                f"{tuple(gaps.shape)}."
            )
        max_length = self.config.max_history_length
        # The model reads every token's feedback when it computes the profile itself, else
        # only the last `max_history_length`: those must be finite.
        profiled = self.config.long_term_profile and history_profile is None
        read = history_feedback if profiled else history_feedback[:, -max_length:]
        if not torch.isfinite(read).all():
            index = torch.nonzero(~torch.isfinite(read))[0].tolist()
            scope = (
                "the long-term profile sums every item token"
                if profiled
                else f"after truncation to the last {max_length} tokens"
            )
            raise ValueError(
                f"history_feedback must be finite, got {read[tuple(index)].item()} at index "
                f"{index} ({scope}); use 0 for padding and unknown feedback."
            )
        statistics = None
        if profiled:
            statistics = self.profile_statistics(self.history_profile(ids, history_feedback))
        elif self.config.long_term_profile:
            expected = (shape[0], *self.config.profile_shape)
            if not torch.is_tensor(history_profile) or tuple(history_profile.shape) != expected:
                raise ValueError(
                    f"history_profile must be a float tensor of shape (batch, time scales, "
                    f"num_item_features + 1, 1 + feedback_size) = {expected}, got "
                    f"{_describe(history_profile)}; compute it with model.history_profile."
                )
            if not torch.isfinite(history_profile).all():
                raise ValueError("history_profile must be finite; found NaN or inf.")
            statistics = self.profile_statistics(history_profile.float())
        if shape[1] > max_length:
            ids = ids[:, -max_length:]
            history_feedback = history_feedback[:, -max_length:]
            gaps = gaps[:, -max_length:]
        return ids, history_feedback, gaps, statistics

    def _check_target(
        self,
        values: torch.Tensor | None,
        name: str,
        batch_size: int,
        *,
        low: int,
        high: int | None,
    ) -> torch.Tensor | None:
        """``values`` checked like `_check_ids`, with shape ``(batch_size,)``."""
        if values is None:
            return None
        checked = self._check_ids(values, name, ndim=1, low=low, high=high)
        if checked.shape[0] != batch_size:
            raise ValueError(
                f"{name} must have shape (batch,) = ({batch_size},), got {tuple(checked.shape)}."
            )
        return checked

    def _check_ids(
        self,
        values: torch.Tensor,
        name: str,
        *,
        ndim: int,
        low: int,
        high: int | None = None,
    ) -> torch.Tensor:
        """``values`` as long, after checking rank, integer dtype and range ``[low, high)``
        (default ``high``: ``num_items + 2``, the model id range)."""
        dims = {1: "(batch,)", 2: "(batch, length)"}[ndim]
        if not torch.is_tensor(values) or values.ndim != ndim:
            raise ValueError(f"{name} must be a {ndim}-d tensor {dims}, got {_describe(values)}.")
        if (
            torch.is_floating_point(values)
            or torch.is_complex(values)
            or values.dtype == torch.bool
        ):
            raise ValueError(
                f"{name} must hold integers, got dtype {values.dtype}; convert it with .long()."
            )
        is_item_id = high is None
        high = self.config.num_items + NUM_SPECIAL_IDS if high is None else high
        bad = (values < low) | (values >= high)
        if bad.any():
            index = tuple(torch.nonzero(bad)[0].tolist())
            fix = (
                "model ids are catalog ids + 2 (0 = padding, 1 = [MASK]); convert catalog ids "
                "with to_model_ids()"
                if is_item_id
                else "gap buckets are 0 (padding), 1 (same session), 2 (next day), 3… (later)"
            )
            raise ValueError(
                f"{name} must lie in [{low}, {high}), got {values[index].item()} at index "
                f"{list(index)}; {fix}."
            )
        return values.long()

    def _check_class_labels(
        self, labels: torch.Tensor, name: str, shape: tuple[int, ...]
    ) -> torch.Tensor:
        if not torch.is_tensor(labels) or tuple(labels.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {_describe(labels)}.")
        if torch.is_floating_point(labels) or labels.dtype == torch.bool:
            raise ValueError(f"{name} must hold integers, got dtype {labels.dtype}.")
        num_items = self.config.num_items
        bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_items))
        if bad.any():
            index = tuple(torch.nonzero(bad)[0].tolist())
            raise ValueError(
                f"{name} must be catalog ids in [0, {num_items}) or {IGNORE_INDEX} (ignored), "
                f"got {labels[index].item()} at index {list(index)}; labels index the logits, "
                "so use catalog ids, not model ids."
            )
        return labels.long()

    def _check_masked_item_labels(
        self, labels: torch.Tensor, history_item_ids: torch.Tensor
    ) -> torch.Tensor:
        labels = self._check_class_labels(
            labels, "masked_item_labels", tuple(history_item_ids.shape)
        )
        return labels[:, -self.config.max_history_length :]

    # --- pretrained backbone ---

    @torch.no_grad()
    def _load_pretrained_backbone(self, path: str) -> None:
        """Copy the weights of a local pretrained backbone into ``self.backbone``."""
        expected_type = self.config.backbone
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
        self._check_backbone_sizes(pretrained.config, path)
        source = {
            key: value
            for key, value in pretrained.state_dict().items()
            if key not in info["missing_keys"]
        }
        state: dict[str, torch.Tensor] = {}
        for key, target in self.backbone.state_dict().items():
            if key not in source:
                raise ValueError(
                    f"The backbone at {path!r} has no weight {key!r}; save a complete "
                    f"{type(self.backbone).__name__} there with save_pretrained."
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
        self.backbone.load_state_dict(state, strict=True)

    def _check_backbone_sizes(self, pretrained: BertConfig | GPT2Config, path: str) -> None:
        config = self.config
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

    def save_pretrained(
        self, save_directory: str | os.PathLike[Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Save config and weights (safetensors, ``item_features`` included)."""
        # The checkpoint holds the backbone's weights: the saved config must not point to
        # a local directory that need not exist where the checkpoint is loaded.
        backbone_path = self.config.backbone_path
        self.config.backbone_path = None
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.backbone_path = backbone_path


def _normalised_projection(width: int, hidden: int) -> nn.Sequential | None:
    if width == 0:
        return None
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))


def _symlog(values: torch.Tensor) -> torch.Tensor:
    return torch.sign(values) * torch.log1p(values.abs())


# --- loss helpers ---


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (all if ``None``); 0 when the mask is empty, so a
    batch without e.g. session-ending rows adds nothing instead of NaN."""
    if mask is None:
        return values.mean()
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum() / mask.sum().clamp_min(1)


def _binary_cross_entropy(
    logits: torch.Tensor | None, labels: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    assert logits is not None
    labels = labels.to(logits)
    if mask is not None:
        # Labels of masked-out rows may be anything (NaN included): zero them first.
        labels = torch.where(mask, labels, torch.zeros_like(labels))
    values = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return _masked_mean(values, mask)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labels ≠ `IGNORE_INDEX`; 0 when all are ignored."""
    flat_labels = labels.reshape(-1)
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        flat_labels,
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return total / (flat_labels != IGNORE_INDEX).sum().clamp_min(1)


def _check_mask(mask: torch.Tensor | None, name: str, batch_size: int) -> torch.Tensor | None:
    if mask is None:
        return None
    if not torch.is_tensor(mask) or tuple(mask.shape) != (batch_size,):
        raise ValueError(
            f"{name} must be a bool tensor of shape ({batch_size},), got {_describe(mask)}."
        )
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"{name} must be bool (or 0/1), got values other than 0 and 1.")
        mask = mask.bool()
    return mask


def _check_labels(
    labels: torch.Tensor,
    name: str,
    batch_size: int,
    *,
    unit_interval: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    if not torch.is_tensor(labels) or tuple(labels.shape) != (batch_size,):
        raise ValueError(
            f"{name} must be a tensor of shape ({batch_size},), got {_describe(labels)}."
        )
    values = labels.float()
    bad = ~torch.isfinite(values)
    if unit_interval:
        bad = bad | (values < 0) | (values > 1)
    if mask is not None:
        bad = bad & mask
    if bad.any():
        row = int(torch.nonzero(bad)[0, 0])
        allowed = "in [0, 1]" if unit_interval else "finite"
        raise ValueError(f"{name} must be {allowed}, got {values[row].item()} at row {row}.")
    return labels


def _describe(value: object) -> str:
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:200]


# --- loading ---


def load_predictor(
    path: str | os.PathLike[str],
    *,
    num_items: int | None = None,
    num_item_features: int | None = None,
) -> PredictorModel:
    """Load a `PredictorModel` saved with ``save_pretrained``, refusing partial loads.

    Unlike a bare ``from_pretrained`` (which fills missing weights with random ones and
    only logs it), any missing, unexpected or mis-shaped weight raises with the key names,
    and a corrupt weights file raises naming the file. ``num_items`` /
    ``num_item_features``, if given, must match the checkpoint (the catalog in use).

    Returns:
        The model in eval mode.
    """
    directory = os.fspath(path)
    config_file = os.path.join(directory, "config.json")
    weights_file = os.path.join(directory, "model.safetensors")
    for file in (config_file, weights_file):
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"No predictor checkpoint at {directory!r}: {os.path.basename(file)} is missing; "
                "save one with PredictorModel.save_pretrained(directory)."
            )
    try:
        config = PredictorConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"Could not read the predictor config {config_file!r}: {error}") from error
    for name, expected in (("num_items", num_items), ("num_item_features", num_item_features)):
        if expected is not None and getattr(config, name) != expected:
            raise ValueError(
                f"The checkpoint at {directory!r} was trained for {name}={getattr(config, name)}, "
                f"but {name}={expected} was asked for; use a checkpoint trained on this catalog "
                "or retrain the predictor."
            )

    try:
        with safe_open(weights_file, framework="pt") as file:
            found = {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"The weights file {weights_file!r} is corrupt or not a safetensors file ({error}); "
            "save the model again with save_pretrained."
        ) from error
    with torch.device("meta"):
        expected_shapes = {
            key: tuple(value.shape) for key, value in PredictorModel(config).state_dict().items()
        }
    _raise_on_key_problems(
        weights_file,
        missing=sorted(expected_shapes.keys() - found.keys()),
        unexpected=sorted(found.keys() - expected_shapes.keys()),
        mismatched=[
            f"{key}: checkpoint {found[key]}, config {expected_shapes[key]}"
            for key in sorted(expected_shapes.keys() & found.keys())
            if found[key] != expected_shapes[key]
        ],
    )
    try:
        loaded: Any = PredictorModel.from_pretrained(
            directory, local_files_only=True, output_loading_info=True
        )
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise ValueError(
            f"Could not load the predictor weights {weights_file!r}: {error}"
        ) from error
    model, info = loaded
    _raise_on_key_problems(
        weights_file,
        missing=sorted(info.get("missing_keys", ())),
        unexpected=sorted(info.get("unexpected_keys", ())),
        mismatched=[str(item) for item in info.get("mismatched_keys", ())],
    )
    return model.eval()


def _raise_on_key_problems(
    weights_file: str, *, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> None:
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"mismatched shapes [{'; '.join(mismatched)}]")
    if problems:
        raise ValueError(
            f"The weights file {weights_file!r} does not match its config.json: "
            f"{', '.join(problems)}. Was config.json edited, or the file written by another "
            "model? Load the config the weights were saved with, or retrain."
        )
