"""Training of the predictor: masked-item pre-training, multi-task fine-tuning, LoRA, FGM/PGD.

One plain PyTorch loop, read top to bottom in `fit`, run through `accelerate.Accelerator`:
``python train.py`` trains on one device; ``accelerate launch --multi_gpu train.py`` (GPUs)
or ``ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 train.py`` (CPU processes over
gloo) trains with DDP, with no change to the code. Under DDP each process takes every
``num_processes``-th batch and validates on all of them. Every epoch ends with a validation
pass, a checkpoint (written atomically, so an interrupted run resumes from its last
finished epoch) and, when the validation metric improved, a copy of the model at
``output_dir/best``.

Layout of ``output_dir``::

    checkpoints/epoch-001/     model.safetensors (every weight of the training model, LoRA
                               adapters included), training_state.pt (optimizer, scheduler,
                               history, early-stopping state), rng_state_0.pt (per process)
    best/                      save_pretrained of the best model (LoRA merged), loadable
                               with load_predictor; metrics.json, training_config.json
    tensorboard/               TensorBoard scalars: train/*, validation/*

Epoch checkpoints hold the full state dict rather than ``save_pretrained`` output: a peft
model's ``save_pretrained`` writes the adapters only, and resuming needs every weight.

Example (the whole pipeline)::

    result = pretrain(model, masked_train, masked_validation, TrainingConfig(output_dir="pre"))
    result = finetune(result.model, train, validation,
                      TrainingConfig(output_dir="fine", lora_rank=8, adversarial="fgm"))
    metrics = evaluate(result.model, test)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import logging
import math
import os
import random
import shutil
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, extract_model_from_parallel, set_seed
from safetensors.torch import load_model, save_model
from torch import nn
from tqdm.auto import tqdm

from loe_gym.config import FrozenConfig
from loe_gym.errors import did_you_mean
from loe_gym.predictor import metrics as metric_functions

logger = logging.getLogger(__name__)

__all__ = [
    "ADVERSARIAL_METHODS",
    "HEAD_MODULES",
    "HEAD_PARAMETERS",
    "TRAINING_TASKS",
    "EpochRecord",
    "FitResult",
    "LossParts",
    "TrainingConfig",
    "adaptation_lora_modules",
    "apply_lora",
    "default_lora_target_modules",
    "evaluate",
    "evaluate_perturbed",
    "finetune",
    "fit",
    "merge_lora",
    "parameter_counts",
    "pretrain",
    "training_loss",
]

TRAINING_TASKS = ("multitask", "masked_item")
"""``multitask``: fine-tuning of every head on target rows; ``masked_item``: BERT4Rec
pre-training on masked history windows."""

ADVERSARIAL_METHODS = ("none", "fgm", "pgd")
"""Perturbations of the input embeddings during training (see `training_loss`)."""

LR_SCHEDULES = ("linear", "cosine")
"""Decay after the linear warm-up (``transformers.get_scheduler`` names)."""

MIXED_PRECISION = ("no", "fp16", "bf16")
"""``accelerate`` mixed-precision modes."""

LORA_BIASES = ("none", "lora_only", "all")
"""peft's ``bias`` options: which biases train with the adapters."""

EARLY_STOPPING_MODES = ("auto", "min", "max")
"""``auto``: maximise AUC / GAUC / NDCG / hit-rate metrics, minimise the others."""

EVALUATION_KEYS = (
    "user_index",
    "true_click_probability",
    "true_watch_time",
    "true_return_probability",
)
"""Batch keys used by `evaluate` only; they are never passed to the model."""

RANKING_CUTOFF = 10
"""``k`` of the reported NDCG@k and HR@k."""

_HIGHER_IS_BETTER = ("auc", "ndcg", "hit_rate", "accuracy")
_CHECKPOINTS = "checkpoints"
_BEST = "best"
_MODEL_FILE = "model.safetensors"
_STATE_FILE = "training_state.pt"
# Options that may change between an interrupted run and its resumption without making
# the resumed run a different experiment.
_RESUMABLE_CHANGES = frozenset(
    {"max_epochs", "max_steps", "early_stopping_patience", "log_every", "progress",
     "tensorboard", "keep_checkpoints"}
)  # fmt: skip


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainingConfig(FrozenConfig):
    """Options of `fit`, `pretrain` and `finetune`; unknown keys are rejected with a suggestion.

    >>> TrainingConfig(output_dir="run").learning_rate
    0.001
    >>> TrainingConfig.from_dict({"output_dir": "run", "learning_rat": 0.1})
    Traceback (most recent call last):
    ...
    TypeError: TrainingConfig got an unknown option 'learning_rat'. Did you mean 'learning_rate'? ...
    """

    output_dir: str
    """Directory of checkpoints, the best model and TensorBoard logs (created if needed)."""
    learning_rate: float = 1e-3
    """Peak learning rate of AdamW, reached at the end of the warm-up."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay; not applied to biases, LayerNorm weights and other
    1-d parameters (e.g. the learned loss log-variances)."""
    batch_size: int = 256
    """Rows per batch per process, for the caller's batch builders (`data.TargetBatches`);
    `fit` consumes batches already built. Under DDP the effective batch is
    ``batch_size × num_processes``."""
    max_epochs: int = 10
    """Passes over the training batches (each possibly capped by ``steps_per_epoch``)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps in all (the last epoch may be partial)."""
    steps_per_epoch: int | None = None
    """Cap on the optimizer steps of one epoch; required when the batches have no length."""
    gradient_clip_norm: float | None = 1.0
    """Clip the global gradient norm to this value; ``None`` disables clipping."""
    warmup_fraction: float = 0.05
    """Fraction of all optimizer steps with a linear warm-up from 0 to ``learning_rate``."""
    lr_schedule: str = "linear"
    """Decay after the warm-up, to 0 at the last step: ``linear`` or ``cosine``."""
    early_stopping_patience: int | None = 2
    """Stop after this many epochs without improvement of the validation metric;
    ``None`` trains all ``max_epochs``."""
    early_stopping_metric: str = "loss"
    """Key of `evaluate`'s result that selects the best epoch (e.g. ``click_auc``)."""
    early_stopping_mode: str = "auto"
    """``min``, ``max`` or ``auto`` (maximise AUC / NDCG / hit-rate keys, minimise others)."""
    adversarial: str = "none"
    """``none``, ``fgm`` (one gradient step) or ``pgd`` (``pgd_steps`` projected steps)."""
    adversarial_epsilon: float = 0.1
    """L2 radius ε of the perturbation of each example's input embeddings."""
    adversarial_weight: float = 1.0
    """λ in ``loss = L_clean + λ·L_adversarial``."""
    pgd_steps: int = 3
    """Ascent steps of PGD."""
    pgd_step_size: float | None = None
    """Step size α of PGD; ``None`` means ``adversarial_epsilon / pgd_steps``."""
    lora_rank: int | None = None
    """Rank r of the LoRA adapters; ``None`` fine-tunes every weight."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is ``alpha / r · B A``)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch's input."""
    lora_target_modules: tuple[str, ...] | None = None
    """Backbone modules that get adapters; ``None``: ``query``, ``value`` for BERT,
    ``c_attn`` for GPT-2 (see `default_lora_target_modules`)."""
    lora_modules_to_save: tuple[str, ...] | None = None
    """Modules trained fully next to the adapters; ``None``: the task heads (see
    `apply_lora`); ``()`` freezes everything but the adapters."""
    lora_bias: str = "none"
    """Biases trained with the adapters (peft's ``bias``): ``none``, ``lora_only`` (those
    of the adapted layers) or ``all`` (every bias of the model, as in BitFit)."""
    lora_use_dora: bool = False
    """Weight-decomposed adapters (DoRA, Liu et al. 2024; peft's ``use_dora``): each adapted
    weight's column norms train as a magnitude vector next to the low-rank direction update."""
    keep_checkpoints: int = 2
    """Epoch checkpoints kept (the newest ones; the best epoch's is always kept)."""
    seed: int = 0
    """Seed of Python, NumPy and torch (dropout, LoRA initialisation)."""
    log_every: int = 50
    """Optimizer steps between TensorBoard points and progress-bar updates."""
    progress: bool = True
    """Show a tqdm progress bar (main process only)."""
    tensorboard: bool = True
    """Write TensorBoard scalars to ``output_dir/tensorboard``."""
    mixed_precision: str = "no"
    """``no``, ``fp16`` or ``bf16`` (``accelerate``; fixed for the life of the process)."""

    def __post_init__(self) -> None:
        if isinstance(self.output_dir, os.PathLike):
            object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise TypeError(
                f"TrainingConfig.output_dir must be a non-empty path, got {self.output_dir!r}."
            )
        for name in ("lora_target_modules", "lora_modules_to_save"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(
                    f"TrainingConfig.{name} must be a sequence of module names, got the string "
                    f"{value!r}; write ({value!r},)."
                )
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        self._check_numbers()
        self._check_positive("learning_rate", "batch_size", "max_epochs", "log_every")
        self._check_positive("adversarial_epsilon", "pgd_steps", "lora_alpha")
        self._check_positive("keep_checkpoints")
        self._check_nonnegative("weight_decay", "adversarial_weight")
        self._check_unit_interval("warmup_fraction")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(
                f"TrainingConfig.lora_dropout must lie in [0, 1), got {self.lora_dropout}."
            )
        for name in ("max_steps", "steps_per_epoch", "lora_rank", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
            ):
                raise ValueError(
                    f"TrainingConfig.{name} must be a positive integer or None, got {value!r}."
                )
        for name in ("gradient_clip_norm", "pgd_step_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"TrainingConfig.{name} must be > 0 or None, got {value!r}.")
        self._check_choice("lr_schedule", LR_SCHEDULES)
        self._check_choice("early_stopping_mode", EARLY_STOPPING_MODES)
        self._check_choice("adversarial", ADVERSARIAL_METHODS)
        self._check_choice("mixed_precision", MIXED_PRECISION)
        self._check_choice("lora_bias", LORA_BIASES)

    @property
    def pgd_alpha(self) -> float:
        """The PGD step size α actually used."""
        if self.pgd_step_size is not None:
            return float(self.pgd_step_size)
        return self.adversarial_epsilon / self.pgd_steps


# ---------------------------------------------------------------------------------- results


@dataclass
class EpochRecord:
    """What one epoch did: mean training losses and the validation metrics."""

    epoch: int
    """1-based epoch index."""
    steps: int
    """Optimizer steps of this epoch."""
    global_step: int
    """Optimizer steps since the start of training, at the end of this epoch."""
    train: dict[str, float]
    """Mean over the epoch's steps: ``loss`` (the optimised total), ``clean_loss``,
    ``adversarial_loss`` (with FGM/PGD) and ``loss_<task>`` per task."""
    validation: dict[str, float]
    """`evaluate` on the validation batches (empty without validation batches)."""
    improved: bool
    """The early-stopping metric improved on the best so far (a new best checkpoint)."""


@dataclass
class FitResult:
    """The outcome of `fit`."""

    model: nn.Module
    """The best model, a plain ``PredictorModel`` (LoRA merged) with the best epoch's weights."""
    history: list[EpochRecord]
    """One record per finished epoch, resumed epochs included."""
    best_epoch: int | None
    """Epoch of the best validation metric (the last epoch without validation)."""
    best_metric: float | None
    """Value of ``early_stopping_metric`` at ``best_epoch``."""
    best_checkpoint: Path | None
    """``output_dir/best`` (``save_pretrained`` of the best model)."""
    trainable_parameters: int
    """Parameters updated by the optimizer."""
    total_parameters: int
    """All parameters of the training model (LoRA adapters included)."""
    stopped_early: bool
    """Training ended because the validation metric stopped improving."""
    global_step: int
    """Optimizer steps done in all."""

    @property
    def trainable_fraction(self) -> float:
        """``trainable_parameters / total_parameters``."""
        return self.trainable_parameters / max(self.total_parameters, 1)


@dataclass
class LossParts:
    """The loss of one training step and its parts (scalar tensors)."""

    total: torch.Tensor
    """What is back-propagated: ``clean + λ·adversarial`` (just ``clean`` without FGM/PGD)."""
    clean: torch.Tensor
    """The model's loss on the unperturbed inputs."""
    adversarial: torch.Tensor | None
    """The model's loss on the perturbed inputs (``None`` without FGM/PGD)."""
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    """The clean loss of each task (``PredictorOutput.losses``)."""


# --------------------------------------------------------------------------- model plumbing


def _base_model(model: nn.Module) -> nn.Module:
    """The plain ``PredictorModel`` inside DDP and peft wrappers."""
    model = extract_model_from_parallel(model)
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _is_peft_model(model: nn.Module) -> bool:
    return callable(getattr(extract_model_from_parallel(model), "get_base_model", None))


def _forward_keys(model: nn.Module) -> frozenset[str]:
    """Batch keys the model's ``forward`` accepts (the evaluation-only columns are not)."""
    # The class's function: accelerate's mixed precision patches the instance's forward.
    parameters = inspect.signature(type(_base_model(model)).forward).parameters
    return frozenset(parameters) - {"self", "inputs_embeds_noise"}


def _model_inputs(
    batch: Mapping[str, Any], keys: frozenset[str], device: torch.device
) -> dict[str, torch.Tensor]:
    return {
        key: value.to(device, non_blocking=True)
        for key, value in batch.items()
        if key in keys and isinstance(value, torch.Tensor)
    }


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``model`` (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices only.

    Biases, LayerNorm weights and other 1-d parameters (catalog biases, loss
    log-variances) are not decayed: they set offsets and scales, not capacity, and pulling
    them towards 0 only biases the predictions.
    """
    layer_norm_parameters = {
        id(parameter)
        for module in model.modules()
        if isinstance(module, nn.LayerNorm)
        for parameter in module.parameters(recurse=False)
    }
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim < 2 or id(parameter) in layer_norm_parameters:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# -------------------------------------------------------------------------------------- LoRA


def default_lora_target_modules(model: nn.Module) -> tuple[str, ...]:
    """The attention projections that get LoRA adapters by default.

    BERT: ``query`` and ``value`` (as in the LoRA paper: adapting W_q and W_v is as good as
    adapting all four projections at half the parameters). GPT-2 fuses q, k, v into one
    ``c_attn`` Conv1D, so that one gets the adapter.
    """
    backbone = getattr(getattr(_base_model(model), "config", None), "backbone", None)
    if backbone == "gpt2":
        return ("c_attn",)
    if backbone == "bert":
        return ("query", "value")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if "c_attn" in names:
        return ("c_attn",)
    if {"query", "value"} <= names:
        return ("query", "value")
    raise ValueError(
        "Cannot tell the backbone's attention modules; pass "
        "TrainingConfig(lora_target_modules=(...)) with the names of its attention Linear layers."
    )


HEAD_MODULES = ("candidate_trunk", "candidate_output", "profile_wide")
"""Modules of `PredictorModel` that form the candidate heads (click, watch time,
continuation, return); ``profile_wide`` exists only with a long-term profile."""

HEAD_PARAMETERS = ("ranking_bias", "masked_item_bias", "log_variances")
"""Parameters `PredictorModel` owns directly that belong to the heads and the loss: the
catalog biases of the ranking and masked-item heads, the learned loss log-variances."""


def adaptation_lora_modules(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(lora_target_modules, lora_modules_to_save)`` for adapting a trained predictor to
    logs of another population: adapters on the attention (`default_lora_target_modules`)
    and on the candidate trunk's two linear layers; the candidate output layer and the
    profile's wide layer trained in full. The heads of a trained model are trained already, so
    they need not train in full (`HEAD_MODULES`, the default after pre-training).

    Measured in docs/predictor.md: 3.9 % of the parameters at hidden 64, recovering 94 % ± 2 %
    of full fine-tuning's held-out click log-loss gain on a shifted population.
    """
    modules = {name for name, _ in model.named_modules()}
    trunk = tuple(name for name in ("candidate_trunk.0", "candidate_trunk.3") if name in modules)
    saved = tuple(name for name in ("candidate_output", "profile_wide") if name in modules)
    return default_lora_target_modules(model) + trunk, saved


def apply_lora(model: nn.Module, config: TrainingConfig) -> nn.Module:
    """Wrap ``model`` in a peft ``PeftModel`` with LoRA adapters on the backbone's attention.

    What trains:

    * the adapters (rank ``config.lora_rank``) on ``lora_target_modules`` (default
      `default_lora_target_modules`);
    * the heads, fully: with ``lora_modules_to_save=None``, `HEAD_MODULES` (through peft's
      ``modules_to_save``) and `HEAD_PARAMETERS`. They are small and task-specific, and
      after masked-item pre-training the candidate heads are still untrained, so freezing
      them would leave nothing to fit the fine-tuning tasks but the adapters.

    An explicit ``lora_modules_to_save`` lists what trains next to the adapters: names of
    submodules (e.g. ``"candidate_output"``, or ``"LayerNorm"`` for every module whose name
    ends with it, as peft matches) and of the model's own parameters (e.g.
    ``"ranking_bias"``); ``()`` trains the adapters only. Everything else — the item,
    feedback and gap embeddings, the backbone's weights — is frozen.

    The adapters are injected into ``model`` in place; `merge_lora` folds them back.
    """
    from peft import LoraConfig, get_peft_model

    if config.lora_rank is None:
        raise ValueError("apply_lora needs TrainingConfig.lora_rank (an integer ≥ 1), got None.")
    if _is_peft_model(model):
        raise ValueError(
            "The model already has LoRA adapters; pass the plain PredictorModel (merge_lora "
            "folds existing adapters into the weights)."
        )
    targets = config.lora_target_modules or default_lora_target_modules(model)
    requested = (
        HEAD_MODULES + HEAD_PARAMETERS
        if config.lora_modules_to_save is None
        else config.lora_modules_to_save
    )
    own_parameters = dict(model.named_parameters(recurse=False))
    modules = dict(model.named_modules())

    def is_module(name: str) -> bool:
        # peft matches a name to every module whose dotted name ends with it.
        return any(full == name or full.endswith(f".{name}") for full in modules)

    unknown = [name for name in requested if name not in own_parameters and not is_module(name)]
    # log_variances is absent with fixed loss weights: only an explicit request must exist.
    if config.lora_modules_to_save is not None and unknown:
        known = sorted(set(own_parameters) | {name for name in modules if name})
        raise ValueError(
            f"TrainingConfig.lora_modules_to_save names {unknown[0]!r}, which is neither a "
            f"submodule nor a parameter of the model.{did_you_mean(unknown[0], known)}"
        )
    saved: list[str] = []
    for name in requested:
        module = modules.get(name)
        if isinstance(module, nn.Sequential):
            # peft wraps a saved module in a ModulesToSaveWrapper, which cannot be indexed
            # as the model indexes its profile projections: save the layers instead.
            saved += [
                f"{name}.{child}"
                for child, layer in module.named_children()
                if any(True for _ in layer.parameters())
            ]
        elif is_module(name):
            saved.append(name)
    lora_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(targets),
        modules_to_save=saved or None,
        bias=config.lora_bias,  # type: ignore[arg-type]  # checked in TrainingConfig
        use_dora=config.lora_use_dora,
        # GPT-2's Conv1D stores its weight transposed.
        fan_in_fan_out="c_attn" in targets,
    )
    peft_model = get_peft_model(model, lora_config)
    # peft freezes every non-adapter weight and `modules_to_save` takes modules only: the
    # model's own head parameters are re-enabled here.
    for name in requested:
        if name in own_parameters:
            own_parameters[name].requires_grad_(True)
    return peft_model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA adapters into the weights: a plain ``PredictorModel`` for inference.

    ``W ← W + (alpha / r)·B A`` per adapted layer, and the trained copies of the heads
    replace the originals. The merge modifies the model in place; a plain model is returned
    unchanged.
    """
    model = extract_model_from_parallel(model)
    if not _is_peft_model(model):
        return model
    merged = model.merge_and_unload()  # type: ignore[operator]
    return merged


# ----------------------------------------------------------------------- adversarial losses


def _per_example_normalise(gradient: torch.Tensor) -> torch.Tensor:
    """``g / ‖g‖`` with the L2 norm taken over all axes but the batch axis."""
    norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12)
    return gradient / norms.view(-1, *([1] * (gradient.ndim - 1)))


def _project(noise: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Project each example's perturbation onto the L2 ball of radius ``epsilon``."""
    norms = noise.flatten(1).norm(dim=1)
    scale = (epsilon / norms.clamp_min(1e-12)).clamp(max=1.0)
    return noise * scale.view(-1, *([1] * (noise.ndim - 1)))


def _forward_with_gradient(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    noise: torch.Tensor | None,
    *,
    keep_graph: bool = True,
) -> tuple[Any, torch.Tensor]:
    """One forward pass and the loss gradient ``(B, L + 1, H)`` w.r.t. the summed input
    embeddings (``keep_graph``: the output's graph stays usable for a backward pass).

    The gradient is taken w.r.t. a zero (or given) noise tensor added to the embeddings
    rather than w.r.t. ``output.embeddings``: it is the same gradient, and it exists even
    when the embedding weights are frozen (LoRA) or the whole model is (evaluation).
    """
    if noise is None:
        noise = _zero_noise(model, inputs)
    noise = noise.detach().requires_grad_(True)
    output = model(**inputs, inputs_embeds_noise=noise)
    if output.loss is None:
        raise ValueError(
            "FGM/PGD perturbations follow the loss gradient, so the batch needs labels: the "
            "model returned no loss."
        )
    (gradient,) = torch.autograd.grad(output.loss, noise, retain_graph=keep_graph)
    return output, gradient


def _zero_noise(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Zeros shaped like the model's summed input embeddings ``(B, L + 1, H)``, with ``L``
    the history length after the model's truncation to ``max_history_length``."""
    history = inputs["history_item_ids"]
    config: Any = _base_model(model).config
    length = min(history.shape[1], config.max_history_length)
    dtype = next(model.parameters()).dtype
    return torch.zeros(
        history.shape[0], length + 1, config.hidden_size, device=history.device, dtype=dtype
    )


def training_loss(
    model: nn.Module, inputs: dict[str, torch.Tensor], config: TrainingConfig
) -> LossParts:
    """The loss of one step, with an adversarial term when ``config.adversarial`` asks.

    * ``none``: the model's loss.
    * ``fgm`` (fast gradient method, Miyato et al. 2017): ``g = ∂L/∂e`` on the summed input
      embeddings ``e (B, L+1, H)``, ``r = ε·g/‖g‖`` per example, and
      ``L = L(e) + λ·L(e + r)``.
    * ``pgd`` (Madry et al. 2018): from ``r = 0``, ``pgd_steps`` steps
      ``r ← Π_ε(r + α·g/‖g‖)`` with ``g = ∂L(e + r)/∂e`` and ``Π_ε`` the projection onto
      each example's L2 ball of radius ε; then ``L = L(e) + λ·L(e + r)``.

    The perturbation is a constant (detached): only the losses at ``e`` and ``e + r`` train
    the weights, as in the references.
    """
    if config.adversarial == "none":
        output = model(**inputs)
        if output.loss is None:
            raise ValueError(
                "The model returned no loss: the batch has no labels. Training batches must "
                "carry the labels of the task (e.g. click_labels or masked_item_labels)."
            )
        return LossParts(output.loss, output.loss, None, dict(output.losses or {}))

    clean_output, gradient = _forward_with_gradient(model, inputs, None)
    # Under DDP only the clean pass goes through the wrapper: DDP expects one forward per
    # backward. The other passes use the same weights, so their gradients still reach
    # the weights' accumulators and are reduced with the clean ones in one backward.
    module = extract_model_from_parallel(model)
    epsilon = config.adversarial_epsilon
    noise = epsilon * _per_example_normalise(gradient)
    if config.adversarial == "pgd":
        alpha = config.pgd_alpha
        # The first step from r = 0 uses the clean gradient already computed.
        noise = _project(alpha * _per_example_normalise(gradient), epsilon)
        for _ in range(config.pgd_steps - 1):
            _, gradient = _forward_with_gradient(module, inputs, noise, keep_graph=False)
            noise = _project(noise + alpha * _per_example_normalise(gradient), epsilon)
    adversarial_output = module(**inputs, inputs_embeds_noise=noise.detach())
    total = clean_output.loss + config.adversarial_weight * adversarial_output.loss
    return LossParts(
        total, clean_output.loss, adversarial_output.loss, dict(clean_output.losses or {})
    )


# ------------------------------------------------------------------------------- evaluation


def evaluate(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """Losses and metrics of ``model`` on ``batches`` (eval mode, no gradient).

    Keys (each only when the batches carry what it needs; NaN where undefined, e.g. an
    AUC over one class):

    | key | what |
    |---|---|
    | ``loss``, ``loss_<task>`` | total and per-task losses: batch means, averaged with the batch rows as weights |
    | ``click_auc``, ``click_gauc``, ``click_ece``, ``click_log_loss`` | clicks; GAUC averages per-user AUCs (``user_index``) |
    | ``watch_time_rmse_clicked_minutes`` | RMSE in minutes of E[watch │ click] on clicked rows |
    | ``watch_time_rmse_expected_minutes`` | RMSE in minutes of p(click)·E[watch │ click] vs the minutes watched, all rows |
    | ``continuation_auc`` | the session-continuation head |
    | ``return_auc``, ``return_ece``, ``return_log_loss`` | next-day return, on rows that end a session |
    | ``ranking_ndcg_at_10``, ``ranking_hit_rate_at_10`` | full-catalog rank of the clicked item, on clicked rows |
    | ``masked_item_ndcg_at_10``, ``masked_item_hit_rate_at_10`` | masked-item pre-training, on masked positions |
    | ``bayes_click_auc``, ``bayes_click_ece``, ``bayes_click_log_loss`` | the simulator's true click probability (privileged logs) |
    | ``bayes_watch_time_rmse_expected_minutes`` | the true expected minutes vs the minutes watched, all rows |
    | ``bayes_return_auc``, ``bayes_return_ece``, ``bayes_return_log_loss`` | the true return probability, on session-ending rows |

    The Bayes references are the best a predictor can do on this log, in expectation:
    compare ``click_auc`` with ``bayes_click_auc``, ``click_log_loss`` with
    ``bayes_click_log_loss``, ``watch_time_rmse_expected_minutes`` with
    ``bayes_watch_time_rmse_expected_minutes``, ``return_auc`` with ``bayes_return_auc``.
    Ranks are pessimistic on ties (`metrics.target_ranks`).
    """
    return _evaluate(model, batches, epsilon=None)


def evaluate_perturbed(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], epsilon: float
) -> dict[str, float]:
    """`evaluate` on FGM-perturbed inputs: the robustness of the metrics.

    Each batch's summed input embeddings are moved by ``r = ε·g/‖g‖`` (per example), with
    ``g`` the gradient of the model's loss on that batch — the worst first-order change of
    L2 size ε. Same keys as `evaluate`; the Bayes references are those of the clean log.
    """
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a finite number ≥ 0, got {epsilon!r}.")
    return _evaluate(model, batches, epsilon=float(epsilon))


class _Collector:
    """Per-row predictions and labels gathered over batches, as flat numpy arrays."""

    def __init__(self) -> None:
        self.columns: dict[str, list[np.ndarray]] = defaultdict(list)
        self.loss_sums: dict[str, float] = defaultdict(float)
        self.rows = 0

    def add(self, name: str, values: torch.Tensor) -> None:
        values = values.detach()
        # Floats as float64 for the metrics; integers (user index, ranks) keep their kind.
        if values.is_floating_point():
            values = values.double()
        self.columns[name].append(values.cpu().numpy().reshape(-1))

    def get(self, name: str) -> np.ndarray | None:
        parts = self.columns.get(name)
        return np.concatenate(parts) if parts else None


def _label_ranks(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rank from 1 of each label among its row's logits, ties ranked ahead of it (the
    convention of `metrics.target_ranks`): ``logits (N, num_items)``, ``labels (N,)`` →
    ``(N,)`` int64. Ranks are computed per batch so that no ``(rows, num_items)`` matrix
    is kept for the whole evaluation set."""
    label_logits = logits.gather(1, labels.unsqueeze(1))
    return (logits >= label_logits).sum(dim=1)


def _collect_batch(
    collector: _Collector, output: Any, batch: Mapping[str, torch.Tensor], rows: int
) -> None:
    collector.rows += rows
    if output.loss is not None:
        collector.loss_sums["loss"] += float(output.loss) * rows
    for task, value in (output.losses or {}).items():
        collector.loss_sums[f"loss_{task}"] += float(value) * rows

    def column(name: str) -> torch.Tensor | None:
        value = batch.get(name)
        return value if isinstance(value, torch.Tensor) else None

    clicks = column("click_labels")
    if clicks is not None and output.click_logits is not None:
        collector.add("click_labels", clicks)
        collector.add("click_probability", torch.sigmoid(output.click_logits.float()))
        user_index = column("user_index")
        if user_index is not None:
            collector.add("user_index", user_index)
        if output.watch_time is not None:
            # The head predicts log1p(minutes) given a click.
            collector.add(
                "watch_minutes_given_click", torch.expm1(output.watch_time.float()).clamp_min(0)
            )
        true_click = column("true_click_probability")
        if true_click is not None:
            collector.add("true_click_probability", true_click)
        true_watch = column("true_watch_time")
        if true_watch is not None:
            collector.add("true_watch_time", true_watch)
    watch_labels = column("watch_time_labels")
    if watch_labels is not None and output.watch_time is not None:
        mask = column("watch_time_mask")
        mask = torch.ones_like(watch_labels, dtype=torch.bool) if mask is None else mask.bool()
        collector.add("watch_minutes", torch.where(mask, torch.expm1(watch_labels.float()), 0.0))
        collector.add("watch_mask", mask)
    continuation = column("continuation_labels")
    if continuation is not None and output.continuation_logits is not None:
        collector.add("continuation_labels", continuation)
        collector.add("continuation_logits", output.continuation_logits)
    returns = column("return_labels")
    if returns is not None and output.return_logits is not None:
        mask = column("return_mask")
        mask = torch.ones_like(returns, dtype=torch.bool) if mask is None else mask.bool()
        collector.add("return_labels", returns)
        collector.add("return_probability", torch.sigmoid(output.return_logits.float()))
        collector.add("return_mask", mask)
        true_return = column("true_return_probability")
        if true_return is not None:
            collector.add("true_return_probability", true_return)
    ranking = column("ranking_labels")
    if ranking is not None and output.ranking_logits is not None:
        valid = (ranking >= 0) & (ranking < output.ranking_logits.shape[-1])
        if bool(valid.any()):
            collector.add(
                "ranking_ranks", _label_ranks(output.ranking_logits[valid], ranking[valid])
            )
    masked = column("masked_item_labels")
    if masked is not None and output.masked_item_logits is not None:
        logits = output.masked_item_logits  # (B, L, N), L after truncation
        labels = masked[:, -logits.shape[1] :].reshape(-1)
        logits = logits.reshape(-1, logits.shape[-1])
        valid = (labels >= 0) & (labels < logits.shape[-1])
        if bool(valid.any()):
            collector.add("masked_item_ranks", _label_ranks(logits[valid], labels[valid]))


def _has_both_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < int(np.count_nonzero(labels > 0.5)) < labels.size


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """`metrics.auc`, NaN where undefined (one class only, e.g. a small validation set)."""
    return metric_functions.auc(labels, scores) if _has_both_classes(labels) else math.nan


def _gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    _, group = np.unique(groups, return_inverse=True)
    positives = np.bincount(group, weights=labels > 0.5)
    defined = ((positives > 0) & (positives < np.bincount(group))).any()
    return metric_functions.gauc(labels, scores, groups) if defined else math.nan


def _ece(labels: np.ndarray, probabilities: np.ndarray) -> float:
    if labels.size == 0:
        return math.nan
    return metric_functions.expected_calibration_error(labels, probabilities)


def _log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return metric_functions.log_loss(labels, probabilities) if labels.size else math.nan


def _rmse(targets: np.ndarray, predictions: np.ndarray) -> float:
    return metric_functions.rmse(targets, predictions) if targets.size else math.nan


def _metrics(collector: _Collector) -> dict[str, float]:
    results = {name: total / max(collector.rows, 1) for name, total in collector.loss_sums.items()}
    clicks = collector.get("click_labels")
    click_probability = collector.get("click_probability")
    if clicks is not None and click_probability is not None:
        results["click_auc"] = _auc(clicks, click_probability)
        user_index = collector.get("user_index")
        if user_index is not None:
            results["click_gauc"] = _gauc(clicks, click_probability, user_index)
        results["click_ece"] = _ece(clicks, click_probability)
        results["click_log_loss"] = _log_loss(clicks, click_probability)
    watched = collector.get("watch_minutes")
    watch_mask = collector.get("watch_mask")
    given_click = collector.get("watch_minutes_given_click")
    if watched is not None and watch_mask is not None and given_click is not None:
        clicked_rows = watch_mask.astype(bool)
        results["watch_time_rmse_clicked_minutes"] = _rmse(
            watched[clicked_rows], given_click[clicked_rows]
        )
        if click_probability is not None and len(click_probability) == len(watched):
            # The unconditional expectation p(click)·E[w | click]: what an agent that
            # ranks by expected minutes uses, scored on every row (0 minutes if no click).
            results["watch_time_rmse_expected_minutes"] = _rmse(
                watched, click_probability * given_click
            )
    continuation = collector.get("continuation_labels")
    continuation_logits = collector.get("continuation_logits")
    if continuation is not None and continuation_logits is not None:
        results["continuation_auc"] = _auc(continuation, continuation_logits)
    returns = collector.get("return_labels")
    return_probability = collector.get("return_probability")
    return_mask = collector.get("return_mask")
    if returns is not None and return_probability is not None and return_mask is not None:
        ending = return_mask.astype(bool)
        results["return_auc"] = _auc(returns[ending], return_probability[ending])
        results["return_ece"] = _ece(returns[ending], return_probability[ending])
        results["return_log_loss"] = _log_loss(returns[ending], return_probability[ending])
    for name in ("ranking", "masked_item"):
        ranks = collector.get(f"{name}_ranks")
        if ranks is not None:
            cutoff = RANKING_CUTOFF
            results[f"{name}_ndcg_at_{cutoff}"] = metric_functions.ndcg_at_k(ranks, k=cutoff)
            results[f"{name}_hit_rate_at_{cutoff}"] = metric_functions.hit_rate_at_k(
                ranks, k=cutoff
            )
    results.update(_bayes_references(collector))
    return {name: float(value) for name, value in results.items()}


def _bayes_references(collector: _Collector) -> dict[str, float]:
    """The metrics of the simulator's true probabilities (privileged logs only)."""
    results: dict[str, float] = {}
    clicks = collector.get("click_labels")
    true_click = collector.get("true_click_probability")
    if clicks is not None and true_click is not None and _has_both_classes(clicks):
        for name, value in metric_functions.bayes_reference(clicks, true_click).items():
            results[f"bayes_click_{name}"] = value
    watched = collector.get("watch_minutes")
    true_watch = collector.get("true_watch_time")
    if watched is not None and true_watch is not None and len(true_watch) == len(watched):
        results["bayes_watch_time_rmse_expected_minutes"] = _rmse(watched, true_watch)
    returns = collector.get("return_labels")
    return_mask = collector.get("return_mask")
    true_return = collector.get("true_return_probability")
    if returns is not None and return_mask is not None and true_return is not None:
        # NaN where the simulator cannot tell: those rows are left out of the reference.
        rows = return_mask.astype(bool) & np.isfinite(true_return)
        if _has_both_classes(returns[rows]):
            for name, value in metric_functions.bayes_reference(
                returns[rows], true_return[rows]
            ).items():
                results[f"bayes_return_{name}"] = value
    return results


def _evaluate(
    model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], *, epsilon: float | None
) -> dict[str, float]:
    model = extract_model_from_parallel(model)
    keys = _forward_keys(model)
    device = _device(model)
    was_training = model.training
    model.eval()
    collector = _Collector()
    try:
        for batch in batches:
            inputs = _model_inputs(batch, keys, device)
            rows = int(inputs["history_item_ids"].shape[0])
            if epsilon is None:
                with torch.inference_mode():
                    output = model(**inputs)
            else:
                with torch.enable_grad():
                    _, gradient = _forward_with_gradient(model, inputs, None, keep_graph=False)
                with torch.inference_mode():
                    noise = epsilon * _per_example_normalise(gradient)
                    output = model(**inputs, inputs_embeds_noise=noise)
            host_batch = {key: value for key, value in batch.items() if key not in inputs}
            host_batch.update(inputs)
            _collect_batch(collector, output, host_batch, rows)
    finally:
        model.train(was_training)
    if collector.rows == 0:
        raise ValueError("evaluate got no batches; pass at least one batch of rows.")
    return _metrics(collector)


def _higher_is_better(metric: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "max"
    return any(part in metric for part in _HIGHER_IS_BETTER)


# ------------------------------------------------------------------------------ checkpoints


@dataclass
class _State:
    """Everything besides the weights that a resumed run needs."""

    epoch: int = 0
    global_step: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    reached_max_steps: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> _State:
        values = dict(values)
        values["history"] = [EpochRecord(**record) for record in values["history"]]
        return cls(**values)


def _epoch_directory(output_dir: Path, epoch: int) -> Path:
    return output_dir / _CHECKPOINTS / f"epoch-{epoch:03d}"


def _finished_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete epoch checkpoints, oldest first (temporary directories are not listed)."""
    found = []
    for path in (output_dir / _CHECKPOINTS).glob("epoch-*"):
        suffix = path.name.removeprefix("epoch-")
        if suffix.isdigit() and (path / _STATE_FILE).is_file():
            found.append((int(suffix), path))
    return sorted(found)


def _replace_directory(temporary: Path, final: Path) -> None:
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


def _save_checkpoint(
    accelerator: Accelerator,
    output_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: _State,
    config: TrainingConfig,
    task: str,
) -> Path:
    final = _epoch_directory(output_dir, state.epoch)
    temporary = final.with_name(f".{final.name}.tmp")
    if accelerator.is_main_process:
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir(parents=True)
        save_model(accelerator.unwrap_model(model), str(temporary / _MODEL_FILE))
        torch.save(
            {
                "state": state.to_dict(),
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
        _replace_directory(temporary, final)
        _prune_checkpoints(output_dir, config.keep_checkpoints, state.best_epoch)
    accelerator.wait_for_everyone()
    return final


def _prune_checkpoints(output_dir: Path, keep: int, best_epoch: int | None) -> None:
    finished = _finished_checkpoints(output_dir)
    for epoch, path in finished[:-keep]:
        if epoch != best_epoch:
            shutil.rmtree(path)


def _load_checkpoint(
    accelerator: Accelerator,
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainingConfig,
    task: str,
) -> _State:
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
            stacklevel=3,
        )
    load_model(accelerator.unwrap_model(model), str(path / _MODEL_FILE))
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng_file = path / f"rng_state_{accelerator.process_index}.pt"
    if rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=True))
    return _State.from_dict(saved["state"])


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


def _save_best(
    accelerator: Accelerator,
    output_dir: Path,
    model: nn.Module,
    record: EpochRecord,
    config: TrainingConfig,
) -> Path:
    final = output_dir / _BEST
    if accelerator.is_main_process:
        temporary = output_dir / f".{_BEST}.tmp"
        if temporary.exists():
            shutil.rmtree(temporary)
        plain = accelerator.unwrap_model(model)
        if _is_peft_model(plain):
            # Merge a copy: the training model keeps its adapters.
            plain = merge_lora(copy.deepcopy(plain))
        with _transformers_progress_bars_off():
            plain.save_pretrained(temporary)
        (temporary / "metrics.json").write_text(
            json.dumps(dataclasses.asdict(record), indent=2, allow_nan=True)
        )
        (temporary / "training_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        _replace_directory(temporary, final)
    accelerator.wait_for_everyone()
    return final


# ---------------------------------------------------------------------------------- training


def _steps_per_epoch(batches: Iterable[Any], config: TrainingConfig, num_processes: int) -> int:
    try:
        available = len(batches) // num_processes  # type: ignore[arg-type]
    except TypeError:
        available = None
    if available is None:
        if config.steps_per_epoch is None:
            raise ValueError(
                "The training batches have no length, so the learning-rate schedule cannot be "
                "planned; set TrainingConfig(steps_per_epoch=...)."
            )
        return config.steps_per_epoch
    if available == 0:
        raise ValueError(
            f"The training batches hold {len(batches)} batches for {num_processes} "  # type: ignore[arg-type]
            "processes: every process needs at least one."
        )
    return available if config.steps_per_epoch is None else min(available, config.steps_per_epoch)


def _shard(batches: Iterable[Any], num_processes: int, process_index: int) -> Iterator[Any]:
    """Every ``num_processes``-th batch, from ``process_index``; incomplete rounds dropped
    so that every DDP process does the same number of steps."""
    if num_processes == 1:
        yield from batches
        return
    round_: list[Any] = []
    for batch in batches:
        round_.append(batch)
        if len(round_) == num_processes:
            yield round_[process_index]
            round_ = []


def _set_epoch(batches: Any, epoch: int) -> None:
    # Batches that shuffle per epoch (like torch's DistributedSampler) then give the same
    # order in a resumed run as in an uninterrupted one.
    set_epoch = getattr(batches, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)


def _check_task(task: str) -> None:
    if task not in TRAINING_TASKS:
        raise ValueError(
            f"task must be one of {', '.join(map(repr, TRAINING_TASKS))}, got {task!r}."
            f"{did_you_mean(str(task), TRAINING_TASKS)}"
        )


def fit(
    model: nn.Module,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    validation_batches: Iterable[Mapping[str, torch.Tensor]] | None,
    config: TrainingConfig,
    *,
    task: str = "multitask",
    resume: bool = True,
) -> FitResult:
    """Train ``model`` on ``train_batches``, select the best epoch on ``validation_batches``.

    ``train_batches`` is re-iterated every epoch (a list, or `data.TargetBatches` /
    `data.MaskedItemBatches`; a ``set_epoch(epoch)`` method is called first when present).
    Each batch is a dict of tensors with ``PredictorModel.forward``'s keyword names; other
    keys (``user_index``, the privileged columns) are used by `evaluate` only.

    Per step: forward (plus FGM/PGD passes, see `training_loss`), backward, gradient
    clipping, AdamW, learning-rate schedule (linear warm-up over ``warmup_fraction`` of all
    steps, then linear or cosine decay to 0). Per epoch: `evaluate` on the validation
    batches, a checkpoint, ``best/`` when the early-stopping metric improved, and a stop
    after ``early_stopping_patience`` epochs without improvement.

    With ``config.lora_rank`` set, `apply_lora` wraps the model first. With ``resume=True``
    and checkpoints in ``config.output_dir``, training continues after the last finished
    epoch (an already finished run returns at once); ``resume=False`` deletes them.

    Returns a `FitResult` whose ``model`` holds the best epoch's weights (LoRA merged). A
    plain model passed in is trained in place and is ``result.model``; a LoRA one is merged
    in place too.
    """
    _check_task(task)
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        # Under DDP: each task leaves some weights without gradient (masked-item
        # pre-training never uses the candidate heads; a batch without ranking labels
        # never uses the ranking bias), which DDP must be told to expect.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(config.seed)  # before apply_lora: the adapters' initialisation is random

    if config.lora_rank is not None:
        model = apply_lora(model, config)
    trainable, total = parameter_counts(model)
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config.weight_decay), lr=config.learning_rate
    )
    steps_per_epoch = _steps_per_epoch(train_batches, config, accelerator.num_processes)
    total_steps = steps_per_epoch * config.max_epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    # Imported here: transformers' scheduler module is only needed once training starts.
    from transformers import get_scheduler

    scheduler = get_scheduler(
        config.lr_schedule,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_fraction * total_steps),
        num_training_steps=total_steps,
    )
    # The scheduler is not prepared: accelerate would step it once per process per step.
    model, optimizer = accelerator.prepare(model, optimizer)

    state = _State()
    checkpoints = _finished_checkpoints(output_dir)
    if resume and checkpoints:
        latest_epoch, latest = checkpoints[-1]
        state = _load_checkpoint(accelerator, latest, model, optimizer, scheduler, config, task)
        # A larger max_steps than the interrupted run's lets it go on.
        state.reached_max_steps = (
            config.max_steps is not None and state.global_step >= config.max_steps
        )
        logger.info("Resuming after epoch %d from %s", latest_epoch, latest)
    elif checkpoints and accelerator.is_main_process:
        # A fresh run must not resume later from a previous run's epochs.
        shutil.rmtree(output_dir / _CHECKPOINTS)
    accelerator.wait_for_everyone()

    writer = _summary_writer(accelerator, output_dir, config, state.global_step)
    forward_keys = _forward_keys(model)
    try:
        while (
            state.epoch < config.max_epochs
            and not state.stopped_early
            and not state.reached_max_steps
        ):
            epoch = state.epoch + 1
            _set_epoch(train_batches, epoch)
            train_metrics, steps = _train_epoch(
                accelerator, model, optimizer, scheduler, train_batches, forward_keys,
                config, state, steps_per_epoch, writer, epoch, task,
            )  # fmt: skip
            validation: dict[str, float] = {}
            if validation_batches is not None:
                _set_epoch(validation_batches, epoch)
                validation = evaluate(accelerator.unwrap_model(model), validation_batches)
            improved = _update_early_stopping(state, validation, config, epoch)
            record = EpochRecord(
                epoch, steps, state.global_step, train_metrics, validation, improved
            )
            state.history.append(record)
            state.epoch = epoch
            if config.max_steps is not None and state.global_step >= config.max_steps:
                state.reached_max_steps = True
            if writer is not None:
                for name, value in validation.items():
                    writer.add_scalar(f"validation/{name}", value, state.global_step)
                writer.flush()
            if improved:
                _save_best(accelerator, output_dir, model, record, config)
            _save_checkpoint(
                accelerator, output_dir, model, optimizer, scheduler, state, config, task
            )
            _log_epoch(record, config)
    finally:
        if writer is not None:
            writer.close()

    # The best epoch's weights, back into the training model (adapters included).
    best_epoch = state.best_epoch
    if best_epoch is not None and best_epoch != state.epoch:
        load_model(
            accelerator.unwrap_model(model),
            str(_epoch_directory(output_dir, best_epoch) / _MODEL_FILE),
        )
    # Without accelerate's mixed-precision wrapper around forward: a plain model.
    final_model = merge_lora(accelerator.unwrap_model(model, keep_fp32_wrapper=False))
    accelerator.free_memory()
    best_path = output_dir / _BEST
    return FitResult(
        model=final_model,
        history=list(state.history),
        best_epoch=best_epoch,
        best_metric=state.best_metric,
        best_checkpoint=best_path if best_path.is_dir() else None,
        trainable_parameters=trainable,
        total_parameters=total,
        stopped_early=state.stopped_early,
        global_step=state.global_step,
    )


def _summary_writer(
    accelerator: Accelerator, output_dir: Path, config: TrainingConfig, global_step: int
) -> Any:
    if not (config.tensorboard and accelerator.is_main_process):
        return None
    from torch.utils.tensorboard import SummaryWriter

    # purge_step hides the points an interrupted run wrote after its last checkpoint.
    return SummaryWriter(
        log_dir=str(output_dir / "tensorboard"),
        purge_step=global_step + 1 if global_step else None,
    )


def _train_epoch(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    forward_keys: frozenset[str],
    config: TrainingConfig,
    state: _State,
    steps_per_epoch: int,
    writer: Any,
    epoch: int,
    task: str,
) -> tuple[dict[str, float], int]:
    """One pass over the training batches; returns the mean losses and the steps done."""
    model.train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    steps_left = steps_per_epoch
    if config.max_steps is not None:
        steps_left = min(steps_left, config.max_steps - state.global_step)
    # Sums stay on the device; reading them (a synchronisation) happens every log_every steps.
    sums: dict[str, torch.Tensor] = {}
    window: dict[str, torch.Tensor] = {}
    window_steps = 0
    steps = 0
    progress = tqdm(
        total=steps_left,
        desc=f"epoch {epoch}/{config.max_epochs}",
        disable=not (config.progress and accelerator.is_main_process),
        leave=False,
    )
    batches = _shard(train_batches, accelerator.num_processes, accelerator.process_index)
    for batch in batches:
        if steps >= steps_left:
            break
        if steps == 0:
            _check_batch_task(batch, task)
        inputs = _model_inputs(batch, forward_keys, accelerator.device)
        with accelerator.autocast():
            parts = training_loss(model, inputs, config)
        accelerator.backward(parts.total)
        if config.gradient_clip_norm is not None:
            accelerator.clip_grad_norm_(trainable, config.gradient_clip_norm)
        optimizer.step()
        if not getattr(optimizer, "step_was_skipped", False):  # fp16 overflow skips a step
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
        state.global_step += 1
        values = {"loss": parts.total, "clean_loss": parts.clean}
        if parts.adversarial is not None:
            values["adversarial_loss"] = parts.adversarial
        values.update({f"loss_{name}": loss for name, loss in parts.losses.items()})
        for name, value in values.items():
            value = value.detach().float()
            sums[name] = sums[name] + value if name in sums else value
            window[name] = window[name] + value if name in window else value
        window_steps += 1
        progress.update(1)
        if steps % config.log_every == 0 or steps == steps_left:
            means = {name: float(total) / window_steps for name, total in window.items()}
            _check_finite(means, epoch, state.global_step)
            progress.set_postfix(loss=f"{means['loss']:.4f}")
            if writer is not None:
                for name, mean in means.items():
                    writer.add_scalar(f"train/{name}", mean, state.global_step)
                writer.add_scalar(
                    "train/learning_rate", scheduler.get_last_lr()[0], state.global_step
                )
            window, window_steps = {}, 0
    progress.close()
    if steps == 0:
        raise ValueError(
            f"Epoch {epoch} got no training batch; the training batches must be re-iterable "
            "(a list, or data.TargetBatches), not a one-shot iterator."
        )
    # Under DDP, report the mean over processes.
    means = {
        name: float(accelerator.reduce(value / steps, reduction="mean"))
        for name, value in sorted(sums.items())
    }
    return means, steps


def _check_batch_task(batch: Mapping[str, Any], task: str) -> None:
    masked = "masked_item_labels" in batch
    if task == "masked_item" and not masked:
        raise ValueError(
            "task='masked_item' (pretrain) needs batches with masked_item_labels, e.g. "
            f"data.MaskedItemBatches; got keys {sorted(batch)}."
        )
    if task == "multitask" and masked:
        raise ValueError(
            "task='multitask' (finetune) got masked-item batches; use pretrain (task="
            "'masked_item') for data.MaskedItemBatches, finetune for data.TargetBatches."
        )


def _check_finite(means: dict[str, float], epoch: int, global_step: int) -> None:
    bad = {name: value for name, value in means.items() if not math.isfinite(value)}
    if bad:
        raise FloatingPointError(
            f"Non-finite training loss at epoch {epoch}, step {global_step}: {bad}. Lower "
            "TrainingConfig.learning_rate, keep gradient_clip_norm set, or check the labels."
        )


def _update_early_stopping(
    state: _State, validation: dict[str, float], config: TrainingConfig, epoch: int
) -> bool:
    """Record the epoch's metric; return whether it is a new best."""
    if not validation:
        # Without validation the last epoch is the best one.
        state.best_epoch, state.best_metric = epoch, None
        return True
    name = config.early_stopping_metric
    if name not in validation:
        raise KeyError(
            f"TrainingConfig.early_stopping_metric={name!r} is not among the validation "
            f"metrics.{did_you_mean(name, validation)} Available: {', '.join(sorted(validation))}."
        )
    value = validation[name]
    higher = _higher_is_better(name, config.early_stopping_mode)
    improved = math.isfinite(value) and (
        state.best_metric is None
        or (value > state.best_metric if higher else value < state.best_metric)
    )
    if improved:
        state.best_metric, state.best_epoch = value, epoch
        state.epochs_without_improvement = 0
    else:
        state.epochs_without_improvement += 1
        patience = config.early_stopping_patience
        if patience is not None and state.epochs_without_improvement >= patience:
            state.stopped_early = True
    return improved


def _log_epoch(record: EpochRecord, config: TrainingConfig) -> None:
    train = f"train loss {record.train.get('loss', float('nan')):.4f}"
    metric = config.early_stopping_metric
    validation = (
        f", validation {metric} {record.validation[metric]:.4f}"
        if metric in record.validation
        else ""
    )
    logger.info(
        "epoch %d: %s%s%s", record.epoch, train, validation, " (best)" if record.improved else ""
    )


def pretrain(
    model: nn.Module,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    validation_batches: Iterable[Mapping[str, torch.Tensor]] | None,
    config: TrainingConfig,
    *,
    resume: bool = True,
) -> FitResult:
    """Masked-item pre-training (BERT4Rec): `fit` with ``task="masked_item"``.

    The batches are `data.MaskedItemBatches` (history windows with 20% of the items
    replaced by ``[MASK]`` and ``masked_item_labels``). The early-stopping metric
    defaults to the validation loss; ``masked_item_hit_rate_at_10`` is a common choice.
    """
    return fit(model, train_batches, validation_batches, config, task="masked_item", resume=resume)


def finetune(
    model: nn.Module,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    validation_batches: Iterable[Mapping[str, torch.Tensor]] | None,
    config: TrainingConfig,
    *,
    resume: bool = True,
) -> FitResult:
    """Multi-task fine-tuning of every head: `fit` with ``task="multitask"``.

    The batches are `data.TargetBatches`. Set ``config.lora_rank`` to fine-tune a
    pre-trained backbone through LoRA adapters, ``config.adversarial`` for FGM/PGD.
    """
    return fit(model, train_batches, validation_batches, config, task="multitask", resume=resume)
