"""The ``loe-gym`` command line.

    loe-gym simulate            # short run of the default env: long-term metrics per reference policy
    loe-gym calibrate --env loe_gym/Engagement-v0 --num-users 2000 --seeds 0 1 2 3 4 --output out.md
    loe-gym tune-oracle         # search the oracle planner's weights (CEM)
    loe-gym collect-logs --num-users 5000 --output logs/engagement   # Parquet interaction logs
    loe-gym fit-predictor --logs logs/engagement --output runs/predictor

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
        elif default is None:
            parser.add_argument(flag, type=_optional(str), default=None, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)


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
        "--policy", default="mixed", help="logging policy: mixed or a reference policy"
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
