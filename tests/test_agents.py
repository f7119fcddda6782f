"""Agents around the predictor: its observation / reward / fusion wrappers, the
candidate-scoring SB3 policies, the training config and its bad input, the baselines."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import NUM_ITEMS, SMALL, assert_tree_equal, random_slots
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from stable_baselines3 import A2C, DQN, PPO, SAC

from agents.configs import TrainConfig, TrainRunConfig
from agents.evaluation import evaluate
from agents.networks import CandidateActorCriticPolicy, CandidateDQNPolicy
from agents.predictor_env import (
    FusionWeights,
    PredictorObservations,
    PredictorReward,
    item_vector_table,
    rank_by_weights,
)
from agents.ranking import SCORE_NAMES, top_slates
from agents.reference_policies import (
    GreedyRewardModelPolicy,
    MyopicPredictedPolicy,
    PopularityPolicy,
)
from agents.sb3_vec_env import RecommendationSB3VecEnv, make_sb3_env
from agents.training import train_agent
from loe_gym.predictor import PredictorConfig, PredictorModel
from loe_gym.predictor.serving import PredictorService

OPTIONS = {"simulator_kwargs": {"num_items": NUM_ITEMS}, "horizon_days": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _service(num_items: int = NUM_ITEMS, catalog_seed: int = 0) -> PredictorService:
    env = gym.make(
        "loe_gym/Engagement-v0",
        simulator_kwargs={"num_items": num_items, "catalog_seed": catalog_seed},
    )
    catalog = env.unwrapped.catalog  # type: ignore[attr-defined]
    torch.manual_seed(0)
    model = PredictorModel(
        PredictorConfig.tiny(
            num_items=num_items, num_item_features=catalog.num_features, max_history_length=6
        )
    )
    model.set_item_features(catalog.features)
    # An untrained model scores every candidate alike; spread its weights so they differ.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return PredictorService(model)


@pytest.fixture(scope="module")
def service() -> PredictorService:
    return _service()


def _vector(num_users: int = 4, autoreset_mode: str = "next_step", **options: Any) -> Any:
    return gym.make_vec(
        "loe_gym/Engagement-v0",
        num_envs=num_users,
        vectorization_mode="vector_entry_point",
        autoreset_mode=autoreset_mode,
        **{**OPTIONS, **options},
    )


def _sb3(
    service: PredictorService,
    num_users: int,
    *wrappers: Any,
    item_vector_size: int = 0,
    **options: Any,
) -> Any:
    """The SB3 adapter with the predictor's observations (and ``wrappers`` after them)."""
    return RecommendationSB3VecEnv(
        "loe_gym/Engagement-v0",
        num_users=num_users,
        wrappers=[
            lambda env: PredictorObservations(env, service, item_vector_size=item_vector_size),
            *wrappers,
        ],
        **(options or OPTIONS),
    )


# --- PredictorObservations ---


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_observations_carry_the_predictors_view_of_the_whole_life(
    service: PredictorService, mode: str
) -> None:
    env = PredictorObservations(_vector(3, mode), service, history_length=4)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert obs["user_state"].shape == (3, service.hidden_size)
    assert obs["candidate_scores"].shape == (3, 20, len(SCORE_NAMES))
    lives: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(3)]
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        actions = rng.integers(0, 20, 3)
        obs, _, terminated, truncated, info = env.step(actions)
        for user in range(3):
            if info["acted"][user]:
                feedback = np.array(
                    [
                        info["clicked"][user, 0],
                        info["watch_time"][user, 0],
                        info["completion"][user, 0],
                    ],
                    np.float32,
                )
                lives[user].append((int(info["slate"][user, 0]), feedback))
            else:
                lives[user] = []
        done = terminated | truncated
        for user in range(3):
            if done[user] and mode == "same_step":
                lives[user] = []
            if not lives[user]:
                continue
            ids = np.array([i for i, _ in lives[user]])[None]
            feedback = np.stack([f for _, f in lives[user]])[None]
            # The running profile is that of the whole life, and the window its last rows.
            whole = service.history_profile(ids, feedback)[0]
            np.testing.assert_allclose(env._profile[user], whole, rtol=1e-4, atol=1e-4)
            tail = ids[0, -4:]
            np.testing.assert_array_equal(env._ids[user, -tail.size :], tail)
            checked += 1
        # The scores are the predictor's for the users' current candidates.
        expected = service.predict(
            env._ids,
            env._feedback,
            env._gaps,
            obs["candidate_ids"],
            env._target_gaps,
            env._profile,
        )
        np.testing.assert_allclose(
            obs["candidate_scores"][..., 2], expected["watch_time"], rtol=1e-5, atol=1e-6
        )
    assert checked > 50


def test_observations_in_the_sb3_adapter_keep_the_adapters_contract(
    service: PredictorService,
) -> None:
    churning = {**SMALL, "simulator_kwargs": {"num_items": NUM_ITEMS, "churn_gap_days": 1}}
    adapter = _sb3(service, 4, **churning)
    reference = PredictorObservations(
        gym.make_vec("loe_gym/Engagement-v0", num_envs=4, autoreset_mode="same_step", **churning),
        service,
    )
    assert adapter.observation_space == reference.single_observation_space
    adapter.seed(3)
    assert_tree_equal(adapter.reset(), reference.reset(seed=3)[0])
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(60):
        actions = random_slots(rng, 4, 20, 1)
        obs, _, dones, infos = adapter.step(actions)
        reference_obs, _, _, _, info = reference.step(actions)
        assert_tree_equal(obs, reference_obs)
        for user in np.flatnonzero(dones):
            final = infos[user]["terminal_observation"]
            assert final["candidate_scores"].shape == (20, len(SCORE_NAMES))
            assert_tree_equal(final, info["final_obs"][user])
            finished += 1
    assert finished > 0


def test_a_predictor_of_another_catalog_is_refused() -> None:
    with pytest.raises(ValueError, match="catalog of 60 items but the environment has 50"):
        PredictorObservations(_vector(), _service(num_items=60))
    with pytest.raises(ValueError, match="item features differ"):
        PredictorObservations(_vector(), _service(catalog_seed=1))


def test_history_length_beyond_the_predictors_is_refused(service: PredictorService) -> None:
    with pytest.raises(ValueError, match=r"history_length must lie in \[1, 6\]"):
        PredictorObservations(_vector(), service, history_length=7)


def test_item_vectors_are_each_candidates_principal_components(
    service: PredictorService,
) -> None:
    env = PredictorObservations(_vector(3, "same_step"), service, item_vector_size=4)
    table = item_vector_table(service.item_vectors(), 4)
    # Unit variance, uncorrelated components of the catalog's item tokens.
    np.testing.assert_allclose(np.cov(table.T), np.eye(4), atol=1e-4)
    obs, _ = env.reset(seed=2)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["candidate_item_vectors"], table[obs["candidate_ids"]])
    finished = 0
    for _ in range(80):
        _, _, terminated, truncated, info = env.step(np.zeros(3, np.int64))
        for user in np.flatnonzero(terminated | truncated):
            final = info["final_obs"][user]
            np.testing.assert_array_equal(
                final["candidate_item_vectors"], table[final["candidate_ids"]]
            )
            finished += 1
    assert finished > 0
    with pytest.raises(ValueError, match=r"item_vector_size must lie in \[1, 16\]"):
        PredictorObservations(_vector(), service, item_vector_size=17)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(3, 12),
    columns=st.integers(1, 6),
    size=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-3, 1e3),
)
def test_item_vector_table_whitens_and_keeps_the_leading_directions(
    rows: int, columns: int, size: int, seed: int, scale: float
) -> None:
    size = min(size, rows - 1, columns)
    assume(size >= 1)
    vectors = np.random.default_rng(seed).normal(size=(rows, columns)) * scale
    table = item_vector_table(vectors, size)
    assert table.shape == (rows, size)
    np.testing.assert_allclose(table.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(table.T, ddof=1).reshape(size, size), np.eye(size), atol=1e-3)
    # A rotated and shifted copy of the catalog gives the same table up to each column's sign.
    rotation, _ = np.linalg.qr(np.random.default_rng(seed + 1).normal(size=(columns, columns)))
    moved = item_vector_table(vectors @ rotation + 5.0, size)
    np.testing.assert_allclose(np.abs(moved), np.abs(table), rtol=1e-3, atol=1e-3)


# --- reward model and fusion weights ---


def test_reward_model_is_computed_from_the_predictor_only(service: PredictorService) -> None:
    env = PredictorReward(
        PredictorObservations(_vector(4), service), return_weight=3.0, continuation_weight=2.0
    )
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        actions = rng.integers(0, 20, 4)
        obs_before = obs
        scores = obs["candidate_scores"][np.arange(4), actions]
        obs, reward, _, _, info = env.step(actions)
        mean_stay = obs_before["candidate_scores"][..., 3].mean(1)
        mean_back = obs_before["candidate_scores"][..., 4].mean(1)
        watch, stay, back = scores[:, 2], scores[:, 3], scores[:, 4]
        gains = 3.0 * (back - mean_back) + 2.0 * (stay - mean_stay)
        expected = np.where(info["acted"], watch + gains, 0.0)
        np.testing.assert_allclose(reward, expected, rtol=1e-5)
        np.testing.assert_array_equal(info["true_reward"], info["reward_parts"]["watch_time"])


def test_the_hybrid_reward_is_the_simulators_plus_the_long_term_terms(
    service: PredictorService,
) -> None:
    """``observed_reward``: the simulator's reward replaces the predicted minutes; the
    centred return and continuation terms are those of the reward model."""
    env = PredictorReward(
        PredictorObservations(_vector(4), service),
        return_weight=3.0,
        continuation_weight=2.0,
        observed_reward=True,
    )
    obs, _ = env.reset(seed=0)
    rng, watched = np.random.default_rng(1), 0.0
    for _ in range(20):
        actions = rng.integers(0, 20, 4)
        before = obs["candidate_scores"]
        chosen = before[np.arange(4), actions]
        obs, reward, _, _, info = env.step(actions)
        gains = 3.0 * (chosen[:, 4] - before[..., 4].mean(1))
        gains += 2.0 * (chosen[:, 3] - before[..., 3].mean(1))
        expected = np.where(info["acted"], info["true_reward"] + gains, 0.0)
        np.testing.assert_allclose(reward, expected, rtol=1e-5, atol=1e-6)
        watched += info["true_reward"].sum()
    assert watched > 0  # the simulator's minutes did enter the reward


def test_reward_model_needs_the_predictor_observations() -> None:
    with pytest.raises(TypeError, match="wrap a PredictorObservations"):
        PredictorReward(_vector())
    with pytest.raises(TypeError, match="wrap a PredictorObservations"):
        FusionWeights(_vector())


def test_fusion_weights_rank_by_the_weighted_standardised_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((5, 20, len(SCORE_NAMES))).astype(np.float32)
    watch_only = np.array([[0.0, 1.0, 0.0, 0.0]] * 5)
    np.testing.assert_array_equal(rank_by_weights(watch_only, scores, 1), scores[..., 2].argmax(1))
    avoid_clicks = np.array([[-1.0, 0.0, 0.0, 0.0]] * 5)
    np.testing.assert_array_equal(
        rank_by_weights(avoid_clicks, scores, 3), top_slates(-scores[..., 0], 3)
    )


def test_fusion_weights_env_shows_the_ranked_candidates(service: PredictorService) -> None:
    env = FusionWeights(PredictorObservations(_vector(3), service))
    assert env.single_action_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    obs, _ = env.reset(seed=0)
    weights = np.tile(np.array([0.2, 1.0, -0.3, 0.5], np.float32), (3, 1))
    expected = rank_by_weights(weights, obs["candidate_scores"], 1)
    _, _, _, _, info = env.step(weights)
    np.testing.assert_array_equal(info["slate"][:, 0], obs["candidate_ids"][np.arange(3), expected])


# --- policies ---


def _permuted(obs: dict[str, np.ndarray], order: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(obs)
    for key in ("candidate_ids", "candidate_features", "candidate_scores"):
        out[key] = obs[key][:, order]
    if "candidate_item_vectors" in obs:
        out["candidate_item_vectors"] = obs["candidate_item_vectors"][:, order]
    return out


@pytest.mark.parametrize("algorithm", [PPO, A2C, DQN])
def test_candidate_policies_are_permutation_equivariant(
    service: PredictorService, algorithm: Any
) -> None:
    env = _sb3(service, 2, item_vector_size=3)
    if algorithm is DQN:
        model = DQN(CandidateDQNPolicy, env, learning_starts=0, seed=0)
    else:
        model = algorithm(CandidateActorCriticPolicy, env, n_steps=4, seed=0)
    policy = model.policy
    # Break the near-uniform start so the check has something to compare.
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    obs = env.reset()
    order = np.random.default_rng(0).permutation(20)

    def outputs(observation: dict[str, np.ndarray]) -> torch.Tensor:
        tensor, _ = policy.obs_to_tensor(observation)
        with torch.no_grad():
            if algorithm is DQN:
                return policy.q_net(tensor)
            return policy.get_distribution(tensor).distribution.logits

    base, moved = outputs(obs), outputs(_permuted(obs, order))
    torch.testing.assert_close(moved, base[:, order], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(base, base[:, order])
    if algorithm is not DQN:
        with torch.no_grad():
            values = policy.predict_values(policy.obs_to_tensor(obs)[0])
            moved_values = policy.predict_values(policy.obs_to_tensor(_permuted(obs, order))[0])
        torch.testing.assert_close(values, moved_values, rtol=1e-4, atol=1e-5)


def test_candidate_scorer_fast_path_equals_the_plain_computation(
    service: PredictorService,
) -> None:
    """The split first layer, the shared MLP pass and the written-out standardisation give
    what one Linear on the tiled [candidate, user] inputs and ``Tensor.std`` give."""
    env = _sb3(service, 4)
    kwargs = {"myopic_prior": 2.0}
    policy = PPO(CandidateActorCriticPolicy, env, n_steps=4, seed=0, policy_kwargs=kwargs).policy
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    extractor, scorer = policy.features_extractor, policy.mlp_extractor
    obs, _ = policy.obs_to_tensor(env.reset())
    with torch.no_grad():
        features = extractor(obs)
        logits, latent = scorer(features)
        c, d = scorer.num_candidates, scorer.candidate_size
        candidates = features[:, : c * d].reshape(-1, c, d)
        user = features[:, c * d :]
        raw = candidates[..., : d // 2]
        standardised = (raw - raw.mean(1, keepdim=True)) / (raw.std(1, keepdim=True) + 1e-3)
        torch.testing.assert_close(candidates[..., d // 2 :], standardised, rtol=1e-4, atol=1e-4)
        hidden = scorer.candidate_net(torch.cat([candidates, user[:, None].expand(-1, c, -1)], -1))
        expected = scorer.logit(hidden).squeeze(-1)
        expected = expected + scorer.prior_scale * candidates[..., scorer.prior_column]
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            latent, scorer.critic_net(torch.cat([hidden.mean(1), user], -1)), rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(scorer.forward_actor(features), logits)
        torch.testing.assert_close(scorer.forward_critic(features), latent)


def test_myopic_prior_starts_the_policy_at_the_predicted_watch_ranking(
    service: PredictorService,
) -> None:
    env = _sb3(service, 8)
    model = PPO(
        CandidateActorCriticPolicy, env, n_steps=4, seed=0, policy_kwargs={"myopic_prior": 50.0}
    )
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, obs["candidate_scores"][..., 2].argmax(1))


@pytest.mark.parametrize("item_vector_size", [0, 4])
def test_reward_model_prior_starts_the_policy_at_the_greedy_reward_model_ranking(
    service: PredictorService, item_vector_size: int
) -> None:
    """``prior_ranking='reward_model'``: the first policy acts as `GreedyRewardModelPolicy`
    with the same weights, and not as the myopic ranking (the weights are large enough
    here that the two rankings differ for some users), item vectors or not."""
    env = _sb3(service, 16, item_vector_size=item_vector_size)
    kwargs = {
        "myopic_prior": 50.0,
        "features_extractor_kwargs": TrainConfig(
            prior_ranking="reward_model", return_weight=300.0
        ).policy_kwargs()["features_extractor_kwargs"],
    }
    model = PPO(CandidateActorCriticPolicy, env, n_steps=4, seed=0, policy_kwargs=kwargs)
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    greedy = GreedyRewardModelPolicy(return_weight=300.0).scores(obs, None).argmax(1)
    np.testing.assert_array_equal(actions, greedy)
    assert (greedy != obs["candidate_scores"][..., 2].argmax(1)).any()
    without = TrainConfig(prior_ranking="reward_model", encoder="none").policy_kwargs()
    assert without["features_extractor_kwargs"] == {} and without["myopic_prior"] == 0.0


def test_an_agent_acts_where_the_env_observes_more_than_it_was_trained_on() -> None:
    """A learned world may observe less than the simulator it stands for (no ``user``
    features): the agent reads the keys it was trained on and says which it lacks."""
    from agents.training import SB3Policy

    env = make_sb3_env("loe_gym/Engagement-v0", 2, **SMALL)
    model = PPO(CandidateActorCriticPolicy, env, n_steps=4, seed=0)
    agent = SB3Policy(model, "ppo", uses_predictor=False, fusion=False)
    core = gym.make_vec(
        "loe_gym/Engagement-v0", num_envs=2, vectorization_mode="vector_entry_point", **SMALL
    ).unwrapped
    obs, _ = core.reset(seed=0)
    assert "user" not in obs
    richer = {**obs, "user": np.zeros((2, 3), np.float32)}
    np.testing.assert_array_equal(agent.act(richer, core), agent.act(obs, core))
    poorer = {k: v for k, v in obs.items() if k != "candidate_features"}
    with pytest.raises(ValueError, match=r"'ppo' reads observation keys \['candidate_features'\]"):
        agent.act(poorer, core)


def test_candidate_policy_refuses_a_box_action(service: PredictorService) -> None:
    env = _sb3(service, 2, FusionWeights)
    with pytest.raises(ValueError, match="use SAC or TD3"):
        PPO(CandidateActorCriticPolicy, env, n_steps=4)
    SAC("MultiInputPolicy", env, learning_starts=0, buffer_size=100).learn(8)


# --- baselines ---


def test_myopic_predicted_and_popularity_baselines(service: PredictorService) -> None:
    env = PredictorObservations(_vector(5), service)
    obs, _ = env.reset(seed=0)
    core = env.unwrapped
    np.testing.assert_array_equal(
        MyopicPredictedPolicy().act(obs, core), obs["candidate_scores"][..., 2].argmax(1)
    )
    with pytest.raises(KeyError, match="PredictorObservations"):
        MyopicPredictedPolicy().act(core.reset(seed=0)[0], core)
    clicks = np.arange(NUM_ITEMS, dtype=float)
    np.testing.assert_array_equal(
        PopularityPolicy(clicks).act(obs, core), obs["candidate_ids"].argmax(1)
    )
    with pytest.raises(ValueError, match="finite counts"):
        PopularityPolicy(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="count clicks over this env's catalog"):
        PopularityPolicy(np.ones(3)).act(obs, core)


def test_evaluate_runs_predictor_policies_on_the_same_populations(
    service: PredictorService,
) -> None:
    result = evaluate(
        "loe_gym/Engagement-v0",
        ["random", MyopicPredictedPolicy()],
        num_users=30,
        seeds=(0, 1),
        env_options=OPTIONS,
        progress=False,
        wrappers=[lambda env: PredictorObservations(env, service)],
    )
    summary = result.results["myopic_predicted"][0].summary()
    assert 0 < summary["coverage"] <= 1
    assert 0 < summary["topic_diversity"] <= 1
    curve = result.results["random"][0].retention_curve()
    assert curve[0] == 1.0 and np.all(np.diff(curve) <= 0)
    with pytest.raises(ValueError, match="reads the predictor's observations"):
        evaluate("loe_gym/Engagement-v0", [MyopicPredictedPolicy()], num_users=3, seeds=(0,))


# --- training config and bad input ---


_RUN_FIELDS = frozenset(TrainRunConfig.field_names()) - {"agent"}


def _run_config(**changes: Any) -> TrainRunConfig:
    """A `TrainRunConfig`: ``changes`` go to the run where it has the field, else to the
    agent (`TrainConfig`)."""
    run = {name: value for name, value in changes.items() if name in _RUN_FIELDS}
    agent = {name: value for name, value in changes.items() if name not in _RUN_FIELDS}
    return TrainRunConfig(agent=TrainConfig(**agent), **run)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"algorithm": "ppo2"},
            r"TrainConfig.algorithm must be one of .*got 'ppo2'. Did you mean 'ppo'",
        ),
        ({"env_id": "loe_gym/Engagment-v0"}, r"Did you mean 'loe_gym/Engagement-v0'"),
        (
            {"encoder": "frozn"},
            r"TrainConfig.encoder must be one of .*got 'frozn'. Did you mean 'frozen'",
        ),
        ({"reward_source": "predicted"}, r"Did you mean 'predictor'"),
        ({"total_steps": 0}, "total_steps"),
        ({"num_users": -1}, "num_users"),
        ({"gamma": 1.5}, "gamma"),
        ({"encoder": "frozen", "predictor": None}, "need a trained predictor"),
        ({"item_vector_size": 2}, "encoder='none' uses no predictor"),
        ({"algorithm": "sac", "encoder": "none", "predictor": None}, "need a trained predictor"),
    ],
)
def test_train_config_rejects_bad_values(
    changes: dict[str, Any], message: str, tmp_path: Any
) -> None:
    with pytest.raises(ValueError, match=message):
        # The env id is checked when training starts, before anything is built.
        train_agent(_run_config(**{"encoder": "none", **changes}), tmp_path / "run")


def test_agents_evaluated_together_must_see_the_same_observations() -> None:
    from agents.evaluation import _check_shared_predictor

    plain = _run_config(predictor="p", encoder="frozen")
    _check_shared_predictor(plain, _run_config(predictor="p", encoder="frozen", seed=3), "run")
    with pytest.raises(ValueError, match=r"item vector size \('p', 10, 0\); run uses"):
        _check_shared_predictor(
            plain, _run_config(predictor="p", encoder="frozen", item_vector_size=8), "run"
        )


def test_dqn_on_a_slate_env_names_the_algorithms_that_fit(tmp_path: Any) -> None:
    config = TrainRunConfig(
        env_id="loe_gym/EngagementSlate-v0",
        agent=TrainConfig(algorithm="dqn", encoder="none", total_steps=10),
    )
    with pytest.raises(ValueError, match=r"dqn needs a Discrete action.*ppo, a2c"):
        train_agent(config, tmp_path / "run")


def test_train_refuses_an_existing_output(tmp_path: Any) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.zip").write_text("previous")
    config = TrainRunConfig(agent=TrainConfig(encoder="none", total_steps=10))
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_agent(config, tmp_path / "run")
    assert (tmp_path / "run" / "model.zip").read_text() == "previous"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_agent(config, tmp_path / "empty", resume=True)


# --- learning and the training loop ---


def test_ppo_learns_to_beat_random_on_a_tiny_env(tmp_path: Any) -> None:
    """PPO over candidates, from the environment's observation alone, learns to get
    clicks. The users click on appeal only (no interests, no fatigue), which the
    observation shows through the items' CTR estimates, and the reward is the click: the
    signal is immediate, so a few thousand steps suffice."""
    env_options = {
        "simulator_kwargs": {"num_items": NUM_ITEMS, "interest_weight": 0.0, "fatigue_weight": 0.0},
        "horizon_days": 3,
        "reward": "click",
    }
    config = TrainRunConfig(
        env_options=env_options,
        agent=TrainConfig(
            encoder="none",
            total_steps=24_576,
            num_users=64,
            n_steps=8,
            batch_size=256,
            n_epochs=10,
            learning_rate=3e-3,
            gamma=0.5,
        ),
        eval_every=0,
        checkpoint_every=12_288,
    )
    summary = train_agent(config, tmp_path / "run", progress=False)
    assert summary.steps >= config.agent.total_steps
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "agent_12288_steps.json",
        "agent_12288_steps.safetensors",
        "agent_24576_steps.json",
        "agent_24576_steps.safetensors",
    ]
    from agents.training import load_agent

    agent, loaded, _ = load_agent(tmp_path / "run", name="ppo")
    assert loaded == config
    result = evaluate(
        "loe_gym/Engagement-v0",
        ["random", agent],
        num_users=200,
        seeds=(0, 1),
        env_options=env_options,
        progress=False,
    )
    ctr = {name: result.metric(name, "ctr") for name in ("random", "ppo")}
    assert ctr["ppo"].low > ctr["random"].high + 0.08, result.table()


def test_ppo_plans_across_sessions_where_the_greedy_policy_is_trapped(tmp_path: Any) -> None:
    """On `trap_simulator.TrapUsers` the item worth most now ends the user's life; only
    a policy that values the next sessions keeps its users. PPO on the simulator's
    reward, from the observation alone, must learn that the greedy policy does not."""
    from agents.training import load_agent

    options = {"simulator": "trap_simulator:TrapUsers", "num_candidates": 4, "horizon_days": 5}
    config = TrainRunConfig(
        env_id="loe_gym/Recommendation-v0",
        env_options=options,
        agent=TrainConfig(
            encoder="none",
            reward_source="simulator",
            total_steps=8192,
            num_users=64,
            n_steps=8,
            batch_size=256,
            learning_rate=3e-3,
        ),
        eval_every=0,
        checkpoint_every=0,
    )
    train_agent(config, tmp_path / "run", progress=False)
    agent, _, _ = load_agent(tmp_path / "run", name="ppo")
    result = evaluate(
        "loe_gym/Recommendation-v0",
        ["myopic", agent],
        num_users=64,
        seeds=(0,),
        env_options=options,
        progress=False,
    )
    greedy, ppo = (result.metric(name, "total_watch").mean for name in ("myopic", "ppo"))
    assert greedy == pytest.approx(10.0, rel=0.1)  # one trapped step per user
    assert ppo > 4.0 * greedy, result.table()  # staying 5 days earns up to 60


def test_a_resumed_run_evaluates_each_step_once(tmp_path: Any) -> None:
    """A run stopped after an evaluation but before the next checkpoint evaluates those
    steps again when resumed: evaluations.jsonl keeps each once."""
    config = TrainRunConfig(
        env_options=OPTIONS,
        agent=TrainConfig(
            encoder="none", total_steps=256, num_users=16, n_steps=4, batch_size=64, n_epochs=1
        ),
        eval_users=4,
        eval_every=64,
        checkpoint_every=128,
    )
    run = tmp_path / "run"
    train_agent(config, run, progress=False)
    for file in (run / "checkpoints").glob("agent_256_steps.*"):
        file.unlink()  # as if killed between the evaluation at 256 and its checkpoint
    train_agent(config, run, resume=True, progress=False)
    lines = (run / "evaluations.jsonl").read_text().splitlines()
    assert [json.loads(line)["steps"] for line in lines] == [0, 64, 128, 192, 256]


def test_training_resumes_from_its_last_checkpoint(tmp_path: Any) -> None:
    config = TrainRunConfig(
        env_options=OPTIONS,
        agent=TrainConfig(
            encoder="none", total_steps=256, num_users=16, n_steps=8, batch_size=64, n_epochs=1
        ),
        eval_every=0,
        checkpoint_every=128,
    )
    first = train_agent(config, tmp_path / "run", progress=False)
    assert first.steps == 256 and first.resumed_from is None
    longer = config.replace(agent=config.agent.replace(total_steps=512))
    resumed = train_agent(longer, tmp_path / "run", resume=True, progress=False)
    assert resumed.steps == 512
    assert resumed.resumed_from.endswith("agent_256_steps.json")
    assert (tmp_path / "run" / "checkpoints" / "agent_512_steps.safetensors").is_file()
    # The reward normaliser's statistics are resumed too, not restarted.
    layout = json.loads((tmp_path / "run" / "agent.json").read_text())
    assert layout["reward_normalizer"]["count"] > 256


def test_the_own_critic_trains_no_weight_of_the_candidates_logits() -> None:
    """With ``own_critic`` the value's gradient reaches only the critic's trunk and the value
    head; the logits do not depend on the critic's weights."""
    env = make_sb3_env("loe_gym/Engagement-v0", num_users=4)
    model = PPO(CandidateActorCriticPolicy, env, n_steps=4, policy_kwargs={"own_critic": True})
    policy = model.policy
    obs, _ = policy.obs_to_tensor(env.reset())
    policy.predict_values(obs).sum().backward()
    scorer = policy.mlp_extractor
    touched = {n for n, p in policy.named_parameters() if p.grad is not None and p.grad.any()}
    assert touched and all(n.startswith(("mlp_extractor.critic_net", "value_net")) for n in touched)
    assert all(p.grad is None for p in scorer.candidate_net.parameters())
