"""``loe-gym collect-logs`` → ``loe-gym fit-predictor``, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

TINY = [
    "--model.hidden-size", "16", "--model.num-hidden-layers", "1",
    "--model.max-history-length", "10", "--pretrain-epochs", "1", "--training.max-epochs", "1",
    "--training.steps-per-epoch", "3", "--training.batch-size", "64", "--gru-epochs", "1",
    "--no-progress",
]  # fmt: skip


def loe_gym(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "engagement"
    done = loe_gym("collect-logs", "--collect.num-users", "40", "--output", str(path))
    assert done.returncode == 0, done.stderr
    assert "rows=" in done.stdout
    return path


@pytest.mark.slow
def test_fit_predictor_writes_model_metrics_and_report(log: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = loe_gym("fit-predictor", "--logs", str(log), "--output", str(run), *TINY)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("click_auc", "bayes_click_auc", "return_auc", "watch_time_rmse_expected_minutes"):
        assert key in metrics["test"]
    assert set(metrics["ranking"]) == {"transformer", "popularity", "gru"}
    assert (run / "model" / "model.safetensors").exists()
    assert "Held-out users" in (run / "report.md").read_text()
    # A finished run is never overwritten by accident.
    again = loe_gym("fit-predictor", "--logs", str(log), "--output", str(run), *TINY)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_fit_predictor_rejects_bad_options(log: Path, tmp_path: Path) -> None:
    done = loe_gym(
        "fit-predictor",
        "--logs",
        str(log),
        "--output",
        str(tmp_path / "r"),
        "--model.backbone",
        "bret",
    )
    assert done.returncode == 2 and "Did you mean 'bert'" in done.stderr
    missing = loe_gym(
        "fit-predictor", "--logs", str(tmp_path / "nope"), "--output", str(tmp_path / "r")
    )
    assert missing.returncode == 2 and "nope" in missing.stderr
    # The tasks are the keys of ``model.task_weights``, a mapping a --config file gives.
    unknown_task = tmp_path / "tasks.json"
    unknown_task.write_text(json.dumps({"model": {"task_weights": {"clik": 1.0}}}))
    tasks = loe_gym(
        "fit-predictor",
        "--logs",
        str(log),
        "--output",
        str(tmp_path / "r"),
        "--config",
        str(unknown_task),
    )
    assert tasks.returncode == 2 and "tasks must be" in tasks.stderr


def test_collect_logs_rejects_unknown_policy(tmp_path: Path) -> None:
    done = loe_gym(
        "collect-logs",
        "--collect.num-users",
        "5",
        "--collect.policy",
        "myopc",
        "--output",
        str(tmp_path / "l"),
    )
    assert done.returncode == 2 and "Did you mean 'myopic'" in done.stderr


def test_fit_predictor_help_documents_every_option() -> None:
    from loe_gym.predictor.configs import FitPredictorConfig

    done = loe_gym("fit-predictor", "--help")
    assert done.returncode == 0, done.stderr
    for path, owner, name in FitPredictorConfig.leaves():
        if owner.field_docs().get(name):
            assert "--" + path.replace("_", "-") in done.stdout
    assert "5 % of rows" in " ".join(done.stdout.split())  # a literal % survives argparse
