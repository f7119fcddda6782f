"""Populations split into shards, run in this process or as Ray tasks, merged exactly.

A population (one seed of `agents.configs.EvaluationConfig`) of ``num_users`` users is
simulated as shards of ``users_per_shard`` users (0: one shard). Shard ``k`` of seed ``s``
is seeded by `shard_seed` (``s`` itself for shard 0, so one shard is the unsharded
population) and the shards' totals are merged in shard order. A policy must act on a shard
as if it were the first it saw: one that keeps state between populations (a random
generator) restarts it in ``start_population(seed)``, which `population_steps` calls. The
metrics are then a function of (seeds, ``num_users``, ``users_per_shard``) alone: the same in
one process, where one policy object runs the shards in turn, as over any number of Ray
workers, where each task gets a copy.
Millions of users are a matter of adding workers (`RayRunner`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

__all__ = ["LocalRunner", "RayRunner", "ShardTask", "make_runner", "shard_seed", "shard_sizes"]


def shard_sizes(num_users: int, users_per_shard: int = 0) -> list[int]:
    """Users of each shard: ``users_per_shard`` each, the remainder last (0: one shard)."""
    if users_per_shard <= 0 or users_per_shard >= num_users:
        return [num_users]
    full, rest = divmod(num_users, users_per_shard)
    return [users_per_shard] * full + ([rest] if rest else [])


def shard_seed(seed: int, index: int) -> int:
    """The reset seed of shard ``index`` of the population ``seed`` (``seed`` for shard 0)."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


Task = Callable[..., Any]
"""A picklable unit of work: ``task(envs=None, progress=False)`` (``envs``: a cache of
environments by size that a runner may share between its tasks)."""


class ShardTask:
    """One shard of one population under one policy: picklable, so it runs anywhere.

    Calling it returns the shard's `agents.evaluation.PopulationTotals` (detached from
    its environment). ``wrappers`` apply when the policy reads the predictor's
    observations (``policy.uses_predictor``)."""

    def __init__(
        self,
        env_id: str,
        env_options: Mapping[str, Any] | None,
        policy: Any,
        wrappers: Sequence[Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv]],
        seed: int,
        size: int,
        max_steps: int = 100_000,
    ) -> None:
        self.env_id, self.env_options = env_id, dict(env_options or {})
        self.policy, self.wrappers = policy, tuple(wrappers)
        self.seed, self.size, self.max_steps = seed, size, max_steps

    def __call__(self, envs: dict[int, Any] | None = None, progress: bool = False) -> Any:
        """Run the shard; ``envs`` caches environments by size between calls."""
        from agents.evaluation import population_totals

        cache = {} if envs is None else envs
        if self.size not in cache:
            cache[self.size] = gym.make_vec(
                self.env_id,
                num_envs=self.size,
                vectorization_mode="vector_entry_point",
                **self.env_options,
            )
        core = cache[self.size].unwrapped
        target: gym.vector.VectorEnv = core
        if getattr(self.policy, "uses_predictor", False):
            for wrap in self.wrappers:
                target = wrap(target)
        totals = population_totals(
            target, self.policy, self.seed, progress=progress, max_steps=self.max_steps
        )
        if envs is None:
            cache[self.size].close()
        return totals.detached()


class LocalRunner:
    """Runs shard tasks one after the other in this process."""

    def map(self, tasks: Sequence[Task], progress: bool = False) -> list[Any]:
        envs: dict[int, Any] = {}
        try:
            return [task(envs, progress) for task in tasks]
        finally:
            for env in envs.values():
                env.close()


class RayRunner:
    """Runs shard tasks as Ray tasks, one CPU each, and returns their results in order.

    Args:
        address: an existing Ray cluster (``"auto"``, ``"10.0.0.1:6379"``); ``None`` starts
            a local Ray instance (or uses the one already started in this process).
    """

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as error:
            raise ImportError(
                f'--ray needs Ray ({error}): pip install -e ".[rllib]", best in a virtual '
                "environment of its own (Ray pins gymnasium 1.2.2)."
            ) from error
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)

    def map(self, tasks: Sequence[Task], progress: bool = False) -> list[Any]:
        remote = self.ray.remote(num_cpus=1)(_run_task)
        pending = [remote.remote(task) for task in tasks]
        order = {ref: i for i, ref in enumerate(pending)}
        results: list[Any] = [None] * len(pending)
        waiting = list(pending)
        with tqdm(total=len(pending), desc="shards", disable=not progress) as bar:
            while waiting:
                done, waiting = self.ray.wait(waiting, num_returns=1)
                for ref in done:
                    results[order[ref]] = self.ray.get(ref)
                    bar.update(1)
        return results


def _run_task(task: Task) -> Any:
    return task()


def make_runner(ray: bool = False, address: str | None = None) -> LocalRunner | RayRunner:
    """`RayRunner` when ``ray`` or an ``address`` is given, else `LocalRunner`."""
    return RayRunner(address) if ray or address else LocalRunner()
