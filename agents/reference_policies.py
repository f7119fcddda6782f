"""Reference policies that calibrate the benchmark.

Each policy maps a batch of observations to actions for a `RecommendationVectorEnv`.
Privileged policies (``privileged = True``) also read the simulator's true state
through ``env.simulator.expected_responses(env.state, env.candidates)``; they are
oracles and references, never deployable recommenders.

| policy | scores each candidate by | privileged |
|--------|--------------------------|------------|
| `RandomPolicy` | nothing (uniform) | no |
| `DotProductPolicy` | ``user · doc`` (RecSim's observable interest match) | no |
| `MaxClickPolicy` | true click probability | yes |
| `MyopicPolicy` | true expected watch time now | yes |
| `MaxQualityPolicy` | the item's hidden quality | yes |
| one-step planner | watch now + 5 × expected satisfaction gap (the reference spec's planner) | yes |
| `PopularityPolicy` | clicks in the logs | no |
| `PublicFeaturePolicy` | one public item feature (``max_ctr_estimate``, ``max_completion_estimate``) | no |
| `TopicAffinityPolicy` | the user's click rate on the candidate's topic in the observed history | no |
| `MyopicPredictedPolicy` | the predictor's expected watch time now | no (needs the predictor) |
| `OraclePlanner` | a linear value of true expectations (watch now, satisfaction gain, …), weights tuned by search | yes |
| `agents.lookahead.LookaheadOracle` | simulated returns of trying it first, then a base policy (rollout) | yes |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agents.ranking import SCORE_NAMES, reward_model_score, top_slates
from loe_gym import RecommendationVectorEnv
from loe_gym.errors import did_you_mean
from loe_gym.simulator import is_privileged


class Policy(Protocol):
    """A batched recommendation policy."""

    name: str
    privileged: bool

    def act(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        """``(num_users,)`` candidate indices, or ``(num_users, slate_size)`` for slates."""
        ...


# A policy may also define ``start_population(seed: int) -> None``: called before each
# population (or shard of one), to restart any state kept between populations, so that a
# population's result does not depend on what ran before (agents/populations.py).


class _ScoringPolicy:
    """Shows the candidates with the highest ``score`` (ties broken by candidate order)."""

    name = "scoring"
    privileged = True

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        return top_slates(self.scores(obs, env), env.config.slate_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def expected_responses(env: RecommendationVectorEnv) -> Mapping[str, np.ndarray]:
    """The simulator's ``expected_responses`` for the env's users and candidates now,
    computed once per step however many privileged policies read it (a rollout steps
    several of them over the same state); callers must not write into the arrays."""
    simulator = env.simulator
    if not is_privileged(simulator):
        features = ", ".join(env.catalog.feature_names) or "none"
        raise TypeError(
            f"{type(simulator).__name__} exposes no expected_responses(); privileged "
            "policies (myopic, max_click, oracle_planner, ...) need it (see "
            "loe_gym.PrivilegedSimulator). Without it use policies that read only the "
            "observation: random, lookahead_oracle, trained agents, or max_<feature> / "
            f"min_<feature> of the catalog's features ({features}); to log, --collect.policy "
            "random or deployable."
        )
    # The cache holds the state and candidate objects themselves: a new step replaces
    # them (states are frozen), so identity says whether the cached value still holds.
    cached = env.__dict__.get("_expected_cache")
    if cached is not None and cached[0] is env.state and cached[1] is env.candidates:
        return cached[2]  # type: ignore[no-any-return]
    expected = simulator.expected_responses(env.state, env.candidates)  # type: ignore[attr-defined]
    env.__dict__["_expected_cache"] = (env.state, env.candidates, expected)
    return expected  # type: ignore[no-any-return]


def _expected(env: RecommendationVectorEnv, key: str) -> np.ndarray:
    expected = expected_responses(env)
    if key not in expected:
        raise KeyError(
            f"{type(env.simulator).__name__}.expected_responses() has no {key!r}; it has "
            f"{sorted(expected)}."
        )
    return np.asarray(expected[key])


class RandomPolicy:
    """Uniformly random distinct candidates."""

    name = "random"
    privileged = False

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def start_population(self, seed: int) -> None:
        """Restart the draws: a population's actions do not depend on those before it."""
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        return top_slates(
            self.rng.random((env.num_envs, env.config.num_candidates)), env.config.slate_size
        )


class DotProductPolicy(_ScoringPolicy):
    """RecSim's max-click heuristic: the candidates with the highest ``user · doc``."""

    name = "max_click_dot"
    privileged = False

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        # observation="recsim" names the candidates' features "doc", "history" names them
        # "candidate_features"; both carry "user" for RecSim's simulators.
        doc = obs.get("doc", obs.get("candidate_features"))
        if "user" not in obs or doc is None:
            raise KeyError(
                "DotProductPolicy needs a 'user' vector and the candidates' features ('doc' or "
                "'candidate_features'), as RecSim's simulators observe them."
            )
        if obs["user"].shape[-1] != doc.shape[-1]:
            raise ValueError(
                f"DotProductPolicy needs user and doc vectors of one size, got "
                f"{obs['user'].shape[-1]} and {doc.shape[-1]}."
            )
        return np.einsum("ucf,uf->uc", doc, obs["user"])


class MaxClickPolicy(_ScoringPolicy):
    """The candidates with the highest true click probability (privileged)."""

    name = "max_click"

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        return _expected(env, "click_probability")


class MyopicPolicy(_ScoringPolicy):
    """The candidates with the highest true expected watch time now (privileged)."""

    name = "myopic"

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        return _expected(env, "watch_time")


class MaxQualityPolicy(_ScoringPolicy):
    """The candidates of highest hidden quality (privileged)."""

    name = "max_quality"

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        return _expected(env, "quality")


@dataclass(frozen=True)
class OracleWeights:
    """Weights of the oracle planner's value of a candidate (watch time has weight 1).

    The defaults were tuned by the cross-entropy method on ``Engagement-v0``
    (``loe-gym tune-oracle``: 500 users, seeds 1000 and 1001, 8 iterations of 12
    samples, starting from the reference planner), on populations disjoint from the
    calibration seeds. ``REFERENCE_PLANNER_WEIGHTS`` is the one-step planner of the
    reference spec: watch + 5 × p·(q·c − 0.5·max(a − q, 0) − s), i.e. a weight of
    5 / satisfaction_rate = 62.5 on the expected change of satisfaction.
    """

    features: tuple[str, ...] = (
        "satisfaction_gain",
        "click_probability",
        "quality_completion",
        "clickbait",
        "satisfaction_gain_x_low_satisfaction",
    )
    values: tuple[float, ...] = (72.72, 1.996, 4.665, -4.905, -8.892)

    def __post_init__(self) -> None:
        if len(self.features) != len(self.values):
            raise ValueError(
                f"OracleWeights has {len(self.features)} features but {len(self.values)} values."
            )
        unknown = [name for name in self.features if name not in ORACLE_FEATURES]
        if unknown:
            raise ValueError(
                f"Unknown oracle feature {unknown[0]!r}.{did_you_mean(unknown[0], ORACLE_FEATURES)} "
                f"Known: {', '.join(ORACLE_FEATURES)}."
            )


ORACLE_FEATURES = (
    "satisfaction_gain",
    "click_probability",
    "quality_completion",
    "clickbait",
    "satisfaction_gain_x_low_satisfaction",
)


REFERENCE_PLANNER_WEIGHTS = OracleWeights(values=(62.5, 0.0, 0.0, 0.0, 0.0))


def oracle_features(env: RecommendationVectorEnv) -> dict[str, np.ndarray]:
    """Privileged per-candidate features ``(num_users, num_candidates)`` for the planner."""
    expected = expected_responses(env)
    click = np.asarray(expected["click_probability"])
    gain = np.asarray(expected.get("satisfaction_gain", np.zeros_like(click)))
    quality = np.asarray(expected.get("quality", np.zeros_like(click)))
    appeal = np.asarray(expected.get("appeal", np.zeros_like(click)))
    completion = np.asarray(expected.get("completion", np.ones_like(click)))
    satisfaction = getattr(env.state, "satisfaction", None)
    low = 1.0 - (
        satisfaction[:, None] if satisfaction is not None else np.zeros((click.shape[0], 1))
    )
    return {
        "watch_time": np.asarray(expected["watch_time"]),
        "satisfaction_gain": gain,
        "click_probability": click,
        "quality_completion": click * quality * completion,
        "clickbait": click * np.maximum(appeal - quality, 0.0),
        "satisfaction_gain_x_low_satisfaction": gain * low,
    }


@dataclass
class OraclePlanner(_ScoringPolicy):
    """Values each candidate by expected watch now plus a weighted long-term part.

    ``value = watch_time + Σ_k w_k · feature_k`` over privileged expectations (see
    `oracle_features`); with the default weights it is the planner of the reference
    spec (watch + 5 × expected satisfaction gain), and ``loe-gym tune-oracle`` searches
    all weights to maximise long-term engagement.
    """

    weights: OracleWeights = field(default_factory=OracleWeights)
    name: str = "oracle_planner"
    privileged: bool = True

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        features = oracle_features(env)
        value = features["watch_time"].copy()
        for name, weight in zip(self.weights.features, self.weights.values, strict=True):
            if weight:
                value += weight * features[name]
        return value

    def __repr__(self) -> str:
        return (
            f"OraclePlanner({dict(zip(self.weights.features, self.weights.values, strict=True))})"
        )


def one_step_planner() -> OraclePlanner:
    """The reference spec's planner: watch + 5 × expected satisfaction gap (untuned)."""
    return OraclePlanner(REFERENCE_PLANNER_WEIGHTS, name="one_step_planner")


class PopularityPolicy(_ScoringPolicy):
    """The candidates clicked most often in the logs (``item_clicks``, one count per
    catalog item); unseen items rank last. Not personalised, not privileged."""

    name = "popularity"
    privileged = False

    def __init__(self, item_clicks: np.ndarray) -> None:
        counts = np.asarray(item_clicks, dtype=np.float64)
        if counts.ndim != 1 or not np.all(np.isfinite(counts)) or (counts < 0).any():
            raise ValueError(
                "item_clicks must be a 1-D array of finite counts ≥ 0 (one per catalog item), "
                f"got shape {counts.shape}."
            )
        self.item_clicks = counts

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        ids = obs["candidate_ids"]
        if ids.max() >= self.item_clicks.size:
            raise ValueError(
                f"item_clicks covers {self.item_clicks.size} items but a candidate has id "
                f"{int(ids.max())}; count clicks over this env's catalog."
            )
        return self.item_clicks[ids]


class PublicFeaturePolicy(_ScoringPolicy):
    """The candidates highest (``lowest``: lowest) on one public item feature, e.g. the
    catalog's CTR estimate (a clickbait-prone recommender) or its completion estimate (a
    quality-seeking one). Reads only the observation: deployable, not privileged. By name
    ``max_<feature>`` or ``min_<feature>`` for any feature of the catalog."""

    privileged = False

    def __init__(self, feature: str, name: str | None = None, lowest: bool = False) -> None:
        self.feature, self.lowest = feature, lowest
        self.name = name or f"{'min' if lowest else 'max'}_{feature}"

    def check(self, env: RecommendationVectorEnv) -> None:
        """Raise a clear error if ``env``'s catalog lacks the feature."""
        names = env.catalog.feature_names
        if self.feature not in names:
            raise ValueError(
                f"{self.name} scores the public feature {self.feature!r}, which this catalog "
                f"lacks.{did_you_mean(self.feature, names)} Its features: {', '.join(names)}."
            )

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        self.check(env)
        index = env.catalog.feature_names.index(self.feature)
        if "candidate_features" in obs:
            value = obs["candidate_features"][..., index]
        else:  # an observation layout without them (RecSim's): the public catalog's
            value = env.catalog.features[env.candidates, index]
        return -value if self.lowest else value

    def __repr__(self) -> str:
        return f"PublicFeaturePolicy({self.feature!r}, lowest={self.lowest})"


class TopicAffinityPolicy(_ScoringPolicy):
    """A personalised recommender that reads only the observation: each candidate's
    score is the user's smoothed click rate on its topic in the observed history,
    ``(clicks + 1) / (shown + 2)`` over ``obs["history_item_ids"]`` (topics from the
    public catalog), times the candidate's public ``weight_features`` (by default the
    catalog's CTR and completion estimates, those of them it has: a crude expected
    completed click).

    Args:
        weight_features: public item features multiplied into the score; ``()`` for the
            topic click rate alone (which repeats topics until the user tires of them);
            None (default) for `DEFAULT_WEIGHT_FEATURES` that the catalog has.
    """

    name = "topic_affinity"
    privileged = False

    DEFAULT_WEIGHT_FEATURES = ("ctr_estimate", "completion_estimate")

    def __init__(self, weight_features: Sequence[str] | None = None) -> None:
        self.weight_features = None if weight_features is None else tuple(weight_features)

    def _weights(self, names: Sequence[str]) -> tuple[str, ...]:
        if self.weight_features is None:
            return tuple(f for f in self.DEFAULT_WEIGHT_FEATURES if f in names)
        return self.weight_features

    def __repr__(self) -> str:
        return f"TopicAffinityPolicy(weight_features={self.weight_features!r})"

    def check(self, env: RecommendationVectorEnv) -> None:
        """Raise a clear error if ``env`` lacks topics, the weight features or the history."""
        names = env.catalog.feature_names
        missing = [f for f in self._weights(names) if f not in names]
        if missing:
            raise ValueError(
                f"topic_affinity weighs by the public features {list(self._weights(names))}, "
                f"but this catalog lacks {missing}; pass weight_features=() or some of "
                f"{', '.join(names)}."
            )
        observed = getattr(env.single_observation_space, "spaces", {})
        if env.catalog.topics is None or "history_item_ids" not in observed:
            raise ValueError(
                "topic_affinity needs a catalog with topics and the observed history "
                "(observation='history'); this environment gives "
                f"{'no topics' if env.catalog.topics is None else 'no history_item_ids'}."
            )

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        self.check(env)
        names, topics = env.catalog.feature_names, env.catalog.topics
        assert topics is not None
        history, candidates = obs["history_item_ids"], obs["candidate_ids"]
        shown = history >= 0
        history_topics = np.where(shown, topics[np.maximum(history, 0)], -1)
        clicked = (obs["history_feedback"][..., 0] > 0) & shown
        # (users, candidates, history rows): does history row t share candidate c's topic?
        same = history_topics[:, None, :] == topics[candidates][:, :, None]
        clicks = (same & clicked[:, None, :]).sum(axis=2)
        scores = (clicks + 1.0) / (same.sum(axis=2) + 2.0)
        for feature in self._weights(names):
            scores = scores * obs["candidate_features"][..., names.index(feature)]
        return scores


class MyopicPredictedPolicy(_ScoringPolicy):
    """Greedy on the predictor's immediate engagement: the candidates with the highest
    predicted watch minutes now (``candidate_scores`` of
    `agents.predictor_env.PredictorObservations`). The deployable myopic recommender."""

    name = "myopic_predicted"
    privileged = False
    uses_predictor = True

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        if "candidate_scores" not in obs:
            raise KeyError(
                "myopic_predicted reads the predictor's candidate_scores: evaluate it on an env "
                "wrapped in agents.predictor_env.PredictorObservations."
            )
        return obs["candidate_scores"][..., SCORE_NAMES.index("watch_time")]


@dataclass
class GreedyRewardModelPolicy(_ScoringPolicy):
    """Greedy on the predictor's reward model (`agents.predictor_env.PredictorReward`):
    each candidate's ``E[watch] + return_weight · P(return) + continuation_weight ·
    P(continue)``, the one-step reward an agent trained on the predictor maximises summed
    over time. An agent that only learns that trade-off does no better than this."""

    return_weight: float = 30.0
    continuation_weight: float = 20.0
    name: str = "greedy_reward_model"
    privileged: bool = False
    uses_predictor: bool = True

    def scores(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        if "candidate_scores" not in obs:
            raise KeyError(
                f"{self.name} reads the predictor's candidate_scores: evaluate it on an env "
                "wrapped in agents.predictor_env.PredictorObservations."
            )
        return reward_model_score(
            obs["candidate_scores"], self.return_weight, self.continuation_weight
        )


def lookahead_oracle(**kwargs: Any) -> Policy:
    """The rollout oracle of `agents.lookahead` (imported on use: it imports this module)."""
    from agents.lookahead import LookaheadOracle

    return LookaheadOracle(**kwargs)


REFERENCE_POLICIES: dict[str, Callable[..., Any]] = {
    "random": RandomPolicy,
    "max_click": MaxClickPolicy,
    "max_click_dot": DotProductPolicy,
    "myopic": MyopicPolicy,
    "max_quality": MaxQualityPolicy,
    "one_step_planner": one_step_planner,
    "oracle_planner": OraclePlanner,
    "max_ctr_estimate": lambda: PublicFeaturePolicy("ctr_estimate"),
    "max_completion_estimate": lambda: PublicFeaturePolicy("completion_estimate"),
    "topic_affinity": TopicAffinityPolicy,
    "lookahead_oracle": lookahead_oracle,
}


def feature_policy(name: str) -> PublicFeaturePolicy | None:
    """``max_<feature>`` / ``min_<feature>`` (a name not in `REFERENCE_POLICIES`) as a
    `PublicFeaturePolicy`; None for any other name. Whether the catalog has the feature
    is checked when it acts."""
    prefix, _, feature = name.partition("_")
    if name in REFERENCE_POLICIES or prefix not in ("max", "min") or not feature:
        return None
    return PublicFeaturePolicy(feature, lowest=prefix == "min")


def is_policy_name(name: str) -> bool:
    """A name `make_policy` builds: a reference policy or a public-feature ranking."""
    return name in REFERENCE_POLICIES or feature_policy(name) is not None


def make_policy(name: str, **kwargs: Any) -> Policy:
    """Build a reference policy by name (see `REFERENCE_POLICIES`; ``max_<feature>`` and
    ``min_<feature>`` rank by any public catalog feature)."""
    by_feature = None if kwargs else feature_policy(name)
    if by_feature is not None:
        return by_feature
    if name not in REFERENCE_POLICIES:
        raise ValueError(
            f"Unknown policy {name!r}.{did_you_mean(name, REFERENCE_POLICIES)} "
            f"Choose from {', '.join(REFERENCE_POLICIES)}, or max_<feature> / "
            "min_<feature> for a public catalog feature."
        )
    return REFERENCE_POLICIES[name](**kwargs)  # type: ignore[no-any-return]


def public_feature_policies(catalog: Any) -> list[PublicFeaturePolicy]:
    """``max_<f>`` and ``min_<f>`` for every public catalog feature ``f`` that varies over
    the catalog (generic rankings any simulator's catalog allows); a feature of two values
    (a one-hot topic, a flag) only ``max_<f>``: its lowest-first ranking is near random."""
    policies = []
    for name, column in zip(catalog.feature_names, np.asarray(catalog.features).T, strict=True):
        values = np.unique(column)
        if values.size > 1:
            policies.append(PublicFeaturePolicy(name))
        if values.size > 2:
            policies.append(PublicFeaturePolicy(name, lowest=True))
    return policies


def policy_names(names: Sequence[str] | None = None) -> list[str]:
    return list(REFERENCE_POLICIES) if names is None else list(names)


def acting_defaults(
    names: Sequence[str], env_id: str, env_options: Mapping[str, Any] | None
) -> list[str]:
    """``names`` that act on the env: a simulator without ``expected_responses`` (a
    custom one) gets the non-privileged ones and its catalog's feature rankings."""
    simulator = env_simulator(env_id, env_options)
    if is_privileged(simulator):
        return list(names)
    kept = [n for n in names if not make_policy(n).privileged]
    return kept + [p.name for p in public_feature_policies(simulator.catalog)]


def env_simulator(env_id: str, env_options: Mapping[str, Any] | None) -> Any:
    """The user simulator of ``env_id`` with ``env_options`` (built once, then closed)."""
    import gymnasium as gym

    env = gym.make(env_id, **dict(env_options or {}))
    env.close()
    return env.unwrapped.simulator  # type: ignore[attr-defined]
