"""The catalogue of bad inputs (docs/bad_inputs.md): each case is one thing a user may get
wrong; its test asserts the error type and that the message names the value received
and says how to fix it. No case may pass silently or surface a raw library error.

``python tests/test_bad_input_catalogue.py`` prints the page; a test keeps it current.
(Actions, resets and slates have more cases in tests/test_bad_input.py.)
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import loe_gym
from agents import configs as agent_configs
from agents.training import load_agent
from loe_gym.errors import ContractError
from loe_gym.logs import ParquetLogWriter, import_logs, read_log, resolve_mapping
from loe_gym.predictor import configs as predictor_configs
from loe_gym.predictor import load_predictor

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"simulator_kwargs": {"num_items": 50}, "horizon_days": 2}
NUMBER = r"(must be|must lie|must name|must be finite|needs)"


@dataclass(frozen=True)
class Case:
    area: str
    what: str
    make: Callable[[], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    value: str
    """Regex the message must match: it names the value received."""
    fix: str
    """Regex the message must match: what to do (the valid range, the choices, a flag)."""


CASES: list[Case] = []


def case(area: str, what: str, make: Callable[[], Any], error: Any, value: str, fix: str) -> None:
    CASES.append(Case(area, what, make, error, value, fix))


def env(**options: Any) -> Any:
    return gym.make_vec("loe_gym/Engagement-v0", num_envs=2, **{**SMALL, **options})


def stepped(actions: Any, **options: Any) -> Any:
    envs = env(**options)
    envs.reset(seed=0)
    return envs.step(actions)


# ------------------------------------------------------------------ environment options
for name in ("num_candidates", "slate_size", "horizon_days"):
    for bad in (0, -3, 2.5, True, "5"):
        case("env", f"{name}={bad!r}", lambda n=name, b=bad: env(**{n: b}), ValueError,
             rf"{name}.*got {re.escape(repr(bad))}", "positive integer")  # fmt: skip
for bad in (-1, 1.5):
    case("env", f"history_length={bad!r}", lambda b=bad: env(history_length=b), ValueError,
         rf"got {bad}", "non-negative integer")  # fmt: skip
for bad in (0, True, 2.5):
    case("env", f"max_episode_steps={bad!r}", lambda b=bad: env(max_episode_steps=b),
         ValueError, rf"got {bad}", "positive integer or None")  # fmt: skip
for option, bad, near in (
    ("reward", "watchtime", "watch_time"),
    ("observation", "histroy", "history"),
    ("duplicate_slate_items", "repalce", "replace"),
):
    case("env", f"{option}={bad!r}", lambda o=option, b=bad: env(**{o: b}), ValueError,
         repr(bad), rf"Did you mean '{near}'")  # fmt: skip
case("env", "autoreset_mode='nextstep'", lambda: env(autoreset_mode="nextstep"), ValueError,
     "'nextstep'", "Did you mean 'next_step'")  # fmt: skip
case("env", "unknown keyword frameskip", lambda: env(frameskip=4), TypeError,
     "unexpected keyword argument 'frameskip'", "Known options")  # fmt: skip
case("env", "misspelt keyword num_candidate", lambda: env(num_candidate=4), TypeError,
     "'num_candidate'", "Did you mean 'num_candidates'")  # fmt: skip
case("env", "num_candidates above the catalog", lambda: env(num_candidates=60), ValueError,
     "num_candidates=60.*50 items", "lower num_candidates")  # fmt: skip
case("env", "slate_size above num_candidates", lambda: env(slate_size=30), ValueError,
     "slate_size=30", "cannot exceed num_candidates=20")  # fmt: skip
for bad in (0, -1, 1.5, True):
    case("env", f"num_envs={bad!r}",
         lambda b=bad: gym.make_vec("loe_gym/Engagement-v0", num_envs=b), ValueError,
         rf"got {bad}", "positive integer")  # fmt: skip
case("env", "num_envs=10**12 (no memory)",
     lambda: gym.make_vec("loe_gym/Engagement-v0", num_envs=10**12), MemoryError,
     "num_envs=1000000000000", "Lower num_envs")  # fmt: skip

# ----------------------------------------------------------------------- simulators
for entry, message in (
    ("engagment", "Did you mean 'engagement'"),
    ("os:system", "not a class"),
    ("builtins:eval", "not a class"),
    ("subprocess:Popen", "lacks reset"),
    ("loe_gym.catalog:Catalog", "lacks reset"),
):
    case("simulator", f"simulator={entry!r}", lambda e=entry: env(simulator=e),
         (ValueError, ContractError), re.escape(entry), message)  # fmt: skip
case("simulator", "a module that does not exist", lambda: env(simulator="no_such_mod:Users"),
     ImportError, "'no_such_mod'", "Check the module path")  # fmt: skip
case("simulator", "a class the module lacks", lambda: env(simulator="simulators.engagement:Usr"),
     ImportError, "'Usr'", "has no attribute")  # fmt: skip
case("simulator", "simulator_kwargs misspelt", lambda: env(simulator_kwargs={"num_item": 5}),
     TypeError, "'num_item'", "Did you mean 'num_items'")  # fmt: skip
case("simulator", "simulator_kwargs num_items=0", lambda: env(simulator_kwargs={"num_items": 0}),
     ValueError, "num_items must be > 0, got 0", "must be > 0")  # fmt: skip
case("simulator", "simulator_kwargs with an instance",
     lambda: env(simulator=_engagement(), simulator_kwargs={"num_items": 5}), ValueError,
     r"\['num_items'\]", "pass the class or entry-point string")  # fmt: skip


def _engagement() -> Any:
    from simulators.engagement import EngagementUsers

    return EngagementUsers(num_items=50)


def _broken(name: str, change: Callable[[Any], dict[str, Any]]) -> Any:
    """Engagement users (class ``name``) whose responses get ``change(responses)``."""
    from loe_gym.simulator import Responses
    from simulators.engagement import EngagementUsers

    def respond(self: Any, state: Any, slates: Any, rng: Any) -> Responses:
        responses = EngagementUsers.respond(self, state, slates, rng)
        return Responses(**{**vars(responses), **change(responses)})

    return type(name, (EngagementUsers,), {"respond": respond})(num_items=50)


def _negative_gap() -> Any:
    """Returning sessions come back −2 days later."""
    return _broken(
        "NegativeGap",
        lambda r: {"gap_days": np.where(r.session_end & ~r.churned, -2, r.gap_days)},
    )


def _nan_watch() -> Any:
    return _broken("NaNWatch", lambda r: {"watch_time": r.watch_time * np.nan})


def _run(simulator: Any, steps: int = 200) -> None:
    envs = gym.make_vec("loe_gym/Recommendation-v0", num_envs=8, simulator=simulator)
    envs.reset(seed=0)
    for _ in range(steps):
        envs.step(np.zeros(8, np.int64))


case("simulator", "check_simulator: gap_days = −2 on a return",
     lambda: loe_gym.check_simulator(_negative_gap()), ContractError, "gap_days", "≥ 1")  # fmt: skip
case("simulator", "check_simulator: NaN watch time",
     lambda: loe_gym.check_simulator(_nan_watch()), ContractError, "watch_time has NaN",
     "must be finite")  # fmt: skip
case("simulator", "check_simulator(num_steps=0)",
     lambda: loe_gym.check_simulator(_engagement(), num_steps=0), ValueError, "got 0", "int ≥ 1")  # fmt: skip
case("simulator", "check_simulator on a non-simulator", lambda: loe_gym.check_simulator(object()),
     ContractError, "no attribute 'catalog'", "rule 1")  # fmt: skip
case("simulator", "env step: gap_days = −2", lambda: _run(_negative_gap()), ValueError,
     r"NegativeGap.*gap_days < 1", "Fix the simulator")  # fmt: skip
case("simulator", "env step: NaN watch time", lambda: _run(_nan_watch()), ValueError,
     r"NaNWatch.*NaN or inf watch_time", "Fix the simulator")  # fmt: skip

# ---------------------------------------------------------------------- catalog
case("catalog", "NaN feature", lambda: loe_gym.Catalog(features=np.array([[np.nan]]),
     feature_names=("a",)), ValueError, "item 0 has NaN", "must be finite")  # fmt: skip
case("catalog", "names ≠ columns", lambda: loe_gym.Catalog(features=np.zeros((2, 2)),
     feature_names=("a",)), ValueError, "1 names for 2", "one name per column")  # fmt: skip
case("catalog", "negative topic", lambda: loe_gym.Catalog(features=np.zeros((2, 1)),
     feature_names=("a",), topics=np.array([0, -1])), ValueError, "shape", "non-negative")  # fmt: skip
case("catalog", "hidden array of another length", lambda: loe_gym.Catalog(
     features=np.zeros((2, 1)), feature_names=("a",), hidden={"q": np.zeros(3)}), ValueError,
     r"shape \(3,\)", "leading axis num_items=2")  # fmt: skip

# ------------------------------------------------------------------- reset and step
case("step", "reset(seed=-1)", lambda: env().reset(seed=-1), ValueError, "got -1",
     "non-negative int")  # fmt: skip
case("step", "reset(seed=1.5)", lambda: env().reset(seed=1.5), TypeError, "got 1.5",
     "an int or None")  # fmt: skip
case("step", "reset(seed=[0, 1])", lambda: env().reset(seed=[0, 1]), TypeError, "2 seeds",
     "one int seed")  # fmt: skip
case("step", "step before reset", lambda: env().step(np.zeros(2, np.int64)), RuntimeError,
     "before step", "Call reset")  # fmt: skip
case("step", "actions of shape (3,)", lambda: stepped(np.zeros(3, np.int64)), ValueError,
     r"shape \(3,\)", r"must have shape \(2,\)")  # fmt: skip
case("step", "float actions", lambda: stepped(np.zeros(2)), TypeError, "float64",
     "integer indices")  # fmt: skip
case("step", "NaN actions", lambda: stepped(np.array([np.nan, 0.0])), TypeError, "NaN",
     "integer indices")  # fmt: skip
case("step", "index 20 of 20 candidates", lambda: stepped(np.array([0, 20])), ValueError,
     "user 1 got 20", r"\[0, 20\)")  # fmt: skip
case("step", "negative index", lambda: stepped(np.array([-1, 0])), ValueError, "got -1",
     r"\[0, 20\)")  # fmt: skip
case("step", "slate with a repeat (error mode)", lambda: stepped(
     np.array([[0, 1, 2, 3, 4], [0, 0, 1, 2, 3]]), slate_size=5, duplicate_slate_items="error"),
     ValueError, r"\[0, 0, 1, 2, 3\]", "different candidate indices")  # fmt: skip

# ------------------------------------------------------------------ agent configs
for field, bad, fix in (
    ("algorithm", "pp0", "Did you mean 'ppo'"),
    ("encoder", "nope", "Did you mean 'none'"),
    ("reward_source", "sim", "must be one of"),
    ("learning_rate", -1, "must be > 0"),
    ("learning_rate", float("nan"), "must be finite"),
    ("n_steps", 0, "must be > 0"),
    ("batch_size", 0, "must be > 0"),
    ("n_epochs", 0, "must be > 0"),
    ("total_steps", 0, "must be > 0"),
    ("num_users", 0, "must be > 0"),
    ("buffer_size", 0, "must be > 0"),
    ("gamma", 1.5, r"must lie in \(0, 1\]"),
    ("gamma", -0.1, r"must lie in \(0, 1\]"),
    ("day_discount", 0, r"must lie in \(0, 1\]"),
    ("gae_lambda", 2, r"must lie in \(0, 1\]"),
    ("ent_coef", -1, "must be ≥ 0"),
    ("seed", -1, "must be ≥ 0"),
    ("return_weight", float("inf"), "must be finite"),
    ("net_arch", (0,), "positive widths"),
):
    case("config", f"TrainConfig.{field}={bad!r}",
         lambda f=field, b=bad: agent_configs.TrainConfig(**{f: b}), ValueError,
         rf"{field}.*{re.escape(repr(bad)) if isinstance(bad, str) else re.escape(str(bad))}", fix)  # fmt: skip
case("config", "TrainConfig learning_rat (misspelt, in a --config file)",
     lambda: agent_configs.TrainConfig.from_dict({"learning_rat": 1e-3}), TypeError, "'learning_rat'",
     "Did you mean 'learning_rate'")  # fmt: skip
for field, bad, fix in (
    ("num_users", 0, "must be > 0"),
    ("seeds", (), "at least one seed"),
    ("seeds", (0, 0), "distinct seeds"),
    ("seeds", (-1,), "integers ≥ 0"),
):
    case("config", f"EvaluationConfig.{field}={bad!r}",
         lambda f=field, b=bad: agent_configs.EvaluationConfig(**{f: b}), ValueError,
         rf"{field}", fix)  # fmt: skip
for field, bad, fix in (
    ("eval_users", 0, "must be > 0"),
    ("eval_every", -1, "must be ≥ 0"),
    ("checkpoint_every", -5, "must be ≥ 0"),
):
    case("config", f"TrainRunConfig.{field}={bad!r}",
         lambda f=field, b=bad: agent_configs.TrainRunConfig(**{f: b}), ValueError,
         rf"{field}.*{bad}", fix)  # fmt: skip
case("config", "TrainRunConfig.env_options='x'",
     lambda: agent_configs.TrainRunConfig(env_options="x"), TypeError, "'x'",
     "must be a dict")  # fmt: skip
case("config", "the generic id without a simulator",
     lambda: agent_configs.ExperimentConfig(env_id="loe_gym/Recommendation-v0"), ValueError,
     "Recommendation-v0", '"simulator":')  # fmt: skip
case("config", "ExperimentConfig.training_seeds=(1, 1)",
     lambda: agent_configs.ExperimentConfig(training_seeds=(1, 1)), ValueError, r"\(1, 1\)",
     "distinct seeds")  # fmt: skip
case("config", "CollectConfig.seed=-1", lambda: agent_configs.CollectConfig(seed=-1), ValueError,
     "got -1", "must be ≥ 0")  # fmt: skip
case("config", "LookaheadConfig.top_k=0", lambda: agent_configs.LookaheadConfig(top_k=0),
     ValueError, "got 0", "must be > 0")  # fmt: skip
case("config", "LookaheadConfig.switch_samples=1",
     lambda: agent_configs.LookaheadConfig(switch_samples=1), ValueError, "got 1", "≥ 2")  # fmt: skip
case("config", "LoopConfig.env_options with horizon_days",
     lambda: agent_configs.LoopConfig(env_options={"horizon_days": 3}), ValueError,
     "horizon_days", "--horizon-days")  # fmt: skip

# -------------------------------------------------------------- predictor configs
for field, bad, fix in (
    ("learning_rate", 0, "must be > 0"),
    ("max_epochs", 0, "must be > 0"),
    ("batch_size", 0, "must be > 0"),
    ("warmup_fraction", 1.5, r"must lie in \[0, 1\]"),
    ("adversarial", "fgn", "Did you mean 'fgm'"),
    ("lora_rank", 0, "positive integer or None"),
    ("mixed_precision", "fp8", "must be one of"),
    ("max_steps", 0, "positive integer or None"),
    ("steps_per_epoch", 0, "positive integer or None"),
    ("keep_checkpoints", 0, "must be > 0"),
    ("adversarial_epsilon", -1, "must be ≥ 0"),
):
    case("config", f"TrainingConfig.{field}={bad!r}",
         lambda f=field, b=bad: predictor_configs.TrainingConfig(**{f: b}), ValueError,
         rf"{field}.*{re.escape(repr(bad)) if isinstance(bad, str) else bad}", fix)  # fmt: skip
for field, bad, fix in (
    ("backbone", "bret", "Did you mean 'bert'"),
    ("hidden_size", 0, "must be > 0"),
    ("num_hidden_layers", 0, "must be > 0"),
    ("max_history_length", 0, "must be > 0"),
):
    case("config", f"ModelConfig.{field}={bad!r}",
         lambda f=field, b=bad: predictor_configs.ModelConfig(**{f: b}), ValueError,
         rf"{field}.*{re.escape(repr(bad)) if isinstance(bad, str) else bad}", fix)  # fmt: skip
for field, bad, fix in (
    ("validation_fraction", 1.0, "below 1"),
    ("test_fraction", -0.1, r"must lie in \[0, 1\]"),
    ("pretrain_epochs", -1, "must be ≥ 0"),
):
    case("config", f"FitPredictorConfig.{field}={bad!r}",
         lambda f=field, b=bad: predictor_configs.FitPredictorConfig(**{f: b}), ValueError,
         rf"{bad}", fix)  # fmt: skip


# ---------------------------------------------------------------------------- logs
def _tmp() -> Path:
    return Path(tempfile.mkdtemp())


case("logs", "read_log of a missing path", lambda: read_log("/nonexistent/log"),
     FileNotFoundError, "/nonexistent/log", "No interaction log")  # fmt: skip
case("logs", "a log writer on a file", lambda: ParquetLogWriter(__file__, policy="x"),
     FileExistsError, "is a file", "Choose a directory")  # fmt: skip
case("logs", "rows_per_group=0", lambda: ParquetLogWriter(_tmp(), policy="x",
     rows_per_group=0), ValueError, "got 0", "positive integer")  # fmt: skip
case("logs", "an empty policy name", lambda: ParquetLogWriter(_tmp(), policy=""),
     ValueError, "got ''", "non-empty string")  # fmt: skip
case("logs", "import preset 'movielen'", lambda: import_logs(__file__, _tmp() / "o",
     "movielen"), ValueError, "'movielen'", "Did you mean 'movielens'")  # fmt: skip
case("logs", "import a missing file", lambda: import_logs("/nonexistent.csv",
     _tmp() / "o", "kuairec"), FileNotFoundError, "/nonexistent.csv", "No input file")  # fmt: skip


def _import_text(name: str, content: bytes, mapping: Any, *, items: bool = False) -> Any:
    """Import a file written as ``content``: the interactions, or (``items``) the item
    table beside a one-row ratings.csv."""
    directory = _tmp()
    (directory / name).write_bytes(content)
    if not items:
        return import_logs(directory / name, directory / "o", mapping)
    ratings = directory / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,1,4,880000000\n")
    return import_logs(ratings, directory / "o", mapping, items=directory / name)


case("logs", "ratings.dat read with delimiter ','", lambda: _import_text("ratings.dat",
     b"1::2::4::880000000\n", resolve_mapping("movielens-1m", {"delimiter": ","})),
     ValueError, r"line 1\): 1 fields", r'\{"delimiter": "::"\}')  # fmt: skip
case("logs", "a latin-1 item table read as utf-8", lambda: _import_text("movies.csv",
     "movieId,title,genres\n1,Misérables (1995),Drama\n".encode("latin-1"), "movielens",
     items=True), ValueError, r"line 2, character 6: the byte 0xe9",
     r'"encoding": "latin-1"')  # fmt: skip
case("logs", "a genre list with an empty genre", lambda: _import_text("movies.csv",
     b"movieId,title,genres\n1,Heat (1995),Action||Comedy\n", "movielens", items=True),
     ValueError, r"row 1 \(line 2\), column 'genres': 'Action\|\|Comedy'",
     "Write the list as")  # fmt: skip
case("logs", "an unclosed category list '[27, 9'", lambda: _import_text("movies.csv",
     b'movieId,title,genres\n1,Heat (1995),"[27, 9"\n', "movielens", items=True),
     ValueError, r"'\[27, 9'", r"does not close it.*'\[27, 9\]'")  # fmt: skip
case("logs", "encoding 'latin1x'", lambda: resolve_mapping("movielens",
     {"encoding": "latin1x"}), ValueError, "'latin1x'", "Did you mean 'latin-1'")  # fmt: skip


def _collect(**options: Any) -> Any:
    from agents.collect import collect_logs

    return collect_logs(**{"num_users": 2, "path": _tmp() / "log", "progress": False, **options})


case("logs", "collect policy 'mixd'", lambda: _collect(policy="mixd"), ValueError, "'mixd'",
     "Did you mean 'mixed'")  # fmt: skip
case("logs", "collect horizon_days=0", lambda: _collect(horizon_days=0), ValueError, "got 0",
     "positive integer")  # fmt: skip
case("logs", "collect num_users=0", lambda: _collect(num_users=0), ValueError, "got 0",
     "positive integer")  # fmt: skip
case("logs", "resume a log that does not exist", lambda: _collect(resume=True),
     FileNotFoundError, "Nothing to resume", "without resume")  # fmt: skip


# ------------------------------------------------------------------- evaluation
def _evaluate(*policies: Any, **options: Any) -> Any:
    from agents.evaluation import evaluate

    settings = {"num_users": 2, "seeds": (0,), "progress": False, "env_options": SMALL}
    return evaluate(options.pop("env_id", "loe_gym/Engagement-v0"), list(policies),
                    **{**settings, **options})  # fmt: skip


case("evaluate", "an unknown policy", lambda: _evaluate("myopc"), ValueError, "'myopc'",
     "Did you mean 'myopic'")  # fmt: skip
case("evaluate", "num_users=0", lambda: _evaluate("random", num_users=0), ValueError, "got 0",
     "≥ 1")  # fmt: skip
case("evaluate", "seeds=(0, 0)", lambda: _evaluate("random", seeds=(0, 0)), ValueError,
     r"\(0, 0\)", "distinct seeds")  # fmt: skip
case("evaluate", "an unregistered env id", lambda: _evaluate("random",
     env_id="loe_gym/Engagment-v0"), ValueError, "'loe_gym/Engagment-v0'",
     "Did you mean 'loe_gym/Engagement-v0'")  # fmt: skip
case("evaluate", "load a folder that is not a run",
     lambda: load_agent(_tmp()),
     FileNotFoundError, "holds no config.json", "loe-gym train")  # fmt: skip
case("evaluate", "a predictor folder without weights",
     lambda: load_predictor(_tmp()),
     FileNotFoundError, "config.json is missing", "save_pretrained")  # fmt: skip


# ------------------------------------------------------------------ SB3 adapter
def _sb3(**options: Any) -> Any:
    from agents.sb3_vec_env import make_sb3_env

    return make_sb3_env("loe_gym/Engagement-v0", **{"num_users": 2, **SMALL, **options})


case("sb3", "make_sb3_env(num_users=0)", lambda: _sb3(num_users=0), ValueError, "got 0",
     "positive integer")  # fmt: skip
case("sb3", "set_attr for some users", lambda: _sb3().venv.set_attr("x", 1, indices=[0]),
     ValueError, r"set_attr\('x'\)", "indices=None")  # fmt: skip


# ------------------------------------------------------------------ scaling out
def _no_ray(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make`` as on a machine without Ray (the main environment of the tests)."""

    def run() -> Any:
        saved = sys.modules.get("ray")
        sys.modules["ray"] = None  # type: ignore[assignment]
        try:
            return make()
        finally:
            if saved is None:
                sys.modules.pop("ray", None)
            else:
                sys.modules["ray"] = saved

    return run


def _train_config(**options: Any) -> Any:
    return agent_configs.TrainConfig(**options)


def _device(name: str) -> Any:
    from loe_gym.devices import resolve_device

    return resolve_device(name)


def _rllib_without_ray() -> Any:
    from agents.rllib_backend import ppo_config

    agent = _train_config(backend="rllib", encoder="none")
    return ppo_config(agent_configs.TrainRunConfig(agent=agent))


def _ray_runner() -> Any:
    from agents.populations import make_runner

    return make_runner(ray=True)


case("scaling", "an unknown backend", lambda: _train_config(backend="ray"), ValueError,
     "got 'ray'", "one of 'sb3', 'rllib'")  # fmt: skip
case("scaling", "backend rllib with dqn", lambda: _train_config(backend="rllib", algorithm="dqn"),
     ValueError, "algorithm='dqn'", "--agent.algorithm ppo")  # fmt: skip
case("scaling", "env runners without the rllib backend",
     lambda: _train_config(num_env_runners=2), ValueError, "num_env_runners=2",
     "--agent.backend rllib")  # fmt: skip
case("scaling", "users that do not split over the env runners",
     lambda: _train_config(backend="rllib", num_users=10, num_env_runners=3), ValueError,
     "num_users=10", "multiple of 3")  # fmt: skip
case("scaling", "backend rllib without Ray installed", _no_ray(_rllib_without_ray),
     ImportError, "backend 'rllib'", r'pip install -e "\.\[rllib\]"')  # fmt: skip
case("scaling", "--ray without Ray installed", _no_ray(_ray_runner), ImportError, "--ray",
     r'pip install -e "\.\[rllib\]"')  # fmt: skip
case("scaling", "negative users per shard",
     lambda: agent_configs.EvaluationConfig(users_per_shard=-1), ValueError, "-1", "≥ 0")  # fmt: skip
case("scaling", "an unknown device", lambda: _device("tpu"), ValueError, "'tpu'",
     "auto, cpu, cuda or cuda:N")  # fmt: skip


# ---------------------------------------------------------------------- the tests
def _id(item: Case) -> str:
    return f"{item.area}: {item.what}"


@pytest.mark.parametrize("item", CASES, ids=_id)
def test_bad_input_gets_a_clear_error(item: Case) -> None:
    with pytest.raises(item.error) as raised:
        item.make()
    message = str(raised.value)
    assert re.search(item.value, message), f"the value is not named: {message}"
    assert re.search(item.fix, message), f"the fix is not named: {message}"


def test_the_catalogue_has_at_least_100_cases_and_its_page_is_current() -> None:
    assert len(CASES) >= 100
    assert len({_id(item) for item in CASES}) == len(CASES)
    assert (ROOT / "docs" / "bad_inputs.md").read_text() == page()


def page() -> str:
    """docs/bad_inputs.md: the catalogue's cases by area, with their error types."""
    counts: dict[str, int] = {}
    rows = []
    for item in CASES:
        counts[item.area] = counts.get(item.area, 0) + 1
        errors = item.error if isinstance(item.error, tuple) else (item.error,)
        names = " or ".join(error.__name__ for error in errors)
        rows.append(f"| {item.area} | {item.what.replace('|', '/')} | {names} |")
    summary = ", ".join(f"{area} {count}" for area, count in counts.items())
    return (
        "# Bad inputs and their errors\n\n"
        "Generated by `python tests/test_bad_input_catalogue.py > docs/bad_inputs.md`; CI "
        "checks that the page is current. Each case is a test that asserts the error type "
        "and that the message names the value received and the fix. More cases on "
        "actions, resets and slates: `tests/test_bad_input.py`.\n\n"
        f"**{len(CASES)} cases, every one a clear error** (none accepted silently, no raw "
        f"library error): {summary}.\n\n"
        "| area | input | error |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    sys.stdout.write(page())
