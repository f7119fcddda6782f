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
      agent/               the trained agent (model.zip, config.json, TensorBoard)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agents.collect import collect_logs
from agents.configs import ExperimentConfig, TrainRunConfig
from agents.evaluation import evaluate
from agents.reference_policies import MyopicPredictedPolicy, PopularityPolicy, make_policy
from agents.report import prepare_report_folder, stage, write_evaluation
from agents.training import check_env_id, load_agent, predictor_wrappers, train_agent
from loe_gym.predictor.pipeline import fit_predictor
from loe_gym.predictor.sequences import logged_item_popularity

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
    folder = prepare_report_folder(output, overwrite)
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
    )
    seconds["logs"] = time.perf_counter() - started

    started = stage("experiment", "fit the predictor", progress)
    fit = fit_predictor(folder / "logs", folder / "predictor", config.predictor, progress=progress)
    seconds["predictor"] = time.perf_counter() - started

    run = TrainRunConfig(
        env_id=config.env_id,
        predictor=str(fit.folder.model),
        agent=config.agent,
        eval_every=0,
        checkpoint_every=0,
    )
    steps = config.agent.total_steps
    started = stage(
        "experiment", f"train {config.agent.algorithm.upper()} ({steps} steps)", progress
    )
    training = train_agent(run, folder / "agent", progress=progress)
    seconds["agent"] = time.perf_counter() - started

    started = stage("experiment", "evaluate", progress)
    evaluation = _evaluate(config, folder, progress)
    seconds["evaluation"] = time.perf_counter() - started
    return _write_report(config, folder, evaluation, seconds, training, fit.test)


def _evaluate(config: ExperimentConfig, folder: Path, progress: bool) -> Any:
    """The agent against the baselines, on the same populations."""

    agent, run, service = load_agent(folder / "agent", name="ppo")
    clicks = logged_item_popularity(folder / "logs", service.num_items)
    policies = [
        make_policy("random"),
        PopularityPolicy(clicks),
        MyopicPredictedPolicy(),
        make_policy("myopic"),
        agent,
        make_policy("oracle_planner"),
    ]
    return evaluate(
        config.env_id,
        policies,
        num_users=config.evaluation.num_users,
        seeds=config.evaluation.seeds,
        progress=progress,
        wrappers=predictor_wrappers(run, service, for_training=False),
    )


def _write_report(
    config: ExperimentConfig,
    folder: Path,
    evaluation: Any,
    seconds: dict[str, float],
    training: Any,
    predictor_metrics: dict[str, float],
) -> dict[str, Any]:

    watch = {p: evaluation.metric(p, "total_watch") for p in evaluation.results}
    ctr = {p: evaluation.metric(p, "ctr") for p in evaluation.results}
    headline = {
        "ppo_over_myopic_predicted": watch["ppo"].mean / watch["myopic_predicted"].mean,
        "ppo_fraction_of_oracle": watch["ppo"].mean / watch["oracle_planner"].mean,
        "cis_apart": bool(watch["ppo"].low > watch["myopic_predicted"].high),
        "myopic_predicted_ctr_above_ppo": bool(ctr["myopic_predicted"].mean > ctr["ppo"].mean),
        "myopic_ctr_above_ppo": bool(ctr["myopic"].mean > ctr["ppo"].mean),
    }
    extra = {
        "headline": headline,
        "seconds": seconds,
        "training": training.to_dict(),
        "predictor_metrics": predictor_metrics,
    }
    table = write_evaluation(evaluation, folder, extra=extra)
    (folder / "report.md").write_text(_report(config, headline, seconds, training, table))
    return json.loads((folder / "metrics.json").read_text())


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
    training: Any,
    table: str,
) -> str:
    options = " ".join(_options(config)) or "the defaults"
    reward = (
        "the predictor's reward model (it never reads the simulator's reward)"
        if config.agent.reward_source == "predictor"
        else "the simulator's watch minutes"
    )
    return "\n".join(
        [
            f"# Long-term engagement experiment on `{config.env_id}`",
            "",
            f"Logs of {config.collect.num_users} users under the `{config.collect.policy}` "
            f"logging policy → predictor → PPO ({training.steps} steps on {reward}, the "
            "predictor as state encoder) → evaluation against the baselines on the same "
            "populations.",
            "",
            f"- PPO / myopic-predicted total watch: **{headline['ppo_over_myopic_predicted']:.2f}×**"
            f" (95% CIs apart: {headline['cis_apart']})",
            f"- PPO / oracle planner: **{headline['ppo_fraction_of_oracle']:.0%}**",
            "- CTR above PPO's: myopic (true expected watch) "
            f"{headline['myopic_ctr_above_ppo']}, myopic-predicted "
            f"{headline['myopic_predicted_ctr_above_ppo']}",
            f"- time: logs {seconds['logs']:.0f} s, predictor {seconds['predictor']:.0f} s, "
            f"PPO {seconds['agent']:.0f} s ({training.steps_per_second:.0f} steps/s), "
            f"evaluation {seconds['evaluation']:.0f} s",
            "",
            "Policies: `random`; `popularity` (clicks in the logs); `myopic_predicted` (greedy "
            "on the predictor's expected watch now); `myopic` (greedy on the true expected watch, "
            "privileged); `ppo`; `oracle_planner` (privileged planner, the upper reference).",
            "",
            table,
            f"Options (those not at their defaults): `{options}`; the whole tree is in "
            "config.json.",
            "",
        ]
    )
