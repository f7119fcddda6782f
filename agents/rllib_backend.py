"""Ray RLlib as a training backend (``loe-gym train --agent.backend rllib``), and the
environment helper for your own RLlib configs.

RLlib 2.x needs three things that its defaults do not give a loe_gym id: the workers must
import ``loe_gym`` (else ``NamespaceNotFound``), the default model must see a flat
observation (RLlib has no encoder for a ``Dict``), and the batched core should be driven as
the vector env it is. `rllib_environment` sets all three on any ``AlgorithmConfig``:

    from ray.rllib.algorithms.ppo import PPOConfig
    from agents.rllib_backend import rllib_environment

    config = rllib_environment(PPOConfig(), "loe_gym/Engagement-v0", num_users=256)
    algo = config.build_algo()

`train_rllib` trains the project's own agent there: the candidate-scoring network of
`agents.networks` as an RLlib module (`CandidateRLModule`: permuting the candidates
permutes the action distribution), the predictor's wrappers inside every env runner, the
held-out evaluations of the SB3 backend, and the result saved as an SB3 agent (safetensors +
JSON), so ``loe-gym evaluate`` judges it beside SB3 agents without Ray.

Install: ``pip install -e ".[rllib]"`` (Ray pins gymnasium 1.2.2: a second virtual
environment keeps the newest gymnasium in the first).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from agents.configs import TrainRunConfig

__all__ = [
    "CandidateRLModule",  # noqa: F822  (built on first access: RLlib is optional)
    "make_vector_env",
    "rllib_environment",
    "train_rllib",
]


def _import_ray() -> Any:
    try:
        import ray
        from ray.rllib.algorithms.ppo import PPOConfig  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"backend 'rllib' needs Ray RLlib ({error}): pip install -e \".[rllib]\", best in "
            "a virtual environment of its own (Ray pins gymnasium 1.2.2)."
        ) from error
    return ray


ENV_NAME = "loe_gym_vector"
"""The name under which `rllib_environment` registers `make_vector_env` with Ray."""


def make_vector_env(context: Mapping[str, Any]) -> gym.vector.VectorEnv:
    """The users of one env runner, from RLlib's env context: ``env_id``, ``env_options``,
    ``num_envs`` (RLlib's ``num_envs_per_env_runner``) and, with a predictor, ``run`` (the
    `TrainRunConfig` as a dict, whose wrappers, state encoder and reward model, go between
    the users and the module; its ``normalize_reward`` adds Gymnasium's
    ``NormalizeReward``). Ray ships this function to every worker by reference, so calling
    it there imports loe_gym and registers its ids first."""
    from agents.training import check_env_id, predictor_wrappers

    env_id = str(context["env_id"])
    check_env_id(env_id)
    env: gym.vector.VectorEnv = gym.make_vec(
        env_id,
        num_envs=int(context.get("num_envs", 1)),
        vectorization_mode="vector_entry_point",
        **dict(context.get("env_options") or {}),
    )
    if context.get("run") is None:
        return env
    config = TrainRunConfig.from_dict(context["run"])
    service = None
    if config.agent.needs_predictor:
        from loe_gym.predictor.serving import PredictorService

        service = PredictorService.from_pretrained(str(config.predictor))
    for wrap in predictor_wrappers(config, service, for_training=True):
        env = wrap(env)
    if config.agent.normalize_reward:
        # As the SB3 backend: a running spread of ~100-step returns, not an objective.
        env = gym.wrappers.vector.NormalizeReward(env, gamma=0.99)
    return env


def flatten_observations(env: Any = None, spaces: Any = None, device: Any = None) -> Any:
    """RLlib's ``FlattenObservations`` connector (its default models need flat inputs)."""
    from ray.rllib.connectors.env_to_module import FlattenObservations

    return FlattenObservations()


def rllib_environment(
    config: Any,
    env_id: str,
    *,
    num_users: int,
    num_env_runners: int = 0,
    env_options: Mapping[str, Any] | None = None,
    flatten: bool = True,
    run: Mapping[str, Any] | None = None,
) -> Any:
    """``config`` (an RLlib ``AlgorithmConfig``) set to train on ``num_users`` users of
    ``env_id``, split evenly over ``num_env_runners`` env runners (0: the driver samples).

    ``flatten`` adds RLlib's ``FlattenObservations`` for its default models; a module that
    reads the ``Dict`` observation itself (`CandidateRLModule`) wants ``flatten=False``.
    ``run``: a `TrainRunConfig` as a dict, for its predictor wrappers (`make_vector_env`).
    """
    runners = max(1, num_env_runners)
    if num_users < 1 or num_users % runners:
        raise ValueError(
            f"num_users={num_users} must be a positive multiple of num_env_runners="
            f"{num_env_runners} (each runner simulates num_users / num_env_runners users)."
        )
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_vector_env)
    context = {"env_id": env_id, "env_options": dict(env_options or {}), "run": run}
    return config.environment(ENV_NAME, env_config=context).env_runners(
        num_env_runners=num_env_runners,
        num_envs_per_env_runner=num_users // runners,
        gym_env_vectorize_mode="vector_entry_point",
        env_to_module_connector=flatten_observations if flatten else None,
    )


@functools.cache
def _module_class() -> Any:
    """`CandidateRLModule`, defined once RLlib is importable (this module imports without it)."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchMultiCategorical
    from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
    from ray.rllib.core.rl_module.torch import TorchRLModule

    class _CandidateRLModule(TorchRLModule, ValueFunctionAPI):  # type: ignore[misc]
        """The SB3 backend's `agents.networks.CandidateActorCriticPolicy` as an RLlib module:
        the same weights, so the trained module is saved as an SB3 agent.

        ``model_config``: `TrainConfig.policy_kwargs`.
        """

        def setup(self) -> None:
            from agents.networks import CandidateActorCriticPolicy

            options = dict(self.model_config or {})
            self.candidate_policy = CandidateActorCriticPolicy(
                self.observation_space,
                self.action_space,
                lambda _: 0.0,
                net_arch=tuple(options.get("net_arch", (64, 64))),
                myopic_prior=float(options.get("myopic_prior", 0.0)),
                own_critic=bool(options.get("own_critic", False)),
                features_extractor_kwargs=dict(options.get("features_extractor_kwargs") or {}),
            )
            if isinstance(self.action_space, gym.spaces.MultiDiscrete):
                lengths = [int(n) for n in self.action_space.nvec]
                self.action_dist_cls = TorchMultiCategorical.get_partial_dist_cls(
                    input_lens=lengths
                )

        def _features(self, batch: Mapping[str, Any]) -> Any:
            policy = self.candidate_policy
            return policy.extract_features(batch[Columns.OBS], policy.features_extractor)

        def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            logits = self.candidate_policy.mlp_extractor.forward_actor(self._features(batch))
            return {Columns.ACTION_DIST_INPUTS: logits}

        def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            logits, latent = self.candidate_policy.mlp_extractor(self._features(batch))
            return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: latent}

        def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Any:
            policy = self.candidate_policy
            if embeddings is None:
                embeddings = policy.mlp_extractor.forward_critic(self._features(batch))
            return policy.value_net(embeddings).squeeze(-1)

    return _CandidateRLModule


def clock_value_targets(
    values: np.ndarray,
    rewards: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    days: np.ndarray,
    *,
    gamma: float,
    lambda_: float,
    day_discount: float,
) -> np.ndarray:
    """GAE value targets ``(T,)`` over RLlib's batch rows (episode chunks one after the
    other, each ending in RLlib's extra bootstrap step), each transition discounted by
    ``gamma · day_discount ** (day[t+1] − day[t])`` as `agents.discounting` does for SB3.
    Where ``terminateds[t]`` there is no next state; a chunk boundary (``truncateds[t]``)
    still bootstraps from ``values[t+1]`` but stops the recursion."""
    elapsed = np.maximum(np.diff(days, append=days[-1:]), 0.0)
    discounts = gamma * day_discount**elapsed
    next_values = np.append(values[1:], 0.0)
    carry = discounts * (1.0 - terminateds)
    deltas = rewards + carry * next_values - values
    propagate = carry * lambda_ * (1.0 - truncateds)
    advantages = np.zeros_like(deltas, dtype=np.float32)
    running = 0.0
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + propagate[t] * running
        advantages[t] = running
    return (advantages + values).astype(np.float32)


@functools.cache
def _learner_class() -> Any:
    """RLlib's PPO learner whose GAE discounts by the users' clock (`clock_value_targets`)."""
    import torch
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
    from ray.rllib.connectors.learner import GeneralAdvantageEstimation
    from ray.rllib.core.columns import Columns
    from ray.rllib.evaluation.postprocessing import Postprocessing
    from ray.rllib.utils.numpy import convert_to_numpy

    from agents.discounting import DAY

    class ClockAdvantageEstimation(GeneralAdvantageEstimation):  # type: ignore[misc]
        def __init__(self, *, gamma: float, lambda_: float, day_discount: float) -> None:
            super().__init__(gamma=gamma, lambda_=lambda_)
            self.day_discount = day_discount

        def __call__(self, *, rl_module: Any, batch: dict[str, Any], **kwargs: Any) -> Any:
            for module_id, rows in batch.items():
                module = rl_module[module_id]
                with torch.no_grad():
                    values = module.compute_values(rows)
                numbers = {key: convert_to_numpy(rows[key]) for key in
                           (Columns.REWARDS, Columns.TERMINATEDS, Columns.TRUNCATEDS)}  # fmt: skip
                targets = clock_value_targets(
                    convert_to_numpy(values),
                    numbers[Columns.REWARDS],
                    numbers[Columns.TERMINATEDS].astype(np.float32),
                    numbers[Columns.TRUNCATEDS].astype(np.float32),
                    convert_to_numpy(rows[Columns.OBS]["context"])[:, DAY],
                    gamma=self.gamma,
                    lambda_=self.lambda_,
                    day_discount=self.day_discount,
                )
                advantages = targets - convert_to_numpy(values)
                advantages = (advantages - advantages.mean()) / max(1e-4, advantages.std())
                rows[Postprocessing.ADVANTAGES] = torch.as_tensor(advantages, device=values.device)
                rows[Postprocessing.VALUE_TARGETS] = torch.as_tensor(targets, device=values.device)
            return batch

    class ClockPPOLearner(PPOTorchLearner):  # type: ignore[misc]
        def build(self) -> None:
            super().build()
            if self._learner_connector is not None:
                self._learner_connector.remove("GeneralAdvantageEstimation")
                self._learner_connector.append(
                    ClockAdvantageEstimation(
                        gamma=self.config.gamma,
                        lambda_=self.config.lambda_,
                        day_discount=self.config.learner_config_dict["day_discount"],
                    )
                )

    return ClockPPOLearner


def __getattr__(name: str) -> Any:
    if name == "CandidateRLModule":
        return _module_class()
    raise AttributeError(name)


def ppo_config(config: TrainRunConfig) -> Any:
    """RLlib's ``PPOConfig`` for ``config`` (`TrainConfig` fields mapped one to one)."""
    _import_ray()
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    agent = config.agent
    algorithm = rllib_environment(
        PPOConfig(),
        config.env_id,
        num_users=agent.num_users,
        num_env_runners=agent.num_env_runners,
        env_options=config.env_options,
        flatten=False,
        run=config.to_dict(),
    )
    return (
        algorithm.env_runners(rollout_fragment_length=agent.n_steps)
        .training(
            lr=agent.learning_rate,
            gamma=agent.gamma,
            lambda_=agent.gae_lambda,
            train_batch_size_per_learner=agent.n_steps * agent.num_users,
            minibatch_size=agent.batch_size,
            num_epochs=agent.n_epochs,
            entropy_coeff=agent.ent_coef,
            # As SB3's PPO: value loss weight 0.5, no value clipping, no KL term.
            vf_loss_coeff=0.5,
            vf_clip_param=math.inf,
            use_kl_loss=False,
            clip_param=0.2,
            grad_clip=0.5,
            learner_class=_learner_class(),
            learner_config_dict={"day_discount": agent.day_discount},
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=_module_class(),
                model_config=agent.policy_kwargs(),
            )
        )
        .debugging(seed=agent.seed)
        .reporting(min_sample_timesteps_per_iteration=0, metrics_num_episodes_for_smoothing=1)
        .resources(num_cpus_for_main_process=1)
        .learners(num_learners=0, num_gpus_per_learner=1 if _on_gpu() else 0)
        .env_runners(num_cpus_per_env_runner=1)
    )


def _on_gpu() -> bool:
    from loe_gym.devices import current_device

    return current_device().startswith("cuda")


def train_rllib(
    config: TrainRunConfig,
    folder: Any,
    service: Any,
    *,
    address: str | None = None,
    progress: bool = True,
) -> Any:
    """Train ``config``'s PPO with RLlib into the run ``folder`` (`AgentRunFolder`) and save
    it as an SB3 agent there. ``address``: an existing Ray cluster (default: a local one)."""
    from tqdm.auto import tqdm

    from agents.agent_files import save_agent
    from agents.training import (
        TrainingSummary,
        _as_policy,
        evaluation_env,
        record_evaluation,
        sb3_model,
    )

    ray = _import_ray()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    agent = config.agent
    algo = ppo_config(config).build_algo()
    model = sb3_model(config, service)
    eval_env = evaluation_env(config, config.eval_users, service) if config.eval_every else None
    next_eval = config.eval_every or math.inf
    steps, started = 0, time.perf_counter()
    try:
        if eval_env is not None:  # the untrained policy, as the SB3 backend's curve starts
            _copy_weights(algo, model)
            record_evaluation(
                config, _as_policy(model, config, agent.algorithm, service), eval_env, folder, 0
            )
        with tqdm(total=agent.total_steps, disable=not progress, desc="rllib ppo") as bar:
            while steps < agent.total_steps:
                result = algo.train()
                sampled = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
                bar.update(sampled - steps)
                steps = sampled
                if steps >= next_eval or steps >= agent.total_steps:
                    _copy_weights(algo, model)
                if eval_env is not None and steps >= next_eval:
                    next_eval += config.eval_every
                    policy = _as_policy(model, config, agent.algorithm, service)
                    record_evaluation(config, policy, eval_env, folder, steps)
        seconds = time.perf_counter() - started
    finally:
        algo.stop()
        if started_ray:
            ray.shutdown()
    model.num_timesteps = steps
    save_agent(model, folder.root, "agent")
    return TrainingSummary(
        steps=steps, seconds=seconds, steps_per_second=steps / seconds, resumed_from=None
    )


def _copy_weights(algo: Any, model: Any) -> None:
    """The learner's module weights (what it trained, not a runner's copy) into the SB3
    ``model``: the same network under the same names."""
    import torch

    weights = algo.learner_group.get_weights()["default_policy"]
    prefix = "candidate_policy."
    state = {name.removeprefix(prefix): torch.as_tensor(np.asarray(value))
             for name, value in weights.items()}  # fmt: skip
    model.policy.load_state_dict(state)


def train_rllib_run(
    config: TrainRunConfig,
    folder: Any,
    overwrite: bool,
    resume: bool,
    address: str | None,
    progress: bool,
) -> Any:
    """`agents.training.train_agent` with ``backend="rllib"``: the run ``folder``
    (`AgentRunFolder`) written as the SB3 backend writes it, from the agent trained here."""
    from agents.training import _prepare_run_folder, _service
    from loe_gym.run_folders import finish_run_folder

    if resume:
        raise ValueError(
            f"--resume: the rllib backend saves the final agent only, so {folder.root} has no "
            "checkpoint to continue from; train again with --overwrite, or use --agent.backend "
            "sb3 for resumable runs."
        )
    _prepare_run_folder(folder, overwrite, resume=False, trust_pickle=False)
    service = _service(str(config.predictor)) if config.agent.needs_predictor else None
    folder.config.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    summary = train_rllib(config, folder, service, address=address, progress=progress)
    folder.summary.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    finish_run_folder(folder.root, "train")
    return summary
