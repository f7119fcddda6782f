"""Checks on tensors read from files."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], path: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` naming the first floating tensor of ``path`` with NaN or inf.

    ``tensors`` is ``(name, tensor)`` pairs (``dict.items()``, ``named_parameters()``).
    A diverged run or a corrupt file would otherwise load silently and act on NaN.
    """
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{str(path)!r}: tensor {name!r} holds NaN or inf values; the file is "
                "corrupt or its training diverged. Use an earlier checkpoint or retrain."
            )
