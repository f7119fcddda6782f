"""Does the predictor rank a user's candidates as the simulator's truth does?

For states that a reference policy visits, the within-user Spearman correlation between
each of the predictor's candidate scores (and the reward model's score) and each of the
simulator's privileged per-candidate expectations (``expected_responses``: click
probability, expected watch, and whatever else the simulator exposes, e.g. quality or
satisfaction gain), averaged over users and steps. A policy acts on exactly this ranking,
which a held-out AUC over all rows (dominated by differences between users) does not show::

    python bench/score_fidelity.py --predictor runs/predictor/model
    python bench/score_fidelity.py --env-id loe_gym/ItemChurn-v0 \\
        --predictor runs/text_ppo/predictor_features/model runs/text_ppo/predictor_text/model
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
import numpy as np
from scipy import stats

import loe_gym  # noqa: F401  (registers the environments)
from agents.configs import TrainConfig
from agents.predictor_env import PredictorObservations
from agents.ranking import SCORE_NAMES, reward_model_score
from agents.reference_policies import expected_responses, make_policy
from loe_gym.predictor.serving import PredictorService


def within_user_spearman(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (``(N, C)``);
    rows where either is constant are left out."""
    varied = (np.ptp(a, axis=1) > 0) & (np.ptp(b, axis=1) > 0)
    pairs = zip(a[varied], b[varied], strict=True)
    return [float(stats.spearmanr(x, y).statistic) for x, y in pairs]


def fidelity(args: argparse.Namespace, predictor: str) -> dict[tuple[str, str], float]:
    service = PredictorService.from_pretrained(predictor)
    env = PredictorObservations(
        gym.make_vec(args.env_id, num_envs=args.num_users, vectorization_mode="vector_entry_point"),
        service,
        args.history_length,
    )
    core: Any = env.unwrapped  # the RecommendationVectorEnv under the wrapper
    policy = make_policy(args.policy)
    obs, _ = env.reset(seed=args.seed)
    correlations: dict[tuple[str, str], list[float]] = {}
    for step in range(args.steps):
        if step % args.every == 0:
            scores = obs["candidate_scores"]
            columns = {name: scores[..., i] for i, name in enumerate(SCORE_NAMES)}
            columns["reward_model"] = reward_model_score(scores, *args.weights)
            for truth, value in expected_responses(core).items():
                value = np.asarray(value)
                if value.shape != scores.shape[:2]:
                    continue  # not a per-candidate quantity
                for name, column in columns.items():
                    correlations.setdefault((name, truth), []).extend(
                        within_user_spearman(column, value)
                    )
        obs, *_ = env.step(policy.act(obs, core))
    return {key: float(np.mean(values)) for key, values in correlations.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", nargs="+", required=True, help="model/ folders")
    parser.add_argument("--env-id", default="loe_gym/Engagement-v0", help="the predictors' env")
    parser.add_argument("--policy", default="myopic", help="the reference policy that acts")
    parser.add_argument("--num-users", type=int, default=300)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=5, help="measure every this many steps")
    parser.add_argument("--seed", type=int, default=7)
    defaults = TrainConfig()
    parser.add_argument(
        "--weights",
        type=float,
        nargs=2,
        default=[defaults.return_weight, defaults.continuation_weight],
        help="the reward model's return and continuation weights",
    )
    parser.add_argument("--history-length", type=int, default=defaults.encoder_history_length)
    args = parser.parse_args()
    tables = {path: fidelity(args, path) for path in args.predictor}
    keys = sorted({key for table in tables.values() for key in table})
    print(f"within-user Spearman on {args.env_id}, states of `{args.policy}`")
    print("| score | simulator's expectation | " + " | ".join(tables) + " |")
    print("|---|---|" + "---|" * len(tables))
    for score, truth in keys:
        cells = " | ".join(f"{table.get((score, truth), np.nan):.3f}" for table in tables.values())
        print(f"| {score} | {truth} | {cells} |")


if __name__ == "__main__":
    main()
