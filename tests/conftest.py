"""Shared fixtures and helpers for the environment, adapter, checker and property tests.

Sizes are tiny on purpose (a 50-item catalog, a few users, a 2-day horizon): the
dynamics under test do not depend on the scale, and the whole set must stay fast.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import loe_gym

ENV_IDS = sorted(loe_gym.ENVIRONMENTS)
"""Every registered id; the RecSim ports are covered as soon as they are registered."""

ENGAGEMENT_IDS = ("loe_gym/Engagement-v0", "loe_gym/EngagementSlate-v0")

NUM_ITEMS = 50
"""Catalog size for tests of the engagement model."""

REGISTRY_NUM_ITEMS = 200
"""Catalog size for tests over every registered id. The interest-evolution port has 20
clusters: with 50 items some clusters are empty, a one-hot feature column is constant
and Gymnasium warns that a Box has ``low == high``. 200 items fill every cluster."""

SMALL = {"simulator_kwargs": {"num_items": NUM_ITEMS}, "horizon_days": 2}
"""Options of a small engagement environment whose users finish episodes quickly."""


def registry_options(**extra: Any) -> dict[str, Any]:
    """Small options valid for every registered id (all simulators take ``num_items``)."""
    return {"simulator_kwargs": {"num_items": REGISTRY_NUM_ITEMS}, "horizon_days": 2, **extra}


@pytest.fixture(scope="module")
def one_torch_thread() -> Any:
    """One torch thread for a module of tiny networks: with several, torch spends its time
    synchronising them (seconds instead of milliseconds on a busy 2-core machine). Use it
    with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=ENV_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=ENGAGEMENT_IDS)
def engagement_id(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------------------- actions


def action_shape(env: Any) -> tuple[int, int, int]:
    """``(num_users, num_candidates, slate_size)`` of a single or vector environment."""
    config = env.unwrapped.config
    num_users = getattr(env.unwrapped, "num_envs", 1)
    return num_users, config.num_candidates, config.slate_size


def random_slots(
    rng: np.random.Generator, num_users: int, num_candidates: int, slate_size: int
) -> np.ndarray:
    """Valid batched actions: ``(num_users,)`` indices, or ``(num_users, slate_size)``
    distinct indices per row, drawn from ``rng`` (not from the action space, so that two
    environments under test receive exactly the same actions)."""
    keys = rng.random((num_users, num_candidates))
    slots = np.argsort(keys, axis=1)[:, :slate_size].astype(np.int64)
    return slots[:, 0] if slate_size == 1 else slots


def random_single_action(rng: np.random.Generator, num_candidates: int, slate_size: int) -> Any:
    """One user's valid action: an int, or an ``(slate_size,)`` array of distinct indices."""
    slots = random_slots(rng, 1, num_candidates, slate_size)
    return int(slots[0]) if slate_size == 1 else slots[0]


# ------------------------------------------------------------------------- rollouts


def rollout_vector(env: Any, seed: int, num_steps: int, action_seed: int = 0) -> list[Any]:
    """Reset ``env`` with ``seed``, step it ``num_steps`` times with seeded random actions.

    Returns ``[(obs, info), (obs, reward, terminated, truncated, info), ...]``, deep-copied.
    """
    num_users, num_candidates, slate_size = action_shape(env)
    rng = np.random.default_rng(action_seed)
    records: list[Any] = [copy.deepcopy(env.reset(seed=seed))]
    for _ in range(num_steps):
        actions = random_slots(rng, num_users, num_candidates, slate_size)
        records.append(copy.deepcopy(env.step(actions)))
    return records


def rollout_single(env: Any, seed: int, num_steps: int, action_seed: int = 0) -> list[Any]:
    """Like `rollout_vector` for a single env; after a finished episode it calls
    ``reset()`` without a seed (recorded as ``("reset", obs, info)``)."""
    _, num_candidates, slate_size = action_shape(env)
    rng = np.random.default_rng(action_seed)
    records: list[Any] = [copy.deepcopy(env.reset(seed=seed))]
    for _ in range(num_steps):
        action = random_single_action(rng, num_candidates, slate_size)
        step = env.step(action)
        records.append(copy.deepcopy(step))
        if step[2] or step[3]:
            records.append(("reset", *copy.deepcopy(env.reset())))
    return records


# ------------------------------------------------------------------------ equality


def tree_equal(a: Any, b: Any) -> bool:
    """Exact deep equality of nested dicts / tuples / lists / arrays (object arrays too)."""
    return not tree_differences(a, b)


def tree_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two nested structures differ (empty when they are equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for key in a for d in tree_differences(a[key], b[key], f"{path}[{key!r}]")]
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in tree_differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, np.ndarray) and a.dtype == object:
        b = np.asarray(b, dtype=object)
        if a.shape != b.shape:
            return [f"{path}: shapes {a.shape} != {b.shape}"]
        return [
            d
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel(), strict=True))
            for d in tree_differences(x, y, f"{path}[{i}]")
        ]
    if a is None or b is None:
        return [] if a is b else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, str) or isinstance(b, str):
        return [] if a == b else [f"{path}: {a!r} != {b!r}"]
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return [f"{path}: shapes {x.shape} != {y.shape}"]
    if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f" and y.dtype.kind == "f"):
        return [f"{path}: {x!r} != {y!r}"]
    return []


def assert_tree_equal(a: Any, b: Any) -> None:
    differences = tree_differences(a, b)
    assert not differences, "differences:\n" + "\n".join(differences[:10])


def row(tree: Any, index: int) -> Any:
    """Index ``index`` of every batched array in a (nested) dict, as the single env does."""
    if isinstance(tree, Mapping):
        return {key: row(value, index) for key, value in tree.items() if not key.startswith("_")}
    return tree[index]


def make_vector(num_envs: int = 4, env_id: str = "loe_gym/Engagement-v0", **options: Any) -> Any:
    """``gym.make_vec`` with the small options, overridable by ``options``."""
    merged = {**SMALL, **options}
    return gym.make_vec(env_id, num_envs=num_envs, **merged)
