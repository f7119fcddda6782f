"""Loading a saved `PredictorModel`, refusing partial loads (`load_predictor`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.modeling_predictor import PredictorModel
from loe_gym.tensors import check_finite

__all__ = ["load_predictor"]

_RENAMED_WEIGHTS = {
    "item_id_embeddings.": "items.item_id_embeddings.",
    "item_feature_projection.": "items.item_feature_projection.",
    "feedback_projection.": "embeddings.feedback_projection.",
    "unknown_feedback": "embeddings.unknown_feedback",
    "gap_embeddings.": "embeddings.gap_embeddings.",
    "embedding_layer_norm.": "embeddings.layer_norm.",
    "profile_projection.": "profile.profile_projection.",
    "profile_cross_projection.": "profile.profile_cross_projection.",
    "profile_wide.": "profile.profile_wide.",
    "target_query.": "heads.target_attention.target_query.",
    "candidate_trunk.": "heads.candidate_trunk.",
    "candidate_output.": "heads.candidate_output.",
}
"""Weight names of checkpoints saved before the model was built from named parts (old
prefix → new prefix); `load_predictor` reads both."""


def load_predictor(
    path: str | os.PathLike[str],
    *,
    num_items: int | None = None,
    num_item_features: int | None = None,
) -> PredictorModel:
    """Load a `PredictorModel` saved with ``save_pretrained``, refusing partial loads.

    Unlike a bare ``from_pretrained`` (which fills missing weights with random ones and
    only logs it), any missing, unexpected or mis-shaped weight raises with the key names,
    and a corrupt weights file raises naming the file. ``num_items`` /
    ``num_item_features``, if given, must match the checkpoint (the catalog in use).
    Checkpoints with the weight names of before the model was built from named parts
    (``item_id_embeddings.weight``, ``candidate_trunk.0.weight``, …) load too.

    Returns:
        The model in eval mode.
    """
    directory = os.fspath(path)
    config = _read_config(directory, num_items=num_items, num_item_features=num_item_features)
    weights_file = os.path.join(directory, "model.safetensors")
    try:
        with safe_open(weights_file, framework="pt") as file:
            found = {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"The weights file {weights_file!r} is corrupt or not a safetensors file ({error}); "
            "save the model again with save_pretrained."
        ) from error
    renamed = any(_current_name(key) != key for key in found)
    found = {_current_name(key): shape for key, shape in found.items()}
    with torch.device("meta"):
        expected_shapes = {
            key: tuple(value.shape) for key, value in PredictorModel(config).state_dict().items()
        }
    _raise_on_key_problems(
        weights_file,
        missing=sorted(expected_shapes.keys() - found.keys()),
        unexpected=sorted(found.keys() - expected_shapes.keys()),
        mismatched=[
            f"{key}: checkpoint {found[key]}, config {expected_shapes[key]}"
            for key in sorted(expected_shapes.keys() & found.keys())
            if found[key] != expected_shapes[key]
        ],
    )
    with _current_layout(directory, renamed=renamed) as current:
        try:
            loaded: Any = PredictorModel.from_pretrained(
                current, local_files_only=True, output_loading_info=True
            )
        except (SafetensorError, OSError, RuntimeError, ValueError) as error:
            raise ValueError(
                f"Could not load the predictor weights {weights_file!r}: {error}"
            ) from error
    model, info = loaded
    _raise_on_key_problems(
        weights_file,
        missing=sorted(info.get("missing_keys", ())),
        unexpected=sorted(info.get("unexpected_keys", ())),
        mismatched=[str(item) for item in info.get("mismatched_keys", ())],
    )
    check_finite(model.state_dict().items(), weights_file)
    return model.eval()


def _read_config(
    directory: str, *, num_items: int | None, num_item_features: int | None
) -> PredictorConfig:
    """The checkpoint's config, checked against the catalog sizes asked for."""
    config_file = os.path.join(directory, "config.json")
    for file in (config_file, os.path.join(directory, "model.safetensors")):
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"No predictor checkpoint at {directory!r}: {os.path.basename(file)} is missing; "
                "save one with PredictorModel.save_pretrained(directory)."
            )
    try:
        config = PredictorConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"Could not read the predictor config {config_file!r}: {error}") from error
    for name, expected in (("num_items", num_items), ("num_item_features", num_item_features)):
        if expected is not None and getattr(config, name) != expected:
            raise ValueError(
                f"The checkpoint at {directory!r} was trained for {name}={getattr(config, name)}, "
                f"but {name}={expected} was asked for; use a checkpoint trained on this catalog "
                "or retrain the predictor."
            )
    return config


def _current_name(key: str) -> str:
    """The weight name ``key`` of a checkpoint has in the current model."""
    for old, new in _RENAMED_WEIGHTS.items():
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old) :]
    return key


@contextlib.contextmanager
def _current_layout(directory: str, *, renamed: bool) -> Iterator[str]:
    """``directory``, or with ``renamed`` a temporary copy whose weights have their current
    names (`_RENAMED_WEIGHTS`)."""
    if not renamed:
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="predictor-") as copy:
        shutil.copy(os.path.join(directory, "config.json"), copy)
        weights = load_file(os.path.join(directory, "model.safetensors"))
        save_file(
            {_current_name(key): value for key, value in weights.items()},
            os.path.join(copy, "model.safetensors"),
            metadata={"format": "pt"},
        )
        yield copy


def _raise_on_key_problems(
    weights_file: str, *, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> None:
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"mismatched shapes [{'; '.join(mismatched)}]")
    if problems:
        raise ValueError(
            f"The weights file {weights_file!r} does not match its config.json: "
            f"{', '.join(problems)}. Was config.json edited, or the file written by another "
            "model? Load the config the weights were saved with, or retrain."
        )
