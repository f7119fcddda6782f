"""The ``loe-gym`` command line.

    loe-gym simulate            # short run of the default env: long-term metrics per reference policy
    loe-gym calibrate --env loe_gym/Engagement-v0 --num-users 2000 --seeds 0 1 2 3 4 --output out.md
    loe-gym tune-oracle         # search the oracle planner's weights (CEM)
    loe-gym collect-logs --num-users 5000 --output logs/engagement   # Parquet interaction logs
    loe-gym fit-predictor --logs logs/engagement --output runs/predictor
    loe-gym train --predictor runs/predictor/model --output runs/ppo     # an SB3 agent
    loe-gym evaluate --agents runs/ppo --output reports/ppo              # agents vs baselines
    loe-gym experiment --output reports/experiment                       # all of it, end to end

Every option is documented in ``loe-gym <command> --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import loe_gym  # noqa: F401  (registers the environments)
from agents.baselines import REFERENCE_POLICIES
from agents.evaluation import METRICS, evaluate
from loe_gym.errors import did_you_mean

ENGAGEMENT_POLICIES = [
    "random",
    "max_click",
    "myopic",
    "max_quality",
    "one_step_planner",
    "oracle_planner",
]
DEFAULT_POLICIES = {
    "loe_gym/Engagement-v0": ENGAGEMENT_POLICIES,
    "loe_gym/EngagementSlate-v0": ENGAGEMENT_POLICIES,
    "loe_gym/InterestEvolution-v0": ["random", "max_click_dot", "myopic", "max_quality"],
    # Its users always click the first item, so "max-click" is max immediate engagement.
    "loe_gym/LongTermSatisfaction-v0": ["random", "myopic", "max_quality"],
}
TABLE_METRICS = ("total_watch", "active_days", "next_day_retention", "ctr", "session_length")
# RecSim's environments model one session: days and returns do not apply.
RECSIM_ENVS = ("loe_gym/InterestEvolution-v0", "loe_gym/LongTermSatisfaction-v0")
RECSIM_METRICS = ("total_watch", "episode_length", "ctr", "total_clicks")


def _check_env_id(env_id: str) -> None:
    known = [name for name in gym.registry if name.startswith("loe_gym/")]
    if env_id not in gym.registry:
        raise SystemExit(
            f"error: unknown env id {env_id!r}.{did_you_mean(env_id, known)} "
            f"Registered: {', '.join(known)}."
        )


def _check_policies(policies: Sequence[str]) -> None:
    for name in policies:
        if name not in REFERENCE_POLICIES:
            raise SystemExit(
                f"error: unknown policy {name!r}.{did_you_mean(name, REFERENCE_POLICIES)} "
                f"Choose from {', '.join(REFERENCE_POLICIES)}."
            )


def _parse_options(pairs: Sequence[str]) -> dict[str, object]:
    """``["catalog_seed=1", "num_items=500"]`` → ``{"catalog_seed": 1, "num_items": 500}``."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --simulator-option expects KEY=VALUE, got {pair!r}.")
        try:
            value: object = json.loads(text)
        except json.JSONDecodeError:
            value = text
        options[key] = value
    return options


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _add_evaluation_options(parser: argparse.ArgumentParser, users: int, seeds: list[int]) -> None:
    parser.add_argument(
        "--env", default="loe_gym/Engagement-v0", help="registered env id (default: %(default)s)"
    )
    parser.add_argument(
        "--num-users",
        type=_positive,
        default=users,
        help="users per population (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=seeds,
        help="population seeds (default: %(default)s)",
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        default=None,
        help=f"reference policies among {', '.join(REFERENCE_POLICIES)} (default: per env)",
    )
    parser.add_argument(
        "--horizon-days",
        type=_positive,
        default=None,
        help="days per user life (default: the env's)",
    )
    parser.add_argument(
        "--simulator-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a simulator config option, e.g. catalog_seed=1 (repeatable)",
    )


def _run(args: argparse.Namespace, progress: bool) -> tuple[str, dict[str, object]]:
    _check_env_id(args.env)
    policies = args.policies or DEFAULT_POLICIES.get(args.env, ["random", "max_click"])
    _check_policies(policies)
    options: dict[str, object] = {}
    if args.horizon_days is not None:
        options["horizon_days"] = args.horizon_days
    if args.simulator_option:
        options["simulator_kwargs"] = _parse_options(args.simulator_option)
    start = time.perf_counter()
    result = evaluate(
        args.env,
        policies,
        num_users=args.num_users,
        seeds=tuple(args.seeds),
        env_options=options,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    metrics = RECSIM_METRICS if args.env in RECSIM_ENVS else TABLE_METRICS
    table = result.table(metrics)
    legend = "\n".join(f"- `{m}`: {METRICS[m]}" for m in metrics)
    where = f" with {options['simulator_kwargs']}" if "simulator_kwargs" in options else ""
    text = (
        f"{args.env}{where}: {args.num_users} users per population, seeds {list(args.seeds)}; "
        f"mean ± 95% CI half-width over seeds.\n\n{table}\n\n{legend}\n"
    )
    payload = result.to_dict() | {"seconds": seconds}
    return text, payload


def _cmd_simulate(args: argparse.Namespace) -> int:
    text, _ = _run(args, progress=sys.stderr.isatty())
    print(text)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.overwrite:
        raise SystemExit(
            f"error: {output} exists; pass --overwrite to replace it or choose another --output."
        )
    text, payload = _run(args, progress=sys.stderr.isatty())
    command = (
        "loe-gym calibrate " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "loe-gym calibrate"
    )
    print(text)
    print(f"({payload['seconds']:.0f} s)")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(f"<!-- produced by: {command} -->\n{text}")
        output.with_suffix(".json").write_text(json.dumps(payload, indent=2))
        print(f"wrote {output} and {output.with_suffix('.json')}")
    return 0


def _cmd_tune_oracle(args: argparse.Namespace) -> int:
    from agents.oracle_tuning import tune_oracle

    _check_env_id(args.env)
    result = tune_oracle(
        args.env,
        num_users=args.num_users,
        seeds=tuple(args.seeds),
        iterations=args.iterations,
        population=args.population,
        progress=sys.stderr.isatty(),
    )
    print(f"best mean total watch per user on the tuning seeds: {result.score:.1f}")
    print("weights:", dict(zip(result.weights.features, result.weights.values, strict=True)))
    print("best score per iteration:", [round(v, 1) for v in result.history])
    return 0


def _add_config_arguments(parser: argparse.ArgumentParser, config_class: Any) -> None:
    """One ``--option`` per field of a `FrozenConfig`, its docstring as the help text."""
    docs = config_class.field_docs()
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        # argparse expands %-formats in help texts: a literal "5 %" must be escaped.
        help_text = f"{docs.get(field.name, '')} (default: {default})".replace("%", "%%")
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else str
            parser.add_argument(flag, nargs="+", type=kind, default=default, help=help_text)
        elif field.name.endswith("_options"):
            parser.add_argument(flag, type=_json_object, default=default, help=help_text)
        elif default is None:
            parser.add_argument(flag, type=_optional(str), default=None, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)


def _add_report_arguments(
    parser: argparse.ArgumentParser, default_output: str, config_class: Any
) -> None:
    """``--output``, ``--overwrite``, ``--quick`` and the config's options of a command
    that writes a report folder."""
    parser.add_argument(
        "--output", default=default_output, help="report folder (default: %(default)s)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing report folder"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke-test sizes (minutes; numbers meaningless)"
    )
    _add_config_arguments(parser, config_class)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expects a JSON object, got {text!r} ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expects a JSON object, got {text!r}")
    return value


def _optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        if text.lower() in ("none", "null"):
            return None
        return kind(text) if kind is not str else _number_or_text(text)

    return parse


def _number_or_text(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _config_from_args(args: argparse.Namespace, config_class: Any) -> Any:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return config_class(**values)


def _cmd_collect_logs(args: argparse.Namespace) -> int:
    from agents.collect import collect_logs

    _check_env_id(args.env)
    options: dict[str, object] = {}
    if args.simulator_option:
        options["simulator_kwargs"] = _parse_options(args.simulator_option)
    summary = collect_logs(
        args.env,
        num_users=args.num_users,
        path=args.output,
        policy=args.policy,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
        env_options=options,
    )
    print(summary)
    return 0


def _cmd_fit_predictor(args: argparse.Namespace) -> int:
    from loe_gym.predictor.pipeline import FitPredictorConfig, fit_predictor

    config = _config_from_args(args, FitPredictorConfig)
    result = fit_predictor(args.logs, args.output, config, overwrite=args.overwrite)
    print((Path(args.output) / "report.md").read_text())
    print(f"wrote {args.output}/model, metrics.json, report.md ({result['seconds']:.0f} s)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from agents.training import TrainConfig, train_agent

    config = _config_from_args(args, TrainConfig)
    summary = train_agent(config, args.output, overwrite=args.overwrite, resume=args.resume)
    print(
        f"trained {config.algorithm} for {summary['steps']} steps "
        f"({summary['steps_per_second']:.0f} steps/s); wrote {args.output}/model.zip"
    )
    return 0


BASELINES = ("random", "popularity", "myopic_predicted", "myopic", "oracle_planner")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.baselines import MyopicPredictedPolicy, PopularityPolicy, make_policy
    from agents.evaluation import evaluate
    from agents.report import REPORT_METRICS, write_evaluation
    from agents.training import TrainConfig, load_agent, predictor_wrappers

    _check_env_id(args.env)
    output = Path(args.output)
    if output.exists() and any(output.iterdir()) and not args.overwrite:
        raise FileExistsError(
            f"{output} exists and is not empty; choose another --output or pass --overwrite."
        )
    policies: list[Any] = []
    service, wrap_config = None, None
    env_options = args.env_options
    for run in args.agents:
        policy, config, agent_service = load_agent(run, name=Path(run).name)
        if config.env_id != args.env:
            raise ValueError(f"{run} was trained on {config.env_id}, not --env {args.env}.")
        if env_options is None:
            env_options = config.env_options
        if agent_service is not None:
            if service is not None and (
                config.predictor != wrap_config.predictor  # type: ignore[union-attr]
                or config.history_length != wrap_config.history_length  # type: ignore[union-attr]
            ):
                raise ValueError(
                    "All --agents must share one predictor and history_length "
                    f"({wrap_config.predictor}, {wrap_config.history_length}); {run} uses "  # type: ignore[union-attr]
                    f"{config.predictor}, {config.history_length}. Evaluate them separately."
                )
            service, wrap_config = agent_service, config
        policies.append(policy)
    for name in args.baselines:
        if name not in BASELINES and name not in REFERENCE_POLICIES:
            known = sorted({*BASELINES, *REFERENCE_POLICIES})
            raise ValueError(
                f"Unknown baseline {name!r}.{did_you_mean(name, known)} Choose from "
                f"{', '.join(known)}."
            )
        if name == "popularity":
            if args.logs is None:
                raise ValueError("The popularity baseline counts clicks in logs: pass --logs DIR.")
            policies.append(PopularityPolicy(_item_clicks(args.logs, args.env)))
        elif name == "myopic_predicted":
            if service is None:
                if args.predictor is None:
                    raise ValueError(
                        "myopic_predicted needs the predictor: pass --predictor DIR or an agent "
                        "trained with one."
                    )
                from loe_gym.predictor.serving import PredictorService

                service = PredictorService.from_pretrained(args.predictor)
                wrap_config = TrainConfig(env_id=args.env, predictor=args.predictor)
            policies.append(MyopicPredictedPolicy())
        else:
            policies.append(make_policy(name))
    wrappers = (
        predictor_wrappers(wrap_config, service, for_training=False)
        if service is not None and wrap_config is not None
        else []
    )
    evaluation = evaluate(
        args.env,
        policies,
        env_options=env_options,
        num_users=args.num_users,
        seeds=args.seeds,
        progress=sys.stderr.isatty(),
        wrappers=wrappers,
    )
    metrics: tuple[str, ...] = (
        (*RECSIM_METRICS, "coverage", "topic_diversity")
        if args.env in RECSIM_ENVS
        else REPORT_METRICS
    )
    print(write_evaluation(evaluation, output, metrics=metrics))
    print(f"wrote {output}/evaluation.md, metrics.json and plots")
    return 0


def _item_clicks(logs: str, env_id: str) -> Any:
    from loe_gym.predictor.data import item_popularity, load_sequences

    env = gym.make(env_id)
    num_items = int(env.unwrapped.catalog.num_items)  # type: ignore[attr-defined]
    env.close()
    return item_popularity(load_sequences(logs, num_items=num_items)[0], num_items)


def _report_config(args: argparse.Namespace, config_class: Any) -> Any:
    """The command's config from its options; with ``--quick``, ``config_class.quick()``
    keeping the options given on the command line."""
    config = _config_from_args(args, config_class)
    if not args.quick:
        return config
    defaults = config_class()
    changed = {
        name: getattr(config, name)
        for name in config_class.field_names()
        if getattr(config, name) != getattr(defaults, name)
    }
    return config_class.quick(**changed)


def _print_report(output: str, written: str) -> int:
    print((Path(output) / "report.md").read_text())
    print(f"wrote {output}/report.md, {written}")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from agents.experiment import ExperimentConfig, run_experiment

    config = _report_config(args, ExperimentConfig)
    _check_env_id(config.env_id)
    run_experiment(config, args.output, overwrite=args.overwrite)
    return _print_report(args.output, "metrics.json, plots, logs/, predictor/, agent/")


def _cmd_import_logs(args: argparse.Namespace) -> int:
    from loe_gym.log_import import import_logs, resolve_mapping

    mapping = resolve_mapping(args.preset, args.mapping)
    report = import_logs(
        args.source,
        args.output,
        mapping,
        overwrite=args.overwrite,
        rows_per_group=args.rows_per_group,
    )
    print(report.summary())
    return 0


def _cmd_validate_simulator(args: argparse.Namespace) -> int:
    from agents.validation import SimulatorFitConfig, ValidationConfig, validate_simulator

    config = _report_config(args, ValidationConfig)
    fit = _report_config(args, SimulatorFitConfig)
    _check_env_id(config.env_id)
    validate_simulator(config, fit, args.output, overwrite=args.overwrite)
    return _print_report(args.output, "metrics.json, fidelity.png")


def _cmd_loop(args: argparse.Namespace) -> int:
    from agents.loop import LoopConfig, run_loop

    config = _report_config(args, LoopConfig)
    _check_env_id(config.env_id)
    run_loop(config, args.output, overwrite=args.overwrite)
    return _print_report(args.output, "metrics.json, engagement_per_round.png, round_*/")


def build_parser(with_predictor_options: bool = True) -> argparse.ArgumentParser:
    """The ``loe-gym`` parser; ``fit-predictor``'s options need the predictor (torch and
    transformers), so they are only built when that command runs."""
    parser = argparse.ArgumentParser(
        prog="loe-gym", description="loe_gym: long-term engagement simulation lab."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser(
        "simulate", help="a short simulation: long-term metrics per reference policy"
    )
    _add_evaluation_options(simulate, users=500, seeds=[0, 1])
    simulate.set_defaults(handler=_cmd_simulate)

    calibrate = commands.add_parser(
        "calibrate", help="the calibration table of an env (reference policies, CIs over seeds)"
    )
    _add_evaluation_options(calibrate, users=2000, seeds=[0, 1, 2, 3, 4])
    calibrate.add_argument(
        "--output", default=None, help="markdown file to write (and .json beside)"
    )
    calibrate.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    calibrate.set_defaults(handler=_cmd_calibrate)

    tune = commands.add_parser("tune-oracle", help="search the oracle planner's weights (CEM)")
    tune.add_argument(
        "--env", default="loe_gym/Engagement-v0", help="env id (default: %(default)s)"
    )
    tune.add_argument("--num-users", type=_positive, default=500, help="users per population")
    tune.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1000, 1001],
        help="tuning seeds (keep apart from evaluation seeds)",
    )
    tune.add_argument("--iterations", type=_positive, default=8, help="CEM iterations")
    tune.add_argument("--population", type=_positive, default=12, help="samples per iteration")
    tune.set_defaults(handler=_cmd_tune_oracle)

    collect = commands.add_parser(
        "collect-logs", help="simulate users under a logging policy and stream Parquet logs"
    )
    collect.add_argument(
        "--env", default="loe_gym/Engagement-v0", help="env id (default: %(default)s)"
    )
    collect.add_argument(
        "--num-users", type=_positive, default=5000, help="users (default: %(default)s)"
    )
    collect.add_argument(
        "--policy",
        default="mixed",
        help="logging policy: mixed, diverse (per-user mixture weights), deployable (per-user "
        "mixtures of recommenders that read only the observations) or a reference policy",
    )
    collect.add_argument(
        "--seed", type=int, default=0, help="population seed (default: %(default)s)"
    )
    collect.add_argument("--output", required=True, help="log directory to write")
    collect.add_argument("--overwrite", action="store_true", help="replace an existing log")
    collect.add_argument(
        "--simulator-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a simulator config option (repeatable), e.g. appeal_weight=3.0 for a shifted population",
    )
    collect.set_defaults(handler=_cmd_collect_logs)

    fit = commands.add_parser(
        "fit-predictor", help="train the multi-task predictor on logs; write model + metrics report"
    )
    fit.add_argument(
        "--logs", required=True, help="interaction log directory (loe-gym collect-logs)"
    )
    fit.add_argument(
        "--output", required=True, help="run directory (model/, metrics.json, report.md)"
    )
    fit.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    if with_predictor_options:
        from loe_gym.predictor.pipeline import FitPredictorConfig

        _add_config_arguments(fit, FitPredictorConfig)
    fit.set_defaults(handler=_cmd_fit_predictor)

    from agents.experiment import ExperimentConfig
    from agents.loop import LoopConfig
    from agents.training import TrainConfig
    from agents.validation import SimulatorFitConfig, ValidationConfig

    train = commands.add_parser(
        "train", help="train an SB3 agent (PPO, A2C, DQN; SAC/TD3 on fusion weights)"
    )
    train.add_argument("--output", required=True, help="run folder (model.zip, config.json, …)")
    train.add_argument("--overwrite", action="store_true", help="start over in --output")
    train.add_argument(
        "--resume", action="store_true", help="continue from --output's last checkpoint"
    )
    _add_config_arguments(train, TrainConfig)
    train.set_defaults(handler=_cmd_train)

    evaluate_parser = commands.add_parser(
        "evaluate", help="trained agents vs baselines over seeds: table, metrics.json, plots"
    )
    evaluate_parser.add_argument(
        "--env", default="loe_gym/Engagement-v0", help="registered env id (default: %(default)s)"
    )
    evaluate_parser.add_argument(
        "--num-users",
        type=_positive,
        default=500,
        help="users per population (default: %(default)s)",
    )
    evaluate_parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3, 4],
        help="population seeds (default: %(default)s)",
    )
    evaluate_parser.add_argument(
        "--env-options",
        type=_json_object,
        default=None,
        help="environment options as a JSON object (default: the agents' or none)",
    )
    evaluate_parser.add_argument(
        "--agents", nargs="*", default=[], help="run folders of loe-gym train"
    )
    evaluate_parser.add_argument(
        "--baselines",
        nargs="*",
        default=["random", "myopic_predicted", "myopic", "oracle_planner"],
        help=f"baselines among {', '.join(BASELINES)} and the reference policies "
        "(default: %(default)s)",
    )
    evaluate_parser.add_argument(
        "--predictor", default=None, help="predictor for myopic_predicted when no agent has one"
    )
    evaluate_parser.add_argument("--logs", default=None, help="logs for the popularity baseline")
    evaluate_parser.add_argument("--output", required=True, help="report folder to write")
    evaluate_parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output"
    )
    evaluate_parser.set_defaults(handler=_cmd_evaluate)

    experiment = commands.add_parser(
        "experiment",
        help="logs → predictor → PPO → evaluation against baselines → report folder",
    )
    _add_report_arguments(experiment, "reports/experiment", ExperimentConfig)
    experiment.set_defaults(handler=_cmd_experiment)

    from loe_gym.log_import import PRESETS

    importer = commands.add_parser(
        "import-logs", help="import your own interaction logs (CSV or Parquet) as a loe_gym log"
    )
    importer.add_argument("source", nargs="+", help="CSV or Parquet files")
    importer.add_argument("--preset", choices=sorted(PRESETS), default=None, help="column layout")
    importer.add_argument(
        "--mapping",
        default=None,
        help="column mapping as a JSON object or a .json file (overrides the preset's fields; "
        "see docs/importing_logs.md)",
    )
    importer.add_argument("--output", required=True, help="log directory to write")
    importer.add_argument("--overwrite", action="store_true", help="replace an existing log")
    importer.add_argument(
        "--rows-per-group", type=_positive, default=65_536, help="rows per Parquet part file"
    )
    importer.set_defaults(handler=_cmd_import_logs)

    validate = commands.add_parser(
        "validate-simulator",
        help="fit a learned simulator on a ground truth's logs and compare the two worlds",
    )
    _add_report_arguments(validate, "reports/validate_simulator", ValidationConfig)
    _add_config_arguments(validate, SimulatorFitConfig)
    validate.set_defaults(handler=_cmd_validate_simulator)

    loop = commands.add_parser(
        "loop", help="the feedback loop: deploy → log → refit → retrain, per round, with a report"
    )
    _add_report_arguments(loop, "reports/loop", LoopConfig)
    loop.set_defaults(handler=_cmd_loop)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(with_predictor_options=argv[:1] == ["fit-predictor"]).parse_args(argv)
    try:
        return int(args.handler(args))
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as error:
        # Bad options surface as clear one-line errors, not tracebacks.
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
