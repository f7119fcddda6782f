"""``validate-simulator`` on an imported log (`agents.log_validation`): a synthetic CSV is
imported, a tiny predictor fitted, and the learned world compared with the held-out
users' logged statistics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from agents.configs import EvaluationConfig
from agents.log_validation import (
    CANNOT_VALIDATE,
    cannot_validate,
    is_imported_log,
    logged_statistics,
)
from agents.presets import QUICK_VALIDATION
from agents.validation import validate_simulator
from loe_gym.logs import ColumnMapping, import_logs
from loe_gym.predictor.sequences import load_sequences

NUM_ITEMS = 30


def _write_events(path: Path, num_users: int, seed: int) -> None:
    """Users arrive on days 0–20 of a 40-day window. A session shows 2–6 items, each
    clicked with its ``quality``; after it a user leaves for good with probability 0.3,
    else returns after a Geometric(0.35) gap."""
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0.1, 0.9, NUM_ITEMS)
    lines = ["user,item,time,clicked,quality"]
    for user in range(num_users):
        day = int(rng.integers(0, 21))
        while day <= 40:
            for step in range(int(rng.integers(2, 7))):
                item = int(rng.integers(NUM_ITEMS))
                time = day * 86_400 + 36_000 + 60 * step
                clicked = int(rng.random() < quality[item])
                lines.append(f"{user},{item},{time},{clicked},{quality[item]:.3f}")
            if rng.random() < 0.3:
                break
            day += int(rng.geometric(0.35))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("imported")
    _write_events(folder / "events.csv", num_users=200, seed=0)
    mapping = ColumnMapping(
        user="user",
        item="item",
        timestamp="time",
        clicked="clicked",
        item_features=("quality",),
        name="synthetic",
    )
    import_logs(folder / "events.csv", folder / "log", mapping)
    return folder / "log"


def test_logged_statistics_by_hand(imported: Path) -> None:
    sequences, report = load_sequences(imported, num_items=NUM_ITEMS)
    assert is_imported_log(imported)
    # A last session's next-day return is unknown only when its next day lies past the
    # log's last calendar day (first_day places each user on the log's calendar).
    last = sequences.offsets[1:] - 1
    first_day = pq.read_table(imported / "_user_ids.parquet").column("first_day").to_numpy()
    calendar = sequences.day[last] + first_day[sequences.user_id]
    assert report.censored_returns == np.count_nonzero(calendar == calendar.max()) >= 1
    stats = logged_statistics(sequences.select([0]))
    first = sequences.select([0])
    assert stats.sessions[0] == np.count_nonzero(first.session_end)
    assert stats.session_rows.sum() == first.num_rows == stats.exposures[0]
    assert stats.gaps.size == stats.sessions[0] - 1 and np.all(stats.gaps >= 1)


def test_validate_simulator_on_an_imported_log(imported: Path, tmp_path: Path) -> None:
    predictor = dataclasses.replace(
        QUICK_VALIDATION.predictor,
        training=dataclasses.replace(QUICK_VALIDATION.predictor.training, steps_per_epoch=40),
    )
    config = dataclasses.replace(
        QUICK_VALIDATION,
        logs=str(imported),
        predictor=predictor,
        evaluation=EvaluationConfig(num_users=8, seeds=(0, 1)),
    )
    result = validate_simulator(config, tmp_path / "validation", progress=False)
    metrics = json.loads((tmp_path / "validation" / "metrics.json").read_text())
    statistics = metrics["statistics"]
    assert set(statistics) == {
        "sessions_per_user",
        "session_length",
        "never_returning_share",
        "ctr",
        "return_gap_distribution",
    }
    for name in ("sessions_per_user", "session_length", "never_returning_share", "ctr"):
        row = statistics[name]
        for side in ("logged", "learned"):
            assert row[side]["ci_low"] <= row[side]["value"] <= row[side]["ci_high"]
            if name == "never_returning_share":  # a share's interval stays in [0, 1]
                assert row[side]["ci_low"] >= 0 and row[side]["ci_high"] <= 1
        assert isinstance(row["passes"], bool) and row["tolerance"] > 0
    # 200 users, the fit's 10 % test split: 20 held out, replayed once per seed.
    assert metrics["users"] == {"held_out": 20, "replayed": 40}
    assert 1 <= metrics["censored_return_labels"]["censored"] < 200
    assert 0 < metrics["churn_calibration"]["never_return_share"] < 1
    gaps = statistics["return_gap_distribution"]
    assert sum(gaps["histogram"]["logged"]) == pytest.approx(1.0)
    assert result["verdict"]["all_statistics_pass"] == metrics["verdict"]["all_statistics_pass"]
    report = (tmp_path / "validation" / "report.md").read_text()
    assert "## What these logs cannot validate" in report
    # This log holds impressions (a clicked column): no caveat on self-selected ratings.
    assert metrics["cannot_validate"] == [t for i, t in enumerate(CANNOT_VALIDATE) if i != 2]
    assert all(text in report for text in metrics["cannot_validate"])
    assert CANNOT_VALIDATE[2] not in report
    assert "clicked means the column 'clicked'" in report
    assert "held-out users" in report and "Kaplan–Meier" in report


def test_the_self_selection_caveat_follows_what_the_rows_are() -> None:
    from loe_gym.logs import resolve_mapping
    from loe_gym.logs.report import feedback_meaning

    ratings = feedback_meaning(resolve_mapping("movielens-100k"))
    plays = feedback_meaning(resolve_mapping("kuairec"))
    assert CANNOT_VALIDATE[2] in cannot_validate(ratings)
    assert CANNOT_VALIDATE[2] not in cannot_validate(plays)
    assert cannot_validate(None) == list(CANNOT_VALIDATE)


def test_agents_are_refused_on_an_imported_log(imported: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(QUICK_VALIDATION, logs=str(imported), agents=("some/agent",))
    with pytest.raises(ValueError, match="no simulator stands behind it"):
        validate_simulator(config, tmp_path / "refused", progress=False)
