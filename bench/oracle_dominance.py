"""Is ``lookahead_oracle`` the highest policy on every simulator? The dominance table.

    python bench/oracle_dominance.py                            # 5 simulators, 200 users, seeds 0-2
    python bench/oracle_dominance.py --ppo-steps 200000 --train-seeds 0 1 2
    python bench/oracle_dominance.py --envs notebook04 --users 100 --seeds 0
    python bench/oracle_dominance.py --envs notebook04 --ppo-steps 200000 --agent '{"gamma": 0.999}'

For each simulator: every reference policy that acts on it (``random`` included), the
lookahead oracle with its defaults, and optionally PPO trained on the simulator's reward
(``--ppo-steps``, one agent per ``--train-seeds`` entry, encoder ``none``, other options from
``--agent``), all on the same
populations. The last column pairs the oracle with the best other policy seed by seed:
the mean difference and its 95 % t interval. ``notebook04`` is the novelty-seeking
simulator written in notebooks/04_custom_simulator.ipynb, loaded from the notebook's own
cells (the project's notebook, not user input), so the table judges exactly that model.
Writes ``dominance.md`` and ``dominance.json`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
import types
from pathlib import Path

import loe_gym  # noqa: F401  (registers the environments)
from agents.configs import TrainConfig, TrainRunConfig
from agents.evaluation import evaluate, summarise
from agents.lookahead import LookaheadOracle, portfolio
from agents.reference_policies import make_policy
from agents.training import load_agent, train_agent

ROOT = Path(__file__).resolve().parent.parent
ENVS = {
    "Engagement-v0": ("loe_gym/Engagement-v0", {}),
    "EngagementSlate-v0": ("loe_gym/EngagementSlate-v0", {}),
    # The RecSim ports' own observation has no candidate features for the agents' network.
    "InterestEvolution-v0": ("loe_gym/InterestEvolution-v0", {"observation": "history"}),
    "LongTermSatisfaction-v0": ("loe_gym/LongTermSatisfaction-v0", {"observation": "history"}),
    "notebook04": (
        "loe_gym/Recommendation-v0",
        {"simulator": "notebook04:NoveltyUsers", "num_candidates": 20},
    ),
}
NOTEBOOK_CLASSES = ("class NoveltyConfig", "class NoveltyState", "class NoveltyUsers")


def load_notebook_simulator() -> None:
    """Make notebook 04's model importable as module ``notebook04`` (its import cell and
    the cells defining the model's classes)."""
    if "notebook04" in sys.modules:
        return
    notebook = json.loads((ROOT / "notebooks" / "04_custom_simulator.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    wanted = [cells[0], *(c for c in cells if any(k in c for k in NOTEBOOK_CLASSES))]
    module = types.ModuleType("notebook04")
    sys.modules["notebook04"] = module
    # The import cell also reads the notebook's size variables and makes a work folder.
    exec(
        compile("\n\n".join(wanted), "notebooks/04_custom_simulator.ipynb", "exec"), module.__dict__
    )


def reference_policies(env_id: str, options: dict) -> list:
    """Every reference policy that acts on the env: random and the oracle's portfolio."""
    import gymnasium as gym

    env = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point", **options)
    obs, _ = env.reset(seed=0)
    policies, _ = portfolio(("auto",), env.unwrapped, obs)
    env.close()
    return [make_policy("random"), *policies]


def trained_agents(env_id: str, options: dict, args: argparse.Namespace, work: Path) -> list:
    """PPO agents trained on the simulator's reward, one per ``--train-seeds`` entry
    (training seed 1000 + entry), with ``--agent``'s TrainConfig overrides."""
    agents = []
    for seed in args.train_seeds:
        agent = TrainConfig(encoder="none", reward_source="simulator", total_steps=args.ppo_steps)
        config = TrainRunConfig(
            env_id=env_id,
            env_options=options or None,
            agent=agent.merged({**json.loads(args.agent), "seed": 1000 + seed}),
            eval_every=0,
            checkpoint_every=0,
        )
        folder = work / f"ppo_{seed}"
        train_agent(config, folder, overwrite=True, progress=False)
        agents.append(load_agent(folder, name=f"ppo_seed{seed}")[0])
    return agents


def paired(a: tuple, b: tuple) -> tuple[float, float]:
    """Mean and 95 % t half-width of per-seed differences of total watch."""
    gain = summarise([x.watch.mean() - y.watch.mean() for x, y in zip(a, b, strict=True)])
    return gain.mean, gain.half_width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ppo-steps", type=int, default=0, help="0: no trained agents")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--agent", default="{}", help="TrainConfig overrides as JSON, e.g. '{\"gamma\": 0.999}'"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs/agents_results/dominance",
        help="keeps the rows of other simulators run there with the same settings",
    )
    parser.add_argument(
        "--rewrite", action="store_true", help="only render dominance.md from dominance.json"
    )
    args = parser.parse_args()
    if args.rewrite:
        args.envs = []  # keep every saved row
        write({}, args)
        return
    load_notebook_simulator()
    rows, work = {}, Path(tempfile.mkdtemp(prefix="dominance_"))
    for name in args.envs:
        env_id, options = ENVS[name]
        started = time.perf_counter()
        policies, agents = reference_policies(env_id, options), []
        if args.ppo_steps:
            agents = trained_agents(env_id, options, args, work / name)
        oracle = LookaheadOracle(extra=agents)  # it improves on the agents too
        policies += agents
        result = evaluate(
            env_id,
            [*policies, oracle],
            num_users=args.users,
            seeds=args.seeds,
            env_options=options,
            progress=False,
        )
        means = {p: result.metric(p, "total_watch") for p in result.results}
        others = {p: m for p, m in means.items() if p != oracle.name}
        best = max(others, key=lambda p: others[p].mean)
        gain, half = paired(result.results[oracle.name], result.results[best])
        rows[name] = {
            "policies": {p: [m.mean, m.half_width] for p, m in means.items()},
            "best_other": best,
            "gain_over_best_other": [gain, half],
            "highest": means[oracle.name].mean >= others[best].mean,
            "followed": sorted(set(oracle.followed())),
            "seconds": time.perf_counter() - started,
        }
        print(
            f"{name}: oracle {means[oracle.name]} vs {best} {others[best]}; paired "
            f"{gain:+.1f} ± {half:.1f} ({rows[name]['seconds']:.0f} s)",
            flush=True,
        )
        write(rows, args, final=False)  # what is done so far survives a later failure
    write(rows, args)


def earlier_rows(args: argparse.Namespace) -> dict:
    """The rows of simulators that ``--output`` already holds from a run with the same
    users, seeds, PPO budget and settings: so simulators can run as separate calls (on
    separate cores) into one table. A simulator run again replaces its row."""
    path = args.output / "dominance.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    if saved.get("settings") != _settings(args):
        return {}
    return {name: row for name, row in saved["rows"].items() if name not in args.envs}


def _settings(args: argparse.Namespace) -> dict:
    keys = ("users", "seeds", "ppo_steps", "train_seeds", "agent")
    return {key: getattr(args, key) for key in keys}


def _command(args: argparse.Namespace) -> str:
    """The options other than ``--envs`` as a command line."""
    words = ["--users", str(args.users), "--seeds", *map(str, args.seeds)]
    if args.ppo_steps:
        words += ["--ppo-steps", str(args.ppo_steps), "--train-seeds", *map(str, args.train_seeds)]
        words += ["--agent", args.agent] if json.loads(args.agent) else []
    return shlex.join(words)


def _ppo_rows(rows: dict) -> list[str]:
    """The trained agents over training seeds: the mean of their means with a 95 % t
    interval over the seeds, and that mean against ``myopic`` and the oracle."""
    seeds = {
        name: [v[0] for p, v in row["policies"].items() if p.startswith("ppo_seed")]
        for name, row in rows.items()
    }
    if not any(seeds.values()):
        return []
    summaries = {name: summarise(values) if values else None for name, values in seeds.items()}

    def ratio(name: str, reference: str) -> str:
        base = rows[name]["policies"].get(reference)
        summary = summaries[name]
        return "—" if summary is None or base is None else f"{summary.mean / base[0]:.2f}×"

    cells = [
        "—" if m is None else f"{m.mean:.1f} ± {m.half_width:.1f} ({len(seeds[n])})"
        for n, m in summaries.items()
    ]
    return [
        "| **PPO over training seeds** | " + " | ".join(cells) + " |",
        "| PPO / myopic | " + " | ".join(ratio(n, "myopic") for n in rows) + " |",
        "| PPO / lookahead_oracle | "
        + " | ".join(ratio(n, "lookahead_oracle") for n in rows)
        + " |",
    ]


def write(rows: dict, args: argparse.Namespace, final: bool = True) -> None:
    rows = {**earlier_rows(args), **rows}  # read now: another call may have added rows
    rows = {name: rows[name] for name in ENVS if name in rows}  # columns in ENVS' order
    names = sorted(
        {p for row in rows.values() for p in row["policies"]},
        key=lambda p: (p == "lookahead_oracle", p),
    )
    cell = lambda v: "—" if v is None else f"{v[0]:.1f} ± {v[1]:.1f}"  # noqa: E731
    lines = [
        f"Total watch minutes per user, {args.users} users × seeds {args.seeds} (95 % t CIs over "
        "seeds); `python bench/oracle_dominance.py --envs <column> " + _command(args) + "`.",
        "",
        "| policy | " + " | ".join(rows) + " |",
        "|---|" + "---|" * len(rows),
        *(
            f"| {p} | " + " | ".join(cell(r["policies"].get(p)) for r in rows.values()) + " |"
            for p in names
        ),
        "| **best other** | " + " | ".join(r["best_other"] for r in rows.values()) + " |",
        "| **oracle − best other (paired)** | "
        + " | ".join(cell(r["gain_over_best_other"]) for r in rows.values())
        + " |",
        "| oracle highest | " + " | ".join(str(r["highest"]) for r in rows.values()) + " |",
        *_ppo_rows(rows),
        "| seconds | " + " | ".join(f"{r['seconds']:.0f}" for r in rows.values()) + " |",
    ]
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "dominance.md").write_text("\n".join(lines) + "\n")
    record = {"settings": _settings(args), "rows": rows}
    (args.output / "dominance.json").write_text(json.dumps(record, indent=1) + "\n")
    if final:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
