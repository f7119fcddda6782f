"""FGM/PGD: perturbations of the predictor's summed input embeddings along the loss gradient.

`training_loss` (`loe_gym.predictor.losses`) trains on them; `evaluate_perturbed`
(`loe_gym.predictor.evaluation`) measures the metrics' robustness to them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from loe_gym.predictor.lora import base_model

__all__ = ["forward_with_gradient", "per_example_normalise", "project", "zero_noise"]


def per_example_normalise(gradient: torch.Tensor) -> torch.Tensor:
    """``g / ‖g‖`` with the L2 norm taken over all axes but the batch axis."""
    norms = gradient.flatten(1).norm(dim=1).clamp_min(1e-12)
    return gradient / norms.view(-1, *([1] * (gradient.ndim - 1)))


def project(noise: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Project each example's perturbation onto the L2 ball of radius ``epsilon``."""
    norms = noise.flatten(1).norm(dim=1)
    scale = (epsilon / norms.clamp_min(1e-12)).clamp(max=1.0)
    return noise * scale.view(-1, *([1] * (noise.ndim - 1)))


def forward_with_gradient(
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
        noise = zero_noise(model, inputs)
    noise = noise.detach().requires_grad_(True)
    output = model(**inputs, inputs_embeds_noise=noise)
    if output.loss is None:
        raise ValueError(
            "FGM/PGD perturbations follow the loss gradient, so the batch needs labels: the "
            "model returned no loss."
        )
    (gradient,) = torch.autograd.grad(output.loss, noise, retain_graph=keep_graph)
    return output, gradient


def zero_noise(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Zeros shaped like the model's summed input embeddings ``(B, L + 1, H)``, with ``L``
    the history length after the model's truncation to ``max_history_length``."""
    history = inputs["history_item_ids"]
    config: Any = base_model(model).config
    length = min(history.shape[1], config.max_history_length)
    dtype = next(model.parameters()).dtype
    return torch.zeros(
        history.shape[0], length + 1, config.hidden_size, device=history.device, dtype=dtype
    )
