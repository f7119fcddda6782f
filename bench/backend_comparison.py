"""Two groups of trained agents (e.g. the SB3 and the RLlib backend, one agent per training
seed) from one ``loe-gym evaluate`` report: IQM and mean over (training seed, population)
pairs with stratified-bootstrap 95 % CIs (rliable, `agents.aggregate`), and the ratio of the
means with a bootstrap CI over training seeds and populations.

    python bench/backend_comparison.py reports/both/metrics.json \\
        --first sb3 runs/sb3_s0 runs/sb3_s1 runs/sb3_s2 --second rllib runs/rl_s0 runs/rl_s1 runs/rl_s2

Agent names are the run folders' names, as ``loe-gym evaluate`` reports them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agents.aggregate import aggregate_runs


def scores(metrics: dict, runs: list[str], metric: str) -> np.ndarray:
    """``(training seeds, populations)`` per-population scores of ``runs``."""
    policies = metrics["policies"]
    names = [Path(run).name for run in runs]
    missing = [name for name in names if name not in policies]
    if missing:
        raise SystemExit(f"{missing} not in the report; it has {sorted(policies)}.")
    return np.array([policies[name][metric]["per_seed"] for name in names], float)


def ratio_interval(first: np.ndarray, second: np.ndarray, reps: int, seed: int) -> tuple:
    """Mean(second) / mean(first), with a 95 % bootstrap CI: training seeds resampled within
    each group, populations (shared by both groups) resampled jointly."""
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(reps):
        pops = rng.integers(0, first.shape[1], first.shape[1])
        a = first[rng.integers(0, len(first), len(first))][:, pops]
        b = second[rng.integers(0, len(second), len(second))][:, pops]
        ratios.append(b.mean() / a.mean())
    low, high = np.percentile(ratios, [2.5, 97.5])
    return second.mean() / first.mean(), low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", help="metrics.json of a loe-gym evaluate report")
    parser.add_argument("--first", nargs="+", required=True, help="LABEL RUN [RUN ...]")
    parser.add_argument("--second", nargs="+", required=True, help="LABEL RUN [RUN ...]")
    parser.add_argument("--metric", default="total_watch")
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    metrics = json.loads(Path(args.metrics).read_text())
    groups = {args.first[0]: args.first[1:], args.second[0]: args.second[1:]}
    arrays = {label: scores(metrics, runs, args.metric) for label, runs in groups.items()}
    summary = aggregate_runs(arrays, reps=args.reps)
    print(f"{args.metric}, {metrics['num_users']} users × populations {metrics['seeds']}")
    print(
        "| backend | training seeds | per seed (mean over populations) | IQM [95 % CI] | mean [95 % CI] |"
    )
    print("|---|---|---|---|---|")
    for label, values in arrays.items():
        result = summary[label]
        per_seed = ", ".join(f"{v:.1f}" for v in values.mean(1))
        low, high = result.mean_ci
        print(f"| {label} | {len(values)} | {per_seed} | {result} | {result.mean:.1f} "
              f"[{low:.1f}, {high:.1f}] |")  # fmt: skip
    first, second = arrays.values()
    ratio, low, high = ratio_interval(first, second, args.reps, seed=0)
    labels = list(arrays)
    print(f"\n{labels[1]} / {labels[0]} (means): {ratio:.3f} [{low:.3f}, {high:.3f}]")


if __name__ == "__main__":
    main()
