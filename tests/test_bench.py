"""Benches at tiny size: the dominance bench end to end, the backend comparison and the
on-policy refit's targets (their figures are in docs/agents.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def test_the_dominance_bench_judges_notebook_04s_simulator(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "bench" / "oracle_dominance.py"),
        *("--envs", "notebook04", "LongTermSatisfaction-v0"),
        *("--users", "8", "--seeds", "0", "1", "--output", str(tmp_path)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "dominance.json").read_text())["rows"]
    assert set(rows) == {"notebook04", "LongTermSatisfaction-v0"}
    novelty = rows["notebook04"]["policies"]
    # The notebook's model exposes expected responses but no quality: max_quality cannot act.
    assert {"random", "myopic", "oracle_planner", "lookahead_oracle"} <= set(novelty)
    assert "max_quality" not in novelty
    assert "| lookahead_oracle |" in (tmp_path / "dominance.md").read_text()
    # A later call on one simulator with the same settings replaces that row, keeps the other.
    again = [*command[:2], "--envs", "LongTermSatisfaction-v0", *command[5:]]
    done = subprocess.run(again, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = json.loads((tmp_path / "dominance.json").read_text())["rows"]
    assert set(merged) == {"notebook04", "LongTermSatisfaction-v0"}
    assert merged["notebook04"] == rows["notebook04"]
    assert (
        merged["LongTermSatisfaction-v0"]["seconds"] != rows["LongTermSatisfaction-v0"]["seconds"]
    )
    table = (tmp_path / "dominance.md").read_text()
    rewrite = [*command[:2], *command[5:], "--rewrite"]
    done = subprocess.run(rewrite, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "dominance.md").read_text() == table


def test_the_backend_comparison_aggregates_training_seeds(tmp_path: Path) -> None:
    """Two groups of runs read from an evaluate report; the second scores 0.9× the first."""
    per_seed = {
        "a0": [100, 110, 90],
        "a1": [105, 95, 100],
        "b0": [90, 99, 81],
        "b1": [94.5, 85.5, 90],
    }
    policies = {name: {"total_watch": {"per_seed": values}} for name, values in per_seed.items()}
    metrics = {"num_users": 10, "seeds": [0, 1, 2], "policies": policies}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    command = [sys.executable, str(ROOT / "bench" / "backend_comparison.py"),
               str(tmp_path / "metrics.json"), "--first", "sb3", "runs/a0", "runs/a1",
               "--second", "rllib", "b0", "b1", "--reps", "200"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| sb3 | 2 | 100.0, 100.0 |" in done.stdout
    ratio = re.search(r"rllib / sb3 \(means\): ([\d.]+) \[([\d.]+), ([\d.]+)\]", done.stdout)
    assert ratio is not None and ratio[1] == "0.900"
    assert float(ratio[2]) < 0.9 < float(ratio[3])  # training seeds resampled per group
    missing = [*command[:3], "--first", "sb3", "nope", "--second", "rllib", "b0"]
    done = subprocess.run(missing, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "['nope'] not in the report" in done.stderr


def test_the_on_policy_refit_discounts_the_future_per_day_and_stops_at_a_life_end() -> None:
    """`bench/onpolicy_refit.py`'s fitted-Q targets: one user whose life ends after step 1
    (the next life starts at step 2) and one who stays in one day, then skips two."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from onpolicy_refit import discounted_future
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rewards = np.array([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]], np.float32)
    dones = np.array([[False, False], [True, False], [False, False]])
    days = np.array([[0, 3], [1, 3], [0, 5]], np.float32)
    future = discounted_future({"rewards": rewards, "dones": dones, "days": days}, 0.5)
    assert future[:, 0].tolist() == [1 + 0.5 * 2, 2, 4]  # one day later; the life ends
    assert future[:, 1].tolist() == [1 + 2 + 0.25 * 4, 2 + 0.25 * 4, 4]  # same day; 2 days
    session_only = discounted_future({"rewards": rewards, "dones": dones, "days": days}, 0.0)
    assert session_only[:, 1].tolist() == [3, 2, 4]  # a day discount of 0: today only
