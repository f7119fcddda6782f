"""Training SB3 agents on the simulated users (``loe-gym train``).

One typed config, `TrainConfig`, names the algorithm, the environment, how the predictor
enters (as state encoder, as reward model) and the budget; `train_agent` builds the
batched SB3 environment, the candidate-scoring policy, TensorBoard logging, a progress
bar, periodic checkpoints (resumable) and an evaluation callback on held-out users, and
writes ``model.zip`` plus ``config.json`` to the output folder.

| algorithm | action | policy |
|---|---|---|
| ``ppo``, ``a2c`` | choose candidates (``Discrete`` / ``MultiDiscrete`` slate) | `CandidateActorCriticPolicy` |
| ``dqn`` | choose one candidate (``Discrete``) | `CandidateDQNPolicy` |
| ``sac``, ``td3`` | fusion weights over the predictor's task scores (``Box``) | SB3's ``MultiInputPolicy`` |
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from loe_gym.config import FrozenConfig
from loe_gym.errors import did_you_mean

__all__ = [
    "ALGORITHMS",
    "ENCODERS",
    "REWARDS",
    "SB3Policy",
    "TrainConfig",
    "load_agent",
    "train_agent",
]

ALGORITHMS = ("ppo", "a2c", "dqn", "sac", "td3")
"""Algorithms ``train_agent`` takes."""
FUSION_ALGORITHMS = ("sac", "td3")
"""Algorithms that act through fusion weights (a ``Box`` action)."""
ENCODERS = ("frozen", "none")
"""``frozen``: the trained predictor encodes each user (state and per-candidate task scores)
and is not updated; ``none``: the policy sees the environment's observation only."""
REWARDS = ("simulator", "predictor")
"""``simulator``: minutes watched, from the simulator; ``predictor``: the reward model
(`agents.predictor_env.PredictorReward`), so the agent never reads the simulator's reward."""


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    """Options of `train_agent` (``loe-gym train --help`` lists them)."""

    algorithm: str = "ppo"
    """``ppo``, ``a2c``, ``dqn`` (choose a candidate) or ``sac``, ``td3`` (fusion weights)."""
    env_id: str = "loe_gym/Engagement-v0"
    """Registered environment id."""
    env_options: dict[str, Any] | None = None
    """Keyword options of the environment (JSON on the command line), e.g.
    ``{"simulator_kwargs": {"catalog_seed": 1}, "horizon_days": 10}``."""
    encoder: str = "frozen"
    """How the predictor encodes users: ``frozen`` or ``none`` (no predictor)."""
    reward: str = "simulator"
    """``simulator`` (minutes watched) or ``predictor`` (the reward model)."""
    predictor: str | None = None
    """Trained predictor directory (``loe-gym fit-predictor``'s ``model/``); needed unless
    encoder is ``none`` and reward is ``simulator``."""
    history_length: int = 10
    """History rows the predictor's transformer sees per step (older rows reach it through
    its long-term profile); shorter is faster."""
    return_weight: float = 30.0
    """Reward model: minutes per unit of predicted next-day return probability gained
    over the average candidate (see agents/predictor_env.py)."""
    continuation_weight: float = 20.0
    """Reward model: minutes per unit of predicted session-continuation probability gained
    over the average candidate."""
    total_steps: int = 1_000_000
    """Budget: environment steps (user decisions) of training."""
    num_users: int = 1024
    """Users simulated side by side (SB3's n_envs)."""
    seed: int = 0
    """Seeds the users, the candidates and the networks."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    gamma: float = 0.995
    """Discount per step (a user life is hundreds of steps; the return effect spans sessions)."""
    n_steps: int = 8
    """PPO / A2C: steps per user per rollout (with a thousand users, short rollouts give
    many policy updates per million steps)."""
    batch_size: int = 2048
    """PPO / DQN / SAC / TD3: minibatch size."""
    n_epochs: int = 10
    """PPO: epochs per rollout."""
    ent_coef: float = 0.0
    """PPO / A2C: entropy bonus."""
    net_arch: tuple[int, ...] = (64, 64)
    """Widths of the per-candidate scoring MLP."""
    myopic_prior: float = 2.0
    """PPO / A2C with the predictor: initial weight of the predicted-watch ranking in the
    logits (learned from there; 0 = start uniform). See agents/policies.py."""
    buffer_size: int = 200_000
    """DQN / SAC / TD3: replay buffer size."""
    eval_users: int = 256
    """Held-out users of the evaluation callback (a seed no training population uses)."""
    eval_every: int = 250_000
    """Evaluate every this many steps (0 = never)."""
    checkpoint_every: int = 250_000
    """Save a resumable checkpoint every this many steps (0 = only at the end)."""
    threads: int = 0
    """torch threads (0 = leave torch's default)."""
    progress: bool = True
    """Progress bar."""

    def __post_init__(self) -> None:
        self._check_choice("algorithm", ALGORITHMS)
        self._check_choice("encoder", ENCODERS)
        self._check_choice("reward", REWARDS)
        if self.env_id not in gym.registry:
            known = [n for n in gym.registry if n.startswith("loe_gym/")]
            raise ValueError(
                f"Unknown env id {self.env_id!r}.{did_you_mean(self.env_id, known)} "
                f"Registered: {', '.join(known)}."
            )
        self._check_numbers()
        self._check_positive(
            "total_steps", "num_users", "history_length", "n_steps", "batch_size", "n_epochs"
        )
        self._check_positive("learning_rate", "eval_users", "buffer_size")
        self._check_nonnegative("return_weight", "continuation_weight", "ent_coef")
        self._check_nonnegative("eval_every", "checkpoint_every")
        self._check_nonnegative("threads", "myopic_prior")
        if self.env_options is not None and not isinstance(self.env_options, dict):
            raise TypeError(
                f"env_options must be a dict of environment options, got {self.env_options!r}."
            )
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma}.")
        if not self.net_arch or any(w < 1 for w in self.net_arch):
            raise ValueError(f"net_arch needs positive widths, got {self.net_arch!r}.")
        if self.needs_predictor and self.predictor is None:
            raise ValueError(
                f"encoder={self.encoder!r}, reward={self.reward!r} and algorithm="
                f"{self.algorithm!r} need a trained predictor: pass predictor=<dir> (from "
                "loe-gym fit-predictor), or encoder='none' with reward='simulator'."
            )

    @property
    def needs_predictor(self) -> bool:
        return (
            self.encoder != "none"
            or self.reward == "predictor"
            or self.algorithm in FUSION_ALGORITHMS
        )


def _service(path: str | Path) -> Any:
    from loe_gym.predictor.serving import PredictorService

    return PredictorService.from_pretrained(path)


def predictor_wrappers(
    config: TrainConfig, service: Any, *, for_training: bool
) -> list[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]]:
    """The vector wrappers ``config`` puts between the simulator and the agent.

    Evaluation (``for_training=False``) keeps the observations only: policies are judged
    on the simulator's true engagement, whatever reward they were trained on."""
    from agents.predictor_env import FusionWeights, PredictorObservations, PredictorReward

    if service is None:
        return []
    wrappers: list[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]] = [
        lambda env: PredictorObservations(env, service, config.history_length)
    ]
    if for_training and config.reward == "predictor":
        wrappers.append(
            lambda env: PredictorReward(env, config.return_weight, config.continuation_weight)
        )
    if for_training and config.algorithm in FUSION_ALGORITHMS:
        wrappers.append(FusionWeights)
    return wrappers


def _check_action_space(config: TrainConfig, env: Any) -> None:
    space = env.action_space
    if config.algorithm == "dqn" and not isinstance(space, gym.spaces.Discrete):
        raise ValueError(
            f"dqn needs a Discrete action (one item per step); {config.env_id} has {space}. "
            "Algorithms that take it: ppo, a2c (slates), sac, td3 (fusion weights)."
        )


def _make_model(config: TrainConfig, env: Any, tensorboard: str | None) -> Any:
    import stable_baselines3 as sb3

    from agents.policies import CandidateActorCriticPolicy, CandidateDQNPolicy

    common: dict[str, Any] = {"seed": config.seed, "tensorboard_log": tensorboard, "verbose": 0}
    lr, gamma = config.learning_rate, config.gamma
    if config.algorithm in ("ppo", "a2c"):
        on_policy: dict[str, Any] = {
            "learning_rate": lr,
            "gamma": gamma,
            "n_steps": config.n_steps,
            "ent_coef": config.ent_coef,
            "policy_kwargs": {
                "net_arch": config.net_arch,
                "myopic_prior": config.myopic_prior if config.encoder != "none" else 0.0,
            },
            **common,
        }
        if config.algorithm == "ppo":
            return sb3.PPO(
                CandidateActorCriticPolicy,
                env,
                batch_size=config.batch_size,
                n_epochs=config.n_epochs,
                **on_policy,
            )
        return sb3.A2C(CandidateActorCriticPolicy, env, **on_policy)
    off_policy: dict[str, Any] = {
        "learning_rate": lr,
        "gamma": gamma,
        "batch_size": config.batch_size,
        "buffer_size": config.buffer_size,
        "learning_starts": min(10 * config.num_users, config.total_steps // 10),
        # One gradient step per vector step would starve thousands of users of updates.
        "train_freq": 1,
        "gradient_steps": max(1, config.num_users // 256),
        **common,
    }
    if config.algorithm == "dqn":
        return sb3.DQN(
            CandidateDQNPolicy,
            env,
            policy_kwargs={"net_arch": config.net_arch},
            exploration_fraction=0.2,
            target_update_interval=max(1, 2000 // config.num_users),
            **off_policy,
        )
    algorithm = sb3.SAC if config.algorithm == "sac" else sb3.TD3
    return algorithm("MultiInputPolicy", env, **off_policy)


def make_training_env(config: TrainConfig, service: Any, *, num_users: int | None = None) -> Any:
    """The SB3 ``VecEnv`` (monitored) that ``config`` trains on."""
    from agents.sb3_vec_env import make_sb3_env

    return make_sb3_env(
        config.env_id,
        num_users or config.num_users,
        wrappers=predictor_wrappers(config, service, for_training=True),
        **dict(config.env_options or {}),
    )


class SB3Policy:
    """A trained SB3 agent as a batched `agents.baselines.Policy` (deterministic actions).

    Fusion-weight agents (SAC, TD3) output weights; this ranks the candidates by them,
    so the evaluation env needs only `PredictorObservations`.
    """

    privileged = False

    def __init__(self, model: Any, name: str, *, uses_predictor: bool, fusion: bool) -> None:
        self.model, self.name = model, name
        self.uses_predictor, self.fusion = uses_predictor, fusion

    def act(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        if self.fusion:
            from agents.predictor_env import rank_by_weights

            action, _ = self.model.predict(dict(obs), deterministic=True)
            return rank_by_weights(action, obs["candidate_scores"], env.config.slate_size)
        slate_size = env.config.slate_size
        if slate_size == 1:
            action, _ = self.model.predict(dict(obs), deterministic=True)
            return np.asarray(action)
        # A slate policy's positions share the candidates' logits (agents/policies.py): the
        # deterministic slate is the best slate_size distinct candidates, not one repeated.
        import torch

        from agents.baselines import top_slates

        policy = self.model.policy
        tensors, _ = policy.obs_to_tensor(dict(obs))
        with torch.no_grad():
            logits = policy.get_distribution(tensors).distribution[0].logits
        return top_slates(logits.cpu().numpy(), slate_size)

    def __repr__(self) -> str:
        return f"SB3Policy({self.name!r})"


def load_agent(run: str | Path, name: str | None = None) -> tuple[SB3Policy, TrainConfig, Any]:
    """``(policy, config, predictor service or None)`` of a ``train_agent`` output folder."""
    import stable_baselines3 as sb3

    folder = Path(run)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} holds no config.json: pass a folder written by loe-gym train."
        )
    values = json.loads(config_path.read_text())
    values["net_arch"] = tuple(values["net_arch"])
    config = TrainConfig.from_dict(values)
    algorithm = getattr(sb3, config.algorithm.upper())
    model = algorithm.load(folder / "model.zip", device="cpu")
    service = _service(str(config.predictor)) if config.needs_predictor else None
    return _as_policy(model, config, name or config.algorithm, service), config, service


def _as_policy(model: Any, config: TrainConfig, name: str, service: Any) -> SB3Policy:
    return SB3Policy(
        model,
        name,
        uses_predictor=service is not None,
        fusion=config.algorithm in FUSION_ALGORITHMS,
    )


def train_agent(
    config: TrainConfig,
    output: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train ``config``'s agent; write ``model.zip``, ``config.json``, ``training.json``,
    TensorBoard logs (``tensorboard/``) and checkpoints (``checkpoints/``) to ``output``.

    An existing ``output`` is refused unless ``overwrite`` (start over) or ``resume``
    (continue from its last checkpoint). Returns the training summary.
    """
    import torch
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

    folder = Path(output)
    checkpoints = folder / "checkpoints"
    latest = _latest_checkpoint(checkpoints) if resume else None
    if folder.exists() and any(folder.iterdir()) and not (overwrite or resume):
        raise FileExistsError(
            f"{folder} exists and is not empty; pass overwrite=True (--overwrite) to start "
            "over or resume=True (--resume) to continue from its last checkpoint."
        )
    if resume and latest is None:
        raise FileNotFoundError(f"resume: {checkpoints} holds no checkpoint to continue from.")
    if overwrite and folder.exists() and not resume:
        import shutil

        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    service = _service(str(config.predictor)) if config.needs_predictor else None
    env = make_training_env(config, service)
    _check_action_space(config, env)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tensorboard = str(folder / "tensorboard")
    if latest is not None:
        import stable_baselines3 as sb3

        model = getattr(sb3, config.algorithm.upper()).load(
            latest, env=env, device="cpu", tensorboard_log=tensorboard
        )
    else:
        model = _make_model(config, env, tensorboard)
    every = config.checkpoint_every or config.total_steps
    callback_list: list[Any] = [
        CheckpointCallback(
            save_freq=max(1, every // config.num_users),
            save_path=str(checkpoints),
            name_prefix="agent",
        ),
        *callbacks,
    ]
    if config.eval_every:
        callback_list.append(evaluation_callback(config, service, folder))
    started = time.perf_counter()
    remaining = config.total_steps - (model.num_timesteps if latest is not None else 0)
    if remaining > 0:
        model.learn(
            remaining,
            callback=CallbackList(callback_list),
            progress_bar=config.progress,
            reset_num_timesteps=latest is None,
            tb_log_name="run",
        )
    seconds = time.perf_counter() - started
    model.save(folder / "model.zip")
    summary = {
        "steps": int(model.num_timesteps),
        "seconds": seconds,
        "steps_per_second": (remaining / seconds) if remaining > 0 and seconds > 0 else math.nan,
        "resumed_from": None if latest is None else str(latest),
    }
    (folder / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    env.close()
    return summary


def _latest_checkpoint(folder: Path) -> Path | None:
    files = sorted(folder.glob("agent_*_steps.zip"), key=lambda p: int(p.stem.split("_")[1]))
    return files[-1] if files else None


def evaluation_callback(config: TrainConfig, service: Any, folder: Path) -> Any:
    """An SB3 callback that runs the long-term evaluation on held-out users every
    ``config.eval_every`` steps and logs ``eval/total_watch`` (and friends) to TensorBoard
    and ``evaluations.jsonl``. (Built here so that importing this module stays free of
    SB3 and torch: the command line reads `TrainConfig` at start-up.)"""
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.evaluation import run_population

    class EvaluationCallback(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._next = config.eval_every
            self._env = evaluation_env(config, config.eval_users, service)

        def _on_step(self) -> bool:
            if self.num_timesteps < self._next:
                return True
            self._next += config.eval_every
            policy = _as_policy(self.model, config, config.algorithm, service)
            # Seed 10_000: a population the training users (seed 0, 1, …) never are.
            summary = run_population(self._env, policy, 10_000 + config.seed).summary()
            for name in ("total_watch", "active_days", "ctr", "session_length"):
                self.logger.record(f"eval/{name}", summary[name])
            with open(folder / "evaluations.jsonl", "a") as stream:
                stream.write(json.dumps({"steps": self.num_timesteps, **summary}) + "\n")
            return True

    return EvaluationCallback()


def evaluation_env(config: TrainConfig, num_users: int, service: Any) -> Any:
    """``num_users`` users of ``config``'s environment (its options included), in
    next-step autoreset mode, with the observation wrappers the agent acts on."""
    env = gym.make_vec(
        config.env_id,
        num_envs=num_users,
        vectorization_mode="vector_entry_point",
        **dict(config.env_options or {}),
    )
    for wrap in predictor_wrappers(config, service, for_training=False):
        env = wrap(env)
    return env
