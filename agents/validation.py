"""Sim-to-real: is a simulator learned from logs valid? (``loe-gym validate-simulator``)

On an imported log (no simulator behind it) the learned world is compared with the log's
held-out users instead (`agents.log_validation`).

A learned simulator (`simulators.learned.LearnedUsers`) is fitted on logs of a
ground-truth simulator, then the same policies run in both worlds on populations of the
same size and seeds. The report answers the question users ask first: does the learned
world reproduce each policy's click-through rate, session length, next-day return rate
and total engagement, and does it rank the policies as the real world does?

Only policies that act on what a platform observes are compared (random, popularity,
myopic on the predictor, trained agents): a privileged policy reads a simulator's hidden
state, which means something else in each world.

    report/
      report.md        verdict per policy and metric, the ranking, how to rerun
      metrics.json     both evaluations, the errors, the verdicts
      fidelity.png     learned vs true, per metric and policy
      logs/            the ground truth's logs (unless --logs was given)
      predictor/       the fitted simulator's predictor (unless --predictor was given)
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from agents.collect import collect_logs
from agents.configs import TrainConfig, ValidationConfig
from agents.evaluation import Evaluation, evaluate
from agents.log_validation import is_imported_log, validate_on_imported_logs
from agents.predictor_env import PredictorObservations
from agents.reference_policies import MyopicPredictedPolicy, PopularityPolicy, make_policy
from agents.report import stage
from agents.training import check_env_id, load_agent, predictor_wrappers
from loe_gym.logs import read_log, read_log_metadata
from loe_gym.predictor.configs import FitPredictorConfig
from loe_gym.predictor.pipeline import FitPredictorResult, PredictorRunFolder, fit_predictor
from loe_gym.predictor.sequences import logged_item_popularity
from loe_gym.predictor.serving import PredictorService
from loe_gym.run_folders import finish_run_folder, prepare_run_folder
from simulators.return_gaps import ChurnCalibration, calibrate_churn

__all__ = [
    "FIDELITY_METRICS",
    "ValidationConfig",
    "compare_worlds",
    "fit_learned_simulator",
    "learned_env_options",
    "learned_world_options",
    "validate_simulator",
]

FIDELITY_METRICS = ("ctr", "session_length", "next_day_retention", "total_watch")
"""Metrics compared between the worlds (see `agents.evaluation.METRICS`)."""


def fit_learned_simulator(
    logs: str | Path,
    output: str | Path,
    config: FitPredictorConfig,
    *,
    randomised_targets: bool = False,
    randomised_click_targets: bool = False,
    progress: bool = True,
) -> Any:
    """Fit the predictor a `LearnedUsers` runs on; returns `fit_predictor`'s result.

    ``randomised_targets`` / ``randomised_click_targets`` restrict every head / the click
    and watch-time heads to the rows the logging mixture's random component chose (see
    `ValidationConfig`)."""

    randomised: tuple[str, ...] = ()
    if randomised_targets or randomised_click_targets:
        metadata = read_log_metadata(logs) or {}
        random_rows = f"{metadata.get('policy')}:random"
        if random_rows in _policy_values(logs):
            randomised = (random_rows,)
        else:
            warnings.warn(
                f"The log at {logs} has no randomised rows ({random_rows!r}): every row trains "
                "every head. Collect it with a mixture (`--policy deployable`) to train on "
                "randomised exposure.",
                stacklevel=2,
            )
    fit_config = config.replace(
        target_policies=randomised if randomised_targets else config.target_policies,
        click_target_policies=randomised
        if randomised_click_targets
        else config.click_target_policies,
    )
    return fit_predictor(logs, output, fit_config, progress=progress)


def _policy_values(logs: str | Path) -> set[str]:
    """The distinct values of a log's ``policy`` column."""

    return set(read_log(logs).column("policy").unique().to_pylist())


def learned_env_options(
    predictor: str | Path, logs: str | Path, test_metrics: dict[str, float] | None = None
) -> dict[str, Any]:
    """Environment options (JSON-able, so a training run's ``config.json`` keeps them) of
    the learned simulator of ``predictor`` fitted on ``logs`` (`learned_world_options`)."""

    return learned_world_options(predictor, logs, test_metrics)[0]


def learned_world_options(
    predictor: str | Path, logs: str | Path, test_metrics: dict[str, float] | None = None
) -> tuple[dict[str, Any], ChurnCalibration]:
    """The learned simulator's environment options, and the churn calibration they use.

    The churn threshold is calibrated on the logs' right-censored return gaps
    (`simulators.return_gaps.calibrate_churn`): the learned world's share of session ends
    never followed by a return is the Kaplan–Meier estimate of the logs'. The watch-time
    noise is the fit's test watch-time loss (√MSE of log1p minutes) when the fit's
    held-out ``test_metrics`` are given."""

    calibration = calibrate_churn(PredictorService.from_pretrained(predictor), logs)
    kwargs: dict[str, Any] = {
        "predictor": str(predictor),
        "catalog": str(logs),
        "churn_gap_days": calibration.churn_gap_days,
    }
    loss = (test_metrics or {}).get("loss_watch_time")
    if loss is not None and math.isfinite(loss) and loss > 0:
        kwargs["watch_log_std"] = float(math.sqrt(loss))
    return {"simulator": "learned", "simulator_kwargs": kwargs}, calibration


def _ranking(values: dict[str, float]) -> list[str]:
    return sorted(values, key=lambda name: -values[name])


def compare_worlds(
    truth: Any, learned: Any, config: ValidationConfig, policies: Sequence[str]
) -> dict[str, Any]:
    """Errors and verdicts of the learned world's `Evaluation` against the truth's."""
    rows: dict[str, dict[str, Any]] = {}
    for policy in policies:
        row: dict[str, Any] = {}
        for metric in FIDELITY_METRICS:
            true_value = truth.metric(policy, metric).mean
            learned_value = learned.metric(policy, metric).mean
            row[metric] = {"truth": true_value, "learned": learned_value}
        row["ctr"]["relative_error"] = row["ctr"]["learned"] / row["ctr"]["truth"] - 1.0
        row["session_length"]["relative_error"] = (
            row["session_length"]["learned"] / row["session_length"]["truth"] - 1.0
        )
        row["total_watch"]["relative_error"] = (
            row["total_watch"]["learned"] / row["total_watch"]["truth"] - 1.0
        )
        row["next_day_retention"]["absolute_error"] = (
            row["next_day_retention"]["learned"] - row["next_day_retention"]["truth"]
        )
        row["passes"] = {
            "ctr": abs(row["ctr"]["relative_error"]) <= config.ctr_tolerance,
            "session_length": abs(row["session_length"]["relative_error"])
            <= config.session_length_tolerance,
            "next_day_retention": abs(row["next_day_retention"]["absolute_error"])
            <= config.return_tolerance,
        }
        rows[policy] = row
    true_watch = {p: rows[p]["total_watch"]["truth"] for p in policies}
    learned_watch = {p: rows[p]["total_watch"]["learned"] for p in policies}
    tau = stats.kendalltau([true_watch[p] for p in policies], [learned_watch[p] for p in policies])
    ranking = {
        "truth": _ranking(true_watch),
        "learned": _ranking(learned_watch),
        "preserved": _ranking(true_watch) == _ranking(learned_watch),
        "kendall_tau": float(tau.statistic) if len(policies) > 1 else math.nan,
    }
    verdict = {
        "all_metrics_pass": all(all(r["passes"].values()) for r in rows.values()),
        "ranking_preserved": ranking["preserved"],
    }
    return {"policies": rows, "ranking": ranking, "verdict": verdict}


def _plot(comparison: dict[str, Any], folder: Path) -> Path:
    from matplotlib.figure import Figure

    policies = list(comparison["policies"])
    figure = Figure(figsize=(4.0 * len(FIDELITY_METRICS), 3.6), layout="constrained")
    axes = figure.subplots(1, len(FIDELITY_METRICS))
    x = np.arange(len(policies))
    for axis, metric in zip(axes, FIDELITY_METRICS, strict=True):
        truth = [comparison["policies"][p][metric]["truth"] for p in policies]
        learned = [comparison["policies"][p][metric]["learned"] for p in policies]
        axis.bar(x - 0.2, truth, 0.4, label="ground truth")
        axis.bar(x + 0.2, learned, 0.4, label="learned simulator")
        axis.set_xticks(x, policies, rotation=30, ha="right")
        axis.set_title(metric)
    axes[0].legend()
    path = folder / "fidelity.png"
    figure.savefig(path, dpi=110)
    return path


def _markdown(
    comparison: dict[str, Any], config: ValidationConfig, seconds: dict[str, float]
) -> str:
    lines = [
        "# Sim-to-real: the learned simulator against the ground truth",
        "",
        f"Ground truth `{config.env_id}`; {config.evaluation.num_users} users per population, "
        f"seeds {list(config.evaluation.seeds)}, in each world. Tolerances: CTR and session length within "
        f"{config.ctr_tolerance:.0%} / {config.session_length_tolerance:.0%} (relative), "
        f"next-day return within {config.return_tolerance} (absolute).",
        "",
        "| policy | CTR true → learned | session length true → learned | next-day return "
        "true → learned | total watch true → learned |",
        "|---|---|---|---|---|",
    ]
    for policy, row in comparison["policies"].items():
        mark = {k: "✓" if v else "✗" for k, v in row["passes"].items()}
        lines.append(
            f"| {policy} "
            f"| {row['ctr']['truth']:.3f} → {row['ctr']['learned']:.3f} "
            f"({row['ctr']['relative_error']:+.1%}) {mark['ctr']} "
            f"| {row['session_length']['truth']:.2f} → {row['session_length']['learned']:.2f} "
            f"({row['session_length']['relative_error']:+.1%}) {mark['session_length']} "
            f"| {row['next_day_retention']['truth']:.3f} → "
            f"{row['next_day_retention']['learned']:.3f} "
            f"({row['next_day_retention']['absolute_error']:+.3f}) {mark['next_day_retention']} "
            f"| {row['total_watch']['truth']:.1f} → {row['total_watch']['learned']:.1f} "
            f"({row['total_watch']['relative_error']:+.1%}) |"
        )
    ranking = comparison["ranking"]
    verdict = comparison["verdict"]
    lines += [
        "",
        f"Ranking by total watch — truth: {' > '.join(ranking['truth'])}; learned: "
        f"{' > '.join(ranking['learned'])}; preserved: **{ranking['preserved']}** "
        f"(Kendall τ {ranking['kendall_tau']:.2f}).",
        "",
        f"Every metric within tolerance: **{verdict['all_metrics_pass']}**.",
        "",
        "![fidelity](fidelity.png)",
        "",
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()),
        "",
    ]
    return "\n".join(lines)


def _baselines_and_agents(
    config: ValidationConfig, logs: Path, predictor: Path
) -> list[tuple[list[Any], Any]]:
    """Groups of ``(policies, wrappers)``: each group shares one predictor."""

    service = PredictorService.from_pretrained(config.policy_predictor or predictor)
    clicks = logged_item_popularity(logs, service.num_items)
    # The history the agents' encoder sees by default (`TrainConfig`), within the model's.
    history = min(TrainConfig().encoder_history_length, int(service.config.max_history_length))
    observe = [lambda env: PredictorObservations(env, service, history)]
    groups: list[tuple[list[Any], Any]] = [
        ([make_policy("random"), PopularityPolicy(clicks), MyopicPredictedPolicy()], observe)
    ]
    for run in config.agents:
        agent, agent_config, agent_service = load_agent(run, name=Path(run).name)
        groups.append(
            ([agent], predictor_wrappers(agent_config, agent_service, for_training=False))
        )
    return groups


def _evaluate_world(
    config: ValidationConfig, env_options: dict[str, Any], groups: list[tuple[list[Any], Any]]
) -> Any:

    results: dict[str, Any] = {}
    for policies, wrappers in groups:
        evaluation = evaluate(
            config.env_id,
            policies,
            num_users=config.evaluation.num_users,
            seeds=config.evaluation.seeds,
            env_options=env_options,
            progress=False,
            wrappers=wrappers,
        )
        results.update(evaluation.results)
    populations = config.evaluation
    return Evaluation(config.env_id, populations.num_users, populations.seeds, results)


def validate_simulator(
    config: ValidationConfig,
    output: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit (or load) a learned simulator of ``config.env_id`` and compare the worlds;
    writes ``report.md``, ``metrics.json`` and ``fidelity.png`` to ``output`` (refused if
    it exists, unless ``overwrite``). Returns the comparison (see `compare_worlds`)."""

    check_env_id(config.env_id)
    if config.agents and config.logs and is_imported_log(config.logs):
        raise ValueError(
            f"--agents {list(config.agents)} cannot be compared on the imported log "
            f"{config.logs}: no simulator stands behind it to run them in. Leave out "
            "--agents; the learned world is checked against the log's held-out users."
        )
    for run in config.agents:
        if not (Path(run) / "config.json").is_file():
            raise FileNotFoundError(f"{run} holds no config.json: pass loe-gym train folders.")
    folder = prepare_run_folder(output, "validate-simulator", overwrite=overwrite)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    seconds: dict[str, float] = {}
    logs, predictor, test_metrics = _learned_world(config, folder, seconds, progress)
    learned_options, churn = learned_world_options(predictor, logs, test_metrics)
    if is_imported_log(logs):
        # No simulator behind the log: compare with its held-out users instead.
        started = stage("validate-simulator", "replay the held-out users' logs", progress)
        comparison = validate_on_imported_logs(
            config, folder, logs, learned_options, churn, _fit_config(config, predictor)
        )
        comparison["seconds"] = {**seconds, "replay": time.perf_counter() - started}
        finish_run_folder(folder, "validate-simulator")
        return comparison
    groups = _baselines_and_agents(config, logs, predictor)
    policies = [p.name for group, _ in groups for p in group]

    started = stage("validate-simulator", "evaluate the policies in the ground truth", progress)
    options = {**(config.env_options or {}), "horizon_days": config.horizon_days}
    truth = _evaluate_world(config, options, groups)
    seconds["ground_truth"] = time.perf_counter() - started
    started = stage(
        "validate-simulator", "evaluate the policies in the learned simulator", progress
    )
    # The learned world keeps the environment's options (candidates, slate, horizon) and
    # swaps the user model.
    learned = _evaluate_world(config, {**options, **learned_options}, groups)
    seconds["learned"] = time.perf_counter() - started

    comparison = compare_worlds(truth, learned, config, policies)
    _plot(comparison, folder)
    payload = {
        **comparison,
        "learned_simulator": learned_options,
        "churn_calibration": churn.to_dict(),
        "ground_truth_evaluation": truth.to_dict(),
        "learned_evaluation": learned.to_dict(),
        "seconds": seconds,
    }
    (folder / "metrics.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (folder / "report.md").write_text(_markdown(comparison, config, seconds))
    finish_run_folder(folder, "validate-simulator")
    return comparison


def _fit_config(config: ValidationConfig, predictor: Path) -> dict[str, Any]:
    """The predictor fit's options as a dict: its run folder's ``config.json`` when it
    has one, else ``config.predictor`` (the fit this validation ran)."""
    saved = PredictorRunFolder(predictor.parent).config
    if config.fitted_predictor is not None and saved.is_file():
        return dict(json.loads(saved.read_text()))
    return dict(config.predictor.to_dict())


def _learned_world(
    config: ValidationConfig, folder: Path, seconds: dict[str, float], progress: bool
) -> tuple[Path, Path, dict[str, float] | None]:
    """The logs and the fitted predictor, given or made: ``(logs, model folder, held-out
    metrics of the fit if known)``."""

    logs = Path(config.logs) if config.logs else folder / "logs"
    if config.logs is None:
        collect = config.collect
        started = stage("validate-simulator", f"simulate {collect.num_users} users' logs", progress)
        collect_logs(
            config.env_id,
            num_users=collect.num_users,
            path=logs,
            policy=collect.policy,
            seed=collect.seed,
            horizon_days=config.horizon_days,
            progress=progress,
            env_options=config.env_options,
        )
        seconds["logs"] = time.perf_counter() - started
    if config.fitted_predictor is None:
        started = stage("validate-simulator", "fit the simulator's predictor", progress)
        fit = fit_learned_simulator(
            logs,
            folder / "predictor",
            config.predictor,
            randomised_targets=config.randomised_targets,
            randomised_click_targets=config.randomised_click_targets,
            progress=progress,
        )
        seconds["predictor"] = time.perf_counter() - started
        return logs, fit.folder.model, fit.test
    predictor = Path(config.fitted_predictor)
    run = PredictorRunFolder(predictor.parent)
    test = FitPredictorResult.read(run.root).test if run.metrics.is_file() else None
    return logs, predictor, test
