"""Saving and loading SB3 agents without pickle: safetensors weights plus a JSON file.

SB3's ``model.zip`` stores parts of the model with cloudpickle, and loading such a file
runs whatever code its author put there. Here an agent is two files:

* ``<stem>.safetensors``: every tensor of ``model.get_parameters()`` (the policy's and the
  optimizers' state) and of the algorithm's torch variables (SAC's entropy coefficient);
* ``<stem>.json``: the rest of those state dicts (optimizer hyper-parameters, the nesting),
  the step counters and the reward normaliser's statistics.

The model itself is rebuilt from the run's `TrainRunConfig` (``agents.training``), so
loading reads numbers and JSON only. Non-finite weights are refused with the tensor's name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from loe_gym.tensors import check_finite

FORMAT = 1
"""Version of the JSON layout; a newer file is refused with a clear error."""
_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num")


def agent_files(directory: str | os.PathLike[str], stem: str) -> tuple[Path, Path]:
    """``(weights, description)`` paths of the agent ``stem`` in ``directory``."""
    directory = Path(directory)
    return directory / f"{stem}.safetensors", directory / f"{stem}.json"


def save_agent(model: Any, directory: str | os.PathLike[str], stem: str) -> Path:
    """Write ``model`` (an SB3 algorithm) as ``stem.safetensors`` and ``stem.json`` in
    ``directory``, each atomically (the JSON last: a reader that finds it finds both)."""
    weights, description = agent_files(directory, stem)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    _, variable_names = model._get_torch_save_params()
    variables = {name: _attribute(model, name).detach() for name in variable_names}
    layout = {
        "format": FORMAT,
        "algorithm": type(model).__name__,
        "parameters": _encode(model.get_parameters(), "parameters", tensors),
        "variables": _encode(variables, "variables", tensors),
        "counters": {name: int(getattr(model, name)) for name in _COUNTERS},
        "reward_normalizer": _normalizer_state(model.get_vec_normalize_env()),
    }
    temporary = weights.with_name(f".{weights.name}.tmp")
    save_file(tensors, str(temporary))
    os.replace(temporary, weights)
    temporary = description.with_name(f".{description.name}.tmp")
    temporary.write_text(json.dumps(layout, indent=1) + "\n")
    os.replace(temporary, description)
    return description


def restore_agent(model: Any, directory: str | os.PathLike[str], stem: str) -> None:
    """Load the agent ``stem`` of ``directory`` into ``model``, built by the same config."""
    weights, description = agent_files(directory, stem)
    for path in (weights, description):
        if not path.is_file():
            raise FileNotFoundError(
                f"No agent file {str(path)!r}: pass a folder written by loe-gym train."
            )
    layout = json.loads(description.read_text())
    if layout.get("format") != FORMAT:
        raise ValueError(
            f"{description} has agent format {layout.get('format')!r}; this loe_gym reads "
            f"format {FORMAT}. Use the loe_gym version that wrote it."
        )
    if layout["algorithm"] != type(model).__name__:
        raise ValueError(
            f"{description} holds a {layout['algorithm']} agent, not {type(model).__name__}."
        )
    tensors = load_file(str(weights))
    check_finite(tensors.items(), weights)
    model.set_parameters(_decode(layout["parameters"], tensors), exact_match=True)
    for name, value in _decode(layout["variables"], tensors).items():
        _attribute(model, name).data.copy_(value)
    for name, value in layout["counters"].items():
        setattr(model, name, int(value))
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None and layout["reward_normalizer"] is not None:
        for name, value in layout["reward_normalizer"].items():
            setattr(normalizer.ret_rms, name, np.asarray(value, np.float64))


def _attribute(model: Any, dotted: str) -> Any:
    value = model
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _normalizer_state(normalizer: Any) -> dict[str, Any] | None:
    if normalizer is None:
        return None
    rms = normalizer.ret_rms
    return {"mean": np.asarray(rms.mean).tolist(), "var": np.asarray(rms.var).tolist(),
            "count": float(rms.count)}  # fmt: skip


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON for ``value`` with its tensors moved to ``tensors`` (under their path)."""
    if isinstance(value, torch.Tensor):
        # A copy: safetensors refuses tensors that share memory (SB3 policies may hold
        # one extractor under several names).
        tensors[path] = value.detach().cpu().clone().contiguous()
        return {"tensor": path}
    if isinstance(value, dict):
        return {
            "dict": [[key, _encode(item, f"{path}/{key}", tensors)] for key, item in value.items()]
        }
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_encode(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"Cannot save {path}: a {type(value).__name__} is not a tensor or JSON value.")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        return tensors[value["tensor"]]
    if "dict" in value:
        return {key: _decode(item, tensors) for key, item in value["dict"]}
    encoded: list[Any] = value["list"] if "list" in value else value["tuple"]
    items = [_decode(item, tensors) for item in encoded]
    return items if "list" in value else tuple(items)
