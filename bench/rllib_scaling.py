"""Env steps/s of RLlib sampling with N env runners, beside the one-process batched core.

    python bench/rllib_scaling.py --runners 1 2                    # a local Ray instance
    ray start --head --num-cpus 1 && ray start --address 127.0.0.1:6379 --num-cpus 1
    python bench/rllib_scaling.py --runners 2 --address auto       # the two-node cluster

Each runner simulates ``--users-per-runner`` users of ``--env`` and acts with the project's
candidate-scoring module (`agents.rllib_backend.CandidateRLModule`, what ``loe-gym train
--agent.backend rllib`` trains); sampling only, no learning. The peer is the same module's
network acting on the batched core in this process (what the SB3 backend's rollouts do), on
``users-per-runner × runners`` users. Medians over ``--repeats``. Needs ``.[rllib]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

from agents.configs import TrainConfig, TrainRunConfig
from agents.rllib_backend import ppo_config
from agents.training import sb3_model


def rllib_rate(config: TrainRunConfig, steps: int, repeats: int) -> list[float]:
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    algo = ppo_config(config).build_algo()

    def sample(steps: int) -> int:
        chunks = synchronous_parallel_sample(
            worker_set=algo.env_runner_group,
            max_env_steps=steps,
            concat=False,
            _uses_new_env_runners=True,
        )
        return sum(episode.env_steps() for chunk in chunks for episode in chunk)

    try:
        sample(steps // 4)  # warm-up: workers started, first resets done
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            sampled = sample(steps)
            rates.append(sampled / (time.perf_counter() - started))
        return rates
    finally:
        algo.stop()


def batched_rate(config: TrainRunConfig, users: int, steps: int, repeats: int) -> list[float]:
    network = sb3_model(config, None).policy
    env = gym.make_vec(config.env_id, num_envs=users, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=0)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(max(1, steps // users)):
            # Sampled as RLlib explores: from the policy's distribution, not its argmax.
            tensors, _ = network.obs_to_tensor(dict(obs))
            with torch.no_grad():
                action = network.get_distribution(tensors).sample().numpy()
            obs, *_ = env.step(np.asarray(action))
        rates.append(max(1, steps // users) * users / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="loe_gym/Engagement-v0")
    parser.add_argument("--runners", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--users-per-runner", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40_000, help="env steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--address", default=None, help="a running Ray cluster (default: local)")
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    nodes = len([node for node in ray.nodes() if node["Alive"]])
    print(f"{args.env}, {args.users_per_runner} users per runner; Ray nodes: {nodes}, CPUs: "
          f"{ray.cluster_resources().get('CPU')}; medians of {args.repeats} × {args.steps} steps")  # fmt: skip
    print("| env runners | users | RLlib steps/s (min–max) | one process, batched core | ratio |")
    print("|---|---|---|---|---|")
    for runners in args.runners:
        users = args.users_per_runner * runners
        agent = TrainConfig(backend="rllib", encoder="none", day_discount=1.0, gamma=0.995,
                            num_users=users, num_env_runners=runners, n_steps=64)  # fmt: skip
        config = TrainRunConfig(env_id=args.env, agent=agent, eval_every=0)
        rates = rllib_rate(config, args.steps, args.repeats)
        peer = statistics.median(batched_rate(config, users, args.steps, args.repeats))
        median = statistics.median(rates)
        print(f"| {runners} | {users} | {median:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) "
              f"| {peer:,.0f} | {median / peer:.2f}× |")  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main()
