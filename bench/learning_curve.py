"""One agent's learning curve: held-out total watch every ``--chunk`` training steps.

    python bench/learning_curve.py --env Engagement-v0 --agent '{"encoder": "none"}'
    python bench/learning_curve.py --env notebook04 --agent '{"encoder": "none", "seed": 1}'
    python bench/learning_curve.py --env Engagement-v0 --predictor reports/experiment/predictor/model \
        --agent '{"encoder": "frozen", "reward_source": "predictor"}' --chunks 4 --chunk 225000

Trains one PPO (or A2C, …) agent with `TrainConfig`'s defaults and the ``--agent``
overrides (JSON) through `agents.training.train_agent`, whose evaluation callback runs the
deterministic policy on ``--eval-users`` held-out users (population 10 000 + the agent's
seed) after every chunk. ``--env`` takes the
dominance bench's names (bench/oracle_dominance.py: the built-ins and notebook 04's model)
or a registered id. This is how the settings in docs/agents.md ("Long-horizon learning")
were compared; one training seed per call, so repeat with ``"seed"`` in ``--agent`` for
several. Writes the curve as JSON to ``--output`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle_dominance import ENVS, load_notebook_simulator

from agents.configs import TrainConfig, TrainRunConfig
from agents.evaluation import run_population
from agents.reference_policies import (
    GreedyRewardModelPolicy,
    MyopicPredictedPolicy,
    Policy,
    make_policy,
)
from agents.training import AgentRunFolder, evaluation_env, train_agent
from loe_gym.predictor.serving import PredictorService


def baseline_levels(config: TrainRunConfig, names: list[str]) -> dict[str, float]:
    """Total watch of each named policy on the training callback's held-out users."""
    service = PredictorService.from_pretrained(config.predictor) if config.predictor else None
    env = evaluation_env(config, config.eval_users, service)
    agent = config.agent
    with_predictor: dict[str, Policy] = {
        "myopic_predicted": MyopicPredictedPolicy(),
        "greedy_reward_model": GreedyRewardModelPolicy(
            agent.return_weight, agent.continuation_weight
        ),
    }
    levels = {}
    for name in names:
        if name in with_predictor and service is None:
            raise SystemExit(f"--baselines {name} needs --predictor.")
        policy = with_predictor[name] if name in with_predictor else make_policy(name)
        levels[name] = run_population(env, policy, 10_000 + agent.seed).summary()["total_watch"]
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Engagement-v0", help="a name of ENVS or an env id")
    parser.add_argument("--env-options", default=None, help="JSON; default: ENVS' options")
    parser.add_argument("--agent", default='{"encoder": "none"}', help="TrainConfig overrides")
    parser.add_argument("--predictor", default=None, help="fit-predictor's model/ folder")
    parser.add_argument("--chunk", type=int, default=250_000, help="steps between evaluations")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--eval-users", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baselines", nargs="*", default=[], help="reference policies")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_notebook_simulator()
    env_id, options = ENVS.get(args.env, (args.env, {}))
    if args.env_options is not None:
        options = json.loads(args.env_options)
    agent = TrainConfig(total_steps=max(args.chunk * args.chunks, 1)).merged(json.loads(args.agent))
    config = TrainRunConfig(
        env_id=env_id,
        env_options=options or None,
        predictor=args.predictor,
        agent=agent,
        eval_users=args.eval_users,
        eval_every=args.chunk,
        checkpoint_every=0,
    )
    curve: list[dict] = []
    if args.chunks > 0:
        with tempfile.TemporaryDirectory(prefix="learning_curve_") as work:
            summary = train_agent(config, Path(work) / "run", progress=False)
            lines = AgentRunFolder(Path(work) / "run").evaluations.read_text().splitlines()
        curve = [json.loads(line) for line in lines]
        for point in curve:
            print(f"{args.env} steps={point['steps']} total_watch={point['total_watch']:.1f}")
        print(f"{summary.steps_per_second:.0f} steps/s (evaluations included)")
    levels = baseline_levels(config, args.baselines)
    for name, level in levels.items():
        print(f"{args.env} {name} total_watch={level:.1f}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": " ".join(sys.argv[1:]), "agent": agent.to_dict(), "curve": curve}
        if levels:
            record["baselines"] = levels
        args.output.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
