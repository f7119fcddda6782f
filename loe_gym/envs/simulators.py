"""Resolve a simulator given as an instance, class, ``"module:Class"`` string or built-in name.

``loe_gym`` never imports the ``simulators`` package directly: built-in simulators are
entry-point strings exactly like a user's own, so both are first-class.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from loe_gym.errors import ContractError, did_you_mean
from loe_gym.simulator import UserSimulator

BUILT_IN_SIMULATORS: dict[str, str] = {
    "engagement": "simulators.engagement:EngagementUsers",
    "interest_evolution": "simulators.interest_evolution:InterestEvolutionUsers",
    "long_term_satisfaction": "simulators.long_term_satisfaction:LongTermSatisfactionUsers",
    # A trained predictor as the user model: simulator_kwargs={"predictor": <model dir>, ...}.
    "learned": "simulators.learned:LearnedUsers",
}

_REQUIRED = ("catalog", "reset", "respond", "update", "user_features")
_METHODS = ("reset", "respond", "update", "user_features")
"""What a class named by a string must define before it is called (``catalog`` may be
set in ``__init__``)."""


def load_entry_point(entry_point: str) -> Any:
    """Import ``"package.module:Attribute"`` and return the attribute."""
    if ":" not in entry_point:
        raise ValueError(
            f"Simulator entry point {entry_point!r} must look like 'package.module:ClassName'"
            f"{' or be one of ' + ', '.join(BUILT_IN_SIMULATORS)}.{did_you_mean(entry_point, BUILT_IN_SIMULATORS)}"
        )
    module_name, _, attribute = entry_point.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"Cannot import module {module_name!r} of simulator entry point {entry_point!r}: "
            f"{error}. Check the module path and that its package is installed."
        ) from error
    if not hasattr(module, attribute):
        public = [name for name in dir(module) if not name.startswith("_")]
        # ImportError, as for ``from module import Name``: a bad option, not a bug.
        raise ImportError(
            f"Module {module_name!r} has no attribute {attribute!r} (simulator entry point "
            f"{entry_point!r}).{did_you_mean(attribute, public)}"
        )
    return getattr(module, attribute)


def make_simulator(
    simulator: Any, simulator_kwargs: Mapping[str, Any] | None = None
) -> UserSimulator[Any]:
    """Build the simulator described by ``simulator`` (see `EnvConfig.simulator`)."""
    kwargs = dict(simulator_kwargs or {})
    if isinstance(simulator, str):
        entry_point = BUILT_IN_SIMULATORS.get(simulator, simulator)
        simulator = load_entry_point(entry_point)
        _check_simulator_class(simulator, entry_point)
    if isinstance(simulator, type) or (callable(simulator) and not hasattr(simulator, "respond")):
        simulator = simulator(**kwargs)
    elif kwargs:
        raise ValueError(
            f"simulator_kwargs {sorted(kwargs)} were given with an already built simulator "
            f"{simulator!r}; pass the class or entry-point string instead, or drop the kwargs."
        )
    missing = [name for name in _REQUIRED if not hasattr(simulator, name)]
    if missing:
        raise ContractError(
            f"{simulator!r} is not a user simulator: it lacks {', '.join(missing)}. "
            "Implement the loe_gym.UserSimulator protocol (reset, respond, update, "
            "user_features, catalog) and run loe_gym.check_simulator on it."
        )
    return simulator


def _check_simulator_class(value: Any, entry_point: str) -> None:
    """Refuse, before calling it, anything a string names that is not a simulator class:
    a string may come from a config file, and ``"os:system"`` must not run."""
    if not isinstance(value, type):
        raise ContractError(
            f"Simulator entry point {entry_point!r} names a {type(value).__name__}, not a "
            "class; a string may only name a class implementing loe_gym.UserSimulator "
            "(pass other callables as Python objects, from your own code)."
        )
    missing = [name for name in _METHODS if not callable(getattr(value, name, None))]
    if missing:
        raise ContractError(
            f"Simulator entry point {entry_point!r} names the class {value.__name__}, which "
            f"lacks {', '.join(missing)}: it is not a loe_gym.UserSimulator, so it is not "
            "called."
        )


def imported_module(simulator: Any) -> str | None:
    """The module a simulator string would import that is not a built-in one, else None.

    Readers of files that a user did not write themselves (a run folder's
    ``config.json``) warn with it before building the simulator."""
    if not isinstance(simulator, str) or simulator in BUILT_IN_SIMULATORS:
        return None
    if simulator in BUILT_IN_SIMULATORS.values():
        return None
    return simulator.partition(":")[0]
