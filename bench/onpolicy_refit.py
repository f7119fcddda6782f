"""Can a policy's own experience correct the reward model it starts from?

The gap between ``greedy_reward_model`` and the oracle on `Engagement-v0` is estimation
error (docs/agents.md, "Where the rest of the gap lies"). An agent that trains in the
simulator sees what really happens after its choices; this measures how much of the gap
that experience can close when it is used as directly as possible, by regression rather
than by policy gradients::

    python bench/onpolicy_refit.py --predictor reports/experiment/predictor/model
    python bench/onpolicy_refit.py --predictor reports/experiment/predictor/model --steps 200 --day-discounts

It collects ``--steps`` decisions of ``--users`` training users (population seed 0) under
the greedy ranking on the reward model, sampled with probabilities
``softmax(temperature · z)`` of the score's within-user z-score (the sharp prior PPO starts
from), and fits one MLP per target on the chosen candidate's inputs: the PPO scorer's
per-candidate inputs (`CandidateInputs`: public features, the predictor's scores and the
reward model's score, each also standardised within the user), then the predictor's user
state and the visit context:

- ``refit_watch``: the minutes watched now, in place of the reward model's predicted watch
  (its long-term terms stay the predictor's);
- ``refit_continuation``: whether the session went on after the item (cross-entropy), in
  place of the predicted continuation probability; ``refit_both``: the two together;
- ``fitted_q_d{δ}``, one per ``--day-discounts`` value: the watch from now on, discounted
  by δ per day (0: the rest of today's session). Its policy ranks by the regression alone:
  one step of policy improvement on the collected behaviour. The last 150 steps of the
  collection only serve as the future of earlier ones.

All policies are evaluated beside ``greedy_reward_model`` on ``--seeds`` populations of
``--num-users`` users (the experiment's populations at the defaults).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.configs import TrainConfig
from agents.evaluation import evaluate
from agents.networks import CandidateFeaturesExtractor
from agents.predictor_env import PredictorObservations
from agents.ranking import SCORE_NAMES, reward_model_score
from agents.reference_policies import GreedyRewardModelPolicy
from agents.sb3_vec_env import make_sb3_env
from loe_gym.envs.observations import CONTEXT
from loe_gym.predictor.serving import PredictorService

FUTURE_ONLY_STEPS = 150


class CandidateInputs:
    """``(N, C, D)`` float32: each candidate's inputs to the PPO scorer
    (`agents.networks.CandidateFeaturesExtractor` with the reward model's weights, its
    per-candidate part), then the predictor's user state and ``log1p`` of the visit
    context (the extractor's own user part holds an untrained projection of that state)."""

    def __init__(self, observation_space: Any, weights: tuple[float, float]) -> None:
        self.extractor = CandidateFeaturesExtractor(observation_space, prior_weights=weights)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        extractor = self.extractor
        c, d = extractor.num_candidates, extractor.candidate_size
        with torch.no_grad():
            flat = extractor({key: torch.as_tensor(value) for key, value in obs.items()})
        own = flat[:, : c * d].reshape(-1, c, d).numpy()
        user = np.concatenate(
            [obs["user_state"], np.log1p(np.clip(obs["context"], 0, None))], -1
        ).astype(np.float32)
        return np.concatenate(
            [own, np.broadcast_to(user[:, None], (*own.shape[:2], user.shape[-1]))], -1
        )


def collect(
    args: argparse.Namespace, env: Any, inputs_of: CandidateInputs
) -> dict[str, np.ndarray]:
    """Inputs of the chosen candidates ``(T·N, D)``, whether the session went on after
    them ``(T·N,)``, and rewards, dones and days ``(T, N)``."""
    env.seed(0)
    obs = env.reset()
    rng = np.random.default_rng(0)
    inputs, rewards, dones, days, continued = [], [], [], [], []
    for _ in range(args.steps):
        score = reward_model_score(obs["candidate_scores"], *args.weights)
        z = (score - score.mean(1, keepdims=True)) / (score.std(1, keepdims=True) + 1e-3)
        p = np.exp(args.temperature * (z - z.max(1, keepdims=True)))
        p /= p.sum(1, keepdims=True)
        action = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
        inputs.append(inputs_of(obs)[np.arange(len(action)), action])
        days.append(obs["context"][:, CONTEXT.index("day")].copy())
        obs, reward, done, _ = env.step(action)
        rewards.append(reward.astype(np.float32))
        dones.append(done.copy())
        # The session went on: the next decision is the same user's, in the same session.
        continued.append((obs["context"][:, CONTEXT.index("step_in_session")] > 0) & ~done)
    env.close()
    return {
        "inputs": np.concatenate(inputs),
        "rewards": np.stack(rewards),
        "dones": np.stack(dones),
        "days": np.stack(days),
        "continued": np.concatenate(continued).astype(np.float32),
    }


def discounted_future(data: dict[str, np.ndarray], day_discount: float) -> np.ndarray:
    """``(T, N)`` watch from each step on, discounted by ``day_discount`` per day."""
    rewards, dones, days = data["rewards"], data["dones"], data["days"]
    elapsed = np.clip(np.diff(days, axis=0, append=days[-1:]), 0, None)
    future = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1], np.float32)
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + np.where(dones[t], 0.0, day_discount ** elapsed[t]) * running
        future[t] = running
    return future


class Regression(nn.Module):
    """An MLP on standardised inputs, fitted by least squares or, with ``logistic``, by
    cross-entropy on 0/1 targets (then `forward` gives probabilities). ``explained``: the
    share of the held-out error (squared, or log loss) that the constant prediction leaves
    and this one removes."""

    def __init__(
        self, inputs: torch.Tensor, targets: torch.Tensor, epochs: int, logistic: bool = False
    ) -> None:
        super().__init__()
        self.logistic = logistic
        self.mean, self.spread = inputs.mean(0), inputs.std(0) + 1e-3
        self.net = nn.Sequential(
            nn.Linear(inputs.shape[1], 128),
            nn.Tanh(),
            nn.Linear(128, 64),
            nn.Tanh(),
            nn.Linear(64, 1),
        )
        base = targets.mean().clamp(1e-4, 1 - 1e-4).logit() if logistic else targets.mean()
        with torch.no_grad():
            self.net[-1].bias.fill_(float(base))
        optimiser = torch.optim.Adam(self.parameters(), 1e-3)
        order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(0))
        held_out, train = order[: len(order) // 10], order[len(order) // 10 :]
        for _ in range(epochs):
            for batch in train[torch.randperm(len(train))].split(4096):
                loss = self._error(self._raw(inputs[batch]), targets[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        with torch.no_grad():
            error = self._error(self._raw(inputs[held_out]), targets[held_out])
            constant = self._error(base.expand(len(held_out)), targets[held_out])
        self.explained = 1.0 - float(error / constant)

    def _error(self, raw: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.logistic:
            return nn.functional.binary_cross_entropy_with_logits(raw, targets)
        return (raw - targets).square().mean()

    def _raw(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net((inputs - self.mean) / self.spread).squeeze(-1)  # type: ignore[no-any-return]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        raw = self._raw(inputs)
        return raw.sigmoid() if self.logistic else raw


class RefitPolicy(GreedyRewardModelPolicy):
    """The reward model's score with regressions in place of some of its terms:
    ``terms`` maps a column of `SCORE_NAMES` (``watch_time``, ``continuation_probability``)
    to the regression that replaces the predictor's estimate."""

    def __init__(
        self,
        name: str,
        terms: dict[str, Regression],
        inputs_of: CandidateInputs,
        weights: tuple[float, float],
    ) -> None:
        super().__init__(*weights, name=name)
        self.terms, self.inputs_of = terms, inputs_of

    def scores(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        refitted = np.array(obs["candidate_scores"])
        inputs = torch.from_numpy(self.inputs_of(obs))
        with torch.no_grad():
            for column, model in self.terms.items():
                refitted[..., SCORE_NAMES.index(column)] = model(inputs).numpy()
        return reward_model_score(refitted, self.return_weight, self.continuation_weight)  # type: ignore[no-any-return]


class FittedQPolicy(GreedyRewardModelPolicy):
    """Greedy on a regression of the future watch: one step of policy improvement."""

    def __init__(self, name: str, q: Regression, inputs_of: CandidateInputs) -> None:
        super().__init__(name=name)
        self.q, self.inputs_of = q, inputs_of

    def scores(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        with torch.no_grad():
            return self.q(torch.from_numpy(self.inputs_of(obs))).numpy()  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", required=True)
    parser.add_argument("--env-id", default="loe_gym/Engagement-v0", help="the predictor's env")
    parser.add_argument("--users", type=int, default=1024, help="training users collected")
    parser.add_argument("--steps", type=int, default=620, help="decisions per training user")
    parser.add_argument("--temperature", type=float, default=3.0)
    parser.add_argument("--day-discounts", type=float, nargs="*", default=[0.0, 0.5, 0.8])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--num-users", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    agent = TrainConfig()
    args.weights = (agent.return_weight, agent.continuation_weight)
    args.history_length = agent.encoder_history_length
    if args.day_discounts and args.steps <= FUTURE_ONLY_STEPS:
        parser.error(f"--steps must exceed {FUTURE_ONLY_STEPS} to fit --day-discounts.")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    service = PredictorService.from_pretrained(args.predictor)
    env = make_sb3_env(
        args.env_id,
        args.users,
        wrappers=[lambda e: PredictorObservations(e, service, args.history_length)],
    )
    inputs_of = CandidateInputs(env.observation_space, args.weights)
    data = collect(args, env, inputs_of)
    inputs = torch.from_numpy(data["inputs"])
    watch = Regression(inputs, torch.from_numpy(data["rewards"].reshape(-1)), args.epochs)
    continuation = Regression(
        inputs, torch.from_numpy(data["continued"]), args.epochs, logistic=True
    )
    print(f"watch now: R² {watch.explained:.3f} on held-out transitions")
    print(f"session continues: {continuation.explained:.3f} of the log loss explained")
    policies: list[Any] = [
        GreedyRewardModelPolicy(*args.weights),
        RefitPolicy("refit_watch", {"watch_time": watch}, inputs_of, args.weights),
        RefitPolicy(
            "refit_continuation",
            {"continuation_probability": continuation},
            inputs_of,
            args.weights,
        ),
        RefitPolicy(
            "refit_both",
            {"watch_time": watch, "continuation_probability": continuation},
            inputs_of,
            args.weights,
        ),
    ]
    kept = (args.steps - FUTURE_ONLY_STEPS) * args.users
    for delta in args.day_discounts:
        future = torch.from_numpy(discounted_future(data, delta)[: args.steps - FUTURE_ONLY_STEPS])
        q = Regression(inputs[:kept], future.reshape(-1), args.epochs)
        print(f"fitted_q_d{delta:g}: R² {q.explained:.3f} on held-out transitions")
        policies.append(FittedQPolicy(f"fitted_q_d{delta:g}", q, inputs_of))
    result = evaluate(
        args.env_id,
        policies,
        num_users=args.num_users,
        seeds=args.seeds,
        progress=False,
        wrappers=[lambda env: PredictorObservations(env, service, args.history_length)],
    )
    print(result.table())


if __name__ == "__main__":
    main()
