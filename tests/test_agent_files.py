"""Agents are saved as safetensors + JSON and rebuilt from their config: nothing read back
runs code. SB3's cloudpickled ``model.zip`` loads only behind ``trust_pickle``."""

from __future__ import annotations

import base64
import json
import pathlib
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import NUM_ITEMS
from safetensors.torch import load_file, save_file

from agents.configs import TrainConfig, TrainRunConfig
from agents.sb3_vec_env import make_sb3_env
from agents.training import load_agent, train_agent

OPTIONS = {"simulator_kwargs": {"num_items": NUM_ITEMS}, "horizon_days": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(algorithm: str = "ppo", **agent: Any) -> TrainRunConfig:
    return TrainRunConfig(
        env_options=OPTIONS,
        agent=TrainConfig(
            algorithm=algorithm,
            encoder="none",
            total_steps=256,
            num_users=8,
            n_steps=16,
            batch_size=64,
            **agent,
        ),
        eval_every=0,
        checkpoint_every=128,
    )


def _actions(model: Any) -> np.ndarray:
    """The model's deterministic actions for 16 users' first observations."""
    env = make_sb3_env("loe_gym/Engagement-v0", 16, **OPTIONS)
    env.seed(0)
    return np.asarray(model.predict(env.reset(), deterministic=True)[0])


@pytest.mark.parametrize("algorithm", ["ppo", "dqn"])
def test_a_trained_agent_round_trips_without_pickle(algorithm: str, tmp_path: Path) -> None:
    config = _config(algorithm)
    train_agent(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert (run / "agent.safetensors").is_file() and (run / "agent.json").is_file()
    assert not list(run.rglob("*.zip")) and not list(run.rglob("*.pkl"))
    policy, loaded, _ = load_agent(run)
    assert loaded == config
    # The rebuilt network holds exactly the saved weights.
    saved = load_file(str(run / "agent.safetensors"))
    for name, value in policy.model.policy.state_dict().items():
        torch.testing.assert_close(value, saved[f"parameters/policy/{name}"])
    layout = json.loads((run / "agent.json").read_text())
    assert layout["counters"]["num_timesteps"] == policy.model.num_timesteps >= 256


def _crafted_zip(path: Path, marker: Path) -> None:
    """SB3's zip layout with a cloudpickled entry whose unpickling touches ``marker``."""

    class Payload:
        def __reduce__(self) -> Any:
            return (pathlib.Path.touch, (marker,))

    data = {"policy_kwargs": {":serialized:": base64.b64encode(pickle.dumps(Payload())).decode()}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))


def test_a_pickled_zip_is_refused_unless_trusted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_agent(_config(), run, progress=False)
    for name in ("agent.json", "agent.safetensors"):
        (run / name).unlink()
    marker = tmp_path / "pwned"
    _crafted_zip(run / "model.zip", marker)
    with pytest.raises(ValueError, match=r"cloudpickle.*trust_pickle=True \(--trust-pickle\)"):
        load_agent(run)
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "evaluate", "--agents", str(run), "--output",
         str(tmp_path / "eval"), "--baselines", "random", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "--trust-pickle" in done.stderr, done.stderr
    assert not marker.exists()


def test_a_real_sb3_zip_loads_when_trusted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_agent(_config(), run, progress=False)
    policy, _, _ = load_agent(run)
    policy.model.save(run / "model.zip")
    for name in ("agent.json", "agent.safetensors"):
        (run / name).unlink()
    trusted, _, _ = load_agent(run, trust_pickle=True)
    np.testing.assert_array_equal(_actions(trusted.model), _actions(policy.model))


def test_non_finite_weights_are_refused_with_the_tensor_name(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_agent(_config(), run, progress=False)
    tensors = load_file(str(run / "agent.safetensors"))
    name = sorted(key for key in tensors if key.startswith("parameters/policy/"))[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(run / "agent.safetensors"))
    with pytest.raises(ValueError, match=rf"tensor '{name}' holds NaN or inf"):
        load_agent(run)
