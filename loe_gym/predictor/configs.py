"""The predictor's options: architecture, optimisation and the fit on a log.

A light module (no torch, no transformers at import) so that the command line builds its
options from these classes and answers ``--help`` at once. `FitPredictorConfig` composes the
others; catalog-dependent sizes (``num_items``, ``num_item_features``) are not options: they
are read from the log when the model is built (`loe_gym.predictor.pipeline.build_model`).
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loe_gym.config import FrozenConfig
from loe_gym.errors import did_you_mean

__all__ = [
    "ADVERSARIAL_METHODS",
    "BACKBONES",
    "FINETUNING_TASKS",
    "LOSS_WEIGHTINGS",
    "TASKS",
    "FitPredictorConfig",
    "ModelConfig",
    "TrainingConfig",
]

FINETUNING_TASKS = ("click", "watch_time", "ranking", "continuation", "return")
"""The heads trained on target rows, in the order of their reports."""
TASKS = (*FINETUNING_TASKS, "masked_item")
"""Every task with a head and a loss (``masked_item``: BERT4Rec pre-training), in the order
of ``PredictorModel.log_variances``."""
BACKBONES = ("bert", "gpt2")
"""``bert`` (bidirectional) or ``gpt2`` (causal)."""
LOSS_WEIGHTINGS = ("fixed", "uncertainty")
"""``fixed``: ``Σ w_i L_i``; ``uncertainty``: ``Σ w_i (exp(−s_i) L_i + s_i)``, learned ``s_i``."""
ADVERSARIAL_METHODS = ("none", "fgm", "pgd")
"""Perturbations of the input embeddings during training."""
SPLITS = ("users", "temporal", "leave_last_out")
"""How `fit_predictor` holds out data (`FitPredictorConfig.split`)."""
LR_SCHEDULES = ("linear", "cosine")
"""Decay after the linear warm-up (``transformers.get_scheduler`` names)."""
MIXED_PRECISION = ("no", "fp16", "bf16")
"""``accelerate`` mixed-precision modes."""
LORA_BIASES = ("none", "lora_only", "all")
"""peft's ``bias`` options: which biases train with the adapters."""
EARLY_STOPPING_MODES = ("auto", "min", "max")
"""``auto``: maximise AUC / GAUC / NDCG / hit-rate metrics, minimise the others."""


@dataclass(frozen=True)
class ModelConfig(FrozenConfig):
    """The predictor's architecture (`PredictorConfig` takes these and the catalog's sizes).

    >>> ModelConfig(hidden_size=32).task_weights["return"]
    5.0
    """

    hidden_size: int = 64
    """Transformer width (tokens, user state and item embeddings)."""
    num_hidden_layers: int = 2
    """Transformer layers."""
    num_attention_heads: int = 2
    """Attention heads; must divide ``hidden_size``."""
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
    item_id_embeddings: bool = True
    """Learn an embedding per item id; False = items are their public features only (what
    a learned simulator wants: see docs/simulators/learned.md)."""
    task_weights: dict[str, float] = field(default_factory=lambda: {"return": 5.0})
    """Loss weight per task (tasks not named weigh 1; 0 turns a task off). Next-day return
    is a weak, slow signal (the Bayes AUC of the default simulator is about 0.6), labelled
    at session ends only (about 5 % of rows) in evaluation, so it weighs 5."""
    loss_weighting: str = "fixed"
    """``fixed`` (the weights above) or ``uncertainty`` (Kendall et al. 2018)."""
    item_features: bool = True
    """Read the catalog's numeric item features; False: items are their id (and text)
    only, an ablation (such a model cannot serve an environment, whose items carry
    features)."""
    text_model: str | None = None
    """Items also carry their catalog text, encoded once by this frozen language model
    (``minilm``: the ``text`` extra's all-MiniLM-L6-v2, or a local Hugging Face folder)
    and projected into the item vector; None = no text."""
    pretrained_backbone: str | None = None
    """Start the transformer from this pretrained model's layers (``minilm`` or a local
    BERT / GPT-2 folder); its sizes replace ``hidden_size``, ``num_hidden_layers`` and
    ``num_attention_heads``. Adapt it with ``training.lora_rank`` (LoRA)."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_positive("hidden_size", "num_hidden_layers", "num_attention_heads")
        self._check_positive("max_history_length")
        self._check_choice("backbone", BACKBONES)
        self._check_choice("loss_weighting", LOSS_WEIGHTINGS)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must lie in [0, 1), got {self.dropout}.")
        object.__setattr__(self, "profile_decays", tuple(self.profile_decays))
        for task, weight in self.task_weights.items():
            if task not in TASKS:
                raise ValueError(
                    f"ModelConfig.task_weights: tasks must be among {', '.join(TASKS)}; got "
                    f"an unknown task {task!r}.{did_you_mean(str(task), TASKS)}"
                )
            if isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
                raise ValueError(
                    f"ModelConfig.task_weights[{task!r}] must be a finite weight ≥ 0, got "
                    f"{weight!r}."
                )
        if not any(self.weight(task) > 0 for task in FINETUNING_TASKS):
            raise ValueError(
                f"ModelConfig.task_weights turns every task off ({self.task_weights}); give at "
                f"least one of {', '.join(FINETUNING_TASKS)} a weight > 0."
            )

    def weight(self, task: str) -> float:
        """The loss weight of ``task`` (1 unless ``task_weights`` names it)."""
        return float(self.task_weights.get(task, 1.0))

    def predictor_arguments(self) -> dict[str, Any]:
        """Keyword arguments of `PredictorConfig` for this architecture (without the
        catalog's sizes)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        dropout = values.pop("dropout")
        values.pop("item_features")  # decides the features the fit passes, not a size
        values.pop("pretrained_backbone")  # resolved into sizes and a path by the fit
        values.update(
            hidden_dropout_prob=dropout,
            attention_dropout_prob=dropout,
            task_weights={task: self.weight(task) for task in TASKS},
        )
        return values


@dataclass(frozen=True)
class TrainingConfig(FrozenConfig):
    """How the predictor is optimised: options of `fit`, `pretrain` and `finetune`.

    The folder a run writes to is an argument of those functions, not an option: a config
    says how to train, the caller says where.

    >>> TrainingConfig().learning_rate
    0.001
    >>> TrainingConfig.from_dict({"learning_rat": 0.1})
    Traceback (most recent call last):
    ...
    TypeError: TrainingConfig.__init__() got an unexpected keyword argument 'learning_rat'. Did you mean 'learning_rate'? ...
    """

    learning_rate: float = 1e-3
    """Peak learning rate of AdamW, reached at the end of the warm-up."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay; not applied to biases, LayerNorm weights and other
    1-d parameters (e.g. the learned loss log-variances)."""
    batch_size: int = 256
    """Rows per batch per process, for the caller's batch builders (`batches.TargetBatches`);
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
    """L2 radius ε of the perturbation of each example's input embeddings, in training and
    in the perturbed metrics of `fit_predictor` (0 = no perturbed metrics; FGM/PGD need > 0)."""
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
    tensorboard: bool = True
    """Write TensorBoard scalars to ``output_dir/tensorboard``."""
    mixed_precision: str = "no"
    """``no``, ``fp16`` or ``bf16`` (``accelerate``; fixed for the life of the process)."""

    def __post_init__(self) -> None:
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
        self._check_positive("pgd_steps", "lora_alpha")
        self._check_nonnegative("adversarial_epsilon")
        if self.adversarial != "none" and self.adversarial_epsilon == 0:
            raise ValueError(
                f"adversarial={self.adversarial!r} needs adversarial_epsilon > 0, got 0."
            )
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


def _default_fit_training() -> TrainingConfig:
    # `fit_predictor`'s measured budget: 4 epochs of at most 1500 steps at 2e-3 fit in 12
    # minutes on a 2-core CPU (docs/predictor.md).
    return TrainingConfig(learning_rate=2e-3, max_epochs=4, steps_per_epoch=1500)


@dataclass(frozen=True)
class FitPredictorConfig(FrozenConfig):
    """Options of `fit_predictor` (``loe-gym fit-predictor --help`` lists them).

    ``training.max_epochs`` bounds the multi-task fine-tuning (early stopping on the
    validation loss); ``pretrain_epochs`` adds masked-item pre-training before it.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    """The architecture."""
    training: TrainingConfig = field(default_factory=_default_fit_training)
    """The optimisation (its seed also seeds the split of users and the batches)."""
    pretrain_epochs: int = 0
    """Epochs of masked-item pre-training (0 = none; with the long-term profile it did not
    help at this budget, see docs/predictor.md)."""
    initial_model: str | None = None
    """Start from this saved predictor (``save_pretrained`` directory) instead of scratch.
    With ``training.lora_rank``: adapters on the attention and the candidate trunk, the
    output layers trained in full (`adaptation_lora_modules`, 3.9 % of the parameters at
    hidden 64)."""
    target_policies: tuple[str, ...] = ()
    """Train on target rows whose slate these policies chose, e.g. ``diverse:random`` (the
    random component of the ``diverse`` logging policy): outcomes of randomised exposure
    carry no selection bias of the logging policy. Histories keep every row. Empty = all."""
    click_target_policies: tuple[str, ...] = ()
    """Train the click and watch-time heads only on rows whose slate these policies chose
    (e.g. ``diverse:random``); the other heads keep every target row. Empty = all."""
    session_return_labels: bool = True
    """Train the return head on every row with its session's outcome, not only on the
    session's last step (evaluation always scores session ends)."""
    split: str = "users"
    """``users``: hold out whole users (validation and test fractions of users);
    ``temporal``: hold out the latest days of every user (fractions of rows, cut at whole
    days), and report items first seen after the cut (cold) apart from the others;
    ``leave_last_out``: each user's last clicked row is the test target and the clicked row
    before it the validation target (the fractions are unused; users with fewer than 3
    clicked rows only train)."""
    validation_fraction: float = 0.1
    """Share of users (or, split by time, of rows) for validation (early stopping)."""
    test_fraction: float = 0.1
    """Share of users (or, split by time, of the latest rows) held out for the report."""
    validation_target_fraction: float = 0.25
    """Share of the validation users' targets scored after each epoch (early stopping);
    the held-out test users are always scored in full."""
    gru_epochs: int = 1
    """Epochs of the GRU ranking baseline (0 = skip it)."""

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_nonnegative("pretrain_epochs", "gru_epochs")
        self._check_choice("split", SPLITS)
        self._check_unit_interval(
            "validation_fraction", "test_fraction", "validation_target_fraction"
        )
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "FitPredictorConfig: validation_fraction + test_fraction must be below 1 to "
                f"leave training users, got {self.validation_fraction} + {self.test_fraction}."
            )
        for name in ("target_policies", "click_target_policies"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
