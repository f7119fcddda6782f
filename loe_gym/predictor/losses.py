"""The loss of one training step: the model's multi-task loss, plus FGM/PGD terms."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from loe_gym.predictor.adversarial import forward_with_gradient, per_example_normalise, project
from loe_gym.predictor.configs import TrainingConfig
from loe_gym.predictor.lora import base_model

__all__ = ["LossParts", "forward_keys", "model_inputs", "training_loss"]


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


def forward_keys(model: nn.Module) -> frozenset[str]:
    """Batch keys the model's ``forward`` accepts (the evaluation-only columns are not)."""
    # The class's function: accelerate's mixed precision patches the instance's forward.
    parameters = inspect.signature(type(base_model(model)).forward).parameters
    return frozenset(parameters) - {"self", "inputs_embeds_noise"}


def model_inputs(
    batch: Mapping[str, Any], keys: frozenset[str], device: torch.device
) -> dict[str, torch.Tensor]:
    return {
        key: value.to(device, non_blocking=True)
        for key, value in batch.items()
        if key in keys and isinstance(value, torch.Tensor)
    }


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

    clean_output, gradient = forward_with_gradient(model, inputs, None)
    # Under DDP only the clean pass goes through the wrapper: DDP expects one forward per
    # backward. The other passes use the same weights, so their gradients still reach
    # the weights' accumulators and are reduced with the clean ones in one backward.
    module = extract_model_from_parallel(model)
    epsilon = config.adversarial_epsilon
    noise = epsilon * per_example_normalise(gradient)
    if config.adversarial == "pgd":
        alpha = config.pgd_alpha
        # The first step from r = 0 uses the clean gradient already computed.
        noise = project(alpha * per_example_normalise(gradient), epsilon)
        for _ in range(config.pgd_steps - 1):
            _, gradient = forward_with_gradient(module, inputs, noise, keep_graph=False)
            noise = project(noise + alpha * per_example_normalise(gradient), epsilon)
    adversarial_output = module(**inputs, inputs_embeds_noise=noise.detach())
    total = clean_output.loss + config.adversarial_weight * adversarial_output.loss
    return LossParts(
        total, clean_output.loss, adversarial_output.loss, dict(clean_output.losses or {})
    )
