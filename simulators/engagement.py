"""The default long-term-engagement user model (``loe_gym/Engagement-v0``).

Users have topic interests, a slow satisfaction, a fast per-topic fatigue and a
session time budget. Items have an *appeal* (what makes people click) that is
anti-correlated with their *quality* (what makes people satisfied), so clickbait
wins the next click but loses the user: satisfaction drives how soon a user comes
back after a session, and a gap of more than ``churn_gap_days`` days is churn.
A policy that maximises the next click or the next minute watched is therefore
beaten, over weeks, by one that also values satisfaction.

Dynamics, for user ``u`` shown item ``j`` of topic ``t`` (``σ`` is the logistic function)::

    utility      z = click_bias + interest_weight·θ_t + appeal_weight·a_j − fatigue_weight·φ_t
    click        single item: p = σ(z); slate: multinomial logit over the slate and a
                 no-click option of utility 0 (a slate of one gives p = σ(z) again)
    completion   c = clip(σ(completion_bias + completion_quality_weight·q_j
                             + completion_interest_weight·θ_t) + N(0, completion_noise²), 0, 1)
    watch time   w = ℓ_j · c minutes
    satisfaction s ← clip(s + satisfaction_rate·(q_j·c − clickbait_penalty·max(a_j − q_j, 0) − s), 0, 1)
                 (on click)
    fatigue      φ ← fatigue_decay·φ;  φ_t += 1/slate_size for each shown item
    interests    θ_t += interest_drift·(1 − θ_t)  (on click)
    budget       click: b −= w·(1 − time_refund·q_j);  no click: b −= no_click_cost
    session end  b ≤ 0; next visit after g ~ Geometric(σ(return_bias + return_satisfaction_weight·s))
                 days (s after this step); g > churn_gap_days is churn. Between sessions
                 φ ← session_fatigue_decay·φ and b ← session_budget.

The reference parameters (``EngagementConfig()``) are those of ``docs/simulators/engagement.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtr

from loe_gym.catalog import Catalog, release_schedule
from loe_gym.config import FrozenConfig
from loe_gym.simulator import (
    Responses,
    geometric_gaps,
    multinomial_logit_choice,
    row_any,
    row_sum,
)
from loe_gym.types import FloatArray, Generator, IntArray
from simulators.item_text import item_titles


@dataclass(frozen=True)
class EngagementConfig(FrozenConfig):
    """Parameters of the engagement user model (defaults: the reference spec)."""

    num_items: int = 1000
    """Catalog size M."""
    num_topics: int = 10
    """Number of topics K."""
    catalog_seed: int = 0
    """Seed of the catalog draw; fix it per benchmark (results vary with the draw)."""
    appeal_noise: float = 0.25
    """Std of the appeal noise: a = clip(1 − q + N(0, appeal_noise²), 0, 1)."""
    length_log_std: float = 0.5
    """Item length ℓ = exp(N(0, length_log_std²)) minutes."""
    estimate_noise: float = 0.05
    """Std of the noise on the public CTR / completion estimates."""
    click_bias: float = -1.0
    """Intercept of the click utility z."""
    interest_weight: float = 3.5
    """Weight of the interest θ_t in the click utility."""
    appeal_weight: float = 2.0
    """Weight of the appeal a_j in the click utility (clickbait clicks)."""
    fatigue_weight: float = 1.2
    """Weight of the topic fatigue φ_t in the click utility."""
    completion_bias: float = -1.0
    """Intercept of the completion logit."""
    completion_quality_weight: float = 2.0
    """Weight of the quality q_j in the completion logit."""
    completion_interest_weight: float = 3.0
    """Weight of the interest θ_t in the completion logit."""
    completion_noise: float = 0.1
    """Std of the Gaussian noise on completion (before clipping to [0, 1])."""
    satisfaction_rate: float = 0.08
    """Step size of satisfaction towards q·c − clickbait_penalty·max(a − q, 0) on a click."""
    clickbait_penalty: float = 0.5
    """How much appeal in excess of quality disappoints."""
    initial_satisfaction_mean: float = 0.5
    """Mean of the initial satisfaction (then clipped to [0, 1])."""
    initial_satisfaction_std: float = 0.1
    """Std of the initial satisfaction."""
    fatigue_decay: float = 0.8
    """Per-step fatigue decay."""
    session_fatigue_decay: float = 0.2
    """Fatigue kept between sessions."""
    interest_drift: float = 0.05
    """Step of θ_t towards 1 when an item of topic t is clicked."""
    time_refund: float = 0.5
    """Budget cost of a click is w·(1 − time_refund·q): good content gives time back."""
    no_click_cost: float = 1.0
    """Minutes of budget lost on a step without a click."""
    session_budget: float = 20.0
    """Minutes of budget at the start of each session."""
    return_bias: float = -1.5
    """Intercept of the daily return probability σ(return_bias + w·s)."""
    return_satisfaction_weight: float = 5.0
    """Weight w of satisfaction in the daily return probability."""
    churn_gap_days: int = 7
    """A return gap longer than this many days is churn."""
    item_text: bool = False
    """Give every item a generated title whose words depend on its topic, quality and
    appeal, with noise (`simulators.item_text`)."""
    public_estimates: bool = True
    """Publish the noisy CTR and completion estimates as item features. False: the platform
    knows only topic and length (new items have no measured rates yet)."""
    new_items_per_day: int = 0
    """Item churn: items are released this many a day, in id order (0 = every item is
    available every day); ``num_items`` must cover the episode's days."""
    item_lifetime_days: int = 7
    """With item churn, the days an item stays available after its release."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_positive(
            "num_items", "num_topics", "session_budget", "churn_gap_days", "item_lifetime_days"
        )
        self._check_nonnegative("new_items_per_day")
        self._check_nonnegative(
            "appeal_noise",
            "length_log_std",
            "estimate_noise",
            "completion_noise",
            "no_click_cost",
            "initial_satisfaction_std",
        )
        self._check_unit_interval(
            "satisfaction_rate",
            "fatigue_decay",
            "session_fatigue_decay",
            "interest_drift",
            "time_refund",
            "initial_satisfaction_mean",
            "clickbait_penalty",
        )


@dataclass(frozen=True)
class EngagementState:
    """State of a batch of users (hidden from the agent).

    Attributes:
        interests: ``(num_users, num_topics)`` θ in [−1, 1].
        satisfaction: ``(num_users,)`` s in [0, 1].
        fatigue: ``(num_users, num_topics)`` φ ≥ 0.
        budget: ``(num_users,)`` minutes left in the current session.
    """

    interests: FloatArray
    satisfaction: FloatArray
    fatigue: FloatArray
    budget: FloatArray


def make_engagement_catalog(config: EngagementConfig) -> Catalog:
    """Draw the catalog of ``config.num_items`` items from ``config.catalog_seed``.

    Public features: topic one-hot, length (minutes), and noisy population-level
    CTR and completion estimates (proxies of the hidden appeal and quality) unless
    ``public_estimates`` is off; titles with ``item_text``; a release schedule with
    ``new_items_per_day``.
    """
    rng = np.random.default_rng(config.catalog_seed)
    m, k = config.num_items, config.num_topics
    topics = rng.integers(0, k, m)
    quality = rng.beta(2.0, 2.0, m)
    appeal = np.clip(1.0 - quality + rng.normal(0.0, config.appeal_noise, m), 0.0, 1.0)
    length = np.exp(rng.normal(0.0, config.length_log_std, m))
    # What a platform would have measured on an average user (θ = 0, φ = 0).
    ctr = expit(config.click_bias + config.appeal_weight * appeal)
    completion = expit(config.completion_bias + config.completion_quality_weight * quality)
    ctr_estimate = np.clip(ctr + rng.normal(0.0, config.estimate_noise, m), 0.0, 1.0)
    completion_estimate = np.clip(completion + rng.normal(0.0, config.estimate_noise, m), 0.0, 1.0)
    numbers = [length, ctr_estimate, completion_estimate]
    names = (*(f"topic_{i}" for i in range(k)), "length", "ctr_estimate", "completion_estimate")
    if not config.public_estimates:
        numbers, names = numbers[:1], names[: k + 1]
    # Text and churn draw from their own stream: the items stay those of the same seed.
    extra_rng = np.random.default_rng([config.catalog_seed, 1])
    return Catalog(
        features=np.concatenate([np.eye(k)[topics], np.stack(numbers, axis=1)], axis=1),
        feature_names=names,
        hidden={"quality": quality, "appeal": appeal, "length": length},
        topics=topics,
        texts=item_titles(topics, quality, appeal, extra_rng) if config.item_text else None,
        availability=release_schedule(m, config.new_items_per_day, config.item_lifetime_days)
        if config.new_items_per_day
        else None,
    )


class EngagementUsers:
    """Batched users of the default long-term-engagement model.

    Args:
        config: an `EngagementConfig`; keyword overrides may be given instead
            (``EngagementUsers(num_items=500)``) and are validated the same way.
        catalog: use this catalog instead of drawing one (tests, or a platform's own
            items); it needs ``topics`` and hidden ``quality``, ``appeal`` and ``length``.

    Examples:
        >>> import numpy as np
        >>> sim = EngagementUsers(num_items=50)
        >>> rng = np.random.default_rng(0)
        >>> state = sim.reset(3, rng)
        >>> responses = sim.respond(state, np.array([[0], [1], [2]]), rng)
        >>> responses.clicked.shape
        (3, 1)
    """

    response_extras: tuple[str, ...] = ()
    user_feature_size: int = 0

    def __init__(
        self,
        config: EngagementConfig | None = None,
        *,
        catalog: Catalog | None = None,
        **overrides: object,
    ) -> None:
        base = config if config is not None else EngagementConfig()
        self.config = base.replace(**overrides) if overrides else base
        if catalog is None:
            catalog = make_engagement_catalog(self.config)
        else:
            _check_catalog(catalog, self.config)
            self.config = self.config.replace(num_items=catalog.num_items)
        self.catalog = catalog
        c = self.config
        hidden = self.catalog.hidden
        self._topics = np.asarray(self.catalog.topics)
        self._quality = np.asarray(hidden["quality"])
        self._appeal = np.asarray(hidden["appeal"])
        self._length = np.asarray(hidden["length"])
        # Per-item constants folded once so that a step is a handful of gathers.
        self._click_item_term = c.click_bias + c.appeal_weight * self._appeal
        self._completion_item_term = c.completion_bias + c.completion_quality_weight * self._quality
        self._clickbait = c.clickbait_penalty * np.maximum(self._appeal - self._quality, 0.0)
        self._budget_factor = 1.0 - c.time_refund * self._quality
        self._offsets_cache: dict[int, IntArray] = {}

    def __repr__(self) -> str:
        return f"EngagementUsers(num_items={self.config.num_items}, num_topics={self.config.num_topics})"

    # --- the contract ---------------------------------------------------------

    def reset(self, num_users: int, rng: Generator) -> EngagementState:
        c = self.config
        return EngagementState(
            interests=rng.uniform(-1.0, 1.0, (num_users, c.num_topics)),
            satisfaction=np.clip(
                rng.normal(c.initial_satisfaction_mean, c.initial_satisfaction_std, num_users),
                0.0,
                1.0,
            ),
            fatigue=np.zeros((num_users, c.num_topics)),
            budget=np.full(num_users, c.session_budget),
        )

    def respond(self, state: EngagementState, slates: IntArray, rng: Generator) -> Responses:
        """Clicks, completion and watch time; the session end and return gap follow from
        the budget and satisfaction after this step, which go to ``update`` in
        ``Responses.internals`` (``satisfaction``, ``budget``: ``(num_users,)``)."""
        c = self.config
        num_users, slate_size = slates.shape
        cell = self._cells(slates)
        interest = np.take(state.interests, cell)
        utility = (
            self._click_item_term[slates]
            + c.interest_weight * interest
            - c.fatigue_weight * np.take(state.fatigue, cell)
        )
        if slate_size == 1:
            clicked = rng.random((num_users, 1)) < expit(utility)
        else:
            clicked = multinomial_logit_choice(utility, rng)
        completion = expit(
            self._completion_item_term[slates] + c.completion_interest_weight * interest
        ) + c.completion_noise * rng.standard_normal((num_users, slate_size))
        completion = np.where(clicked, np.minimum(np.maximum(completion, 0.0), 1.0), 0.0)
        watch_time = self._length[slates] * completion

        internals = self._internals(state, slates, clicked, completion, watch_time)
        session_end = internals["budget"] <= 0.0
        # The return gap depends on the satisfaction the session ends with.
        gap = geometric_gaps(
            expit(c.return_bias + c.return_satisfaction_weight * internals["satisfaction"]), rng
        )
        churned = session_end & (gap > c.churn_gap_days)
        return Responses(
            clicked=clicked,
            watch_time=watch_time,
            completion=completion,
            session_end=session_end,
            gap_days=np.where(session_end & ~churned, gap, 0),
            churned=churned,
            internals=internals,
        )

    def update(
        self, state: EngagementState, slates: IntArray, responses: Responses, rng: Generator
    ) -> EngagementState:
        """The next state; satisfaction and budget come from ``responses.internals``.

        Raises:
            ValueError: ``responses`` lack the internals (they were not made by
                ``respond``; pass them through `with_internals` first).
        """
        c = self.config
        slate_size = slates.shape[1]
        satisfaction, budget = self._read_internals(responses)
        clicked = responses.clicked
        clicked_any = row_any(clicked)
        cell = self._cells(slates)

        fatigue = c.fatigue_decay * state.fatigue
        flat_fatigue = fatigue.reshape(-1)
        if slate_size == 1:
            flat_fatigue[cell[:, 0]] += 1.0
        else:
            # bincount is the fast scatter-add (np.add.at is an order of magnitude slower).
            flat_fatigue += np.bincount(cell.reshape(-1), minlength=flat_fatigue.size) / slate_size

        interests = state.interests
        if clicked_any.any():
            interests = interests.copy()
            flat_interests = interests.reshape(-1)
            clicked_cell = cell[clicked] if slate_size > 1 else cell[clicked_any, 0]
            old = flat_interests[clicked_cell]
            flat_interests[clicked_cell] = old + c.interest_drift * (1.0 - old)

        ended = responses.session_end
        if ended.any():
            fatigue = np.where(ended[:, None], c.session_fatigue_decay * fatigue, fatigue)
            budget = np.where(ended, c.session_budget, budget)
        return EngagementState(
            interests=interests, satisfaction=satisfaction, fatigue=fatigue, budget=budget
        )

    def with_internals(
        self, state: EngagementState, slates: IntArray, responses: Responses
    ) -> Responses:
        """``responses`` with the internals ``update`` needs, derived from their clicks,
        completion and watch time as ``respond`` derives them: for responses not made by
        ``respond`` (hand-written cases, logged responses replayed through the model)."""
        internals = self._internals(
            state, slates, responses.clicked, responses.completion, responses.watch_time
        )
        return dataclasses.replace(responses, internals=internals)

    def user_features(self, state: EngagementState) -> FloatArray:
        return np.zeros((state.satisfaction.shape[0], 0), dtype=np.float32)

    # --- privileged quantities for oracles and diagnostics ----------------------

    def expected_responses(self, state: EngagementState, items: IntArray) -> dict[str, FloatArray]:
        """True expectations for each user and item shown alone (privileged).

        Returns ``(num_users, num_items_per_user)`` arrays: ``click_probability``,
        ``completion`` (expected, given a click), ``watch_time`` (expected minutes,
        unconditional), ``satisfaction_gain`` (expected change of s), ``return_probability``
        (of the user's current satisfaction) and the item's hidden ``quality`` and ``appeal``.
        """
        c = self.config
        users = np.arange(items.shape[0])[:, None]
        topics = self._topics[items]
        interest = state.interests[users, topics]
        click = expit(
            self._click_item_term[items]
            + c.interest_weight * interest
            - c.fatigue_weight * state.fatigue[users, topics]
        )
        mean = expit(self._completion_item_term[items] + c.completion_interest_weight * interest)
        completion = _expected_clipped_normal(mean, c.completion_noise)
        satisfaction = state.satisfaction[:, None]
        target = self._quality[items] * completion - self._clickbait[items]
        gain = click * c.satisfaction_rate * (target - satisfaction)
        return_probability = np.broadcast_to(
            expit(c.return_bias + c.return_satisfaction_weight * satisfaction), items.shape
        )
        return {
            "click_probability": click,
            "completion": completion,
            "watch_time": click * self._length[items] * completion,
            "satisfaction_gain": gain,
            "return_probability": return_probability,
            "quality": self._quality[items],
            "appeal": self._appeal[items],
        }

    def return_probability(self, state: EngagementState) -> FloatArray:
        """``(num_users,)`` probability that a session ending in ``state`` is followed by a
        visit the next day: σ(return_bias + return_satisfaction_weight·s) (privileged)."""
        c = self.config
        return expit(c.return_bias + c.return_satisfaction_weight * state.satisfaction)

    # --- helpers ------------------------------------------------------------------

    def _row_offsets(self, num_users: int) -> IntArray:
        """``(num_users, 1)`` offsets of each user's row in a flattened (users, topics) array."""
        offsets = self._offsets_cache.get(num_users)
        if offsets is None:
            offsets = (np.arange(num_users) * self.config.num_topics)[:, None]
            self._offsets_cache[num_users] = offsets
        return offsets

    def _cells(self, slates: IntArray) -> IntArray:
        """``(num_users, slate_size)`` flat indices of each shown item's topic in a
        flattened (users, topics) array: np.take on them is several times faster than
        2-d fancy indexing."""
        return self._topics[slates] + self._row_offsets(slates.shape[0])

    def _internals(
        self,
        state: EngagementState,
        slates: IntArray,
        clicked: np.ndarray,
        completion: FloatArray,
        watch_time: FloatArray,
    ) -> dict[str, FloatArray]:
        """``(num_users,)`` satisfaction and budget after this step's clicks (the budget
        before a session end refills it)."""
        c = self.config
        clicked_any = row_any(clicked)
        cost = np.where(
            clicked_any, row_sum(watch_time * self._budget_factor[slates]), c.no_click_cost
        )
        target = row_sum((self._quality[slates] * completion - self._clickbait[slates]) * clicked)
        satisfaction = state.satisfaction + np.where(
            clicked_any, c.satisfaction_rate * (target - state.satisfaction), 0.0
        )
        return {
            "satisfaction": np.minimum(np.maximum(satisfaction, 0.0), 1.0),
            "budget": state.budget - cost,
        }

    def _read_internals(self, responses: Responses) -> tuple[FloatArray, FloatArray]:
        """Satisfaction and budget from ``responses.internals``, or a clear error."""
        internals = responses.internals
        try:
            return internals["satisfaction"], internals["budget"]
        except KeyError:
            raise ValueError(
                "EngagementUsers.update() needs Responses.internals 'satisfaction' and "
                f"'budget' (computed by respond()); these responses have {sorted(internals)}. "
                "Pass the Responses returned by respond(), or call "
                "simulator.with_internals(state, slates, responses) on responses built "
                "elsewhere."
            ) from None


def _check_catalog(catalog: Catalog, config: EngagementConfig) -> None:
    missing = [name for name in ("quality", "appeal", "length") if name not in catalog.hidden]
    if missing or catalog.topics is None:
        raise ValueError(
            "An engagement catalog needs topics and hidden 'quality', 'appeal' and 'length'; "
            f"this one lacks {', '.join(missing + (['topics'] if catalog.topics is None else []))}."
        )
    if catalog.num_topics > config.num_topics:
        raise ValueError(
            f"The catalog has topic ids up to {catalog.num_topics - 1} but num_topics="
            f"{config.num_topics}; pass num_topics={catalog.num_topics} or more."
        )


def _expected_clipped_normal(mean: FloatArray, std: float) -> FloatArray:
    """E[clip(mean + N(0, std²), 0, 1)] in closed form."""
    if std == 0.0:
        return np.clip(mean, 0.0, 1.0)
    a = (0.0 - mean) / std
    b = (1.0 - mean) / std
    pdf = lambda x: np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)  # noqa: E731
    inside = mean * (ndtr(b) - ndtr(a)) + std * (pdf(a) - pdf(b))
    return inside + (1.0 - ndtr(b))


__all__ = ["EngagementConfig", "EngagementState", "EngagementUsers", "make_engagement_catalog"]
