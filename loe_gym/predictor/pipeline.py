"""Logs in, trained predictor and metrics report out (``loe-gym fit-predictor``).

One function, `fit_predictor`, reads a Parquet interaction log, splits it into
train / validation / test (by users, by time or leaving each user's last click out,
`FitPredictorConfig.split`), optionally pre-trains the transformer with masked items,
fine-tunes every head, evaluates on the held-out part next to the Bayes references of the
log (when it carries the simulator's privileged columns) and next to popularity and GRU
ranking baselines under the ranking protocols of `loe_gym.predictor.protocols`, and
writes the model, ``metrics.json`` and ``report.md`` (`loe_gym.predictor.report`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loe_gym.catalog import Catalog
from loe_gym.logs import log_fingerprint, log_part_files, read_public_catalog
from loe_gym.predictor.batches import MaskedItemBatches, TargetBatches
from loe_gym.predictor.configs import FitPredictorConfig
from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.evaluation import evaluate, evaluate_perturbed
from loe_gym.predictor.fit_inputs import (
    FitParts,
    catalog_text_vectors,
    fit_parts,
    pretrained_backbone_arguments,
)
from loe_gym.predictor.lora import adaptation_lora_modules
from loe_gym.predictor.modeling_predictor import PredictorModel
from loe_gym.predictor.protocols import PROTOCOLS, ranking_table
from loe_gym.predictor.report import json_default, render_report, watch_time_units
from loe_gym.predictor.sequences import UserSequences, load_sequences
from loe_gym.predictor.training import FitResult, finetune, pretrain
from loe_gym.run_folders import finish_run_folder, mark_run_folder, remove_run_folder

__all__ = ["FitPredictorResult", "PredictorRunFolder", "build_model", "fit_predictor"]


@dataclass(frozen=True)
class PredictorRunFolder:
    """The layout of a `fit_predictor` output folder (the one place that knows it)."""

    root: Path

    @property
    def model(self) -> Path:
        """``save_pretrained`` of the fitted model (`PredictorService.from_pretrained` reads it)."""
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def config(self) -> Path:
        """The resolved `FitPredictorConfig` the run used."""
        return self.root / "config.json"

    @property
    def fingerprint(self) -> Path:
        """The options' and the log's hashes: a checkpoint resumes only the same run."""
        return self.root / "fingerprint.json"

    def stage(self, name: str) -> Path:
        """Checkpoints of a training stage (``pretrain``, ``finetune``)."""
        return self.root / name


@dataclass(frozen=True)
class FitPredictorResult:
    """What `fit_predictor` measured; ``metrics.json`` holds the same fields."""

    folder: PredictorRunFolder
    """Where the model, metrics and report were written."""
    log: str
    config: dict[str, Any]
    load_report: dict[str, Any]
    users: dict[str, int]
    """Users per split: ``train``, ``validation``, ``test``."""
    feature_names: list[str]
    stages: dict[str, Any]
    """Per training stage: epochs, best epoch and metric, steps, trainable parameters."""
    test: dict[str, float]
    """The held-out targets' metrics (`loe_gym.predictor.evaluation.evaluate`, AUCs with
    their 95 % intervals), Bayes references included when the log has the privileged
    columns, and the transformer's ranking under every protocol."""
    test_perturbed: dict[str, float]
    ranking: dict[str, dict[str, float]]
    """NDCG@10 and HR@10 of the transformer and the ranking baselines, per protocol
    (`loe_gym.predictor.protocols`: ``ndcg_at_10``, ``ndcg_at_10_unseen``,
    ``ndcg_at_10_sampled_100``, the same for ``hit_rate_at_10``)."""
    seconds: float
    split: dict[str, Any] = dataclasses.field(default_factory=dict)
    """How the log was held out (``kind``: users, temporal with its cut days, or
    leave_last_out with the users that have targets and those that have none)."""
    test_by_item_age: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    """Split by time: the test metrics on ``cold`` items (first seen on test days) and on
    ``warm`` ones."""
    ranking_protocols: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The ranking protocols' targets, repeat targets, sampled negatives and seed."""

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` content."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.pop("folder")
        return values

    @classmethod
    def read(cls, folder: str | Path) -> FitPredictorResult:
        """The result of a finished run in ``folder``."""
        layout = PredictorRunFolder(Path(folder))
        return cls(folder=layout, **json.loads(layout.metrics.read_text()))


def log_catalog(log_path: Path) -> Catalog:
    """The public catalog of the log at ``log_path``, refusing a log without one."""
    catalog = read_public_catalog(log_path)
    if catalog is None:
        raise ValueError(
            f"The log at {str(log_path)!r} has no catalog (_catalog.parquet); the predictor "
            "needs the items' public features. Write logs with a catalog (LogInteractions does)."
        )
    return catalog


def catalog_features(source: Path | Catalog) -> tuple[int, np.ndarray, tuple[str, ...]]:
    """``(num_items, features (num_items, F) float32, feature names)`` of a catalog, or of
    the catalog of the log at ``source``."""
    catalog = source if isinstance(source, Catalog) else log_catalog(source)
    return catalog.num_items, np.asarray(catalog.features, dtype=np.float32), catalog.feature_names


def build_model(
    config: FitPredictorConfig,
    num_items: int,
    features: np.ndarray,
    texts: np.ndarray | None = None,
) -> PredictorModel:
    """A fresh predictor for a catalog, or the saved `initial_model` checked against it.

    The catalog's sizes are filled here: they are read from the log, not options.
    ``texts (num_items, D)`` are the items' text vectors when ``config.model.text_model``
    is set (`catalog_text_vectors`)."""
    if config.initial_model is not None:
        from loe_gym.predictor.loading import load_predictor

        model = load_predictor(
            config.initial_model, num_items=num_items, num_item_features=features.shape[1]
        )
        model.train()
        return model
    torch.manual_seed(config.training.seed)
    arguments = config.model.predictor_arguments()
    if config.model.pretrained_backbone is not None:
        arguments.update(pretrained_backbone_arguments(config.model.pretrained_backbone))
    if texts is not None:
        arguments["text_embedding_size"] = texts.shape[1]
    elif config.model.text_model is not None:
        raise ValueError(
            f"ModelConfig.text_model={config.model.text_model!r} needs the items' text "
            "vectors: pass texts (catalog_text_vectors) or set text_model to None."
        )
    model = PredictorModel(
        PredictorConfig(num_items=num_items, num_item_features=features.shape[1], **arguments)
    )
    model.set_item_features(features)
    if texts is not None:
        model.set_item_text_vectors(texts)
    return model


def _run_fingerprint(config: FitPredictorConfig, log_path: Path) -> dict[str, str]:
    """What a checkpoint may resume: the same options and the same log, byte for byte."""
    options = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return {
        "config": hashlib.sha256(options.encode()).hexdigest(),
        "log": log_fingerprint(log_path),
    }


def _claim_folder(folder: PredictorRunFolder, fingerprint: dict[str, str], overwrite: bool) -> None:
    """Start afresh (``overwrite``: the folder is deleted if loe_gym wrote it), or resume
    only checkpoints of the same run: an unfinished run with other options or another log
    is refused, so its epochs never leak into a new model."""
    if overwrite:
        remove_run_folder(folder.root)
    elif folder.root.exists() and any(folder.root.iterdir()):
        saved = json.loads(folder.fingerprint.read_text()) if folder.fingerprint.is_file() else None
        if saved != fingerprint:
            what = (
                "no fingerprint of the run that wrote it"
                if saved is None
                else "an unfinished run with other "
                + " and ".join(
                    {"config": "options", "log": "logs"}[key]
                    for key in fingerprint
                    if saved.get(key) != fingerprint[key]
                )
            )
            raise FileExistsError(
                f"{str(folder.root)!r} holds {what}; its checkpoints would not resume this "
                "run. Pass overwrite=True (--overwrite) to start afresh there, or choose "
                "another output directory."
            )
    mark_run_folder(folder.root, "fit-predictor")
    if not folder.fingerprint.is_file():
        temporary = folder.fingerprint.with_name(f".{folder.fingerprint.name}.tmp")
        temporary.write_text(json.dumps(fingerprint, indent=2) + "\n")
        os.replace(temporary, folder.fingerprint)


def fit_predictor(
    log_path: str | Path,
    output_dir: str | Path,
    config: FitPredictorConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    allow_partial: bool = False,
) -> FitPredictorResult:
    """Train and evaluate a predictor on a log; write ``model/``, ``metrics.json``,
    ``report.md`` and the resolved ``config.json`` (layout: `PredictorRunFolder`).

    An unfinished run in ``output_dir`` with the same options and log resumes from its
    checkpoints; ``overwrite`` starts afresh; an unclosed log (a killed collection) is
    refused unless ``allow_partial``."""
    config = config or FitPredictorConfig()
    log_path, folder = Path(log_path), PredictorRunFolder(Path(output_dir))
    if folder.metrics.exists() and not overwrite:
        raise FileExistsError(
            f"{str(folder.root)!r} already holds a finished run (metrics.json); choose another "
            "output directory or pass overwrite=True (--overwrite). An unfinished run there "
            "resumes from its checkpoints."
        )
    log_part_files(log_path, allow_partial=allow_partial)  # a bad log claims no folder
    _claim_folder(folder, _run_fingerprint(config, log_path), overwrite)
    start = time.perf_counter()
    catalog = log_catalog(log_path)
    num_items, features, feature_names = catalog_features(catalog)
    if not config.model.item_features:
        # One constant column: no item information, and the profile keeps its shape.
        features, feature_names = np.ones((num_items, 1), np.float32), ("constant",)
    sequences, load_report = load_sequences(
        log_path, num_items=num_items, allow_partial=allow_partial
    )
    parts = fit_parts(config, sequences, log_path)
    texts = catalog_text_vectors(config, catalog, progress)
    model = build_model(config, num_items, features, texts)
    batches = _BatchBuilder(config, model.config, features)
    trained, stages, train_targets = _train(model, config, batches, parts, folder, progress)
    trained.eval()
    test_batches = batches.targets(parts.test, shuffle=False, seed=0, rows=parts.test_rows)
    metrics = evaluate(trained, test_batches)
    by_item_age = _cold_and_warm(trained, batches, parts, num_items)
    epsilon = config.training.adversarial_epsilon
    perturbed = evaluate_perturbed(trained, test_batches, epsilon) if epsilon > 0 else {}
    ranking = ranking_table(config, trained, parts.train, train_targets, test_batches, progress)
    for suffix in PROTOCOLS:  # the transformer's numbers under each protocol, in `test` too
        for metric in ("ndcg", "hit_rate"):
            name = f"{metric}_at_10{suffix}"
            metrics.setdefault(f"ranking_{name}", ranking.models["transformer"][name])
    trained.save_pretrained(folder.model)  # type: ignore[operator]
    result = FitPredictorResult(
        folder=folder,
        log=str(log_path),
        config=config.to_dict(),
        load_report=dataclasses.asdict(load_report),
        users={
            "train": parts.train.num_users,
            "validation": parts.validation.num_users,
            "test": parts.test.num_users,
        },
        split=parts.description,
        feature_names=list(feature_names),
        stages=stages,
        test=metrics,
        test_perturbed=perturbed,
        test_by_item_age=by_item_age,
        ranking=ranking.models,
        ranking_protocols=ranking.description,
        seconds=time.perf_counter() - start,
    )
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.config.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    folder.metrics.write_text(json.dumps(result.to_dict(), indent=2, default=json_default))
    folder.report.write_text(render_report(result.to_dict(), watch_time_units(log_path)))
    finish_run_folder(folder.root, "fit-predictor")
    return result


class _BatchBuilder:
    """The batches of one fit: every split's targets built alike."""

    def __init__(self, config: FitPredictorConfig, model_config: Any, features: np.ndarray) -> None:
        self.config, self.model_config = config, model_config
        self.length = config.model.max_history_length
        self.batch_size = config.training.batch_size
        # Profiles of the whole past, computed once per split from the catalog's features.
        self.profile_features = features if model_config.long_term_profile else None

    def targets(
        self,
        part: UserSequences,
        *,
        shuffle: bool,
        seed: int,
        fraction: float = 1.0,
        rows: np.ndarray | None = None,
    ) -> TargetBatches:
        config = self.config
        return TargetBatches(
            part,
            batch_size=self.batch_size,
            max_history_length=self.length,
            shuffle=shuffle,
            seed=seed,
            target_fraction=fraction,
            item_features=self.profile_features,
            profile_decays=self.model_config.profile_decays,
            # Dense return labels for training only; validation and test score session ends.
            session_return_labels=shuffle and config.session_return_labels,
            # Training targets may be restricted to randomised exposures; validation and
            # test keep every row, so the reported metrics stay comparable.
            target_policies=config.target_policies if shuffle else (),
            click_target_policies=config.click_target_policies if shuffle else (),
            target_rows=rows,
        )

    def masked(self, part: UserSequences, *, shuffle: bool, seed: int = 0) -> MaskedItemBatches:
        return MaskedItemBatches(
            part,
            batch_size=self.batch_size,
            max_history_length=self.length,
            shuffle=shuffle,
            seed=seed,
        )


def _train(
    model: torch.nn.Module,
    config: FitPredictorConfig,
    batches: _BatchBuilder,
    parts: FitParts,
    folder: PredictorRunFolder,
    progress: bool,
) -> tuple[torch.nn.Module, dict[str, Any], TargetBatches]:
    """Pre-training (if asked) and fine-tuning: ``(model, stage summaries, training
    targets)``."""
    train, validation = parts.train, parts.validation
    stages: dict[str, Any] = {}
    seed = config.training.seed
    if config.pretrain_epochs and config.initial_model is None:
        masked = pretrain(
            model,
            batches.masked(train, shuffle=True, seed=seed),
            batches.masked(validation, shuffle=False),
            config.training.replace(
                max_epochs=config.pretrain_epochs, lora_rank=None, adversarial="none"
            ),
            output_dir=folder.stage("pretrain"),
            progress=progress,
        )
        model = masked.model
        stages["pretrain"] = _stage_summary(masked)
    # Built once: the GRU baseline trains on the same batches (profiles take ~450 B a row).
    train_targets = batches.targets(train, shuffle=True, seed=seed)
    finetuning = config.training
    if finetuning.lora_rank is not None and config.initial_model is not None:
        # Adapting a trained model: its heads are trained, adapters on them suffice.
        adapted, saved = adaptation_lora_modules(model)
        finetuning = finetuning.replace(lora_target_modules=adapted, lora_modules_to_save=saved)
    tuned = finetune(
        model,
        train_targets,
        batches.targets(
            validation,
            shuffle=False,
            seed=0,
            fraction=config.validation_target_fraction,
            rows=parts.validation_rows,
        ),
        finetuning,
        output_dir=folder.stage("finetune"),
        progress=progress,
    )
    stages["finetune"] = _stage_summary(tuned)
    return tuned.model, stages, train_targets


def _cold_and_warm(
    model: torch.nn.Module, batches: _BatchBuilder, parts: FitParts, num_items: int
) -> dict[str, dict[str, float]]:
    """Test metrics on targets whose item is cold (first seen on test days) and warm."""
    if parts.cold_items is None or parts.test_rows is None:
        return {}
    cold_rows = parts.cold_items[parts.test.item_id]
    result = {}
    for name, rows in (("cold", cold_rows), ("warm", ~cold_rows)):
        targets = batches.targets(parts.test, shuffle=False, seed=0, rows=parts.test_rows & rows)
        result[name] = {"targets": float(targets.num_targets)}
        if targets.num_targets:
            result[name].update(evaluate(model, targets))
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
