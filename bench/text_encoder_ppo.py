"""PPO with the text-aware state encoder against the features-only one on
`loe_gym/ItemChurn-v0`: total watch time with 95 % CIs over training seeds.

    python bench/text_encoder_ppo.py --work runs/text_ppo --json docs/agents_results/text_encoder_ppo.json

Stages (each skipped when its output exists, so an interrupted run resumes):

1. a log of ``--users`` users under the ``diverse`` logging policy;
2. two predictors fitted on it with a temporal split (the encoder never trains on the
   last days, whose items are fresh): ``features`` and ``features + text`` (frozen MiniLM);
3. PPO (``loe-gym train``, the predictor as frozen state encoder, the simulator's reward)
   for each predictor and training seed, ``--steps`` environment steps each;
4. an evaluation of each encoder's runs and the random and myopic baselines on the same
   populations (``--eval-seeds``), then IQM and mean with stratified-bootstrap 95 % CIs over
   (training seeds × evaluation populations), `agents.aggregate.aggregate_runs` (rliable).

Timings are those of the machine; the metrics are not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from agents.aggregate import aggregate_runs

ENV = "loe_gym/ItemChurn-v0"
ENCODERS = {"features": [], "text": ["--model.text-model", "minilm"]}


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "agents.cli", *args, "--no-progress"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--fit-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    parser.add_argument("--eval-users", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--train-options", nargs=argparse.REMAINDER, default=[],
        help="the rest goes to both encoders' `loe-gym train`, e.g. --agent.item-vector-size 8",
    )  # fmt: skip
    args = parser.parse_args()
    work = args.work
    log = work / "log"
    if not (log / "_metadata.json").exists():
        _cli("collect-logs", "--env-id", ENV, "--collect.policy", "diverse",
             "--collect.num-users", str(args.users), "--output", str(log), "--overwrite")  # fmt: skip
    runs: dict[str, list[str]] = {name: [] for name in ENCODERS}
    for name, options in ENCODERS.items():
        fit = work / f"predictor_{name}"
        if not (fit / "metrics.json").exists():
            _cli("fit-predictor", "--logs", str(log), "--output", str(fit), "--split", "temporal",
                 "--test-fraction", "0.15", "--training.max-epochs", "2", "--training.steps-per-epoch",
                 str(args.fit_steps), "--gru-epochs", "0", "--overwrite", *options)  # fmt: skip
        for seed in args.seeds:
            run = work / f"ppo_{name}_s{seed}"
            if not (run / "agent.safetensors").exists():
                _cli("train", "--env-id", ENV, "--predictor", str(fit / "model"), "--output", str(run),
                     "--agent.total-steps", str(args.steps), "--agent.seed", str(seed),
                     "--eval-every", "0", "--overwrite", *args.train_options)  # fmt: skip
            runs[name].append(run.name)
    # `evaluate` serves one predictor per call: one report per encoder, on the same
    # populations (the evaluation seeds fix the users and their candidates).
    scores: dict[str, np.ndarray] = {}
    for name, names in runs.items():
        report = work / f"evaluation_{name}"
        if not (report / "metrics.json").exists():
            _cli("evaluate", "--env-id", ENV, "--output", str(report), "--overwrite",
                 "--agents", *(str(work / r) for r in names), "--baselines", "random", "myopic",
                 "--evaluation.num-users", str(args.eval_users),
                 "--evaluation.seeds", *map(str, args.eval_seeds))  # fmt: skip
        policies = json.loads((report / "metrics.json").read_text())["policies"]
        scores[name] = np.array([policies[r]["total_watch"]["per_seed"] for r in names])
        for baseline in ("random", "myopic"):
            scores[baseline] = np.array([policies[baseline]["total_watch"]["per_seed"]])
    aggregates = aggregate_runs(scores)
    # The ratio's interval: bootstrap over training runs and populations of both groups.
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(2000):
        text, features = (
            scores[k][rng.integers(0, len(scores[k]), len(scores[k]))][
                :, rng.integers(0, scores[k].shape[1], scores[k].shape[1])
            ].mean()
            for k in ("text", "features")
        )
        ratios.append(text / features)
    ratio = scores["text"].mean() / scores["features"].mean()
    low, high = np.percentile(ratios, [2.5, 97.5])
    print("| policy | runs | mean total watch [95 % CI] | IQM [95 % CI] |\n|---|---|---|---|")
    for name, a in aggregates.items():
        print(f"| {name} | {a.runs} | {a.mean:.1f} [{a.mean_ci[0]:.1f}, {a.mean_ci[1]:.1f}] | "
              f"{a.iqm:.1f} [{a.iqm_ci[0]:.1f}, {a.iqm_ci[1]:.1f}] |")  # fmt: skip
    print(f"text / features: {ratio:.3f} [{low:.3f}, {high:.3f}] (goal ≥ 1.05)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "arguments": vars(args) | {"work": str(args.work), "json": str(args.json)},
            "scores": {k: v.tolist() for k, v in scores.items()},
            "aggregates": {k: a.__dict__ for k, a in aggregates.items()},
            "text_over_features": {"ratio": ratio, "ci95": [low, high]},
        }, indent=2, default=float))  # fmt: skip


if __name__ == "__main__":
    main()
