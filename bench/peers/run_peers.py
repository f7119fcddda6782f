"""Run the peer simulators' throughput scripts and collect their results.

RecSim and SARDINE pin packages that must not enter the project's environment, so each
lives in its own virtual environment (default ``/opt/peers/<peer>``, or
``$LOE_GYM_PEERS_DIR/<peer>``; see ``bench/peers/README.md``). This module uses the
standard library only: it runs ``recsim_throughput.py`` and ``sardine_throughput.py`` with
the peer's own interpreter, one measurement per subprocess, and reads the one JSON line
each prints.

The benchmark imports :func:`peer_results`; run as a script it prints a table::

    python bench/peers/run_peers.py --num-users 1 64 1024 4096 --steps 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS_DIR = Path("/opt/peers")
README = "bench/peers/README.md"

RECSIM_ENVS = ("interest_evolution", "long_term_satisfaction")
SARDINE_ENVS = (
    "sardine/SingleItem-BoredInf-v0",
    "sardine/SingleItem-Static-v0",
    "sardine/SingleItem-Uncertain-v0",
    "sardine/SlateRerank-Bored-v0",
    "sardine/SlateRerank-Static-v0",
    "sardine/SlateTopK-Bored-v0",
    "sardine/SlateTopK-BoredInf-v0",
    "sardine/SlateTopK-Uncertain-v0",
)
# One single-item and one slate env keep a default run short; pass SARDINE_ENVS for all.
SARDINE_DEFAULT_ENVS = ("sardine/SingleItem-Static-v0", "sardine/SlateTopK-Bored-v0")

# A batched measurement runs ceil(steps / num_users) vector steps per repeat, at least
# this many, so every repeat times a comparable number of user-steps.
MIN_BATCHED_STEPS = 5


def peers_dir() -> Path:
    """The folder that holds one virtual environment per peer."""
    return Path(os.environ.get("LOE_GYM_PEERS_DIR", DEFAULT_PEERS_DIR))


def peer_python(peer: str) -> Path:
    """The interpreter of ``peer``'s virtual environment (it may not exist)."""
    return peers_dir() / peer / "bin" / "python"


def _base_record(peer: str, env: str, num_users: int, status: str, message: str) -> dict:
    return {"peer": peer, "env": env, "num_users": num_users, "status": status, "message": message}


def _run_script(
    peer: str, script: str, env: str, num_users: int, args: Sequence[str], timeout_s: float
) -> dict:
    """Run one measurement in the peer's interpreter and return its record."""
    command = [str(peer_python(peer)), "-I", str(HERE / script), *args]
    child_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, env=child_env
        )
    except subprocess.TimeoutExpired:
        return _base_record(peer, env, num_users, "error", f"timed out after {timeout_s:g} s")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0 or not lines:
        tail = " | ".join(completed.stderr.strip().splitlines()[-3:])
        message = f"exit code {completed.returncode}: {tail or 'no output'}"
        return _base_record(peer, env, num_users, "error", message)
    try:
        record = json.loads(lines[-1])
    except json.JSONDecodeError:
        return _base_record(peer, env, num_users, "error", f"not JSON: {lines[-1][:200]}")
    record["status"] = "ok"
    return record


def _batched_steps(steps: int, num_users: int) -> int:
    if num_users == 1:
        return steps
    return max(MIN_BATCHED_STEPS, math.ceil(steps / num_users))


def recsim_results(
    num_users_list: Iterable[int],
    steps: int,
    repeats: int,
    envs: Sequence[str] = RECSIM_ENVS,
    timeout_s: float = 600.0,
) -> list[dict]:
    """RecSim's envs at one user; a record marked "unsupported" for every other count."""
    counts = sorted(set(num_users_list) | {1})
    if not peer_python("recsim").exists():
        message = f"not installed; see {README}"
        return [_base_record("recsim", env, 1, "not installed", message) for env in envs]
    records = []
    for env in envs:
        for num_users in counts:
            if num_users != 1:
                message = "RecSim's environments simulate one user per env object"
                records.append(_base_record("recsim", env, num_users, "unsupported", message))
                continue
            args = ["--env", env, "--steps", str(steps), "--repeats", str(repeats)]
            records.append(_run_script("recsim", "recsim_throughput.py", env, 1, args, timeout_s))
    return records


def sardine_results(
    num_users_list: Iterable[int],
    steps: int,
    repeats: int,
    envs: Sequence[str] = SARDINE_DEFAULT_ENVS,
    timeout_s: float = 600.0,
) -> list[dict]:
    """SARDINE's envs at every requested user count (batched with SyncVectorEnv)."""
    counts = sorted(set(num_users_list))
    if not peer_python("sardine").exists():
        message = f"not installed; see {README}"
        return [
            _base_record("sardine", env, n, "not installed", message)
            for env in envs
            for n in counts
        ]
    records = []
    for env in envs:
        for num_users in counts:
            args = [
                "--env", env,
                "--num-users", str(num_users),
                "--steps", str(_batched_steps(steps, num_users)),
                "--repeats", str(repeats),
            ]  # fmt: skip
            records.append(
                _run_script("sardine", "sardine_throughput.py", env, num_users, args, timeout_s)
            )
    return records


def peer_results(
    num_users_list: Iterable[int],
    steps: int,
    repeats: int,
    *,
    recsim_envs: Sequence[str] = RECSIM_ENVS,
    sardine_envs: Sequence[str] = SARDINE_DEFAULT_ENVS,
    timeout_s: float = 600.0,
) -> list[dict]:
    """Measure every installed peer; one record (a dict) per peer, env and user count.

    ``steps`` is the number of user-steps each timed repeat aims at: single-user envs take
    ``steps`` env.step calls, a batch of N users takes ``max(5, ceil(steps / N))`` vector
    steps. Each record has ``peer``, ``env``, ``num_users`` and ``status``:

    - ``"ok"``: the peer script's JSON record (``median`` and ``repeats`` in user-steps/s,
      ``steps_per_second`` in env.step calls/s, settings and versions);
    - ``"not installed"``: the peer's virtual environment is missing (``message`` says
      where to read how to install it);
    - ``"unsupported"``: the peer cannot simulate that many users in one env;
    - ``"error"``: the script failed or timed out (``message`` has the reason).

    Measurements run one after another, so peers never compete for the cores.
    """
    counts = list(num_users_list)
    return [
        *recsim_results(counts, steps, repeats, recsim_envs, timeout_s),
        *sardine_results(counts, steps, repeats, sardine_envs, timeout_s),
    ]


def format_table(records: Iterable[dict]) -> str:
    """A plain-text table: median and range of user-steps/s per measurement.

    "per CPU s" divides by the process's CPU time instead of wall time, which other
    processes on a shared machine disturb less.
    """
    header = ("peer", "env", "users", "median user-steps/s", "min..max", "per CPU s", "status")
    rows = [header]
    for record in records:
        if record["status"] == "ok":
            median = f"{record['median']:,.0f}"
            spread = f"{min(record['repeats']):,.0f}..{max(record['repeats']):,.0f}"
            cpu_median = f"{record['cpu_median']:,.0f}"
            status = "ok"
        else:
            median = spread = cpu_median = "-"
            status = f"{record['status']}: {record['message']}"
        rows.append(
            (
                record["peer"],
                record["env"],
                str(record["num_users"]),
                median,
                spread,
                cpu_median,
                status,
            )
        )
    num_aligned = len(header) - 1  # the status column is left ragged
    widths = [max(len(row[i]) for row in rows) for i in range(num_aligned)]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row[:num_aligned], widths, strict=True))
        ]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Throughput of RecSim and SARDINE.")
    parser.add_argument("--num-users", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--steps", type=int, default=2000, help="user-steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--sardine-envs",
        nargs="+",
        default=list(SARDINE_DEFAULT_ENVS),
        help="SARDINE ids to measure, or 'all'",
    )
    parser.add_argument("--recsim-envs", nargs="+", default=list(RECSIM_ENVS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement")
    parser.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    args = parser.parse_args(argv)
    sardine_envs = SARDINE_ENVS if args.sardine_envs == ["all"] else args.sardine_envs
    records = peer_results(
        args.num_users,
        args.steps,
        args.repeats,
        recsim_envs=args.recsim_envs,
        sardine_envs=sardine_envs,
        timeout_s=args.timeout,
    )
    if args.json:
        for record in records:
            print(json.dumps(record))
    else:
        print(format_table(records))
    return 0 if all(r["status"] != "error" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
