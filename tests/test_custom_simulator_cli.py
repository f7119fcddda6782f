"""A user's own simulator everywhere: every command that builds an environment takes one
through ``--env-options '{"simulator": "module:Class"}'`` or a ``module:env-id`` that
registers an id, as ``train`` and ``evaluate`` do (subprocesses, tiny sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loe_gym.logs import read_public_catalog

TESTS = Path(__file__).resolve().parent
GENERIC = "loe_gym/Recommendation-v0"
TRAP = json.dumps({"simulator": "trap_simulator:TrapUsers", "num_candidates": 4})
# The engagement model named as a plug-in, with a catalog the defaults do not have.
SMALL_CATALOG = json.dumps({"simulator": "engagement", "simulator_kwargs": {"num_items": 200}})


def loe_gym(*args: str, path: Path = TESTS) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(TESTS)])}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args, "--no-progress"],
        capture_output=True, text=True, timeout=600, env=env, cwd=TESTS,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "--evaluation.num-users", "20"],
        ["calibrate", "--evaluation.num-users", "20", "--evaluation.seeds", "0", "1"],
        ["collect-logs", "--collect.num-users", "20"],
        ["validate-simulator", "--quick", "--collect.policy", "random"],
        ["experiment", "--quick"],
        ["tune-oracle", "--iterations", "1", "--population", "3", "--evaluation.num-users", "8"],
    ],
    ids=lambda command: command[0],
)
def test_every_command_runs_a_custom_simulator(command: list[str], tmp_path: Path) -> None:
    output = {
        "calibrate": ["--output", str(tmp_path / "cal.md")],
        "simulate": [],
        "tune-oracle": [],
    }.get(command[0], ["--output", str(tmp_path / "out")])
    done = loe_gym(*command, "--env-id", GENERIC, "--env-options", TRAP, *output)
    assert done.returncode == 0, done.stderr
    if command[0] == "simulate":
        assert "| random |" in done.stdout and "trap_simulator:TrapUsers" in done.stdout
    if command[0] in ("validate-simulator", "experiment"):
        config = json.loads((tmp_path / "out" / "config.json").read_text())
        assert config["env_options"]["simulator"] == "trap_simulator:TrapUsers"
    if command[0] == "experiment":
        catalog = read_public_catalog(tmp_path / "out" / "logs")
        assert catalog is not None and catalog.feature_names == ("minutes", "trap")


def test_the_loop_runs_in_the_simulator_it_is_given(tmp_path: Path) -> None:
    done = loe_gym(
        "loop", "--quick", "--env-id", GENERIC, "--env-options", SMALL_CATALOG,
        "--output", str(tmp_path / "loop"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    catalog = read_public_catalog(tmp_path / "loop" / "round_0" / "logs")
    assert catalog is not None and catalog.num_items == 200  # the default has 1000


def test_the_loop_deploys_on_a_simulator_with_user_features(tmp_path: Path) -> None:
    """The learned world observes no ``user`` features; the agent it trains is deployed
    where the simulator has them (RecSim's interest model: 20)."""
    options = json.dumps({"simulator": "interest_evolution"})
    done = loe_gym(
        "loop", "--quick", "--env-id", GENERIC, "--env-options", options,
        "--output", str(tmp_path / "loop"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "loop" / "round_1" / "logs").is_dir()


# The trap without expected_responses and with a nested state (tests/trap_simulator.py).
BLIND = json.dumps({"simulator": "trap_simulator:BlindTrapUsers", "num_candidates": 4})


def test_a_simulator_without_expected_responses_runs_the_whole_pipeline(tmp_path: Path) -> None:
    """No privileged baseline acts on it: simulate's defaults become random and the
    catalog's feature rankings, and the experiment logs with the deployable mixture and
    judges PPO against the rest, the lookahead oracle included."""
    done = loe_gym("simulate", "--env-id", GENERIC, "--env-options", BLIND,
                   "--evaluation.num-users", "20")  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("random", "max_minutes", "min_minutes", "max_trap"):
        assert f"| {name} |" in done.stdout
    done = loe_gym(
        "experiment", "--quick", "--env-id", GENERIC, "--env-options", BLIND,
        "--collect.policy", "deployable", "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| lookahead_oracle |" in report and "| ppo |" in report
    assert "| myopic |" not in report and "| oracle_planner |" not in report


def test_a_module_env_id_registers_the_id_first(tmp_path: Path) -> None:
    (tmp_path / "my_world.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('my_world/Trap-v0', entry_point='loe_gym.envs.single_env:"
        "RecommendationEnv', vector_entry_point='loe_gym.envs.vector_env:"
        "RecommendationVectorEnv', kwargs={'simulator': 'trap_simulator:TrapUsers', "
        "'num_candidates': 4})\n"
    )
    done = loe_gym(
        "simulate", "--env-id", "my_world:my_world/Trap-v0", "--evaluation.num-users", "20",
        path=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["experiment", "loop", "simulate", "collect-logs"])
def test_the_generic_id_without_a_simulator_is_refused(command: str, tmp_path: Path) -> None:
    done = loe_gym(command, "--env-id", GENERIC, "--output", str(tmp_path / "out"))
    if command == "simulate":
        done = loe_gym(command, "--env-id", GENERIC)
    assert done.returncode == 2
    assert "hosts your own simulator" in done.stderr and '"simulator":' in done.stderr
    assert not (tmp_path / "out").exists()


def test_popularity_counts_are_sized_by_the_evaluated_catalog(tmp_path: Path) -> None:
    """A catalog larger than the default 1000 items (MovieLens 100k has 1682)."""
    from agents.collect import collect_logs
    from agents.configs import EvaluateConfig, EvaluationConfig
    from agents.evaluation import evaluate_runs

    options = {"simulator_kwargs": {"num_items": 1200}, "horizon_days": 2}
    collect_logs(num_users=30, path=tmp_path / "logs", env_options=options, progress=False)
    config = EvaluateConfig(
        env_options=options,
        baselines=("random", "popularity"),
        logs=str(tmp_path / "logs"),
        evaluation=EvaluationConfig(num_users=4, seeds=(0,)),
    )
    result = evaluate_runs(config, progress=False)
    assert result.metric("popularity", "total_watch").mean > 0
