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


def test_the_readme_sb3_snippet_runs_at_tiny_size() -> None:
    """The README's training snippet, with 8 users and a 1 024-step budget, runs as written."""
    readme = (DOCS.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    (snippet,) = [b for b in blocks if "ClockPPO(" in b]
    tiny = snippet.replace("num_users=256", "num_users=8").replace("1_000_000", "1_024")
    tiny = tiny.replace("batch_size=2048", "batch_size=256")
    assert tiny.count("num_users=8") == 1 and "learn(1_024)" in tiny
    namespace: dict = {}
    exec(compile(tiny, "README.md", "exec"), namespace)
    assert namespace["model"].num_timesteps >= 1024
