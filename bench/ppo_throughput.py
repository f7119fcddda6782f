"""PPO environment steps per second with the predictor as state encoder, and where the
time goes: simulation, predictor encoding, policy inference during rollouts, policy update.

    python bench/ppo_throughput.py                      # 64 and 1024 users, medians of 3
    python bench/ppo_throughput.py --users 1024 --n-epochs 4 --batch-size 4096
    python bench/ppo_throughput.py --users 1024 --repeats 1 --no-peer --profile   # + where the update goes

PPO's settings default to the experiment's agent on the reward model
(`agents.configs.reward_model_agent`), the PPO that runs with the predictor encoder.

The predictor has the size ``loe-gym fit-predictor`` trains by default (hidden 64, two
layers; weights do not change the timing) unless ``--predictor DIR`` names a trained one.
Beside it, the same PPO on SB3's ``DummyVecEnv`` over single-user Gymnasium envs (one
Python env object per user, what SB3 users build by default) without the predictor gives
the peer ratio of the batched core. Timings are noisy on a shared machine: the script
reports medians and the spread.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import loe_gym  # noqa: F401
from agents.configs import reward_model_agent
from agents.networks import CandidateActorCriticPolicy
from agents.predictor_env import PredictorObservations, PredictorReward
from agents.sb3_vec_env import make_sb3_env
from loe_gym.devices import current_device, using_device
from loe_gym.predictor.configs import FitPredictorConfig
from loe_gym.predictor.pipeline import build_model
from loe_gym.predictor.serving import PredictorService


def _timed(totals: dict[str, float], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return run


def default_service() -> PredictorService:
    """An untrained predictor of the size ``loe-gym fit-predictor`` trains by default."""
    catalog = gym.make("loe_gym/Engagement-v0").unwrapped.catalog  # type: ignore[attr-defined]
    return PredictorService(build_model(FitPredictorConfig(), catalog.num_items, catalog.features))


def _ppo(env: Any, users: int, n_steps: int, n_epochs: int, batch_size: int) -> PPO:
    return PPO(
        CandidateActorCriticPolicy,
        env,
        n_steps=n_steps,
        batch_size=min(batch_size, n_steps * users),
        n_epochs=n_epochs,
        seed=0,
        device=current_device(),
    )


def _env(service: PredictorService | None, users: int, history: int) -> Any:
    wrappers: list[Any] = []
    if service is not None:
        wrappers = [lambda env: PredictorObservations(env, service, history), PredictorReward]
    return make_sb3_env("loe_gym/Engagement-v0", users, wrappers=wrappers)


UPDATE_PARTS = {
    "backward": ("_tensor.py", "backward"),
    "forward (evaluate_actions)": ("policies.py", "evaluate_actions"),
    "rollout-buffer sampling": ("buffers.py", "_get_samples"),
    "Adam": ("adam.py", "step"),
}
"""Parts of one ``PPO.train()`` call: (file name ending, function) in cProfile's table."""


def update_shares(
    service: PredictorService | None,
    users: int,
    n_steps: int,
    history: int,
    n_epochs: int,
    batch_size: int,
) -> dict[str, float]:
    """Share of each of `UPDATE_PARTS` in one ``PPO.train()`` call (cProfile, cumulative)."""
    model = _ppo(_env(service, users, history), users, n_steps, n_epochs, batch_size)
    model.learn(n_steps * users)  # one rollout in the buffer
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(model.train)
    total = time.perf_counter() - start
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    return {
        part: sum(
            row[3]
            for (file, _, name), row in table.items()
            if file.endswith(ending) and name == function
        )
        / total
        for part, (ending, function) in UPDATE_PARTS.items()
    }


def measure(
    service: PredictorService | None,
    users: int,
    rollouts: int,
    n_steps: int,
    history: int,
    n_epochs: int,
    batch_size: int,
) -> dict[str, float]:
    """One PPO run of ``rollouts`` rollouts; seconds per part and steps/s."""
    totals: dict[str, float] = defaultdict(float)
    env = _env(service, users, history)
    core = env.venv.core  # type: ignore[attr-defined]
    core.step = _timed(totals, "simulation", core.step)
    outer = env.venv.env  # type: ignore[attr-defined]
    outer.step = _timed(totals, "env_step", outer.step)
    model = _ppo(env, users, n_steps, n_epochs, batch_size)
    model.train = _timed(totals, "policy_update", model.train)
    steps = rollouts * n_steps * users
    start = time.perf_counter()
    model.learn(steps)
    total = time.perf_counter() - start
    encoding = totals["env_step"] - totals["simulation"]
    return {
        "steps_per_second": steps / total,
        "simulation": totals["simulation"] / total,
        "encoding": encoding / total,
        "policy_update": totals["policy_update"] / total,
        "rollout_policy_and_sb3": 1 - totals["env_step"] / total - totals["policy_update"] / total,
        "seconds": total,
    }


def measure_dummy(users: int, rollouts: int, n_steps: int, n_epochs: int, batch_size: int) -> float:
    """Steps/s of the same PPO on SB3's DummyVecEnv of single-user envs (no predictor)."""
    env = DummyVecEnv([lambda: gym.make("loe_gym/Engagement-v0") for _ in range(users)])
    model = _ppo(env, users, n_steps, n_epochs, batch_size)
    steps = rollouts * n_steps * users
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    defaults = reward_model_agent()
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--n-steps", type=int, default=defaults.n_steps)
    parser.add_argument("--n-epochs", type=int, default=defaults.n_epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--history-length", type=int, default=defaults.encoder_history_length)
    parser.add_argument("--predictor", default=None, help="trained predictor directory")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true", help="skip the DummyVecEnv peer")
    parser.add_argument(
        "--profile", action="store_true", help="then where one policy update's time goes"
    )
    args = parser.parse_args()
    # The predictor and the networks on --device (loe_gym/devices.py), as --device does.
    device = contextlib.ExitStack()
    print("device:", device.enter_context(using_device(args.device)))
    torch.set_num_threads(args.threads)
    service = (
        PredictorService.from_pretrained(args.predictor) if args.predictor else default_service()
    )
    print(
        f"PPO (n_steps {args.n_steps}, {args.n_epochs} epochs, batch ≤ {args.batch_size}) "
        "with the predictor encoder "
        f"(hidden {service.hidden_size}, history {args.history_length}), torch threads "
        f"{args.threads}; medians of {args.repeats} runs of {args.rollouts} rollouts"
    )
    print(
        "| users | steps/s (median, min–max) | simulation | encoding | policy update | "
        "rollout policy + SB3 | DummyVecEnv peer, no predictor | batched core + predictor / peer |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for users in args.users:
        runs = [
            measure(
                service,
                users,
                args.rollouts,
                args.n_steps,
                args.history_length,
                args.n_epochs,
                args.batch_size,
            )
            for _ in range(args.repeats)
        ]
        rates = [r["steps_per_second"] for r in runs]
        share = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        # One Python env per user: measured up to 256 users (beyond, it only gets slower).
        peer_cell = ratio_cell = "—"
        if not args.no_peer and users <= 256:
            peer = statistics.median(
                measure_dummy(users, 1, args.n_steps, args.n_epochs, args.batch_size)
                for _ in range(args.repeats)
            )
            peer_cell = f"{peer:,.0f}"
            ratio_cell = f"{statistics.median(rates) / peer:.1f}×"
        print(
            f"| {users} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) "
            f"| {share['simulation']:.0%} | {share['encoding']:.0%} | {share['policy_update']:.0%} "
            f"| {share['rollout_policy_and_sb3']:.0%} | {peer_cell} | {ratio_cell} |"
        )
    if args.profile:
        users = max(args.users)
        shares = update_shares(
            service, users, args.n_steps, args.history_length, args.n_epochs, args.batch_size
        )
        print(
            f"\nOne PPO.train() at {users} users (cProfile): "
            + ", ".join(f"{part} {value:.0%}" for part, value in shares.items())
        )


if __name__ == "__main__":
    main()
