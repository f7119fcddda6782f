"""Logs in, trained predictor and metrics report out (``loe-gym fit-predictor``).

One function, `fit_predictor`, reads a Parquet interaction log, splits its users into
train / validation / test, optionally pre-trains the transformer with masked items,
fine-tunes every head, evaluates on held-out users next to the Bayes references of the
log (when it carries the simulator's privileged columns) and next to popularity and GRU
ranking baselines, and writes the model, ``metrics.json`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loe_gym.config import FrozenConfig
from loe_gym.logs import read_public_catalog
from loe_gym.predictor.baselines import PopularityRanker, ranking_scores, train_gru_ranker
from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.data import (
    MaskedItemBatches,
    TargetBatches,
    UserSequences,
    item_popularity,
    load_sequences,
    split_users,
)
from loe_gym.predictor.metrics import hit_rate_at_k, ndcg_at_k
from loe_gym.predictor.modeling_predictor import PredictorModel
from loe_gym.predictor.training import (
    FitResult,
    TrainingConfig,
    adaptation_lora_modules,
    evaluate,
    evaluate_perturbed,
    finetune,
    pretrain,
)

TASKS = ("click", "watch_time", "ranking", "continuation", "return")


@dataclass(frozen=True)
class FitPredictorConfig(FrozenConfig):
    """Options of `fit_predictor` (``loe-gym fit-predictor --help`` lists them)."""

    hidden_size: int = 64
    """Transformer width."""
    num_hidden_layers: int = 2
    """Transformer layers."""
    num_attention_heads: int = 2
    """Attention heads."""
    max_history_length: int = 20
    """History rows the transformer sees per target (older rows reach the model through
    the long-term profile only)."""
    backbone: str = "bert"
    """``bert`` (bidirectional) or ``gpt2`` (causal)."""
    dropout: float = 0.1
    """Hidden and attention dropout."""
    target_attention: bool = False
    """Candidate heads also attend from the candidate to the history (DIN-style)."""
    long_term_profile: bool = True
    """Summarise each user's whole history per item feature, beside the transformer over
    the last ``max_history_length`` rows (see docs/predictor.md)."""
    profile_decays: tuple[float, ...] = (1.0, 0.95)
    """Time scales of the profile: per-row decay of each (1.0 = plain sums)."""
    target_policies: tuple[str, ...] = ()
    """Train on target rows whose slate these policies chose, e.g. ``diverse:random`` (the
    random component of the ``diverse`` logging policy): outcomes of randomised exposure
    carry no selection bias of the logging policy. Histories keep every row. Empty = all."""
    click_target_policies: tuple[str, ...] = ()
    """Train the click and watch-time heads only on rows whose slate these policies chose
    (e.g. ``diverse:random``); the other heads keep every target row. Empty = all."""
    item_id_embeddings: bool = True
    """Learn an embedding per item id; False = items are their public features only (what
    a learned simulator wants: see docs/simulators/learned.md)."""
    session_return_labels: bool = True
    """Train the return head on every row with its session's outcome, not only on the
    session's last step (evaluation always scores session ends)."""
    pretrain_epochs: int = 0
    """Epochs of masked-item pre-training (0 = none; with the long-term profile it did not
    help at this budget, see docs/predictor.md)."""
    finetune_epochs: int = 4
    """Maximum epochs of multi-task fine-tuning (early stopping on validation loss)."""
    steps_per_epoch: int | None = 1500
    """Cap on optimizer steps per epoch (keeps a run within the time budget)."""
    batch_size: int = 256
    """Targets per batch."""
    learning_rate: float = 2e-3
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases and norms)."""
    tasks: tuple[str, ...] = TASKS
    """Tasks whose losses are trained (others get weight 0): a single-task run names one."""
    loss_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 5.0)
    """Fixed weights of click, watch_time, ranking, continuation, return (in that order).
    Next-day return is a weak, slow signal (the Bayes AUC of the default simulator is
    about 0.6), labelled at session ends only (about 5 % of rows) in evaluation, so it
    gets more weight than the others."""
    loss_weighting: str = "fixed"
    """``fixed`` (weights 1) or ``uncertainty`` (Kendall et al. 2018)."""
    adversarial: str = "none"
    """``none``, ``fgm`` or ``pgd`` perturbation of the input embeddings."""
    adversarial_epsilon: float = 0.1
    """L2 radius of the perturbation, for training and for the perturbed metrics."""
    lora_rank: int | None = None
    """Fine-tune through LoRA adapters of this rank (None = full fine-tuning). With
    ``initial_model``: adapters on the attention and the candidate trunk, the output layers
    trained in full (`adaptation_lora_modules`, 3.9 % of the parameters at hidden 64);
    otherwise attention adapters and the heads trained in full."""
    initial_model: str | None = None
    """Start from this saved predictor (``save_pretrained`` directory) instead of scratch."""
    validation_fraction: float = 0.1
    """Share of users for validation (early stopping)."""
    test_fraction: float = 0.1
    """Share of users held out for the report."""
    validation_target_fraction: float = 0.25
    """Share of the validation users' targets scored after each epoch (early stopping);
    the held-out test users are always scored in full."""
    gru_epochs: int = 1
    """Epochs of the GRU ranking baseline (0 = skip it)."""
    seed: int = 0
    """Seeds the split, the batches and the model."""
    progress: bool = True
    """Progress bars."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_positive("hidden_size", "num_hidden_layers", "num_attention_heads")
        self._check_positive("max_history_length", "finetune_epochs", "batch_size")
        self._check_positive("learning_rate")
        self._check_nonnegative("pretrain_epochs", "gru_epochs", "adversarial_epsilon")
        if self.adversarial != "none" and self.adversarial_epsilon == 0:
            raise ValueError(
                f"adversarial={self.adversarial!r} needs adversarial_epsilon > 0, got 0."
            )
        self._check_unit_interval(
            "dropout", "validation_fraction", "test_fraction", "validation_target_fraction"
        )
        if len(self.loss_weights) != len(TASKS) or any(
            not math.isfinite(w) or w < 0 for w in self.loss_weights
        ):
            raise ValueError(
                f"loss_weights needs {len(TASKS)} finite weights ≥ 0 (for {', '.join(TASKS)}); "
                f"got {self.loss_weights!r}."
            )
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(
                f"tasks must be a non-empty subset of {', '.join(TASKS)}; got {self.tasks!r}."
            )


def _catalog_features(log_path: Path) -> tuple[int, np.ndarray, tuple[str, ...]]:
    catalog = read_public_catalog(log_path)
    if catalog is None:
        raise ValueError(
            f"The log at {str(log_path)!r} has no catalog (_catalog.parquet); the predictor "
            "needs the items' public features. Write logs with a catalog (LogInteractions does)."
        )
    return catalog.num_items, np.asarray(catalog.features, dtype=np.float32), catalog.feature_names


def _training_config(config: FitPredictorConfig, output_dir: Path, epochs: int) -> TrainingConfig:
    return TrainingConfig(
        output_dir=str(output_dir),
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        batch_size=config.batch_size,
        max_epochs=epochs,
        steps_per_epoch=config.steps_per_epoch,
        adversarial=config.adversarial,
        # ε = 0 only turns the perturbed metrics off; training then must not use FGM/PGD.
        adversarial_epsilon=config.adversarial_epsilon or 0.1,
        lora_rank=config.lora_rank,
        seed=config.seed,
        progress=config.progress,
    )


def build_model(config: FitPredictorConfig, num_items: int, features: np.ndarray) -> PredictorModel:
    """A fresh predictor for a catalog, or the saved `initial_model` checked against it."""
    if config.initial_model is not None:
        from loe_gym.predictor.modeling_predictor import load_predictor

        model = load_predictor(
            config.initial_model, num_items=num_items, num_item_features=features.shape[1]
        )
        model.train()
        return model
    torch.manual_seed(config.seed)
    weights = {
        task: (float(weight) if task in config.tasks else 0.0)
        for task, weight in zip(TASKS, config.loss_weights, strict=True)
    }
    weights["masked_item"] = 1.0
    model = PredictorModel(
        PredictorConfig(
            num_items=num_items,
            num_item_features=features.shape[1],
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            hidden_dropout_prob=config.dropout,
            attention_dropout_prob=config.dropout,
            max_history_length=config.max_history_length,
            backbone=config.backbone,
            task_weights=weights,
            loss_weighting=config.loss_weighting,
            target_attention=config.target_attention,
            long_term_profile=config.long_term_profile,
            profile_decays=config.profile_decays,
            item_id_embeddings=config.item_id_embeddings,
        )
    )
    model.set_item_features(features)
    return model


def _ranking_row(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return {
        "ndcg_at_10": float(ndcg_at_k(scores, targets, k=10)),
        "hit_rate_at_10": float(hit_rate_at_k(scores, targets, k=10)),
    }


def fit_predictor(
    log_path: str | Path,
    output_dir: str | Path,
    config: FitPredictorConfig | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train and evaluate a predictor on a log; write ``model/``, ``metrics.json``, ``report.md``.

    Returns the metrics dictionary written to ``metrics.json``.
    """
    config = config or FitPredictorConfig()
    log_path, output_dir = Path(log_path), Path(output_dir)
    if (output_dir / "metrics.json").exists() and not overwrite:
        raise FileExistsError(
            f"{str(output_dir)!r} already holds a finished run (metrics.json); choose another "
            "output directory or pass overwrite=True (--overwrite). An unfinished run there "
            "resumes from its checkpoints."
        )
    start = time.perf_counter()
    num_items, features, feature_names = _catalog_features(log_path)
    sequences, load_report = load_sequences(log_path, num_items=num_items)
    train, validation, test = split_users(
        sequences,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    built = build_model(config, num_items, features)
    predictor_config: PredictorConfig = built.config
    model: torch.nn.Module = built
    length, batch = config.max_history_length, config.batch_size
    # Profiles of the whole past, computed once per split from the catalog's features.
    profile_features = features if predictor_config.long_term_profile else None

    def targets(
        part: UserSequences, shuffle: bool, seed: int, fraction: float = 1.0
    ) -> TargetBatches:
        return TargetBatches(
            part,
            batch_size=batch,
            max_history_length=length,
            shuffle=shuffle,
            seed=seed,
            target_fraction=fraction,
            item_features=profile_features,
            profile_decays=predictor_config.profile_decays,
            # Dense return labels for training only; validation and test score session ends.
            session_return_labels=shuffle and config.session_return_labels,
            # Training targets may be restricted to randomised exposures; validation and
            # test keep every row, so the reported metrics stay comparable.
            target_policies=config.target_policies if shuffle else (),
            click_target_policies=config.click_target_policies if shuffle else (),
        )

    stages: dict[str, Any] = {}
    if config.pretrain_epochs and config.initial_model is None:
        masked = pretrain(
            model,
            MaskedItemBatches(train, batch_size=batch, max_history_length=length, seed=config.seed),
            MaskedItemBatches(
                validation, batch_size=batch, max_history_length=length, shuffle=False
            ),
            _training_config(config, output_dir / "pretrain", config.pretrain_epochs).replace(
                lora_rank=None, adversarial="none"
            ),
        )
        model = masked.model
        stages["pretrain"] = _stage_summary(masked)
    # Built once: the GRU baseline trains on the same batches (profiles take ~450 B a row).
    train_targets = targets(train, True, config.seed)
    finetuning = _training_config(config, output_dir / "finetune", config.finetune_epochs)
    if config.lora_rank is not None and config.initial_model is not None:
        # Adapting a trained model: its heads are trained, adapters on them suffice.
        adapted, saved = adaptation_lora_modules(model)
        finetuning = finetuning.replace(lora_target_modules=adapted, lora_modules_to_save=saved)
    tuned = finetune(
        model,
        train_targets,
        targets(validation, False, 0, config.validation_target_fraction),
        finetuning,
    )
    model = tuned.model
    stages["finetune"] = _stage_summary(tuned)
    model.eval()
    test_batches = targets(test, False, 0)
    metrics = evaluate(model, test_batches)
    perturbed = (
        evaluate_perturbed(model, test_batches, config.adversarial_epsilon)
        if config.adversarial_epsilon > 0
        else {}
    )
    ranking = {
        "transformer": {
            "ndcg_at_10": metrics.get("ranking_ndcg_at_10", math.nan),
            "hit_rate_at_10": metrics.get("ranking_hit_rate_at_10", math.nan),
        }
    }
    popularity = PopularityRanker(item_popularity(train, num_items))
    ranking["popularity"] = _ranking_row(*ranking_scores(popularity, test_batches))
    if config.gru_epochs:
        gru = train_gru_ranker(
            train_targets,
            num_items=num_items,
            hidden_size=config.hidden_size,
            epochs=config.gru_epochs,
            steps_per_epoch=config.steps_per_epoch,
            seed=config.seed,
            progress=config.progress,
        )
        ranking["gru"] = _ranking_row(*ranking_scores(gru, test_batches))
    model.save_pretrained(output_dir / "model")  # type: ignore[operator]
    result = {
        "log": str(log_path),
        "config": config.to_dict(),
        "load_report": dataclasses.asdict(load_report),
        "users": {
            "train": train.num_users,
            "validation": validation.num_users,
            "test": test.num_users,
        },
        "feature_names": list(feature_names),
        "stages": stages,
        "test": metrics,
        "test_perturbed": perturbed,
        "ranking": ranking,
        "seconds": time.perf_counter() - start,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=_json_default))
    (output_dir / "report.md").write_text(render_report(result))
    return result


def _stage_summary(result: FitResult) -> dict[str, Any]:
    return {
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "stopped_early": result.stopped_early,
        "steps": result.global_step,
        "trainable_parameters": result.trainable_parameters,
        "total_parameters": result.total_parameters,
        "trainable_fraction": result.trainable_fraction,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def render_report(result: dict[str, Any]) -> str:
    """The markdown report of a `fit_predictor` run."""
    test = result["test"]
    rows = [
        ("click AUC", "click_auc", "bayes_click_auc"),
        ("click GAUC", "click_gauc", None),
        ("click ECE", "click_ece", "bayes_click_ece"),
        ("click log loss", "click_log_loss", "bayes_click_log_loss"),
        (
            "watch time RMSE (expected minutes, all rows)",
            "watch_time_rmse_expected_minutes",
            "bayes_watch_time_rmse_expected_minutes",
        ),
        ("watch time RMSE (minutes given a click)", "watch_time_rmse_clicked_minutes", None),
        ("continuation AUC", "continuation_auc", None),
        ("next-day return AUC (session ends)", "return_auc", "bayes_return_auc"),
        ("next-day return ECE", "return_ece", "bayes_return_ece"),
        ("ranking NDCG@10", "ranking_ndcg_at_10", None),
        ("ranking HR@10", "ranking_hit_rate_at_10", None),
    ]
    lines = [
        f"# Predictor report — {result['log']}",
        "",
        f"Users: {result['users']}; {result['seconds']:.0f} s in all.",
        "",
        "## Held-out users",
        "",
        "| metric | predictor | Bayes (true probabilities) | perturbed (FGM) |",
        "|---|---|---|---|",
    ]
    perturbed = result.get("test_perturbed") or {}
    for label, key, bayes in rows:
        lines.append(
            f"| {label} | {_format(test.get(key, math.nan))} | "
            f"{_format(test.get(bayes, math.nan)) if bayes else '—'} | "
            f"{_format(perturbed.get(key, math.nan))} |"
        )
    lines += [
        "",
        "## Ranking of the next clicked item (full catalog)",
        "",
        "| model | NDCG@10 | HR@10 |",
        "|---|---|---|",
    ]
    for name, values in result["ranking"].items():
        lines.append(
            f"| {name} | {_format(values['ndcg_at_10'])} | {_format(values['hit_rate_at_10'])} |"
        )
    lines += [
        "",
        "## Training",
        "",
        "```json",
        json.dumps(result["stages"], indent=2, default=_json_default),
        "```",
        "",
    ]
    return "\n".join(lines)
