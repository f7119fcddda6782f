"""Checkpoints of a training run: epoch checkpoints to resume from, and the best model.

Layout of a run's ``output_dir``::

    checkpoints/epoch-001/     model.safetensors (every weight of the training model, LoRA
                               adapters included), training_state.pt (optimizer, scheduler,
                               the loop's state), rng_state_0.pt (per process)
    best/                      save_pretrained of the best model (LoRA merged), loadable
                               with load_predictor; metrics.json, training_config.json

Epoch checkpoints hold the full state dict rather than ``save_pretrained`` output: a peft
model's ``save_pretrained`` writes the adapters only, and resuming needs every weight. Every
directory is written aside and renamed into place (`replace_directory`), so an interrupted
run resumes from its last finished epoch. Nothing read back executes code: weights are
safetensors, the rest JSON or ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_model, save_model
from torch import nn

from loe_gym.predictor.configs import TrainingConfig
from loe_gym.predictor.lora import is_peft_model, merge_lora

__all__ = [
    "BEST_DIRECTORY",
    "CHECKPOINTS_DIRECTORY",
    "epoch_directory",
    "finished_checkpoints",
    "load_checkpoint",
    "load_epoch_weights",
    "remove_checkpoints",
    "replace_directory",
    "save_best",
    "save_checkpoint",
]

CHECKPOINTS_DIRECTORY = "checkpoints"
BEST_DIRECTORY = "best"
_MODEL_FILE = "model.safetensors"
_STATE_FILE = "training_state.pt"
# Options that may change between an interrupted run and its resumption without making
# the resumed run a different experiment.
_RESUMABLE_CHANGES = frozenset(
    {"max_epochs", "max_steps", "early_stopping_patience", "log_every", "tensorboard",
     "keep_checkpoints"}
)  # fmt: skip


def epoch_directory(output_dir: Path, epoch: int) -> Path:
    """``output_dir/checkpoints/epoch-NNN``."""
    return output_dir / CHECKPOINTS_DIRECTORY / f"epoch-{epoch:03d}"


def finished_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete epoch checkpoints, oldest first (temporary directories are not listed)."""
    found = []
    for path in (output_dir / CHECKPOINTS_DIRECTORY).glob("epoch-*"):
        suffix = path.name.removeprefix("epoch-")
        if suffix.isdigit() and (path / _STATE_FILE).is_file():
            found.append((int(suffix), path))
    return sorted(found)


def remove_checkpoints(output_dir: Path) -> None:
    """Delete every epoch checkpoint: a fresh run must not resume later from a previous
    run's epochs."""
    shutil.rmtree(output_dir / CHECKPOINTS_DIRECTORY)


def replace_directory(temporary: Path, final: Path) -> None:
    """Move a fully written ``temporary`` directory to ``final``.

    A rename is atomic: a reader (or a resumed run) sees the old directory or the new one,
    never a half-written one. An existing ``final`` is moved aside first and deleted after.
    """
    stale = final.with_name(f".{final.name}.old")
    if stale.exists():
        shutil.rmtree(stale)
    if final.exists():
        os.replace(final, stale)
    os.replace(temporary, final)
    if stale.exists():
        shutil.rmtree(stale)


def _rng_state() -> dict[str, Any]:
    # torch's streams drive dropout and the adapters' initialisation. NumPy's global state
    # is not saved: the project draws from explicit Generators only.
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: Path,
    training: tuple[nn.Module, torch.optim.Optimizer, Any],
    state: Mapping[str, Any],
    config: TrainingConfig,
    task: str,
) -> Path:
    """Write the checkpoint of the epoch ``state["epoch"]`` just finished and prune older
    ones (the best epoch's, ``state["best_epoch"]``, is kept).

    ``training`` is ``(model, optimizer, scheduler)``; ``state`` the loop's state as plain
    values (numbers, lists, dicts), saved with the options and ``task`` it ran with.
    """
    model, optimizer, scheduler = training
    final = epoch_directory(output_dir, state["epoch"])
    temporary = final.with_name(f".{final.name}.tmp")
    if accelerator.is_main_process:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir(parents=True)
        save_model(accelerator.unwrap_model(model), str(temporary / _MODEL_FILE))
        torch.save(
            {
                "state": dict(state),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "config": config.to_dict(),
                "task": task,
            },
            temporary / _STATE_FILE,
        )
    accelerator.wait_for_everyone()
    # Each process keeps its own random stream (dropout differs per process under DDP).
    torch.save(_rng_state(), temporary / f"rng_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(temporary, final)
        _prune_checkpoints(output_dir, config.keep_checkpoints, state["best_epoch"])
    accelerator.wait_for_everyone()
    return final


def _prune_checkpoints(output_dir: Path, keep: int, best_epoch: int | None) -> None:
    finished = finished_checkpoints(output_dir)
    for epoch, path in finished[:-keep]:
        if epoch != best_epoch:
            shutil.rmtree(path)


def load_checkpoint(
    accelerator: Accelerator,
    path: Path,
    training: tuple[nn.Module, torch.optim.Optimizer, Any],
    config: TrainingConfig,
    task: str,
) -> dict[str, Any]:
    """Restore ``(model, optimizer, scheduler)`` and this process's random streams from the
    checkpoint at ``path``; return the loop's state saved with it.

    Raises when the checkpoint is of another task; warns when options other than
    ``_RESUMABLE_CHANGES`` differ from the saved ones (the resumed run is then a different
    experiment from an uninterrupted one).
    """
    model, optimizer, scheduler = training
    saved = torch.load(path / _STATE_FILE, map_location="cpu", weights_only=True)
    if saved["task"] != task:
        raise ValueError(
            f"{path} is a checkpoint of task {saved['task']!r}, not {task!r}; use another "
            "output_dir or pass resume=False to start over."
        )
    changed = sorted(
        name
        for name, value in config.to_dict().items()
        if name not in _RESUMABLE_CHANGES and _comparable(saved["config"].get(name)) != value
    )
    if changed:
        warnings.warn(
            f"Resuming from {path} with changed options {', '.join(changed)}: the resumed "
            "run differs from an uninterrupted one. Pass resume=False to start over.",
            stacklevel=4,
        )
    load_model(accelerator.unwrap_model(model), str(path / _MODEL_FILE))
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng_file = path / f"rng_state_{accelerator.process_index}.pt"
    if rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=True))
    return dict(saved["state"])


def load_epoch_weights(model: nn.Module, output_dir: Path, epoch: int) -> None:
    """Load the weights of epoch ``epoch``'s checkpoint into ``model`` (the training model:
    LoRA adapters included)."""
    load_model(model, str(epoch_directory(output_dir, epoch) / _MODEL_FILE))


def _comparable(value: Any) -> Any:
    # JSON-like round trips turn tuples into lists.
    return tuple(value) if isinstance(value, list) else value


@contextlib.contextmanager
def _transformers_progress_bars_off() -> Iterator[None]:
    """Silence the one-shard "Writing model shards" bar of every ``save_pretrained``."""
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def save_best(
    accelerator: Accelerator,
    output_dir: Path,
    model: nn.Module,
    metrics: Mapping[str, Any],
    config: TrainingConfig,
) -> Path:
    """Write ``output_dir/best``: ``save_pretrained`` of ``model`` (a merged copy of a LoRA
    model), ``metrics.json`` (the epoch's record) and ``training_config.json``."""
    final = output_dir / BEST_DIRECTORY
    if accelerator.is_main_process:
        temporary = output_dir / f".{BEST_DIRECTORY}.tmp"
        if temporary.exists():
            shutil.rmtree(temporary)
        plain = accelerator.unwrap_model(model)
        if is_peft_model(plain):
            # Merge a copy: the training model keeps its adapters.
            plain = merge_lora(copy.deepcopy(plain))
        with _transformers_progress_bars_off():
            plain.save_pretrained(temporary)
        (temporary / "metrics.json").write_text(json.dumps(dict(metrics), indent=2, allow_nan=True))
        (temporary / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        replace_directory(temporary, final)
    accelerator.wait_for_everyone()
    return final
