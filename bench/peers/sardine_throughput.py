"""Env-step throughput of SARDINE's registered environments, for side-by-side benchmarks.

Run with the SARDINE virtual environment's interpreter (see ``bench/peers/README.md``)::

    /opt/peers/sardine/bin/python bench/peers/sardine_throughput.py \
        --env sardine/SlateTopK-Bored-v0 --num-users 64

Each SARDINE env (``sardine.simulator.Sardine``) simulates one user, created with
``gymnasium.make(env_id)`` and the default kwargs SARDINE registers for that id. With
``--num-users 1`` the single env is stepped directly and reset inside the timed loop when
an episode ends. With ``--num-users N > 1`` the N envs run in a
``gymnasium.vector.SyncVectorEnv`` with same-step autoreset, which is how a SARDINE user
batches users (SARDINE has no batched simulator of its own); each vector step counts as
N user-steps.

Actions are samples of the env's own action space (``MultiDiscrete([num_items] *
slate_size)``, so slates may repeat an item, as SARDINE's random policy does), drawn
before timing starts (a pool of ``--steps`` actions reused by every repeat), so the
numbers measure the simulator, not the policy.

Prints exactly one JSON line on stdout; ``--list-envs`` prints the registered ids instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from importlib import metadata

DEFAULT_ENV = "sardine/SlateTopK-Bored-v0"


def _claim_stdout() -> object:
    """Keep the real stdout for the JSON line; send every other write on fd 1 to stderr."""
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return json_out


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=DEFAULT_ENV, help="a registered sardine/... id")
    parser.add_argument(
        "--steps",
        type=int,
        default=2000,
        help="env.step calls per repeat; with N users each call advances all N",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (>= 1)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (default: steps // 5)"
    )
    parser.add_argument("--num-users", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--list-envs", action="store_true", help="print the registered ids as JSON and exit"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.num_users < 1:
        parser.error(
            "--steps, --repeats and --num-users must be >= 1, got "
            f"{args.steps}, {args.repeats} and {args.num_users}"
        )
    if args.warmup is None:
        args.warmup = max(1, args.steps // 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    json_out = _claim_stdout()
    warnings.filterwarnings("ignore")

    import gymnasium as gym
    import numpy as np
    import sardine  # noqa: F401  (registers the sardine/... ids)

    env_ids = sorted(env_id for env_id in gym.registry if env_id.startswith("sardine/"))
    if args.list_envs:
        print(json.dumps(env_ids), file=json_out, flush=True)
        return 0
    if args.env not in env_ids:
        print(f"unknown env {args.env!r}; registered: {', '.join(env_ids)}", file=sys.stderr)
        return 2

    load_average = os.getloadavg()[0]
    if args.num_users == 1:
        env = gym.make(args.env)
        env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        batching = "none (one user per env)"
    else:
        env = gym.vector.SyncVectorEnv(
            [lambda: gym.make(args.env) for _ in range(args.num_users)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        batching = "gymnasium.vector.SyncVectorEnv (same-step autoreset)"
    actions = [env.action_space.sample() for _ in range(args.steps)]

    def run_single(num_steps: int) -> int:
        resets = 0
        step = env.step
        for i in range(num_steps):
            _, _, terminated, truncated, _ = step(actions[i % args.steps])
            if terminated or truncated:
                env.reset()
                resets += 1
        return resets

    def run_vector(num_steps: int) -> int:
        resets = 0
        step = env.step
        for i in range(num_steps):
            _, _, terminated, truncated, _ = step(actions[i % args.steps])
            resets += int(np.count_nonzero(terminated | truncated))
        return resets

    run = run_single if args.num_users == 1 else run_vector
    run(args.warmup)
    rates = []
    cpu_rates = []
    resets = 0
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        resets += run(args.steps)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        rates.append(args.steps * args.num_users / wall)
        cpu_rates.append(args.steps * args.num_users / max(cpu, 1e-9))

    median = statistics.median(rates)
    kwargs = gym.spec(args.env).kwargs
    record = {
        "peer": "sardine",
        "peer_version": metadata.version("sardine-rec"),
        "env": args.env,
        "config": {
            key: kwargs[key] for key in ("num_items", "slate_size", "num_topics", "episode_length")
        },
        "num_users": args.num_users,
        "batching": batching,
        "policy": "env.action_space.sample()",
        "steps_per_repeat": args.steps,
        "user_steps_per_repeat": args.steps * args.num_users,
        "warmup_steps": args.warmup,
        "unit": "user-steps/s",
        "repeats": [round(rate, 1) for rate in rates],
        "median": round(median, 1),
        "steps_per_second": round(median / args.num_users, 1),
        "user_steps_per_second": round(median, 1),
        "cpu_repeats": [round(rate, 1) for rate in cpu_rates],
        "cpu_median": round(statistics.median(cpu_rates), 1),
        "episode_resets": resets,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(load_average, 2),
    }
    print(json.dumps(record), file=json_out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
