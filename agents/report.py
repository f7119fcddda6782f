"""Evaluation reports: a markdown table, ``metrics.json`` and PNG plots per evaluation."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import METRICS, Evaluation

REPORT_METRICS = (
    "total_watch",
    "active_days",
    "next_day_retention",
    "session_length",
    "ctr",
    "completion",
    "coverage",
    "topic_diversity",
)
"""Columns of the report's main table."""


def stage(command: str, name: str, progress: bool) -> float:
    """Announce a stage of a long command (``[command] name …``); returns the start time."""
    if progress:
        print(f"[{command}] {name} …", flush=True)
    return time.perf_counter()


def _per_day(evaluation: Evaluation, field: str) -> dict[str, np.ndarray]:
    """Mean over seeds of a per-day curve, per policy."""
    curves = {}
    for policy, results in evaluation.results.items():
        values = np.stack(
            [r.retention_curve() if field == "retention" else getattr(r, field) for r in results]
        )
        # NaN (a day without sessions, a simulator without satisfaction) stays NaN.
        counts = np.isfinite(values).sum(0)
        sums = np.where(np.isfinite(values), values, 0.0).sum(0)
        curves[policy] = np.divide(
            sums, counts, out=np.full(counts.shape, np.nan), where=counts > 0
        )
    return curves


def plot_evaluation(evaluation: Evaluation, folder: str | Path) -> list[Path]:
    """Write ``engagement_per_day.png``, ``retention.png``, ``satisfaction.png`` (when the
    simulator has a satisfaction) and ``total_watch.png`` to ``folder``; return the paths."""
    # Figure objects, not pyplot: files only, no display needed, and the caller's backend
    # (a notebook's inline plots) is left alone.
    from matplotlib.figure import Figure

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    panels = [
        ("engagement_per_day.png", "daily_watch", "watch minutes per user"),
        ("retention.png", "retention", "share of users not churned"),
        ("satisfaction.png", "daily_satisfaction", "mean satisfaction at session ends"),
    ]
    for name, field, label in panels:
        curves = _per_day(evaluation, field)
        if all(np.isnan(c).all() for c in curves.values()):
            continue
        figure = Figure(figsize=(7, 4))
        axis = figure.subplots()
        for policy, curve in curves.items():
            axis.plot(np.arange(curve.size), curve, label=policy)
        axis.set_xlabel("day")
        axis.set_ylabel(label)
        axis.set_title(f"{evaluation.env_id}: {label}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        written.append(out / name)
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    policies = list(evaluation.results)
    summaries = [evaluation.metric(p, "total_watch") for p in policies]
    axis.bar(
        policies,
        [s.mean for s in summaries],
        yerr=[0 if np.isnan(s.half_width) else s.half_width for s in summaries],
        capsize=4,
    )
    axis.set_ylabel("total watch minutes per user (95% CI)")
    axis.set_title(f"{evaluation.env_id}: {len(evaluation.seeds)} seeds")
    axis.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    figure.savefig(out / "total_watch.png", dpi=110)
    written.append(out / "total_watch.png")
    return written


def plot_learning_curves(
    curves: Sequence[Sequence[tuple[int, float]]], levels: dict[str, float], path: Path
) -> Path:
    """Score against environment steps, one line per training run (their mean bold),
    every other policy's level as a horizontal line; write ``path``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    for i, curve in enumerate(c for c in curves if c):
        steps, scores = zip(*curve, strict=True)
        axis.plot(steps, scores, color="tab:blue", alpha=0.35, label="runs" if i == 0 else None)
    lengths = {len(c) for c in curves}
    if len(lengths) == 1 and len(curves) > 1:
        points = [s for s, _ in curves[0]]
        mean = np.mean([[score for _, score in c] for c in curves], axis=0)
        axis.plot(points, mean, color="tab:blue", linewidth=2.5, label="mean over runs")
    for j, (name, level) in enumerate(levels.items()):
        axis.axhline(level, color=f"C{(j + 1) % 10}", linestyle="--", linewidth=1, label=name)
    axis.set_xlabel("environment steps")
    axis.set_ylabel("held-out total watch minutes per user")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def write_evaluation(
    evaluation: Evaluation,
    folder: str | Path,
    *,
    metrics: Sequence[str] = REPORT_METRICS,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``evaluation.md``, ``metrics.json`` and the plots to ``folder``; return the
    markdown."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_evaluation(evaluation, out)
    lines = [
        f"Environment `{evaluation.env_id}`, {evaluation.num_users} users per population, "
        f"seeds {list(evaluation.seeds)}; mean ± 95% CI half-width (Student t over seeds).",
        "",
        evaluation.table(metrics),
        "",
        *(f"- `{name}`: {METRICS[name]}" for name in metrics),
        "",
        *(f"![{p.stem}]({p.name})" for p in plots),
        "",
    ]
    markdown = "\n".join(lines)
    (out / "evaluation.md").write_text(markdown)
    curves = {
        field: {p: c.tolist() for p, c in _per_day(evaluation, field).items()}
        for field in ("daily_watch", "retention", "daily_satisfaction")
    }
    payload = {**evaluation.to_dict(), "curves_mean_over_seeds": curves, **(extra or {})}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return markdown
