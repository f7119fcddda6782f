"""The predictor's training loop: masked-item pre-training and multi-task fine-tuning.

One plain PyTorch loop, read top to bottom in `fit`, run through `accelerate.Accelerator`:
``python train.py`` trains on one device; ``accelerate launch --multi_gpu train.py`` (GPUs)
or ``ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 train.py`` (CPU processes over
gloo) trains with DDP, with no change to the code. Under DDP each process takes every
``num_processes``-th batch and validates on all of them. Every epoch ends with a validation
pass (`loe_gym.predictor.evaluation`), a checkpoint (`loe_gym.predictor.checkpoints`:
written atomically, so an interrupted run resumes from its last finished epoch) and, when
the validation metric improved, a copy of the model at ``output_dir/best``. LoRA is in
`loe_gym.predictor.lora`, the step's loss with FGM/PGD in `loe_gym.predictor.losses`.

Layout of ``output_dir``::

    checkpoints/epoch-001/     every weight, optimizer, scheduler, loop state, RNG streams
    best/                      save_pretrained of the best model (LoRA merged), loadable
                               with load_predictor; metrics.json, training_config.json
    tensorboard/               TensorBoard scalars: train/*, validation/*

Example (the whole pipeline)::

    result = pretrain(model, masked_train, masked_validation, TrainingConfig(), output_dir="pre")
    result = finetune(result.model, train, validation,
                      TrainingConfig(lora_rank=8, adversarial="fgm"), output_dir="fine")
    metrics = evaluate(result.model, test)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn
from tqdm.auto import tqdm

from loe_gym.devices import current_device
from loe_gym.errors import did_you_mean
from loe_gym.predictor import checkpoints
from loe_gym.predictor.configs import TrainingConfig
from loe_gym.predictor.evaluation import evaluate
from loe_gym.predictor.lora import apply_lora, merge_lora, parameter_counts
from loe_gym.predictor.losses import LossParts, forward_keys, model_inputs, training_loss

logger = logging.getLogger(__name__)

__all__ = ["TRAINING_STAGES", "EpochRecord", "FitResult", "finetune", "fit", "pretrain"]

TRAINING_STAGES = ("multitask", "masked_item")
"""``task`` of `fit`: ``multitask``, fine-tuning of every head on target rows;
``masked_item``, BERT4Rec pre-training on masked history windows."""

_HIGHER_IS_BETTER = ("auc", "ndcg", "hit_rate", "accuracy")


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


@dataclass
class _Run:
    """What stays fixed for the length of one `fit`."""

    accelerator: Accelerator
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    config: TrainingConfig
    task: str
    output_dir: Path
    steps_per_epoch: int
    progress: bool
    writer: Any = None

    @property
    def training(self) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
        return self.model, self.optimizer, self.scheduler


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
    if task not in TRAINING_STAGES:
        raise ValueError(
            f"task must be one of {', '.join(map(repr, TRAINING_STAGES))}, got {task!r}."
            f"{did_you_mean(str(task), TRAINING_STAGES)}"
        )


def fit(
    model: nn.Module,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    validation_batches: Iterable[Mapping[str, torch.Tensor]] | None,
    config: TrainingConfig,
    *,
    output_dir: str | os.PathLike[str],
    progress: bool = True,
    task: str = "multitask",
    resume: bool = True,
) -> FitResult:
    """Train ``model`` on ``train_batches``, select the best epoch on ``validation_batches``.

    ``train_batches`` is re-iterated every epoch (a list, or `batches.TargetBatches` /
    `batches.MaskedItemBatches`; a ``set_epoch(epoch)`` method is called first when
    present). Each batch is a dict of tensors with ``PredictorModel.forward``'s keyword
    names; other keys (``user_index``, the privileged columns) are used by `evaluate` only.

    Per step: forward (plus FGM/PGD passes, see `training_loss`), backward, gradient
    clipping, AdamW, learning-rate schedule (linear warm-up over ``warmup_fraction`` of all
    steps, then linear or cosine decay to 0). Per epoch: `evaluate` on the validation
    batches, a checkpoint, ``best/`` when the early-stopping metric improved, and a stop
    after ``early_stopping_patience`` epochs without improvement.

    ``output_dir`` receives the checkpoints, the best model and the TensorBoard logs
    (created if needed); ``progress`` shows a tqdm bar (main process only). With
    ``config.lora_rank`` set, `apply_lora` wraps the model first. With ``resume=True`` and
    checkpoints in ``output_dir``, training continues after the last finished epoch (an
    already finished run returns at once); ``resume=False`` deletes them.

    Returns a `FitResult` whose ``model`` holds the best epoch's weights (LoRA merged). A
    plain model passed in is trained in place and is ``result.model``; a LoRA one is merged
    in place too.
    """
    _check_task(task)
    directory = _output_directory(output_dir)
    accelerator = Accelerator(
        cpu=current_device() == "cpu",  # --device (loe_gym/devices.py)
        mixed_precision=config.mixed_precision,
        # Under DDP: each task leaves some weights without gradient (masked-item
        # pre-training never uses the candidate heads; a batch without ranking labels
        # never uses the ranking bias), which DDP must be told to expect.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(config.seed)  # before apply_lora: the adapters' initialisation is random
    if config.lora_rank is not None:
        model = apply_lora(model, config)
    counts = parameter_counts(model)
    run = _prepare(accelerator, model, train_batches, config, task, directory, progress)
    state = _start(run, resume)
    run.writer = _summary_writer(run, state.global_step)
    try:
        while (
            state.epoch < config.max_epochs
            and not state.stopped_early
            and not state.reached_max_steps
        ):
            _run_epoch(run, state, train_batches, validation_batches)
    finally:
        if run.writer is not None:
            run.writer.close()
    return _result(run, state, counts)


def _output_directory(output_dir: str | os.PathLike[str]) -> Path:
    if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise TypeError(f"output_dir must be a non-empty path, got {output_dir!r}.")
    return Path(output_dir)


def _prepare(
    accelerator: Accelerator,
    model: nn.Module,
    train_batches: Iterable[Any],
    config: TrainingConfig,
    task: str,
    output_dir: Path,
    progress: bool,
) -> _Run:
    """The optimizer and the learning-rate schedule of ``model``, prepared for
    ``accelerator``."""
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
    return _Run(
        accelerator, model, optimizer, scheduler, config, task, output_dir, steps_per_epoch,
        progress,
    )  # fmt: skip


def _start(run: _Run, resume: bool) -> _State:
    """A fresh loop state, or that of the last finished epoch in ``run.output_dir``."""
    state = _State()
    found = checkpoints.finished_checkpoints(run.output_dir)
    if resume and found:
        latest_epoch, latest = found[-1]
        state = _State.from_dict(
            checkpoints.load_checkpoint(run.accelerator, latest, run.training, run.config, run.task)
        )
        # A larger max_steps than the interrupted run's lets it go on.
        state.reached_max_steps = (
            run.config.max_steps is not None and state.global_step >= run.config.max_steps
        )
        logger.info("Resuming after epoch %d from %s", latest_epoch, latest)
    elif found and run.accelerator.is_main_process:
        checkpoints.remove_checkpoints(run.output_dir)
    run.accelerator.wait_for_everyone()
    return state


def _run_epoch(
    run: _Run,
    state: _State,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    validation_batches: Iterable[Mapping[str, torch.Tensor]] | None,
) -> None:
    """Train one epoch, validate, update early stopping, write the checkpoints."""
    config = run.config
    epoch = state.epoch + 1
    _set_epoch(train_batches, epoch)
    train_metrics, steps = _train_epoch(run, state, train_batches, epoch)
    validation: dict[str, float] = {}
    if validation_batches is not None:
        _set_epoch(validation_batches, epoch)
        validation = evaluate(run.accelerator.unwrap_model(run.model), validation_batches)
    improved = _update_early_stopping(state, validation, config, epoch)
    record = EpochRecord(epoch, steps, state.global_step, train_metrics, validation, improved)
    state.history.append(record)
    state.epoch = epoch
    if config.max_steps is not None and state.global_step >= config.max_steps:
        state.reached_max_steps = True
    if run.writer is not None:
        for name, value in validation.items():
            run.writer.add_scalar(f"validation/{name}", value, state.global_step)
        run.writer.flush()
    if improved:
        checkpoints.save_best(
            run.accelerator, run.output_dir, run.model, dataclasses.asdict(record), config
        )
    checkpoints.save_checkpoint(
        run.accelerator, run.output_dir, run.training, state.to_dict(), config, run.task
    )
    _log_epoch(record, config)


def _result(run: _Run, state: _State, counts: tuple[int, int]) -> FitResult:
    """The best epoch's weights, back in the training model (adapters included), merged."""
    accelerator = run.accelerator
    best_epoch = state.best_epoch
    if best_epoch is not None and best_epoch != state.epoch:
        checkpoints.load_epoch_weights(
            accelerator.unwrap_model(run.model), run.output_dir, best_epoch
        )
    # Without accelerate's mixed-precision wrapper around forward: a plain model.
    final_model = merge_lora(accelerator.unwrap_model(run.model, keep_fp32_wrapper=False))
    accelerator.free_memory()
    best_path = run.output_dir / checkpoints.BEST_DIRECTORY
    trainable, total = counts
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


def _summary_writer(run: _Run, global_step: int) -> Any:
    if not (run.config.tensorboard and run.accelerator.is_main_process):
        return None
    from torch.utils.tensorboard import SummaryWriter

    # purge_step hides the points an interrupted run wrote after its last checkpoint.
    return SummaryWriter(
        log_dir=str(run.output_dir / "tensorboard"),
        purge_step=global_step + 1 if global_step else None,
    )


def _train_epoch(
    run: _Run, state: _State, train_batches: Iterable[Mapping[str, torch.Tensor]], epoch: int
) -> tuple[dict[str, float], int]:
    """One pass over the training batches; returns the mean losses and the steps done."""
    accelerator, model, config = run.accelerator, run.model, run.config
    model.train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    keys = forward_keys(model)
    steps_left = run.steps_per_epoch
    if config.max_steps is not None:
        steps_left = min(steps_left, config.max_steps - state.global_step)
    # Sums stay on the device; reading them (a synchronisation) happens every log_every steps.
    sums: dict[str, torch.Tensor] = {}
    window: dict[str, torch.Tensor] = {}
    window_steps = steps = 0
    bar = tqdm(
        total=steps_left,
        desc=f"epoch {epoch}/{config.max_epochs}",
        disable=not (run.progress and accelerator.is_main_process),
        leave=False,
    )
    batches = _shard(train_batches, accelerator.num_processes, accelerator.process_index)
    for batch in batches:
        if steps >= steps_left:
            break
        if steps == 0:
            _check_batch_task(batch, run.task)
        inputs = model_inputs(batch, keys, accelerator.device)
        with accelerator.autocast():
            parts = training_loss(model, inputs, config)
        accelerator.backward(parts.total)
        if config.gradient_clip_norm is not None:
            accelerator.clip_grad_norm_(trainable, config.gradient_clip_norm)
        run.optimizer.step()
        if not getattr(run.optimizer, "step_was_skipped", False):  # fp16 overflow skips a step
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        steps += 1
        state.global_step += 1
        window_steps += 1
        _accumulate(parts, sums, window)
        bar.update(1)
        if steps % config.log_every == 0 or steps == steps_left:
            _log_window(run, window, window_steps, epoch, state.global_step, bar)
            window, window_steps = {}, 0
    bar.close()
    if steps == 0:
        raise ValueError(
            f"Epoch {epoch} got no training batch; the training batches must be re-iterable "
            "(a list, or batches.TargetBatches), not a one-shot iterator."
        )
    # Under DDP, report the mean over processes.
    means = {
        name: float(accelerator.reduce(value / steps, reduction="mean"))
        for name, value in sorted(sums.items())
    }
    return means, steps


def _accumulate(
    parts: LossParts, sums: dict[str, torch.Tensor], window: dict[str, torch.Tensor]
) -> None:
    """Add the step's losses to the epoch's ``sums`` and the logging ``window``'s."""
    values = {"loss": parts.total, "clean_loss": parts.clean}
    if parts.adversarial is not None:
        values["adversarial_loss"] = parts.adversarial
    values.update({f"loss_{name}": loss for name, loss in parts.losses.items()})
    for name, value in values.items():
        value = value.detach().float()
        sums[name] = sums[name] + value if name in sums else value
        window[name] = window[name] + value if name in window else value


def _log_window(
    run: _Run,
    window: dict[str, torch.Tensor],
    window_steps: int,
    epoch: int,
    global_step: int,
    bar: Any,
) -> None:
    """Mean losses of the last ``window_steps`` steps: checked, on the bar, to TensorBoard."""
    means = {name: float(total) / window_steps for name, total in window.items()}
    _check_finite(means, epoch, global_step)
    bar.set_postfix(loss=f"{means['loss']:.4f}")
    if run.writer is not None:
        for name, mean in means.items():
            run.writer.add_scalar(f"train/{name}", mean, global_step)
        run.writer.add_scalar("train/learning_rate", run.scheduler.get_last_lr()[0], global_step)


def _check_batch_task(batch: Mapping[str, Any], task: str) -> None:
    masked = "masked_item_labels" in batch
    if task == "masked_item" and not masked:
        raise ValueError(
            "task='masked_item' (pretrain) needs batches with masked_item_labels, e.g. "
            f"batches.MaskedItemBatches; got keys {sorted(batch)}."
        )
    if task == "multitask" and masked:
        raise ValueError(
            "task='multitask' (finetune) got masked-item batches; use pretrain (task="
            "'masked_item') for batches.MaskedItemBatches, finetune for batches.TargetBatches."
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


def _higher_is_better(metric: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "max"
    return any(part in metric for part in _HIGHER_IS_BETTER)


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
    output_dir: str | os.PathLike[str],
    progress: bool = True,
    resume: bool = True,
) -> FitResult:
    """Masked-item pre-training (BERT4Rec): `fit` with ``task="masked_item"``.

    The batches are `batches.MaskedItemBatches` (history windows with 20% of the items
    replaced by ``[MASK]`` and ``masked_item_labels``). The early-stopping metric
    defaults to the validation loss; ``masked_item_hit_rate_at_10`` is a common choice.
    """
    return fit(
        model, train_batches, validation_batches, config, output_dir=output_dir,
        progress=progress, task="masked_item", resume=resume,
    )  # fmt: skip


def finetune(
    model: nn.Module,
    train_batches: Iterable[Mapping[str, torch.Tensor]],
    validation_batches: Iterable[Mapping[str, torch.Tensor]] | None,
    config: TrainingConfig,
    *,
    output_dir: str | os.PathLike[str],
    progress: bool = True,
    resume: bool = True,
) -> FitResult:
    """Multi-task fine-tuning of every head: `fit` with ``task="multitask"``.

    The batches are `batches.TargetBatches`. Set ``config.lora_rank`` to fine-tune a
    pre-trained backbone through LoRA adapters, ``config.adversarial`` for FGM/PGD.
    """
    return fit(
        model, train_batches, validation_batches, config, output_dir=output_dir,
        progress=progress, task="multitask", resume=resume,
    )  # fmt: skip
