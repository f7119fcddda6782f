"""The learned user simulator (`simulators.learned`), the sim-to-real comparison and the
feedback loop: contract, statistics of the sampled responses, wiring, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import loe_gym
from agents.collect import MixedPolicy, collect_logs
from agents.configs import LoopConfig, ValidationConfig
from agents.loop import ExplorationPolicy, round_summary
from agents.presets import QUICK_VALIDATION
from agents.validation import compare_worlds, fit_learned_simulator, learned_env_options
from loe_gym.logs import read_log
from loe_gym.predictor import load_predictor
from loe_gym.predictor.configs import TrainingConfig
from loe_gym.predictor.lora import adaptation_lora_modules, apply_lora
from loe_gym.predictor.sequences import new_session_gap
from loe_gym.predictor.serving import PredictorService
from simulators.learned import FIRST_ROW_GAP, LearnedUsers, catalog_from_log

NUM_ITEMS = 60


def _small_catalog_logs(
    path: Path, *, policy: str, num_users: int, seed: int, horizon_days: int
) -> None:
    """Logs of `Engagement-v0` users on a catalog of `NUM_ITEMS` items."""
    collect_logs(
        num_users=num_users,
        path=path,
        policy=policy,
        seed=seed,
        horizon_days=horizon_days,
        progress=False,
        env_options={"simulator_kwargs": {"num_items": NUM_ITEMS}},
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny predictor fitted on a tiny log of a small engagement catalog."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("learned")
    logs = folder / "logs"
    _small_catalog_logs(logs, policy="diverse", num_users=80, seed=3, horizon_days=4)
    result = fit_learned_simulator(
        logs, folder / "predictor", QUICK_VALIDATION.predictor, progress=False
    )
    return {"logs": logs, "predictor": folder / "predictor" / "model", "metrics": result.test}


@pytest.fixture(scope="module")
def simulator(fitted: dict[str, Any]) -> LearnedUsers:
    return LearnedUsers(fitted["predictor"], catalog=fitted["logs"], churn_gap_days=3)


def test_passes_the_simulator_contract(simulator: LearnedUsers) -> None:
    loe_gym.check_simulator(simulator, num_users=6, num_steps=6, slate_sizes=(1, 3))


def test_catalog_is_the_logs_public_catalog(
    simulator: LearnedUsers, fitted: dict[str, Any]
) -> None:
    catalog = catalog_from_log(fitted["logs"])
    assert simulator.catalog.feature_names == catalog.feature_names
    assert "length" in catalog.feature_names and not catalog.hidden
    assert simulator.catalog.num_topics == 10


def test_responses_follow_the_predicted_probabilities(simulator: LearnedUsers) -> None:
    """Clicks, session ends and next-day returns are drawn with the predictor's
    probabilities: frequencies over many users match the mean predictions."""
    rng = np.random.default_rng(0)
    n = 20_000
    state = simulator.reset(n, rng)
    slates = rng.integers(0, NUM_ITEMS, (n, 1))
    predicted = simulator.expected_responses(state, slates)
    responses = simulator.respond(state, slates, rng)

    def close(frequency: float, probability: np.ndarray, count: int) -> None:
        mean = float(probability.mean())
        assert abs(frequency - mean) < 4 * np.sqrt(mean * (1 - mean) / count) + 1e-3

    close(responses.clicked.mean(), predicted["click_probability"], n)
    close(responses.session_end.mean(), 1 - predicted["continuation_probability"], n)
    ended = responses.session_end
    returned = responses.returned_next_day[ended]
    close(returned.mean(), predicted["return_probability"][ended], int(ended.sum()))
    # Watch time: the predicted minutes, capped at the item's length; 0 without a click.
    length = simulator.catalog.features[:, simulator.catalog.feature_names.index("length")]
    clicked = responses.clicked[:, 0]
    expected_watch = np.minimum(predicted["watch_time_if_clicked"][:, 0], length[slates[:, 0]])
    np.testing.assert_allclose(responses.watch_time[clicked, 0], expected_watch[clicked], rtol=1e-5)
    assert np.all(responses.watch_time[~clicked] == 0)
    np.testing.assert_allclose(
        responses.completion[clicked, 0],
        expected_watch[clicked] / length[slates[clicked, 0]],
        rtol=1e-5,
    )


def test_update_appends_the_step_to_the_history(simulator: LearnedUsers) -> None:
    rng = np.random.default_rng(1)
    state = simulator.reset(5, rng)
    assert np.all(state.next_gap == FIRST_ROW_GAP) and np.all(state.history_item_ids == -1)
    slates = rng.integers(0, NUM_ITEMS, (5, 2))
    responses = simulator.respond(state, slates, rng)
    after = simulator.update(state, slates, responses, rng)
    np.testing.assert_array_equal(after.history_item_ids[:, -2:], slates)
    np.testing.assert_array_equal(after.history_gaps[:, -2], FIRST_ROW_GAP)
    np.testing.assert_array_equal(after.history_gaps[:, -1], 1)
    np.testing.assert_allclose(after.history_feedback[:, -2:, 1], responses.watch_time)
    returns = responses.session_end & ~responses.churned
    expected = np.where(returns, new_session_gap(responses.gap_days, 10), 1)
    np.testing.assert_array_equal(after.next_gap, expected)
    # The running profile is the predictor's profile of the rows so far.
    service = simulator.service
    profile = service.history_profile(slates, after.history_feedback[:, -2:])
    np.testing.assert_allclose(after.profile, profile, rtol=1e-5, atol=1e-6)


def test_churn_is_a_gap_beyond_the_threshold(fitted: dict[str, Any]) -> None:
    strict = LearnedUsers(fitted["predictor"], catalog=fitted["logs"], churn_gap_days=1)
    rng = np.random.default_rng(2)
    state = strict.reset(4000, rng)
    responses = strict.respond(state, rng.integers(0, NUM_ITEMS, (4000, 1)), rng)
    ended = responses.session_end
    # With a threshold of one day, every ended session either returns tomorrow or churns.
    assert np.all(responses.returned_next_day[ended] | responses.churned[ended])
    assert responses.churned.any()


def test_churn_is_calibrated_on_the_logs(fitted: dict[str, Any]) -> None:
    """The threshold makes the learned world's churn per logged session end the logs'
    (a simulator's log: its share of session ends churned or silent for more than the
    horizon, known exactly), and is the smallest that does."""
    from simulators.return_gaps import calibrate_churn, logged_return_probabilities

    service = PredictorService.from_pretrained(fitted["predictor"])
    calibration = calibrate_churn(service, fitted["logs"])
    gaps = read_log(fitted["logs"]).to_pandas()
    steps = gaps[gaps["session_end"] & (gaps["position"] == 0)]
    silent = (steps["gap_days"] == 0) | (steps["gap_days"] > calibration.horizon_days)
    assert calibration.never_return_share == pytest.approx(np.mean(silent))
    assert calibration.censored_session_ends == int(np.sum(steps["gap_days"] == 0))
    p = logged_return_probabilities(service, fitted["logs"])
    k = calibration.churn_gap_days
    assert np.mean((1 - p) ** k) <= calibration.never_return_share
    assert k == 1 or np.mean((1 - p) ** (k - 1)) > calibration.never_return_share
    options = learned_env_options(fitted["predictor"], fitted["logs"])
    assert options["simulator_kwargs"]["churn_gap_days"] == k


def test_runs_in_the_registered_environments(fitted: dict[str, Any]) -> None:
    options = learned_env_options(fitted["predictor"], fitted["logs"], fitted["metrics"])
    assert options["simulator"] == "learned"
    assert json.loads(json.dumps(options)) == options  # a training config can keep it
    env = gym.make_vec(
        "loe_gym/Engagement-v0", num_envs=16, vectorization_mode="vector_entry_point", **options
    )
    env.reset(seed=0)
    for _ in range(30):
        _, reward, *_ = env.step(np.zeros(16, dtype=np.int64))
        assert np.all(reward >= 0) and np.all(np.isfinite(reward))
    check_env(gym.make("loe_gym/Engagement-v0", **options).unwrapped, skip_render_check=True)


def test_same_seed_same_rollout(fitted: dict[str, Any]) -> None:
    options = learned_env_options(fitted["predictor"], fitted["logs"])

    def rollout() -> list[np.ndarray]:
        env = gym.make_vec(
            "loe_gym/Engagement-v0", num_envs=8, vectorization_mode="vector_entry_point", **options
        )
        env.reset(seed=5)
        return [env.step(np.arange(8) % 20)[1] for _ in range(20)]

    for a, b in zip(rollout(), rollout(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_refused(fitted: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fit-predictor"):
        LearnedUsers(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"history_length must lie in \[1, 10\]"):
        LearnedUsers(fitted["predictor"], history_length=11)
    with pytest.raises(ValueError, match="churn_gap_days must be ≥ 1"):
        LearnedUsers(fitted["predictor"], churn_gap_days=0)
    with pytest.raises(ValueError, match="watch_log_std"):
        LearnedUsers(fitted["predictor"], watch_log_std=-1.0)
    other = tmp_path / "other_logs"
    collect_logs(num_users=3, path=other, horizon_days=1, progress=False)  # 1000 items
    with pytest.raises(ValueError, match="not the one the predictor was fitted on"):
        LearnedUsers(fitted["predictor"], catalog=other)
    with pytest.raises(ValueError, match="has no catalog"):
        empty = tmp_path / "no_catalog"
        empty.mkdir()
        catalog_from_log(empty)


def test_default_catalog_is_the_predictors_features(fitted: dict[str, Any]) -> None:
    service = PredictorService.from_pretrained(fitted["predictor"])
    simulator = LearnedUsers(service)
    assert simulator.catalog.num_items == NUM_ITEMS
    assert simulator.catalog.feature_names[0] == "feature_0"


def test_diverse_logging_gives_each_user_their_own_mixture() -> None:
    policy = MixedPolicy(seed=0, per_user_concentration=0.5)
    assert policy.name == "diverse"

    class Env:
        num_envs = 500

    weights_seen = []
    policy.components = tuple(  # type: ignore[assignment]
        type("Constant", (), {"act": (lambda self, obs, env, i=i: np.full(500, i))})()
        for i in range(3)
    )
    for _ in range(200):
        weights_seen.append(policy.act({}, Env()))  # type: ignore[arg-type]
    shares = np.stack([(np.stack(weights_seen) == i).mean(axis=0) for i in range(3)], axis=1)
    np.testing.assert_allclose(shares, policy._user_weights, atol=0.15)
    # Users differ: some live mostly under one component, others under another.
    assert shares.max(axis=0).min() > 0.8
    with pytest.raises(ValueError, match="per_user_concentration"):
        MixedPolicy(per_user_concentration=0.0)


def test_compare_worlds_verdicts() -> None:
    class FakeEvaluation:
        def __init__(self, values: dict[str, dict[str, float]]) -> None:
            self.values = values

        def metric(self, policy: str, name: str) -> Any:
            return type("Summary", (), {"mean": self.values[policy][name]})()

    truth = FakeEvaluation(
        {
            "a": {"ctr": 0.5, "session_length": 20, "next_day_retention": 0.6, "total_watch": 300},
            "b": {"ctr": 0.7, "session_length": 15, "next_day_retention": 0.5, "total_watch": 200},
        }
    )
    good = FakeEvaluation(
        {
            "a": {
                "ctr": 0.54,
                "session_length": 19,
                "next_day_retention": 0.64,
                "total_watch": 280,
            },
            "b": {
                "ctr": 0.66,
                "session_length": 16,
                "next_day_retention": 0.47,
                "total_watch": 210,
            },
        }
    )
    bad = FakeEvaluation(
        {
            "a": {"ctr": 0.6, "session_length": 20, "next_day_retention": 0.7, "total_watch": 100},
            "b": {"ctr": 0.7, "session_length": 15, "next_day_retention": 0.5, "total_watch": 200},
        }
    )
    config = ValidationConfig()
    result = compare_worlds(truth, good, config, ["a", "b"])
    assert result["verdict"] == {"all_metrics_pass": True, "ranking_preserved": True}
    result = compare_worlds(truth, bad, config, ["a", "b"])
    assert result["policies"]["a"]["passes"] == {
        "ctr": False,
        "session_length": True,
        "next_day_retention": False,
    }
    assert result["ranking"]["learned"] == ["b", "a"] and not result["ranking"]["preserved"]


def test_exploration_policy_replaces_a_share_of_the_actions() -> None:
    class Base:
        name = "zero"

        def act(self, obs: Any, env: Any) -> np.ndarray:
            return np.zeros(env.num_envs, dtype=np.int64)

    env = gym.make_vec(
        "loe_gym/Engagement-v0", num_envs=4000, vectorization_mode="vector_entry_point"
    )
    core = env.unwrapped
    actions = ExplorationPolicy(Base(), 0.2, seed=0).act({}, core)
    assert abs(np.mean(actions != 0) - 0.2 * 19 / 20) < 0.03
    assert ExplorationPolicy(Base(), 0.0, seed=0).act({}, core).max() == 0


def test_round_summary_reads_a_deployment(tmp_path: Path) -> None:
    collect_logs(
        num_users=30, path=tmp_path / "logs", policy="myopic", horizon_days=3, progress=False
    )
    summary = round_summary(tmp_path / "logs")
    assert summary["users"] == 30
    assert summary["total_watch"] > 0 and summary["total_watch_ci95_half_width"] > 0
    assert 0 < summary["ctr"] <= 1 and summary["session_length"] >= 1


def test_config_errors_name_the_option() -> None:
    with pytest.raises(
        ValueError, match=r"LoopConfig\.refit must be one of 'full', 'lora', got 'lor'"
    ):
        LoopConfig(refit="lor")
    with pytest.raises(ValueError, match="train_on"):
        LoopConfig(train_on="sim")
    with pytest.raises(ValueError, match="exploration"):
        LoopConfig(exploration=1.5)
    with pytest.raises(ValueError, match="pass the logs it was fitted on"):
        ValidationConfig(fitted_predictor="some/model")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_validate_simulator_cli_on_existing_logs(fitted: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "validation"
    done = _cli(
        "validate-simulator",
        "--quick",
        "--no-progress",
        "--threads",
        "1",
        "--logs",
        str(fitted["logs"]),
        "--fitted-predictor",
        str(fitted["predictor"]),
        "--horizon-days",
        "2",
        "--env-options",
        json.dumps({"simulator_kwargs": {"num_items": NUM_ITEMS}}),
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"random", "popularity", "myopic_predicted"}
    assert (out / "fidelity.png").is_file()
    assert "Ranking by total watch" in (out / "report.md").read_text()
    again = _cli("validate-simulator", "--quick", "--output", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.slow
def test_loop_cli_quick(tmp_path: Path) -> None:
    out = tmp_path / "loop"
    done = _cli(
        "loop",
        "--quick",
        "--no-progress",
        "--threads",
        "1",
        "--horizon-days",
        "2",
        "--rounds",
        "2",
        "--refit",
        "lora",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["policy"] for r in metrics["rounds"]] == ["myopic", "ppo_round_1", "ppo_round_2"]
    # Round 2 refits round 1's predictor through LoRA adapters (merged when saved).
    fit = json.loads((out / "round_2" / "predictor" / "metrics.json").read_text())
    assert fit["config"]["training"]["lora_rank"] == 8
    assert fit["config"]["initial_model"].endswith("round_1/predictor/model")
    # A trained model is adapted with the adaptation placement: trunk adapters, no heads in full.
    previous = load_predictor(out / "round_1" / "predictor" / "model")
    targets, saved = adaptation_lora_modules(previous)
    adapted = apply_lora(
        previous,
        TrainingConfig(lora_rank=8, lora_target_modules=targets, lora_modules_to_save=saved),
    )
    trainable = sum(value.numel() for value in adapted.parameters() if value.requires_grad)
    assert fit["stages"]["finetune"]["trainable_parameters"] == trainable
    assert (out / "round_1" / "agent" / "agent.safetensors").is_file()
    assert (out / "round_1" / "logs" / "_metadata.json").is_file()
    assert (out / "engagement_per_round.png").is_file()
    bad = _cli("loop", "--refit", "partial", "--output", str(tmp_path / "x"))
    assert (
        bad.returncode == 2
        and "LoopConfig.refit must be one of 'full', 'lora', got 'partial'" in bad.stderr
    )


def test_import_logs_cli(tmp_path: Path) -> None:
    """``loe-gym import-logs`` on a MovieLens-style file: the log reads back, a bad file
    fails with the row and column named."""
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(
        "userId,movieId,rating,timestamp\n"
        "1,10,4.0,964982703\n1,20,3.0,964982931\n1,10,5.0,965082703\n2,30,4.5,964980000\n"
    )
    done = _cli(
        "import-logs",
        "--source",
        str(ratings),
        "--preset",
        "movielens",
        "--output",
        str(tmp_path / "log"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows" in done.stdout
    assert read_log(tmp_path / "log").num_rows == 4
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,10,four,964982703\n")
    failed = _cli(
        "import-logs",
        "--source",
        str(bad),
        "--preset",
        "movielens",
        "--output",
        str(tmp_path / "b"),
    )
    assert failed.returncode == 2
    assert "bad.csv" in failed.stderr and "rating" in failed.stderr and "row 1" in failed.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    unknown = _cli(
        "import-logs",
        "--source",
        str(ratings),
        "--preset",
        "movielen",
        "--output",
        str(tmp_path / "c"),
    )
    assert unknown.returncode == 2 and "movielens" in unknown.stderr


def test_mixture_logs_name_the_component_of_each_row(fitted: dict[str, Any]) -> None:
    from loe_gym.predictor.batches import TargetBatches
    from loe_gym.predictor.sequences import load_sequences

    values = set(read_log(fitted["logs"]).column("policy").unique().to_pylist())
    assert values == {"diverse:random", "diverse:myopic", "diverse:oracle_planner"}
    sequences, _ = load_sequences(fitted["logs"], num_items=NUM_ITEMS)
    every = TargetBatches(sequences, shuffle=False)
    randomised = TargetBatches(sequences, shuffle=False, target_policies=("diverse:random",))
    random_index = sequences.policy_names.index("diverse:random")
    assert 0 < randomised.num_targets < every.num_targets
    assert np.all(sequences.policy[randomised.targets] == random_index)
    # Histories still hold every row, whatever policy chose it.
    batch = randomised.batch(randomised.targets[-8:])
    assert (batch["history_item_ids"] > 0).sum() > 0
    with pytest.raises(ValueError, match="name no policy of the log"):
        TargetBatches(sequences, target_policies=("mixed:random",))
    # Randomised click targets: every row is a target, only the random component's rows
    # train the click and watch-time heads.
    clicks = TargetBatches(sequences, shuffle=False, click_target_policies=("diverse:random",))
    assert np.array_equal(clicks.targets, every.targets)
    batch = clicks.batch(clicks.targets)
    chosen = torch.from_numpy(sequences.policy[clicks.targets] == random_index)
    assert torch.equal(batch["click_mask"], chosen)
    assert torch.equal(batch["watch_time_mask"], chosen & (batch["click_labels"] > 0))
    assert "click_mask" not in every.batch(every.targets[:4])
    with pytest.raises(ValueError, match=r"click_target_policies .* name no policy"):
        TargetBatches(sequences, click_target_policies=("mixed:random",))
    # A subset keeps the policies.
    part = sequences.select(np.arange(3))
    assert part.policy_names == sequences.policy_names and part.policy.size == part.num_rows


def test_randomised_targets_reach_the_fit(fitted: dict[str, Any], tmp_path: Path) -> None:
    quick = QUICK_VALIDATION.predictor

    def fit(logs: Path, output: Path) -> dict[str, Any]:
        return fit_learned_simulator(
            logs, output, quick, randomised_click_targets=True, progress=False
        ).config

    recorded = fit(fitted["logs"], tmp_path / "clicks")
    assert list(recorded["click_target_policies"]) == ["diverse:random"]
    assert not recorded["target_policies"]
    # A log without a random component: a warning names it, and every row trains.
    plain = tmp_path / "plain"
    _small_catalog_logs(plain, policy="random", num_users=6, seed=1, horizon_days=2)
    with pytest.warns(UserWarning, match="no randomised rows"):
        recorded = fit(plain, tmp_path / "plain_fit")
    assert not recorded["click_target_policies"]


def test_writer_refuses_bad_components(tmp_path: Path) -> None:
    from loe_gym.logs import ParquetLogWriter, read_log
    from loe_gym.simulator import Responses

    with pytest.raises(ValueError, match="distinct non-empty"):
        ParquetLogWriter(tmp_path / "a", policy="mix", policy_components=("x", "x"))
    responses = Responses(
        clicked=np.array([[True], [False]]),
        watch_time=np.array([[1.0], [0.0]]),
        completion=np.array([[0.5], [0.0]]),
        session_end=np.array([False, False]),
        gap_days=np.array([0, 0]),
        churned=np.array([False, False]),
    )
    step = dict(user_id=np.array([1, 2]), episode=0, day=0, session=0, step=0)
    with ParquetLogWriter(tmp_path / "b", policy="mix", policy_components=("r", "m")) as writer:
        writer.write_step(
            **step,
            slates=np.array([[3], [4]]),
            responses=responses,
            policy_component=np.array([1, -1]),
        )
        with pytest.raises(ValueError, match="policy_component must index"):
            writer.write_step(
                **step,
                slates=np.array([[3], [4]]),
                responses=responses,
                policy_component=np.array([2, 0]),
            )
    assert read_log(tmp_path / "b").column("policy").to_pylist() == ["mix:m", "mix"]
