"""Collect interaction logs: one population of users, each through a whole life, to Parquet.

The logs feed the learned user models of ``loe_gym.predictor``. A log holds exactly the
users of one population (the ``num_users`` users the environment samples first); slots
whose user has finished are no longer logged, although the environment goes on
simulating new users there until the last user of the population finishes. This is the
loop of `agents.evaluation.run_population`, so a log and an evaluation under one seed
describe the same users.

Example:
    >>> import tempfile
    >>> summary = collect_logs(
    ...     num_users=4, path=tempfile.mkdtemp(), horizon_days=2, progress=False,
    ...     env_options={"simulator_kwargs": {"num_items": 50}},
    ... )
    >>> summary.users, summary.rows > 0
    (4, True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import gymnasium as gym
import numpy as np

from agents.evaluation import population_steps
from agents.reference_policies import (
    REFERENCE_POLICIES,
    Policy,
    is_policy_name,
    make_policy,
    public_feature_policies,
)
from loe_gym import RecommendationVectorEnv
from loe_gym.errors import check_positive_int, did_you_mean
from loe_gym.logs import LogInteractions
from loe_gym.simulator import is_privileged

__all__ = [
    "DEPLOYABLE_POLICY",
    "LOGGING_POLICIES",
    "MIXED_POLICY",
    "LogSummary",
    "MixedPolicy",
    "collect_logs",
]

MIXED_POLICY: Final[dict[str, float]] = {"random": 0.4, "myopic": 0.3, "oracle_planner": 0.3}
"""The components of the ``"mixed"`` logging policy and the probability of each."""

DEPLOYABLE_POLICY: Final[dict[str, float]] = {
    "random": 0.4,
    "topic_affinity": 0.2,
    "max_ctr_estimate": 0.2,
    "max_completion_estimate": 0.2,
}
"""The components of the ``"deployable"`` logging policy: random exposure and three
recommenders that read only what the platform observes (a personalised one, a
clickbait-prone one and a quality-seeking one; see `agents.reference_policies`)."""


class MixedPolicy:
    """Per user and per step, the action of one component policy drawn at random.

    Each step, every user independently gets the action of ``random`` (probability
    0.4), ``myopic`` (0.3) or ``oracle_planner`` (0.3), drawn from a generator seeded by
    ``seed`` (see `MIXED_POLICY`).

    Why a mixture: a predictor learns from the log how users respond to what they are
    shown, so the log must show it a variety of items and of user trajectories. The
    random component covers the whole catalog (the support any later policy might use)
    and gives unbiased click-rate contrasts. The myopic component (most expected
    minutes now) shows clickbait-heavy slates that win the next click and erode
    satisfaction, and the oracle planner shows satisfaction-building items: together
    they put in the log both the short-term gains and the long-term costs (fewer
    next-day returns, churn) that the continuation and return heads must learn. Mixing
    per step rather than per user puts both regimes within every user's sequence, so a
    model cannot tell the regime from the user id. The myopic and planner components
    read the simulator's true state (privileged): fine for a logging policy, whose
    choices are recorded, never for a model's inputs.

    With ``per_user_concentration`` (the ``"diverse"`` logging policy), each user first
    draws their own mixture weights from a Dirichlet(``per_user_concentration ·
    probabilities``) and is then mixed per step with those: some users live mostly under
    the planner, others mostly under clickbait. That spread of whole-life regimes between
    users is what a model of *long-term* behaviour (satisfaction, return, churn) needs to
    learn from, e.g. a learned simulator; a per-step mixture with shared weights gives
    every user nearly the same average content.

    Args:
        probabilities: component name (a reference policy) → probability; sums to 1.
        seed: seeds the choice of component and the random component.
        per_user_concentration: Dirichlet concentration of per-user weights (smaller =
            more extreme users); None = the same weights for every user.
        name: the log's ``policy`` name (default ``"mixed"``, or ``"diverse"`` with
            per-user weights).

    The mixture is ``privileged`` if any component is. A model of responses fitted on its
    logs needs a mixture that is not, such as `DEPLOYABLE_POLICY`: where a component chose
    items by the hidden state, which item was shown tells about the user beyond the
    history, and the fitted responses carry that selection bias.
    """

    def __init__(
        self,
        probabilities: Mapping[str, float] = MIXED_POLICY,
        seed: int = 0,
        per_user_concentration: float | None = None,
        name: str | None = None,
    ) -> None:
        names = list(probabilities)
        weights = np.asarray([float(probabilities[n]) for n in names])
        if not names or np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
            raise ValueError(
                f"The mixture probabilities must be non-negative and sum to 1, got "
                f"{dict(probabilities)}."
            )
        if per_user_concentration is not None and not per_user_concentration > 0:
            raise ValueError(
                f"per_user_concentration must be > 0 (or None), got {per_user_concentration!r}."
            )
        choice_seed, random_seed = np.random.SeedSequence(seed).spawn(2)
        self.name = name or ("mixed" if per_user_concentration is None else "diverse")
        self.per_user_concentration = per_user_concentration
        self._user_weights: np.ndarray | None = None
        self.last_choice: np.ndarray | None = None
        """``(num_users,)`` index of the component that chose each user's last action."""
        self.names = tuple(names)
        self.probabilities = weights
        self.components: tuple[Policy, ...] = tuple(
            _make_policy(name, seed=int(random_seed.generate_state(1)[0])) for name in names
        )
        self.privileged = any(component.privileged for component in self.components)
        self.rng = np.random.default_rng(choice_seed)

    def act(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        if self.per_user_concentration is None:
            choice = self.rng.choice(len(self.components), size=env.num_envs, p=self.probabilities)
        else:
            # One weight vector per slot: a log holds one life per slot (see the module
            # docstring), so these are per-user weights.
            if self._user_weights is None or self._user_weights.shape[0] != env.num_envs:
                alpha = self.per_user_concentration * self.probabilities
                self._user_weights = self.rng.dirichlet(np.maximum(alpha, 1e-3), env.num_envs)
            cumulative = np.cumsum(self._user_weights, axis=1)
            draw = self.rng.random((env.num_envs, 1))
            choice = np.minimum((cumulative < draw).sum(axis=1), len(self.components) - 1)
        self.last_choice = choice
        actions = None
        for index, component in enumerate(self.components):
            chosen = choice == index
            # Every component acts every step, so its own random stream (the random
            # policy's) advances the same way whatever the draw.
            component_actions = np.asarray(component.act(obs, env))
            if actions is None:
                actions = component_actions.copy()
            else:
                actions[chosen] = component_actions[chosen]
        assert actions is not None
        return actions

    def __repr__(self) -> str:
        weights = dict(zip(self.names, self.probabilities.tolist(), strict=True))
        if self.per_user_concentration is None:
            return f"MixedPolicy({weights})"
        return f"MixedPolicy({weights}, per_user_concentration={self.per_user_concentration})"


DIVERSE_CONCENTRATION: Final = 1.0
"""Dirichlet concentration of the ``"diverse"`` logging policy's per-user weights."""

LOGGING_POLICIES: Final = ("mixed", "diverse", "deployable")
"""Logging policies beyond the reference policies: `MixedPolicy` with shared
(``mixed``) or per-user (``diverse``) weights over random, myopic and planner, and
``deployable``, per-user weights over `DEPLOYABLE_POLICY`."""


@dataclass(frozen=True)
class LogSummary:
    """What `collect_logs` wrote.

    Attributes:
        path: the log directory.
        policy: name of the logging policy (the log's ``policy`` column).
        rows: rows written (one per shown item).
        users: users logged (the population size).
        sessions: sessions logged.
        seconds: wall-clock time of the collection.
    """

    path: Path
    policy: str
    rows: int
    users: int
    sessions: int
    seconds: float


class _RecordingComponents:
    """A `MixedPolicy` that tells the log which component chose each user's slate."""

    def __init__(self, mixture: MixedPolicy, logged: LogInteractions) -> None:
        self.mixture, self.logged = mixture, logged
        self.name, self.privileged = mixture.name, mixture.privileged

    def act(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        actions = self.mixture.act(obs, env)
        self.logged.policy_component = self.mixture.last_choice
        return actions


def _make_policy(name: str, seed: int = 0) -> Policy:
    if not is_policy_name(name):
        choices = [*REFERENCE_POLICIES, *LOGGING_POLICIES]
        raise ValueError(
            f"Unknown logging policy {name!r}.{did_you_mean(name, choices)} "
            f"Choose one of {', '.join(choices)}."
        )
    # The random policy is the only one with its own random stream: seed it.
    return make_policy(name, seed=seed) if name == "random" else make_policy(name)


def _with_horizon(options: dict[str, Any], horizon_days: int | None) -> dict[str, Any]:
    if horizon_days is not None:
        if "horizon_days" in options and options["horizon_days"] != horizon_days:
            raise ValueError(
                f"horizon_days={horizon_days} contradicts env_options['horizon_days']="
                f"{options['horizon_days']}; give it once."
            )
        options["horizon_days"] = horizon_days
    return options


def deployable_probabilities(env: RecommendationVectorEnv) -> dict[str, float]:
    """`DEPLOYABLE_POLICY` for ``env``'s catalog: the components whose public inputs the
    catalog has (topics, ``ctr_estimate``, ``completion_estimate``), sharing the
    non-random probability in their proportions; ``random`` keeps its own. A catalog that
    supports none of them gets the rankings by each of its varying features, highest and
    lowest first (``max_<feature>``, ``min_<feature>``), in equal shares. Raises naming
    the alternatives when the catalog has no varying feature either."""
    supported, reasons = {}, []
    for name, probability in DEPLOYABLE_POLICY.items():
        if name == "random":
            continue
        try:
            _make_policy(name, seed=0).check(env)  # type: ignore[attr-defined]
        except ValueError as error:
            reasons.append(str(error))
        else:
            supported[name] = probability
    if not supported:
        supported = {p.name: 1.0 for p in public_feature_policies(env.catalog)}
    if not supported:
        raise ValueError(
            "The deployable logging policy reads public features this catalog lacks: "
            + " ".join(reasons)
            + " Choose another logging policy: random, a reference policy that reads your "
            "catalog, or mixed / diverse (they read the simulator's state)."
        )
    random_share = DEPLOYABLE_POLICY["random"]
    scale = (1.0 - random_share) / sum(supported.values())
    return {"random": random_share, **{n: p * scale for n, p in supported.items()}}


def _logging_behaviour(
    policy: str | Policy, seed: int, env: RecommendationVectorEnv | None = None
) -> Policy:
    """The logging policy a name stands for (a `Policy` object is taken as it is);
    ``deployable`` is fitted to ``env``'s catalog (`deployable_probabilities`)."""
    if not isinstance(policy, str):
        return policy
    if policy == "mixed":
        return MixedPolicy(seed=seed)
    if policy == "diverse":
        return MixedPolicy(seed=seed, per_user_concentration=DIVERSE_CONCENTRATION)
    if policy == "deployable":
        return MixedPolicy(
            DEPLOYABLE_POLICY if env is None else deployable_probabilities(env),
            seed=seed,
            per_user_concentration=DIVERSE_CONCENTRATION,
            name="deployable",
        )
    return _make_policy(policy, seed=int(np.random.SeedSequence(seed).generate_state(1)[0]))


def _privileged(privileged: bool | None, core: RecommendationVectorEnv) -> bool:
    """``privileged``, or where None whether the simulator has ``expected_responses``."""
    if privileged is None:
        return is_privileged(core.simulator)
    return privileged


def _open_log(
    core: RecommendationVectorEnv,
    behaviour: Policy,
    path: str | os.PathLike[str],
    rows_per_group: int,
    overwrite: bool,
    privileged: bool,
    run: Mapping[str, Any],
    resume: bool,
) -> LogInteractions:
    """The logging wrapper, once the policy's needs of the catalog are checked."""
    # Policies that need features of the catalog say so before the log is created.
    for component in getattr(behaviour, "components", (behaviour,)):
        if hasattr(component, "check"):
            component.check(core)
    # A mixture logs which component chose each row ("mixed:random", …): rows of the
    # random component are randomised exposure, which a model can learn from without the
    # logging policy's selection bias.
    components = behaviour.names if isinstance(behaviour, MixedPolicy) else ()
    return LogInteractions(
        core,
        path,
        policy=behaviour.name,
        rows_per_group=rows_per_group,
        overwrite=overwrite,
        privileged=privileged,
        policy_components=components,
        run=run,
        resume=resume,
    )


def _log_population(
    logged: LogInteractions,
    behaviour: Policy,
    wrappers: Sequence[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]],
    seed: int,
    max_steps: int,
    progress: bool,
) -> int:
    """Step the population through its lives under ``behaviour``; return its sessions."""
    sessions = 0

    def log_only_the_population(finished: np.ndarray) -> None:
        # Slots whose population user has finished hold new users: do not log them.
        logged.log_mask = ~finished

    acting: gym.vector.VectorEnv = logged
    if isinstance(behaviour, MixedPolicy):
        behaviour = _RecordingComponents(behaviour, logged)
    for wrap in wrappers:
        acting = wrap(acting)
    for info, live, _, _ in population_steps(
        acting,
        behaviour,
        seed,
        max_steps=max_steps,
        progress=progress,
        description=f"collect {behaviour.name}",
        before_step=log_only_the_population,
    ):
        sessions += int(np.count_nonzero(live & (info["step_in_session"] == 0)))
    return sessions


def collect_logs(
    env_id: str = "loe_gym/Engagement-v0",
    *,
    num_users: int,
    path: str | os.PathLike[str],
    policy: str | Policy = "mixed",
    seed: int = 0,
    horizon_days: int | None = None,
    privileged: bool | None = None,
    rows_per_group: int = 65_536,
    overwrite: bool = False,
    progress: bool = True,
    env_options: Mapping[str, Any] | None = None,
    max_steps: int = 100_000,
    wrappers: Sequence[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]] = (),
    resume: bool = False,
) -> LogSummary:
    """Run ``num_users`` users of ``env_id`` through their whole lives and log every step.

    Args:
        env_id: a registered loe_gym environment.
        num_users: the population size (users simulated side by side).
        path: the log directory (see `loe_gym.logs.ParquetLogWriter`).
        policy: a reference policy of `agents.reference_policies.REFERENCE_POLICIES`, ``"mixed"``
            or ``"diverse"`` (per-user mixture weights; see `MixedPolicy`); its name goes
            into the log's ``policy`` column. Or a `Policy` object (a deployed agent).
        seed: seeds the population, the candidates, the responses and the policy; the
            same seed writes the same log.
        horizon_days: days per user life; None keeps the environment's default.
        privileged: add the privileged columns (None: if the simulator has them).
        rows_per_group: rows per Parquet part file.
        overwrite: replace an existing log at ``path``.
        progress: show a progress bar over finished users.
        env_options: further options of the environment (``simulator_kwargs``, ...).
        max_steps: safety cap on vector steps (raises if reached).
        wrappers: vector wrappers between the logged environment and the policy (e.g.
            `agents.training.predictor_wrappers` for an agent on the predictor); the
            log records what the environment did, whatever the wrappers add.
        resume: continue the unfinished log at ``path`` (a killed run) written with the
            same arguments: the run is replayed and only the rows its parts lack are
            written, so the log ends as an uninterrupted run's (`loe_gym.logs.resume`).

    Returns:
        A `LogSummary` of the rows, users and sessions written.
    """
    num_users = check_positive_int("num_users", num_users)
    max_steps = check_positive_int("max_steps", max_steps)
    options = _with_horizon(dict(env_options or {}), horizon_days)
    # Build the policy before the log: a bad name or catalog creates nothing.
    _logging_behaviour(policy, seed)
    env = gym.make_vec(
        env_id, num_envs=num_users, vectorization_mode="vector_entry_point", **options
    )
    core: RecommendationVectorEnv = env.unwrapped  # type: ignore[assignment]
    privileged = _privileged(privileged, core)
    started = time.perf_counter()
    # What makes the rows: a resumed log must have been started with the same.
    name = policy if isinstance(policy, str) else repr(policy)
    run = {"env_id": env_id, "env_options": options, "num_users": num_users}
    run |= {"policy": name, "seed": seed, "max_steps": max_steps}
    try:
        behaviour = _logging_behaviour(policy, seed, core)
        logged = _open_log(
            core, behaviour, path, rows_per_group, overwrite, privileged, run, resume
        )
    except BaseException:
        env.close()
        raise
    try:
        sessions = _log_population(logged, behaviour, wrappers, seed, max_steps, progress)
    finally:
        logged.close()
    return LogSummary(
        path=Path(path),
        policy=behaviour.name,
        rows=logged.writer.rows_written,
        users=num_users,
        sessions=sessions,
        seconds=time.perf_counter() - started,
    )


class CollectShardTask:
    """One shard of a sharded collection (`collect_sharded`): a closed log of ``size`` users
    at ``path``; picklable, so it runs as a Ray task too."""

    def __init__(self, env_id: str, size: int, path: Path, seed: int, **options: Any) -> None:
        self.env_id, self.size, self.path, self.seed, self.options = (
            env_id,
            size,
            path,
            seed,
            options,
        )

    def __call__(self, envs: Any = None, progress: bool = False) -> LogSummary:
        return collect_logs(
            self.env_id,
            num_users=self.size,
            path=self.path,
            seed=self.seed,
            overwrite=True,
            progress=progress,
            **self.options,
        )


def collect_sharded(
    env_id: str = "loe_gym/Engagement-v0",
    *,
    num_users: int,
    path: str | os.PathLike[str],
    users_per_shard: int,
    runner: Any = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> LogSummary:
    """`collect_logs` of a population simulated as shards of ``users_per_shard`` users
    (`agents.populations`: shard ``k`` seeded ``shard_seed(seed, k)``), run by ``runner``
    (in turn, or as Ray tasks) and merged (`loe_gym.logs.merging.merge_logs`): the same
    rows wherever the shards run. ``options``: `collect_logs`' other arguments."""
    import shutil

    from agents.populations import LocalRunner, shard_seed, shard_sizes
    from loe_gym.logs.merging import merge_logs, prepare_log_directory

    if options.get("resume"):
        raise ValueError(
            "--resume continues a log written in one piece; a sharded collection "
            "(--collect.users-per-shard) starts again with --overwrite."
        )
    options.pop("resume", None)
    destination = Path(path)
    staging = destination.parent / f".{destination.name}.shards"
    started = time.perf_counter()
    sizes = shard_sizes(num_users, users_per_shard)
    tasks = [
        CollectShardTask(env_id, size, staging / f"shard-{k:05d}", shard_seed(seed, k), **options)
        for k, size in enumerate(sizes)
    ]
    prepare_log_directory(destination, overwrite)  # refused now, not after the work
    shards = (runner or LocalRunner()).map(tasks, progress=progress)
    run = {"num_users": num_users, "seed": seed, "users_per_shard": users_per_shard}
    rows = merge_logs([task.path for task in tasks], destination, run=run, overwrite=True)
    shutil.rmtree(staging)
    return LogSummary(
        path=destination,
        policy=shards[0].policy,
        rows=rows,
        users=num_users,
        sessions=sum(shard.sessions for shard in shards),
        seconds=time.perf_counter() - started,
    )
