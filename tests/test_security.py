"""Nothing read from a file runs code (docs/security.md): simulator strings name only
simulator classes, checked before they are called; a run folder that names a module
warns before importing it. (Agent files: tests/test_agent_files.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import pytest

from agents.configs import TrainConfig, TrainRunConfig
from agents.training import load_agent, train_agent
from loe_gym.errors import ContractError


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("os:system", r"'os:system' names a builtin_function_or_method, not a class"),
        ("subprocess:run", r"names a function, not a class"),
        ("subprocess:Popen", r"class Popen, which lacks reset, respond, update, user_features"),
        ("builtins:eval", r"not a class"),
    ],
)
def test_a_simulator_string_never_calls_what_is_not_a_simulator_class(
    entry_point: str, message: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    kwargs = {"command": f"touch {marker}", "args": ["touch", str(marker)]}
    with pytest.raises(ContractError, match=message):
        gym.make("loe_gym/Recommendation-v0", simulator=entry_point, simulator_kwargs=kwargs)
    assert not marker.exists()


def test_a_config_file_naming_os_system_is_refused_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "env_id": "loe_gym/Recommendation-v0",
                "env_options": {
                    "simulator": "os:system",
                    "simulator_kwargs": {"command": f"touch {marker}"},
                },
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", "train", "--config", str(config), "--output",
         str(tmp_path / "run"), "--agent.encoder", "none", "--agent.total-steps", "8",
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "not a class" in done.stderr, done.stderr
    assert not marker.exists()


def test_loading_a_run_folder_that_names_a_module_warns(tmp_path: Path) -> None:
    options = {"simulator": "trap_simulator:TrapUsers", "num_candidates": 4, "horizon_days": 2}
    config = TrainRunConfig(
        env_id="loe_gym/Recommendation-v0",
        env_options=options,
        agent=TrainConfig(encoder="none", total_steps=64, num_users=8, n_steps=8, batch_size=64),
        eval_every=0,
    )
    train_agent(config, tmp_path / "run", progress=False)
    with pytest.warns(UserWarning, match=r"imports the module 'trap_simulator'"):
        load_agent(tmp_path / "run")
    # A built-in simulator needs no warning.
    builtin = config.replace(env_id="loe_gym/Engagement-v0", env_options={"horizon_days": 2})
    train_agent(builtin, tmp_path / "builtin", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_agent(tmp_path / "builtin")
