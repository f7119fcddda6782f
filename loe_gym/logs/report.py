"""`ImportReport`: what `loe_gym.logs.import_logs` read, wrote and dropped, and the
reasons a row is dropped."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["DUPLICATE_CONFLICT", "DUPLICATE_EXACT", "INCOMPLETE", "ImportReport"]

DUPLICATE_EXACT: Final = "exact duplicate (same user, item, timestamp and values)"
"""Drop reason: a row equal to an earlier one."""
DUPLICATE_CONFLICT: Final = (
    "duplicate user, item and timestamp with other values (the first in file order is kept)"
)
"""Drop reason: same user, item and timestamp as an earlier row, other feedback."""
INCOMPLETE: Final = "missing value in a mapped column (drop_incomplete_rows)"
"""Drop reason: a row with a missing value, dropped because of ``drop_incomplete_rows``."""


@dataclass(frozen=True)
class ImportReport:
    """What `import_logs` read, wrote and dropped.

    ``rows_read = rows_written + sum(dropped.values())``: every row read is either in the
    log or counted under a reason.

    Attributes:
        output: the log directory written.
        mapping: the mapping used (`ColumnMapping.to_dict`).
        policy: the log's ``policy`` value.
        files: the source files, in reading order.
        rows_per_file: data rows read from each file.
        rows_read: data rows read in all.
        rows_written: rows in the log.
        users, items: distinct users and items in the log.
        sessions: sessions in the log.
        clicks: rows with ``clicked``.
        next_day_returns: sessions followed by a session the next calendar day (or the
            same day, counted as the next: see `loe_gym.logs.sessions`).
        censored_last_sessions: users' last sessions, whose ``gap_days`` is 0 because the
            log ends there (right-censored).
        max_gap_days: the longest return gap in the log, in days (0 if nobody returned);
            a natural ``churn_gap_days`` for a simulator learned from the log.
        dropped: rows dropped, by reason.
        unclicked_feedback_zeroed: rows not clicked whose derived watch time or
            completion was above 0 and was set to 0 (``zero_unclicked``).
        item_features: the catalog's public features, in order.
        first_timestamp, last_timestamp: the earliest and latest time in the log, ISO 8601
            in UTC ("" for an empty log).
        seconds: wall time of the import.
    """

    output: str
    mapping: dict[str, Any]
    policy: str
    files: tuple[str, ...]
    rows_per_file: tuple[int, ...]
    rows_read: int
    rows_written: int
    users: int
    items: int
    sessions: int
    clicks: int
    next_day_returns: int
    censored_last_sessions: int
    max_gap_days: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    unclicked_feedback_zeroed: int = 0
    item_features: tuple[str, ...] = ()
    first_timestamp: str = ""
    last_timestamp: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["files"] = list(self.files)
        data["rows_per_file"] = list(self.rows_per_file)
        data["item_features"] = list(self.item_features)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportReport:
        """Read back `to_dict` (e.g. the log directory's ``_import_report.json``)."""
        values = dict(data)
        for key in ("files", "rows_per_file", "item_features"):
            values[key] = tuple(values[key])
        return cls(**values)

    def summary(self) -> str:
        """A few lines of plain text."""
        dropped = sum(self.dropped.values())
        lines = [
            f"Imported {self.rows_written} of {self.rows_read} rows from "
            f"{len(self.files)} file(s) into {self.output} (policy {self.policy}).",
            f"{self.users} users, {self.items} items, {self.sessions} sessions, "
            f"{self.clicks} clicks, {self.next_day_returns} next-day returns; "
            f"{self.censored_last_sessions} last sessions right-censored (gap_days 0); "
            f"longest return gap {self.max_gap_days} days.",
            f"Time span: {self.first_timestamp} to {self.last_timestamp} (UTC).",
            f"Catalog features: {', '.join(self.item_features)}.",
        ]
        if dropped:
            reasons = "; ".join(f"{count} {reason}" for reason, count in self.dropped.items())
            lines.append(f"Dropped {dropped} rows: {reasons}.")
        else:
            lines.append("Dropped no rows.")
        if self.unclicked_feedback_zeroed:
            lines.append(
                f"Watch time and completion set to 0 on {self.unclicked_feedback_zeroed} "
                "rows that are not clicks."
            )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The report as a Markdown section with tables."""
        lines = [
            f"## Log import: {self.output}",
            "",
            "| | |",
            "|---|---|",
            f"| mapping | `{self.mapping.get('name', '')}` (policy `{self.policy}`) |",
            f"| rows read | {self.rows_read} |",
            f"| rows written | {self.rows_written} |",
            f"| users | {self.users} |",
            f"| items | {self.items} |",
            f"| sessions | {self.sessions} |",
            f"| clicks | {self.clicks} |",
            f"| next-day returns | {self.next_day_returns} |",
            f"| censored last sessions | {self.censored_last_sessions} |",
            f"| longest return gap (days) | {self.max_gap_days} |",
            f"| watch time / completion zeroed (not clicked) | {self.unclicked_feedback_zeroed} |",
            f"| time span (UTC) | {self.first_timestamp} – {self.last_timestamp} |",
            f"| catalog features | {', '.join(self.item_features)} |",
            "",
            "| file | rows |",
            "|---|---|",
            *(
                f"| `{file}` | {rows} |"
                for file, rows in zip(self.files, self.rows_per_file, strict=True)
            ),
            "",
        ]
        if self.dropped:
            lines += ["| dropped because | rows |", "|---|---|"]
            lines += [f"| {reason} | {count} |" for reason, count in self.dropped.items()]
        else:
            lines.append("No rows dropped.")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.summary()
