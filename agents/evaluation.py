"""Long-term evaluation: run policies over whole user lives and summarise with CIs.

Every policy sees the same populations: under one seed the environment draws the
same users and the same candidate stream whatever the policy does (it keeps users
and retrieval on separate random streams), so differences between policies are not
differences between populations.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from scipy import stats
from tqdm import tqdm

from agents.populations import LocalRunner, ShardTask, shard_seed, shard_sizes
from agents.reference_policies import Policy, make_policy
from loe_gym import RecommendationVectorEnv

METRICS: dict[str, str] = {
    "total_watch": "total watch minutes per user over the horizon",
    "total_clicks": "clicks per user over the horizon",
    "active_days": "days with at least one session, per user",
    "sessions": "sessions per user",
    "episode_length": "steps per user life (RecSim's episode length)",
    "session_length": "items shown per session",
    "session_minutes": "minutes watched per session",
    "next_day_retention": "share of session ends followed by a visit the next day",
    "churn_rate": "share of users who churned before the horizon",
    "ctr": "clicks per item shown",
    "completion": "mean completion of clicked items",
    "coverage": "share of the catalog shown at least once to the population",
    "topic_diversity": "per user, entropy of the topics shown / log(number of topics) "
    "(1 = every topic equally often; NaN without topics)",
}
"""The metrics of a `PopulationResult`, with their meaning."""


@dataclass(frozen=True)
class PopulationResult:
    """Per-user totals of one population under one policy and seed (arrays ``(num_users,)``)."""

    policy: str
    seed: int
    watch: np.ndarray
    clicks: np.ndarray
    impressions: np.ndarray
    steps: np.ndarray
    sessions: np.ndarray
    session_ends: np.ndarray
    next_day_returns: np.ndarray
    churned: np.ndarray
    completion_sum: np.ndarray
    daily_watch: np.ndarray
    """``(horizon_days,)`` mean watch minutes per user on each day."""
    daily_active: np.ndarray
    """``(horizon_days,)`` share of users with a session on each day."""
    daily_satisfaction: np.ndarray
    """``(horizon_days,)`` mean (privileged) satisfaction at the sessions' ends on each
    day; NaN on days without a session end or for simulators without satisfaction."""
    session_lengths: np.ndarray
    """``(num_sessions_ended,)`` items shown in each session that ended."""
    return_gaps: np.ndarray
    """``(num_returns,)`` days between a session end and the next visit (churn excluded)."""
    item_impressions: np.ndarray
    """``(num_items,)`` times each catalog item was shown to the population."""
    topic_impressions: np.ndarray | None
    """``(num_users, num_topics)`` items of each topic shown to each user (None without
    topics)."""
    churn_day: np.ndarray
    """``(num_users,)`` first day each user is gone: the day after the last session of a
    user who churned, ``horizon_days`` for one who stayed."""

    def retention_curve(self) -> np.ndarray:
        """``(horizon_days,)`` share of users who have not churned by each day."""
        horizon = self.daily_watch.size
        return np.array([(self.churn_day > day).mean() for day in range(horizon)])

    def summary(self) -> dict[str, float]:
        """Population-level value of each metric in `METRICS`."""
        sessions = max(float(self.sessions.sum()), 1.0)
        clicks = float(self.clicks.sum())
        return {
            "total_watch": float(self.watch.mean()),
            "total_clicks": float(self.clicks.mean()),
            "active_days": float(self.sessions.mean()),
            "sessions": float(self.sessions.mean()),
            "episode_length": float(self.steps.mean()),
            "session_length": float(self.impressions.sum()) / sessions,
            "session_minutes": float(self.watch.sum()) / sessions,
            "next_day_retention": float(self.next_day_returns.sum())
            / max(float(self.session_ends.sum()), 1.0),
            "churn_rate": float(self.churned.mean()),
            "ctr": clicks / max(float(self.impressions.sum()), 1.0),
            "completion": float(self.completion_sum.sum()) / max(clicks, 1.0),
            "coverage": float((self.item_impressions > 0).mean()),
            "topic_diversity": self._topic_diversity(),
        }

    def _topic_diversity(self) -> float:
        if self.topic_impressions is None or self.topic_impressions.shape[1] < 2:
            return math.nan
        counts = self.topic_impressions
        shown = counts.sum(1, keepdims=True)
        share = np.divide(counts, shown, out=np.zeros_like(counts), where=shown > 0)
        logs = np.log(share, out=np.zeros_like(share), where=share > 0)
        entropy = -(share * logs).sum(1) / math.log(counts.shape[1])
        return float(entropy[shown[:, 0] > 0].mean())


def population_steps(
    env: Any,
    policy: Policy,
    seed: int,
    *,
    max_steps: int = 100_000,
    progress: bool = False,
    description: str | None = None,
    before_step: Callable[[np.ndarray], None] | None = None,
) -> Iterator[tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]]:
    """Step one population through whole lives; yield ``(info, live, done, reward)``
    per step (``reward``: the env's, every slot).

    ``env`` is a `RecommendationVectorEnv` in ``next_step`` autoreset mode, or a vector
    wrapper of one (the policy acts on its ``unwrapped`` core). A slot whose user has
    finished holds a new user afterwards: ``live (num_users,) bool`` marks the steps of
    the population's own users, ``done`` those that ended a life. ``before_step`` gets
    the ``finished`` mask before each step. Raises if users are still active after
    ``max_steps`` steps.
    """
    core = env.unwrapped
    n = core.num_envs
    if callable(start := getattr(policy, "start_population", None)):
        start(seed)  # state kept between populations restarts (agents/populations.py)
    obs, _ = env.reset(seed=seed)
    finished = np.zeros(n, bool)
    label = description or f"{policy.name} seed {seed}"
    with tqdm(total=n, desc=label, disable=not progress, leave=False) as bar:
        for _ in range(max_steps):
            if before_step is not None:
                before_step(finished)
            obs, reward, terminated, truncated, info = env.step(policy.act(obs, core))
            live = info["acted"] & ~finished
            done = (terminated | truncated) & live
            yield info, live, done, reward
            finished |= done
            bar.update(int(done.sum()))
            if finished.all():
                return
    raise RuntimeError(
        f"{n - int(finished.sum())} users still active after max_steps={max_steps} steps; "
        "raise max_steps or set max_episode_steps on the environment."
    )


def run_population(
    env: Any,
    policy: Policy,
    seed: int,
    *,
    progress: bool = False,
    max_steps: int = 100_000,
) -> PopulationResult:
    """Run every user of ``env`` through one whole life (until churn or the horizon).

    Args:
        env: a vector env in ``next_step`` autoreset mode (or a vector wrapper of one,
            e.g. `agents.predictor_env.PredictorObservations`); its ``num_envs`` users
            form the population.
        policy: a batched policy (see `agents.reference_policies`).
        seed: seeds the population, the candidates and the responses.
        max_steps: safety cap on vector steps (raises if reached).
    """
    totals = population_totals(env, policy, seed, progress=progress, max_steps=max_steps)
    return totals.result(policy.name, seed)


def population_totals(
    env: Any, policy: Policy, seed: int, *, progress: bool = False, max_steps: int = 100_000
) -> PopulationTotals:
    """`run_population`'s totals before they become a result (a shard's, to be merged)."""
    totals = PopulationTotals(env.unwrapped)
    for info, live, _, _ in population_steps(
        env, policy, seed, max_steps=max_steps, progress=progress
    ):
        totals.add(info, live)
    return totals


_TOTALS = (
    "watch",
    "clicks",
    "impressions",
    "steps",
    "sessions",
    "session_ends",
    "next_day_returns",
    "churned",
    "completion_sum",
)


_SUMMED = (
    "daily_watch",
    "daily_active",
    "satisfaction_sum",
    "satisfaction_count",
    "item_impressions",
)


class PopulationTotals:
    """Per-user and per-day sums over a population's steps (`run_population`)."""

    def __init__(self, core: RecommendationVectorEnv) -> None:
        n, horizon = core.num_envs, core.config.horizon_days
        self.core, self.n, self.horizon = core, n, horizon
        self.totals = {name: np.zeros(n) for name in _TOTALS}
        self.daily_watch = np.zeros(horizon)
        self.daily_active = np.zeros(horizon)
        self.satisfaction_sum = np.zeros(horizon)
        self.satisfaction_count = np.zeros(horizon)
        self.session_steps = np.zeros(n)
        self.item_impressions = np.zeros(core.catalog.num_items)
        self.topics = core.catalog.topics
        self.topic_impressions = (
            None if self.topics is None else np.zeros((n, int(self.topics.max()) + 1))
        )
        self.churn_day = np.full(n, horizon)
        self.session_lengths: list[np.ndarray] = []
        self.return_gaps: list[np.ndarray] = []

    def add(self, info: Mapping[str, Any], live: np.ndarray) -> None:
        """One vector step's ``info``; ``live`` marks the population's users still in it."""
        totals = self.totals
        watch = info["reward_parts"]["watch_time"] * live
        totals["watch"] += watch
        totals["clicks"] += info["reward_parts"]["click"] * live
        totals["impressions"] += info["slate"].shape[1] * live
        totals["steps"] += live
        starts = live & (info["step_in_session"] == 0)
        totals["sessions"] += starts
        totals["session_ends"] += info["session_end"] & live
        totals["next_day_returns"] += info["returned_next_day"] & live
        totals["churned"] += info["churned"] & live
        totals["completion_sum"] += (info["completion"] * info["clicked"]).sum(axis=1) * live
        self._add_impressions(info["slate"][live], live)
        day = np.minimum(info["day"], self.horizon - 1)
        churning = info["churned"] & live
        self.churn_day[churning] = info["day"][churning] + 1
        np.add.at(self.daily_watch, day, watch)
        np.add.at(self.daily_active, day[starts], 1.0)
        self._add_session_ends(info, live, day)

    def _add_impressions(self, shown: np.ndarray, live: np.ndarray) -> None:
        self.item_impressions += np.bincount(shown.ravel(), minlength=self.item_impressions.size)
        topic_impressions, topics = self.topic_impressions, self.topics
        if topic_impressions is not None and topics is not None:
            # One bincount over (user, topic) cells: np.add.at is several times slower.
            num_topics = topic_impressions.shape[1]
            users = np.repeat(np.flatnonzero(live), shown.shape[1])
            cells = users * num_topics + topics[shown.ravel()]
            topic_impressions += np.bincount(cells, minlength=topic_impressions.size).reshape(
                topic_impressions.shape
            )

    def _add_session_ends(self, info: Mapping[str, Any], live: np.ndarray, day: np.ndarray) -> None:
        self.session_steps = np.where(info["acted"], self.session_steps + 1, 0)
        ended = info["session_end"] & live
        if ended.any():
            self.session_lengths.append(self.session_steps[ended])
            returning = ended & ~info["churned"]
            self.return_gaps.append(info["gap_days"][returning])
            satisfaction = getattr(self.core.state, "satisfaction", None)
            if satisfaction is not None:
                # Users reset this step hold a new life's state; `ended` excludes them.
                horizon = self.horizon
                self.satisfaction_sum += np.bincount(day[ended], satisfaction[ended], horizon)
                self.satisfaction_count += np.bincount(day[ended], minlength=horizon)
        self.session_steps = np.where(info["session_end"], 0, self.session_steps)

    def detached(self) -> PopulationTotals:
        """These totals without their environment (to send them to another process)."""
        self.core = None  # type: ignore[assignment]
        return self

    @staticmethod
    def merge(parts: Sequence[PopulationTotals]) -> PopulationTotals:
        """The totals of ``parts`` (shards of one population, in shard order) as one
        population's: per-user arrays concatenated, the rest summed in order."""
        merged = copy.copy(parts[0])
        merged.n = sum(part.n for part in parts)
        merged.totals = {
            name: np.concatenate([part.totals[name] for part in parts]) for name in _TOTALS
        }
        for name in _SUMMED:
            values = [getattr(part, name) for part in parts]
            setattr(merged, name, functools.reduce(np.add, values))
        for name in ("churn_day", "session_steps"):
            setattr(merged, name, np.concatenate([getattr(part, name) for part in parts]))
        if merged.topic_impressions is not None:
            merged.topic_impressions = np.concatenate([p.topic_impressions for p in parts])
        merged.session_lengths = [a for part in parts for a in part.session_lengths]
        merged.return_gaps = [a for part in parts for a in part.return_gaps]
        return merged

    def result(self, policy: str, seed: int) -> PopulationResult:
        n, horizon = self.n, self.horizon
        return PopulationResult(
            policy=policy,
            seed=seed,
            **self.totals,
            daily_watch=self.daily_watch / n,
            daily_active=self.daily_active / n,
            daily_satisfaction=np.divide(
                self.satisfaction_sum,
                self.satisfaction_count,
                out=np.full(horizon, np.nan),
                where=self.satisfaction_count > 0,
            ),
            session_lengths=(
                np.concatenate(self.session_lengths) if self.session_lengths else np.zeros(0)
            ),
            return_gaps=(
                np.concatenate(self.return_gaps) if self.return_gaps else np.zeros(0, np.int64)
            ),
            item_impressions=self.item_impressions,
            topic_impressions=self.topic_impressions,
            churn_day=self.churn_day,
        )


@dataclass(frozen=True)
class MetricSummary:
    """Mean over seeds and the half-width of its 95% t-interval."""

    mean: float
    half_width: float
    values: tuple[float, ...]

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def __str__(self) -> str:
        digits = 1 if abs(self.mean) >= 100 else 2 if abs(self.mean) >= 1 else 3
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def summarise(values: Sequence[float]) -> MetricSummary:
    """Mean and 95% CI half-width (Student t over seeds; 0 for a single seed)."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if array.size < 2:
        return MetricSummary(mean, math.nan, tuple(array.tolist()))
    half = float(stats.t.ppf(0.975, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size))
    return MetricSummary(mean, half, tuple(array.tolist()))


@dataclass(frozen=True)
class Evaluation:
    """Results of several policies over several seeds."""

    env_id: str
    num_users: int
    seeds: tuple[int, ...]
    results: Mapping[str, tuple[PopulationResult, ...]]

    def metric(self, policy: str, name: str) -> MetricSummary:
        return summarise([r.summary()[name] for r in self.results[policy]])

    def table(
        self,
        metrics: Sequence[str] = (
            "total_watch",
            "active_days",
            "next_day_retention",
            "ctr",
            "session_length",
        ),
    ) -> str:
        """A markdown table: one row per policy, mean ± 95% CI half-width per metric."""
        header = "| policy | " + " | ".join(metrics) + " |"
        rule = "|" + "---|" * (len(metrics) + 1)
        rows = [
            "| " + policy + " | " + " | ".join(str(self.metric(policy, m)) for m in metrics) + " |"
            for policy in self.results
        ]
        return "\n".join([header, rule, *rows])

    def ratio(self, numerator: str, denominator: str, metric: str = "total_watch") -> float:
        return self.metric(numerator, metric).mean / self.metric(denominator, metric).mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "num_users": self.num_users,
            "seeds": list(self.seeds),
            "policies": {
                policy: {
                    name: {
                        "mean": s.mean,
                        "ci95_half_width": s.half_width,
                        "per_seed": list(s.values),
                    }
                    for name in METRICS
                    for s in [self.metric(policy, name)]
                }
                for policy in self.results
            },
        }


def evaluate(
    env_id: str,
    policies: Sequence[str | Policy],
    *,
    num_users: int = 2000,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    env_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    policy_factory: Callable[[str], Policy] = make_policy,
    wrappers: Sequence[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]] = (),
    users_per_shard: int = 0,
    runner: Any = None,
) -> Evaluation:
    """Evaluate ``policies`` on ``num_users`` users of ``env_id`` for each seed.

    Each population runs as shards of ``users_per_shard`` users (0: one shard) on
    ``runner`` (`agents.populations.LocalRunner` by default, `~agents.populations.RayRunner`
    to spread them over a Ray cluster); the metrics do not depend on the runner.

    ``wrappers`` (e.g. `agents.predictor_env.PredictorObservations`) are applied, in
    order, for the policies with ``uses_predictor = True``; the others act on the plain
    environment. The population and candidate stream of a seed are the same either way.
    """
    from agents.training import check_env_id

    check_env_id(env_id)
    if num_users < 1:
        raise ValueError(f"num_users must be ≥ 1, got {num_users}.")
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. seeds=(0, 1, 2, 3, 4).")
    if len(set(seeds)) < len(seeds):
        raise ValueError(
            f"seeds repeat in {tuple(seeds)}: a repeated seed repeats a population, and the "
            "CIs would count it as independent. Give distinct seeds, e.g. (0, 1, 2)."
        )
    made = [policy_factory(entry) if isinstance(entry, str) else entry for entry in policies]
    for policy in made:
        if getattr(policy, "uses_predictor", False) and not wrappers:
            raise ValueError(
                f"Policy {policy.name!r} reads the predictor's observations; pass "
                "wrappers=[lambda env: PredictorObservations(env, service)]."
            )
    sizes = shard_sizes(num_users, users_per_shard)
    tasks = [
        ShardTask(env_id, env_options, policy, wrappers, shard_seed(seed, index), size)
        for policy in made
        for seed in seeds
        for index, size in enumerate(sizes)
    ]
    parts = iter((runner or LocalRunner()).map(tasks, progress=progress))
    results = {
        policy.name: tuple(
            PopulationTotals.merge([next(parts) for _ in sizes]).result(policy.name, seed)
            for seed in seeds
        )
        for policy in made
    }
    return Evaluation(env_id=env_id, num_users=num_users, seeds=tuple(seeds), results=results)


TABLE_METRICS = ("total_watch", "active_days", "next_day_retention", "ctr", "session_length")
"""The columns of ``simulate`` / ``calibrate`` tables on an env whose users return."""
SESSION_METRICS = ("total_watch", "episode_length", "ctr", "total_clicks")
"""The columns on a one-session env (`EnvFacts.multi_day` False): days do not apply."""


def table_metrics(env_id: str) -> tuple[str, ...]:
    """The metrics that apply to ``env_id``'s users (see `loe_gym.registration.EnvFacts`)."""
    from loe_gym.registration import env_facts

    return TABLE_METRICS if env_facts(env_id).multi_day else SESSION_METRICS


def report_metrics(env_id: str) -> tuple[str, ...]:
    """The columns of an ``evaluate`` report on ``env_id``."""
    from agents.report import REPORT_METRICS
    from loe_gym.registration import env_facts

    if env_facts(env_id).multi_day:
        return REPORT_METRICS
    return (*SESSION_METRICS, "coverage", "topic_diversity")


def policy_table(
    config: Any, *, progress: bool = True, runner: Any = None
) -> tuple[str, dict[str, Any]]:
    """The reference policies of a `PolicyTableConfig` over its populations:
    ``(markdown table with legend, metrics as a JSON-able dict)``; ``runner`` as `evaluate`'s."""
    import time

    from agents.reference_policies import acting_defaults
    from loe_gym.registration import env_facts

    policies = config.policies or acting_defaults(
        env_facts(config.env_id).reference_policies, config.env_id, config.env_options
    )
    _check_policy_names(policies)
    started = time.perf_counter()
    result = evaluate(
        config.env_id,
        [_reference_policy(name, config.lookahead) for name in policies],
        num_users=config.evaluation.num_users,
        seeds=config.evaluation.seeds,
        users_per_shard=config.evaluation.users_per_shard,
        runner=runner,
        env_options=config.env_options,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    metrics = table_metrics(config.env_id)
    legend = "\n".join(f"- `{m}`: {METRICS[m]}" for m in metrics)
    where = f" with {config.env_options}" if config.env_options else ""
    text = (
        f"{config.env_id}{where}: {config.evaluation.num_users} users per population, seeds "
        f"{list(config.evaluation.seeds)}; mean ± 95% CI half-width over seeds.\n\n"
        f"{result.table(metrics)}\n\n{legend}\n"
    )
    return text, result.to_dict() | {"seconds": seconds}


def evaluate_runs(
    config: Any, *, progress: bool = True, trust_pickle: bool = False, runner: Any = None
) -> Evaluation:
    """Trained agents (``loe-gym train`` folders) and baselines of an `EvaluateConfig`,
    on the same populations (run by ``runner``, as in `evaluate`). Agents that read the
    predictor must share one. SB3 zips of
    older runs are loaded only with ``trust_pickle`` (see `agents.training.load_agent`)."""
    from agents.training import check_env_id, load_agent, predictor_wrappers

    check_env_id(config.env_id)
    policies: list[Any] = []
    service, wrap_config = None, None
    env_options = config.env_options
    for run in config.agents:
        policy, run_config, agent_service = load_agent(
            run, name=Path(run).name, trust_pickle=trust_pickle
        )
        if run_config.env_id != config.env_id:
            raise ValueError(
                f"{run} was trained on {run_config.env_id}, not --env-id {config.env_id}."
            )
        if env_options is None:
            env_options = run_config.env_options
        if agent_service is not None:
            _check_shared_predictor(wrap_config, run_config, run)
            service, wrap_config = agent_service, run_config
        policies.append(policy)
    baselines, service, wrap_config = _baselines(
        config, service, wrap_config, policies, env_options
    )
    policies += baselines
    wrappers = (
        predictor_wrappers(wrap_config, service, for_training=False)
        if service is not None and wrap_config is not None
        else []
    )
    from agents.lookahead import include_rivals

    include_rivals(policies, wrappers, config.env_id, env_options)
    return evaluate(
        config.env_id,
        policies,
        env_options=env_options,
        num_users=config.evaluation.num_users,
        seeds=config.evaluation.seeds,
        users_per_shard=config.evaluation.users_per_shard,
        runner=runner,
        progress=progress,
        wrappers=wrappers,
    )


def _check_policy_names(names: Sequence[str]) -> None:
    from agents.reference_policies import REFERENCE_POLICIES, is_policy_name
    from loe_gym.errors import did_you_mean

    for name in names:
        if not is_policy_name(name):
            raise ValueError(
                f"Unknown policy {name!r}.{did_you_mean(name, REFERENCE_POLICIES)} "
                f"Choose from {', '.join(REFERENCE_POLICIES)}."
            )


def _check_shared_predictor(current: Any, new: Any, run: str) -> None:
    if current is None:
        return

    def observed(config: Any) -> tuple[Any, int, int]:
        agent = config.agent
        return config.predictor, agent.encoder_history_length, agent.item_vector_size

    if observed(current) != observed(new):
        raise ValueError(
            "All --agents must share one predictor, encoder history length and item vector "
            f"size {observed(current)}; {run} uses {observed(new)}. Evaluate them separately."
        )


def _baselines(
    config: Any,
    service: Any,
    wrap_config: Any,
    agents: Sequence[Any] = (),
    env_options: Mapping[str, Any] | None = None,
) -> tuple[list[Any], Any, Any]:
    """The baselines' policies, and the predictor ``myopic_predicted`` acts on; the
    lookahead oracle's portfolio also holds ``agents``, the runs it is judged against."""
    from agents.configs import EVALUATE_BASELINES, TrainRunConfig
    from agents.reference_policies import (
        REFERENCE_POLICIES,
        GreedyRewardModelPolicy,
        MyopicPredictedPolicy,
        PopularityPolicy,
        is_policy_name,
    )
    from loe_gym.errors import did_you_mean

    policies: list[Any] = []
    for name in config.baselines:
        if name not in EVALUATE_BASELINES and not is_policy_name(name):
            known = sorted({*EVALUATE_BASELINES, *REFERENCE_POLICIES})
            raise ValueError(
                f"Unknown baseline {name!r}.{did_you_mean(name, known)} Choose from "
                f"{', '.join(known)}."
            )
        if name == "popularity":
            if config.logs is None:
                raise ValueError("The popularity baseline counts clicks in logs: pass --logs DIR.")
            clicks = _item_clicks(config.logs, config.env_id, env_options)
            policies.append(PopularityPolicy(clicks))
        elif name in ("myopic_predicted", "greedy_reward_model"):
            if service is None:
                if config.predictor is None:
                    raise ValueError(
                        f"{name} needs the predictor: pass --predictor DIR or an agent "
                        "trained with one."
                    )
                from loe_gym.predictor.serving import PredictorService

                service = PredictorService.from_pretrained(config.predictor)
                wrap_config = TrainRunConfig(env_id=config.env_id, predictor=config.predictor)
            policies.append(
                MyopicPredictedPolicy() if name == "myopic_predicted" else GreedyRewardModelPolicy()
            )
        else:
            policies.append(_reference_policy(name, config.lookahead, agents))
    return policies, service, wrap_config


def _reference_policy(name: str, lookahead: Any, agents: Sequence[Any] = ()) -> Policy:
    """The reference policy ``name``; ``lookahead_oracle`` with the ``lookahead`` settings
    and ``agents`` in its portfolio."""
    if name == "lookahead_oracle":
        return make_policy(name, config=lookahead, extra=agents)
    return make_policy(name)


def _item_clicks(logs: str, env_id: str, env_options: Mapping[str, Any] | None) -> np.ndarray:
    """Clicks per catalog item in ``logs``, sized from the catalog of the env evaluated
    (``env_id`` with its ``env_options``: a custom simulator's catalog, not the default)."""
    from loe_gym.predictor.sequences import logged_item_popularity

    env = gym.make(env_id, **dict(env_options or {}))
    num_items = int(env.unwrapped.catalog.num_items)  # type: ignore[attr-defined]
    env.close()
    return logged_item_popularity(logs, num_items)
