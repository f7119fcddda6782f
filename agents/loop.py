"""The feedback loop (``loe-gym loop``): deploy → log → refit → retrain, round after round.

Round 0 deploys a myopic ranker on the ground-truth environment and logs what its users
did. Each later round then

1. refits the predictor on the newest logs: round 1 from scratch, later rounds
   fine-tune the previous round's predictor on the new logs (fully, or through LoRA
   adapters with ``refit="lora"``);
2. retrains a PPO agent with that predictor as state encoder and reward model, on the
   learned simulator built from it (``train_on="learned"``: no ground-truth interaction
   while training) or on the ground-truth environment (``train_on="ground_truth"``:
   online RL with a learned reward);
3. deploys the agent to a fresh population of the ground truth and logs it.

Every deployment shows a random candidate on a share ``exploration`` of the steps, the
same in every round, so the next fit sees items off the policy's path. A round's
long-term engagement is its deployed population's mean total watch per user over the
horizon, with a 95% CI over users.

    report/
      report.md, metrics.json, engagement_per_round.png
      round_0/logs
      round_k/{predictor, agent, logs}
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from agents.collect import collect_logs
from agents.configs import LoopConfig, TrainRunConfig
from agents.reference_policies import make_policy
from agents.report import stage
from agents.training import check_env_id, load_agent, predictor_wrappers, train_agent
from agents.validation import fit_learned_simulator, learned_env_options
from loe_gym.logs import read_log
from loe_gym.run_folders import finish_run_folder, prepare_run_folder

__all__ = ["ExplorationPolicy", "LoopConfig", "round_summary", "run_loop"]


class ExplorationPolicy:
    """``policy``, except that each user's step shows uniformly random candidates with
    probability ``epsilon`` (a seeded stream of its own)."""

    def __init__(self, policy: Any, epsilon: float, seed: int) -> None:
        self.policy, self.epsilon = policy, float(epsilon)
        self.name = str(policy.name)
        self.privileged = bool(getattr(policy, "privileged", False))
        self.uses_predictor = bool(getattr(policy, "uses_predictor", False))
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        actions = np.asarray(self.policy.act(obs, env)).copy()
        config = env.config
        explore = self.rng.random(env.num_envs) < self.epsilon
        random_slates = np.argsort(self.rng.random((env.num_envs, config.num_candidates)), axis=1)[
            :, : config.slate_size
        ]
        if actions.ndim == 1:
            actions[explore] = random_slates[explore, 0]
        else:
            actions[explore] = random_slates[explore]
        return actions

    def __repr__(self) -> str:
        return f"ExplorationPolicy({self.policy!r}, epsilon={self.epsilon})"


def round_summary(logs: str | Path) -> dict[str, Any]:
    """Per-user engagement of a deployment's log: mean and 95% CI (Student t over users)
    of the total watch minutes, and the population's CTR, session length and next-day
    return rate."""

    table = read_log(logs)
    users = table.column("user_id").to_numpy()
    _, index = np.unique(users, return_inverse=True)
    watch = np.bincount(index, weights=table.column("watch_time").to_numpy().astype(float))
    clicked = table.column("clicked").to_numpy()
    session_end = table.column("session_end").to_numpy()
    returned = table.column("returned_next_day").to_numpy()
    positions = table.column("position").to_numpy()
    ends = session_end & (positions == 0)
    half = float(stats.t.ppf(0.975, watch.size - 1) * watch.std(ddof=1) / math.sqrt(watch.size))
    return {
        "users": int(watch.size),
        "total_watch": float(watch.mean()),
        "total_watch_ci95_half_width": half,
        "ctr": float(clicked.mean()),
        # Items shown per session, as the evaluation's session_length (one row per item).
        "session_length": float(positions.size / max(ends.sum(), 1)),
        "next_day_retention": float(returned[ends].mean()) if ends.any() else math.nan,
    }


def _plot(rounds: list[dict[str, Any]], folder: Path) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 3.4), layout="constrained")
    axes = figure.subplots(1, 3)
    x = np.arange(len(rounds))
    axes[0].errorbar(
        x,
        [r["total_watch"] for r in rounds],
        yerr=[r["total_watch_ci95_half_width"] for r in rounds],
        marker="o",
        capsize=4,
    )
    axes[0].set_title("total watch per user (95% CI)")
    axes[1].plot(x, [r["next_day_retention"] for r in rounds], marker="o")
    axes[1].set_title("next-day return rate")
    axes[2].plot(x, [r["ctr"] for r in rounds], marker="o")
    axes[2].set_title("CTR")
    for axis in axes:
        axis.set_xticks(x, [f"round {i}" for i in x])
    path = folder / "engagement_per_round.png"
    figure.savefig(path, dpi=110)
    return path


def _markdown(config: LoopConfig, rounds: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "# The feedback loop on the ground truth",
        "",
        f"`{config.env_id}`; round 0 deploys `{config.round0_policy}`, later rounds PPO "
        f"trained on the {'learned simulator' if config.train_on == 'learned' else 'ground truth'}"
        f" with the refitted predictor ({config.refit} refit) as encoder and reward model. "
        f"{config.users_per_round} fresh users per round, {config.exploration:.0%} random "
        "exploration in every deployment. Mean ± 95% CI over users.",
        "",
        "| round | policy | total watch per user | CTR | session length | next-day return |",
        "|---|---|---|---|---|---|",
    ]
    for index, r in enumerate(rounds):
        lines.append(
            f"| {index} | {r['policy']} | {r['total_watch']:.1f} ± "
            f"{r['total_watch_ci95_half_width']:.1f} | {r['ctr']:.3f} | "
            f"{r['session_length']:.2f} | {r['next_day_retention']:.3f} |"
        )
    first, last = rounds[0], rounds[-1]
    apart = (
        last["total_watch"] - last["total_watch_ci95_half_width"]
        > first["total_watch"] + first["total_watch_ci95_half_width"]
    )
    lines += [
        "",
        f"Round {len(rounds) - 1} / round 0: **{last['total_watch'] / first['total_watch']:.2f}×** "
        f"(CIs apart: {apart}). Whole loop: {seconds / 60:.1f} min.",
        "",
        "![engagement per round](engagement_per_round.png)",
        "",
    ]
    return "\n".join(lines)


def run_loop(
    config: LoopConfig, output: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run the loop into ``output`` (refused if it exists, unless ``overwrite``); returns
    what ``metrics.json`` holds."""

    check_env_id(config.env_id)
    folder = prepare_run_folder(output, "loop", overwrite=overwrite)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    started_loop = time.perf_counter()
    rounds = [_deploy(config, folder, 0, make_policy(config.round0_policy), (), progress)]
    previous_model: Path | None = None
    for index in range(1, config.rounds + 1):
        summary, previous_model = _round(config, folder, index, previous_model, progress)
        rounds.append(summary)
    seconds = time.perf_counter() - started_loop
    _plot(rounds, folder)
    payload = {"config": config.to_dict(), "rounds": rounds, "seconds": seconds}
    (folder / "metrics.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (folder / "report.md").write_text(_markdown(config, rounds, seconds))
    finish_run_folder(folder, "loop")
    return payload


def _deploy(
    config: LoopConfig, folder: Path, index: int, policy: Any, wrappers: Any, progress: bool
) -> dict[str, Any]:
    """Deploy ``policy`` (with exploration) to round ``index``'s fresh population; log it."""

    logs = folder / f"round_{index}" / "logs"
    started = stage("loop", f"round {index}: deploy {policy.name} to the ground truth", progress)
    collect_logs(
        config.env_id,
        num_users=config.users_per_round,
        path=logs,
        policy=ExplorationPolicy(policy, config.exploration, seed=config.seed + index),
        seed=100 + index,
        horizon_days=config.horizon_days,
        progress=progress,
        env_options=config.env_options,
        wrappers=wrappers,
    )
    summary = {"policy": policy.name, **round_summary(logs)}
    summary["seconds_deploy"] = time.perf_counter() - started
    if progress:
        print(
            f"[loop] round {index}: total watch {summary['total_watch']:.1f} ± "
            f"{summary['total_watch_ci95_half_width']:.1f}",
            flush=True,
        )
    return summary


def _round(
    config: LoopConfig, folder: Path, index: int, previous_model: Path | None, progress: bool
) -> tuple[dict[str, Any], Path]:
    """Round ``index``: refit on the last round's logs, retrain, deploy; ``(summary, the
    refitted predictor)``."""

    round_folder = folder / f"round_{index}"
    logs = folder / f"round_{index - 1}" / "logs"
    started = stage("loop", f"round {index}: refit the predictor", progress)
    adapt = config.refit == "lora" and previous_model is not None
    fit_config = config.predictor.replace(
        initial_model=None if previous_model is None else str(previous_model),
        training=config.predictor.training.replace(
            lora_rank=config.adapter_rank if adapt else None
        ),
    )
    fit = fit_learned_simulator(logs, round_folder / "predictor", fit_config, progress=progress)
    seconds_fit = time.perf_counter() - started
    env_options: dict[str, Any] = {
        **(config.env_options or {}),
        "horizon_days": config.horizon_days,
    }
    if config.train_on == "learned":
        env_options.update(
            learned_env_options(fit.folder.model, folder / "round_0" / "logs", fit.test)
        )
    run = TrainRunConfig(
        env_id=config.env_id,
        env_options=env_options,
        predictor=str(fit.folder.model),
        agent=config.agent.replace(seed=config.agent.seed + index),
        eval_every=0,
        checkpoint_every=0,
    )
    started = stage("loop", f"round {index}: train PPO on the {config.train_on}", progress)
    train_agent(run, round_folder / "agent", progress=progress)
    seconds_train = time.perf_counter() - started
    agent, loaded, service = load_agent(round_folder / "agent", name=f"ppo_round_{index}")
    wrappers = predictor_wrappers(loaded, service, for_training=False)
    summary = _deploy(config, folder, index, agent, wrappers, progress)
    summary.update(seconds_fit=seconds_fit, seconds_train=seconds_train)
    summary["predictor_test"] = {k: v for k, v in fit.test.items() if k.endswith(("auc", "ece"))}
    return summary, fit.folder.model
