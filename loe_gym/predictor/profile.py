"""The long-term profile: per-feature statistics of a user's whole history, however long.

Per time scale and public item feature, decayed sums of the feature times (1, feedback)
over every row (`history_profile`); their statistics (`profile_statistics`) enter the
query token (so the user state sees them) and, multiplied by the candidate's own
features, the candidate heads (`LongTermProfile`). For a one-hot topic feature that is the
user's exposure count, click rate and completion on the candidate's topic over their whole
life (decay 1) and recently (decay < 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.embeddings import NUM_SPECIAL_IDS, PAD_ID

__all__ = ["LongTermProfile", "history_profile", "profile_statistics", "profile_width"]


def history_profile(
    item_features: torch.Tensor,
    decays: Sequence[float],
    history_item_ids: torch.Tensor,
    history_feedback: torch.Tensor,
    previous_profile: torch.Tensor | None = None,
) -> torch.Tensor:
    """Long-term profiles ``(B, T, F + 1, 1 + feedback_size)`` of histories ``(B, L)``
    (model ids) with feedback ``(B, L, feedback_size)``, *all* ``L`` tokens counted.

    ``profile[b, s, f] = Σ_t λ_s^(rows after t) · x_f(item_t) · (1, feedback_t)`` over the
    item tokens of history ``b``, for each decay ``λ_s`` of ``decays``; ``x`` is the item's
    row of ``item_features (N, F)`` with a constant 1 appended (its row holds the plain
    counts). Padding counts nothing; a ``[MASK]`` token is a row (it ages the rows before
    it) whose item and feedback are unknown.

    Profiles compose: with ``previous_profile`` (the profile of the rows before these), the
    result is the profile of the whole, so an agent can keep one per user and update it
    with each new row.
    """
    is_row = history_item_ids != PAD_ID
    is_item = (history_item_ids >= NUM_SPECIAL_IDS).unsqueeze(-1)
    features = item_features[(history_item_ids - NUM_SPECIAL_IDS).clamp_min(0)]
    features = torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)
    features = torch.where(is_item, features, torch.zeros_like(features))
    feedback = torch.where(is_item, history_feedback.to(features), torch.zeros(()).to(features))
    values = torch.cat([torch.ones_like(feedback[..., :1]), feedback], dim=-1)
    # Rows after each token (B, L), and each time scale's weight λ^age (B, T, L).
    rows = is_row.to(torch.float64)
    later = rows.flip(-1).cumsum(-1).flip(-1) - rows
    decay = torch.tensor(list(decays), dtype=torch.float64, device=later.device)
    weights = (decay[None, :, None] ** later[:, None, :]).to(features)
    profile = torch.einsum("btl,blf,blk->btfk", weights, features, values)
    if previous_profile is not None:
        aged = decay[None, :] ** rows.sum(-1, keepdim=True)  # (B, T)
        profile = profile + previous_profile.to(profile) * aged.to(profile)[..., None, None]
    return profile


def _symlog(values: torch.Tensor) -> torch.Tensor:
    return torch.sign(values) * torch.log1p(values.abs())


def profile_statistics(profile: torch.Tensor) -> torch.Tensor:
    """Statistics ``(…, 2K − 1)`` of profiles ``(…, K)``: per time scale and feature, the
    (sign-preserving) log of the exposure sum and of each feedback sum, and each feedback
    sum per exposure (for a one-hot topic: counts, click rate, completion)."""
    exposures, sums = profile[..., :1], profile[..., 1:]
    return torch.cat([_symlog(exposures), _symlog(sums), sums / (exposures.abs() + 1.0)], -1)


def profile_width(config: PredictorConfig) -> int:
    """Statistics of one user's profile, ``T · (F + 1) · (2K − 1)``; 0 without a profile."""
    if not config.long_term_profile:
        return 0
    scales, features, sums = config.profile_shape
    return scales * features * (2 * sums - 1)


def _normalised_projection(width: int, hidden: int) -> nn.Sequential:
    # The statistics mix counts, rates and logs of very different scales: each input is
    # normalised first, or a few large counts swamp the token and slow learning.
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))


class LongTermProfile(nn.Module):
    """The learned layers of the profile: into the query token, and crossed with each
    candidate's features into the candidate heads.

    ``statistics`` below are `profile_statistics` of `history_profile`, ``(B, T, F + 1, S)``
    with ``S = 1 + 2·feedback_size``.
    """

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        width, hidden = profile_width(config), config.hidden_size
        self.profile_projection = _normalised_projection(width, hidden)
        self.profile_cross_projection = _normalised_projection(width, hidden)
        # A linear ("wide", Cheng et al. 2016) path from the crossed statistics to the
        # outputs: sparse long-term labels (next-day return) are nearly linear in them and
        # are learnt far sooner this way than through the trunk alone.
        self.profile_wide = nn.Linear(width, 4)

    def query(self, statistics: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The query token's profile vector ``(B, H)``, of the dtype and device of ``like``."""
        return self.profile_projection(statistics.flatten(1).to(like))

    def candidate(
        self, statistics: torch.Tensor, features: torch.Tensor, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(crossed (…, H), wide (…, 4))`` for candidates with public features
        ``features`` ``(B, F)`` or ``(B, C, F)``: the user's statistics on each feature the
        candidate has, projected for the candidate trunk (in the dtype and device of
        ``like``), and their wide path to the four candidate outputs."""
        features = torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)
        if features.ndim == 3:
            statistics = statistics.unsqueeze(1)
        # (…, T, F + 1, S): the user's statistics on each feature the candidate has.
        crossed = features[..., None, :, None] * statistics.to(features)
        # The two layers are called one by one: the wide path reads the normalised input.
        normalised = self.profile_cross_projection[0](crossed.flatten(-3).to(like))
        return self.profile_cross_projection[1](normalised), self.profile_wide(normalised)
