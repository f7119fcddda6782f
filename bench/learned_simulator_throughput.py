"""Throughput of the learned user simulator against the hand-written one it imitates.

A learned step is two predictor calls (scores of the shown items, profile update) instead
of a few numpy gathers, so it is the price of a world learned from logs. This prints
user-steps per second of `simulators.learned.LearnedUsers` and of
`simulators.engagement.EngagementUsers` side by side (medians of ``--repeats`` runs).

    python bench/learned_simulator_throughput.py --predictor runs/sim_predictor/model \
        --logs logs/diverse --users 64 1024 4096

Timings on a shared CPU are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch

from loe_gym.devices import using_device
from simulators.engagement import EngagementUsers
from simulators.learned import LearnedUsers


def steps_per_second(simulator: object, num_users: int, steps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    state = simulator.reset(num_users, rng)  # type: ignore[attr-defined]
    num_items = simulator.catalog.num_items  # type: ignore[attr-defined]
    slates = rng.integers(0, num_items, (steps, num_users, 1))
    started = time.perf_counter()
    for step in range(steps):
        responses = simulator.respond(state, slates[step], rng)  # type: ignore[attr-defined]
        state = simulator.update(state, slates[step], responses, rng)  # type: ignore[attr-defined]
    return num_users * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", required=True, help="fit-predictor's model/ folder")
    parser.add_argument("--logs", required=True, help="the log the predictor was fitted on")
    parser.add_argument("--users", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    # The predictor and the networks on --device (loe_gym/devices.py), as --device does.
    device = contextlib.ExitStack()
    print("device:", device.enter_context(using_device(args.device)))
    if args.threads:
        torch.set_num_threads(args.threads)
    learned = LearnedUsers(args.predictor, catalog=args.logs)
    truth = EngagementUsers()
    print(f"{learned!r}; torch threads {torch.get_num_threads()}")
    print("| users | learned (user-steps/s) | engagement (user-steps/s) | ratio |")
    print("|---|---|---|---|")
    for users in args.users:
        rates = {}
        for name, simulator in (("learned", learned), ("engagement", truth)):
            steps_per_second(simulator, users, 2, seed=0)  # warm-up
            rates[name] = statistics.median(
                steps_per_second(simulator, users, args.steps, seed=r) for r in range(args.repeats)
            )
        print(
            f"| {users} | {rates['learned']:,.0f} | {rates['engagement']:,.0f} | "
            f"{rates['engagement'] / rates['learned']:.0f}× |"
        )


if __name__ == "__main__":
    main()
