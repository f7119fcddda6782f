"""RecSim's long-term-satisfaction ("choc/kale") users (``loe_gym/LongTermSatisfaction-v0``).

A faithful, batched numpy port of RecSim 0.2.4's
``recsim.environments.long_term_satisfaction`` (``LTSDocumentSampler``,
``LTSStaticUserSampler``, ``LTSUserState``, ``LTSUserModel``, ``LTSResponse``). Same
equations, same defaults, same observations; the plumbing differs (a batch of users in
arrays, an explicit ``np.random.Generator``, a fixed catalog with stable ids).

Each item has a clickbait score ``c ∈ [0, 1]``: clickbaity items ("chocolate") bring more
engagement now, non-clickbaity ones ("kale") raise the user's latent satisfaction, which
scales all future engagement. The user state is a net positive exposure (NPE), its
satisfaction and a session budget counted in steps.

Model, for a user shown a slate whose *first* item has clickbait score ``c``
(``σ`` is the logistic function)::

    item         c ~ Uniform[0, 1)
    user         NPE₀ = (U − 0.5) / (1 − memory_discount),  U ~ Uniform[0, 1)
                 SAT = σ(sensitivity·NPE);  b = time_budget
    choice       the user always clicks the first slate item (RecSim has no choice model
                 here: ``LTSUserModel.simulate_response`` picks index 0)
    engagement   log e ~ N(μ, s²),  μ = (c·choc_mean + (1 − c)·kale_mean)·SAT,
                                    s = c·choc_stddev + (1 − c)·kale_stddev
    transition   on the click:  NPE ← memory_discount·NPE − 2·(c − 0.5) + N(0, innovation_stddev²)
                                SAT ← σ(sensitivity·NPE);  b ← b − 1
    end          the episode ends when b ≤ 0 (RecSim's ``done``): time_budget steps

Defaults (RecSim's ``LTSStaticUserSampler``): memory discount 0.7, sensitivity 0.01,
innovation std 0.05, choc mean/std 5/1, kale mean/std 4/1, budget 60 steps. With these,
NPE stays within about ±3.4 and SAT within about 0.5 ± 0.01, so clickbait wins at every
horizon; raise ``sensitivity`` to make the trade-off bite (the defaults are RecSim's).

RecSim → loe_gym mapping:

- documents: RecSim draws ``num_candidates`` fresh documents every step
  (``resample_documents=True``). Here ``num_items`` documents (default 10 000: a fine,
  fixed grid of i.i.d. clickbait scores, as for interest evolution) are drawn once with
  ``catalog_seed``; the environment draws candidates uniformly from that catalog every
  step, which matches RecSim's resampling in distribution. ``Catalog.features`` is RecSim's
  document observation, the 1-dim clickbait score (also in ``Catalog.hidden``); there are
  no topics.
- observation: ``user`` is empty (``user_feature_size = 0``; RecSim's user observation is
  ``np.array([])``); ``doc`` the candidates' clickbait scores; ``response`` per slate
  position ``[clicked, watch_time]`` = RecSim's ``{click, engagement}``, so there are no
  ``response_extras``.
- responses: RecSim's ``engagement`` is ``Responses.watch_time`` (the amount consumed,
  unclipped, so that the summed watch time is RecSim's ``clicked_engagement_reward``);
  ``Responses.completion`` is 1 for the clicked item (it was consumed), 0 elsewhere.
  RecSim clips the engagement it *observes* to ``[0, 100]``
  (``LTSResponse.MAX_ENGAGEMENT_MAGNITUDE``, ``watch_time_observation_limit`` here) while
  its reward uses the unclipped value.
- episode: RecSim models one session. The step where the budget runs out has
  ``session_end = churned = True`` (``gap_days = 0``), so the environment's ``terminated``
  is RecSim's ``done``; there is no return visit.

Fixes of RecSim's known defects:

1. Global, unseeded RNG: RecSim draws the engagement (``LTSUserModel.generate_response``)
   and the NPE innovation (``LTSUserModel.update_state``) from numpy's global RNG, and
   ``RecSimGymEnv.seed`` reseeds only that global RNG. Here all randomness flows through
   the ``rng`` argument and the catalog through ``catalog_seed``.
2. The seed is ignored: ``long_term_satisfaction.create_environment`` builds
   ``LTSUserModel(slate_size, user_state_ctor=…, response_model_ctor=…)`` without passing
   ``env_config['seed']`` and ``LTSDocumentSampler()`` without a seed, so both samplers
   always use seed 0: every environment gets the same users and documents whatever seed
   it is given. Here users come from the ``rng`` passed to ``reset`` and documents from
   ``catalog_seed``.
3. Document keys change on resample: RecSim's document observation is a dict keyed by a
   running document counter. Here items have stable integer ids and candidate features
   are fixed-shape arrays.
4. Duplicate items in a slate: RecSim accepts them silently; the environment rejects them.

RecSim behaviours kept for faithfulness (documented):

- only the first slate item is ever clicked, whatever the slate size;
- ``LTSUserModel``'s docstring gives the transition as ``+ 2·(c − 0.5)``, but its code
  subtracts, so clickbait *lowers* NPE (as the module's own description says); the code is
  ported;
- the observed engagement is clipped at 100 but the reward is not (see the mapping above).

Not ported because they touch no dynamics: ``LTSStaticUserSampler.sample_user`` writes each
user's NPE₀ into the sampler's shared parameter dict, and ``LTSResponse.__str__`` adds a
string to a float (``TypeError`` when a response is printed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from loe_gym.catalog import Catalog
from loe_gym.config import FrozenConfig
from loe_gym.simulator import Responses
from loe_gym.types import FloatArray, Generator, IntArray

MAX_ENGAGEMENT_MAGNITUDE = 100.0
"""Upper bound of RecSim's observed ``engagement`` (``LTSResponse.MAX_ENGAGEMENT_MAGNITUDE``)."""


@dataclass(frozen=True)
class LongTermSatisfactionConfig(FrozenConfig):
    """Parameters of RecSim's long-term-satisfaction model (defaults: RecSim 0.2.4's)."""

    num_items: int = 10_000
    """Catalog size; RecSim resamples candidates every step, we draw them from this catalog."""
    catalog_seed: int = 0
    """Seed of the catalog draw."""
    memory_discount: float = 0.7
    """Share of the net positive exposure kept from one click to the next."""
    sensitivity: float = 0.01
    """Slope of satisfaction in the net positive exposure: SAT = σ(sensitivity·NPE)."""
    innovation_stddev: float = 0.05
    """Std of the noise added to the net positive exposure on each click."""
    choc_mean: float = 5.0
    """Mean log-engagement (at SAT = 1) with a fully clickbaity item (c = 1)."""
    choc_stddev: float = 1.0
    """Std of the log-engagement with a fully clickbaity item."""
    kale_mean: float = 4.0
    """Mean log-engagement (at SAT = 1) with a non-clickbaity item (c = 0)."""
    kale_stddev: float = 1.0
    """Std of the log-engagement with a non-clickbaity item."""
    time_budget: float = 60.0
    """Session budget in steps: each click costs 1."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_positive("num_items", "time_budget")
        self._check_nonnegative(
            "catalog_seed", "innovation_stddev", "choc_stddev", "kale_stddev", "sensitivity"
        )
        if not 0.0 <= self.memory_discount < 1.0:
            raise ValueError(
                "LongTermSatisfactionConfig.memory_discount must lie in [0, 1) (the initial "
                f"exposure divides by 1 − memory_discount), got {self.memory_discount}."
            )


@dataclass(frozen=True)
class LongTermSatisfactionState:
    """State of a batch of users (hidden from the agent).

    Attributes:
        net_positive_exposure: ``(num_users,) float`` NPE.
        satisfaction: ``(num_users,) float`` SAT = σ(sensitivity·NPE) in (0, 1).
        budget: ``(num_users,) float`` steps left in the session.
    """

    net_positive_exposure: FloatArray
    satisfaction: FloatArray
    budget: FloatArray


def make_long_term_satisfaction_catalog(config: LongTermSatisfactionConfig) -> Catalog:
    """Draw ``config.num_items`` documents i.i.d. from RecSim's ``LTSDocumentSampler``."""
    rng = np.random.default_rng(config.catalog_seed)
    clickbait = rng.random(config.num_items)
    return Catalog(
        features=clickbait[:, None],
        feature_names=("clickbait_score",),
        hidden={"clickbait_score": clickbait},
    )


class LongTermSatisfactionUsers:
    """Batched users of RecSim's long-term-satisfaction (choc/kale) model.

    Args:
        config: a `LongTermSatisfactionConfig`; keyword overrides may be given instead
            (``LongTermSatisfactionUsers(sensitivity=0.5)``) and are validated the same way.

    Examples:
        >>> import numpy as np
        >>> sim = LongTermSatisfactionUsers(num_items=50)
        >>> rng = np.random.default_rng(0)
        >>> state = sim.reset(2, rng)
        >>> responses = sim.respond(state, np.array([[0, 1], [2, 3]]), rng)
        >>> responses.clicked.tolist()
        [[True, False], [True, False]]
        >>> sim.user_features(state).shape
        (2, 0)
    """

    response_extras: tuple[str, ...] = ()
    user_feature_size: int = 0
    watch_time_observation_limit: float = MAX_ENGAGEMENT_MAGNITUDE
    """RecSim clips the observed engagement to [0, 100]; its reward is unclipped."""

    def __init__(
        self, config: LongTermSatisfactionConfig | None = None, **overrides: object
    ) -> None:
        base = config if config is not None else LongTermSatisfactionConfig()
        self.config = base.replace(**overrides) if overrides else base
        self.catalog = make_long_term_satisfaction_catalog(self.config)
        c = self.config
        self._clickbait = np.asarray(self.catalog.hidden["clickbait_score"])
        # Per-item engagement parameters: a linear interpolation between kale and choc.
        self._engagement_mean = (
            self._clickbait * c.choc_mean + (1.0 - self._clickbait) * c.kale_mean
        )
        self._engagement_std = (
            self._clickbait * c.choc_stddev + (1.0 - self._clickbait) * c.kale_stddev
        )
        self._exposure_push = -2.0 * (self._clickbait - 0.5)

    def __repr__(self) -> str:
        return f"LongTermSatisfactionUsers(num_items={self.config.num_items})"

    # --- the contract ---------------------------------------------------------

    def reset(self, num_users: int, rng: Generator) -> LongTermSatisfactionState:
        c = self.config
        exposure = (rng.random(num_users) - 0.5) / (1.0 - c.memory_discount)
        return LongTermSatisfactionState(
            net_positive_exposure=exposure,
            satisfaction=expit(c.sensitivity * exposure),
            budget=np.full(num_users, c.time_budget),
        )

    def respond(
        self, state: LongTermSatisfactionState, slates: IntArray, rng: Generator
    ) -> Responses:
        num_users, slate_size = slates.shape
        first = slates[:, 0]
        loc = self._engagement_mean.take(first) * state.satisfaction
        scale = self._engagement_std.take(first)
        # loc + scale·N(0, 1) is what Generator.normal(loc, scale) computes, without its
        # per-call cost for array arguments.
        log_engagement = loc + scale * rng.standard_normal(num_users)
        clicked = np.zeros((num_users, slate_size), dtype=bool)
        clicked[:, 0] = True
        watch_time = np.zeros((num_users, slate_size))
        watch_time[:, 0] = np.exp(log_engagement)
        session_end = state.budget - 1.0 <= 0.0
        return Responses(
            clicked=clicked,
            watch_time=watch_time,
            completion=clicked.astype(np.float64),
            session_end=session_end,
            gap_days=np.zeros(num_users, dtype=np.int64),
            churned=session_end,
        )

    def update(
        self,
        state: LongTermSatisfactionState,
        slates: IntArray,
        responses: Responses,
        rng: Generator,
    ) -> LongTermSatisfactionState:
        c = self.config
        num_users = slates.shape[0]
        clicked = responses.clicked
        # RecSim moves the state on the first clicked item only (always the first item).
        item = slates.take(clicked.argmax(axis=1) + np.arange(num_users) * slates.shape[1])
        innovation = rng.normal(0.0, c.innovation_stddev, num_users)
        moved = (
            c.memory_discount * state.net_positive_exposure
            + self._exposure_push.take(item)
            + innovation
        )
        clicked_any = clicked.any(axis=1)
        exposure = np.where(clicked_any, moved, state.net_positive_exposure)
        return LongTermSatisfactionState(
            net_positive_exposure=exposure,
            satisfaction=np.where(clicked_any, expit(c.sensitivity * exposure), state.satisfaction),
            budget=np.where(clicked_any, state.budget - 1.0, state.budget),
        )

    def user_features(self, state: LongTermSatisfactionState) -> FloatArray:
        """``(num_users, 0) float32``: RecSim's users are not observable."""
        return np.zeros((state.budget.shape[0], 0), dtype=np.float32)

    # --- privileged quantities for oracles and diagnostics ----------------------

    def expected_responses(
        self, state: LongTermSatisfactionState, items: IntArray
    ) -> dict[str, FloatArray]:
        """True expectations for each user and item shown alone (privileged).

        Returns ``(num_users, num_items_per_user)`` arrays: ``click_probability`` (1: the
        first item is always clicked), ``watch_time`` (expected engagement,
        E[exp N(μ, s²)] = exp(μ + s²/2)), ``next_net_positive_exposure`` (expected NPE after
        the click), ``next_satisfaction`` (the satisfaction at that expected NPE), and the
        item's ``clickbait_score``.
        """
        c = self.config
        satisfaction = state.satisfaction[:, None]
        std = self._engagement_std[items]
        exposure = (
            c.memory_discount * state.net_positive_exposure[:, None] + self._exposure_push[items]
        )
        return {
            "click_probability": np.ones(items.shape),
            "watch_time": np.exp(self._engagement_mean[items] * satisfaction + 0.5 * std * std),
            "next_net_positive_exposure": exposure,
            "next_satisfaction": expit(c.sensitivity * exposure),
            "clickbait_score": self._clickbait[items],
            # Kale is the nutritious end of the clickbait scale: quality = 1 − clickbait.
            "quality": 1.0 - self._clickbait[items],
        }


__all__ = [
    "MAX_ENGAGEMENT_MAGNITUDE",
    "LongTermSatisfactionConfig",
    "LongTermSatisfactionState",
    "LongTermSatisfactionUsers",
    "make_long_term_satisfaction_catalog",
]
