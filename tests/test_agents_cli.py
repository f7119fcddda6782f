"""``loe-gym train / evaluate / experiment`` as a user runs them: subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(
    *args: str, cwd: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def test_experiment_quick_writes_a_full_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    seeds = ("--training-seeds", "3", "4", "--curve-points", "2", "--curve-users", "8")
    done = _cli(
        "experiment", "--quick", "--no-progress", "--threads", "1", *seeds, "--output", str(out)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in (
        "report.md",
        "metrics.json",
        "config.json",
        "evaluation.md",
        "engagement_per_day.png",
        "retention.png",
        "satisfaction.png",
        "total_watch.png",
        "learning_curve.png",
        "agents/seed_3/agent.safetensors",
        "agents/seed_4/evaluations.jsonl",
        "predictor/model/config.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["policies"]) == {
        "random",
        "popularity",
        "myopic_predicted",
        "greedy_reward_model",
        "myopic",
        "ppo_seed3",
        "ppo_seed4",
        "oracle_planner",
        "lookahead_oracle",
    }
    # Two training runs × two populations: the aggregate is over the four pairs.
    ppo = metrics["aggregates"]["ppo"]
    assert ppo["runs"] == 2 and ppo["mean_ci"][0] <= ppo["mean"] <= ppo["mean_ci"][1]
    per_seed = [metrics["policies"][f"ppo_seed{s}"]["total_watch"]["mean"] for s in (3, 4)]
    assert ppo["mean"] == pytest.approx(sum(per_seed) / 2)
    # The untrained policy at step 0, then the two evaluations during training.
    curves = metrics["learning_curves"]
    assert [curve[0][0] for curve in curves] == [0, 0]  # (steps, score) pairs
    assert [len(curve) for curve in curves] == [3, 3]
    assert "- 80%: " in (out / "report.md").read_text()
    assert "IQM [95 % CI]" in (out / "report.md").read_text()
    assert metrics["seeds"] == [0, 1]
    assert metrics["headline"]["ppo_fraction_of_oracle"] > 0
    assert metrics["headline"]["ppo_fraction_of_lookahead"] > 0
    assert metrics["headline"]["ppo_over_greedy_reward_model"] > 0
    report = (out / "report.md").read_text()
    assert "PPO / oracle planner" in report and "PPO / greedy on its own reward model" in report
    # A second run never clobbers the report.
    again = _cli("experiment", "--quick", "--output", str(out))
    assert again.returncode == 2
    assert "exists and is not empty" in again.stderr and "--overwrite" in again.stderr
    assert json.loads((out / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent.algorithm", "ppo2"], "Did you mean 'ppo'"),
        (["--env-id", "loe_gym/Engagment-v0"], "Did you mean 'loe_gym/Engagement-v0'"),
        (["--agent.encoder", "lora"], "TrainConfig.encoder must be one of"),
        (["--agent.total-steps", "0"], "total_steps"),
        (["--agent.encoder", "frozen"], "need a trained predictor"),
        (["--agent.algorithm", "dqn", "--env-id", "loe_gym/EngagementSlate-v0"], "ppo, a2c"),
        (["--env-options", "[1]"], "expects a JSON object"),
    ],
)
def test_train_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    base = [
        "train",
        "--output",
        str(tmp_path / "run"),
        "--agent.encoder",
        "none",
        "--agent.total-steps",
        "8",
    ]
    done = _cli(*base, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_train_then_evaluate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    options = '{"simulator_kwargs": {"num_items": 50}, "horizon_days": 2}'
    done = _cli(
        "train",
        "--output",
        str(run),
        "--agent.encoder",
        "none",
        "--agent.total-steps",
        "256",
        "--agent.num-users",
        "16",
        "--agent.n-steps",
        "8",
        "--agent.batch-size",
        "64",
        "--eval-every",
        "128",
        "--eval-users",
        "8",
        "--env-options",
        options,
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "agent.safetensors").is_file() and (run / "evaluations.jsonl").is_file()
    again = _cli(
        "train", "--output", str(run), "--agent.encoder", "none", "--agent.total-steps", "8"
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr
    report = tmp_path / "eval"
    done = _cli(
        "evaluate",
        "--agents",
        str(run),
        "--baselines",
        "random",
        "myopic",
        "lookahead_oracle",
        "--lookahead.pilot-users",
        "8",
        "--lookahead.switch-samples",
        "2",
        "--env-options",
        options,
        "--evaluation.num-users",
        "20",
        "--evaluation.seeds",
        "0",
        "1",
        "--output",
        str(report),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"run", "random", "myopic", "lookahead_oracle"}
    bad = _cli("evaluate", "--baselines", "myopic_predictd", "--output", str(tmp_path / "x"))
    assert bad.returncode == 2 and "Did you mean 'myopic_predicted'" in bad.stderr
    bad = _cli("evaluate", "--baselines", "myopic_predicted", "--output", str(tmp_path / "y"))
    assert bad.returncode == 2 and "--predictor" in bad.stderr


@pytest.mark.parametrize("command", ["train", "experiment"])
def test_help_documents_every_field(command: str) -> None:
    from agents.configs import ExperimentConfig, TrainRunConfig

    config = TrainRunConfig if command == "train" else ExperimentConfig
    done = _cli(command, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for path, owner, name in config.leaves():
        assert "--" + path.replace("_", "-") in text, path
        assert owner.field_docs().get(name), f"{owner.__name__}.{name} has no docstring"
