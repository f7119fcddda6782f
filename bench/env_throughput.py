"""Environment throughput: user-steps/s of every registered env, beside the peers.

    python bench/env_throughput.py                 # all envs, 1/64/1024/4096 users, peers if installed
    python bench/env_throughput.py --no-peers --repeats 3

Each figure is the median of ``--repeats`` timed runs after a warm-up; a step includes
candidate retrieval, the simulator's response and transition, and building the
observation. Actions are pre-sampled so that the policy costs nothing. Peers (RecSim,
SARDINE) run in their own virtual environments (see bench/peers/README.md) in the
same invocation, so their numbers share the machine's state with ours.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import loe_gym

sys.path.insert(0, str(Path(__file__).resolve().parent))


def vector_throughput(env_id: str, num_users: int, steps: int, repeats: int) -> list[float]:
    envs = gym.make_vec(env_id, num_envs=num_users, vectorization_mode="vector_entry_point")
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [envs.action_space.sample() for _ in range(64)]
    del rng
    for i in range(max(10, steps // 10)):
        envs.step(actions[i % 64])
    results = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            envs.step(actions[i % 64])
        results.append(num_users * steps / (time.perf_counter() - start))
    envs.close()
    return results


def single_throughput(env_id: str, steps: int, repeats: int) -> list[float]:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]
    results = []
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(actions[i % 64])
            if terminated or truncated:
                env.reset()
        if repeat:  # the first run is the warm-up
            results.append(steps / (time.perf_counter() - start))
    env.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--envs",
        nargs="+",
        default=[e for e in loe_gym.ENVIRONMENTS if e != "loe_gym/Recommendation-v0"],
    )
    parser.add_argument("--num-users", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--user-steps", type=int, default=400_000, help="user-steps per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true", help="skip RecSim / SARDINE")
    parser.add_argument("--json", type=Path, default=None, help="also write all results here")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"median of {args.repeats} runs; user-steps/s (steps/s × users)\n")
    records = []
    header = (
        "| env | " + " | ".join(f"{n} users" for n in args.num_users) + " | single env (gym.make) |"
    )
    print(header)
    print("|" + "---|" * (len(args.num_users) + 2))
    for env_id in args.envs:
        cells = []
        for n in args.num_users:
            steps = max(50, min(20_000, args.user_steps // n))
            runs = vector_throughput(env_id, n, steps, args.repeats)
            records.append(
                {
                    "env": env_id,
                    "kind": "vector",
                    "num_users": n,
                    "median": statistics.median(runs),
                    "runs": runs,
                }
            )
            cells.append(f"{statistics.median(runs):,.0f}")
        runs = single_throughput(env_id, 20_000, args.repeats)
        records.append(
            {
                "env": env_id,
                "kind": "single",
                "num_users": 1,
                "median": statistics.median(runs),
                "runs": runs,
            }
        )
        print(
            f"| {env_id} | " + " | ".join(cells) + f" | {statistics.median(runs):,.0f} |",
            flush=True,
        )

    if not args.no_peers:
        from peers.run_peers import peer_results

        print("\npeers (their own envs, same machine, same run):")
        peers = peer_results(args.num_users, steps=20_000, repeats=args.repeats)
        for record in peers:
            records.append({"kind": "peer", **record})
            if record.get("status") == "unsupported":
                continue  # e.g. RecSim at more than one user: it has no batched env
            label = f"{record.get('peer')} {record.get('env')} × {record.get('num_users')} users"
            if "median" in record:
                print(f"- {label}: {record['median']:,.0f} user-steps/s")
            else:
                print(f"- {label}: {record.get('status')}: {record.get('message')}")
        ours = {
            (r["env"], r["kind"], r["num_users"]): r["median"]
            for r in records
            if r["kind"] != "peer"
        }
        for record in peers:
            if (
                record.get("peer") == "recsim"
                and record.get("env") == "interest_evolution"
                and "median" in record
            ):
                mine = ours.get(("loe_gym/InterestEvolution-v0", "single", 1))
                if mine:
                    print(
                        f"\nInterestEvolution-v0 single env / RecSim interest_evolution: {mine / record['median']:.2f}×"
                    )
                for n in args.num_users:
                    vec = ours.get(("loe_gym/InterestEvolution-v0", "vector", n))
                    if vec:
                        print(
                            f"InterestEvolution-v0 vector × {n} users / RecSim single user: {vec / record['median']:.1f}×"
                        )
            if record.get("peer") == "sardine" and "median" in record:
                n = record.get("num_users")
                vec = ours.get(("loe_gym/Engagement-v0", "vector", n))
                if vec:
                    print(
                        f"Engagement-v0 × {n} users / SARDINE {record.get('env')} × {n}: {vec / record['median']:.1f}×"
                    )
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
