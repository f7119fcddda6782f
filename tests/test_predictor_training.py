"""Training, evaluation and serving of the predictor (`loe_gym.predictor.training`, `.serving`).

Sizes are tiny (a 30-item catalog, histories of 8, hidden size 16, one layer): every fit
takes a fraction of a second, and what is under test — the loop, checkpoints, LoRA,
adversarial losses, metrics — does not depend on the scale.

The toy log is learnable: an item is clicked when its first public feature exceeds 0.5,
whatever the history, so the click loss of a model that sees the item features must fall.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from loe_gym.predictor import PredictorConfig, PredictorModel, load_predictor
from loe_gym.predictor.batches import MaskedItemBatches, TargetBatches
from loe_gym.predictor.configs import TrainingConfig
from loe_gym.predictor.evaluation import evaluate, evaluate_perturbed
from loe_gym.predictor.lora import (
    HEAD_MODULES,
    adaptation_lora_modules,
    apply_lora,
    default_lora_target_modules,
    merge_lora,
)
from loe_gym.predictor.losses import training_loss
from loe_gym.predictor.sequences import load_sequences, split_users
from loe_gym.predictor.serving import PredictorService
from loe_gym.predictor.training import finetune, fit, pretrain

NUM_ITEMS = 30
NUM_FEATURES = 4
HISTORY = 8
IGNORE = -100

ITEM_FEATURES = np.random.default_rng(0).random((NUM_ITEMS, NUM_FEATURES)).astype(np.float32)
CLICK_PROBABILITY = np.where(ITEM_FEATURES[:, 0] > 0.5, 0.9, 0.1)
"""True click probability of each item in the toy log."""


def make_model(seed: int = 0, **overrides: Any) -> PredictorModel:
    torch.manual_seed(seed)
    config = PredictorConfig.tiny(
        num_items=NUM_ITEMS,
        num_item_features=NUM_FEATURES,
        max_history_length=HISTORY,
        **overrides,
    )
    model = PredictorModel(config)
    model.set_item_features(ITEM_FEATURES)
    return model


def toy_batches(num_batches: int, batch_size: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    """Batches with every key of `batches.TargetBatches`: model inputs, labels, ``user_index``
    and the privileged columns. Model ids are catalog ids + 2; histories are left-padded."""
    rng = np.random.default_rng(seed)
    batches = []
    for index in range(num_batches):
        items = rng.integers(0, NUM_ITEMS, (batch_size, HISTORY))
        lengths = rng.integers(1, HISTORY + 1, batch_size)
        padded = np.arange(HISTORY)[None, :] < (HISTORY - lengths)[:, None]
        clicked = rng.random((batch_size, HISTORY)) < CLICK_PROBABILITY[items]
        minutes = np.where(clicked, rng.exponential(2.0, (batch_size, HISTORY)), 0.0)
        feedback = np.stack([clicked, np.log1p(minutes), clicked * 0.5], axis=-1)
        target = rng.integers(0, NUM_ITEMS, batch_size)
        click_probability = CLICK_PROBABILITY[target]
        click = rng.random(batch_size) < click_probability
        watch = np.where(click, rng.exponential(2.0, batch_size), 0.0)
        session_end = rng.random(batch_size) < 0.3
        returned = rng.random(batch_size) < 0.6
        batches.append(
            {
                "history_item_ids": torch.from_numpy(np.where(padded, 0, items + 2)),
                "history_feedback": torch.from_numpy(
                    np.where(padded[..., None], 0.0, feedback).astype(np.float32)
                ),
                "history_gaps": torch.from_numpy(np.where(padded, 0, 1)),
                "target_item_ids": torch.from_numpy(target + 2),
                "target_gaps": torch.ones(batch_size, dtype=torch.long),
                "click_labels": torch.from_numpy(click.astype(np.float32)),
                "watch_time_labels": torch.from_numpy(np.log1p(watch).astype(np.float32)),
                "watch_time_mask": torch.from_numpy(click),
                "continuation_labels": torch.from_numpy((~session_end).astype(np.float32)),
                "return_labels": torch.from_numpy(returned.astype(np.float32)),
                "return_mask": torch.from_numpy(session_end),
                "ranking_labels": torch.from_numpy(np.where(click, target, IGNORE)),
                "user_index": torch.from_numpy(index * batch_size + np.arange(batch_size) // 4),
                "true_click_probability": torch.from_numpy(click_probability.astype(np.float32)),
                "true_watch_time": torch.from_numpy((2.0 * click_probability).astype(np.float32)),
                "true_return_probability": torch.from_numpy(
                    np.where(session_end, 0.6, np.nan).astype(np.float32)
                ),
            }
        )
    return batches


def masked_batches(num_batches: int, batch_size: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    """Masked-item batches: 20% of the history items replaced by [MASK] (model id 1)."""
    rng = np.random.default_rng(seed)
    batches = []
    for batch in toy_batches(num_batches, batch_size, seed):
        ids = batch["history_item_ids"].numpy()
        mask = (rng.random(ids.shape) < 0.2) & (ids >= 2)
        batches.append(
            {
                "history_item_ids": torch.from_numpy(np.where(mask, 1, ids)),
                "history_feedback": batch["history_feedback"],
                "history_gaps": batch["history_gaps"],
                "masked_item_labels": torch.from_numpy(np.where(mask, ids - 2, IGNORE)),
            }
        )
    return batches


def config(**overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = {
        "learning_rate": 1e-2,
        "max_epochs": 2,
        "early_stopping_patience": None,
        "tensorboard": False,
        "log_every": 5,
    }
    values.update(overrides)
    return TrainingConfig(**values)


def run_in(path: Path) -> dict[str, Any]:
    """The ``output_dir`` and ``progress`` arguments of a run in ``path``."""
    return {"output_dir": path / "run", "progress": False}


def first_batch_inputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    keys = set(PredictorModel.forward.__code__.co_varnames)
    return {key: value for key, value in toy_batches(1)[0].items() if key in keys}


# ------------------------------------------------------------------------------ config


def test_config_rejects_unknown_keys_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match="Did you mean 'learning_rate'"):
        TrainingConfig.from_dict({"learning_rat": 0.1})
    with pytest.raises(TypeError, match="Did you mean 'adversarial_epsilon'"):
        TrainingConfig().replace(adversarial_epsilo=0.2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"warmup_fraction": 1.5}, r"warmup_fraction must lie in \[0, 1\]"),
        ({"adversarial": "fmg"}, "Did you mean 'fgm'"),
        ({"lora_rank": 0}, "lora_rank must be a positive integer or None"),
        ({"max_epochs": 2.5}, "max_epochs must be an integer"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
        ({"lora_target_modules": "query"}, "sequence of module names"),
    ],
)
def test_config_validates_ranges(changes: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        TrainingConfig(**changes)


def test_pgd_step_size_defaults_to_epsilon_over_steps() -> None:
    settings = TrainingConfig(adversarial_epsilon=0.3, pgd_steps=3)
    assert settings.pgd_alpha == pytest.approx(0.1)


# ----------------------------------------------------------------------------- fitting


@pytest.mark.slow
def test_fit_learns_the_toy_log_and_saves_the_best_model(tmp_path: Path) -> None:
    model = make_model()
    result = finetune(
        model,
        toy_batches(12),
        toy_batches(4, seed=1),
        config(max_epochs=3, tensorboard=True),
        **run_in(tmp_path),
    )
    train_losses = [record.train["loss"] for record in result.history]
    validation_click = [record.validation["loss_click"] for record in result.history]
    assert train_losses[-1] < train_losses[0]
    assert validation_click[-1] < validation_click[0]
    assert result.history[-1].validation["click_auc"] > 0.75  # Bayes AUC is about 0.8
    assert [record.epoch for record in result.history] == [1, 2, 3]
    assert result.global_step == 36
    assert result.model is model
    assert result.trainable_fraction > 0.95  # full fine-tuning
    # The best checkpoint loads as a plain model with the best epoch's weights.
    assert result.best_checkpoint == tmp_path / "run" / "best"
    loaded = load_predictor(result.best_checkpoint)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, msg=name)
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    # keep_checkpoints=2: the oldest epoch is pruned unless it is the best one.
    kept = sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept[-2:] == ["epoch-002", "epoch-003"]


def test_pretrain_on_masked_items(tmp_path: Path) -> None:
    result = pretrain(
        make_model(),
        masked_batches(6),
        masked_batches(2, seed=1),
        config(early_stopping_metric="masked_item_hit_rate_at_10"),
        **run_in(tmp_path),
    )
    validation = result.history[-1].validation
    assert {"loss", "loss_masked_item", "masked_item_ndcg_at_10"} <= set(validation)
    assert "click_auc" not in validation
    assert result.best_epoch in (1, 2)


def test_early_stopping_stops_when_validation_gets_worse(tmp_path: Path) -> None:
    # Validation labels are the training labels inverted: the better the model learns
    # the training log, the worse its validation loss, so epoch 1 stays the best.
    validation = toy_batches(4, seed=1)
    for batch in validation:
        batch["click_labels"] = 1.0 - batch["click_labels"]
    result = fit(
        make_model(),
        toy_batches(12),
        validation,
        config(max_epochs=10, early_stopping_patience=2, early_stopping_metric="loss_click"),
        **run_in(tmp_path),
    )
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1
    assert [record.improved for record in result.history] == [True, False, False]
    # The returned model holds epoch 1's weights, not the last epoch's.
    reloaded = evaluate(result.model, validation)
    assert reloaded["loss_click"] == pytest.approx(result.best_metric, rel=1e-5)


def test_batches_of_the_wrong_task_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs batches with masked_item_labels"):
        pretrain(make_model(), toy_batches(2), None, config(), **run_in(tmp_path))
    with pytest.raises(ValueError, match="got masked-item batches"):
        finetune(make_model(), masked_batches(2), None, config(), **run_in(tmp_path))


def test_unknown_early_stopping_metric_is_reported(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="Did you mean 'click_auc'"):
        fit(
            make_model(),
            toy_batches(2),
            toy_batches(1),
            config(early_stopping_metric="click_acu"),
            **run_in(tmp_path),
        )


class _Interrupted(Exception):
    """Stands for a crash or a kill in the middle of an epoch."""


class _CountingBatches:
    """Batches that count the batches drawn and can fail at a given draw."""

    def __init__(self, batches: Any, fail_at: int | None = None) -> None:
        self.batches = batches
        self.fail_at = fail_at
        self.drawn = 0

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Any:
        for batch in self.batches:
            if self.drawn == self.fail_at:
                raise _Interrupted
            self.drawn += 1
            yield batch


def training_batches(kind: str) -> Any:
    """A fresh training set: a list of toy batches, or shuffling `batches.TargetBatches`."""
    if kind == "list":
        return toy_batches(6)
    sequences, _ = load_sequences(log_table(num_users=12), num_items=NUM_ITEMS)
    return TargetBatches(sequences, batch_size=64, max_history_length=HISTORY, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["list", "target_batches"])
def test_resume_after_an_interruption_equals_an_uninterrupted_run(
    tmp_path: Path, kind: str
) -> None:
    validation = toy_batches(2, seed=1)
    # Dropout is on (tiny() keeps 0.1) and TargetBatches shuffle every epoch: equality
    # needs the random streams restored and the epoch's order chosen by set_epoch.
    uninterrupted = fit(
        make_model(),
        training_batches(kind),
        validation,
        config(max_epochs=3),
        **run_in(tmp_path / "a"),
    )
    num_batches = len(training_batches(kind))

    settings, where = config(max_epochs=3), run_in(tmp_path / "b")
    interrupted = _CountingBatches(training_batches(kind), fail_at=num_batches + 2)
    with pytest.raises(_Interrupted):  # fails in the middle of epoch 2
        fit(make_model(), interrupted, validation, settings, **where)
    assert (tmp_path / "b" / "run" / "checkpoints" / "epoch-001").is_dir()
    assert not (tmp_path / "b" / "run" / "checkpoints" / "epoch-002").exists()

    counting = _CountingBatches(training_batches(kind))
    resumed = fit(make_model(seed=1), counting, validation, settings, **where)
    assert counting.drawn == 2 * num_batches  # epochs 2 and 3 only: epoch 1 is not redone
    assert [record.epoch for record in resumed.history] == [1, 2, 3]
    for mine, theirs in zip(resumed.history, uninterrupted.history, strict=True):
        assert mine.train == pytest.approx(theirs.train, rel=1e-6)
    expected = uninterrupted.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)

    # A finished run resumes to itself without training.
    counting = _CountingBatches(training_batches(kind))
    again = fit(make_model(seed=2), counting, validation, settings, **where)
    assert counting.drawn == 0 and len(again.history) == 3


def test_resume_false_starts_over(tmp_path: Path) -> None:
    settings, where = config(max_epochs=1), run_in(tmp_path)
    fit(make_model(), toy_batches(3), None, settings, **where)
    counting = _CountingBatches(toy_batches(3))
    result = fit(
        make_model(), counting, None, settings.replace(max_epochs=2), **where, resume=False
    )
    assert counting.drawn == 6 and len(result.history) == 2
    assert result.best_epoch == 2  # without validation the last epoch is the best


def test_max_steps_and_steps_per_epoch_cap_training(tmp_path: Path) -> None:
    result = fit(
        make_model(),
        toy_batches(6),
        None,
        config(max_epochs=5, steps_per_epoch=4, max_steps=10),
        **run_in(tmp_path),
    )
    assert [record.steps for record in result.history] == [4, 4, 2]
    assert result.global_step == 10


def log_table(num_users: int = 30, steps: int = 24, seed: int = 0) -> pa.Table:
    """A privileged interaction log of the toy rule: one item per step, sessions of 4 steps,
    one session a day."""
    rng = np.random.default_rng(seed)
    shape = (num_users, steps)
    step = np.broadcast_to(np.arange(steps), shape)
    items = rng.integers(0, NUM_ITEMS, shape)
    probability = CLICK_PROBABILITY[items]
    clicked = rng.random(shape) < probability
    session_end = step % 4 == 3
    returned = session_end & (rng.random(shape) < 0.6)
    columns = {
        "user_id": np.repeat(np.arange(num_users), steps),
        "day": (step // 4).ravel(),
        "session": (step // 4).ravel(),
        "step": (step % 4).ravel(),
        "position": np.zeros(step.size, dtype=np.int16),
        "item_id": items.ravel(),
        "clicked": clicked.ravel(),
        "watch_time": np.where(clicked, rng.exponential(2.0, shape), 0.0).ravel(),
        "completion": np.where(clicked, 0.5, 0.0).ravel(),
        "session_end": session_end.ravel(),
        "returned_next_day": returned.ravel(),
        "true_click_probability": probability.ravel(),
        "true_watch_time": 2.0 * probability.ravel(),
        "true_return_probability": np.where(session_end, 0.6, np.nan).ravel(),
    }
    floats = {"watch_time", "completion"} | {name for name in columns if name.startswith("true")}
    return pa.table(
        {
            name: pa.array(values.astype(np.float32) if name in floats else values)
            for name, values in columns.items()
        }
    )


@pytest.mark.slow
def test_pretrain_then_finetune_with_lora_on_batches_of_a_log(tmp_path: Path) -> None:
    sequences, _ = load_sequences(log_table(), num_items=NUM_ITEMS)
    train, validation, _ = split_users(sequences, validation_fraction=0.2, test_fraction=0.0)
    sizes = {"batch_size": 64, "max_history_length": HISTORY}
    pre = pretrain(
        make_model(),
        MaskedItemBatches(train, **sizes, seed=0),
        MaskedItemBatches(validation, **sizes, shuffle=False),
        config(max_epochs=1),
        **run_in(tmp_path / "pre"),
    )
    assert "masked_item_hit_rate_at_10" in pre.history[-1].validation
    fine = finetune(
        pre.model,
        TargetBatches(train, **sizes, seed=0),
        TargetBatches(validation, **sizes, shuffle=False),
        config(lora_rank=2, adversarial="fgm", early_stopping_metric="click_auc"),
        **run_in(tmp_path / "fine"),
    )
    metrics = fine.history[-1].validation
    assert {
        "click_gauc",
        "return_auc",
        "ranking_ndcg_at_10",
        "bayes_click_auc",
        "bayes_return_auc",
        "bayes_watch_time_rmse_expected_minutes",
    } <= set(metrics)
    assert type(fine.model) is PredictorModel


DISTRIBUTED_SCRIPT = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, {tests!r})
import test_predictor_training as toy
from loe_gym.predictor.training import fit

settings = toy.config(max_epochs=1, adversarial="fgm")
result = fit(
    toy.make_model(), toy.toy_batches(4), toy.toy_batches(1, seed=1), settings,
    **toy.run_in(Path(sys.argv[1])),
)
checksum = sum(parameter.double().sum().item() for parameter in result.model.parameters())
# A file per rank: the two processes' stdout lines may interleave under load.
rank = torch.distributed.get_rank()
line = f"{{rank}} {{result.history[0].steps}} {{checksum!r}}"
(Path(sys.argv[1]) / f"result_{{rank}}.txt").write_text(line)
"""


@pytest.mark.slow
def test_fit_runs_unchanged_under_ddp(tmp_path: Path) -> None:
    # Two CPU processes over gloo; ACCELERATE_USE_CPU makes accelerate use them (on GPUs,
    # `accelerate launch --multi_gpu` is the equivalent).
    script = tmp_path / "train.py"
    script.write_text(DISTRIBUTED_SCRIPT.format(tests=str(Path(__file__).parent)))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path),
        ],
        env={**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    files = sorted(tmp_path.glob("result_*.txt"))
    assert len(files) == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    results = [file.read_text().split() for file in files]
    assert [rank for rank, _, _ in results] == ["0", "1"]
    assert [steps for _, steps, _ in results] == ["2", "2"]  # 4 batches shared by 2 processes
    assert results[0][2] == results[1][2]  # one model: the weights agree exactly


# ------------------------------------------------------------------------- adversarial


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adversarial_losses_exceed_the_clean_loss(method: str) -> None:
    model = make_model(hidden_dropout_prob=0.0, attention_dropout_prob=0.0)
    inputs = first_batch_inputs(model)
    settings = TrainingConfig(adversarial=method, adversarial_epsilon=0.5, adversarial_weight=0.5)
    parts = training_loss(model, inputs, settings)
    assert parts.adversarial is not None
    # A step along the gradient raises the loss; the total is L_clean + λ·L_adversarial.
    assert parts.adversarial.item() > parts.clean.item()
    torch.testing.assert_close(parts.total, parts.clean + 0.5 * parts.adversarial)
    clean = model(**inputs).loss
    torch.testing.assert_close(parts.clean, clean)
    # Gradients reach the weights through both losses.
    parts.total.backward()
    assert model.heads.candidate_output.weight.grad is not None


def test_pgd_is_at_least_as_strong_as_fgm_and_stays_in_the_ball() -> None:
    from loe_gym.predictor.adversarial import forward_with_gradient as _forward_with_gradient
    from loe_gym.predictor.adversarial import per_example_normalise as _per_example_normalise
    from loe_gym.predictor.adversarial import project as _project

    model = make_model(hidden_dropout_prob=0.0, attention_dropout_prob=0.0)
    inputs = first_batch_inputs(model)
    epsilon = 0.5
    fgm = training_loss(
        model,
        inputs,
        TrainingConfig(adversarial="fgm", adversarial_epsilon=epsilon),
    )
    pgd = training_loss(
        model,
        inputs,
        TrainingConfig(
            adversarial="pgd",
            adversarial_epsilon=epsilon,
            pgd_steps=5,
            pgd_step_size=0.25,
        ),
    )
    assert pgd.adversarial.item() >= fgm.adversarial.item() - 1e-3
    _, gradient = _forward_with_gradient(model, inputs, None)
    noise = _project(3.0 * _per_example_normalise(gradient), epsilon)
    norms = noise.flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, epsilon))


def test_fit_with_fgm_reports_the_adversarial_loss(tmp_path: Path) -> None:
    result = fit(
        make_model(),
        toy_batches(4),
        toy_batches(2, seed=1),
        config(max_epochs=1, adversarial="fgm"),
        **run_in(tmp_path),
    )
    train = result.history[0].train
    assert train["loss"] == pytest.approx(train["clean_loss"] + train["adversarial_loss"])
    assert train["adversarial_loss"] > train["clean_loss"]


def test_evaluate_perturbed_is_worse_than_clean() -> None:
    model = make_model()
    batches = toy_batches(2, seed=1)
    clean = evaluate(model, batches)
    perturbed = evaluate_perturbed(model, batches, epsilon=1.0)
    assert set(perturbed) == set(clean)
    assert perturbed["loss"] > clean["loss"]
    assert evaluate_perturbed(model, batches, epsilon=0.0)["loss"] == pytest.approx(clean["loss"])
    assert model.training  # the mode is restored


# -------------------------------------------------------------------------------- LoRA


def test_lora_trains_only_adapters_and_heads() -> None:
    model = make_model()
    settings = TrainingConfig(lora_rank=4)
    peft_model = apply_lora(model, settings)
    before = {name: value.detach().clone() for name, value in peft_model.named_parameters()}
    trainable = {name for name, value in peft_model.named_parameters() if value.requires_grad}
    assert trainable, "LoRA left nothing to train"
    for name in trainable:
        assert (
            "lora_" in name
            or "modules_to_save" in name
            or name.endswith("_bias")
            or "log_variances" in name
        ), name
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], 1e-2)
    for _ in range(2):  # two steps: LoRA's B starts at 0, so A moves from the second one
        training_loss(peft_model, first_batch_inputs(model), settings).total.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {
        name
        for name, value in peft_model.named_parameters()
        if not torch.equal(value.detach(), before[name])
    }
    assert changed <= trainable
    assert any("lora_A" in name for name in changed)
    assert any("lora_B" in name for name in changed)
    assert any("modules_to_save" in name for name in changed)


@pytest.mark.parametrize("backbone", ["bert", "gpt2"])
def test_merged_lora_model_gives_the_same_outputs(backbone: str) -> None:
    model = make_model(backbone=backbone)
    settings = TrainingConfig(lora_rank=4)
    peft_model = apply_lora(model, settings)
    # Move every trainable weight (B starts at 0: the merge would be trivially exact).
    with torch.no_grad():
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    peft_model.eval()
    inputs = first_batch_inputs(model)
    with torch.no_grad():
        expected = peft_model(**inputs)
    merged = merge_lora(peft_model)
    assert type(merged) is PredictorModel
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        actual = merged.eval()(**inputs)
    for name in ("loss", "click_logits", "watch_time", "ranking_logits", "user_state"):
        torch.testing.assert_close(
            getattr(actual, name), getattr(expected, name), msg=name, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("backbone", ["bert", "gpt2"])
def test_adaptation_lora_adapts_the_trunk_and_trains_only_the_output_layers(
    backbone: str,
) -> None:
    model = make_model(backbone=backbone)
    targets, saved = adaptation_lora_modules(model)
    assert targets == (
        *default_lora_target_modules(model),
        "candidate_trunk.0",
        "candidate_trunk.3",
    )
    assert saved == ("candidate_output", "profile_wide")
    settings = TrainingConfig(lora_rank=2, lora_target_modules=targets, lora_modules_to_save=saved)
    trainable = {
        name: value.numel()
        for name, value in apply_lora(model, settings).named_parameters()
        if value.requires_grad
    }
    assert any("candidate_trunk.0.lora_A" in name for name in trainable)
    assert any("candidate_trunk.3.lora_B" in name for name in trainable)
    # The trunk's own weights stay frozen; only adapters and the two output layers train.
    assert all(
        "lora_" in name or "candidate_output" in name or "profile_wide" in name
        for name in trainable
    ), sorted(trainable)
    heads_in_full = apply_lora(
        make_model(backbone=backbone),
        settings.replace(lora_target_modules=None, lora_modules_to_save=None),
    )
    default = sum(v.numel() for v in heads_in_full.parameters() if v.requires_grad)
    assert sum(trainable.values()) < default
    # Without a long-term profile there is no wide layer to train.
    assert adaptation_lora_modules(make_model(long_term_profile=False))[1] == ("candidate_output",)


def test_fit_with_lora_returns_a_merged_model(tmp_path: Path) -> None:
    result = finetune(
        make_model(),
        toy_batches(4),
        toy_batches(2, seed=1),
        config(lora_rank=2),
        **run_in(tmp_path),
    )
    assert type(result.model) is PredictorModel
    assert 0.0 < result.trainable_fraction < 0.5
    loaded = load_predictor(result.best_checkpoint)
    batches = toy_batches(1, seed=2)
    assert evaluate(loaded, batches)["loss"] == pytest.approx(
        evaluate(result.model, batches)["loss"], rel=1e-5
    )


def test_lora_modules_to_save_are_checked() -> None:
    settings = TrainingConfig(lora_rank=2, lora_modules_to_save=("candidate_outpt",))
    with pytest.raises(ValueError, match="Did you mean 'candidate_output'"):
        apply_lora(make_model(), settings)
    assert "candidate_output" in HEAD_MODULES
    # A suffix names every module ending with it, as peft matches: all the layer norms.
    settings = TrainingConfig(lora_rank=2, lora_modules_to_save=("LayerNorm",))
    trained = {
        name
        for name, value in apply_lora(make_model(), settings).named_parameters()
        if value.requires_grad and "lora_" not in name
    }
    assert trained and all("LayerNorm.modules_to_save" in name for name in trained)
    # Any module may train in full, the profile projections too (peft wraps them).
    settings = settings.replace(
        lora_modules_to_save=("profile_projection", "profile_cross_projection", "backbone"),
        lora_target_modules=("candidate_trunk.0",),
    )
    peft_model = apply_lora(make_model(), settings)
    training_loss(peft_model, first_batch_inputs(make_model()), settings).total.backward()
    projection = peft_model.base_model.model.profile.profile_cross_projection[1]
    assert projection.modules_to_save.default.weight.grad is not None


def test_dora_trains_a_magnitude_per_adapted_layer_and_merges_exactly() -> None:
    settings = TrainingConfig(lora_rank=2, lora_use_dora=True)
    model = make_model()
    peft_model = apply_lora(model, settings)
    magnitudes = [
        name
        for name, value in peft_model.named_parameters()
        if "lora_magnitude_vector" in name and value.requires_grad
    ]
    assert len(magnitudes) == 2 * model.config.num_hidden_layers  # query and value per layer
    with torch.no_grad():
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    inputs = first_batch_inputs(model)
    with torch.no_grad():
        expected = peft_model.eval()(**inputs).click_logits
        merged = merge_lora(peft_model)
        torch.testing.assert_close(
            merged.eval()(**inputs).click_logits, expected, atol=1e-5, rtol=1e-5
        )


def test_lora_bias_all_trains_every_bias_and_nothing_else_new() -> None:
    def trainable(bias: str) -> set[str]:
        settings = TrainingConfig(lora_rank=2, lora_modules_to_save=(), lora_bias=bias)
        peft_model = apply_lora(make_model(), settings)
        return {name for name, value in peft_model.named_parameters() if value.requires_grad}

    adapters_only, with_biases = trainable("none"), trainable("all")
    assert all("lora_" in name for name in adapters_only)
    added = with_biases - adapters_only
    assert added and all(name.endswith(".bias") for name in added)
    assert any("item_feature_projection.bias" in name for name in added)
    with pytest.raises(
        ValueError, match="lora_bias must be one of 'none', 'lora_only', 'all', got 'some'"
    ):
        TrainingConfig(lora_bias="some")


# -------------------------------------------------------------------------- evaluation


def test_evaluate_reports_every_metric() -> None:
    metrics = evaluate(make_model(), toy_batches(3, seed=1))
    expected = {
        "loss",
        "loss_click",
        "loss_watch_time",
        "loss_continuation",
        "loss_return",
        "loss_ranking",
        "click_auc",
        "click_gauc",
        "click_ece",
        "watch_time_rmse_clicked_minutes",
        "watch_time_rmse_expected_minutes",
        "continuation_auc",
        "return_auc",
        "return_ece",
        "ranking_ndcg_at_10",
        "ranking_hit_rate_at_10",
        "bayes_click_auc",
        "bayes_click_ece",
        "bayes_click_log_loss",
        "click_log_loss",
        "return_log_loss",
        "bayes_watch_time_rmse_expected_minutes",
        "bayes_return_auc",
    }
    assert expected <= set(metrics)
    for name in (
        "click_auc",
        "click_gauc",
        "click_ece",
        "ranking_ndcg_at_10",
        "ranking_hit_rate_at_10",
        "bayes_click_auc",
    ):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["bayes_click_auc"] > 0.75  # p = 0.9 vs 0.1: the Bayes AUC is about 0.85
    assert all(math.isfinite(value) for value in metrics.values())


# ----------------------------------------------------------------------------- serving


def environment_histories(num_users: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Histories as the environment observes them: catalog ids, −1 for "no item"."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, NUM_ITEMS, (num_users, HISTORY))
    ids[:, : HISTORY // 2] = np.where(
        rng.random((num_users, HISTORY // 2)) < 0.5, -1, ids[:, : HISTORY // 2]
    )
    ids[0] = -1  # a user with no history yet
    feedback = np.stack(
        [rng.random(ids.shape) < 0.5, rng.exponential(2.0, ids.shape), rng.random(ids.shape)],
        axis=-1,
    ).astype(np.float32)
    gaps = np.where(ids >= 0, 1, 0)
    return {"history_item_ids": ids, "history_feedback": feedback, "history_gaps": gaps}


def test_service_encode_and_predict_shapes() -> None:
    service = PredictorService(make_model(), batch_size=4)
    histories = environment_histories(10)
    candidates = np.random.default_rng(1).integers(0, NUM_ITEMS, (10, 5))
    copies = {name: value.copy() for name, value in histories.items()}
    states = service.encode(**histories)
    assert states.shape == (10, 16) and states.dtype == np.float32
    scores = service.predict(**histories, candidate_ids=candidates)
    assert set(scores) >= {
        "click_probability",
        "watch_time",
        "continuation_probability",
        "return_probability",
    }
    for name, value in scores.items():
        assert value.shape == (10, 5) and value.dtype == np.float32, name
        assert np.isfinite(value).all()
    for name in ("click_probability", "continuation_probability", "return_probability"):
        assert ((scores[name] >= 0) & (scores[name] <= 1)).all()
    for name, value in copies.items():  # inputs are never modified
        np.testing.assert_array_equal(histories[name], value)
    # Chunking does not change the result.
    whole = PredictorService(service.model, batch_size=4096).predict(
        **histories, candidate_ids=candidates
    )
    for name, value in whole.items():
        np.testing.assert_allclose(scores[name], value, rtol=1e-5, atol=1e-6)


def test_service_matches_the_model_on_converted_inputs() -> None:
    model = make_model().eval()
    service = PredictorService(model)
    histories = environment_histories(6)
    # Garbage in the padding positions must not matter: they become padding tokens.
    noisy = {name: value.copy() for name, value in histories.items()}
    noisy["history_feedback"][histories["history_item_ids"] < 0] = 7.0
    noisy["history_gaps"][histories["history_item_ids"] < 0] = 3
    np.testing.assert_allclose(service.encode(**noisy), service.encode(**histories), atol=1e-6)

    ids = histories["history_item_ids"]
    feedback = histories["history_feedback"].copy()
    feedback[..., 1] = np.log1p(feedback[..., 1])
    feedback[ids < 0] = 0.0
    with torch.no_grad():
        expected = model.encode(
            torch.from_numpy(np.where(ids >= 0, ids + 2, 0)),
            torch.from_numpy(feedback),
            torch.from_numpy(histories["history_gaps"]),
            torch.ones(6, dtype=torch.long),
        )
    np.testing.assert_allclose(service.encode(**histories), expected.numpy(), atol=1e-5)


def test_service_rejects_bad_ids() -> None:
    service = PredictorService(make_model())
    histories = environment_histories(2)
    histories["history_item_ids"][1, -1] = NUM_ITEMS
    with pytest.raises(ValueError, match=r"history_item_ids must lie in \[-1, 30\)"):
        service.encode(**histories)
    with pytest.raises(ValueError, match=r"candidate_ids must lie in \[0, 30\)"):
        service.predict(**environment_histories(2), candidate_ids=np.full((2, 3), -1))
    with pytest.raises(ValueError, match="history_item_ids\\[None\\]"):
        service.encode(np.zeros(HISTORY, int), np.zeros((HISTORY, 3)), np.ones(HISTORY, int))


def test_service_running_profiles_stand_for_the_whole_history() -> None:
    """An agent can keep one profile per user and pass only the recent rows."""
    service = PredictorService(make_model(), batch_size=4)
    older, recent = environment_histories(6, seed=1), environment_histories(6, seed=2)
    whole = {
        name: np.concatenate([older[name], recent[name]], axis=1)
        for name in ("history_item_ids", "history_feedback", "history_gaps")
    }
    running = service.history_profile(
        recent["history_item_ids"],
        recent["history_feedback"],
        previous_profile=service.history_profile(
            older["history_item_ids"], older["history_feedback"]
        ),
    )
    expected = service.history_profile(whole["history_item_ids"], whole["history_feedback"])
    assert running.shape == (6, 2, NUM_FEATURES + 1, 4)
    np.testing.assert_allclose(running, expected, rtol=1e-5, atol=1e-5)
    # The transformer sees the last HISTORY rows (= recent), the profile all of them.
    np.testing.assert_allclose(
        service.encode(**recent, history_profile=running), service.encode(**whole), atol=1e-5
    )
    assert not np.allclose(service.encode(**recent), service.encode(**whole), atol=1e-5)
    with pytest.raises(ValueError, match=r"history_profile must have shape \(N, time scales"):
        service.encode(**recent, history_profile=running[:, 0])
    plain = PredictorService(make_model(long_term_profile=False))
    with pytest.raises(ValueError, match="has no long-term profile"):
        plain.history_profile(recent["history_item_ids"], recent["history_feedback"])
