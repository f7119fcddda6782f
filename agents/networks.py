"""SB3 policies that score each candidate with one shared network.

A recommender's action picks among candidates whose order means nothing, so the policy
must not learn "slot 3 is good". Here one small MLP scores every candidate from its own
inputs (public features, the predictor's task scores) and the user's (predictor state,
visit context); the logits (PPO, A2C) or Q-values (DQN) of the candidates are those
scores, so permuting the candidates permutes the action distribution and nothing else.
The value head reads the user's inputs and the mean of the candidates' hidden vectors
(also order-free).

| class | for | SB3 name |
|---|---|---|
| `CandidateFeaturesExtractor` | ``features_extractor_class`` | — |
| `CandidateActorCriticPolicy` | PPO, A2C (and sb3-contrib's MaskablePPO) | ``policy=`` |
| `CandidateDQNPolicy` | DQN | ``policy=`` |
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from agents.ranking import SCORE_NAMES, reward_model_score

__all__ = [
    "CandidateActorCriticPolicy",
    "CandidateDQNPolicy",
    "CandidateFeaturesExtractor",
    "CandidateScorer",
]


def _shape(space: gym.spaces.Dict, key: str) -> tuple[int, ...]:
    return tuple(space.spaces[key].shape or ())


class CandidateFeaturesExtractor(BaseFeaturesExtractor):  # type: ignore[misc]
    """Flattens a ``Dict`` observation to ``(B, C·D + U)``: ``D`` inputs per candidate, then
    ``U`` inputs of the user.

    Per candidate: its public features and, with a predictor in the loop
    (`agents.predictor_env.PredictorObservations`), its 5 task scores (probabilities as
    they are, minutes as ``log1p``) and its item vector where the wrapper adds one
    (``candidate_item_vectors``); each both as it is and standardised over the user's
    candidates. Per user: ``log1p`` of the visit context, the simulator's ``user`` features
    where it has them (RecSim's), and, with a predictor, a learned projection of its user
    state to ``user_state_size`` dims.

    Without a predictor, the observed history stands in for its user state. From the
    window (``history_features``): per user, ``K = 4`` profiles of the window's items'
    features — weighted by shown, clicked, ``log1p`` watch minutes and completion, each
    ``(F,)`` — and ``log1p`` of the four weights' totals; per candidate, its dot product
    with each profile (how much it resembles what the user took to) and how often it was
    shown in the window. From the whole life (``history_profile``, the env's running
    means under the same four weights, watch in minutes): the same per-user and
    per-candidate inputs. Without these a network on the candidates alone cannot tell one
    user's taste from another's.

    ``prior_weights = (return_weight, continuation_weight)`` adds, with a predictor, one
    input per candidate: the reward model's score ``E[watch] + return_weight · P(return) +
    continuation_weight · P(continue)``, whose standardised column (``prior_column``) is
    then the ranking a policy starts from (`TrainConfig.prior_ranking`).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        user_state_size: int = 16,
        prior_weights: tuple[float, float] | None = None,
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Dict) or not {
            "candidate_features",
            "context",
        } <= set(observation_space.spaces):
            raise ValueError(
                "CandidateFeaturesExtractor needs the 'history' observation layout (keys "
                "candidate_features and context)."
            )
        c, f = _shape(observation_space, "candidate_features")
        keys = set(observation_space.spaces)
        self.has_scores = "candidate_scores" in keys
        self.has_state = "user_state" in keys
        # The predictor's state already summarises a longer history than the window.
        self.has_history = (
            not self.has_state
            and keys >= _HISTORY_KEYS
            and _shape(observation_space, "history_features")[0] > 0
        )
        self.has_profile = not self.has_state and "history_profile" in keys
        k = len(_PROFILE_WEIGHTS)
        raw = f + (_shape(observation_space, "candidate_scores")[1] if self.has_scores else 0)
        self.prior_weights = tuple(prior_weights) if prior_weights and self.has_scores else None
        raw += 1 if self.prior_weights else 0
        self.has_item_vectors = "candidate_item_vectors" in keys
        raw += (
            _shape(observation_space, "candidate_item_vectors")[1] if self.has_item_vectors else 0
        )
        raw += (k + 1 if self.has_history else 0) + (k if self.has_profile else 0)
        per_candidate = 2 * raw  # each input as it is and standardised within the user
        self.has_user = "user" in keys
        user = _shape(observation_space, "context")[0] + (user_state_size if self.has_state else 0)
        user += _shape(observation_space, "user")[0] if self.has_user else 0
        user += k * (f + 1) * (int(self.has_history) + int(self.has_profile))
        super().__init__(observation_space, c * per_candidate + user)
        self.num_candidates, self.candidate_size, self.user_size = c, per_candidate, user
        # Column of the standardised ranking a policy can start from (the standardised
        # copies follow the ``raw`` inputs, whose scores follow the ``f`` features):
        # log1p(predicted watch now), the myopic ranking, or with ``prior_weights`` the
        # reward model's score, the input right after the scores.
        self.prior_column = None
        if self.has_scores:
            offset = len(SCORE_NAMES) if self.prior_weights else SCORE_NAMES.index("watch_time")
            self.prior_column = raw + f + offset
        if self.has_state:
            hidden = _shape(observation_space, "user_state")[0]
            self.state_projection = nn.Sequential(
                nn.LayerNorm(hidden), nn.Linear(hidden, user_state_size), nn.Tanh()
            )

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        candidates = [observations["candidate_features"]]
        if self.has_scores:
            scores = observations["candidate_scores"]
            # Minutes (columns 1, 2) on a log scale; probabilities as they are.
            minutes = torch.log1p(scores[..., 1:3].clamp_min(0))
            candidates.append(torch.cat([scores[..., :1], minutes, scores[..., 3:]], -1))
            if self.prior_weights:
                candidates.append(reward_model_score(scores, *self.prior_weights)[..., None])
        if self.has_item_vectors:
            candidates.append(observations["candidate_item_vectors"])
        user = [torch.log1p(observations["context"].clamp_min(0))]
        if self.has_state:
            user.append(self.state_projection(observations["user_state"]))
        if self.has_user:
            user.append(observations["user"])
        if self.has_history:
            interactions, profile = self._history(observations)
            candidates.append(interactions)
            user.append(profile)
        if self.has_profile:
            life = observations["history_profile"]  # (B, K, F + 1)
            means, totals = life[..., :-1], life[..., -1]
            candidates.append(torch.einsum("bcf,bkf->bck", candidates[0], means))
            user.append(torch.cat([means.flatten(1), torch.log1p(totals.clamp_min(0))], -1))
        inputs = torch.cat(candidates, -1)
        # Within-user z-scores: what matters is how a candidate compares with the others, and
        # small absolute spreads (a return probability differing by 0.05) become visible.
        # (Tensor.std over the candidate axis is several times slower than this on CPU.)
        centred = inputs - inputs.mean(1, keepdim=True)
        spread = (centred.square().sum(1, keepdim=True) / max(inputs.shape[1] - 1, 1)).sqrt()
        standardised = centred / (spread + 1e-3)
        per_candidate = torch.cat([inputs, standardised], -1).flatten(1)
        return torch.cat([per_candidate, *user], -1)

    @staticmethod
    def _history(observations: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-candidate ``(B, C, K + 1)`` and per-user ``(B, K·F + K)`` history inputs."""
        items, features = observations["history_item_ids"], observations["history_features"]
        feedback = observations["history_feedback"]
        shown = (items >= 0).to(features.dtype)  # (B, H)
        weights = (
            torch.stack(  # (B, H, K), in _PROFILE_WEIGHTS' order
                [
                    shown,
                    feedback[..., 0],
                    torch.log1p(feedback[..., 1].clamp_min(0)),
                    feedback[..., 2],
                ],
                -1,
            )
            * shown[..., None]
        )
        totals = weights.sum(1)  # (B, K)
        profiles = torch.einsum("bhk,bhf->bkf", weights, features) / (totals[..., None] + 1e-6)
        candidates = observations["candidate_features"]  # (B, C, F)
        resemblance = torch.einsum("bcf,bkf->bck", candidates, profiles)
        # SB3 hands ids over as floats; equal ids stay equal.
        repeats = (observations["candidate_ids"][:, :, None] == items[:, None, :]).sum(-1)
        per_candidate = torch.cat([resemblance, repeats[..., None].to(features.dtype)], -1)
        return per_candidate, torch.cat([profiles.flatten(1), torch.log1p(totals)], -1)


_HISTORY_KEYS = {"candidate_ids", "history_item_ids", "history_features", "history_feedback"}
_PROFILE_WEIGHTS = ("shown", "clicked", "log1p_watch_minutes", "completion")
"""How the history profiles of `CandidateFeaturesExtractor` weigh the history rows."""


class CandidateScorer(nn.Module):
    """SB3's ``mlp_extractor`` for candidate scoring: ``forward_actor`` gives one logit per
    candidate (tiled ``slate_size`` times for ``MultiDiscrete`` slates), ``forward_critic``
    a latent vector for the value head.

    Args:
        num_candidates, candidate_size, user_size: the extractor's layout.
        hidden_sizes: widths of the shared per-candidate MLP.
        slate_size: positions of a ``MultiDiscrete`` slate action (1 for ``Discrete``).
        prior_column: per-candidate input (standardised within the user's candidates) added
            to the logits with a learned scale starting at ``prior_scale``: the policy starts
            near the ranking by that column (the predicted watch, or the reward model's
            score) and learns the long-term correction, instead of starting from uniform.
    """

    def __init__(
        self,
        num_candidates: int,
        candidate_size: int,
        user_size: int,
        hidden_sizes: tuple[int, ...] = (64, 64),
        slate_size: int = 1,
        prior_column: int | None = None,
        prior_scale: float = 0.0,
        own_critic: bool = False,
    ) -> None:
        super().__init__()
        self.prior_column = prior_column
        self.prior_scale = nn.Parameter(torch.tensor(float(prior_scale)))
        self.num_candidates, self.candidate_size = num_candidates, candidate_size
        self.slate_size = slate_size
        layers: list[nn.Module] = []
        width = candidate_size + user_size
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.Tanh()]
            width = size
        self.candidate_net = nn.Sequential(*layers)
        self.logit = nn.Linear(width, 1)
        # The own critic reads the user's inputs and the candidates' mean inputs through a
        # trunk of its own: the value of a long life (hundreds of minutes) then trains no
        # weight that the candidates' scores use.
        self.own_critic = own_critic
        critic_in = candidate_size + user_size if own_critic else width + user_size
        critic: list[nn.Module] = [nn.Linear(critic_in, 64), nn.Tanh()]
        if own_critic:
            critic += [nn.Linear(64, 64), nn.Tanh()]
        self.critic_net = nn.Sequential(*critic)
        self.latent_dim_pi = num_candidates * slate_size
        self.latent_dim_vf = 64

    def _split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-candidate inputs ``(B, C, D)``, hidden vectors ``(B, C, W)`` and user inputs
        ``(B, U)``."""
        c, d = self.num_candidates, self.candidate_size
        candidates = features[:, : c * d].reshape(-1, c, d)
        user = features[:, c * d :]
        # The first layer on [candidate, user] is W_c·candidate + (W_u·user + b): the user's
        # part once per user instead of once per candidate, and no tiled copy of the user's
        # inputs in every PPO minibatch (the same weights as one Linear, so saved agents load).
        first: nn.Linear = self.candidate_net[0]  # type: ignore[assignment]
        per_user = nn.functional.linear(user, first.weight[:, d:], first.bias)
        hidden = torch.matmul(candidates, first.weight[:, :d].T) + per_user[:, None, :]
        return candidates, self.candidate_net[1:](hidden), user

    def _actor(self, candidates: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.logit(hidden).squeeze(-1)  # (B, C)
        if self.prior_column is not None:
            logits = logits + self.prior_scale * candidates[..., self.prior_column]
        return logits.repeat(1, self.slate_size) if self.slate_size > 1 else logits

    def _critic(
        self, candidates: torch.Tensor, hidden: torch.Tensor, user: torch.Tensor
    ) -> torch.Tensor:
        pooled = candidates.mean(1) if self.own_critic else hidden.mean(1)
        return self.critic_net(torch.cat([pooled, user], -1))

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        candidates, hidden, _ = self._split(features)
        return self._actor(candidates, hidden)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        candidates, hidden, user = self._split(features)
        return self._critic(candidates, hidden, user)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # One pass of the per-candidate MLP serves both heads (SB3 calls this in rollouts
        # and in every PPO minibatch; the MLP is most of the update's cost).
        candidates, hidden, user = self._split(features)
        return self._actor(candidates, hidden), self._critic(candidates, hidden, user)


def _scorer(
    extractor: CandidateFeaturesExtractor,
    action_space: gym.Space[Any],
    hidden: tuple[int, ...],
    prior_scale: float = 0.0,
    own_critic: bool = False,
) -> CandidateScorer:
    c = extractor.num_candidates
    if isinstance(action_space, gym.spaces.Discrete) and int(action_space.n) == c:
        slate = 1
    elif isinstance(action_space, gym.spaces.MultiDiscrete) and np.all(action_space.nvec == c):
        slate = int(action_space.nvec.size)
    else:
        raise ValueError(
            f"Candidate-scoring policies choose among the {c} candidates (Discrete({c}) or "
            f"MultiDiscrete([{c}] * slate_size)); got action space {action_space}. For a "
            "fusion-weight Box action use SAC or TD3 with MultiInputPolicy."
        )
    return CandidateScorer(
        c,
        extractor.candidate_size,
        extractor.user_size,
        hidden,
        slate,
        prior_column=extractor.prior_column if prior_scale else None,
        prior_scale=prior_scale,
        own_critic=own_critic,
    )


class CandidateActorCriticPolicy(ActorCriticPolicy):  # type: ignore[misc]
    """PPO / A2C policy over candidates (see the module docstring).

    ``net_arch`` (a tuple of widths, default ``(64, 64)``) sizes the per-candidate MLP;
    ``myopic_prior`` > 0 starts the policy near the ranking by the predictor's expected
    watch now, or by the reward model's score with ``features_extractor_kwargs``'
    ``prior_weights`` (see `CandidateScorer`; needs the predictor's scores in the
    observation).
    """

    def __init__(
        self,
        *args: Any,
        net_arch: tuple[int, ...] = (64, 64),
        myopic_prior: float = 0.0,
        own_critic: bool = False,
        **kwargs: Any,
    ) -> None:
        self.candidate_net_arch = tuple(net_arch)
        self.myopic_prior = float(myopic_prior)
        self.own_critic = bool(own_critic)
        kwargs.setdefault("features_extractor_class", CandidateFeaturesExtractor)
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "net_arch": self.candidate_net_arch,
            "myopic_prior": self.myopic_prior,
            "own_critic": self.own_critic,
        }

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = _scorer(  # type: ignore[assignment]
            self.features_extractor,  # type: ignore[arg-type]
            self.action_space,
            self.candidate_net_arch,
            self.myopic_prior,
            self.own_critic,
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # The scorer's per-candidate outputs are the logits already; start them small (SB3
        # gives its action_net a gain of 0.01) so the first policy is near uniform (+ prior).
        self.action_net = nn.Identity()
        if self.ortho_init:
            self.init_weights(self.mlp_extractor.logit, gain=0.01)  # type: ignore[arg-type]
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )


class _CandidateQNetwork(QNetwork):  # type: ignore[misc]
    def __init__(self, *args: Any, candidate_net_arch: tuple[int, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scorer = _scorer(
            self.features_extractor,  # type: ignore[arg-type]
            self.action_space,
            candidate_net_arch,
        )
        if scorer.slate_size != 1:
            raise ValueError("DQN chooses one item (Discrete); use PPO or A2C for slates.")
        self.q_net = _ActorOnly(scorer)  # type: ignore[assignment]


class _ActorOnly(nn.Module):
    def __init__(self, scorer: CandidateScorer) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scorer.forward_actor(features)


class CandidateDQNPolicy(DQNPolicy):  # type: ignore[misc]
    """DQN policy whose Q-value of each candidate comes from one shared network."""

    def __init__(self, *args: Any, net_arch: tuple[int, ...] = (64, 64), **kwargs: Any) -> None:
        self.candidate_net_arch = tuple(net_arch)
        kwargs.setdefault("features_extractor_class", CandidateFeaturesExtractor)
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "net_arch": self.candidate_net_arch}

    def make_q_net(self) -> QNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return _CandidateQNetwork(**net_args, candidate_net_arch=self.candidate_net_arch).to(
            self.device
        )
