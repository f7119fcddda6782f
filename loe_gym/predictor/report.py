"""The ``report.md`` of a `fit_predictor` run, rendered from its ``metrics.json`` content.

Each table names its protocol in words: how the log was held out (by users, by time,
leaving each user's last click out) and how the next clicked item was ranked (full
catalog with or without the items the user already clicked, or among sampled negatives).
AUCs carry their 95 % DeLong interval, since a small test set's AUC moves by hundredths.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from loe_gym.predictor.protocols import PROTOCOLS, SAMPLED_NEGATIVES
from loe_gym.predictor.splits import MIN_LEAVE_LAST_OUT_CLICKS

__all__ = ["json_default", "render_report"]


def json_default(value: Any) -> Any:
    """``json.dumps``' fallback for numpy scalars and paths."""
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _with_interval(values: dict[str, Any], key: str) -> str:
    """``0.712 [0.690, 0.733]`` where ``values`` holds the 95 % interval of ``key``,
    else the value alone."""
    value = values.get(key, math.nan)
    low, high = values.get(f"{key}_ci_low", math.nan), values.get(f"{key}_ci_high", math.nan)
    if math.isnan(value) or math.isnan(low) or math.isnan(high):
        return _format(value)
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _censoring_line(load_report: dict[str, Any]) -> str:
    """The report's line on censored next-day return labels (`LoadReport`)."""
    censored = int(load_report.get("censored_returns", 0))
    return (
        f"Next-day return labels: {load_report.get('session_ends', 0)} session ends, "
        f"{censored} censored (the user's last session in an imported log: the return is "
        "unknown, so it is left out of the return loss and AUC)."
    )


def _split_lines(split: dict[str, Any]) -> list[str]:
    """The held-out section's heading and the words for its split."""
    kind = split.get("kind", "users")
    if kind == "temporal":
        return [
            "## Held-out days",
            "",
            f"Split by time: training before day {split['validation_from_day']}, validation "
            f"until day {split['test_from_day']}, test from day {split['test_from_day']} "
            "(every user's later rows; histories keep all earlier rows).",
        ]
    if kind == "leave_last_out":
        return [
            "## Held-out last clicks",
            "",
            "Split leave-last-out: each user's last clicked row is the test target, the "
            "clicked row before it the validation target, and the rows before that train "
            f"(histories keep all earlier rows). {split['users_with_targets']} users have "
            f"targets; {split['users_without_targets']} users with fewer than "
            f"{MIN_LEAVE_LAST_OUT_CLICKS} clicked rows have none (their rows only train).",
            "",
            "Every test target is a click, so click AUC and GAUC are undefined for this "
            "protocol and not reported (click ECE and log loss score positives only); the "
            "ranking metrics below are this protocol's measure, as in the literature.",
        ]
    return ["## Held-out users"]


def _item_age_lines(result: dict[str, Any]) -> list[str]:
    split, by_age = result.get("split") or {}, result.get("test_by_item_age") or {}
    if split.get("kind") != "temporal":
        return []
    lines = [
        "",
        "| test targets | rows | click AUC [95 % CI] | watch time RMSE (minutes given a click) |",
        "|---|---|---|---|",
    ]
    for name, label in (("cold", "cold items (first seen on test days)"), ("warm", "warm items")):
        values = by_age.get(name, {})
        lines.append(
            f"| {label} | {int(values.get('targets', 0))} | "
            f"{_with_interval(values, 'click_auc')} | "
            f"{_format(values.get('watch_time_rmse_clicked_minutes', math.nan))} |"
        )
    return lines


def _ranking_lines(result: dict[str, Any]) -> list[str]:
    """The ranking table: every model under every protocol, each protocol in words."""
    about = result.get("ranking_protocols") or {}
    targets, repeats = about.get("targets", 0), about.get("repeat_targets", 0)
    negatives = about.get("sampled_negatives", SAMPLED_NEGATIVES)
    lines = [
        "",
        "## Ranking of the next clicked item",
        "",
        f"{targets} clicked test targets, NDCG@10 and HR@10 under three protocols:",
        "",
        "* *full catalog, all items*: the target among every catalog item. Items the user "
        "clicked before compete too: re-consumption is legitimate on some platforms "
        f"({repeats} of the targets were clicked by their user before).",
        "* *full catalog, seen items excluded*: the items the user clicked before the "
        "target are removed from the ranking (the literature's standard for next-item "
        "recommendation); the target itself is always ranked.",
        f"* *1 + {negatives} sampled negatives*: the target among {negatives} items drawn "
        "uniformly from those the user had not clicked (seeded; "
        f"{about.get('targets_with_fewer_negatives', 0)} targets had fewer to draw from). "
        "Sampled metrics are not estimates of the full ones and can reorder models "
        "(Krichene & Rendle, *On Sampled Metrics for Item Recommendation*, KDD 2020): "
        "compare them with papers that report them, not across protocols.",
        "",
        "| model | " + " | ".join(f"NDCG@10, {w} | HR@10, {w}" for w in PROTOCOLS.values()) + " |",
        "|---" * (1 + 2 * len(PROTOCOLS)) + "|",
    ]
    for name, values in result["ranking"].items():
        cells = [
            _format(values.get(f"{metric}_at_10{suffix}", math.nan))
            for suffix in PROTOCOLS
            for metric in ("ndcg", "hit_rate")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


_TEST_ROWS = (
    ("click AUC [95 % CI]", "click_auc", "bayes_click_auc"),
    ("click GAUC", "click_gauc", None),
    ("click ECE", "click_ece", "bayes_click_ece"),
    ("click log loss", "click_log_loss", "bayes_click_log_loss"),
    (
        "watch time RMSE (expected minutes, all rows)",
        "watch_time_rmse_expected_minutes",
        "bayes_watch_time_rmse_expected_minutes",
    ),
    ("watch time RMSE (minutes given a click)", "watch_time_rmse_clicked_minutes", None),
    ("continuation AUC [95 % CI]", "continuation_auc", None),
    ("next-day return AUC (session ends) [95 % CI]", "return_auc", "bayes_return_auc"),
    ("next-day return ECE", "return_ece", "bayes_return_ece"),
    ("ranking NDCG@10 (full catalog, all items)", "ranking_ndcg_at_10", None),
    ("ranking HR@10 (full catalog, all items)", "ranking_hit_rate_at_10", None),
)
"""The held-out table: label, key in ``test``, key of its Bayes reference."""


def render_report(result: dict[str, Any], watch_units: str = "minutes") -> str:
    """The markdown report of a `fit_predictor` run (``result``: its ``metrics.json``);
    ``watch_units``: what the log's watch time counts (`watch_time_units`)."""
    test = result["test"]
    lines = [
        f"# Predictor report — {result['log']}",
        "",
        f"Users: {result['users']}; {result['seconds']:.0f} s in all.",
        "",
        _censoring_line(result.get("load_report") or {}),
        "",
        *_split_lines(result.get("split") or {}),
        "",
        "| metric | predictor | Bayes (true probabilities) | perturbed (FGM) |",
        "|---|---|---|---|",
    ]
    perturbed = result.get("test_perturbed") or {}
    for label, key, bayes in _TEST_ROWS:
        label = label.replace("minutes", watch_units)
        lines.append(
            f"| {label} | {_with_interval(test, key)} | "
            f"{_format(test.get(bayes, math.nan)) if bayes else '—'} | "
            f"{_with_interval(perturbed, key)} |"
        )
    lines += _item_age_lines(result)
    lines += _ranking_lines(result)
    lines += [
        "",
        "## Training",
        "",
        "```json",
        json.dumps(result["stages"], indent=2, default=json_default),
        "```",
        "",
    ]
    return "\n".join(lines)


def watch_time_units(log_path: Any) -> str:
    """``"minutes"``, or ``"engagement units"`` for an imported log whose watch time is
    not minutes (ratings: completion, one unit per item; its ``_import_report.json``)."""
    from pathlib import Path

    report = Path(log_path) / "_import_report.json"
    if not report.is_file():
        return "minutes"
    watch = str((json.loads(report.read_text()).get("feedback") or {}).get("watch_time", ""))
    return "engagement units" if "engagement units" in watch else "minutes"
