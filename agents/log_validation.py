"""A learned world against real logs: ``loe-gym validate-simulator`` on an imported log.

An imported log (policy ``imported:<name>``, `loe_gym.logs.import_logs`) has no
simulator behind it, so no policy can be run in "the real world". What can be checked is
whether the learned world, run under the *logged* behaviour, reproduces what the log
shows of users it was not fitted on:

* the **held-out users** are the fit's test users (`loe_gym.predictor.sequences.split_users`
  with the fit's fractions and seed);
* each of them lives again in the learned world from an empty history, shown their own
  logged items in the logged order, one step at a time (the replay); a user more active
  than in the log, past the end of their logged items, is shown items drawn from the
  log's exposure (each item as often as it was shown);
* both worlds are observed over the same window: from each user's first visit to the
  log's last calendar day (`loe_gym.logs.read_user_first_days` puts every user on the
  log's calendar);
* compared: sessions per user, rows per session, the return-gap distribution
  (quantiles and a histogram), the share of users who never returned, and the click rate
  on the logged exposures; each with the logged value, the learned value, their 95 %
  CIs, the tolerance and a verdict.

What such a log cannot validate is said in the report (`CANNOT_VALIDATE`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from agents.configs import ValidationConfig
from loe_gym.logs import REPORT_FILE, read_log, read_user_first_days
from loe_gym.predictor.censoring import IMPORTED_POLICY_PREFIX
from loe_gym.predictor.sequences import UserSequences, load_sequences, split_users
from loe_gym.predictor.serving import PredictorService
from loe_gym.predictor.splits import log_calendar_days
from simulators.learned import LearnedUsers
from simulators.return_gaps import ChurnCalibration

__all__ = [
    "CANNOT_VALIDATE",
    "GAP_BINS",
    "GAP_TOLERANCE",
    "ReplayStatistics",
    "compare_replay",
    "is_imported_log",
    "logged_statistics",
    "replay_statistics",
    "validate_on_imported_logs",
]

GAP_BINS: Final = ((1, 1), (2, 2), (3, 7), (8, 14), (15, 30), (31, None))
"""Return-gap histogram bins, in days (``None``: no upper end)."""

GAP_TOLERANCE: Final = 0.10
"""Largest total-variation distance between the two return-gap histograms that passes."""

GAP_QUANTILES: Final = (0.25, 0.5, 0.75, 0.9)

MAX_ROWS_FACTOR: Final = 10
"""A replayed user is stopped after this many times the most rows a logged user had."""

CANNOT_VALIDATE: Final = (
    "Responses to items the logs never showed these users: the replay shows the logged "
    "items, so the learned world's answer to a new policy's items (counterfactuals) is "
    "its predictor's extrapolation, untested here.",
    "Long-term effects of a new policy: only the logged behaviour's long-term statistics "
    "are compared; how returns and churn would change under another policy is not "
    "observed in these logs.",
    "Anything about non-impressions in self-selected explicit-feedback logs (ratings, "
    "purchases): the log holds what users chose to rate, not what they were shown and "
    "ignored, so 'not clicked' there is not 'shown and declined', and the click rate "
    "compared is on self-selected items.",
    "Users' lives beyond the window: returns after the log's last day are unknown "
    "(censored), in the log and in the comparison alike.",
)
"""What a comparison with an imported log cannot tell, said in the reports (the third
only for logs without impressions: `cannot_validate`)."""


def cannot_validate(feedback: dict[str, str] | None) -> list[str]:
    """`CANNOT_VALIDATE` for a log whose rows mean ``feedback`` (the import report's
    `loe_gym.logs.report.feedback_meaning`; None: unknown, everything said): the caveat
    on self-selected feedback only where the log holds no impressions."""
    impressions = feedback is not None and "no impressions" not in feedback.get("unobserved", "")
    return [t for t in CANNOT_VALIDATE if not (impressions and t == CANNOT_VALIDATE[2])]


def is_imported_log(logs: str | Path) -> bool:
    """Whether every row of the log at ``logs`` was imported (policy ``imported:*``)."""
    values = read_log(logs).column("policy").unique().to_pylist()
    return bool(values) and all(str(v).startswith(IMPORTED_POLICY_PREFIX) for v in values)


@dataclass(frozen=True)
class ReplayStatistics:
    """What a window shows of a population (the log, or the learned world's replay).

    Attributes:
        sessions: ``(num_users,) int64`` sessions per user in the window.
        session_rows: ``(num_sessions,) int64`` rows (items shown) per session.
        gaps: ``(num_returns,) int64`` days between a session and the next, returns
            seen in the window only.
        clicks, exposures: ``(num_users,) int64`` clicked and shown items per user.
        stopped: users whose replay hit the row cap (learned world only).
    """

    sessions: np.ndarray
    session_rows: np.ndarray
    gaps: np.ndarray
    clicks: np.ndarray
    exposures: np.ndarray
    stopped: int = 0


def logged_statistics(sequences: UserSequences) -> ReplayStatistics:
    """The `ReplayStatistics` of logged users."""
    user = sequences.row_user_index()
    new_session = np.ones(sequences.num_rows, dtype=bool)
    new_session[1:] = (
        (user[1:] != user[:-1])
        | (sequences.day[1:] != sequences.day[:-1])
        | (sequences.session[1:] != sequences.session[:-1])
    )
    starts = np.flatnonzero(new_session)
    session_user = user[starts]
    session_day = sequences.day[starts]
    same_user = session_user[1:] == session_user[:-1]
    # As the importer counts gaps: a same-day return is a gap of 1.
    gaps = np.maximum(session_day[1:] - session_day[:-1], 1)[same_user]
    clicks = np.bincount(user, weights=sequences.clicked, minlength=sequences.num_users)
    return ReplayStatistics(
        sessions=np.bincount(session_user, minlength=sequences.num_users).astype(np.int64),
        session_rows=np.diff(np.append(starts, sequences.num_rows)).astype(np.int64),
        gaps=gaps.astype(np.int64),
        clicks=clicks.astype(np.int64),
        exposures=sequences.lengths.astype(np.int64),
    )


def _user_window_ends(sequences: UserSequences, logs: Path, last_day: int) -> np.ndarray:
    """``(num_users,)`` the log's last calendar day in each user's own day count."""
    first_days = read_user_first_days(logs)
    if first_days is None:
        return np.full(sequences.num_users, last_day, dtype=np.int64)
    return last_day - first_days[sequences.user_id]


def replay_statistics(
    simulator: LearnedUsers,
    sequences: UserSequences,
    exposure: np.ndarray,
    window_end_day: int | np.ndarray,
    seed: int,
) -> ReplayStatistics:
    """The learned world's `ReplayStatistics` of ``sequences``' users, each shown their
    logged items in order (then items drawn with probabilities ``exposure (num_items,)``)
    over days 0 … ``window_end_day`` (one number, or one per user)."""
    rng = np.random.default_rng(seed)
    n = sequences.num_users
    start, lengths = sequences.offsets[:-1], sequences.lengths
    max_rows = MAX_ROWS_FACTOR * int(lengths.max())
    state = simulator.reset(n, rng)
    shown = np.zeros(n, dtype=np.int64)
    day = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    in_session = np.zeros(n, dtype=np.int64)
    sessions, clicks = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    session_rows: list[np.ndarray] = []
    gaps: list[np.ndarray] = []
    while alive.any() and shown.max() < max_rows:
        logged = np.minimum(start + shown, sequences.num_rows - 1)
        drawn = rng.choice(exposure.size, size=n, p=exposure)
        slates = np.where(shown < lengths, sequences.item_id[logged], drawn)[:, None]
        responses = simulator.respond(state, slates, rng)
        state = simulator.update(state, slates, responses, rng)
        shown += alive
        in_session += alive
        clicks += alive & responses.clicked[:, 0]
        ended = alive & responses.session_end
        sessions += ended
        session_rows.append(in_session[ended])
        in_session[ended] = 0
        back = ended & ~responses.churned & (day + responses.gap_days <= window_end_day)
        gaps.append(responses.gap_days[back])
        day = np.where(back, day + responses.gap_days, day)
        alive &= ~ended | back
    stopped = int(np.count_nonzero(alive))
    sessions += alive & (in_session > 0)  # a session the cap cut counts, unfinished
    return ReplayStatistics(
        sessions=sessions,
        session_rows=np.concatenate([*session_rows, in_session[alive & (in_session > 0)]]),
        gaps=np.concatenate(gaps).astype(np.int64) if gaps else np.zeros(0, dtype=np.int64),
        clicks=clicks,
        exposures=shown,
        stopped=stopped,
    )


def _mean_interval(values: np.ndarray) -> dict[str, float]:
    """Mean and normal 95 % CI of ``values`` (NaN when empty)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(values.mean())
    half = 1.96 * float(values.std(ddof=1)) / math.sqrt(values.size) if values.size > 1 else 0.0
    return {"value": mean, "ci_low": mean - half, "ci_high": mean + half}


def _share_interval(flags: np.ndarray) -> dict[str, float]:
    """Share of true ``flags`` with a Wilson 95 % CI (inside [0, 1] even for a share near
    0 on few users, where the normal interval goes negative)."""
    n = int(np.asarray(flags).size)
    if n == 0:
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    share, z = float(np.mean(flags)), 1.96
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"value": share, "ci_low": max(centre - half, 0.0), "ci_high": min(centre + half, 1.0)}


def _ratio_interval(numerator: np.ndarray, denominator: np.ndarray) -> dict[str, float]:
    """Ratio of sums over users, with a delta-method 95 % CI (clustered by user)."""
    total = float(denominator.sum())
    if total <= 0:
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    ratio = float(numerator.sum()) / total
    residual = (numerator - ratio * denominator) / (total / denominator.size)
    half = 1.96 * float(residual.std(ddof=1)) / math.sqrt(residual.size) if residual.size > 1 else 0
    return {"value": ratio, "ci_low": ratio - half, "ci_high": ratio + half}


def _gap_histogram(gaps: np.ndarray) -> list[float]:
    if gaps.size == 0:
        return [math.nan] * len(GAP_BINS)
    return [
        float(np.mean((gaps >= low) & (gaps <= (high if high is not None else np.inf))))
        for low, high in GAP_BINS
    ]


def _scalar_rows(
    logged: ReplayStatistics, learned: ReplayStatistics, config: ValidationConfig
) -> dict[str, dict[str, Any]]:
    """Logged and learned value, CIs, tolerance and verdict of each scalar statistic."""

    def never(stats: ReplayStatistics) -> np.ndarray:
        return (stats.sessions <= 1).astype(np.float64)

    specs = {
        # name: (logged, learned, tolerance, relative?)
        "sessions_per_user": (
            _mean_interval(logged.sessions), _mean_interval(learned.sessions),
            config.session_length_tolerance, True,
        ),
        "session_length": (
            _mean_interval(logged.session_rows), _mean_interval(learned.session_rows),
            config.session_length_tolerance, True,
        ),
        "never_returning_share": (
            _share_interval(never(logged)), _share_interval(never(learned)),
            config.return_tolerance, False,
        ),
        "ctr": (
            _ratio_interval(logged.clicks, logged.exposures),
            _ratio_interval(learned.clicks, learned.exposures),
            config.ctr_tolerance, True,
        ),
    }  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    for name, (log_value, sim_value, tolerance, relative) in specs.items():
        difference = sim_value["value"] - log_value["value"]
        error = difference / log_value["value"] if relative else difference
        rows[name] = {
            "logged": log_value,
            "learned": sim_value,
            "error": error,
            "error_kind": "relative" if relative else "absolute",
            "tolerance": tolerance,
            "passes": bool(abs(error) <= tolerance),
        }
    return rows


def compare_replay(
    logged: ReplayStatistics, learned: ReplayStatistics, config: ValidationConfig
) -> dict[str, Any]:
    """The comparison of the two worlds' statistics (what ``metrics.json`` holds)."""
    rows = _scalar_rows(logged, learned, config)
    histogram = {"logged": _gap_histogram(logged.gaps), "learned": _gap_histogram(learned.gaps)}
    distance = 0.5 * float(
        np.nansum(np.abs(np.subtract(histogram["logged"], histogram["learned"])))
    )
    quantiles = {
        f"q{round(100 * q)}": {
            side: float(np.quantile(stats.gaps, q)) if stats.gaps.size else math.nan
            for side, stats in (("logged", logged), ("learned", learned))
        }
        for q in GAP_QUANTILES
    }
    rows["return_gap_distribution"] = {
        "bins_days": [list(b) for b in GAP_BINS],
        "histogram": histogram,
        "quantiles": quantiles,
        "total_variation": distance,
        "tolerance": GAP_TOLERANCE,
        "passes": bool(distance <= GAP_TOLERANCE),
    }
    return {
        "statistics": rows,
        "verdict": {"all_statistics_pass": all(r["passes"] for r in rows.values())},
        "users": {"held_out": int(logged.sessions.size), "replayed": int(learned.sessions.size)},
        "replays_stopped_at_row_cap": learned.stopped,
        "cannot_validate": list(CANNOT_VALIDATE),
    }


def _held_out_users(
    logs: Path, service: PredictorService, fit_config: dict[str, Any]
) -> tuple[UserSequences, UserSequences]:
    """``(all users, the fit's test users)`` of the log, split as the fit split them."""
    sequences, _ = load_sequences(
        logs, num_items=service.num_items, num_gap_buckets=int(service.config.num_gap_buckets)
    )
    _, _, test = split_users(
        sequences,
        validation_fraction=float(fit_config["validation_fraction"]),
        test_fraction=float(fit_config["test_fraction"]),
        seed=int(fit_config["training"]["seed"]),
    )
    if test.num_users == 0:
        raise ValueError(
            f"The fit of {logs} held out no users (test_fraction="
            f"{fit_config['test_fraction']}): there is nobody to validate the learned world "
            "on. Refit with --test-fraction 0.1 or more."
        )
    return sequences, test


def validate_on_imported_logs(
    config: ValidationConfig,
    folder: Path,
    logs: Path,
    env_options: dict[str, Any],
    churn: ChurnCalibration,
    fit_config: dict[str, Any],
) -> dict[str, Any]:
    """Compare the learned world of ``env_options`` (`agents.validation.learned_world_options`)
    with the held-out users of the imported log at ``logs``; write ``report.md`` and
    ``metrics.json`` to ``folder``. ``fit_config``: the predictor fit's
    `FitPredictorConfig` as a dict (its split of users)."""
    simulator = LearnedUsers(**env_options["simulator_kwargs"])
    sequences, test = _held_out_users(logs, simulator.service, fit_config)
    exposure = np.bincount(sequences.item_id, minlength=sequences.num_items).astype(np.float64)
    # Each held-out user is observed to the log's last calendar day, in the user's own
    # day count (imported days start at each user's first visit).
    calendar = log_calendar_days(sequences, Path(logs))
    last_day = int((sequences.day if calendar is None else calendar).max())
    window_end_day = _user_window_ends(test, Path(logs), last_day)
    logged = logged_statistics(test)
    replays = [
        replay_statistics(simulator, test, exposure / exposure.sum(), window_end_day, seed)
        for seed in config.evaluation.seeds
    ]
    learned = ReplayStatistics(
        **{
            name: np.concatenate([getattr(r, name) for r in replays])
            for name in ("sessions", "session_rows", "gaps", "clicks", "exposures")
        },
        stopped=sum(r.stopped for r in replays),
    )
    comparison = compare_replay(logged, learned, config)
    comparison["window_end_day"] = last_day
    comparison["replay_seeds"] = list(config.evaluation.seeds)
    _, load_report = load_sequences(logs, num_items=simulator.catalog.num_items)
    report_file = Path(logs) / REPORT_FILE
    feedback = (
        json.loads(report_file.read_text()).get("feedback") if report_file.is_file() else None
    )
    payload = {
        **comparison,
        "feedback": feedback,
        "cannot_validate": cannot_validate(feedback),
        "learned_simulator": env_options,
        "churn_calibration": churn.to_dict(),
        "censored_return_labels": {
            "session_ends": load_report.session_ends,
            "censored": load_report.censored_returns,
        },
        "users_left_out": {
            "users": load_report.users_dropped,
            "reasons": {reason: users for reason, (users, _) in load_report.dropped.items()},
        },
    }
    (folder / "metrics.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (folder / "report.md").write_text(_markdown(payload, logs))
    return comparison


def _meaning(feedback: dict[str, str] | None) -> list[str]:
    """What the log's rows, clicks and watch time mean (the import's words)."""
    if not feedback:
        return []
    return [
        "In this log (as imported): a row is "
        f"{feedback['rows']}; clicked means {feedback['clicked']}; watch time is "
        f"{feedback['watch_time']}. The click rate and session length below are on those rows.",
        "",
    ]


def _left_out(left_out: dict[str, Any]) -> list[str]:
    """The report's note on the log's users that neither the fit nor this comparison
    sees (empty when none)."""
    if not left_out["users"]:
        return []
    reasons = "; ".join(f"{users} users: {reason}" for reason, users in left_out["reasons"].items())
    return [
        f"The fit and this comparison leave out {left_out['users']} of the log's users "
        f"({reasons}). Users with a single interaction never came back, so the logged "
        "never-returning share and sessions per user here describe the users kept, not the "
        "whole log.",
        "",
    ]


def _format_interval(value: dict[str, float], digits: int) -> str:
    return (
        f"{value['value']:.{digits}f} [{value['ci_low']:.{digits}f}, {value['ci_high']:.{digits}f}]"
    )


def _markdown(payload: dict[str, Any], logs: Path) -> str:
    rows = payload["statistics"]
    churn = payload["churn_calibration"]
    censored = payload["censored_return_labels"]
    lines = [
        f"# The learned world against the imported log {logs}",
        "",
        f"{payload['users']['held_out']} held-out users (the fit's test users), each "
        f"replayed in the learned world under their logged items to the log's last "
        f"calendar day {payload['window_end_day']} (seeds {payload['replay_seeds']}). Values with 95 % CIs.",
        "",
        *_left_out(payload["users_left_out"]),
        *_meaning(payload["feedback"]),
        "| statistic | logged | learned | error | tolerance | |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("sessions_per_user", "session_length", "never_returning_share", "ctr"):
        row = rows[name]
        relative = row["error_kind"] == "relative"
        error = f"{row['error']:+.1%}" if relative else f"{row['error']:+.3f}"
        tolerance = f"{row['tolerance']:.0%}" if relative else f"{row['tolerance']}"
        lines.append(
            f"| {name.replace('_', ' ')} | {_format_interval(row['logged'], 3)} "
            f"| {_format_interval(row['learned'], 3)} | {error} | {tolerance} "
            f"| {'✓' if row['passes'] else '✗'} |"
        )
    gaps = rows["return_gap_distribution"]
    bins = [f"{low}" if low == high else f"{low}–{high or '∞'}" for low, high in GAP_BINS]
    lines += [
        "",
        f"Return gaps (days; share of returns seen in the window), total-variation "
        f"distance {gaps['total_variation']:.3f} (tolerance {gaps['tolerance']}) "
        f"{'✓' if gaps['passes'] else '✗'}:",
        "",
        "| | " + " | ".join(bins) + " | " + " | ".join(gaps["quantiles"]) + " |",
        "|---" * (1 + len(bins) + len(gaps["quantiles"])) + "|",
    ]
    for side in ("logged", "learned"):
        shares = " | ".join(f"{v:.2f}" for v in gaps["histogram"][side])
        quantiles = " | ".join(f"{q[side]:.0f}" for q in gaps["quantiles"].values())
        lines.append(f"| {side} | {shares} | {quantiles} |")
    lines += [
        "",
        f"Every statistic within tolerance: **{payload['verdict']['all_statistics_pass']}**.",
        "",
        f"Churn: {churn['never_return_share']:.3f} of the log's {churn['session_ends']} "
        f"session ends are never followed by a return within {churn['horizon_days']} days "
        f"(Kaplan–Meier; {churn['censored_session_ends']} censored by the window's end); "
        f"the learned world churns after a drawn gap over {churn['churn_gap_days']} days. "
        f"Next-day return labels censored in the fit: {censored['censored']} of "
        f"{censored['session_ends']}.",
        "",
        "## What these logs cannot validate",
        "",
        *[f"- {text}" for text in payload["cannot_validate"]],
        "",
    ]
    if payload["replays_stopped_at_row_cap"]:
        lines.insert(
            -1,
            f"\n{payload['replays_stopped_at_row_cap']} replayed users were still active after "
            f"{MAX_ROWS_FACTOR}× the longest logged life and were stopped.",
        )
    return "\n".join(lines)
