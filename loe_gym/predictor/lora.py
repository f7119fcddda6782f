"""LoRA adapters on the predictor: which modules get them, wrapping and merging.

`apply_lora` wraps a `PredictorModel` in a peft model with adapters on the backbone's
attention (and, for adaptation, the candidate trunk); `merge_lora` folds them back into a
plain model. Serving merges through this module, so it never imports the training loop.
"""

from __future__ import annotations

from accelerate.utils import extract_model_from_parallel
from torch import nn

from loe_gym.errors import did_you_mean
from loe_gym.predictor.configs import TrainingConfig

__all__ = [
    "HEAD_MODULES",
    "HEAD_PARAMETERS",
    "adaptation_lora_modules",
    "apply_lora",
    "base_model",
    "default_lora_target_modules",
    "is_peft_model",
    "merge_lora",
    "parameter_counts",
]


def base_model(model: nn.Module) -> nn.Module:
    """The plain ``PredictorModel`` inside DDP and peft wrappers."""
    model = extract_model_from_parallel(model)
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def is_peft_model(model: nn.Module) -> bool:
    return callable(getattr(extract_model_from_parallel(model), "get_base_model", None))


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


def default_lora_target_modules(model: nn.Module) -> tuple[str, ...]:
    """The attention projections that get LoRA adapters by default.

    BERT: ``query`` and ``value`` (as in the LoRA paper: adapting W_q and W_v is as good as
    adapting all four projections at half the parameters). GPT-2 fuses q, k, v into one
    ``c_attn`` Conv1D, so that one gets the adapter.
    """
    backbone = getattr(getattr(base_model(model), "config", None), "backbone", None)
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
continuation, return); ``profile_wide`` exists only with a long-term profile. Names are
suffixes of the modules' dotted names, as peft matches them (``heads.candidate_trunk``)."""

HEAD_PARAMETERS = ("ranking_bias", "masked_item_bias", "log_variances")
"""Parameters `PredictorModel` owns directly that belong to the heads and the loss: the
catalog biases of the ranking and masked-item heads, the learned loss log-variances."""


def _matching(modules: dict[str, nn.Module], name: str) -> list[str]:
    """Dotted names of the modules ``name`` stands for: peft matches a name to every module
    whose dotted name is it or ends with ``.name``."""
    return [full for full in modules if full and (full == name or full.endswith(f".{name}"))]


def adaptation_lora_modules(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(lora_target_modules, lora_modules_to_save)`` for adapting a trained predictor to
    logs of another population: adapters on the attention (`default_lora_target_modules`)
    and on the candidate trunk's two linear layers; the candidate output layer and the
    profile's wide layer trained in full. The heads of a trained model are trained already, so
    they need not train in full (`HEAD_MODULES`, the default after pre-training).

    Measured in docs/predictor.md: 3.9 % of the parameters at hidden 64, recovering 94 % ± 2 %
    of full fine-tuning's held-out click log-loss gain on a shifted population.
    """
    modules = dict(model.named_modules())
    trunk = tuple(
        name for name in ("candidate_trunk.0", "candidate_trunk.3") if _matching(modules, name)
    )
    saved = tuple(name for name in ("candidate_output", "profile_wide") if _matching(modules, name))
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
    if is_peft_model(model):
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
    saved = _modules_to_save(model, requested, explicit=config.lora_modules_to_save is not None)
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


def _modules_to_save(model: nn.Module, requested: tuple[str, ...], *, explicit: bool) -> list[str]:
    """peft's ``modules_to_save`` for the ``requested`` names (modules or the model's own
    parameters); ``explicit``: the names were asked for, so each must exist."""
    own_parameters = dict(model.named_parameters(recurse=False))
    modules = dict(model.named_modules())
    unknown = [
        name for name in requested if name not in own_parameters and not _matching(modules, name)
    ]
    # log_variances is absent with fixed loss weights: only an explicit request must exist.
    if explicit and unknown:
        # Every dotted suffix names modules, as peft matches.
        suffixes = {
            full.split(".", i)[-1] for full in modules if full for i in range(full.count(".") + 1)
        }
        known = sorted(set(own_parameters) | suffixes)
        raise ValueError(
            f"TrainingConfig.lora_modules_to_save names {unknown[0]!r}, which is neither a "
            f"submodule nor a parameter of the model.{did_you_mean(unknown[0], known)}"
        )
    saved: list[str] = []
    for name in requested:
        matches = _matching(modules, name)
        sequences = [full for full in matches if isinstance(modules[full], nn.Sequential)]
        if sequences:
            # peft wraps a saved module in a ModulesToSaveWrapper, which cannot be indexed
            # as the model indexes its profile projections: save the layers instead.
            saved += [
                f"{full}.{child}"
                for full in sequences
                for child, layer in modules[full].named_children()
                if any(True for _ in layer.parameters())
            ]
        elif matches:
            saved.append(name)
    return saved


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA adapters into the weights: a plain ``PredictorModel`` for inference.

    ``W ← W + (alpha / r)·B A`` per adapted layer, and the trained copies of the heads
    replace the originals. The merge modifies the model in place; a plain model is returned
    unchanged.
    """
    model = extract_model_from_parallel(model)
    if not is_peft_model(model):
        return model
    merged = model.merge_and_unload()  # type: ignore[operator]
    return merged
