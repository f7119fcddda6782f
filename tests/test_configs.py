"""The config tree: composed, not copied; round trips; the command line built from it."""

from __future__ import annotations

import collections
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import COMMANDS, parse, read_config_file
from agents.configs import SHARED_OPTIONS, ExperimentConfig
from agents.presets import QUICK_EXPERIMENT, QUICK_LOOP, QUICK_VALIDATION
from loe_gym.config import FrozenConfig, checks_deferred


def _root_classes() -> list[type[FrozenConfig]]:
    """Each command's config class (the ``config`` field's default)."""
    classes = []
    for command in COMMANDS.values():
        field = next(f for f in dataclasses.fields(command) if f.name == "config")
        with checks_deferred():
            classes.append(type(field.default_factory()))  # type: ignore[misc]
    return classes


def _tree_classes() -> set[type[FrozenConfig]]:
    found: set[type[FrozenConfig]] = set()
    stack = _root_classes()
    while stack:
        config = stack.pop()
        if config not in found:
            found.add(config)
            stack.extend(config.parts().values())
    return found


def test_no_option_is_declared_twice_unless_it_means_the_same_thing() -> None:
    declared: dict[str, set[str]] = collections.defaultdict(set)
    for config in _tree_classes():
        for field in dataclasses.fields(config):
            if field.name not in config.parts():
                declared[field.name].add(config.__name__)
    repeated = {name: sorted(classes) for name, classes in declared.items() if len(classes) > 1}
    unexplained = {
        name: classes for name, classes in repeated.items() if name not in SHARED_OPTIONS
    }
    assert not unexplained, (
        f"options declared in several configs without one meaning in SHARED_OPTIONS: {unexplained}"
    )


def test_no_config_copies_a_part_s_options_under_a_prefix() -> None:
    for config in _tree_classes():
        parts = config.parts()
        for name, part in parts.items():
            leaves = {field for _, _, field in part.leaves()}
            for field in dataclasses.fields(config):
                prefix = name + "_"
                if field.name.startswith(prefix):
                    assert field.name[len(prefix) :] not in leaves, (
                        f"{config.__name__}.{field.name} copies {name}.{field.name[len(prefix) :]}"
                    )


def test_every_option_has_a_docstring() -> None:
    for config in _tree_classes():
        docs = config.field_docs()
        for field in dataclasses.fields(config):
            assert docs.get(field.name), f"{config.__name__}.{field.name} has no docstring"


@pytest.mark.parametrize("config", sorted(_root_classes(), key=lambda c: c.__name__), ids=str)
def test_a_config_round_trips_through_json(config: type[FrozenConfig]) -> None:
    with checks_deferred():
        instance = config()
    values = json.loads(json.dumps(instance.to_dict()))
    with checks_deferred():
        assert config.from_dict(values) == instance


@pytest.mark.parametrize("preset", [QUICK_EXPERIMENT, QUICK_LOOP, QUICK_VALIDATION])
def test_quick_presets_are_plain_valid_instances(preset: FrozenConfig) -> None:
    assert type(preset).from_dict(preset.to_dict()) == preset


def test_merged_changes_only_the_named_nested_options() -> None:
    config = ExperimentConfig().merged({"predictor": {"model": {"hidden_size": 32}}})
    assert config.predictor.model.hidden_size == 32
    assert config.predictor.training == ExperimentConfig().predictor.training
    with pytest.raises(TypeError, match="Did you mean 'hidden_size'"):
        ExperimentConfig().merged({"predictor": {"model": {"hiden_size": 32}}})


def test_nested_flags_config_files_and_quick(tmp_path: Path) -> None:
    command = parse(["experiment", "--quick", "--predictor.model.hidden-size", "24"])
    assert command.config.predictor.model.hidden_size == 24
    assert command.config.collect == QUICK_EXPERIMENT.collect
    file = tmp_path / "run.toml"
    file.write_text("[agent]\ntotal_steps = 4096\n[evaluation]\nseeds = [3]\n")
    command = parse(["experiment", "--config", str(file), "--agent.num-users", "8"])
    assert (command.config.agent.total_steps, command.config.agent.num_users) == (4096, 8)
    assert command.config.evaluation.seeds == (3,)
    assert parse(["loop", "--quick"]).config == QUICK_LOOP
    (tmp_path / "bad.json").write_text('{"agent": {"total_step": 1}}')
    with pytest.raises(TypeError, match="Did you mean 'total_steps'"):
        parse(["experiment", "--config", str(tmp_path / "bad.json")])
    assert read_config_file(str(file))["evaluation"] == {"seeds": [3]}


def test_the_command_line_imports_nothing_heavy() -> None:
    code = (
        "import sys, agents.cli; heavy = {'torch', 'transformers', 'stable_baselines3', "
        "'pyarrow', 'scipy'} & set(sys.modules); print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


PACKAGES = ("loe_gym", "simulators", "agents")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 700, 80


def test_package_files_and_functions_stay_short() -> None:
    """No package file over 700 lines; no function over 80 unless its docstring says why
    ("Over 80 lines …")."""
    import ast

    root = Path(__file__).resolve().parents[1]
    long_files, long_functions = [], []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = path.read_text()
            if len(source.splitlines()) > MAX_FILE_LINES:
                long_files.append(str(path.relative_to(root)))
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                reason = "Over 80 lines" in (ast.get_docstring(node) or "")
                if length > MAX_FUNCTION_LINES and not reason:
                    long_functions.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    assert not long_files, f"package files over {MAX_FILE_LINES} lines: {long_files}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
