"""The predictor's config and model: shapes, losses, learning, save/load, and clear errors.

Configs are tiny (hidden 16, one layer, a 30-item catalog): nothing here depends on scale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoConfig, AutoModel, BertConfig, BertModel, GPT2Config, GPT2Model

from loe_gym.predictor import (
    IGNORE_INDEX,
    MASK_ID,
    PAD_ID,
    TASKS,
    PredictorConfig,
    PredictorModel,
    PredictorOutput,
    load_predictor,
    to_model_ids,
)

NUM_ITEMS = 30
NUM_FEATURES = 5
HIDDEN = 16
MAX_LENGTH = 8
BACKBONES = ("bert", "gpt2")


def make_model(backbone: str = "bert", seed: int = 0, **overrides: Any) -> PredictorModel:
    torch.manual_seed(seed)
    config = PredictorConfig.tiny(
        num_items=NUM_ITEMS,
        num_item_features=NUM_FEATURES,
        backbone=backbone,
        max_history_length=MAX_LENGTH,
        **overrides,
    )
    model = PredictorModel(config)
    model.set_item_features(torch.rand(NUM_ITEMS, NUM_FEATURES))
    return model


def make_batch(batch_size: int = 4, length: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random histories, left-padded (row 0 has 2 pads), with targets."""
    generator = torch.Generator().manual_seed(seed)
    ids = to_model_ids(torch.randint(0, NUM_ITEMS, (batch_size, length), generator=generator))
    gaps = torch.randint(1, 10, (batch_size, length), generator=generator)
    feedback = torch.rand(batch_size, length, 3, generator=generator)
    ids[0, :2] = PAD_ID
    gaps[0, :2] = 0
    feedback[0, :2] = 0.0
    return {
        "history_item_ids": ids,
        "history_feedback": feedback,
        "history_gaps": gaps,
        "target_item_ids": to_model_ids(
            torch.randint(0, NUM_ITEMS, (batch_size,), generator=generator)
        ),
        "target_gaps": torch.randint(1, 10, (batch_size,), generator=generator),
    }


def history_of(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The arguments of `PredictorModel.encode` in ``batch``."""
    names = ("history_item_ids", "history_feedback", "history_gaps", "target_gaps")
    return {name: batch[name] for name in names}


def all_labels(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batch_size, length = batch["history_item_ids"].shape
    masked = torch.full((batch_size, length), IGNORE_INDEX)
    masked[:, -1] = 3
    return {
        "click_labels": torch.tensor([1.0, 0.0, 1.0, 0.0])[:batch_size],
        "watch_time_labels": torch.rand(batch_size),
        "watch_time_mask": torch.tensor([True, False, True, False])[:batch_size],
        "continuation_labels": torch.ones(batch_size),
        "return_labels": torch.zeros(batch_size),
        "return_mask": torch.tensor([False, True, True, False])[:batch_size],
        "ranking_labels": torch.tensor([1, IGNORE_INDEX, 3, 29])[:batch_size],
        "masked_item_labels": masked,
    }


LABELS_OF_TASK = {
    "click": ("click_labels",),
    "watch_time": ("watch_time_labels", "watch_time_mask"),
    "continuation": ("continuation_labels",),
    "return": ("return_labels", "return_mask"),
    "ranking": ("ranking_labels",),
    "masked_item": ("masked_item_labels",),
}

# ----------------------------------------------------------------------------- config


def test_config_defaults_and_json_round_trip(tmp_path: Path) -> None:
    config = PredictorConfig(num_items=1000, num_item_features=13, task_weights={"click": 2.0})
    assert config.intermediate_size == 4 * config.hidden_size
    assert config.task_weights == {**dict.fromkeys(TASKS, 1.0), "click": 2.0}
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, PredictorConfig)
    without_path = {name for name in config.to_dict() if name != "_name_or_path"}
    assert {name: loaded.to_dict()[name] for name in without_path} == {
        name: config.to_dict()[name] for name in without_path
    }


BAD_CONFIGS = {
    "unknown backbone": ({"backbone": "bret"}, ValueError, r"got 'bret'\. Did you mean 'bert'\?"),
    "upper-case backbone": ({"backbone": "GPT2"}, ValueError, r"Did you mean 'gpt2'\?"),
    "zero hidden size": ({"hidden_size": 0}, ValueError, r"hidden_size must be .*≥ 1.*got 0"),
    "negative layers": ({"num_hidden_layers": -1}, ValueError, r"num_hidden_layers.*got -1"),
    "zero items": ({"num_items": 0}, ValueError, r"num_items.*got 0"),
    "float size": ({"hidden_size": 16.5}, TypeError, r"hidden_size.*integer.*16\.5"),
    "zero history": ({"max_history_length": 0}, ValueError, r"max_history_length.*got 0"),
    "hidden not divisible": (
        {"hidden_size": 30, "num_attention_heads": 4},
        ValueError,
        r"hidden_size=30 is not divisible by num_attention_heads=4.*e\.g\. 32",
    ),
    "unknown task weight": (
        {"task_weights": {"clicks": 1.0}},
        ValueError,
        r"unknown task 'clicks'\. Did you mean 'click'\?",
    ),
    "negative task weight": ({"task_weights": {"ranking": -1.0}}, ValueError, r"≥ 0.*-1\.0"),
    "profile decay above 1": (
        {"profile_decays": (1.0, 1.5)},
        ValueError,
        r"profile_decays must be a non-empty sequence of numbers in \(0, 1\].*1\.5",
    ),
    "profile flag not a bool": (
        {"long_term_profile": "yes"},
        TypeError,
        r"long_term_profile must be True or False, got 'yes'",
    ),
    "unknown weighting": (
        {"loss_weighting": "uncertain"},
        ValueError,
        r"Did you mean 'uncertainty'\?",
    ),
    "dropout of one": ({"hidden_dropout_prob": 1.0}, ValueError, r"\[0, 1\).*got 1\.0"),
    "too few gap buckets": ({"num_gap_buckets": 2}, ValueError, r"num_gap_buckets must be ≥ 3"),
    "missing backbone path": (
        {"backbone_path": "/no/such/dir"},
        FileNotFoundError,
        r"'/no/such/dir' is not an existing directory",
    ),
    "misspelt argument": ({"hidden_sizes": 32}, TypeError, r"Did you mean 'hidden_size'\?"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_bad_configs_raise_clear_errors(case: str) -> None:
    overrides, error, message = BAD_CONFIGS[case]
    values = {"num_items": NUM_ITEMS, "num_item_features": NUM_FEATURES, **overrides}
    with pytest.raises(error, match=message):
        PredictorConfig(**values)


# ---------------------------------------------------------------------- forward/backward


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_backward_all_tasks(backbone: str) -> None:
    model = make_model(backbone).train()
    batch = make_batch()
    output = model(**batch, **all_labels(batch))
    assert isinstance(output, PredictorOutput)
    batch_size, length = batch["history_item_ids"].shape
    for name in ("click_logits", "watch_time", "continuation_logits", "return_logits"):
        assert getattr(output, name).shape == (batch_size,)
    assert output.ranking_logits.shape == (batch_size, NUM_ITEMS)
    assert output.masked_item_logits.shape == (batch_size, length, NUM_ITEMS)
    assert output.user_state.shape == (batch_size, HIDDEN)
    assert output.embeddings.shape == (batch_size, length + 1, HIDDEN)
    assert set(output.losses) == set(TASKS)
    assert torch.isfinite(output.loss)
    # Fixed weights of 1: the total is the plain sum.
    assert torch.allclose(output.loss, sum(output.losses.values()))
    output.loss.backward()
    no_gradient = [
        name
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and (parameter.grad is None or not parameter.grad.any())
    ]
    assert no_gradient == []


@pytest.mark.parametrize("task", TASKS)
def test_each_loss_only_with_its_labels(task: str) -> None:
    model = make_model()
    batch = make_batch()
    labels = {name: all_labels(batch)[name] for name in LABELS_OF_TASK[task]}
    output = model(**batch, **labels)
    assert set(output.losses) == {task}
    assert torch.equal(output.loss, output.losses[task])
    assert (output.masked_item_logits is not None) == (task == "masked_item")


def test_no_labels_no_loss_and_no_target_no_candidate_heads() -> None:
    model = make_model()
    batch = make_batch()
    output = model(**batch)
    assert output.loss is None and output.losses is None
    del batch["target_item_ids"]
    output = model(**batch)
    assert output.click_logits is None and output.ranking_logits is not None
    with pytest.raises(ValueError, match=r"click_labels given without target_item_ids"):
        model(**batch, click_labels=torch.ones(4))


def test_empty_masks_give_zero_losses_not_nan() -> None:
    model = make_model()
    batch = make_batch()
    nan = torch.full((4,), float("nan"))  # labels of masked-out rows may hold anything
    output = model(
        **batch,
        watch_time_labels=nan,
        watch_time_mask=torch.zeros(4, dtype=torch.bool),
        return_labels=nan,
        return_mask=torch.zeros(4, dtype=torch.bool),
        ranking_labels=torch.full((4,), IGNORE_INDEX),
    )
    assert {name: loss.item() for name, loss in output.losses.items()} == {
        "watch_time": 0.0,
        "return": 0.0,
        "ranking": 0.0,
    }
    # Half the rows masked: the NaN labels of the others reach neither loss nor gradient.
    half = torch.tensor([True, False, True, False])
    labels = torch.where(half, torch.rand(4), nan)
    output = model(
        **batch,
        watch_time_labels=labels,
        watch_time_mask=half,
        return_labels=labels.clamp(0, 1),
        return_mask=half,
    )
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_click_mask_restricts_the_click_loss_to_its_rows() -> None:
    model = make_model().eval()
    batch = make_batch()
    clicks = torch.tensor([1.0, 0.0, 1.0, 0.0])
    kept = torch.tensor([True, True, False, False])
    masked = model(**batch, click_labels=clicks, click_mask=kept)
    logits = masked.click_logits
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[kept], clicks[kept])
    assert torch.allclose(masked.losses["click"], expected)
    # Masked-out rows may carry anything, NaN included; an empty mask adds nothing.
    with_nan = torch.where(kept, clicks, torch.tensor(float("nan")))
    assert torch.allclose(model(**batch, click_labels=with_nan, click_mask=kept).loss, expected)
    empty = model(**batch, click_labels=clicks, click_mask=torch.zeros(4, dtype=torch.bool))
    assert empty.losses["click"].item() == 0.0
    with pytest.raises(ValueError, match=r"click_mask must be a bool tensor of shape \(4,\)"):
        model(**batch, click_labels=clicks, click_mask=torch.ones(3, dtype=torch.bool))


def test_fixed_weights_and_return_dict_false() -> None:
    weights = {"click": 2.0, "ranking": 0.5}
    model = make_model(task_weights=weights)
    batch = make_batch()
    labels = {"click_labels": torch.ones(4), "ranking_labels": torch.tensor([0, 1, 2, 3])}
    output = model(**batch, **labels)
    expected = 2.0 * output.losses["click"] + 0.5 * output.losses["ranking"]
    assert torch.allclose(output.loss, expected)
    as_tuple = model.eval()(**batch, **labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], model(**batch, **labels).loss)


def test_uncertainty_weighting_learns_log_variances() -> None:
    model = make_model(loss_weighting="uncertainty")
    assert model.log_variances is not None and model.log_variances.requires_grad
    assert model.log_variances.shape == (len(TASKS),)
    with torch.no_grad():
        model.log_variances.copy_(torch.arange(len(TASKS), dtype=torch.float32) / 10)
    batch = make_batch()
    output = model(**batch, click_labels=torch.ones(4), ranking_labels=torch.tensor([0, 1, 2, 3]))
    # s_click = 0.0, s_ranking = 0.2 (positions in TASKS): Σ exp(−s) L + s.
    expected = output.losses["click"] + torch.exp(torch.tensor(-0.2)) * output.losses["ranking"]
    assert torch.allclose(output.loss, expected + 0.2)
    output.loss.backward()
    gradient = model.log_variances.grad
    assert gradient is not None
    used = [TASKS.index("click"), TASKS.index("ranking")]
    assert gradient[used].abs().min() > 0
    assert gradient[[i for i in range(len(TASKS)) if i not in used]].abs().max() == 0


@pytest.mark.slow
def test_loss_decreases_on_a_learnable_toy_problem() -> None:
    """Click iff the target's catalog id is even: the model must learn it from the item
    embedding through the candidate trunk."""
    model = make_model(hidden_dropout_prob=0.0, attention_dropout_prob=0.0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        batch = make_batch(
            batch_size=32, seed=int(torch.randint(0, 10**6, (1,), generator=generator))
        )
        labels = ((batch["target_item_ids"] - 2) % 2 == 0).float()
        loss = model(**batch, click_labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[:10]) / 10 > 0.6  # chance level: ln 2 ≈ 0.69
    assert sum(losses[-10:]) / 10 < 0.2
    model.eval()
    targets = to_model_ids(torch.arange(NUM_ITEMS))
    batch = make_batch(batch_size=NUM_ITEMS)
    scores = model.score_candidates(
        model.encode_with_history(**history_of(batch)),
        targets.unsqueeze(0).expand(NUM_ITEMS, -1),
    )
    predicted = scores["click_probability"].mean(0) > 0.5
    assert torch.equal(predicted, torch.arange(NUM_ITEMS) % 2 == 0)


# ------------------------------------------------------------------ sequence handling


@pytest.mark.parametrize("backbone", BACKBONES)
def test_left_padding_does_not_change_the_user_state(backbone: str) -> None:
    model = make_model(backbone).eval()
    batch = make_batch(length=5)
    extra = 3
    padded = {
        "history_item_ids": torch.nn.functional.pad(batch["history_item_ids"], (extra, 0)),
        "history_feedback": torch.nn.functional.pad(batch["history_feedback"], (0, 0, extra, 0)),
        "history_gaps": torch.nn.functional.pad(batch["history_gaps"], (extra, 0)),
        "target_gaps": batch["target_gaps"],
    }
    torch.testing.assert_close(model.encode(**padded), model.encode(**history_of(batch)))


@pytest.mark.parametrize("long_term_profile", [True, False])
def test_long_histories_keep_the_last_tokens(long_term_profile: bool) -> None:
    """The transformer sees the last `max_history_length` tokens; the long-term profile,
    passed explicitly here, is that of the whole history."""
    model = make_model(long_term_profile=long_term_profile).eval()
    long = make_batch(length=MAX_LENGTH + 5)
    masked = torch.full(long["history_item_ids"].shape, IGNORE_INDEX)
    masked[:, -2:] = 7
    truncated = {
        name: value[:, -MAX_LENGTH:] if value.ndim >= 2 else value for name, value in long.items()
    }
    if long_term_profile:
        long["history_profile"] = truncated["history_profile"] = model.history_profile(
            long["history_item_ids"], long["history_feedback"]
        )
    output_long = model(**long, masked_item_labels=masked)
    output_short = model(**truncated, masked_item_labels=masked[:, -MAX_LENGTH:])
    assert output_long.embeddings.shape[1] == MAX_LENGTH + 1
    assert output_long.masked_item_logits.shape[1] == MAX_LENGTH
    for name in ("loss", "click_logits", "ranking_logits", "user_state", "masked_item_logits"):
        torch.testing.assert_close(getattr(output_long, name), getattr(output_short, name))


def test_masked_positions_and_query_get_unknown_feedback() -> None:
    """The feedback of a masked token must not reach the model (it would leak the item)."""
    model = make_model().eval()
    batch = make_batch()
    batch["history_item_ids"][:, 3] = MASK_ID
    changed = {**batch, "history_feedback": batch["history_feedback"].clone()}
    changed["history_feedback"][:, 3] = 1.0
    torch.testing.assert_close(model(**batch).embeddings, model(**changed).embeddings)


@settings(max_examples=10, deadline=None)
@given(batch_size=st.integers(1, 5), length=st.integers(0, 10), seed=st.integers(0, 1000))
def test_batch_of_n_equals_n_batches_of_one(batch_size: int, length: int, seed: int) -> None:
    model = make_model().eval()
    batch = make_batch(batch_size=batch_size, length=length, seed=seed)
    whole = model(**batch)
    for row in range(batch_size):
        single = model(**{name: value[row : row + 1] for name, value in batch.items()})
        torch.testing.assert_close(single.click_logits, whole.click_logits[row : row + 1])
        torch.testing.assert_close(single.user_state, whole.user_state[row : row + 1])


@pytest.mark.parametrize("target_attention", [True, False])
@pytest.mark.parametrize("long_term_profile", [True, False])
def test_score_candidates_matches_the_forward_heads(
    target_attention: bool, long_term_profile: bool
) -> None:
    model = make_model(
        target_attention=target_attention, long_term_profile=long_term_profile
    ).eval()
    batch = make_batch()
    candidates = to_model_ids(torch.arange(12).reshape(4, 3))
    history = history_of(batch)
    with pytest.raises(TypeError, match="encode_with_history"):
        model.score_candidates(model.encode(**history), candidates)
    encoded = model.encode_with_history(**history)
    scores = model.score_candidates(encoded, candidates)
    assert set(scores) == {
        "click_probability",
        "watch_time_if_clicked",
        "watch_time",
        "continuation_probability",
        "return_probability",
    }
    for values in scores.values():
        assert values.shape == (4, 3)
    for name in ("click_probability", "continuation_probability", "return_probability"):
        assert ((scores[name] >= 0) & (scores[name] <= 1)).all()
    torch.testing.assert_close(
        scores["watch_time"], scores["click_probability"] * scores["watch_time_if_clicked"]
    )
    output = model(**history, target_item_ids=candidates[:, 1])
    torch.testing.assert_close(
        scores["click_probability"][:, 1], torch.sigmoid(output.click_logits)
    )
    torch.testing.assert_close(
        scores["watch_time_if_clicked"][:, 1], torch.expm1(output.watch_time).clamp_min(0)
    )
    torch.testing.assert_close(encoded.user_state, output.user_state)


def test_inputs_embeds_noise_is_the_adversarial_hook() -> None:
    model = make_model().eval()
    batch = make_batch()
    output = model(**batch, click_labels=torch.ones(4))
    gradient = torch.autograd.grad(output.loss, output.embeddings)[0]
    assert gradient.shape == output.embeddings.shape and gradient.abs().sum() > 0
    zero_noise = model(**batch, inputs_embeds_noise=torch.zeros_like(output.embeddings))
    torch.testing.assert_close(zero_noise.user_state, output.user_state)
    perturbed = model(**batch, inputs_embeds_noise=0.1 * gradient.sign())
    assert not torch.allclose(perturbed.user_state, output.user_state)


# ------------------------------------------------------------------------ bad inputs


def _bad(name: str, value: Any) -> dict[str, Any]:
    return {name: value}


BAD_INPUTS = {
    "item id too large": (
        lambda b: _bad(
            "history_item_ids", b["history_item_ids"].index_fill(1, torch.tensor([4]), 32)
        ),
        r"history_item_ids must lie in \[0, 32\), got 32 at index \[0, 4\].*to_model_ids",
    ),
    "negative item id": (
        lambda b: _bad("history_item_ids", b["history_item_ids"] - 3),
        r"history_item_ids must lie in \[0, 32\), got -[0-9]",
    ),
    "target is padding": (
        lambda b: _bad("target_item_ids", torch.zeros(4, dtype=torch.long)),
        r"target_item_ids must lie in \[2, 32\), got 0",
    ),
    "NaN feedback": (
        lambda b: _bad(
            "history_feedback", b["history_feedback"].index_fill(1, torch.tensor([2]), float("nan"))
        ),
        r"history_feedback must be finite, got nan at index \[0, 2, 0\]",
    ),
    "feedback wrong shape": (
        lambda b: _bad("history_feedback", b["history_feedback"][..., :2]),
        r"history_feedback must be .*\(4, 6, 3\), got a tensor of shape \(4, 6, 2\)",
    ),
    "ids of rank 1": (
        lambda b: _bad("history_item_ids", b["history_item_ids"][0]),
        r"history_item_ids must be a 2-d tensor \(batch, length\), got a tensor of shape \(6,\)",
    ),
    "float ids": (
        lambda b: _bad("history_item_ids", b["history_item_ids"].float()),
        r"history_item_ids must hold integers, got dtype torch\.float32.*\.long\(\)",
    ),
    "gap out of range": (
        lambda b: _bad("history_gaps", b["history_gaps"] + 10),
        r"history_gaps must lie in \[0, 10\)",
    ),
    "gaps wrong shape": (
        lambda b: _bad("history_gaps", b["history_gaps"][:, 1:]),
        r"history_gaps must have the shape of history_item_ids, \(4, 6\), got \(4, 5\)",
    ),
    "targets wrong batch": (
        lambda b: _bad("target_item_ids", b["target_item_ids"][:3]),
        r"target_item_ids must have shape \(batch,\) = \(4,\), got \(3,\)",
    ),
    "ranking label is a model id": (
        lambda b: _bad("ranking_labels", torch.tensor([0, 1, 2, 31])),
        r"ranking_labels must be catalog ids in \[0, 30\) or -100.*got 31",
    ),
    "click label out of range": (
        lambda b: _bad("click_labels", torch.tensor([0.0, 2.0, 1.0, 0.0])),
        r"click_labels must be in \[0, 1\], got 2\.0 at row 1",
    ),
    "noise wrong shape": (
        lambda b: _bad("inputs_embeds_noise", torch.zeros(4, 6, HIDDEN)),
        r"inputs_embeds_noise must have the shape of output\.embeddings, \(4, 7, 16\)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_inputs_raise_clear_errors(case: str) -> None:
    model = make_model()
    batch = make_batch()
    make_change, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        model(**{**batch, **make_change(batch)})


def test_bad_item_features_raise() -> None:
    model = make_model()
    with pytest.raises(
        ValueError, match=r"\(num_items, num_item_features\) = \(30, 5\), got \(30, 4\)"
    ):
        model.set_item_features(torch.zeros(NUM_ITEMS, 4))
    features = torch.zeros(NUM_ITEMS, NUM_FEATURES)
    features[7, 1] = float("inf")
    with pytest.raises(ValueError, match=r"item 7 has NaN or inf"):
        model.set_item_features(features.numpy())


# ------------------------------------------------------------------------- save/load


@pytest.mark.parametrize("backbone", BACKBONES)
def test_save_load_round_trip_is_exact(backbone: str, tmp_path: Path) -> None:
    model = make_model(backbone, loss_weighting="uncertainty").eval()
    model.save_pretrained(tmp_path)
    loaded = load_predictor(tmp_path, num_items=NUM_ITEMS, num_item_features=NUM_FEATURES)
    assert not loaded.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    batch = make_batch()
    labels = all_labels(batch)
    expected, got = model(**batch, **labels), loaded(**batch, **labels)
    for name in ("loss", "click_logits", "watch_time", "ranking_logits", "user_state"):
        assert torch.equal(getattr(expected, name), getattr(got, name)), name
    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, PredictorModel)
    assert torch.equal(auto.item_features, model.item_features)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    make_model().save_pretrained(tmp_path)
    return tmp_path


def test_corrupt_weights_file_raises_naming_it(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"model\.safetensors' is corrupt"):
        load_predictor(checkpoint)


def test_non_finite_weights_are_refused_with_the_tensor_name(checkpoint: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = checkpoint / "model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(key for key, value in tensors.items() if value.is_floating_point())[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"tensor '{name}' holds NaN or inf"):
        load_predictor(checkpoint)


def test_checkpoint_with_other_num_items_raises(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=r"trained for num_items=30, but num_items=40"):
        load_predictor(checkpoint, num_items=40)
    config_file = checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "num_items": 40}))
    with pytest.raises(
        ValueError, match=r"mismatched shapes \[item_features: checkpoint \(30, 5\)"
    ):
        load_predictor(checkpoint)


def test_missing_weight_raises_naming_the_key(checkpoint: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = checkpoint / "model.safetensors"
    state = load_file(weights)
    del state["ranking_bias"]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys \['ranking_bias'\]"):
        load_predictor(checkpoint)


def test_missing_checkpoint_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        load_predictor(tmp_path)


# --------------------------------------------------------------- pretrained backbones


def test_pretrained_bert_backbone_is_loaded_from_a_local_directory(tmp_path: Path) -> None:
    # A "pretrained" BERT with more positions, token types and a vocabulary: the predictor
    # takes the first rows it needs and leaves the word embeddings out.
    torch.manual_seed(3)
    pretrained = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=HIDDEN,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        add_pooling_layer=False,
    )
    pretrained.save_pretrained(tmp_path / "bert")
    model = make_model(backbone_path=str(tmp_path / "bert"))
    source = pretrained.state_dict()
    target = model.backbone.state_dict()
    name = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(target[name], source[name])
    positions = "embeddings.position_embeddings.weight"
    assert torch.equal(target[positions], source[positions][: MAX_LENGTH + 1])
    # The checkpoint carries the weights and no longer needs the directory.
    model.save_pretrained(tmp_path / "predictor")
    assert json.loads((tmp_path / "predictor" / "config.json").read_text())["backbone_path"] is None
    loaded = load_predictor(tmp_path / "predictor")
    assert torch.equal(loaded.backbone.state_dict()[name], source[name])

    with pytest.raises(
        ValueError, match=r"PredictorConfig has hidden_size=32.*backbone has hidden_size=16"
    ):
        make_model(backbone_path=str(tmp_path / "bert"), hidden_size=32)
    with pytest.raises(
        ValueError, match=r"holds a 'bert' model but PredictorConfig\.backbone='gpt2'"
    ):
        make_model("gpt2", backbone_path=str(tmp_path / "bert"))


def test_pretrained_gpt2_backbone_is_loaded(tmp_path: Path) -> None:
    torch.manual_seed(4)
    pretrained = GPT2Model(
        GPT2Config(vocab_size=50, n_positions=32, n_embd=HIDDEN, n_layer=1, n_head=2, n_inner=32)
    )
    pretrained.save_pretrained(tmp_path)
    model = make_model("gpt2", backbone_path=str(tmp_path))
    name = "h.0.attn.c_attn.weight"
    assert torch.equal(model.backbone.state_dict()[name], pretrained.state_dict()[name])


# ------------------------------------------------------------------ long-term profile


def test_the_profile_sums_decayed_feature_times_feedback_over_item_tokens() -> None:
    model = make_model(profile_decays=(1.0, 0.5)).eval()
    batch = make_batch(length=5)
    ids, feedback = batch["history_item_ids"], batch["history_feedback"]
    ids[1, 2] = MASK_ID
    profile = model.history_profile(ids, feedback)
    assert profile.shape == (4, 2, NUM_FEATURES + 1, 4)
    for row in range(4):
        expected = torch.zeros(2, NUM_FEATURES + 1, 4)
        for position in range(5):
            item = int(ids[row, position])
            if item < 2:  # padding and [MASK] add nothing
                continue
            # Rows after this one: later positions, [MASK] included, padding never.
            later = int((ids[row, position + 1 :] != PAD_ID).sum())
            features = torch.cat([model.item_features[item - 2], torch.ones(1)])
            values = torch.cat([torch.ones(1), feedback[row, position]])
            for scale, decay in enumerate((1.0, 0.5)):
                expected[scale] += decay**later * torch.outer(features, values)
        torch.testing.assert_close(profile[row], expected)
    # Profiles compose: the profile of the first part, aged by the second, plus the second.
    head = model.history_profile(ids[:, :2], feedback[:, :2])
    torch.testing.assert_close(model.history_profile(ids[:, 2:], feedback[:, 2:], head), profile)


def test_the_profile_of_the_whole_history_reaches_the_heads() -> None:
    """Rows older than `max_history_length` change the scores through the profile only."""
    model = make_model().eval()
    long = make_batch(length=MAX_LENGTH + 5)
    recent = {
        name: value[:, -MAX_LENGTH:] if value.ndim >= 2 else value for name, value in long.items()
    }
    whole = model(**long)
    assert not torch.allclose(whole.click_logits, model(**recent).click_logits)
    profile = model.history_profile(long["history_item_ids"], long["history_feedback"])
    torch.testing.assert_close(
        model(**recent, history_profile=profile).click_logits, whole.click_logits
    )
    without = make_model(long_term_profile=False).eval()
    torch.testing.assert_close(without(**long).click_logits, without(**recent).click_logits)
    assert without.profile is None


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        (torch.zeros(4, NUM_FEATURES + 1, 4), r"history_profile must be a float tensor of shape"),
        (torch.full((4, 2, NUM_FEATURES + 1, 4), float("nan")), "history_profile must be finite"),
    ],
)
def test_bad_profiles_are_rejected(profile: torch.Tensor, match: str) -> None:
    model = make_model().eval()
    with pytest.raises(ValueError, match=match):
        model(**make_batch(), history_profile=profile)


def test_non_finite_feedback_beyond_the_window_is_rejected_by_the_profile() -> None:
    model = make_model().eval()
    long = make_batch(length=MAX_LENGTH + 2)
    long["history_feedback"][0, 0, 1] = float("nan")  # truncated away, but profiled
    with pytest.raises(ValueError, match=r"at index \[0, 0, 1\] \(the long-term profile sums"):
        model(**long)


def test_without_item_id_embeddings_items_are_their_features() -> None:
    config = PredictorConfig(
        num_items=4,
        num_item_features=2,
        hidden_size=8,
        num_attention_heads=1,
        num_hidden_layers=1,
        item_id_embeddings=False,
    )
    model = PredictorModel(config)
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_()  # ids must not matter, whatever they hold
    model.set_item_features(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    items = model.catalog_item_embeddings()
    torch.testing.assert_close(items[0], items[1])
    torch.testing.assert_close(items[2], items[3])
    assert not torch.allclose(items[0], items[2])
    # The special tokens keep their own embeddings.
    mask = model.embed_items(torch.tensor([MASK_ID]))
    torch.testing.assert_close(mask[0], model.get_input_embeddings().weight[MASK_ID])
    assert PredictorConfig.from_dict(config.to_dict()).item_id_embeddings is False


# ------------------------------------------------------------ weights of a seed, old checkpoints

# Recorded with the model as one class, before it was built from named parts: the same seed
# must give the same weights (parameter sums, sums of squares) and the same outputs.
# (backbone, long_term_profile, target_attention, loss_weighting) → (tensors, Σ sums,
# Σ squares, loss, click logits, Σ ranking logits).
RECORDED_SEED_0 = {
    ("bert", False, False, "fixed"): (
        37, 62.04131656088566, 66.51582240514689, 10.176604270935059,
        (-0.00022103413357399404, -0.000367888220353052, -0.0003679876681417227),
        -2.8328850781545043,
    ),
    ("bert", True, True, "uncertainty"): (
        49, 202.26125846363084, 207.87725020524246, 10.722193717956543,
        (0.2680814266204834, 0.15409423410892487, 0.2718726396560669),
        -16.399332028697245,
    ),
    ("gpt2", False, True, "fixed"): (
        33, 63.707819353971445, 66.54774025054473, 10.353620529174805,
        (-9.897421841742471e-05, -0.00024114908592309803, -6.890542135806754e-05),
        -4.31286456680391,
    ),
    ("gpt2", True, False, "uncertainty"): (
        43, 202.33845502537133, 207.31012692973331, 9.869078636169434,
        (0.21566219627857208, 0.04063856229186058, 0.18508276343345642),
        2.93255762453191,
    ),
}  # fmt: skip


def recorded_batch() -> dict[str, torch.Tensor]:
    """The fixed batch of `RECORDED_SEED_0`: 3 histories of 6 rows over 50 items, every label."""
    generator = torch.Generator().manual_seed(1)
    ids = to_model_ids(torch.randint(0, 50, (3, 6), generator=generator))
    gaps = torch.randint(1, 10, (3, 6), generator=generator)
    feedback = torch.rand(3, 6, 3, generator=generator)
    ids[0, :2], gaps[0, :2], feedback[0, :2] = PAD_ID, 0, 0.0
    masked = torch.full((3, 6), IGNORE_INDEX)
    masked[:, -1] = 3
    return {
        "history_item_ids": ids,
        "history_feedback": feedback,
        "history_gaps": gaps,
        "target_item_ids": to_model_ids(torch.randint(0, 50, (3,), generator=generator)),
        "target_gaps": torch.randint(1, 10, (3,), generator=generator),
        "click_labels": torch.tensor([1.0, 0.0, 1.0]),
        "watch_time_labels": torch.rand(3, generator=generator),
        "watch_time_mask": torch.tensor([True, False, True]),
        "continuation_labels": torch.ones(3),
        "return_labels": torch.zeros(3),
        "return_mask": torch.tensor([False, True, True]),
        "ranking_labels": torch.tensor([1, IGNORE_INDEX, 3]),
        "masked_item_labels": masked,
    }


@pytest.mark.parametrize("case", list(RECORDED_SEED_0), ids=lambda case: "-".join(map(str, case)))
def test_a_seed_gives_the_recorded_weights_and_outputs(case: tuple[Any, ...]) -> None:
    backbone, profile, target, weighting = case
    tensors, total, squares, loss, clicks, ranking = RECORDED_SEED_0[case]
    torch.manual_seed(0)
    model = PredictorModel(
        PredictorConfig(
            num_items=50,
            num_item_features=4,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            backbone=backbone,
            long_term_profile=profile,
            target_attention=target,
            loss_weighting=weighting,
        )
    )
    parameters = [parameter.detach().double() for parameter in model.parameters()]
    assert len(parameters) == tensors
    assert sum(float(p.sum()) for p in parameters) == pytest.approx(total, rel=1e-9)
    assert sum(float((p**2).sum()) for p in parameters) == pytest.approx(squares, rel=1e-9)
    model.set_item_features(torch.rand(50, 4, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        output = model.eval()(**recorded_batch())
    assert float(output.loss) == pytest.approx(loss, rel=1e-6)
    assert output.click_logits.tolist() == pytest.approx(clicks, rel=1e-5, abs=1e-9)
    assert float(output.ranking_logits.double().sum()) == pytest.approx(ranking, rel=1e-6)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_checkpoints_with_the_weight_names_of_the_one_class_model_load(
    backbone: str, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from loe_gym.predictor.loading import _RENAMED_WEIGHTS

    model = make_model(backbone, target_attention=True, loss_weighting="uncertainty").eval()
    model.save_pretrained(tmp_path)
    weights_file = tmp_path / "model.safetensors"
    # Back to the names of before: `item_id_embeddings.weight`, `candidate_trunk.0.bias`, …
    old_names = {new: old for old, new in _RENAMED_WEIGHTS.items()}

    def old_name(key: str) -> str:
        for new, old in old_names.items():
            if key == new or (new.endswith(".") and key.startswith(new)):
                return old + key[len(new) :]
        return key

    saved = load_file(weights_file)
    old = {old_name(key): value for key, value in saved.items()}
    assert "item_id_embeddings.weight" in old and "candidate_trunk.0.weight" in old
    assert not any(key.startswith(("heads.", "items.", "profile.")) for key in old)
    save_file(old, weights_file, metadata={"format": "pt"})
    loaded = load_predictor(tmp_path)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with pytest.raises(ValueError, match="missing keys"):
        del old["candidate_output.weight"]
        save_file(old, weights_file, metadata={"format": "pt"})
        load_predictor(tmp_path)


def test_config_arguments_are_those_of_init() -> None:
    import inspect

    from loe_gym.predictor.configuration_predictor import _ARGUMENTS

    parameters = set(inspect.signature(PredictorConfig.__init__).parameters) - {"self", "kwargs"}
    assert set(_ARGUMENTS) == parameters
    assert "item_id_embeddings" in _ARGUMENTS
    with pytest.raises(TypeError, match="Did you mean 'item_id_embeddings'"):
        PredictorConfig(num_items=5, num_item_features=2, item_id_embedding=False)
