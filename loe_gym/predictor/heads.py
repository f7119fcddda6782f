"""The candidate heads: click, watch time, continuation and return of a candidate item.

One MLP (the *trunk*) scores a candidate ``c`` for a user state ``h`` from
``[h, e_c, h ⊙ e_c]`` (plus the long-term profile crossed with the candidate's features,
and target attention), and one linear layer gives the four outputs: the click logit,
log1p(watch minutes) given a click, the session-continuation logit and the next-day-return
logit. The tasks share the trunk: the return label is sparse and slow, and learns from the
representation the click and continuation labels shape.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from loe_gym.predictor.configuration_predictor import PredictorConfig

__all__ = ["CANDIDATE_OUTPUTS", "CandidateHeads", "TargetAttention"]

CANDIDATE_OUTPUTS = ("click", "watch_time", "continuation", "return")
"""The columns of `CandidateHeads`' output, in order."""


class TargetAttention(nn.Module):
    """DIN-style attention (Zhou et al. 2018) from each candidate to the history outputs.

    ``items (B, H)`` or ``(B, C, H)``, ``history_outputs (B, L, H)``, ``history_mask (B, L)``
    → the pooled history ``(B, H)`` or ``(B, C, H)``: the heads see the user's behaviour on
    similar items directly. A user without history attends to nothing (zeros).
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.target_query = nn.Linear(hidden, hidden, bias=False)

    def forward(
        self, items: torch.Tensor, history_outputs: torch.Tensor, history_mask: torch.Tensor
    ) -> torch.Tensor:
        query = self.target_query(items)
        flat = query if query.ndim == 3 else query.unsqueeze(1)  # (B, C, H)
        scores = flat @ history_outputs.transpose(1, 2) / math.sqrt(flat.shape[-1])
        scores = scores.masked_fill(~history_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        pooled = torch.softmax(scores, dim=-1) @ history_outputs
        # A user without history attends to nothing.
        pooled = pooled * history_mask.any(dim=1).to(pooled)[:, None, None]
        return pooled if query.ndim == 3 else pooled.squeeze(1)


class CandidateHeads(nn.Module):
    """Outputs ``(B, 4)`` or ``(B, C, 4)`` (`CANDIDATE_OUTPUTS`) of candidates.

    Inputs: the user states ``(B, H)``, the candidates' item vectors ``(B, H)`` or
    ``(B, C, H)``, the profile crossed with the candidates (`LongTermProfile.candidate`,
    shaped like the item vectors; ``None`` without a profile), and for target attention the
    history outputs ``(B, L, H)`` and mask ``(B, L)``.
    """

    def __init__(self, config: PredictorConfig, *, with_profile: bool) -> None:
        super().__init__()
        hidden = config.hidden_size
        # Built before the trunk, as the parameters were always created in this order
        # (the seed then gives the same weights).
        self.target_attention = TargetAttention(hidden) if config.target_attention else None
        parts = 3 + (2 if config.target_attention else 0) + (1 if with_profile else 0)
        self.candidate_trunk = nn.Sequential(
            nn.Linear(parts * hidden, hidden),
            nn.GELU(),
            nn.Dropout(config.hidden_dropout_prob),
            nn.Linear(hidden, hidden),
            nn.GELU(),
        )
        # One output column per candidate task: click, watch time, continuation, return.
        self.candidate_output = nn.Linear(hidden, len(CANDIDATE_OUTPUTS))

    def forward(
        self,
        user_state: torch.Tensor,
        items: torch.Tensor,
        crossed_profile: torch.Tensor | None,
        history_outputs: torch.Tensor,
        history_mask: torch.Tensor,
    ) -> torch.Tensor:
        if items.ndim == 3:
            user_state = user_state.unsqueeze(1).expand_as(items)
        parts = [user_state, items, user_state * items]
        if crossed_profile is not None:
            parts.append(crossed_profile)
        if self.target_attention is not None:
            pooled = self.target_attention(items, history_outputs, history_mask)
            parts += [pooled, pooled * items]
        return self.candidate_output(self.candidate_trunk(torch.cat(parts, dim=-1)))
