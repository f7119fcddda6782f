"""Tests of log collection (`agents.collect`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from agents.collect import (
    DEPLOYABLE_POLICY,
    MIXED_POLICY,
    LogSummary,
    MixedPolicy,
    collect_logs,
)
from agents.evaluation import run_population
from agents.reference_policies import (
    PublicFeaturePolicy,
    TopicAffinityPolicy,
    is_policy_name,
    make_policy,
)
from loe_gym.logs import LOG_SCHEMA, PRIVILEGED_LOG_SCHEMA, read_log, read_log_metadata

SMALL: dict[str, Any] = {"simulator_kwargs": {"num_items": 50}}


def collect(path: Path, **kwargs: Any) -> LogSummary:
    options = {
        "num_users": 6,
        "horizon_days": 3,
        "progress": False,
        "env_options": SMALL,
        **kwargs,
    }
    return collect_logs(path=path, **options)


def test_round_trip_summary_matches_the_log(tmp_path: Path) -> None:
    summary = collect(tmp_path)
    table = read_log(tmp_path)
    frame = table.to_pandas()
    assert summary.path == tmp_path
    assert summary.policy == "mixed"
    assert summary.rows == len(frame) > 0
    assert summary.users == 6
    assert summary.seconds > 0
    # One population: the first 6 users, each in its first life.
    assert sorted(frame["user_id"].unique()) == list(range(6))
    assert (frame["episode"] == 0).all()
    assert summary.sessions == len(frame.groupby(["user_id", "session"]))
    # Each row names the mixture's component that chose it.
    assert set(frame["policy"]) <= {"mixed:random", "mixed:myopic", "mixed:oracle_planner"}
    assert len(set(frame["policy"])) > 1
    metadata = read_log_metadata(tmp_path)
    assert metadata is not None and metadata["policy"] == "mixed" and metadata["closed"]
    # Every life is logged to its end: each user's last step ends a session.
    last = frame.sort_values(["user_id", "day", "session", "step"]).groupby("user_id").tail(1)
    assert last["session_end"].all()


def test_privileged_columns_present_and_in_range(tmp_path: Path) -> None:
    collect(tmp_path)
    table = read_log(tmp_path)
    assert table.schema.equals(PRIVILEGED_LOG_SCHEMA)
    frame = table.to_pandas()
    assert frame["true_click_probability"].between(0.0, 1.0).all()
    assert (frame["true_watch_time"] >= 0.0).all()
    ended = frame["session_end"].to_numpy()
    back = frame["true_return_probability"].to_numpy()
    assert np.isnan(back[~ended]).all()
    assert ((back[ended] >= 0.0) & (back[ended] <= 1.0)).all()


def test_privileged_false_writes_the_base_schema(tmp_path: Path) -> None:
    collect(tmp_path, privileged=False, policy="random")
    table = read_log(tmp_path)
    assert table.schema.equals(LOG_SCHEMA)
    assert set(table.column("policy").to_pylist()) == {"random"}


def test_same_seed_same_log_other_seed_other_log(tmp_path: Path) -> None:
    first = read_log(collect(tmp_path / "a", seed=3).path).to_pandas()
    again = read_log(collect(tmp_path / "b", seed=3).path).to_pandas()
    other = read_log(collect(tmp_path / "c", seed=4).path).to_pandas()
    pd.testing.assert_frame_equal(first, again)
    assert len(first) != len(other) or not first.equals(other)


def test_same_loop_as_run_population(tmp_path: Path) -> None:
    """Under one seed, a log of a deterministic policy counts what an evaluation counts."""
    summary = collect(tmp_path, policy="myopic", seed=7)
    frame = read_log(tmp_path).to_pandas()
    env = gym.make_vec(
        "loe_gym/Engagement-v0",
        num_envs=6,
        vectorization_mode="vector_entry_point",
        horizon_days=3,
        **SMALL,
    )
    result = run_population(env.unwrapped, make_policy("myopic"), seed=7)  # type: ignore[arg-type]
    np.testing.assert_array_equal(frame.groupby("user_id")["clicked"].sum(), result.clicks)
    np.testing.assert_allclose(
        frame.groupby("user_id")["watch_time"].sum(), result.watch, rtol=1e-5
    )
    assert summary.sessions == result.sessions.sum()
    assert len(frame) == result.impressions.sum()


def test_bad_policy_name_suggests_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown logging policy 'myopc'. Did you mean 'myopic'"):
        collect(tmp_path / "log", policy="myopc")
    with pytest.raises(ValueError, match="Did you mean 'mixed'"):
        collect(tmp_path / "log", policy="mixd")
    assert not (tmp_path / "log").exists()


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_users must be a positive integer"):
        collect(tmp_path, num_users=0)
    with pytest.raises(ValueError, match="contradicts env_options"):
        collect(tmp_path, env_options={**SMALL, "horizon_days": 5})
    with pytest.raises(RuntimeError, match="still active after max_steps=2"):
        collect(tmp_path / "capped", max_steps=2)


def test_existing_log_needs_overwrite(tmp_path: Path) -> None:
    collect(tmp_path, policy="random")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        collect(tmp_path, policy="random")
    assert collect(tmp_path, policy="myopic", overwrite=True).policy == "myopic"
    assert set(read_log(tmp_path).column("policy").to_pylist()) == {"myopic"}


def test_mixed_policy_draws_each_component_per_user_and_step() -> None:
    env = gym.make_vec(
        "loe_gym/Engagement-v0", num_envs=3000, vectorization_mode="vector_entry_point", **SMALL
    ).unwrapped
    obs, _ = env.reset(seed=0)
    policy = MixedPolicy(seed=11)
    # Replay the policy's streams: its choice generator and its random component.
    choice_seed, random_seed = np.random.SeedSequence(11).spawn(2)
    choices = np.random.default_rng(choice_seed)
    random = make_policy("random", seed=int(random_seed.generate_state(1)[0]))
    for _ in range(2):
        actions = policy.act(obs, env)  # type: ignore[arg-type]
        choice = choices.choice(3, size=3000, p=list(MIXED_POLICY.values()))
        expected = {
            "random": random.act(obs, env),  # type: ignore[arg-type]
            "myopic": make_policy("myopic").act(obs, env),  # type: ignore[arg-type]
            "oracle_planner": make_policy("oracle_planner").act(obs, env),  # type: ignore[arg-type]
        }
        for index, name in enumerate(MIXED_POLICY):
            chosen = choice == index
            np.testing.assert_array_equal(actions[chosen], expected[name][chosen], name)
            # Binomial(3000, p): the standard error of the share is below 0.01.
            assert abs(chosen.mean() - MIXED_POLICY[name]) < 0.04
        obs, *_ = env.step(actions)
    with pytest.raises(ValueError, match="sum to 1"):
        MixedPolicy({"random": 0.5, "myopic": 0.4})


def _engagement(num_users: int) -> Any:
    return gym.make_vec(
        "loe_gym/Engagement-v0",
        num_envs=num_users,
        vectorization_mode="vector_entry_point",
        **SMALL,
    ).unwrapped


def test_public_feature_policies_read_the_observed_features() -> None:
    env = _engagement(40)
    obs, _ = env.reset(seed=0)
    names = env.catalog.feature_names
    for policy, feature in (
        ("max_ctr_estimate", "ctr_estimate"),
        ("max_completion_estimate", "completion_estimate"),
    ):
        chosen = make_policy(policy)
        assert not chosen.privileged
        expected = obs["candidate_features"][..., names.index(feature)].argmax(axis=1)
        np.testing.assert_array_equal(chosen.act(obs, env), expected)
    with pytest.raises(ValueError, match=r"lacks\. Did you mean 'ctr_estimate'"):
        PublicFeaturePolicy("ctr_estimat").act(obs, env)
    # Any feature by name, highest or lowest first.
    length = obs["candidate_features"][..., names.index("length")]
    assert is_policy_name("min_length") and not is_policy_name("mean_length")
    np.testing.assert_array_equal(make_policy("min_length").act(obs, env), length.argmin(1))
    np.testing.assert_array_equal(make_policy("max_length").act(obs, env), length.argmax(1))
    with pytest.raises(ValueError, match=r"Unknown policy 'mx_length'.*min_<feature>"):
        make_policy("mx_length")


def test_topic_affinity_scores_the_smoothed_topic_click_rate() -> None:
    env = _engagement(1)
    obs, _ = env.reset(seed=0)
    topics = env.catalog.topics
    candidates = obs["candidate_ids"][0]
    liked, other = int(topics[candidates[0]]), int(topics[candidates[1]])
    history = np.full((1, 10), -1)
    feedback = np.zeros((1, 10, 3), dtype=np.float32)
    # Three rows of the liked topic, two clicked; two of the other topic, none clicked.
    history[0, :3], feedback[0, :2, 0] = candidates[0], 1.0
    history[0, 3:5] = candidates[1]
    observed = {**obs, "history_item_ids": history, "history_feedback": feedback}
    scores = TopicAffinityPolicy(weight_features=()).scores(observed, env)[0]
    candidate_topics = topics[candidates]
    expected = np.where(
        candidate_topics == liked,
        (2 + 1) / (3 + 2),
        np.where(candidate_topics == other, (0 + 1) / (2 + 2), 1 / 2),
    )
    if liked == other:  # both candidates share one topic: five rows, two clicks
        expected = np.where(candidate_topics == liked, (2 + 1) / (5 + 2), 1 / 2)
    np.testing.assert_allclose(scores, expected)
    weighted = TopicAffinityPolicy().scores(observed, env)[0]
    names = env.catalog.feature_names
    features = obs["candidate_features"][0]
    np.testing.assert_allclose(
        weighted,
        expected
        * features[:, names.index("ctr_estimate")]
        * features[:, names.index("completion_estimate")],
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"pass weight_features=\(\)"):
        TopicAffinityPolicy(("watch_ratio",)).scores(observed, env)


def test_deployable_logs_name_their_components_and_read_no_hidden_state(tmp_path: Path) -> None:
    summary = collect(tmp_path / "log", policy="deployable", num_users=30)
    assert summary.policy == "deployable"
    components = set(read_log(tmp_path / "log").column("policy").unique().to_pylist())
    assert components <= {f"deployable:{name}" for name in DEPLOYABLE_POLICY}
    assert "deployable:random" in components
    mixture = MixedPolicy(DEPLOYABLE_POLICY, per_user_concentration=1.0, name="deployable")
    assert not mixture.privileged
    assert MixedPolicy(per_user_concentration=1.0).privileged


def _blind_trap(**kwargs: Any) -> dict[str, Any]:
    """Options of the trap simulator without expected_responses (tests/trap_simulator.py)."""
    return {
        "simulator": "trap_simulator:BlindTrapUsers",
        "simulator_kwargs": kwargs,
        "num_candidates": 4,
    }


def test_deployable_logs_rank_by_the_catalogs_own_features_where_it_lacks_the_named_ones(
    tmp_path: Path,
) -> None:
    """A catalog without topics, CTR or completion estimates: the deployable mixture
    ranks by each of its features; a simulator without expected_responses logs without
    the privileged columns; a mixture that needs them names the alternatives."""
    options = _blind_trap()
    summary = collect(tmp_path / "log", policy="deployable", env_options=options)
    table = read_log(tmp_path / "log")
    assert summary.users == 6 and table.schema.names == LOG_SCHEMA.names
    components = set(table.column("policy").unique().to_pylist())
    allowed = {"random", "max_minutes", "min_minutes", "max_trap"}
    assert components <= {f"deployable:{name}" for name in allowed} and len(components) > 1
    with pytest.raises(TypeError, match=r"--collect\.policy random or deployable"):
        collect(tmp_path / "mixed", policy="mixed", env_options=options)


def test_deployable_logs_on_a_catalog_without_the_features_create_nothing(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="lacks"):
        collect(
            tmp_path / "log",
            policy="deployable",
            env_options=_blind_trap(constant_features=True),
        )
    assert not (tmp_path / "log").exists()
