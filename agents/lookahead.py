"""The lookahead oracle: rollouts of the true simulator on top of reference policies.

Two rollout steps, both through forks of the env (`loe_gym.envs.forking`) with common
random numbers, so paired differences measure the choice, not the noise:

1. **Policy switching** (Chang, Givan & Chong's parallel rollout). A portfolio (by
   default every reference policy that runs on the simulator and the rankings by each
   public catalog feature, plus any ``extra`` policies such as the agents it is judged
   against) is ranked on a pilot population of its own; the ``keep`` best stay, the best is each new user's default.
   When a user's life starts (and every ``switch_every`` decisions, if set), the rest
   of its life is simulated ``switch_samples`` times under each kept policy; the user
   leaves the policy it follows only where the mean paired gain exceeds ``z`` standard
   errors. So it never trails the portfolio's best by more than the rollouts' noise.
2. **Action improvement** (Bertsekas' rollout algorithm, ``top_k > 1``). At each
   decision the followed policy's ``top_k`` candidates are each shown first, then that
   policy is followed for ``horizon`` steps; again a candidate replaces the policy's own
   choice only on a confident paired gain.

Works on any simulator that follows the contract: forking needs only states indexed by
users (`loe_gym.simulator.take_users`), and rollouts read only the env's reward (the
oracle maximises whatever the env rewards). Costs are in `agents.configs.LookaheadConfig`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agents.configs import LookaheadConfig
from agents.evaluation import population_steps
from agents.ranking import top_slates
from agents.reference_policies import (
    REFERENCE_POLICIES,
    Policy,
    make_policy,
    public_feature_policies,
)
from loe_gym import RecommendationVectorEnv

__all__ = ["LookaheadOracle", "PolicySwitch", "paired_choice", "portfolio"]

# Not in the automatic portfolio: the oracle itself, and policies that need more than the
# env to be built (popularity needs logs). Random stays: on a simulator where no other
# policy avoids a trap it can be the best, and every comparison holds it.
_NOT_IN_PORTFOLIO = frozenset({"lookahead_oracle", "popularity"})


def portfolio(
    names: Sequence[str], env: RecommendationVectorEnv, obs: Mapping[str, np.ndarray]
) -> tuple[list[Any], dict[str, str]]:
    """The policies named (``("auto",)``: every reference policy, and the
    rankings by each public catalog feature, highest and lowest first) that act on
    ``env``, and ``{name: why}`` for the automatic ones that cannot (a missing privileged
    interface, a missing catalog feature). A policy named explicitly must work."""
    automatic = tuple(names) == ("auto",)
    chosen = list(names)
    if automatic:
        chosen = [n for n in REFERENCE_POLICIES if n not in _NOT_IN_PORTFOLIO]
        chosen += [p.name for p in public_feature_policies(env.catalog) if p.name not in chosen]
    policies, skipped = [], {}
    for name in chosen:
        try:
            policy: Any = make_policy(name)
            if callable(getattr(policy, "check", None)):
                policy.check(env)
            policy.act(obs, env)
        except (TypeError, KeyError, ValueError) as error:
            if not automatic:
                raise ValueError(
                    f"The lookahead's policy {name!r} cannot act here: {error}"
                ) from error
            skipped[name] = str(error)
            continue
        policies.append(policy)
    return policies, skipped


def _reads_predictor(policy: Any) -> bool:
    return bool(getattr(policy, "uses_predictor", False))


class PolicySwitch:
    """Each env slot follows one policy of ``policies`` (``assignment (slots,) int``)."""

    def __init__(self, policies: Sequence[Any], assignment: np.ndarray) -> None:
        self.policies, self.assignment = list(policies), np.asarray(assignment)

    def _merged(self, method: str, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        merged: np.ndarray | None = None
        for index in np.unique(self.assignment):
            rows = self.assignment == index
            values = np.asarray(getattr(self.policies[index], method)(obs, env))
            if merged is None:
                merged = values.copy()
            merged[rows] = values[rows]
        assert merged is not None
        return merged

    def act(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        return self._merged("act", obs, env)

    def scores(self, obs: Mapping[str, np.ndarray], env: Any) -> np.ndarray:
        return self._merged("scores", obs, env)


def paired_choice(returns: np.ndarray, z: float) -> np.ndarray:
    """``(users,) int`` the option to take from rollout ``returns``.

    Args:
        returns: ``(users, samples, options)`` rollout returns; column 0 is the default.
        z: an option wins only where its mean paired gain over column 0 exceeds
            ``z`` standard errors (over samples); the best such option is taken, else 0.
            ``z ≥ 1e12`` always keeps column 0.
    """
    gain = returns - returns[..., :1]
    samples = returns.shape[1]
    mean = gain.mean(axis=1)
    stderr = gain.std(axis=1, ddof=1) / np.sqrt(samples)
    # A gain without spread over samples (a deterministic stretch) still passes any
    # practical z, but z ≥ 1e12 then never switches: the default exactly.
    better = mean > z * np.maximum(stderr, 1e-11 * np.abs(mean))
    better[:, 0] = False
    best = np.where(better, mean, -np.inf).argmax(axis=1)
    return np.where(better.any(axis=1), best, 0)


class LookaheadOracle:
    """A privileged upper-bound policy: rollout improvement of a portfolio of policies.

    Args:
        config: settings (`agents.configs.LookaheadConfig`).
        base: one policy to improve on instead of the portfolio (``config.portfolio``).
        extra: policies the portfolio holds besides ``config.portfolio``, e.g. the trained
            agents it is judged against, so that it improves on them too.
        wrappers: the vector wrappers the evaluated env applies (e.g. the predictor's
            observations, `agents.training.predictor_wrappers`): with them, ``extra``
            policies that read the predictor join the pilot ranking. Forks carry no
            predictor history, so such a policy is never rolled out: where it ranks
            first the oracle follows it for every user (no switching, no action
            rollouts); otherwise it is dropped.
    """

    name = "lookahead_oracle"
    privileged = True

    def __init__(
        self,
        config: LookaheadConfig | None = None,
        base: Policy | None = None,
        extra: Sequence[Policy] = (),
        wrappers: Sequence[Callable[[Any], Any]] = (),
    ) -> None:
        self.config = config or LookaheadConfig()
        self.policies: list[Any] = [base] if base is not None else []
        self.extra = list(extra)
        """Policies the portfolio holds besides ``config.portfolio`` (those that read the
        predictor only with ``wrappers``)."""
        self.wrappers = list(wrappers)
        """The evaluated env's vector wrappers, for the pilot of predictor policies."""
        self.skipped: dict[str, str] = {}
        """Automatic portfolio policies that cannot act on the env, with the reason."""
        self.switched = 0
        """Decisions (user steps) where a tried candidate replaced the policy's choice."""
        self.decisions = 0
        """Decisions taken (user steps of users that acted)."""
        self.policy_switches = 0
        """Users moved to another portfolio policy by a switching rollout."""
        self.pilot_means: dict[str, float] = {}
        """Each portfolio policy's mean reward per pilot user (`rank`)."""
        self._follow = np.zeros(0, np.int64)  # (num_envs,) index of the followed policy
        self._age = np.zeros(0, np.int64)  # (num_envs,) decisions since its last choice

    def __repr__(self) -> str:
        return f"LookaheadOracle({self.config!r})"

    @property
    def uses_predictor(self) -> bool:
        """Evaluated on the wrapped env (the predictor's observations) where it follows a
        policy that reads them (before `prepare`: where it may)."""
        if self.policies:
            return _reads_predictor(self.policies[0])
        return bool(self.wrappers) and any(_reads_predictor(p) for p in self.extra)

    def prepare(self, env: RecommendationVectorEnv, obs: Mapping[str, np.ndarray]) -> None:
        """Build and rank the portfolio on ``env``'s simulator (done by the first `act`;
        call it before an evaluation to know whether the oracle needs the wrapped env)."""
        cfg = self.config
        policies, self.skipped = portfolio(cfg.portfolio, env, obs)
        policies += [p for p in self.extra if self.wrappers or not _reads_predictor(p)]
        ranked = self.rank(env, policies)
        # A predictor policy cannot act in forks: followed alone where it is best.
        rollable = [p for p in ranked if not _reads_predictor(p)]
        self.policies = ranked[:1] if _reads_predictor(ranked[0]) else rollable[: cfg.keep]

    def followed(self) -> list[str]:
        """The name of the policy each slot follows now."""
        return [self.policies[i].name for i in self._follow]

    def act(self, obs: Mapping[str, np.ndarray], env: RecommendationVectorEnv) -> np.ndarray:
        cfg = self.config
        if not self.policies:
            self.prepare(env, obs)
        acting = ~env.needs_reset
        active = np.flatnonzero(acting)
        due = np.flatnonzero(self._due(env) & acting)
        if due.size and len(self.policies) > 1:
            self._switch(obs, env, due)
        self._age += 1
        follow = PolicySwitch(self.policies, self._follow)
        choice = np.asarray(follow.act(obs, env))
        k = min(cfg.top_k, env.config.num_candidates - env.config.slate_size + 1)
        if active.size == 0 or k < 2 or _reads_predictor(self.policies[0]):
            return choice
        first = self.first_actions(follow.scores(obs, env), choice, k)[active]
        slots = np.repeat(self._follow[active], cfg.samples * k)
        returns = self.rollouts(env, obs, active, k, cfg.samples, slots, first, cfg.horizon)
        pick = paired_choice(returns, cfg.z)
        self.decisions += active.size
        self.switched += int(np.count_nonzero(pick))
        actions = choice.copy()
        actions[active] = first[np.arange(active.size), pick]
        return actions

    def rank(self, env: RecommendationVectorEnv, policies: Sequence[Any]) -> list[Any]:
        """``policies`` best first by their mean reward over whole lives of a pilot
        population: ``pilot_users`` new users of ``env``'s simulator drawn with
        ``pilot_seed`` (not the evaluated users, so no result depends on what ran
        before). The best is every new user's default; ``keep`` of them stay."""
        cfg = self.config
        if len(policies) < 2:
            return list(policies)
        # A fork only to get an env of the same simulator and options: reset replaces its users.
        pilot = env.fork(np.resize(np.arange(env.num_envs), cfg.pilot_users))
        wrapped = pilot
        for wrap in self.wrappers:
            wrapped = wrap(wrapped)
        means = []
        for policy in policies:
            total = np.zeros(pilot.num_envs)
            steps = population_steps(
                wrapped if _reads_predictor(policy) else pilot, policy, cfg.pilot_seed
            )
            for _, live, _, reward in steps:
                total += np.where(live, reward, 0.0)
            means.append(total.mean())
        self.pilot_means = {p.name: float(m) for p, m in zip(policies, means, strict=True)}
        return [policies[i] for i in np.argsort(-np.asarray(means), kind="stable")]

    def _due(self, env: RecommendationVectorEnv) -> np.ndarray:
        """``(num_envs,) bool`` slots whose policy is chosen now: the first step of a
        slot's first user since the env's reset, or ``switch_every`` decisions since its
        last choice. Every new user starts from the default policy; one that refills a
        slot after its first user's life ended (next-step autoreset) keeps it, as an
        evaluation counts only the first users (`agents.evaluation.population_steps`)."""
        if self._follow.size != env.num_envs:
            self._follow = np.zeros(env.num_envs, np.int64)
            self._age = np.zeros(env.num_envs, np.int64)
        new = env._episode_steps == 0
        self._follow[new] = 0
        self._age[new] = 0
        every = self.config.switch_every
        due = new & (env._episode == 0)
        return due | (self._age >= every) if every > 0 else due

    def _switch(
        self,
        obs: Mapping[str, np.ndarray],
        env: RecommendationVectorEnv,
        users: np.ndarray,
    ) -> None:
        """Move ``users`` to the portfolio policy their rollouts favour (`paired_choice`)."""
        cfg, count = self.config, len(self.policies)
        slots = np.tile(np.arange(count), users.size * cfg.switch_samples)
        horizon = cfg.switch_horizon or 10**9
        returns = self.rollouts(env, obs, users, count, cfg.switch_samples, slots, None, horizon)
        self._age[users] = 0
        current = self._follow[users]
        # Column 0 is the policy each user follows now, then the others in index order.
        others = np.arange(count)[None, :].repeat(users.size, 0)
        others = others[others != current[:, None]].reshape(users.size, count - 1)
        order = np.concatenate([current[:, None], others], axis=1)
        ordered = np.take_along_axis(returns, order[:, None, :], axis=2)
        pick = order[np.arange(users.size), paired_choice(ordered, cfg.z)]
        self.policy_switches += int(np.count_nonzero(pick != current))
        self._follow[users] = pick

    @staticmethod
    def first_actions(scores: np.ndarray, choice: np.ndarray, k: int) -> np.ndarray:
        """``(users, k)`` (or ``(users, k, slate_size)``) first actions: the policy's
        ``choice`` then, by descending score, slates led by each next candidate (the
        rest of a slate: the best other candidates)."""
        users, num_candidates = scores.shape
        rows = np.arange(users)[:, None]
        lead = choice if choice.ndim == 1 else choice[:, 0]
        ranked = np.argsort(-scores, axis=1, kind="stable")
        others = ranked[ranked != lead[:, None]].reshape(users, num_candidates - 1)[:, : k - 1]
        if choice.ndim == 1:
            return np.concatenate([choice[:, None], others], axis=1)
        slate_size = choice.shape[1]
        slates = [choice]
        for j in range(k - 1):
            forced = scores.astype(np.float64, copy=True)
            forced[rows[:, 0], others[:, j]] = np.inf
            slates.append(top_slates(forced, slate_size))
        return np.stack(slates, axis=1)

    def rollouts(
        self,
        env: RecommendationVectorEnv,
        obs: Mapping[str, np.ndarray],
        users: np.ndarray,
        copies: int,
        samples: int,
        slot_policy: np.ndarray,
        first: np.ndarray | None,
        horizon: int,
    ) -> np.ndarray:
        """``(len(users), samples, copies)`` sums of the env's reward over at most
        ``horizon`` steps of forks of ``users``; slot (u, s, c) follows portfolio policy
        ``slot_policy[slot]`` after the first action ``first[u, c]`` (None: its own)."""
        cfg = self.config
        seed = np.random.SeedSequence([cfg.seed, zlib.crc32(env.candidates.tobytes())])
        groups = np.repeat(users, samples)
        forked = env.fork(groups, copies=copies, seed=seed.generate_state(1)[0])
        policy = PolicySwitch(self.policies, slot_policy)
        if first is None:
            rows = np.repeat(groups, copies)
            actions = policy.act({key: np.asarray(v)[rows] for key, v in obs.items()}, forked)
        else:  # slot (u, s, c): user u, sample s, first action c (copies adjacent)
            actions = np.repeat(first, samples, axis=0).reshape(forked.num_envs, *first.shape[2:])
        total = np.zeros(forked.num_envs)
        counting = np.ones(forked.num_envs, bool)  # the rollout still sums this slot
        ended = np.zeros(forked.num_envs, bool)  # its life ended within the rollout
        start_day = forked.day.copy()
        end_day = start_day.copy()
        for _ in range(horizon):
            forked_obs, reward, terminated, truncated, _ = forked.step(actions)
            # A finished life's slot holds a new user next: count its own reward only.
            total += np.where(counting, reward, 0.0)
            ended |= counting & (terminated | truncated)
            counting &= ~(terminated | truncated)
            end_day = np.where(counting, forked.day, end_day)
            if first is not None and cfg.days:
                counting &= forked.day < start_day + cfg.days
            if not counting.any():
                break
            actions = policy.act(forked_obs, forked)
        if first is not None and cfg.terminal == "days":
            total += self.days_left_value(forked, total, end_day - start_day, end_day, ~ended)
        return total.reshape(users.size, samples, copies)

    @staticmethod
    def days_left_value(
        env: RecommendationVectorEnv,
        total: np.ndarray,
        elapsed: np.ndarray,
        end_day: np.ndarray,
        alive: np.ndarray,
    ) -> np.ndarray:
        """``(slots,)`` the ``days`` terminal estimate: days left before the horizon at
        the rollout's end times the rollouts' watch per elapsed day (a copy whose gaps
        ran longer has fewer days left); 0 where the life ended or no day elapsed."""
        days = np.where(alive, elapsed, 0)
        if not days.any():
            return np.zeros_like(total)
        per_day = total[alive].sum() / days.sum()
        left = np.maximum(env.config.horizon_days - end_day, 0)
        return np.where(alive, per_day * left, 0.0)


def include_rivals(
    policies: Sequence[Any],
    wrappers: Sequence[Any],
    env_id: str,
    env_options: Mapping[str, Any] | None,
) -> None:
    """Give each lookahead oracle among ``policies`` every policy it is judged against
    that its automatic portfolio lacks (the agents, the predictor and popularity
    baselines) and the env's ``wrappers``, so that it ranks those that read the
    predictor too: an upper bound on all of them, not only on the reference policies.
    Where one reads the predictor, the oracle ranks its portfolio now (on ``env_id``), so
    that it is evaluated on the wrapped env only if it follows such a policy."""
    import gymnasium as gym

    from agents.reference_policies import is_policy_name

    for oracle in policies:
        if isinstance(oracle, LookaheadOracle) and not oracle.policies:
            oracle.extra = [
                p
                for p in policies
                if not isinstance(p, LookaheadOracle) and not is_policy_name(p.name)
            ]
            oracle.wrappers = list(wrappers)
            if oracle.uses_predictor:
                env = gym.make_vec(
                    env_id, num_envs=1, vectorization_mode="vector_entry_point",
                    **dict(env_options or {}),
                )  # fmt: skip
                obs, _ = env.reset(seed=oracle.config.pilot_seed)
                oracle.prepare(env.unwrapped, obs)  # type: ignore[arg-type]
                env.close()
