"""Where torch work runs: one setting for a whole command (``--device auto|cpu|cuda``).

The predictor's service (state encoder, reward model, learned simulator), its training and
the agents' networks all read `current_device`, so a command runs them on one device and a
batch crosses to the host once per step, as numpy for the simulator. ``auto`` (the default)
is ``cuda`` where torch sees a GPU, else ``cpu``.

    with using_device("cuda"):
        train_agent(config, "runs/ppo")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["DEVICES", "current_device", "resolve_device", "using_device"]

DEVICES = ("auto", "cpu", "cuda")
"""What ``--device`` takes (``cuda:1`` too: a given GPU)."""
_DEVICE: ContextVar[str] = ContextVar("loe_gym_device", default="auto")


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"cuda[:N]"`` for ``device``; a GPU that torch cannot see is refused."""
    import torch

    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise ValueError(
                f"--device {name}: torch sees no CUDA device ({build}, torch "
                f"{torch.__version__}); pass --device cpu, or auto to use a GPU where there is one."
            )
        return name
    raise ValueError(f"--device {name!r}: choose from auto, cpu, cuda or cuda:N.")


def current_device() -> str:
    """The resolved device of the running command (``auto`` outside `using_device`)."""
    return resolve_device(_DEVICE.get())


@contextlib.contextmanager
def using_device(device: str) -> Iterator[str]:
    """Run the block's torch work on ``device`` (checked first); yields the resolved name."""
    resolved = resolve_device(device)
    token = _DEVICE.set(resolved)
    try:
        yield resolved
    finally:
        _DEVICE.reset(token)
