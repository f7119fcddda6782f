"""Typed, frozen configuration dataclasses that reject unknown keys and bad ranges."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math
import textwrap
from typing import Any, Self

import numpy as np

from loe_gym.errors import check_choice, did_you_mean


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    """Base of the project's configs: build with keywords, ``replace`` to change.

    Unlike dict configs merged with ``update()``, a misspelt key is an error that
    suggests the intended one, and every range is checked in ``__post_init__``.
    """

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Each field's docstring (the string literal under it), for ``--help`` texts."""
        docs: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
            except (OSError, TypeError, SyntaxError):
                continue
            body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
            for node, after in itertools.pairwise(body):
                if (
                    isinstance(node, ast.AnnAssign)
                    and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                ):
                    docs[node.target.id] = " ".join(after.value.value.split())
        return docs

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from a mapping, rejecting unknown keys with a suggestion."""
        cls._check_keys(values)
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (validated like a new config)."""
        self._check_keys(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def _check_keys(cls, values: dict[str, Any]) -> None:
        known = cls.field_names()
        for key in values:
            if key not in known:
                raise TypeError(
                    f"{cls.__name__} got an unknown option {key!r}.{did_you_mean(key, known)} "
                    f"Known options: {', '.join(known)}."
                )

    # --- range checks used by subclasses' __post_init__ ---

    def _value(self, name: str) -> float:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"{type(self).__name__}.{name} must be a number, got {value!r} "
                f"({type(value).__name__})."
            )
        if not math.isfinite(value):
            raise ValueError(f"{type(self).__name__}.{name} must be finite, got {value}.")
        return float(value)

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        """``name`` holds one of ``choices``; else the error lists them and suggests one."""
        check_choice(f"{type(self).__name__}.{name}", getattr(self, name), choices)

    def _check_positive(self, *names: str) -> None:
        for name in names:
            if self._value(name) <= 0:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be > 0, got {getattr(self, name)}."
                )

    def _check_nonnegative(self, *names: str) -> None:
        for name in names:
            if self._value(name) < 0:
                raise ValueError(
                    f"{type(self).__name__}.{name} must be ≥ 0, got {getattr(self, name)}."
                )

    def _check_unit_interval(self, *names: str) -> None:
        for name in names:
            if not 0.0 <= self._value(name) <= 1.0:
                raise ValueError(
                    f"{type(self).__name__}.{name} must lie in [0, 1], got {getattr(self, name)}."
                )

    def _check_numbers(self) -> None:
        """Every int/float field is a finite number, and int fields are whole (catches
        strings, NaN and ``num_items=50.5``)."""
        for f in dataclasses.fields(self):
            if f.type not in ("int", "float", int, float):
                continue
            self._value(f.name)
            value = getattr(self, f.name)
            if f.type in ("int", int) and not isinstance(value, (int, np.integer)):
                raise TypeError(
                    f"{type(self).__name__}.{f.name} must be an integer, got {value!r}."
                )
