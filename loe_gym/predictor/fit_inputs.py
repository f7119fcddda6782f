"""What `fit_predictor` prepares before training: the held-out parts of the log (by users,
by time or leaving each user's last click out), the items' text vectors and the sizes of a
pretrained backbone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loe_gym.catalog import Catalog
from loe_gym.predictor.configs import FitPredictorConfig
from loe_gym.predictor.sequences import UserSequences, split_users
from loe_gym.predictor.splits import leave_last_out_split, log_calendar_days, temporal_split

__all__ = ["FitParts", "catalog_text_vectors", "fit_parts", "pretrained_backbone_arguments"]


@dataclass(frozen=True)
class FitParts:
    """Training, validation and test sequences; ``*_rows`` restrict a part's targets
    (``None``: every row of the part is a target)."""

    train: UserSequences
    validation: UserSequences
    test: UserSequences
    validation_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    cold_items: np.ndarray | None = None
    """``(num_items,) bool`` items first seen on test days (temporal split only)."""
    description: dict[str, Any] = field(default_factory=dict)


def fit_parts(config: FitPredictorConfig, sequences: UserSequences, log_path: Path) -> FitParts:
    """Split ``sequences`` as ``config.split`` asks, refusing an empty part."""
    if config.split == "leave_last_out":
        held_out = leave_last_out_split(sequences)
        return FitParts(
            held_out.train,
            held_out.validation,
            held_out.test,
            held_out.validation_rows,
            held_out.test_rows,
            description={
                "kind": "leave_last_out",
                "users_with_targets": held_out.users_with_targets,
                "users_without_targets": held_out.users_without_targets,
                "test_rows": int(held_out.test_rows.sum()),
            },
        )
    if config.split == "temporal":
        split = temporal_split(
            sequences,
            validation_fraction=config.validation_fraction,
            test_fraction=config.test_fraction,
            calendar_days=log_calendar_days(sequences, log_path),
        )
        cold = split.cold_items(sequences.num_items)
        return FitParts(
            split.train,
            split.validation,
            split.test,
            split.validation_rows,
            split.test_rows,
            cold,
            {
                "kind": "temporal",
                "validation_from_day": split.validation_day,
                "test_from_day": split.test_day,
                "test_rows": int(split.test_rows.sum()),
                "cold_test_rows": int((cold[split.test.item_id] & split.test_rows).sum()),
            },
        )
    train, validation, test = split_users(
        sequences,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        seed=config.training.seed,
    )
    for name, part in (("training", train), ("validation", validation), ("test", test)):
        if part.num_users == 0 and (name != "validation" or config.validation_fraction > 0):
            raise ValueError(
                f"The log {str(log_path)!r} holds {sequences.num_users} users, which leaves "
                f"none for the {name} split (validation_fraction="
                f"{config.validation_fraction}, test_fraction={config.test_fraction}); "
                "collect more users or change the fractions."
            )
    return FitParts(train, validation, test, description={"kind": "users"})


def catalog_text_vectors(
    config: FitPredictorConfig, catalog: Catalog, progress: bool
) -> np.ndarray | None:
    """``(num_items, D)`` text vectors of a log's catalog with ``config.model.text_model``
    (cached, `loe_gym.predictor.text.item_text_vectors`), standardised per dimension, or
    None without a text model."""
    if config.model.text_model is None or config.initial_model is not None:
        return None
    if catalog.texts is None:
        raise ValueError(
            f"ModelConfig.text_model={config.model.text_model!r} needs item texts, but the "
            "log's catalog has none (no text column in _catalog.parquet); "
            "import an item table with text, or set text_model to None."
        )
    from loe_gym.predictor.text import item_text_vectors

    vectors = item_text_vectors(catalog.texts, config.model.text_model, progress=progress)
    # Standardised per dimension over the catalog: a language model's vectors share a large
    # common direction that says nothing about one item against another, and a projection
    # learns faster from centred inputs of unit scale.
    return (vectors - vectors.mean(0)) / (vectors.std(0) + 1e-6)


def pretrained_backbone_arguments(name: str) -> dict[str, Any]:
    """`PredictorConfig` arguments that start the backbone from the pretrained model
    ``name`` (``minilm`` or a local folder): its path, type and sizes."""
    from loe_gym.predictor.text import resolve_text_model

    path = resolve_text_model(name)
    settings = json.loads((path / "config.json").read_text(encoding="utf-8"))
    kind = settings.get("model_type")
    if kind == "bert":
        sizes = {
            "hidden_size": settings["hidden_size"],
            "num_hidden_layers": settings["num_hidden_layers"],
            "num_attention_heads": settings["num_attention_heads"],
            "intermediate_size": settings["intermediate_size"],
        }
    elif kind == "gpt2":
        sizes = {
            "hidden_size": settings["n_embd"],
            "num_hidden_layers": settings["n_layer"],
            "num_attention_heads": settings["n_head"],
            "intermediate_size": settings.get("n_inner") or 4 * settings["n_embd"],
        }
    else:
        raise ValueError(
            f"ModelConfig.pretrained_backbone={name!r} holds a {kind!r} model; the predictor's "
            "backbone is BERT or GPT-2: pass a local folder of one of them."
        )
    return {"backbone": kind, "backbone_path": str(path), **sizes}
