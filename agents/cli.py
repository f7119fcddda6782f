"""The ``loe-gym`` command line.

    loe-gym simulate            # short run of the default env: long-term metrics per reference policy
    loe-gym calibrate --env-id loe_gym/Engagement-v0 --evaluation.num-users 2000 --output out.md
    loe-gym tune-oracle         # search the oracle planner's weights (CEM)
    loe-gym collect-logs --collect.num-users 5000 --output logs/engagement   # Parquet logs
    loe-gym fit-predictor --logs logs/engagement --output runs/predictor
    loe-gym train --predictor runs/predictor/model --output runs/ppo     # an SB3 agent
    loe-gym evaluate --agents runs/ppo --output reports/ppo              # agents vs baselines
    loe-gym experiment --output reports/experiment                       # all of it, end to end

Each command is one dataclass below: its config (a tree from `agents.configs`, whose
nested options become dotted flags such as ``--predictor.model.hidden-size``, their
docstrings the help) plus where it writes. `tyro` generates the parser; every config is
validated as a whole after parsing, so errors read as they do from Python. Two options
are common to every command: ``--config FILE`` (JSON or TOML with the options to change,
nested as in a run's ``config.json``; flags still override it) and, where a smoke-test
preset exists, ``--quick``. Nothing heavy is imported before a command runs.
"""

import dataclasses
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import tyro

from agents.configs import (
    CollectLogsConfig,
    EvaluateConfig,
    EvaluationConfig,
    ExperimentConfig,
    ImportLogsConfig,
    LoopConfig,
    PolicyTableConfig,
    TrainRunConfig,
    TuneOracleConfig,
    ValidationConfig,
)
from agents.presets import QUICK_EXPERIMENT, QUICK_LOOP, QUICK_VALIDATION
from loe_gym.config import FrozenConfig, checked, checks_deferred, field_docs
from loe_gym.errors import did_you_mean
from loe_gym.predictor.configs import FitPredictorConfig


@dataclass(kw_only=True)
class Command:
    """Base of the commands: a config tree and the options of the run itself."""

    config: Any
    progress: bool = True
    """Progress bars and stage messages."""
    threads: int = 0
    """torch threads (0 = the command's default: 1 for evaluate, whose networks are small
    enough that more threads only contend; torch's default elsewhere)."""
    device: str = "auto"
    """Where torch work runs: auto (a GPU where torch sees one), cpu, cuda or cuda:N; the
    predictor's service, its training and the agents' networks together (loe_gym/devices.py)."""

    quick: ClassVar[FrozenConfig | None] = None
    """The ``--quick`` preset of the command's config, if it has one."""
    default_threads: ClassVar[int] = 0
    """torch threads when ``--threads`` is 0 (0: torch's default)."""

    def run(self) -> int:
        raise NotImplementedError


@dataclass(kw_only=True)
class RayOptions:
    """Where a command's populations run: here, or as Ray tasks (agents/populations.py)."""

    ray: bool = False
    """Run the populations' shards (--evaluation.users-per-shard) as Ray tasks on a local
    Ray instance (pip install -e ".[rllib]"); the metrics are the same as without."""
    address: str | None = None
    """Run them on this Ray cluster instead (e.g. auto or 10.0.0.1:6379); implies --ray."""

    def runner(self) -> Any:
        from agents.populations import make_runner

        return make_runner(self.ray, self.address)


@dataclass(kw_only=True)
class Simulate(Command, RayOptions):
    """A short simulation: long-term metrics per reference policy."""

    config: Annotated[PolicyTableConfig, tyro.conf.arg(name="")] = field(
        default_factory=PolicyTableConfig
    )

    def run(self) -> int:
        from agents.evaluation import policy_table

        text, _ = policy_table(self.config, progress=self.progress, runner=self.runner())
        print(text)
        return 0


@dataclass(kw_only=True)
class Calibrate(Command, RayOptions):
    """The calibration table of an env (reference policies, CIs over seeds)."""

    config: Annotated[PolicyTableConfig, tyro.conf.arg(name="")] = field(
        default_factory=lambda: PolicyTableConfig(
            evaluation=EvaluationConfig(num_users=2000, seeds=(0, 1, 2, 3, 4))
        )
    )
    output: str | None = None
    """Markdown file to write (and .json beside)."""
    overwrite: bool = False
    """Replace an existing --output."""

    def run(self) -> int:
        from agents.evaluation import policy_table

        output = Path(self.output) if self.output else None
        if output is not None and output.suffix == ".json":
            raise ValueError(
                f"--output {output} names the Markdown table; its JSON is written beside it "
                f"({output.with_suffix('.json').name}). Pass e.g. --output "
                f"{output.with_suffix('.md')}."
            )
        if output is not None and not self.overwrite:
            # The table and its JSON twin beside it: neither is replaced silently.
            for path in (output, output.with_suffix(".json")):
                if path.exists():
                    raise FileExistsError(
                        f"{path} exists; pass --overwrite to replace {output.name} and "
                        f"{output.with_suffix('.json').name}, or choose another --output."
                    )
        text, payload = policy_table(self.config, progress=self.progress, runner=self.runner())
        command = "loe-gym " + shlex.join(sys.argv[1:])
        print(text)
        print(f"({payload['seconds']:.0f} s)")
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(f"<!-- produced by: {command} -->\n{text}")
            payload["config"] = self.config.to_dict()
            output.with_suffix(".json").write_text(json.dumps(payload, indent=2))
            print(f"wrote {output} and {output.with_suffix('.json')}")
        return 0


@dataclass(kw_only=True)
class TuneOracle(Command):
    """Search the oracle planner's weights (CEM)."""

    config: Annotated[TuneOracleConfig, tyro.conf.arg(name="")] = field(
        default_factory=TuneOracleConfig
    )

    def run(self) -> int:
        from agents.oracle_tuning import tune_oracle
        from agents.training import check_env_id

        config = self.config
        check_env_id(config.env_id)
        result = tune_oracle(
            config.env_id,
            num_users=config.evaluation.num_users,
            seeds=config.evaluation.seeds,
            iterations=config.iterations,
            population=config.population,
            progress=self.progress,
            env_options=config.env_options,
        )
        weights = dict(zip(result.weights.features, result.weights.values, strict=True))
        print(f"best mean total watch per user on the tuning seeds: {result.score:.1f}")
        print("weights:", weights)
        print("best score per iteration:", [round(v, 1) for v in result.history])
        return 0


@dataclass(kw_only=True)
class CollectLogs(Command, RayOptions):
    """Simulate users under a logging policy and stream Parquet logs."""

    output: str
    """Log directory to write."""
    config: Annotated[CollectLogsConfig, tyro.conf.arg(name="")] = field(
        default_factory=CollectLogsConfig
    )
    overwrite: bool = False
    """Replace an existing log."""
    resume: bool = False
    """Continue the unfinished log in --output (a killed run) with the same options: it
    ends with the rows an uninterrupted run writes."""

    def run(self) -> int:
        from agents.collect import collect_logs, collect_sharded
        from agents.training import check_env_id

        check_env_id(self.config.env_id)
        collect = self.config.collect
        options: dict[str, Any] = dict(
            num_users=collect.num_users,
            path=self.output,
            policy=collect.policy,
            seed=collect.seed,
            overwrite=self.overwrite,
            resume=self.resume,
            progress=self.progress,
            env_options=self.config.env_options or {},
        )
        if collect.users_per_shard or self.ray or self.address:
            summary = collect_sharded(
                self.config.env_id,
                users_per_shard=collect.users_per_shard,
                runner=self.runner(),
                **options,
            )
        else:
            summary = collect_logs(self.config.env_id, **options)
        print(summary)
        return 0


@dataclass(kw_only=True)
class FitPredictor(Command):
    """Train the multi-task predictor on logs; write model + metrics report."""

    logs: str
    """Interaction log directory (loe-gym collect-logs or import-logs)."""
    output: str
    """Run directory: model/, metrics.json, report.md, config.json."""
    config: Annotated[FitPredictorConfig, tyro.conf.arg(name="")] = field(
        default_factory=FitPredictorConfig
    )
    overwrite: bool = False
    """Start afresh in --output (a finished run there included)."""
    allow_partial: bool = False
    """Train on a log whose collection never finished (its last lives are cut short)."""

    def run(self) -> int:
        from loe_gym.predictor.pipeline import fit_predictor

        output = self.output
        result = fit_predictor(
            self.logs,
            output,
            self.config,
            overwrite=self.overwrite,
            progress=self.progress,
            allow_partial=self.allow_partial,
        )
        print(result.folder.report.read_text())
        print(f"wrote {output}/model, metrics.json, report.md ({result.seconds:.0f} s)")
        return 0


@dataclass(kw_only=True)
class Train(Command):
    """Train an SB3 agent (PPO, A2C, DQN; SAC/TD3 on fusion weights)."""

    output: str
    """Run folder: agent.safetensors + agent.json, config.json, training.json, checkpoints."""
    config: Annotated[TrainRunConfig, tyro.conf.arg(name="")] = field(
        default_factory=TrainRunConfig
    )
    overwrite: bool = False
    """Start over in --output."""
    resume: bool = False
    """Continue from --output's last checkpoint."""
    trust_pickle: bool = False
    """Also resume from SB3 zip checkpoints (cloudpickle: they can run code; only for
    files you trust). Only a flag, never read from a --config file."""
    address: str | None = None
    """--agent.backend rllib: the Ray cluster to join (e.g. 10.0.0.1:6379 or auto); default
    a local Ray instance."""

    def run(self) -> int:
        from agents.training import train_agent

        output = self.output
        summary = train_agent(
            self.config,
            output,
            overwrite=self.overwrite,
            resume=self.resume,
            trust_pickle=self.trust_pickle,
            progress=self.progress,
            address=self.address,
        )
        print(
            f"trained {self.config.agent.algorithm} for {summary.steps} steps "
            f"({summary.steps_per_second:.0f} steps/s); wrote {output}/agent.safetensors"
        )
        return 0


@dataclass(kw_only=True)
class Evaluate(Command, RayOptions):
    """Trained agents vs baselines over seeds: table, metrics.json, plots."""

    output: str
    """Report folder to write."""
    config: Annotated[EvaluateConfig, tyro.conf.arg(name="")] = field(
        default_factory=EvaluateConfig
    )
    overwrite: bool = False
    """Replace an existing --output."""
    # Batched policies of small networks: on 2 cores, 6 baselines × 500 users × 5 seeds
    # took 14 s with one thread and over 5 minutes with torch's default (contention).
    default_threads: ClassVar[int] = 1
    trust_pickle: bool = False
    """Also load agents saved as SB3's model.zip (cloudpickle: it can run code; only for
    files you trust). Only a flag, never read from a --config file."""

    def run(self) -> int:
        from agents.evaluation import evaluate_runs, report_metrics
        from agents.report import write_evaluation
        from loe_gym.run_folders import check_run_folder, finish_run_folder, prepare_run_folder

        output = Path(self.output)
        # Refused now, not after the evaluation; replaced once the evaluation succeeded.
        check_run_folder(output, "evaluate", overwrite=self.overwrite)
        evaluation = evaluate_runs(
            self.config,
            progress=self.progress,
            trust_pickle=self.trust_pickle,
            runner=self.runner(),
        )
        prepare_run_folder(output, "evaluate", overwrite=self.overwrite)
        metrics = report_metrics(self.config.env_id)
        print(write_evaluation(evaluation, output, metrics=metrics))
        (output / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        finish_run_folder(output, "evaluate")
        print(f"wrote {output}/evaluation.md, metrics.json, config.json and plots")
        return 0


@dataclass(kw_only=True)
class ReportCommand(Command):
    """A workflow that writes a report folder (``report.md``, ``metrics.json``, ``config.json``)."""

    output: str = ""
    """Report folder."""
    overwrite: bool = False
    """Replace an existing report folder."""

    workflow: ClassVar[str] = ""
    """``module:function`` taking ``(config, output, *, overwrite, progress)``."""
    writes: ClassVar[str] = ""
    """What the folder holds besides the report, for the closing message."""

    def run(self) -> int:
        import importlib

        module, function = self.workflow.split(":")
        run = getattr(importlib.import_module(module), function)
        run(self.config, self.output, overwrite=self.overwrite, progress=self.progress)
        print((Path(self.output) / "report.md").read_text())
        print(f"wrote {self.output}/report.md, metrics.json, config.json, {self.writes}")
        return 0


@dataclass(kw_only=True)
class Experiment(ReportCommand):
    """Logs → predictor → PPO → evaluation against baselines → report folder."""

    config: Annotated[ExperimentConfig, tyro.conf.arg(name="")] = field(
        default_factory=ExperimentConfig
    )
    output: str = "reports/experiment"
    """Report folder."""
    quick: ClassVar[FrozenConfig | None] = QUICK_EXPERIMENT
    workflow: ClassVar[str] = "agents.experiment:run_experiment"
    writes: ClassVar[str] = "plots, logs/, predictor/, agent/"


@dataclass(kw_only=True)
class ImportLogs(Command):
    """Import your own interaction logs (CSV or Parquet) as a loe_gym log."""

    output: str
    """Log directory to write."""
    config: Annotated[ImportLogsConfig, tyro.conf.arg(name="")] = field(
        default_factory=ImportLogsConfig
    )
    overwrite: bool = False
    """Replace an existing log."""

    def run(self) -> int:
        from loe_gym.logs import import_logs, resolve_mapping

        mapping = resolve_mapping(self.config.preset, self.config.mapping)
        report = import_logs(
            list(self.config.source),
            self.output,
            mapping,
            items=list(self.config.items) or None,
            overwrite=self.overwrite,
            rows_per_group=self.config.rows_per_group,
        )
        print(report.summary())
        return 0


@dataclass(kw_only=True)
class ValidateSimulator(ReportCommand):
    """Fit a learned simulator on a ground truth's logs and compare the two worlds; on an
    imported log (--logs of loe-gym import-logs), compare it with the log's held-out users
    replayed under their logged items."""

    config: Annotated[ValidationConfig, tyro.conf.arg(name="")] = field(
        default_factory=ValidationConfig
    )
    output: str = "reports/validate_simulator"
    """Report folder."""
    quick: ClassVar[FrozenConfig | None] = QUICK_VALIDATION
    workflow: ClassVar[str] = "agents.validation:validate_simulator"
    writes: ClassVar[str] = "fidelity.png"


@dataclass(kw_only=True)
class Loop(ReportCommand):
    """The feedback loop: deploy → log → refit → retrain, per round, with a report."""

    config: Annotated[LoopConfig, tyro.conf.arg(name="")] = field(default_factory=LoopConfig)
    output: str = "reports/loop"
    """Report folder."""
    quick: ClassVar[FrozenConfig | None] = QUICK_LOOP
    workflow: ClassVar[str] = "agents.loop:run_loop"
    writes: ClassVar[str] = "engagement_per_round.png, round_*/"


COMMANDS: dict[str, type[Command]] = {
    "simulate": Simulate,
    "calibrate": Calibrate,
    "tune-oracle": TuneOracle,
    "collect-logs": CollectLogs,
    "fit-predictor": FitPredictor,
    "train": Train,
    "evaluate": Evaluate,
    "experiment": Experiment,
    "import-logs": ImportLogs,
    "validate-simulator": ValidateSimulator,
    "loop": Loop,
}

"""The commands, each a dataclass whose fields are its options."""


def _overview() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: loe-gym COMMAND [OPTIONS]",
        "",
        "loe_gym: long-term engagement simulation lab.",
        "",
        "commands:",
        *(
            f"  {name:<{width}}  {(command.__doc__ or '').splitlines()[0]}"
            for name, command in COMMANDS.items()
        ),
        "",
        "Every option: loe-gym COMMAND --help. Common to all: --config FILE (JSON or TOML, "
        "nested as a run's config.json) and, for experiment, loop and validate-simulator, "
        "--quick (smoke-test sizes).",
    ]
    return "\n".join(lines)


def _pop_option(args: list[str], name: str, takes_value: bool) -> Any:
    """Remove ``name`` (``--name VALUE``, ``--name=VALUE`` or a bare flag) from ``args``."""
    for index, token in enumerate(args):
        if token == name:
            if not takes_value:
                del args[index]
                return True
            if index + 1 >= len(args):
                raise SystemExit(f"error: {name} expects a value.")
            value = args[index + 1]
            del args[index : index + 2]
            return value
        if takes_value and token.startswith(name + "="):
            del args[index]
            return token.split("=", 1)[1]
    return None if takes_value else False


def read_config_file(path: str) -> dict[str, Any]:
    """The options a ``--config`` file names: JSON, or TOML for a ``.toml`` file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config {path}: no such file.")
    text = file.read_text()
    if file.suffix == ".toml":
        import tomllib

        values = tomllib.loads(text)
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"--config {path} is not JSON ({error}); name TOML files *.toml."
            ) from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path} must hold an object of options, got {values!r}.")
    return values


def _default(command: type[Command], args: list[str]) -> Any:
    """The command's default instance: ``--quick``'s preset and a ``--config`` file applied."""
    quick = _pop_option(args, "--quick", takes_value=False)
    config_file = _pop_option(args, "--config", takes_value=True)
    if quick and command.quick is None:
        raise SystemExit(f"error: --quick has no preset for this command ({command.__doc__}).")
    if not quick and config_file is None:
        return None
    required = {
        f.name: tyro.MISSING
        for f in dataclasses.fields(command)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    base = command(**required)
    config = command.quick if quick else base.config
    if config_file is not None:
        config = config.merged(read_config_file(config_file))  # type: ignore[union-attr]
    return dataclasses.replace(base, config=config)


def parse(argv: Sequence[str]) -> Command:
    """The command ``argv`` names, its options parsed and its config validated."""
    name, rest = argv[0], list(argv[1:])
    commands = COMMANDS
    if name not in commands:
        raise SystemExit(
            f"error: unknown command {name!r}.{did_you_mean(name, list(commands))} "
            f"Commands: {', '.join(commands)}."
        )
    command = commands[name]
    _fold_help_texts(command)
    with checks_deferred():
        default = _default(command, rest)
        parsed = tyro.cli(
            command,
            args=rest,
            prog=f"loe-gym {name}",
            default=default,
            registry=_json_registry(),
        )
    return dataclasses.replace(parsed, config=checked(parsed.config))


def _fold_help_texts(command: type[Command]) -> None:
    """Give every field of the command's tree its docstring, white space folded, as the
    ``help`` tyro shows (tyro would keep the docstrings' indented line breaks)."""
    import types

    classes: list[type] = [command]
    stack = [_config_class(command)]
    while stack:
        config = stack.pop()
        classes.append(config)
        stack.extend(config.parts().values())
    for klass in classes:
        docs = field_docs(klass)
        for f in dataclasses.fields(klass):
            if f.name in docs and "help" not in f.metadata:
                f.metadata = types.MappingProxyType({**f.metadata, "help": docs[f.name]})


def _config_class(command: type[Command]) -> type[FrozenConfig]:
    import typing

    hint = typing.get_type_hints(command, include_extras=True)["config"]
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _json_registry() -> Any:
    """Parse ``dict[str, Any]`` options (environment options) as one JSON object."""
    from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec

    registry = ConstructorRegistry()

    @registry.primitive_rule
    def json_object(info: Any) -> Any:
        if info.type not in (dict[str, Any], dict[str, Any] | None):
            return None

        def parse_json(args: list[str]) -> dict[str, Any] | None:
            if args[0].lower() in ("none", "null"):
                return None
            try:
                value = json.loads(args[0])
            except json.JSONDecodeError as error:
                raise ValueError(f"expects a JSON object, got {args[0]!r} ({error})") from None
            if not isinstance(value, dict):
                raise ValueError(f"expects a JSON object, got {args[0]!r}")
            return value

        return PrimitiveConstructorSpec(
            nargs=1,
            metavar="JSON",
            instance_from_str=parse_json,
            is_instance=lambda value: value is None or isinstance(value, dict),
            str_from_instance=lambda value: [json.dumps(value)],
        )

    return registry


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0 if argv else 2
    try:
        command = parse(argv)
        threads = command.threads or command.default_threads
        if threads:
            import torch

            torch.set_num_threads(threads)
        from loe_gym.devices import using_device

        with using_device(command.device):
            return int(command.run())
    except (
        ValueError,
        TypeError,
        FileExistsError,
        FileNotFoundError,
        ImportError,
        MemoryError,
    ) as error:
        # Bad options surface as clear one-line errors, not tracebacks.
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
