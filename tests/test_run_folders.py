"""Nothing lost, nothing clobbered: ``--overwrite`` deletes only folders that loe_gym wrote
(a marker file in every run folder), and a predictor checkpoint resumes only the same run
(same options, same log, checked by a fingerprint)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NUM_ITEMS

from agents.collect import collect_logs
from agents.configs import TrainConfig, TrainRunConfig
from agents.training import train_agent
from loe_gym.predictor.configs import FitPredictorConfig, ModelConfig, TrainingConfig
from loe_gym.predictor.pipeline import fit_predictor
from loe_gym.run_folders import (
    MARKER,
    finish_run_folder,
    is_run_folder,
    prepare_run_folder,
    remove_run_folder,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _thesis(tmp_path: Path) -> Path:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("years of work")
    return folder


def test_overwrite_replaces_only_what_loe_gym_wrote(tmp_path: Path) -> None:
    thesis = _thesis(tmp_path)
    with pytest.raises(FileExistsError, match=r"refuses to delete .*thesis.*chapter1\.tex"):
        prepare_run_folder(thesis, "experiment", overwrite=True)
    assert (thesis / "chapter1.tex").read_text() == "years of work"
    assert not is_run_folder(thesis)

    run = prepare_run_folder(tmp_path / "run", "experiment", overwrite=False)
    (run / "report.md").write_text("old")
    # A failed or killed run never blocks its own retry...
    assert prepare_run_folder(run, "experiment", overwrite=False) == run
    assert not (run / "report.md").exists()
    # ...but a finished one is replaced only with overwrite.
    (run / "report.md").write_text("old")
    finish_run_folder(run, "experiment")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        prepare_run_folder(run, "experiment", overwrite=False)
    prepare_run_folder(run, "loop", overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [MARKER]
    # An empty folder is used and marked; a file is never deleted.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_run_folder(prepare_run_folder(empty, "train", overwrite=False))
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is a file"):
        remove_run_folder(tmp_path / "notes.txt")


def test_train_overwrite_refuses_a_foreign_folder(tmp_path: Path) -> None:
    thesis = _thesis(tmp_path)
    config = TrainRunConfig(agent=TrainConfig(encoder="none", total_steps=10))
    with pytest.raises(FileExistsError, match="refuses to delete"):
        train_agent(config, thesis, overwrite=True, progress=False)
    assert (thesis / "chapter1.tex").exists()


@pytest.mark.parametrize("command", ["experiment", "loop", "validate-simulator", "evaluate"])
def test_cli_overwrite_refuses_a_foreign_folder(command: str, tmp_path: Path) -> None:
    thesis = _thesis(tmp_path)
    extra = ["--quick"] if command != "evaluate" else ["--baselines", "random"]
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", command, "--output", str(thesis), "--overwrite",
         *extra, "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "refuses to delete" in done.stderr and "chapter1.tex" in done.stderr
    assert (thesis / "chapter1.tex").read_text() == "years of work"


def test_calibrate_never_replaces_the_json_beside_the_table(tmp_path: Path) -> None:
    (tmp_path / "cal.json").write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "calibrate", "--output", str(tmp_path / "cal.md"),
         "--evaluation.num-users", "2", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "cal.json exists" in done.stderr
    assert (tmp_path / "cal.json").read_text() == "{}"
    assert not (tmp_path / "cal.md").exists()


# ------------------------------------------------------------------ predictor resume


@pytest.fixture(scope="module")
def two_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("logs")
    for seed in (0, 1):
        collect_logs(
            num_users=12, path=root / f"log{seed}", seed=seed, horizon_days=4, progress=False,
            env_options={"simulator_kwargs": {"num_items": NUM_ITEMS}},
        )  # fmt: skip
    return root / "log0", root / "log1"


TINY = FitPredictorConfig(
    model=ModelConfig(hidden_size=16, num_hidden_layers=1, max_history_length=8),
    training=TrainingConfig(max_epochs=2, steps_per_epoch=2, batch_size=32),
    pretrain_epochs=0,
    gru_epochs=0,
)


def _fit(log: Path, output: Path, *, overwrite: bool = False) -> bytes:
    fit_predictor(log, output, TINY, overwrite=overwrite, progress=False)
    return (output / "model" / "model.safetensors").read_bytes()


def test_predictor_overwrite_starts_afresh_and_resume_needs_the_same_run(
    two_logs: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = two_logs
    fresh_on_second = _fit(second, tmp_path / "fresh")
    run = tmp_path / "run"
    on_first = _fit(first, run)
    # --overwrite with other logs: the previous run's checkpoints are not reused.
    assert _fit(second, run, overwrite=True) == fresh_on_second != on_first
    assert json.loads((run / "metrics.json").read_text())["log"] == str(second)
    # An unfinished run (its metrics and model gone, checkpoints left) resumes only
    # with its own options and logs.
    (run / "metrics.json").unlink()
    with pytest.raises(FileExistsError, match=r"unfinished run with other logs.*--overwrite"):
        _fit(first, run)
    other_options = TINY.replace(training=TINY.training.replace(learning_rate=1e-2))
    with pytest.raises(FileExistsError, match="other options"):
        fit_predictor(second, run, other_options, progress=False)
    assert _fit(second, run) == fresh_on_second
    # A folder loe_gym did not write is neither resumed from nor deleted.
    thesis = _thesis(tmp_path)
    with pytest.raises(FileExistsError, match="no fingerprint"):
        _fit(first, thesis)
    with pytest.raises(FileExistsError, match="refuses to delete"):
        _fit(first, thesis, overwrite=True)
    assert (thesis / "chapter1.tex").exists()
