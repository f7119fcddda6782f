"""RecSim's interest-evolution users (``loe_gym/InterestEvolution-v0``), batched.

A faithful numpy port of the model that RecSim 0.2.4's
``recsim.environments.interest_evolution.create_environment`` wires together:
``UtilityModelVideoSampler`` (documents), ``UtilityModelUserSampler`` (users),
``IEvUserModel`` (response and transition) with ``MultinomialProportionalChoiceModel``.
Same equations, same defaults, same observations; only the plumbing differs (one
batch of users in arrays instead of one Python object per user, an explicit
``np.random.Generator`` instead of numpy's global RNG, a fixed catalog with stable ids).

Videos belong to one of ``K = num_clusters`` clusters. Cluster means of the video
*quality* rise linearly from ``min_utility`` ("trashy" clusters, the first ⌊0.7·K⌋) to
``max_utility`` ("nutritious" clusters, the rest). A user has an interest vector
``θ ∈ [−1, 1]^K`` and a session time budget ``b``. Watching good videos gives time back,
watching trash costs time, and the session ends when the budget runs out, so a policy
that only chases the likely click (high interest) loses to one that also serves quality.

Model, for a user ``u`` and video ``j`` of cluster ``k_j`` (``x_j`` its one-hot features)::

    video        k_j ~ Uniform{0, …, K−1};  x_j = onehot(k_j);  ℓ_j = video_length
                 q_j ~ N(μ_{k_j}, quality_std²),  μ = concat(linspace(min_utility, 0, ⌊0.7K⌋),
                                                            linspace(0, max_utility, K − ⌊0.7K⌋))
    user         θ ~ Uniform[−1, 1]^K;  b = time_budget
    score        s_j = θ · x_j = θ_{k_j}
    choice       one pick among the slate and "no click", with probabilities proportional to
                 (s_j − min_normalizer) for each slate item and (no_click_mass − min_normalizer)
                 for no click.  Alone in a slate: P(click) = (θ_k + 1) / (θ_k + 3) by default.
    response     clicked item: watch time w = min(b, ℓ_j);  every slate item reports its
                 quality q_j and cluster k_j;  ``liked`` is always 0 (RecSim never sets it).
    interests    on a click, only θ_k (k = k_j) moves:
                 α = alpha_y_intercept − (alpha_y_intercept / alpha_x_intercept)·|θ_k|
                 Δ = α·(1 − θ_k);  θ_k ← clip(θ_k + Δ, −1, 1) with probability (θ_k + 1)/2,
                                   θ_k ← clip(θ_k − Δ, −1, 1) otherwise
    budget       click:    b ← b − w + user_update_alpha·w·u_j, where the received utility is
                           u_j = user_quality_factor·(s_j − min_normalizer)
                                 + document_quality_factor·q_j
                 no click: b ← b − step_penalty
    end          the episode ends when b ≤ 0 (RecSim's ``done``)

Defaults (RecSim's): K = 20, min/max utility −3/3, quality std 0.1, video length 4 minutes,
budget 200 minutes, step penalty 0.5, no-click mass 1, min normalizer −1, user quality
factor 0, document quality factor 1, user update alpha 0.9/3.4 ≈ 0.265, alpha intercepts
x = 1 and y = 0.3. So a click on a video of quality q costs 4·(1 − 0.265·q) minutes: from
about 7.2 (q = −3) to 0.8 (q = 3) minutes, and an ignored slate costs 0.5.

RecSim → loe_gym mapping:

- documents: RecSim draws ``num_candidates`` fresh videos every step
  (``resample_documents=True``). Here ``num_items`` videos (default 10 000) are drawn once,
  i.i.d. from the same sampler, with ``catalog_seed``; the environment draws the candidates
  uniformly from that catalog every step, which matches RecSim's resampling in distribution.
  ``Catalog.features`` is RecSim's document observation (the K-dim one-hot cluster vector);
  quality, video length and cluster id are in ``Catalog.hidden``; ``Catalog.topics`` is the
  cluster id.
- observation: ``user`` is ``user_features(state)``, the true interest vector θ (RecSim's
  ``IEvUserState.create_observation``); ``doc`` the candidates' one-hot features;
  ``response`` per slate position ``[clicked, watch_time, liked, quality, cluster_id]``
  (RecSim's ``IEvResponse.create_observation``; ``response_extras`` is
  ``("liked", "quality", "cluster_id")``).
- reward: ``Responses.watch_time`` summed over the slate is RecSim's
  ``clicked_watchtime_reward``; ``Responses.completion`` is w / ℓ_j. RecSim bounds its
  ``watch_time`` response space by 100 minutes (``watch_time_observation_limit``), which
  4-minute videos never reach.
- episode: RecSim models one session. The step where the budget runs out has
  ``session_end = churned = True`` (``gap_days = 0``), so the environment's ``terminated``
  is RecSim's ``done``; there is no return visit.

Fixes of RecSim's known defects:

1. Global, unseeded RNG: RecSim samples the choice (``NormalizableChoiceModel.choose_item``)
   and the interest update (``IEvUserModel.update_state``) from numpy's global RNG, and
   ``RecSimGymEnv.seed`` reseeds only that global RNG, not the user and document samplers.
   Here all randomness flows through the ``rng`` argument and the catalog through
   ``catalog_seed``: same seeds, same rollouts.
2. Document keys change on resample: RecSim's document observation is a dict keyed by a
   running document counter, so keys (and the observation space) change every step. Here
   items have stable integer ids and candidate features are fixed-shape arrays.
3. Duplicate items in a slate: RecSim accepts them silently; the environment rejects them.
4. Short cluster-mean table: RecSim sizes the trashy and nutritious parts as ⌊0.7K⌋ and
   ⌊0.3K⌋, which for some K (e.g. 3) leaves fewer than K means and fails on the last
   clusters. Fixed: the nutritious part has K − ⌊0.7K⌋ means (identical for K = 20).

RecSim behaviours kept for faithfulness (documented, not bugs that break reproducibility):

- ``liked`` is never set by RecSim's response model, so it is always 0.
- the quality and cluster of *every* shown video is in the response, clicked or not (the
  response leaks the hidden quality of shown items, exactly as in RecSim).
- ``quality_variance = 0.1`` in RecSim is passed to the normal sampler as its standard
  deviation, so the quality std is 0.1 (variance 0.01); the field is named ``quality_std``.
- ``min_normalizer`` is subtracted from the no-click mass as well, so the effective no-click
  weight is 1 − (−1) = 2, not 1.
- ``IEvResponse``'s docstring calls ``watch_time`` a fraction of the video; it is minutes.

Out-of-episode guard: RecSim never steps a user whose budget is spent. Stepped anyway
(budget ≤ 0), this port reports a watch time of 0 instead of RecSim's negative
``min(b, ℓ)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loe_gym.catalog import Catalog
from loe_gym.config import FrozenConfig
from loe_gym.simulator import Responses
from loe_gym.types import FloatArray, Generator, IntArray

TRASHY_CLUSTER_FRACTION = 0.7
"""Share of clusters whose quality means lie in [min_utility, 0] (hard-coded in RecSim)."""

MAX_VIDEO_LENGTH = 100.0
"""Upper bound of RecSim's ``watch_time`` response space (``IEvVideo.MAX_VIDEO_LENGTH``)."""


@dataclass(frozen=True)
class InterestEvolutionConfig(FrozenConfig):
    """Parameters of RecSim's interest-evolution model (defaults: RecSim 0.2.4's)."""

    num_items: int = 10_000
    """Catalog size; RecSim resamples candidates every step, we draw them from this catalog."""
    catalog_seed: int = 0
    """Seed of the catalog draw."""
    num_clusters: int = 20
    """Number of video clusters K = size of the document and user vectors (RecSim's
    ``IEvVideo.NUM_FEATURES`` and ``IEvUserState.NUM_FEATURES``)."""
    min_utility: float = -3.0
    """Quality mean of cluster 0, the trashiest."""
    max_utility: float = 3.0
    """Quality mean of cluster K − 1, the most nutritious."""
    quality_std: float = 0.1
    """Std of a video's quality around its cluster mean (RecSim's ``quality_variance``)."""
    video_length: float = 4.0
    """Length of every video in minutes."""
    time_budget: float = 200.0
    """Minutes of session budget a new user starts with."""
    step_penalty: float = 0.5
    """Budget lost on a step without a click."""
    no_click_mass: float = 1.0
    """Score of the no-click option in the choice model (before normalisation)."""
    min_normalizer: float = -1.0
    """Subtracted from all scores (no-click included) to make them non-negative."""
    user_quality_factor: float = 0.0
    """Weight of the user's own score in the utility that refunds budget."""
    document_quality_factor: float = 1.0
    """Weight of the video's quality in the utility that refunds budget."""
    user_update_alpha: float = 0.9 / 3.4
    """Budget refunded per watched minute and unit of utility (0.9 of the video, with
    quality normalised by 3.4)."""
    alpha_x_intercept: float = 1.0
    """|θ_k| at which the interest step size reaches 0."""
    alpha_y_intercept: float = 0.3
    """Interest step size at θ_k = 0."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_positive(
            "num_items", "num_clusters", "video_length", "time_budget", "alpha_x_intercept"
        )
        self._check_nonnegative(
            "catalog_seed", "quality_std", "step_penalty", "alpha_y_intercept",
            "user_update_alpha",
        )  # fmt: skip
        if self.min_normalizer > -1.0:
            raise ValueError(
                "InterestEvolutionConfig.min_normalizer must be ≤ −1 so that every score "
                f"θ_k − min_normalizer (θ_k ∈ [−1, 1]) is non-negative, got {self.min_normalizer}."
            )
        if self.no_click_mass - self.min_normalizer <= 0.0:
            raise ValueError(
                "InterestEvolutionConfig.no_click_mass − min_normalizer must be > 0 (the "
                f"no-click weight), got {self.no_click_mass} − ({self.min_normalizer})."
            )


@dataclass(frozen=True)
class InterestEvolutionState:
    """State of a batch of users (hidden from the agent, except ``interests``).

    Attributes:
        interests: ``(num_users, num_clusters) float`` θ in [−1, 1].
        budget: ``(num_users,) float`` minutes left in the session.
    """

    interests: FloatArray
    budget: FloatArray


def cluster_quality_means(config: InterestEvolutionConfig) -> FloatArray:
    """``(num_clusters,)`` quality mean of each cluster, trashy first, nutritious last."""
    k = config.num_clusters
    num_trashy = int(k * TRASHY_CLUSTER_FRACTION)
    trashy = np.linspace(config.min_utility, 0.0, num_trashy)
    nutritious = np.linspace(0.0, config.max_utility, k - num_trashy)
    return np.concatenate([trashy, nutritious])


def make_interest_evolution_catalog(config: InterestEvolutionConfig) -> Catalog:
    """Draw ``config.num_items`` videos i.i.d. from RecSim's ``UtilityModelVideoSampler``."""
    rng = np.random.default_rng(config.catalog_seed)
    m, k = config.num_items, config.num_clusters
    clusters = rng.integers(0, k, m)
    quality = rng.normal(cluster_quality_means(config)[clusters], config.quality_std)
    return Catalog(
        features=np.eye(k, dtype=np.float32)[clusters],
        feature_names=tuple(f"cluster_{i}" for i in range(k)),
        hidden={
            "quality": quality,
            "video_length": np.full(m, config.video_length),
            "cluster_id": clusters,
        },
        topics=clusters,
    )


class InterestEvolutionUsers:
    """Batched users of RecSim's interest-evolution model.

    Args:
        config: an `InterestEvolutionConfig`; keyword overrides may be given instead
            (``InterestEvolutionUsers(num_items=500)``) and are validated the same way.

    Examples:
        >>> import numpy as np
        >>> sim = InterestEvolutionUsers(num_items=50)
        >>> rng = np.random.default_rng(0)
        >>> state = sim.reset(3, rng)
        >>> responses = sim.respond(state, np.array([[0, 1], [2, 3], [4, 5]]), rng)
        >>> responses.clicked.shape, sorted(responses.extras)
        ((3, 2), ['cluster_id', 'liked', 'quality'])
        >>> sim.user_features(state).shape
        (3, 20)
    """

    response_extras: tuple[str, ...] = ("liked", "quality", "cluster_id")
    user_feature_size: int = 20
    """``num_clusters``: the observable user vector is the interest vector θ."""
    watch_time_observation_limit: float = MAX_VIDEO_LENGTH
    """Upper bound of RecSim's ``watch_time`` response space."""

    def __init__(self, config: InterestEvolutionConfig | None = None, **overrides: object) -> None:
        base = config if config is not None else InterestEvolutionConfig()
        self.config = base.replace(**overrides) if overrides else base
        self.catalog = make_interest_evolution_catalog(self.config)
        self.user_feature_size = self.config.num_clusters
        c = self.config
        hidden = self.catalog.hidden
        self._cluster = np.asarray(hidden["cluster_id"])
        self._cluster_as_float = self._cluster.astype(np.float64)
        self._quality = np.asarray(hidden["quality"])
        self._video_length = np.asarray(hidden["video_length"])
        self._no_click_weight = c.no_click_mass - c.min_normalizer
        # Budget change per watched minute is  rate_j + interest_rate·θ_k: the item part
        # (−1, the quality refund and the normaliser) is folded once per item.
        self._budget_rate = -1.0 + c.user_update_alpha * (
            c.document_quality_factor * self._quality - c.user_quality_factor * c.min_normalizer
        )
        self._budget_interest_rate = c.user_update_alpha * c.user_quality_factor
        self._alpha_slope = c.alpha_y_intercept / c.alpha_x_intercept

    def __repr__(self) -> str:
        return (
            f"InterestEvolutionUsers(num_items={self.config.num_items}, "
            f"num_clusters={self.config.num_clusters})"
        )

    # --- the contract ---------------------------------------------------------

    def reset(self, num_users: int, rng: Generator) -> InterestEvolutionState:
        c = self.config
        return InterestEvolutionState(
            interests=rng.uniform(-1.0, 1.0, (num_users, c.num_clusters)),
            budget=np.full(num_users, c.time_budget),
        )

    def respond(self, state: InterestEvolutionState, slates: IntArray, rng: Generator) -> Responses:
        num_users, slate_size = slates.shape
        # Flat indices into (num_users, …) arrays: `take` on them is several times faster
        # than two-array fancy indexing, which matters at one user per step.
        users = np.arange(num_users)
        interest = state.interests.take(
            self._cluster.take(slates) + (users * self.config.num_clusters)[:, None]
        )
        # Multinomial proportional choice: item i is picked when the draw falls in
        # [cumulative_{i−1}, cumulative_i); past the last item it is the no-click option.
        cumulative = np.add.accumulate(interest - self.config.min_normalizer, axis=1)
        draw = rng.random(num_users) * (cumulative[:, -1] + self._no_click_weight)
        pick = np.add.reduce(cumulative <= draw[:, None], axis=1)
        clicked = pick[:, None] == np.arange(slate_size)

        # Every video has the same length in RecSim's sampler, so w = min(b, ℓ) per user.
        watch = np.maximum(np.minimum(state.budget, self.config.video_length), 0.0)
        watch_time = np.where(clicked, watch[:, None], 0.0)
        # At most one click per slate: the row sum is the clicked item's budget change.
        change = np.add.reduce(watch_time * self._budget_per_minute(slates, interest), axis=1)
        budget = self._budget_after(state, pick < slate_size, change)
        session_end = budget <= 0.0
        return Responses(
            clicked=clicked,
            watch_time=watch_time,
            completion=watch_time / self.config.video_length,
            session_end=session_end,
            gap_days=np.zeros(num_users, dtype=np.int64),
            churned=session_end,
            extras={
                "liked": np.zeros((num_users, slate_size)),
                "quality": self._quality.take(slates),
                "cluster_id": self._cluster_as_float.take(slates),
            },
        )

    def update(
        self,
        state: InterestEvolutionState,
        slates: IntArray,
        responses: Responses,
        rng: Generator,
    ) -> InterestEvolutionState:
        num_users, slate_size = slates.shape
        users = np.arange(num_users)
        clicked = responses.clicked
        # RecSim updates on the first clicked slate item only.
        chosen = clicked.argmax(axis=1) + users * slate_size
        clicked_any = clicked.take(chosen)
        item = slates.take(chosen)
        flat_interest = self._cluster.take(item) + users * self.config.num_clusters
        interest = state.interests.take(flat_interest)
        change = responses.watch_time.take(chosen) * self._budget_per_minute(item, interest)
        budget = self._budget_after(state, clicked_any, change)
        step = self._step_size(interest) * (1.0 - interest)
        toward = rng.random(num_users) < (interest + 1.0) * 0.5
        step = np.where(toward, step, -step) * clicked_any
        interests = state.interests.copy()
        interests.put(flat_interest, np.minimum(np.maximum(interest + step, -1.0), 1.0))
        return InterestEvolutionState(interests=interests, budget=budget)

    def user_features(self, state: InterestEvolutionState) -> FloatArray:
        """``(num_users, num_clusters) float32`` the true interests (RecSim's user observation)."""
        return state.interests.astype(np.float32)

    # --- privileged quantities for oracles and diagnostics ----------------------

    def expected_responses(
        self, state: InterestEvolutionState, items: IntArray
    ) -> dict[str, FloatArray]:
        """True expectations for each user and item shown alone (privileged).

        Returns ``(num_users, num_items_per_user)`` arrays: ``click_probability``,
        ``watch_time`` (expected minutes, unconditional), ``budget_change`` (expected change
        of the session budget, no-click penalty included), ``interest_change`` (expected
        change of θ_k before the clip to [−1, 1]), and the item's hidden ``quality``.
        """
        c = self.config
        users = np.arange(items.shape[0])[:, None]
        interest = state.interests[users, self._cluster[items]]
        weight = interest - c.min_normalizer
        click = weight / (weight + self._no_click_weight)
        watch = np.maximum(np.minimum(state.budget[:, None], self._video_length[items]), 0.0)
        per_minute = self._budget_per_minute(items, interest)
        # The move is +Δ with probability (θ+1)/2 and −Δ otherwise: E = θ·Δ.
        drift = interest * self._step_size(interest) * (1.0 - interest)
        return {
            "click_probability": click,
            "watch_time": click * watch,
            "budget_change": click * watch * per_minute - (1.0 - click) * c.step_penalty,
            "interest_change": click * drift,
            "quality": self._quality[items],
        }

    # --- shared pieces of respond and update ------------------------------------

    def _step_size(self, interest: FloatArray) -> FloatArray:
        return self.config.alpha_y_intercept - self._alpha_slope * np.abs(interest)

    def _budget_per_minute(self, items: IntArray, interest: FloatArray) -> FloatArray:
        """Budget change per watched minute of ``items`` for users with interest θ_k in them:
        −1 + user_update_alpha·(received utility)."""
        per_minute = self._budget_rate.take(items)
        if self._budget_interest_rate != 0.0:  # 0 by default (user_quality_factor = 0)
            per_minute = per_minute + self._budget_interest_rate * interest
        return per_minute

    def _budget_after(
        self, state: InterestEvolutionState, clicked_any: np.ndarray, change: FloatArray
    ) -> FloatArray:
        """``(num_users,)`` budget after a step: ``change`` where a user clicked, else the
        step penalty."""
        return state.budget + np.where(clicked_any, change, -self.config.step_penalty)


__all__ = [
    "InterestEvolutionConfig",
    "InterestEvolutionState",
    "InterestEvolutionUsers",
    "cluster_quality_means",
    "make_interest_evolution_catalog",
]
