"""The day discount of agents/discounting.py: SB3's GAE when off, the users' clock when on."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.buffers import DictRolloutBuffer

from agents.discounting import ClockPPO, ClockRolloutBuffer

SPACE = gym.spaces.Dict({"context": gym.spaces.Box(0, np.inf, (3,), np.float32)})
ACTIONS = gym.spaces.Discrete(4)


def _fill(buffer: DictRolloutBuffer, days: np.ndarray, rewards: np.ndarray, starts: np.ndarray):
    values = np.linspace(0.5, 2.0, days.size).reshape(days.shape)
    for t in range(days.shape[0]):
        context = np.zeros((days.shape[1], 3), np.float32)
        context[:, 0] = days[t]
        buffer.add(
            {"context": context},
            np.zeros((days.shape[1], 1)),
            rewards[t],
            starts[t],
            torch.as_tensor(values[t]),
            torch.zeros(days.shape[1]),
        )


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.5, 1.0))
def test_without_a_day_discount_it_is_sb3s_gae(seed: int, gamma: float) -> None:
    rng = np.random.default_rng(seed)
    t, n = 6, 3
    days = np.cumsum(rng.integers(0, 3, (t, n)), 0).astype(np.float32)
    rewards, starts = rng.normal(size=(t, n)), rng.random((t, n)) < 0.2
    dones, last = rng.random(n) < 0.3, torch.as_tensor(rng.normal(size=n))
    ours = ClockRolloutBuffer(t, SPACE, ACTIONS, gamma=gamma, n_envs=n, day_discount=1.0)
    sb3 = DictRolloutBuffer(t, SPACE, ACTIONS, gamma=gamma, n_envs=n)
    for buffer in (ours, sb3):
        _fill(buffer, days, rewards, starts)
        buffer.compute_returns_and_advantage(last, dones)
    ours.finish(days[-1] + 1)
    np.testing.assert_allclose(ours.advantages, sb3.advantages, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.returns, sb3.returns, rtol=1e-5, atol=1e-5)


def test_each_day_without_a_visit_costs_the_day_discount() -> None:
    # One user, λ = 1, values 0: the return is the discounted sum of rewards.
    # Steps on days 0, 0, 3, then the next observation on day 4: the return from step 0 is
    # 1 + 1·(0.9·0.5^0) + 1·(0.9²·0.5^3) + 0.9³·0.5^4 · V_last(= 2)
    #   = 1 + 0.9 + 0.10125 + 0.091125 = 2.092375.
    buffer = ClockRolloutBuffer(3, SPACE, ACTIONS, gamma=0.9, gae_lambda=1.0, day_discount=0.5)
    days = np.array([[0.0], [0.0], [3.0]], np.float32)
    for t in range(3):
        buffer.add(
            {"context": np.array([[days[t, 0], 0, 0]], np.float32)},
            np.zeros((1, 1)),
            np.ones(1),
            np.zeros(1),
            torch.zeros(1),
            torch.zeros(1),
        )
    buffer.compute_returns_and_advantage(torch.tensor([2.0]), np.zeros(1, bool))
    buffer.finish(np.array([4.0]))
    assert buffer.returns[0, 0] == pytest.approx(2.092375, rel=1e-6)
    assert buffer.returns[2, 0] == pytest.approx(1 + 0.9 * 0.5 * 2.0, rel=1e-6)


def test_a_bad_day_discount_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=r"day_discount must lie in \(0, 1\], got 1.5"):
        ClockRolloutBuffer(2, SPACE, ACTIONS, day_discount=1.5)


def test_clock_ppo_saves_and_loads_its_day_discount(tmp_path) -> None:
    from agents.networks import CandidateActorCriticPolicy
    from agents.sb3_vec_env import make_sb3_env

    env = make_sb3_env("loe_gym/Engagement-v0", num_users=4)
    model = ClockPPO(CandidateActorCriticPolicy, env, n_steps=4, batch_size=16, day_discount=0.8)
    model.learn(32)
    model.save(tmp_path / "model.zip")
    loaded = ClockPPO.load(tmp_path / "model.zip", env=env)
    assert loaded.day_discount == 0.8
    assert isinstance(loaded.rollout_buffer, ClockRolloutBuffer)
    assert loaded.rollout_buffer.day_discount == 0.8
    loaded.learn(32)  # continues with its buffer's finish()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gamma", "day_discount", "learns_to_bring_users_back"),
    [
        (1.0, 0.9, True),
        (0.9, 1.0, False),
    ],
)
def test_only_the_day_discount_sees_the_cost_of_absence(
    gamma: float, day_discount: float, learns_to_bring_users_back: bool
) -> None:
    """On `trap_simulator.AbsenceUsers` item 0 pays 3 minutes a step and keeps the user away
    5 days, item 1 pays 2 and brings the user back tomorrow: 120 minutes over 60 days
    always taking item 1, 36 always taking item 0. The per-day discount learns item 1;
    a per-step one, far from the horizon, learns item 0."""
    from agents.evaluation import evaluate
    from agents.networks import CandidateActorCriticPolicy
    from agents.sb3_vec_env import make_sb3_env
    from agents.training import SB3Policy

    options = {"simulator": "trap_simulator:AbsenceUsers", "num_candidates": 2, "horizon_days": 60}
    env = make_sb3_env("loe_gym/Recommendation-v0", num_users=64, **options)
    model = ClockPPO(
        CandidateActorCriticPolicy,
        env,
        n_steps=16,
        batch_size=256,
        n_epochs=4,
        learning_rate=3e-3,
        gamma=gamma,
        day_discount=day_discount,
        policy_kwargs={"own_critic": True},
        seed=0,
    )
    model.learn(12_288)
    agent = SB3Policy(model, "ppo", uses_predictor=False, fusion=False)
    result = evaluate(
        "loe_gym/Recommendation-v0",
        [agent],
        num_users=32,
        seeds=(0,),
        env_options=options,
        progress=False,
    )
    watch = result.metric("ppo", "total_watch").mean
    assert (watch > 100) if learns_to_bring_users_back else (watch < 50), watch


def test_rllibs_gae_on_the_users_clock_discounts_the_days_between_steps() -> None:
    """`agents.rllib_backend.clock_value_targets` by hand: a 2-day gap costs day_discount²."""
    from agents.rllib_backend import clock_value_targets

    gamma, lam, day = 0.9, 0.8, 0.5
    targets = clock_value_targets(
        np.zeros(3, np.float32),
        np.array([0.0, 0.0, 1.0], np.float32),
        np.zeros(3, np.float32),
        np.array([0.0, 0.0, 1.0], np.float32),
        np.array([0.0, 2.0, 2.0]),
        gamma=gamma,
        lambda_=lam,
        day_discount=day,
    )
    np.testing.assert_allclose(targets, [gamma**2 * lam**2 * day**2, gamma * lam, 1.0], rtol=1e-6)
