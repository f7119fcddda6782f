"""kill -9 during ``collect-logs`` and during ``fit-predictor``, then resume: the results
are those of an uninterrupted run, byte for byte (log parts, model weights). Readers
refuse the unfinished log meanwhile, and corrupt files raise `LogSchemaError`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import NUM_ITEMS

from agents.collect import collect_logs
from loe_gym.logs import LogSchemaError, log_part_files, read_log, read_log_metadata
from loe_gym.predictor.configs import FitPredictorConfig, ModelConfig, TrainingConfig
from loe_gym.predictor.pipeline import fit_predictor

TESTS = Path(__file__).resolve().parent
COLLECT = {
    "num_users": 300,
    "seed": 7,
    "horizon_days": 6,
    "rows_per_group": 400,
    "env_options": {"simulator_kwargs": {"num_items": NUM_ITEMS}},
    "progress": False,
}
FIT = FitPredictorConfig(
    model=ModelConfig(hidden_size=16, num_hidden_layers=1, max_history_length=8),
    training=TrainingConfig(max_epochs=4, steps_per_epoch=40, batch_size=32),
    pretrain_epochs=0,
    gru_epochs=0,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _start(script: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=TESTS, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _kill_when(
    process: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 240
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before the kill: {process.stderr.read()}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the run never reached the point to kill"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _parts(path: Path) -> dict[str, bytes]:
    return {file.name: file.read_bytes() for file in log_part_files(path)}


def test_collect_logs_killed_then_resumed_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    full = tmp_path / "full"
    collect_logs(path=full, **COLLECT)  # type: ignore[arg-type]
    killed = tmp_path / "killed"
    # The same collection, slowed by a wrapper that sleeps (it adds nothing to the log).
    process = _start(f"""
        import time, gymnasium as gym
        from agents.collect import collect_logs
        class Slow(gym.vector.VectorWrapper):
            def step(self, actions):
                time.sleep(0.02)
                return self.env.step(actions)
        collect_logs(path={str(killed)!r}, wrappers=[Slow], **{COLLECT!r})
    """)
    _kill_when(process, lambda: len(list(killed.glob("part-*.parquet"))) >= 2)
    metadata = read_log_metadata(killed)
    assert metadata is not None and metadata["closed"] is False
    with pytest.raises(LogSchemaError, match="never closed"):
        read_log(killed)
    # Another run's options cannot resume it.
    with pytest.raises(ValueError, match=r"other \['run'\]"):
        collect_logs(path=killed, resume=True, **{**COLLECT, "seed": 8})  # type: ignore[arg-type]
    summary = collect_logs(path=killed, resume=True, **COLLECT)  # type: ignore[arg-type]
    assert _parts(killed) == _parts(full)
    assert summary.rows == read_log(full).num_rows
    assert read_log_metadata(killed)["closed"] is True  # type: ignore[index]
    with pytest.raises(FileExistsError, match="complete"):
        collect_logs(path=killed, resume=True, **COLLECT)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "log"
    collect_logs(path=path, **{**COLLECT, "num_users": 60})  # type: ignore[arg-type]
    return path


def test_fit_predictor_killed_then_resumed_equals_an_uninterrupted_run(
    log: Path, tmp_path: Path
) -> None:
    script = """
        import torch
        torch.set_num_threads(1)
        from loe_gym.predictor.pipeline import fit_predictor
        from loe_gym.predictor.configs import FitPredictorConfig
        config = FitPredictorConfig.from_dict({config!r})
        fit_predictor({log!r}, {output!r}, config, progress=False)
    """
    config = FIT.to_dict()
    full, killed = tmp_path / "full", tmp_path / "killed"
    done = _start(script.format(config=config, log=str(log), output=str(full)))
    assert done.wait() == 0, done.stderr.read()  # type: ignore[union-attr]
    process = _start(script.format(config=config, log=str(log), output=str(killed)))
    first_epoch = killed / "finetune" / "checkpoints" / "epoch-001"
    _kill_when(process, lambda: (first_epoch / "training_state.pt").is_file())
    assert not (killed / "metrics.json").exists()
    fit_predictor(log, killed, FIT, progress=False)  # one torch thread, as the script
    weights = "model/model.safetensors"
    assert (killed / weights).read_bytes() == (full / weights).read_bytes()
    metrics = [json.loads((run / "metrics.json").read_text())["test"] for run in (full, killed)]
    assert metrics[0] == metrics[1]


def test_fit_predictor_refuses_an_unfinished_log_unless_told(log: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for file in log.iterdir():
        (partial / file.name).write_bytes(file.read_bytes())
    metadata = json.loads((partial / "_metadata.json").read_text())
    (partial / "_metadata.json").write_text(json.dumps({**metadata, "closed": False}))
    with pytest.raises(LogSchemaError, match=r"never closed.*--allow-partial"):
        fit_predictor(partial, tmp_path / "run", FIT, progress=False)
    assert not (tmp_path / "run").exists()  # a refused log claims no folder
    config = FIT.replace(training=FIT.training.replace(max_epochs=1, steps_per_epoch=2))
    fit_predictor(partial, tmp_path / "run", config, progress=False, allow_partial=True)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("truncated part", "part-00000.parquet"),
        ("foreign part", "part-00001.parquet"),
        ("broken metadata", "_metadata.json"),
    ],
)
def test_corrupt_files_raise_log_schema_error_naming_them(
    damage: str, named: str, log: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "log"
    copy.mkdir()
    for file in log.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    target = copy / named
    if damage == "truncated part":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "foreign part":
        target.write_text("user,item\n1,2\n")
    else:
        target.write_text('{"closed": tru')
    with pytest.raises(LogSchemaError, match=rf"{named}.*(not a readable Parquet|not valid JSON)"):
        read_log(copy)
