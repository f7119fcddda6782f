"""Training SB3 agents on the simulated users (``loe-gym train``).

`TrainRunConfig` (agents/configs.py) names the environment, the predictor's folder and the
agent (`TrainConfig`: algorithm, how the predictor enters — state encoder, reward model —
budget and hyper-parameters); `train_agent` builds the batched SB3 environment, the
candidate-scoring policy, TensorBoard logging, a progress bar, periodic checkpoints
(resumable) and an evaluation callback on held-out users, and writes the run folder
(`AgentRunFolder`).

| algorithm | action | policy |
|---|---|---|
| ``ppo``, ``a2c`` | choose candidates (``Discrete`` / ``MultiDiscrete`` slate) | `CandidateActorCriticPolicy` |
| ``dqn`` | choose one candidate (``Discrete``) | `CandidateDQNPolicy` |
| ``sac``, ``td3`` | fusion weights over the predictor's task scores (``Box``) | SB3's ``MultiInputPolicy`` |
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.configs import FUSION_ALGORITHMS, TrainRunConfig
from loe_gym.devices import current_device
from loe_gym.envs.simulators import imported_module
from loe_gym.errors import did_you_mean
from loe_gym.run_folders import finish_run_folder, mark_run_folder, remove_run_folder

__all__ = [
    "AgentRunFolder",
    "SB3Policy",
    "TrainingSummary",
    "check_env_id",
    "load_agent",
    "train_agent",
]


@dataclass(frozen=True)
class AgentRunFolder:
    """The layout of a `train_agent` output folder (the one place that knows it)."""

    root: Path

    @property
    def agent(self) -> Path:
        """The trained agent, ``agent.safetensors`` + ``agent.json`` (`agents.agent_files`)."""
        return self.root / "agent.json"

    @property
    def model(self) -> Path:
        """SB3's ``model.zip`` of runs written before `agent` (loaded only if trusted)."""
        return self.root / "model.zip"

    @property
    def config(self) -> Path:
        """The resolved `TrainRunConfig` (`load_agent` reads it)."""
        return self.root / "config.json"

    @property
    def summary(self) -> Path:
        return self.root / "training.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def evaluations(self) -> Path:
        """One JSON line per evaluation of the callback."""
        return self.root / "evaluations.jsonl"


@dataclass(frozen=True)
class TrainingSummary:
    """What `train_agent` did (``training.json`` holds the same fields)."""

    steps: int
    """Environment steps trained in all (a resumed run counts its earlier steps)."""
    seconds: float
    """Wall-clock seconds of this call's learning."""
    steps_per_second: float
    """This call's steps per second (NaN when it had nothing left to train)."""
    resumed_from: str | None
    """The checkpoint a resumed run continued from."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_env_id(env_id: str) -> None:
    """Raise on an unregistered env id, suggesting the near ones. ``"module:id"`` (the
    form ``gym.make`` takes) imports ``module`` first, which registers ``id``."""
    if ":" in env_id:
        import importlib

        module, _, env_id = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"Cannot import {module!r} of the env id {module}:{env_id} ({error}); "
                "check the module path and that its package is installed."
            ) from error
    if env_id not in gym.registry:
        known = [n for n in gym.registry if n.startswith("loe_gym/")]
        raise ValueError(
            f"Unknown env id {env_id!r}.{did_you_mean(env_id, known)} "
            f"Registered: {', '.join(known)}."
        )


def _service(path: str | Path) -> Any:
    from loe_gym.predictor.serving import PredictorService

    return PredictorService.from_pretrained(path)


def predictor_wrappers(
    config: TrainRunConfig, service: Any, *, for_training: bool
) -> list[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]]:
    """The vector wrappers ``config`` puts between the simulator and the agent.

    Evaluation (``for_training=False``) keeps the observations only: policies are judged
    on the simulator's true engagement, whatever reward they were trained on."""
    from agents.predictor_env import FusionWeights, PredictorObservations, PredictorReward

    if service is None:
        return []
    agent = config.agent
    wrappers: list[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]] = [
        lambda env: PredictorObservations(
            env, service, agent.encoder_history_length, agent.item_vector_size
        )
    ]
    if for_training and agent.reward_source != "simulator":
        observed = agent.reward_source == "hybrid"
        wrappers.append(
            lambda env: PredictorReward(
                env, agent.return_weight, agent.continuation_weight, observed_reward=observed
            )
        )
    if for_training and agent.algorithm in FUSION_ALGORITHMS:
        wrappers.append(FusionWeights)
    return wrappers


def _check_action_space(config: TrainRunConfig, env: Any) -> None:
    space = env.action_space
    if config.agent.algorithm == "dqn" and not isinstance(space, gym.spaces.Discrete):
        raise ValueError(
            f"dqn needs a Discrete action (one item per step); {config.env_id} has {space}. "
            "Algorithms that take it: ppo, a2c (slates), sac, td3 (fusion weights)."
        )


def _make_model(run: TrainRunConfig, env: Any, tensorboard: str | None) -> Any:
    import stable_baselines3 as sb3

    from agents.discounting import ClockA2C, ClockPPO
    from agents.networks import CandidateActorCriticPolicy, CandidateDQNPolicy

    config = run.agent
    common: dict[str, Any] = {"seed": config.seed, "tensorboard_log": tensorboard, "verbose": 0}
    common["device"] = current_device()  # beside the predictor's service: no host copies
    lr, gamma = config.learning_rate, config.gamma
    if config.algorithm in ("ppo", "a2c"):
        on_policy: dict[str, Any] = {
            "learning_rate": lr,
            "gamma": gamma,
            "day_discount": config.day_discount,
            "gae_lambda": config.gae_lambda,
            "n_steps": config.n_steps,
            "ent_coef": config.ent_coef,
            "policy_kwargs": config.policy_kwargs(),
            **common,
        }
        if config.algorithm == "ppo":
            return ClockPPO(
                CandidateActorCriticPolicy,
                env,
                batch_size=config.batch_size,
                n_epochs=config.n_epochs,
                **on_policy,
            )
        return ClockA2C(CandidateActorCriticPolicy, env, **on_policy)
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


def make_training_env(config: TrainRunConfig, service: Any, *, num_users: int | None = None) -> Any:
    """The SB3 ``VecEnv`` (monitored) that ``config`` trains on.

    With ``agent.normalize_reward`` (PPO, A2C) SB3's ``VecNormalize`` divides the rewards by
    a running spread of the returns, outside the monitor, so that logged episode returns
    stay in minutes. A resumed run starts that statistic afresh."""
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.sb3_vec_env import make_sb3_env

    env: Any = make_sb3_env(
        config.env_id,
        num_users or config.agent.num_users,
        wrappers=predictor_wrappers(config, service, for_training=True),
        **dict(config.env_options or {}),
    )
    if config.agent.normalize_reward and config.agent.algorithm in ("ppo", "a2c"):
        # The statistic is a scale, not an objective: a fixed horizon of about 100 steps
        # whatever the agent's discount (an undiscounted one would grow with the life).
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=0.99)
    return env


class SB3Policy:
    """A trained SB3 agent as a batched `agents.reference_policies.Policy` (deterministic actions).

    Fusion-weight agents (SAC, TD3) output weights; this ranks the candidates by them,
    so the evaluation env needs only `PredictorObservations`.
    """

    privileged = False

    def __init__(self, model: Any, name: str, *, uses_predictor: bool, fusion: bool) -> None:
        self.model, self.network, self.name = model, model.policy, name
        self.uses_predictor, self.fusion = uses_predictor, fusion

    def __getstate__(self) -> dict[str, Any]:
        # A copy sent to a Ray task acts through the network alone; the algorithm holds its
        # training env, which SB3's vec-env wrappers cannot copy.
        return {**self.__dict__, "model": None}

    def _observed(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The keys the network was trained on: an env may observe more (a learned world
        has no ``user`` features; the deployment's simulator may)."""
        keys = getattr(self.network.observation_space, "spaces", None)
        if keys is None:
            return dict(obs)
        missing = [key for key in keys if key not in obs]
        if missing:
            raise ValueError(
                f"Agent {self.name!r} reads observation keys {missing} that this env does not "
                f"give (it gives {sorted(obs)}); evaluate it on the env it was trained for."
            )
        return {key: obs[key] for key in keys}

    def act(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        obs = self._observed(obs)
        if self.fusion:
            from agents.predictor_env import rank_by_weights

            action, _ = self.network.predict(obs, deterministic=True)
            return rank_by_weights(action, obs["candidate_scores"], env.config.slate_size)
        slate_size = env.config.slate_size
        if slate_size == 1:
            action, _ = self.network.predict(obs, deterministic=True)
            return np.asarray(action)
        # A slate policy's positions share the candidates' logits (agents/networks.py): the
        # deterministic slate is the best slate_size distinct candidates, not one repeated.
        import torch

        from agents.ranking import top_slates

        policy = self.network
        tensors, _ = policy.obs_to_tensor(obs)
        with torch.no_grad():
            logits = policy.get_distribution(tensors).distribution[0].logits
        return top_slates(logits.cpu().numpy(), slate_size)

    def __repr__(self) -> str:
        return f"SB3Policy({self.name!r})"


def algorithm_class(algorithm: str) -> Any:
    """The SB3 class of a `TrainConfig.algorithm` (PPO and A2C with the day discount)."""
    import stable_baselines3 as sb3

    from agents.discounting import ClockA2C, ClockPPO

    return {"ppo": ClockPPO, "a2c": ClockA2C}.get(algorithm) or getattr(sb3, algorithm.upper())


def load_agent(
    run: str | Path, name: str | None = None, *, trust_pickle: bool = False
) -> tuple[SB3Policy, TrainRunConfig, Any]:
    """``(policy, config, predictor service or None)`` of a ``train_agent`` output folder.

    The agent is rebuilt from ``config.json`` and its safetensors weights; SB3's
    ``model.zip`` (cloudpickle: loading it can run code) only with ``trust_pickle``.
    """
    folder = AgentRunFolder(Path(run))
    if not folder.config.is_file():
        raise FileNotFoundError(
            f"{folder.root} holds no config.json: pass a folder written by loe-gym train."
        )
    config = TrainRunConfig.from_dict(json.loads(folder.config.read_text()))
    simulator = (config.env_options or {}).get("simulator")
    if (module := imported_module(simulator)) is not None:
        warnings.warn(
            f"{folder.config} names the simulator {simulator!r}: building its environment "
            f"imports the module {module!r}, which runs that module's code. Load run folders "
            "from sources you trust only.",
            UserWarning,
            stacklevel=2,
        )
    service = _service(str(config.predictor)) if config.agent.needs_predictor else None
    model = _rebuild(config, service, folder.root, "agent", trust_pickle, folder.model)
    policy = _as_policy(model, config, name or config.agent.algorithm, service)
    return policy, config, service


def _rebuild(
    config: TrainRunConfig,
    service: Any,
    directory: Path,
    stem: str,
    trust_pickle: bool,
    pickled: Path,
    env: Any = None,
    tensorboard: str | None = None,
) -> Any:
    """The agent ``stem`` of ``directory``: built from ``config`` and loaded from its
    safetensors files, or from SB3's zip ``pickled`` if there are none and it is trusted."""
    from agents.agent_files import agent_files, restore_agent

    if agent_files(directory, stem)[1].is_file():
        model = sb3_model(config, service) if env is None else _make_model(config, env, tensorboard)
        restore_agent(model, directory, stem)
        return model
    if not pickled.is_file():
        raise FileNotFoundError(
            f"{directory} holds no agent ({stem}.json and {stem}.safetensors): pass a folder "
            "written by loe-gym train."
        )
    if not trust_pickle:
        raise ValueError(
            f"{directory} holds only SB3's {pickled.name}, which is loaded with cloudpickle: "
            "a crafted file runs code. Pass trust_pickle=True (--trust-pickle) only if you "
            "trust whoever wrote it; `loe-gym train` writes safetensors agents."
        )
    return algorithm_class(config.agent.algorithm).load(
        pickled, env=env, device=current_device(), tensorboard_log=tensorboard
    )


def sb3_model(config: TrainRunConfig, service: Any) -> Any:
    """``config``'s SB3 agent, untrained, on a 2-user env: enough to build its networks
    (and no replay buffer) for weights loaded from a file or from another backend."""
    run = config.replace(agent=config.agent.replace(num_users=2, buffer_size=1000))
    env = make_training_env(run, service)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's advice on batch sizes of a 2-user env
        return _make_model(run, env, None)


def _as_policy(model: Any, config: TrainRunConfig, name: str, service: Any) -> SB3Policy:
    return SB3Policy(
        model,
        name,
        uses_predictor=service is not None,
        fusion=config.agent.algorithm in FUSION_ALGORITHMS,
    )


def _prepare_run_folder(
    folder: AgentRunFolder, overwrite: bool, resume: bool, trust_pickle: bool
) -> Path | None:
    """Check ``folder`` against the mode; return the checkpoint to resume from."""
    latest = _latest_checkpoint(folder.checkpoints, trust_pickle) if resume else None
    if folder.root.exists() and any(folder.root.iterdir()) and not (overwrite or resume):
        raise FileExistsError(
            f"{folder.root} exists and is not empty; pass overwrite=True (--overwrite) to start "
            "over or resume=True (--resume) to continue from its last checkpoint."
        )
    if resume and latest is None:
        pickled = sorted(folder.checkpoints.glob("agent_*_steps.zip"))
        hint = (
            f" It holds SB3 zips ({pickled[-1].name}), loaded with cloudpickle: pass "
            "trust_pickle=True (--trust-pickle) only if you trust whoever wrote them."
            if pickled
            else ""
        )
        raise FileNotFoundError(
            f"resume: {folder.checkpoints} holds no checkpoint to continue from.{hint}"
        )
    if overwrite and not resume:
        remove_run_folder(folder.root)  # refuses a folder that loe_gym did not write
    mark_run_folder(folder.root, "train")
    return latest


def train_agent(
    config: TrainRunConfig,
    output: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    trust_pickle: bool = False,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    address: str | None = None,
) -> TrainingSummary:
    """Train ``config``'s agent; write the run folder (`AgentRunFolder`: the agent as
    safetensors + JSON, the resolved ``config.json``, ``training.json``, TensorBoard logs
    and checkpoints).

    An existing ``output`` is refused unless ``overwrite`` (start over) or ``resume``
    (continue from its last checkpoint; SB3 zip checkpoints of older runs only with
    ``trust_pickle``). ``agent.backend == "rllib"`` trains with Ray RLlib instead
    (`agents.rllib_backend`; ``address``: an existing Ray cluster). Returns the summary.
    """
    from stable_baselines3.common.callbacks import CallbackList

    check_env_id(config.env_id)
    folder = AgentRunFolder(Path(output))
    if config.agent.backend == "rllib":
        from agents.rllib_backend import train_rllib_run

        return train_rllib_run(config, folder, overwrite, resume, address, progress)
    latest = _prepare_run_folder(folder, overwrite, resume, trust_pickle)
    agent = config.agent
    service = _service(str(config.predictor)) if agent.needs_predictor else None
    env = make_training_env(config, service)
    _check_action_space(config, env)
    folder.config.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tensorboard = str(folder.tensorboard)
    if latest is not None:
        stem = latest.name.removesuffix(latest.suffix)
        model = _rebuild(
            config, service, latest.parent, stem, trust_pickle, latest, env, tensorboard
        )
        _forget_evaluations_after(folder.evaluations, model.num_timesteps)
    else:
        model = _make_model(config, env, tensorboard)
    every = config.checkpoint_every or agent.total_steps
    callback_list: list[Any] = [
        checkpoint_callback(max(1, every // agent.num_users), folder.checkpoints),
        *callbacks,
    ]
    if config.eval_every:
        callback_list.append(evaluation_callback(config, service, folder))
    started = time.perf_counter()
    remaining = agent.total_steps - (model.num_timesteps if latest is not None else 0)
    if remaining > 0:
        model.learn(
            remaining,
            callback=CallbackList(callback_list),
            progress_bar=progress,
            reset_num_timesteps=latest is None,
            tb_log_name="run",
        )
    seconds = time.perf_counter() - started
    from agents.agent_files import save_agent

    save_agent(model, folder.root, "agent")
    summary = TrainingSummary(
        steps=int(model.num_timesteps),
        seconds=seconds,
        steps_per_second=(remaining / seconds) if remaining > 0 and seconds > 0 else math.nan,
        resumed_from=None if latest is None else str(latest),
    )
    folder.summary.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    finish_run_folder(folder.root, "train")
    env.close()
    return summary


def _forget_evaluations_after(path: Path, steps: int) -> None:
    """Drop the evaluations an interrupted run wrote after its last checkpoint: the
    resumed run evaluates those steps again (without this they would appear twice)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["steps"] <= steps]
    if len(kept) < len(lines):
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text("".join(line + "\n" for line in kept))
        os.replace(temporary, path)


def _latest_checkpoint(folder: Path, trust_pickle: bool) -> Path | None:
    """The last checkpoint's ``agent_N_steps.json`` (or SB3 ``.zip``, if trusted)."""
    suffixes = (".json", ".zip") if trust_pickle else (".json",)
    files = [p for p in folder.glob("agent_*_steps.*") if p.suffix in suffixes]
    files.sort(key=lambda p: (int(p.stem.split("_")[1]), p.suffix == ".json"))
    return files[-1] if files else None


def checkpoint_callback(every_calls: int, folder: Path) -> Any:
    """An SB3 callback writing the agent (`agents.agent_files`) to
    ``folder/agent_<steps>_steps.{safetensors,json}`` every ``every_calls`` vector steps."""
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.agent_files import save_agent

    class SafetensorsCheckpoints(BaseCallback):  # type: ignore[misc]
        def _on_step(self) -> bool:
            if self.n_calls % every_calls == 0:
                save_agent(self.model, folder, f"agent_{self.num_timesteps}_steps")
            return True

    return SafetensorsCheckpoints()


def evaluation_callback(config: TrainRunConfig, service: Any, folder: AgentRunFolder) -> Any:
    """An SB3 callback that runs the long-term evaluation on held-out users before training
    and every ``config.eval_every`` steps and logs ``eval/total_watch`` (and friends) to
    TensorBoard and ``evaluations.jsonl``. (Built here so that importing this module stays
    free of SB3 and torch.)"""
    from stable_baselines3.common.callbacks import BaseCallback

    class EvaluationCallback(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._next = config.eval_every
            self._env = evaluation_env(config, config.eval_users, service)

        def _on_training_start(self) -> None:
            # The curve starts at the untrained policy (its prior ranking already scores:
            # steps-to-reach counts from there); a resumed run evaluates from its
            # checkpoint on, not from step 0 again.
            if self.model.num_timesteps == 0:
                self._evaluate()
            self._next = (self.model.num_timesteps // config.eval_every + 1) * config.eval_every

        def _evaluate(self) -> None:
            policy = _as_policy(self.model, config, config.agent.algorithm, service)
            summary = record_evaluation(config, policy, self._env, folder, self.num_timesteps)
            for name in ("total_watch", "active_days", "ctr", "session_length"):
                self.logger.record(f"eval/{name}", summary[name])

        def _on_step(self) -> bool:
            if self.num_timesteps < self._next:
                return True
            self._next += config.eval_every
            self._evaluate()
            return True

    return EvaluationCallback()


def record_evaluation(
    config: TrainRunConfig, policy: Any, env: Any, folder: AgentRunFolder, steps: int
) -> dict[str, float]:
    """The held-out evaluation of ``policy`` after ``steps`` training steps, appended to
    ``folder.evaluations``; returns its summary. Population seed 10 000 + the agent's seed:
    one the training users (seed 0, 1, …) never are."""
    from agents.evaluation import run_population

    summary = run_population(env, policy, 10_000 + config.agent.seed).summary()
    with open(folder.evaluations, "a") as stream:
        stream.write(json.dumps({"steps": steps, **summary}) + "\n")
    return summary


def evaluation_env(config: TrainRunConfig, num_users: int, service: Any) -> Any:
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
