"""Populations as shards (agents/populations.py) and the options of the Ray backends, in
one process; tests/test_ray.py runs the same on Ray."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from conftest import make_vector
from hypothesis import given
from hypothesis import strategies as st

from agents.configs import TrainConfig, TrainRunConfig
from agents.evaluation import PopulationTotals, evaluate, population_steps
from agents.populations import make_runner, shard_seed, shard_sizes
from agents.reference_policies import make_policy

SMALL = {"simulator_kwargs": {"num_items": 60}, "horizon_days": 2}


@given(st.integers(1, 10_000), st.integers(0, 12_000))
def test_shards_cover_the_population_once(num_users: int, users_per_shard: int) -> None:
    sizes = shard_sizes(num_users, users_per_shard)
    assert sum(sizes) == num_users and min(sizes) >= 1
    if 0 < users_per_shard < num_users:
        assert max(sizes) == users_per_shard and sizes[:-1] == [users_per_shard] * (len(sizes) - 1)
    else:
        assert sizes == [num_users]


def test_shard_zero_is_the_population_seed_and_the_others_differ() -> None:
    seeds = [shard_seed(7, index) for index in range(50)]
    assert seeds[0] == 7 and len(set(seeds)) == 50
    assert shard_seed(7, 3) == shard_seed(7, 3) != shard_seed(8, 3)


def _shard(policy: str, seed: int, size: int) -> PopulationTotals:
    env = make_vector(size, **SMALL)
    totals = PopulationTotals(env.unwrapped)
    for info, live, _, _ in population_steps(env, make_policy(policy), seed):
        totals.add(info, live)
    return totals


def test_a_sharded_population_is_its_shards_run_apart_and_merged() -> None:
    result = evaluate("loe_gym/Engagement-v0", ["random"], num_users=50, seeds=(4,),
                      env_options=SMALL, users_per_shard=20, progress=False)  # fmt: skip
    parts = [_shard("random", shard_seed(4, i), size) for i, size in enumerate((20, 20, 10))]
    merged = result.results["random"][0]
    np.testing.assert_array_equal(
        merged.watch, np.concatenate([part.totals["watch"] for part in parts])
    )
    np.testing.assert_array_equal(merged.item_impressions, sum(p.item_impressions for p in parts))
    # per-day means are over the whole population, not averaged over shards
    np.testing.assert_allclose(merged.daily_watch, sum(p.daily_watch for p in parts) / 50)
    expected_lengths = np.concatenate([np.concatenate(p.session_lengths) for p in parts])
    np.testing.assert_array_equal(merged.session_lengths, expected_lengths)


def test_one_shard_is_the_unsharded_population_and_each_seed_stands_alone() -> None:
    options = dict(num_users=30, env_options=SMALL, progress=False)
    whole = evaluate("loe_gym/Engagement-v0", ["random", "myopic"], seeds=(0, 1), **options)
    one_shard = evaluate("loe_gym/Engagement-v0", ["random", "myopic"], seeds=(0, 1),
                         users_per_shard=30, **options)  # fmt: skip
    assert whole.to_dict() == one_shard.to_dict()
    # The random policy's draws restart for every population: seed 1 alone gives seed 1's.
    alone = evaluate("loe_gym/Engagement-v0", ["random"], seeds=(1,), **options)
    np.testing.assert_array_equal(
        alone.results["random"][0].watch, whole.results["random"][1].watch
    )
    direct = _shard("myopic", 0, 30)
    np.testing.assert_array_equal(whole.results["myopic"][0].watch, direct.totals["watch"])


def test_ray_options_name_the_extra_when_ray_is_missing(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[rllib\]"'):
        make_runner(ray=True)
    assert type(make_runner()).__name__ == "LocalRunner"
    from agents.rllib_backend import ppo_config

    agent = TrainConfig(backend="rllib", day_discount=1.0, encoder="none")
    with pytest.raises(ImportError, match=r"backend 'rllib' needs Ray RLlib"):
        ppo_config(TrainRunConfig(agent=agent))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "rllib", "day_discount": 1.0, "algorithm": "dqn"}, r"trains ppo, not"),
        ({"num_env_runners": 2}, r"needs backend='rllib'"),
        ({"backend": "rllib", "day_discount": 1.0, "num_env_runners": 3, "num_users": 256},
         r"num_users=256 does not split evenly over num_env_runners=3.*e\.g\. 255"),
        ({"backend": "ray"}, r"backend must be one of 'sb3', 'rllib', got 'ray'"),
    ],
)  # fmt: skip
def test_backend_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_an_rllib_run_cannot_resume(tmp_path: Any) -> None:
    from agents.training import train_agent

    agent = TrainConfig(backend="rllib", day_discount=1.0, encoder="none")
    with pytest.raises(ValueError, match="saves the final agent only"):
        train_agent(TrainRunConfig(agent=agent), tmp_path / "run", resume=True)
    assert not (tmp_path / "run").exists()


def _rows(path: Any) -> Any:
    from loe_gym import read_log

    return read_log(path).to_pandas()


def test_a_sharded_log_is_its_shards_logged_apart_with_users_renumbered(tmp_path: Any) -> None:
    from agents.collect import collect_logs, collect_sharded

    options = dict(policy="mixed", env_options={"horizon_days": 2}, progress=False)
    summary = collect_sharded(num_users=25, users_per_shard=10, path=tmp_path / "log", seed=3,
                              **options)  # fmt: skip
    merged = _rows(tmp_path / "log")
    expected, offset = [], 0
    for index, size in enumerate((10, 10, 5)):
        collect_logs(num_users=size, path=tmp_path / f"s{index}", seed=shard_seed(3, index),
                     **options)  # fmt: skip
        part = _rows(tmp_path / f"s{index}")
        part["user_id"] += offset
        expected.append(part)
        offset += size
    import pandas as pd

    pd.testing.assert_frame_equal(merged, pd.concat(expected, ignore_index=True))
    assert summary.rows == len(merged) and sorted(merged.user_id.unique()) == list(range(25))
    assert not (tmp_path / ".log.shards").exists()
    # One shard is the unsharded collection, row for row.
    collect_sharded(num_users=12, users_per_shard=0, path=tmp_path / "one", **options)
    collect_logs(num_users=12, path=tmp_path / "plain", **options)
    pd.testing.assert_frame_equal(_rows(tmp_path / "one"), _rows(tmp_path / "plain"))


def test_a_sharded_collection_refuses_resume_and_a_foreign_folder_first(tmp_path: Any) -> None:
    from agents.collect import collect_sharded

    with pytest.raises(ValueError, match="starts again with --overwrite"):
        collect_sharded(num_users=4, users_per_shard=2, path=tmp_path / "log", resume=True)
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        collect_sharded(num_users=4, users_per_shard=2, path=tmp_path / "thesis")
    assert not (tmp_path / ".thesis.shards").exists()
    assert (tmp_path / "thesis" / "chapter1.tex").read_text() == "keep me"
