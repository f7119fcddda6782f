"""The end-to-end experiment (``loe-gym experiment``, the README's first command).

simulate logs under a logging policy → fit the predictor on them → train PPO with the
predictor as state encoder and reward model → evaluate it against the baselines on the
same user populations → write a report folder::

    report/
      report.md            the headline ratios, the table, the plots, how to rerun
      metrics.json         every metric per policy and seed, the ratios, the timings
      config.json          the experiment's config (all nested configs)
      *.png                engagement per day, retention, satisfaction, total watch
      logs/                the interaction logs (Parquet)
      predictor/           the fitted predictor (model/, metrics.json, report.md)
      agent/               the trained agent (agent.safetensors + .json, config.json)
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.aggregate import aggregate_runs, reach_summary, steps_to_reach
from agents.collect import collect_logs
from agents.configs import ExperimentConfig, TrainRunConfig
from agents.evaluation import evaluate
from agents.lookahead import include_rivals
from agents.reference_policies import (
    GreedyRewardModelPolicy,
    MyopicPredictedPolicy,
    PopularityPolicy,
    env_simulator,
    make_policy,
)
from agents.report import plot_learning_curves, stage, write_evaluation
from agents.training import (
    AgentRunFolder,
    check_env_id,
    load_agent,
    predictor_wrappers,
    train_agent,
)
from loe_gym.predictor.pipeline import fit_predictor
from loe_gym.predictor.sequences import logged_item_popularity
from loe_gym.run_folders import finish_run_folder, prepare_run_folder
from loe_gym.simulator import is_privileged

__all__ = ["ExperimentConfig", "run_experiment"]


def run_experiment(
    config: ExperimentConfig,
    output: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole experiment into ``output`` (refused if it exists, unless
    ``overwrite``); return the metrics written to ``metrics.json``."""

    check_env_id(config.env_id)
    folder = prepare_run_folder(output, "experiment", overwrite=overwrite)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    seconds: dict[str, float] = {}

    started = stage("experiment", "simulate logs", progress)
    collect = config.collect
    collect_logs(
        config.env_id,
        num_users=collect.num_users,
        path=folder / "logs",
        policy=collect.policy,
        seed=collect.seed,
        progress=progress,
        env_options=config.env_options,
    )
    seconds["logs"] = time.perf_counter() - started

    started = stage("experiment", "fit the predictor", progress)
    fit = fit_predictor(folder / "logs", folder / "predictor", config.predictor, progress=progress)
    seconds["predictor"] = time.perf_counter() - started

    steps = config.agent.total_steps
    trainings = []
    started = time.perf_counter()
    for agent in agent_runs(config, folder):
        run = TrainRunConfig(
            env_id=config.env_id,
            env_options=config.env_options,
            predictor=str(fit.folder.model),
            agent=config.agent.replace(seed=agent.seed),
            eval_users=config.curve_users,
            eval_every=-(-steps // config.curve_points) if config.curve_points else 0,
            checkpoint_every=0,
        )
        algorithm = config.agent.algorithm.upper()
        stage("experiment", f"train {algorithm} seed {agent.seed} ({steps} steps)", progress)
        trainings.append(train_agent(run, agent.folder, progress=progress))
    seconds["agent"] = time.perf_counter() - started

    started = stage("experiment", "evaluate", progress)
    evaluation = _evaluate(config, folder, progress)
    seconds["evaluation"] = time.perf_counter() - started
    metrics = _write_report(config, folder, evaluation, seconds, trainings, fit.test)
    finish_run_folder(folder, "experiment")
    return metrics


@dataclasses.dataclass(frozen=True)
class AgentRun:
    """One trained agent of the experiment: its name in the evaluation, seed and folder."""

    name: str
    seed: int
    folder: Path


def agent_runs(config: ExperimentConfig, folder: Path) -> list[AgentRun]:
    """The agents to train: one seed is ``ppo`` in ``agent/``; several are ``ppo_seed<s>``
    in ``agents/seed_<s>/``."""
    seeds = config.training_seeds or (config.agent.seed,)
    if len(seeds) == 1:
        return [AgentRun("ppo", seeds[0], folder / "agent")]
    return [AgentRun(f"ppo_seed{s}", s, folder / "agents" / f"seed_{s}") for s in seeds]


def _evaluate(config: ExperimentConfig, folder: Path, progress: bool) -> Any:
    """The agents against the baselines, on the same populations."""

    loaded = [load_agent(agent.folder, name=agent.name) for agent in agent_runs(config, folder)]
    run, service = loaded[0][1], loaded[0][2]  # the agents share the one predictor
    clicks = logged_item_popularity(folder / "logs", service.num_items)
    # The one-step privileged baselines read expected_responses; a simulator without it
    # is judged against the rest (the lookahead oracle needs only forks of the env).
    expected = is_privileged(env_simulator(config.env_id, config.env_options))
    policies = [
        make_policy("random"),
        PopularityPolicy(clicks),
        MyopicPredictedPolicy(),
        GreedyRewardModelPolicy(config.agent.return_weight, config.agent.continuation_weight),
        *([make_policy("myopic")] if expected else []),
        *(agent for agent, _, _ in loaded),
        *([make_policy("oracle_planner")] if expected else []),
        make_policy("lookahead_oracle", config=config.lookahead),
    ]
    wrappers = predictor_wrappers(run, service, for_training=False)
    include_rivals(policies, wrappers, config.env_id, config.env_options)
    return evaluate(
        config.env_id,
        policies,
        env_options=config.env_options,
        num_users=config.evaluation.num_users,
        seeds=config.evaluation.seeds,
        users_per_shard=config.evaluation.users_per_shard,
        progress=progress,
        wrappers=wrappers,
    )


def _write_report(
    config: ExperimentConfig,
    folder: Path,
    evaluation: Any,
    seconds: dict[str, float],
    trainings: list[Any],
    predictor_metrics: dict[str, float],
) -> dict[str, Any]:
    runs = agent_runs(config, folder)
    agents = [agent.name for agent in runs]
    others = [p for p in evaluation.results if p not in agents]
    # (runs, populations) total watch: the agents' runs are their training seeds.
    scores = {
        name: np.array(
            [
                [r.watch.mean() for r in evaluation.results[n]]
                for n in (agents if name == "ppo" else [name])
            ]
        )
        for name in ["ppo", *others]
    }
    aggregates = aggregate_runs(scores)
    level = {name: a.mean for name, a in aggregates.items()}
    ctr = {p: evaluation.metric(p, "ctr").mean for p in others}
    ctr["ppo"] = float(np.mean([evaluation.metric(n, "ctr").mean for n in agents]))
    curves = [_curve(agent.folder) for agent in runs]
    reach = {
        f"{fraction:.0%}": steps_to_reach(curves, fraction * level["lookahead_oracle"]).tolist()
        for fraction in (0.8, 0.9)
    }
    headline = {
        "ppo_over_myopic_predicted": level["ppo"] / level["myopic_predicted"],
        # None where the simulator has no expected_responses for the privileged baselines.
        "ppo_fraction_of_oracle": (
            level["ppo"] / level["oracle_planner"] if "oracle_planner" in level else None
        ),
        "ppo_fraction_of_lookahead": level["ppo"] / level["lookahead_oracle"],
        "ppo_over_greedy_reward_model": level["ppo"] / level["greedy_reward_model"],
        "cis_apart": bool(aggregates["ppo"].mean_ci[0] > aggregates["myopic_predicted"].mean_ci[1]),
        "myopic_predicted_ctr_above_ppo": bool(ctr["myopic_predicted"] > ctr["ppo"]),
        "myopic_ctr_above_ppo": bool(ctr["myopic"] > ctr["ppo"]) if "myopic" in ctr else None,
        "steps_to_reach_lookahead": reach,
    }
    extra = {
        "headline": headline,
        "aggregates": {name: dataclasses.asdict(a) for name, a in aggregates.items()},
        "learning_curves": curves,
        "seconds": seconds,
        "training": [t.to_dict() for t in trainings],
        "predictor_metrics": predictor_metrics,
    }
    table = write_evaluation(evaluation, folder, extra=extra)
    if any(curves):
        plot_learning_curves(curves, {p: level[p] for p in others}, folder / "learning_curve.png")
    summary = _aggregate_table(aggregates, reach, any(curves))
    report = _report(config, headline, seconds, trainings, summary + "\n" + table)
    (folder / "report.md").write_text(report)
    return json.loads((folder / "metrics.json").read_text())


def _curve(folder: Path) -> list[tuple[int, float]]:
    """``(steps, held-out total watch)`` of a run's evaluation callback (empty without)."""
    path = AgentRunFolder(folder).evaluations
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(int(row["steps"]), float(row["total_watch"])) for row in rows]


def _aggregate_table(
    aggregates: dict[str, Any], reach: dict[str, list[float]], curves: bool
) -> str:
    lines = [
        "Total watch over (training seed, population) pairs: interquartile mean and mean with "
        "stratified-bootstrap 95 % CIs (rliable).",
        "",
        "| policy | runs | IQM [95 % CI] | mean [95 % CI] |",
        "|---|---|---|---|",
        *(
            f"| {name} | {a.runs} | {a} | {a.mean:.1f} [{a.mean_ci[0]:.1f}, {a.mean_ci[1]:.1f}] |"
            for name, a in aggregates.items()
        ),
        "",
    ]
    if curves:
        lines += [
            "Environment steps for the agents' held-out total watch to reach a share of the "
            "lookahead oracle's (step 0 is the untrained policy; mean over the runs that "
            "reached it, percentile-bootstrap 95 % CI over runs):",
            "",
            *(f"- {share}: {reach_summary(steps)}" for share, steps in reach.items()),
            "",
            "![learning_curve](learning_curve.png)",
            "",
        ]
    return "\n".join(lines)


def _options(config: Any, prefix: str = "") -> list[str]:
    """``name=value`` of every option that differs from its default, dotted for nested ones."""
    defaults = type(config)()
    changed = []
    for path, _, _ in config.leaves():
        value, default = _get(config, path), _get(defaults, path)
        if value != default:
            changed.append(f"{prefix}{path}={value}")
    return changed


def _get(config: Any, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


def _report(
    config: ExperimentConfig,
    headline: dict[str, Any],
    seconds: dict[str, float],
    trainings: list[Any],
    table: str,
) -> str:
    options = " ".join(_options(config)) or "the defaults"
    planner = headline["ppo_fraction_of_oracle"]
    myopic_ctr = headline["myopic_ctr_above_ppo"]
    reward = {
        "predictor": "the predictor's reward model (it never reads the simulator's reward)",
        "hybrid": "the simulator's watch minutes plus the reward model's long-term terms",
    }.get(config.agent.reward_source, "the simulator's watch minutes")
    return "\n".join(
        [
            f"# Long-term engagement experiment on `{config.env_id}`",
            "",
            f"Logs of {config.collect.num_users} users under the `{config.collect.policy}` "
            f"logging policy → predictor → PPO ({len(trainings)} training seed(s), "
            f"{trainings[0].steps} steps each on {reward}, the "
            "predictor as state encoder) → evaluation against the baselines on the same "
            "populations.",
            "",
            f"- PPO / myopic-predicted total watch: **{headline['ppo_over_myopic_predicted']:.2f}×**"
            f" (95% CIs apart: {headline['cis_apart']})",
            f"- PPO / lookahead oracle (the upper bound): "
            f"**{headline['ppo_fraction_of_lookahead']:.0%}**"
            + ("" if planner is None else f"; PPO / oracle planner: {planner:.0%}"),
            f"- PPO / greedy on its own reward model: "
            f"**{headline['ppo_over_greedy_reward_model']:.2f}×**",
            "- CTR above PPO's: "
            + ("" if myopic_ctr is None else f"myopic (true expected watch) {myopic_ctr}, ")
            + f"myopic-predicted {headline['myopic_predicted_ctr_above_ppo']}",
            f"- time: logs {seconds['logs']:.0f} s, predictor {seconds['predictor']:.0f} s, "
            f"PPO {seconds['agent']:.0f} s "
            f"({np.mean([t.steps_per_second for t in trainings]):.0f} steps/s), "
            f"evaluation {seconds['evaluation']:.0f} s",
            "",
            "Policies: `random`; `popularity` (clicks in the logs); `myopic_predicted` (greedy "
            "on the predictor's expected watch now); `greedy_reward_model` (greedy on the reward "
            "PPO is trained on); `myopic` (greedy on the true expected watch, privileged); `ppo`; "
            "`oracle_planner` (privileged one-step planner); `lookahead_oracle` (privileged "
            "rollouts of the true simulator, the upper reference). `myopic` and "
            "`oracle_planner` need the simulator's `expected_responses`; without it they are "
            "left out.",
            "",
            table,
            f"Options (those not at their defaults): `{options}`; the whole tree is in "
            "config.json.",
            "",
        ]
    )
