"""Typed, frozen configuration dataclasses that reject unknown keys and bad ranges."""

from __future__ import annotations

import ast
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import itertools
import math
import sys
import types
import typing
from collections.abc import Iterator
from typing import Any, Self

import numpy as np

from loe_gym.errors import check_choice, did_you_mean

_DEFERRED = contextvars.ContextVar("loe_gym_config_checks_deferred", default=False)


@contextlib.contextmanager
def checks_deferred() -> Iterator[None]:
    """Build configs without their range checks (a parser fills a tree field by field);
    `checked` then validates the whole tree, so errors read the same from every entry."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def checked(config: FrozenConfig) -> FrozenConfig:
    """``config`` rebuilt with every check of its tree run (see `checks_deferred`)."""
    return type(config).from_dict(config.to_dict())


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    """Base of the project's configs: build with keywords, ``replace`` to change.

    Unlike dict configs merged with ``update()``, a misspelt key is an error that
    suggests the intended one, and every range is checked in ``__post_init__``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        post_init = cls.__dict__.get("__post_init__")
        if post_init is not None:

            @functools.wraps(post_init)
            def run_checks(self: Any) -> None:
                if not _DEFERRED.get():
                    post_init(self)

            cls.__post_init__ = run_checks  # type: ignore[attr-defined]

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Each field's docstring (the string literal under it), for ``--help`` texts."""
        return field_docs(cls)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from a mapping (nested configs as nested mappings, tuples as lists, as
        `to_dict` and JSON write them), rejecting unknown keys with a suggestion."""
        cls._check_keys(values)
        hints = cls._field_types()
        built = {}
        for name, value in values.items():
            kind = hints[name]
            part = _config_class(kind)
            if part is not None and isinstance(value, dict):
                value = part.from_dict(value)
            elif isinstance(value, list) and _is_tuple(kind):
                value = tuple(value)
            built[name] = value
        return cls(**built)

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    @classmethod
    def parts(cls) -> dict[str, type[FrozenConfig]]:
        """The fields that hold a config of their own: name → its class."""
        hints = cls._field_types()
        found = {f.name: _config_class(hints[f.name]) for f in dataclasses.fields(cls)}
        return {name: part for name, part in found.items() if part is not None}

    @classmethod
    def leaves(cls, prefix: str = "") -> Iterator[tuple[str, type[FrozenConfig], str]]:
        """Every option of the tree below this config: ``(dotted path, declaring class,
        field name)``, nested configs walked (``predictor.training.learning_rate``)."""
        parts = cls.parts()
        for f in dataclasses.fields(cls):
            if f.name in parts:
                yield from parts[f.name].leaves(f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}", cls, f.name

    def merged(self, values: dict[str, Any]) -> Self:
        """A copy with ``values`` applied, nested mappings merged into the nested configs
        (what a ``--config`` file gives: only the options it names change)."""
        self._check_keys(values)
        parts = self.parts()
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if name in parts and isinstance(value, dict):
                current = getattr(self, name)
                changes[name] = (
                    current.merged(value) if current is not None else parts[name].from_dict(value)
                )
            else:
                changes[name] = value
        return type(self).from_dict({**self._shallow_dict(), **changes})

    def _shallow_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

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
                    # Python's own wording, which clients such as TorchRL's GymEnv match
                    # to drop keywords they pass on speculation (frameskip, render_mode).
                    f"{cls.__name__}.__init__() got an unexpected keyword argument {key!r}."
                    f"{did_you_mean(key, known)} "
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


def _config_class(kind: Any) -> type[FrozenConfig] | None:
    """The `FrozenConfig` class a field type names (``X`` or ``X | None``), else None."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if typing.get_origin(kind) is typing.Union:
        options = typing.get_args(kind)
    for option in options:
        if isinstance(option, type) and issubclass(option, FrozenConfig):
            return option
    return None


def _is_tuple(kind: Any) -> bool:
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    return any(option is tuple or typing.get_origin(option) is tuple for option in options)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass ``cls`` (its bases' first), white space
    folded."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ != "builtins":
            docs.update(_module_field_docs(klass.__module__).get(klass.__qualname__, {}))
    return docs


@functools.cache
def _module_field_docs(module_name: str) -> dict[str, dict[str, str]]:
    """``{class qualname: {field: docstring}}`` of a module, its source parsed once (the
    command line asks for a dozen classes per ``--help``)."""
    try:
        source = inspect.getsource(sys.modules[module_name])
    except (KeyError, OSError, TypeError):
        return {}
    found: dict[str, dict[str, str]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                name = prefix + node.name
                found[name] = _class_field_docs(node)
                visit(node.body, name + ".")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, f"{prefix}{node.name}.<locals>.")

    visit(ast.parse(source).body, "")
    return found


def _class_field_docs(node: ast.ClassDef) -> dict[str, str]:
    docs: dict[str, str] = {}
    for field_node, after in itertools.pairwise(node.body):
        if (
            isinstance(field_node, ast.AnnAssign)
            and isinstance(field_node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[field_node.target.id] = " ".join(after.value.value.split())
    return docs
