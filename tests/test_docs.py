"""Docs stay true to the code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from simulators.engagement import EngagementConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_engagement_parameter_table_matches_config() -> None:
    text = (DOCS / "simulators" / "engagement.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, flags=re.MULTILINE))
    for field in dataclasses.fields(EngagementConfig):
        assert field.name in rows, f"docs/simulators/engagement.md misses option {field.name}"
        assert rows[field.name].strip() == str(field.default), (
            f"docs say {field.name} = {rows[field.name].strip()}, code says {field.default}"
        )
