"""Ray: RLlib as a training backend and populations spread over Ray tasks.

Runs where Ray is installed (``pip install -e ".[dev,rllib]"``, the second virtual
environment of the README's test command, with Ray's gymnasium 1.2.2); skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

ray = pytest.importorskip("ray")

from agents.evaluation import evaluate  # noqa: E402
from agents.populations import LocalRunner, RayRunner  # noqa: E402
from agents.rllib_backend import rllib_environment  # noqa: E402

SMALL = {"simulator_kwargs": {"num_items": 60}, "horizon_days": 2}
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONWARNINGS": "ignore"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Any:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", *args, "--no-progress"],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_rllib_ppo_trains_with_two_env_runners_and_loe_gym_evaluate_judges_it(
    tmp_path: Path,
) -> None:
    users, steps = 8, 16
    _cli(
        "train", "--output", "run", "--env-options", json.dumps(SMALL),
        "--agent.backend", "rllib", "--agent.num-env-runners", "2",
        "--agent.encoder", "none",
        "--agent.num-users", str(users), "--agent.n-steps", str(steps),
        "--agent.batch-size", "64", "--agent.n-epochs", "1",
        # two iterations: each samples n_steps per user
        "--agent.total-steps", str(2 * users * steps),
        "--eval-every", str(users * steps), "--eval-users", "8",
        cwd=tmp_path,
    )  # fmt: skip
    run = tmp_path / "run"
    summary = json.loads((run / "training.json").read_text())
    assert 2 * users * steps <= summary["steps"] < 3 * users * steps
    evaluations = [
        json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()
    ]
    # The untrained policy first, then one evaluation per eval_every steps.
    assert evaluations[0]["steps"] == 0
    assert [row["steps"] >= users * steps for row in evaluations[1:]] == [True, True]
    assert json.loads((run / "config.json").read_text())["agent"]["backend"] == "rllib"
    _cli(
        "evaluate", "--agents", "run", "--baselines", "random", "myopic",
        "--evaluation.num-users", "16", "--evaluation.seeds", "0", "1", "--output", "report",
        cwd=tmp_path,
    )  # fmt: skip
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"run", "random", "myopic"}
    assert metrics["policies"]["run"]["total_watch"]["mean"] > 0


def test_the_trained_module_is_saved_as_the_sb3_agent_it_acts_as(local_ray: Any) -> None:
    """The RLlib module's weights land in the SB3 policy unchanged: same logits."""
    from agents.configs import TrainConfig, TrainRunConfig
    from agents.rllib_backend import _copy_weights, ppo_config
    from agents.training import sb3_model

    agent = TrainConfig(backend="rllib", encoder="none", day_discount=1.0, gamma=0.99,
                        num_users=4, n_steps=8, batch_size=16, n_epochs=1, total_steps=32)  # fmt: skip
    config = TrainRunConfig(env_options=SMALL, agent=agent)
    algo = ppo_config(config).build_algo()
    try:
        algo.train()
        module = algo.get_module()
        model = sb3_model(config, None)
        _copy_weights(algo, model)
        env = gym.make_vec("loe_gym/Engagement-v0", num_envs=4,
                           vectorization_mode="vector_entry_point", **SMALL)  # fmt: skip
        obs, _ = env.reset(seed=3)
        tensors, _ = model.policy.obs_to_tensor(dict(obs))
        with torch.no_grad():
            sb3_logits = model.policy.get_distribution(tensors).distribution.logits
            rllib_logits = module.forward_inference({"obs": tensors})["action_dist_inputs"]
        torch.testing.assert_close(torch.log_softmax(rllib_logits, -1), sb3_logits)
    finally:
        algo.stop()


def test_candidate_module_is_permutation_equivariant(local_ray: Any) -> None:
    from agents.rllib_backend import CandidateRLModule

    env = gym.make_vec("loe_gym/Engagement-v0", num_envs=3,
                       vectorization_mode="vector_entry_point", **SMALL)  # fmt: skip
    module = CandidateRLModule(
        observation_space=env.single_observation_space,
        action_space=env.single_action_space,
        model_config={"net_arch": (16,), "own_critic": True},
    )
    obs, _ = env.reset(seed=0)
    order = np.random.default_rng(0).permutation(env.single_action_space.n)
    permuted = dict(obs)
    for key in ("candidate_features", "candidate_ids"):
        permuted[key] = obs[key][:, order]

    def logits(o: dict[str, np.ndarray]) -> torch.Tensor:
        batch = {k: torch.as_tensor(v) for k, v in o.items()}
        with torch.no_grad():
            return module.forward_inference({"obs": batch})["action_dist_inputs"]

    torch.testing.assert_close(logits(permuted), logits(obs)[:, order])


def test_rllib_environment_helper_trains_rllibs_default_ppo(local_ray: Any) -> None:
    """For users' own RLlib configs: the flat default model on the native vector env."""
    from ray.rllib.algorithms.ppo import PPOConfig

    config = rllib_environment(
        PPOConfig(), "loe_gym/Engagement-v0", num_users=4, env_options=SMALL
    ).training(train_batch_size_per_learner=64, minibatch_size=32, num_epochs=1)
    algo = config.env_runners(rollout_fragment_length=16).build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 64
    finally:
        algo.stop()
    with pytest.raises(ValueError, match="multiple of num_env_runners=3"):
        rllib_environment(PPOConfig(), "loe_gym/Engagement-v0", num_users=4, num_env_runners=3)


def test_populations_on_ray_tasks_match_one_process_exactly(local_ray: Any) -> None:
    """Shards run as Ray tasks give the metrics of the same shards run here, bit for bit."""
    options = dict(num_users=50, seeds=(0, 1), env_options=SMALL, users_per_shard=20,
                   progress=False)  # fmt: skip
    here = evaluate("loe_gym/Engagement-v0", ["random", "myopic"], runner=LocalRunner(), **options)
    there = evaluate("loe_gym/Engagement-v0", ["random", "myopic"], runner=RayRunner(), **options)
    assert here.to_dict() == there.to_dict()
    for policy in ("random", "myopic"):
        for a, b in zip(here.results[policy], there.results[policy], strict=True):
            np.testing.assert_array_equal(a.session_lengths, b.session_lengths)
            np.testing.assert_array_equal(a.item_impressions, b.item_impressions)


def test_logs_collected_on_ray_tasks_are_the_rows_of_one_process(
    local_ray: Any, tmp_path: Path
) -> None:
    from agents.collect import collect_sharded
    from loe_gym import read_log

    options = dict(num_users=30, users_per_shard=12, env_options={"horizon_days": 2},
                   progress=False)  # fmt: skip
    collect_sharded(path=tmp_path / "here", runner=LocalRunner(), **options)
    collect_sharded(path=tmp_path / "there", runner=RayRunner(), **options)
    # Value for value (NaN where a return is unknown, in both).
    pd.testing.assert_frame_equal(
        read_log(tmp_path / "here").to_pandas(), read_log(tmp_path / "there").to_pandas()
    )


@given(st.integers(2, 40), st.floats(0.5, 1.0), st.floats(0.0, 1.0), st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_clock_gae_with_no_day_discount_is_rllibs_own(
    length: int, gamma: float, lambda_: float, seed: int
) -> None:
    from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets

    from agents.rllib_backend import clock_value_targets

    rng = np.random.default_rng(seed)
    values, rewards = rng.normal(size=length), rng.normal(size=length)
    terminateds = (rng.random(length) < 0.1).astype(np.float32)
    truncateds = (rng.random(length) < 0.2).astype(np.float32)
    days = np.sort(rng.integers(0, 5, length)).astype(float)
    ours = clock_value_targets(values, rewards, terminateds, truncateds, days, gamma=gamma,
                               lambda_=lambda_, day_discount=1.0)  # fmt: skip
    theirs = compute_value_targets(values, rewards, terminateds, truncateds, gamma, lambda_)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_the_rllib_learner_uses_the_clock_gae(local_ray: Any) -> None:
    from agents.configs import TrainConfig, TrainRunConfig
    from agents.rllib_backend import ppo_config

    agent = TrainConfig(backend="rllib", encoder="none", num_users=4, n_steps=8, batch_size=16,
                        n_epochs=1, total_steps=32, day_discount=0.9)  # fmt: skip
    algo = ppo_config(TrainRunConfig(env_options=SMALL, agent=agent)).build_algo()
    try:
        names = [type(c).__name__ for c in algo.learner_group._learner._learner_connector]
        assert names[-1] == "ClockAdvantageEstimation"
        assert "GeneralAdvantageEstimation" not in names
        algo.train()
    finally:
        algo.stop()
