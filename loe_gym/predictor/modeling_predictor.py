"""`PredictorModel`: a transformer over a user's interaction history with multi-task heads.

The design is in ``docs/predictor.md``. In short: each history token is the sum of an item
embedding (id + projected public features), a feedback embedding and a time-gap embedding;
a query token (``[MASK]`` item, unknown feedback, the gap of the step being predicted) is
appended (`PredictorEmbeddings`); a BERT (bidirectional) or GPT-2 (causal) backbone built
from the config encodes the sequence, and its output at the query token is the user state
``h``. Candidate heads score an item ``c`` with one MLP over ``[h, e_c, h ⊙ e_c]``
(`CandidateHeads`); the ranking head scores the whole catalog with ``h · E_itemsᵀ + b``.

With ``config.long_term_profile`` the model also keeps a *long-term profile* of the whole
history, however long (`loe_gym.predictor.profile`): its statistics enter the query token
and, crossed with the candidate's own features, the candidate heads.

The model's parts, in the order their weights are created and initialised (the order that
makes a seed give the same weights): ``items`` (`ItemEmbeddings`), ``embeddings``
(`PredictorEmbeddings`), ``profile`` (`LongTermProfile`, or ``None``), ``backbone``,
``heads`` (`CandidateHeads`), and the model's own ``ranking_bias``, ``masked_item_bias`` and
``log_variances``. Importing this module registers the model with ``AutoModel``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from loe_gym.predictor.backbone import backbone_config, build_backbone, load_pretrained_backbone
from loe_gym.predictor.configs import TASKS
from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.embeddings import (
    MASK_ID,
    NUM_SPECIAL_IDS,
    PAD_ID,
    ItemEmbeddings,
    PredictorEmbeddings,
    to_catalog_ids,
    to_model_ids,
)
from loe_gym.predictor.heads import CANDIDATE_OUTPUTS, CandidateHeads
from loe_gym.predictor.input_checks import (
    IGNORE_INDEX,
    check_history,
    check_ids,
    check_masked_item_labels,
    check_target,
    describe,
)
from loe_gym.predictor.profile import (
    LongTermProfile,
    history_profile,
    profile_statistics,
    profile_width,
)
from loe_gym.predictor.task_losses import task_losses, weighted_loss

try:  # transformers ≥ 5: init functions that skip weights already loaded from a checkpoint.
    from transformers import initialization as init
except ImportError:  # pragma: no cover - transformers 4.x
    from torch.nn import init  # type: ignore[no-redef]

__all__ = [
    "IGNORE_INDEX",
    "MASK_ID",
    "NUM_SPECIAL_IDS",
    "PAD_ID",
    "EncodedHistory",
    "PredictorModel",
    "PredictorOutput",
    "PredictorPreTrainedModel",
    "backbone_config",
    "to_catalog_ids",
    "to_model_ids",
]

# Columns of the candidate heads' output.
_CLICK, _WATCH_TIME, _CONTINUATION, _RETURN = (
    CANDIDATE_OUTPUTS.index(name) for name in ("click", "watch_time", "continuation", "return")
)


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


class PredictorPreTrainedModel(PreTrainedModel):
    """Base class: config class, weight initialisation, safetensors save/load."""

    config_class = PredictorConfig
    config: PredictorConfig
    base_model_prefix = "predictor"
    main_input_name = "history_item_ids"

    def _init_weights(self, module: nn.Module) -> None:
        # The base class covers Linear, Embedding (zero padding row) and LayerNorm; the
        # free parameters are initialised here. The backbone's modules are initialised by
        # the backbone's own `_init_weights`.
        super()._init_weights(module)
        if isinstance(module, PredictorModel):
            # On the model's visit, the last of all (modules are initialised children
            # first), the unknown-feedback vector included: its draw then follows every
            # other, as it always has, so a seed gives the same weights.
            init.normal_(
                module.embeddings.unknown_feedback, mean=0.0, std=self.config.initializer_range
            )
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
        # The parts in the order their weights were always created: the seed's draws
        # follow it (see the module docstring).
        self.items = ItemEmbeddings(config)
        # Public catalog features; a buffer, not a parameter: they are data, but saved with
        # the weights so a checkpoint scores items without the catalog at hand.
        self.register_buffer(
            "item_features",
            torch.zeros(config.num_items, config.num_item_features, dtype=torch.float32),
            persistent=True,
        )
        self.embeddings = PredictorEmbeddings(config)
        self.profile = LongTermProfile(config) if profile_width(config) else None
        # Dropout on the tokens is the backbone's own embedding dropout (applied after its
        # position embeddings): a second one in the embeddings would drop twice as often.
        self.backbone = build_backbone(config)
        self.heads = CandidateHeads(config, with_profile=self.profile is not None)
        self.ranking_bias = nn.Parameter(torch.zeros(config.num_items))
        self.masked_item_bias = nn.Parameter(torch.zeros(config.num_items))
        self.log_variances: nn.Parameter | None = None
        if config.loss_weighting == "uncertainty":
            # s_i = log σ_i² per task (Kendall et al. 2018), in the order of `TASKS`.
            self.log_variances = nn.Parameter(torch.zeros(len(TASKS)))
        self.post_init()
        # `from_pretrained` builds the model on the meta device and then loads the full
        # checkpoint; pretrained backbone weights only matter for a fresh model.
        if config.backbone_path is not None and self.ranking_bias.device.type != "meta":
            load_pretrained_backbone(self.backbone, config, config.backbone_path)

    # --- item embeddings ---

    def get_input_embeddings(self) -> nn.Embedding:
        return self.items.item_id_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.items.item_id_embeddings = value  # type: ignore[assignment]

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

    @torch.no_grad()
    def set_item_text_vectors(self, vectors: torch.Tensor | np.ndarray) -> None:
        """Copy the catalog's text vectors ``(num_items, text_embedding_size)`` (from
        `loe_gym.predictor.text.item_text_vectors`) into the model."""
        expected = (self.config.num_items, self.config.text_embedding_size)
        values = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        buffer = self.items.item_text_vectors
        if buffer is None or tuple(values.shape) != expected:
            raise ValueError(
                f"item text vectors must have shape (num_items, text_embedding_size) = "
                f"{expected}, got {tuple(values.shape)}; build the model with text_model and "
                "text_embedding_size set to the text model's width."
            )
        buffer.copy_(values.to(buffer))

    def embed_items(self, model_ids: torch.Tensor) -> torch.Tensor:
        """Item embeddings ``(*ids.shape, H)`` (`ItemEmbeddings`)."""
        return self.items(model_ids, self.item_features)

    def catalog_item_embeddings(self) -> torch.Tensor:
        """Embeddings ``(N, H)`` of every catalog item, in catalog id order."""
        return self.items.catalog(self.item_features)

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
        ids, feedback, gaps, statistics = check_history(
            self.config,
            self.item_features,
            history_item_ids,
            history_feedback,
            history_gaps,
            history_profile,
        )
        target_gaps = check_target(
            self.config, target_gaps, "target_gaps", ids.shape[0], low=0,
            high=self.config.num_gap_buckets,
        )  # fmt: skip
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
        (model ids) with feedback ``(B, L, feedback_size)``, *all* ``L`` tokens counted,
        with the model's item features and ``config.profile_decays``
        (`loe_gym.predictor.profile.history_profile`; profiles compose with
        ``previous_profile``)."""
        return history_profile(
            self.item_features,
            self.config.profile_decays,
            history_item_ids,
            history_feedback,
            previous_profile,
        )

    @staticmethod
    def profile_statistics(profile: torch.Tensor) -> torch.Tensor:
        """Statistics ``(…, 2K − 1)`` of profiles ``(…, K)``
        (`loe_gym.predictor.profile.profile_statistics`)."""
        return profile_statistics(profile)

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
        items = self.items(item_ids, self.item_features)
        profile = None
        if self.profile is not None:
            assert profile_statistics is not None
            profile = self.profile.query(profile_statistics, items)
        embeddings = self.embeddings(item_ids, items, history_feedback, gaps, profile)
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
        candidate heads for candidates ``(B,)`` or ``(B, C)`` (model ids)."""
        items = self.items(candidate_item_ids, self.item_features)
        crossed = wide = None
        if self.profile is not None:
            assert encoded.profile_statistics is not None
            features = self.item_features[candidate_item_ids - NUM_SPECIAL_IDS]
            crossed, wide = self.profile.candidate(encoded.profile_statistics, features, items)
        outputs = self.heads(
            encoded.user_state, items, crossed, encoded.history_outputs, encoded.history_mask
        )
        return outputs if wide is None else outputs + wide

    def score_candidates(
        self, encoded: EncodedHistory, candidate_item_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Score ``C`` candidates per user in one pass of the candidate heads.

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
                f"{describe(encoded)}."
            )
        candidates = check_ids(
            self.config, candidate_item_ids, "candidate_item_ids", ndim=2, low=NUM_SPECIAL_IDS
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
                only, see `batches.TargetBatches`); ``None`` → all rows.
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
                users' *whole* histories (`history_profile`; `batches.TargetBatches` gives
                them). ``None`` → computed from the history given, before truncation.
                Ignored without ``config.long_term_profile``.
            inputs_embeds_noise: ``(B, L + 1, H)`` added to the token embeddings (the hook
                of adversarial training, FGM/PGD); ``L`` after truncation.
            return_dict: ``False`` returns ``PredictorOutput.to_tuple()``.

        Returns:
            `PredictorOutput`; ``loss`` is ``Σ w_i L_i`` over the tasks with labels
            (``Σ w_i (exp(−s_i) L_i + s_i)`` with ``loss_weighting="uncertainty"``).

        Over 80 lines for its documented arguments only: the work is in `_check_targets`,
        `_predict` and `task_losses`.
        """
        ids, feedback, gaps, statistics = check_history(
            self.config, self.item_features, history_item_ids, history_feedback, history_gaps,
            history_profile,
        )  # fmt: skip
        target_item_ids, target_gaps, masked_item_labels = self._check_targets(
            ids, history_item_ids, target_item_ids, target_gaps, masked_item_labels,
            inputs_embeds_noise,
        )  # fmt: skip
        fields = self._predict(
            ids, feedback, gaps, statistics, target_item_ids, target_gaps, inputs_embeds_noise,
            masked=masked_item_labels is not None,
        )  # fmt: skip
        losses = task_losses(
            self.config,
            PredictorOutput(**fields),
            ids.shape[0],
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
            fields["loss"] = weighted_loss(self.config, losses, self.log_variances)
        output = PredictorOutput(**fields)
        return output if return_dict else output.to_tuple()

    def _check_targets(
        self,
        ids: torch.Tensor,
        history_item_ids: torch.Tensor,
        target_item_ids: torch.Tensor | None,
        target_gaps: torch.Tensor | None,
        masked_item_labels: torch.Tensor | None,
        inputs_embeds_noise: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """`forward`'s target ids, target gaps and masked-item labels, checked (the labels
        truncated like the history ``ids (B, L)``), after checking the noise's shape."""
        batch_size, length = ids.shape
        target_item_ids = check_target(
            self.config, target_item_ids, "target_item_ids", batch_size, low=NUM_SPECIAL_IDS,
            high=None,
        )  # fmt: skip
        target_gaps = check_target(
            self.config, target_gaps, "target_gaps", batch_size, low=0,
            high=self.config.num_gap_buckets,
        )  # fmt: skip
        if masked_item_labels is not None:
            masked_item_labels = check_masked_item_labels(
                self.config, masked_item_labels, history_item_ids
            )
        if inputs_embeds_noise is not None:
            expected = (batch_size, length + 1, self.config.hidden_size)
            if tuple(inputs_embeds_noise.shape) != expected:
                raise ValueError(
                    f"inputs_embeds_noise must have the shape of output.embeddings, {expected} "
                    f"(history truncated to max_history_length, plus the query), got "
                    f"{tuple(inputs_embeds_noise.shape)}."
                )
        return target_item_ids, target_gaps, masked_item_labels

    def _predict(
        self,
        ids: torch.Tensor,
        feedback: torch.Tensor,
        gaps: torch.Tensor,
        statistics: torch.Tensor | None,
        target_item_ids: torch.Tensor | None,
        target_gaps: torch.Tensor | None,
        inputs_embeds_noise: torch.Tensor | None,
        *,
        masked: bool,
    ) -> dict[str, Any]:
        """`PredictorOutput`'s fields but the losses, of checked, truncated inputs."""
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
        if masked:
            fields["masked_item_logits"] = (
                sequence_output[:, :-1] @ catalog_items.T + self.masked_item_bias
            )
        return fields

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


# `exist_ok`: re-importing (e.g. after `importlib.reload`) must not fail.
AutoModel.register(PredictorConfig, PredictorModel, exist_ok=True)
