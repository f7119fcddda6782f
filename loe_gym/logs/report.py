"""`ImportReport`: what `loe_gym.logs.import_logs` read, wrote and dropped, the reasons a
row is dropped, and what the log's feedback means (`feedback_meaning`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from loe_gym.logs.mapping import ColumnMapping

__all__ = [
    "DUPLICATE_CONFLICT",
    "DUPLICATE_EXACT",
    "INCOMPLETE",
    "ImportReport",
    "feedback_meaning",
]

DUPLICATE_EXACT: Final = "exact duplicate (same user, item, timestamp and values)"
"""Drop reason: a row equal to an earlier one."""
DUPLICATE_CONFLICT: Final = (
    "duplicate user, item and timestamp with other values (the first in file order is kept)"
)
"""Drop reason: same user, item and timestamp as an earlier row, other feedback."""
INCOMPLETE: Final = "missing value in a mapped column (drop_incomplete_rows)"
"""Drop reason: a row with a missing value, dropped because of ``drop_incomplete_rows``."""
_TUPLES: Final = ("files", "rows_per_file", "item_features", "item_files", "item_rows_per_file")


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
        feedback: what a row, ``clicked``, ``completion`` and ``watch_time`` mean in this
            log, and what the log cannot tell (`feedback_meaning`).
        item_files, item_rows_per_file: the item tables read, and their data rows.
        items_without_interactions: catalog items only the item tables list (kept for
            cold start: no row of the log shows them).
        items_missing_from_item_table: items of the interactions the item tables do not
            list (their item-table features are 0, their text empty).
        item_table_duplicates: item-table rows repeating an item id of an earlier row of
            the same file (ignored: the first row counts).
        item_values_missing: feature → items of the tables without a value (set to 0,
            the mean of a standardised feature).
        item_feature_notes: feature → why it is 0 for every item (a constant column).
        items_with_text: catalog items with a non-empty text.
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
    feedback: dict[str, str] = field(default_factory=dict)
    item_files: tuple[str, ...] = ()
    item_rows_per_file: tuple[int, ...] = ()
    items_without_interactions: int = 0
    items_missing_from_item_table: int = 0
    item_table_duplicates: int = 0
    item_values_missing: dict[str, int] = field(default_factory=dict)
    item_feature_notes: dict[str, str] = field(default_factory=dict)
    items_with_text: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        data = dataclasses.asdict(self)
        for name in _TUPLES:
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportReport:
        """Read back `to_dict` (e.g. the log directory's ``_import_report.json``)."""
        values = dict(data)
        for key in _TUPLES:
            if key in values:
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
            kept = self.mapping.get("keep_unclicked_completion", False)
            what = "Watch time" if kept else "Watch time and completion"
            lines.append(
                f"{what} set to 0 on {self.unclicked_feedback_zeroed} rows that are not clicks."
            )
        lines += self._item_lines()
        if self.feedback:
            lines.append("What the feedback means:")
            lines += [f"  {key}: {meaning}." for key, meaning in self.feedback.items()]
        return "\n".join(lines)

    def _item_lines(self) -> list[str]:
        if not self.item_files:
            return []
        lines = [
            f"Item tables: {', '.join(self.item_files)} ({sum(self.item_rows_per_file)} rows); "
            f"{self.items_without_interactions} items without interactions kept (cold "
            f"start); {self.items_missing_from_item_table} items of the interactions missing "
            f"from the tables (features 0, no text); {self.items_with_text} items with text."
        ]
        if self.item_table_duplicates:
            lines.append(f"{self.item_table_duplicates} repeated item-table rows ignored.")
        if self.item_values_missing:
            counts = ", ".join(f"{n} {name}" for name, n in self.item_values_missing.items())
            lines.append(f"Missing item values set to 0 (the mean when standardised): {counts}.")
        lines += [f"Feature {name}: {note}." for name, note in self.item_feature_notes.items()]
        return lines

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
            *(f"| {key} | {meaning} |" for key, meaning in self.feedback.items()),
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


def feedback_meaning(mapping: ColumnMapping) -> dict[str, str]:
    """What a row, ``clicked``, ``completion`` and ``watch_time`` mean in a log imported
    with ``mapping``, and what the log cannot tell (``unobserved``): the rules of
    `loe_gym.logs.mapping` in words, for the report."""
    low, high = mapping.rating_range
    explicit = mapping.rating is not None and mapping.clicked is None
    explicit = explicit and mapping.watch_ratio is None
    zeroed = ", 0 on rows that are not clicks" if mapping.zero_unclicked else ""
    if mapping.clicked is not None:
        rows, clicked = (
            "an item shown to the user (an impression)",
            f"the column {mapping.clicked!r}",
        )
    elif mapping.watch_ratio is not None:
        rows = "a play of an item the platform showed (an impression that was played)"
        clicked = f"watch ratio ≥ {mapping.click_watch_ratio_threshold:g}: an engaged play"
    elif explicit:
        rows = (
            "a rating the user chose to give (explicit, self-selected feedback), not an impression"
        )
        clicked = (
            f"rating ≥ {mapping.rating_click_threshold:g} (of {low:g}–{high:g} stars) of a "
            "rated, self-selected item"
        )
    elif mapping.watch_time is not None:
        rows, clicked = "an interaction with time watched", "watch time > 0"
    else:
        rows = "an interaction (implicit feedback: a view, a purchase)"
        clicked = "every row (implicit feedback has no negatives)"
    if mapping.watch_ratio is not None:
        completion = f"min(watch ratio, 1){zeroed}"
    elif mapping.watch_time is not None and mapping.duration is not None:
        completion = f"min(watch time / duration, 1){zeroed}"
    elif mapping.rating is not None:
        kept = mapping.keep_unclicked_completion or not mapping.zero_unclicked
        where = "on every row: the graded rating, kept" if kept else f"on clicks{zeroed}"
        completion = f"rating / {high:g} {where}"
    else:
        completion = f"1 on clicks{zeroed}"
    if mapping.watch_time is not None:
        watch_time = f"the column {mapping.watch_time!r}, in minutes{zeroed}"
    elif mapping.duration is not None:
        watch_time = f"completion × the item's duration, in minutes{zeroed}"
    else:
        watch_time = (
            f"completion in engagement units (an item is one unit long), not minutes{zeroed}"
        )
    if explicit:
        unobserved = (
            "no impressions: items a user did not rate are unknown, not negatives; rows not "
            "clicked are rated items with a low rating, and the ratings are self-selected "
            "(users rate what they chose to watch)"
        )
    elif mapping.clicked is None and mapping.watch_ratio is None and mapping.watch_time is None:
        unobserved = "no impressions and no negatives: items without a row are unknown"
    else:
        unobserved = "items never shown are unknown; rows not clicked are shown, not engaged"
    return {
        "rows": rows,
        "clicked": clicked,
        "completion": completion,
        "watch_time": watch_time,
        "unobserved": unobserved,
    }
