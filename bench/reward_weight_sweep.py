"""How much is a predicted next-day return worth? Greedy policies on the reward model.

Each policy shows the candidate with the highest
``E[watch] + w · P(return) + c · P(continue)`` (the predictor's estimates; the centring of
`PredictorReward` does not change a ranking) for weights ``w``, ``c``; ``w = c = 0`` is
myopic-predicted. The sweep picks the scale of
``TrainConfig.return_weight``::

    python bench/reward_weight_sweep.py --predictor runs/predictor/model --weights 0 10 30 60

``--true-watch`` adds, per pair, the same policy with the simulator's true expected watch
(privileged) in place of the predicted one: how much of the gap to ``oracle_planner`` is the
estimate of the minutes now rather than the long-term terms::

    python bench/reward_weight_sweep.py --predictor runs/predictor/model --weights 30 --continuation-weights 20 --true-watch
    python bench/reward_weight_sweep.py --env-id loe_gym/ItemChurn-v0 --predictor runs/text_ppo/predictor_text/model
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from agents.configs import TrainConfig
from agents.evaluation import evaluate
from agents.predictor_env import PredictorObservations
from agents.ranking import SCORE_NAMES
from agents.reference_policies import GreedyRewardModelPolicy, expected_responses
from loe_gym.predictor.serving import PredictorService


class GreedyOnTrueWatch(GreedyRewardModelPolicy):
    """`GreedyRewardModelPolicy` with the simulator's true expected watch (privileged) in
    place of the predicted one; the long-term terms stay the reward model's."""

    privileged: bool = True

    def scores(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        predicted = obs["candidate_scores"][..., SCORE_NAMES.index("watch_time")]
        true = np.asarray(expected_responses(env)["watch_time"])
        return super().scores(obs, env) - predicted + true


def greedy(weight: float, continuation_weight: float, true_watch: bool) -> GreedyRewardModelPolicy:
    name = f"greedy_w{weight:g}_c{continuation_weight:g}" + "_true_watch" * true_watch
    policy = GreedyOnTrueWatch if true_watch else GreedyRewardModelPolicy
    return policy(weight, continuation_weight, name=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", required=True)
    parser.add_argument("--env-id", default="loe_gym/Engagement-v0", help="the predictor's env")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 10, 30, 60])
    parser.add_argument(
        "--continuation-weights",
        type=float,
        nargs="+",
        default=[0],
        help="weights of P(session continues), crossed with --weights",
    )
    parser.add_argument("--num-users", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--history-length",
        type=int,
        default=TrainConfig().encoder_history_length,
        help="history rows the predictor sees per step (TrainConfig.encoder_history_length)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--true-watch", action="store_true", help="add each pair with the true expected watch"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    service = PredictorService.from_pretrained(args.predictor)
    result = evaluate(
        args.env_id,
        [
            greedy(w, c, true)
            for w in args.weights
            for c in args.continuation_weights
            for true in (False, True)[: 1 + args.true_watch]
        ]
        + ["oracle_planner"],
        num_users=args.num_users,
        seeds=args.seeds,
        progress=False,
        wrappers=[lambda env: PredictorObservations(env, service, args.history_length)],
    )
    print(result.table())


if __name__ == "__main__":
    main()
