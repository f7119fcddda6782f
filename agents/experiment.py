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

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loe_gym.config import FrozenConfig

__all__ = ["ExperimentConfig", "run_experiment"]


@dataclass(frozen=True)
class ExperimentConfig(FrozenConfig):
    """Sizes of `run_experiment` (``loe-gym experiment --help``; ``--quick`` for a smoke
    run)."""

    env_id: str = "loe_gym/Engagement-v0"
    """Registered environment id."""
    log_users: int = 2000
    """Users in the logs the predictor learns from."""
    logging_policy: str = "mixed"
    """Policy that writes the logs: ``mixed`` (random 40 %, myopic 30 %, oracle planner
    30 % per user, see agents/collect.py) or a reference policy's name."""
    predictor_steps: int = 800
    """Optimizer steps per fine-tuning epoch of the predictor."""
    predictor_epochs: int = 1
    """Fine-tuning epochs of the predictor."""
    predictor_hidden_size: int = 64
    """Width of the predictor's transformer."""
    predictor_layers: int = 2
    """Layers of the predictor's transformer."""
    agent_steps: int = 900_000
    """PPO's budget in environment steps."""
    agent_users: int = 1024
    """Users simulated side by side while PPO trains."""
    reward: str = "predictor"
    """PPO's reward: ``predictor`` (the reward model) or ``simulator``."""
    return_weight: float = 30.0
    """Reward model: minutes per unit of predicted next-day return probability gained
    over the average candidate (see agents/predictor_env.py)."""
    continuation_weight: float = 20.0
    """Reward model: minutes per unit of predicted session-continuation probability gained
    over the average candidate."""
    history_length: int = 10
    """History rows the predictor's transformer sees per step."""
    eval_users: int = 300
    """Users per evaluation population."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Evaluation population seeds (the logs use seed 100, training users seed 0 + …)."""
    seed: int = 0
    """Seeds the predictor and the agent."""
    threads: int = 0
    """torch threads (0 = torch's default)."""
    progress: bool = True
    """Progress bars."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_positive("log_users", "predictor_steps", "predictor_epochs")
        self._check_positive("predictor_hidden_size", "predictor_layers", "agent_steps")
        self._check_positive("agent_users", "history_length", "eval_users")
        self._check_nonnegative("return_weight", "continuation_weight", "threads")
        if not self.seeds:
            raise ValueError("seeds must name at least one evaluation seed, e.g. (0, 1, 2, 3, 4).")

    @classmethod
    def quick(cls, **overrides: Any) -> ExperimentConfig:
        """A smoke-test size: a couple of minutes on two CPU cores, numbers meaningless."""
        values: dict[str, Any] = {
            "log_users": 150,
            "predictor_steps": 25,
            "predictor_epochs": 1,
            "predictor_hidden_size": 16,
            "predictor_layers": 1,
            "agent_steps": 8192,
            "agent_users": 64,
            "eval_users": 64,
            "seeds": (0, 1),
        }
        values.update(overrides)
        return cls(**values)


def run_experiment(
    config: ExperimentConfig, output: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Run the whole experiment into ``output`` (refused if it exists, unless
    ``overwrite``); return the metrics written to ``metrics.json``."""
    import torch

    from agents.baselines import MyopicPredictedPolicy, PopularityPolicy, make_policy
    from agents.collect import collect_logs
    from agents.evaluation import evaluate
    from agents.report import prepare_report_folder, stage, write_evaluation
    from agents.training import TrainConfig, load_agent, predictor_wrappers, train_agent
    from loe_gym.predictor.data import item_popularity, load_sequences
    from loe_gym.predictor.pipeline import FitPredictorConfig, fit_predictor

    folder = prepare_report_folder(output, overwrite)
    if config.threads:
        torch.set_num_threads(config.threads)
    fit_config = FitPredictorConfig(
        hidden_size=config.predictor_hidden_size,
        num_hidden_layers=config.predictor_layers,
        finetune_epochs=config.predictor_epochs,
        steps_per_epoch=config.predictor_steps,
        gru_epochs=0,
        seed=config.seed,
        progress=config.progress,
    )
    agent_config = TrainConfig(
        algorithm="ppo",
        env_id=config.env_id,
        encoder="frozen",
        reward=config.reward,
        predictor=str(folder / "predictor" / "model"),
        history_length=min(config.history_length, fit_config.max_history_length),
        return_weight=config.return_weight,
        continuation_weight=config.continuation_weight,
        total_steps=config.agent_steps,
        num_users=config.agent_users,
        seed=config.seed,
        eval_every=0,
        checkpoint_every=0,
        progress=config.progress,
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "experiment": config.to_dict(),
                "predictor": fit_config.to_dict(),
                "agent": agent_config.to_dict(),
            },
            indent=2,
        )
        + "\n"
    )
    seconds: dict[str, float] = {}

    started = stage("experiment", "simulate logs", config.progress)
    # Seed 100: the logged population is not one of the evaluation populations.
    collect_logs(
        config.env_id,
        num_users=config.log_users,
        path=folder / "logs",
        policy=config.logging_policy,
        seed=100,
        progress=config.progress,
    )
    seconds["logs"] = time.perf_counter() - started

    started = stage("experiment", "fit the predictor", config.progress)
    fit = fit_predictor(folder / "logs", folder / "predictor", fit_config)
    seconds["predictor"] = time.perf_counter() - started

    started = stage("experiment", f"train PPO ({config.agent_steps} steps)", config.progress)
    training = train_agent(agent_config, folder / "agent")
    seconds["agent"] = time.perf_counter() - started

    started = stage("experiment", "evaluate", config.progress)
    agent, _, service = load_agent(folder / "agent", name="ppo")
    sequences, _ = load_sequences(folder / "logs", num_items=service.num_items)
    clicks = item_popularity(sequences, service.num_items)
    policies = [
        make_policy("random"),
        PopularityPolicy(clicks),
        MyopicPredictedPolicy(),
        make_policy("myopic"),
        agent,
        make_policy("oracle_planner"),
    ]
    evaluation = evaluate(
        config.env_id,
        policies,
        num_users=config.eval_users,
        seeds=config.seeds,
        progress=config.progress,
        wrappers=predictor_wrappers(agent_config, service, for_training=False),
    )
    seconds["evaluation"] = time.perf_counter() - started

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
        "training": training,
        "predictor_metrics": fit["test"],
    }
    table = write_evaluation(evaluation, folder, extra=extra)
    report = _report(config, headline, seconds, training, table)
    (folder / "report.md").write_text(report)
    return json.loads((folder / "metrics.json").read_text())


def _report(
    config: ExperimentConfig,
    headline: dict[str, Any],
    seconds: dict[str, float],
    training: dict[str, Any],
    table: str,
) -> str:
    fields = [f for f in dataclasses.fields(config) if f.name not in ("progress", "threads")]
    options = " ".join(f"{f.name}={getattr(config, f.name)}" for f in fields)
    reward = (
        "the predictor's reward model (it never reads the simulator's reward)"
        if config.reward == "predictor"
        else "the simulator's watch minutes"
    )
    return "\n".join(
        [
            f"# Long-term engagement experiment on `{config.env_id}`",
            "",
            f"Logs of {config.log_users} users under the `{config.logging_policy}` logging "
            f"policy → predictor → PPO ({training['steps']} steps on {reward}, the predictor "
            "as state encoder) → evaluation against the baselines on the same populations.",
            "",
            f"- PPO / myopic-predicted total watch: **{headline['ppo_over_myopic_predicted']:.2f}×**"
            f" (95% CIs apart: {headline['cis_apart']})",
            f"- PPO / oracle planner: **{headline['ppo_fraction_of_oracle']:.0%}**",
            "- CTR above PPO's: myopic (true expected watch) "
            f"{headline['myopic_ctr_above_ppo']}, myopic-predicted "
            f"{headline['myopic_predicted_ctr_above_ppo']}",
            f"- time: logs {seconds['logs']:.0f} s, predictor {seconds['predictor']:.0f} s, "
            f"PPO {seconds['agent']:.0f} s ({training['steps_per_second']:.0f} steps/s), "
            f"evaluation {seconds['evaluation']:.0f} s",
            "",
            "Policies: `random`; `popularity` (clicks in the logs); `myopic_predicted` (greedy "
            "on the predictor's expected watch now); `myopic` (greedy on the true expected watch, "
            "privileged); `ppo`; `oracle_planner` (privileged planner, the upper reference).",
            "",
            table,
            f"Options: `{options}`.",
            "",
        ]
    )
