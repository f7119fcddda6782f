"""Env-step throughput of RecSim's own environments, for side-by-side benchmarks.

Run with the RecSim virtual environment's interpreter (see ``bench/peers/README.md``)::

    /opt/peers/recsim/bin/python bench/peers/recsim_throughput.py --env interest_evolution

It builds the environment exactly as RecSim's README does
(``create_environment({"num_candidates": 10, "slate_size": 2, "resample_documents": True,
"seed": 0})``), drives it with a uniformly random slate policy (``slate_size`` distinct
candidates out of ``num_candidates``) and counts ``env.step`` calls per second. When an
episode ends the env is reset inside the timed loop, so resets are part of the cost.

Slates are drawn before timing starts (a pool of ``--steps`` slates reused by every
repeat), so the numbers measure the simulator, not the policy.

RecSim's environments simulate one user per env object, so ``num_users`` is always 1.

Prints exactly one JSON line on stdout; everything the libraries log goes to stderr.
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

ENV_NAMES = ("interest_evolution", "long_term_satisfaction")


def _claim_stdout() -> object:
    """Keep the real stdout for the JSON line; send every other write on fd 1 to stderr.

    TensorFlow, gym and absl print banners from C and Python alike, so redirecting
    ``sys.stdout`` is not enough: the file descriptor itself is swapped.
    """
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return json_out


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=ENV_NAMES, default="interest_evolution")
    parser.add_argument("--steps", type=int, default=2000, help="env.step calls per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (>= 1)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (default: steps // 5)"
    )
    parser.add_argument(
        "--num-users", type=int, default=1, help="must be 1: RecSim envs hold one user"
    )
    parser.add_argument("--num-candidates", type=int, default=10)
    parser.add_argument("--slate-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_users != 1:
        parser.error(
            f"--num-users must be 1, got {args.num_users}: RecSim's environments simulate "
            "one user per env object"
        )
    if args.steps < 1 or args.repeats < 1:
        parser.error(f"--steps and --repeats must be >= 1, got {args.steps} and {args.repeats}")
    if not 1 <= args.slate_size <= args.num_candidates:
        parser.error(
            f"need 1 <= --slate-size <= --num-candidates, got {args.slate_size} "
            f"and {args.num_candidates}"
        )
    if args.warmup is None:
        args.warmup = max(1, args.steps // 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    json_out = _claim_stdout()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")

    import numpy as np
    from recsim.environments import interest_evolution, long_term_satisfaction

    config = {
        "num_candidates": args.num_candidates,
        "slate_size": args.slate_size,
        "resample_documents": True,
        "seed": args.seed,
    }
    module = {
        "interest_evolution": interest_evolution,
        "long_term_satisfaction": long_term_satisfaction,
    }[args.env]
    # long_term_satisfaction ignores config["seed"] and draws from numpy's global RNG.
    np.random.seed(args.seed)  # noqa: NPY002
    load_average = os.getloadavg()[0]
    env = module.create_environment(config)
    env.reset()

    rng = np.random.default_rng(args.seed)
    slates = [
        rng.choice(args.num_candidates, args.slate_size, replace=False).tolist()
        for _ in range(args.steps)
    ]

    def run(num_steps: int) -> int:
        resets = 0
        step = env.step
        for i in range(num_steps):
            _, _, done, _ = step(slates[i % args.steps])
            if done:
                env.reset()
                resets += 1
        return resets

    run(args.warmup)
    rates = []
    cpu_rates = []
    resets = 0
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        resets += run(args.steps)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        rates.append(args.steps / wall)
        cpu_rates.append(args.steps / max(cpu, 1e-9))

    median = statistics.median(rates)
    record = {
        "peer": "recsim",
        "peer_version": metadata.version("recsim"),
        "env": args.env,
        "config": config,
        "num_users": 1,
        "batching": "none (one user per env)",
        "policy": f"uniform random slate, {args.slate_size} distinct of {args.num_candidates}",
        "steps_per_repeat": args.steps,
        "user_steps_per_repeat": args.steps,
        "warmup_steps": args.warmup,
        "unit": "user-steps/s",
        "repeats": [round(rate, 1) for rate in rates],
        "median": round(median, 1),
        "steps_per_second": round(median, 1),
        "user_steps_per_second": round(median, 1),
        "cpu_repeats": [round(rate, 1) for rate in cpu_rates],
        "cpu_median": round(statistics.median(cpu_rates), 1),
        "episode_resets": resets,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(load_average, 2),
    }
    print(json.dumps(record), file=json_out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
