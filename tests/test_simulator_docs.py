"""The simulator pages of docs/ stay true to the code: their examples run and their
parameter tables match the config dataclasses."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loe_gym.config import FrozenConfig
from simulators.interest_evolution import InterestEvolutionConfig
from simulators.long_term_satisfaction import LongTermSatisfactionConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "simulators"

RUNNABLE_PAGES = (
    "writing_your_own.md",
    "interest_evolution.md",
    "long_term_satisfaction.md",
    "recsim_ports.md",
)
"""Pages whose ``python`` code blocks, run in order as one script, must succeed (other
fences, e.g. ``bash`` or ``text``, are not run)."""

PARAMETER_TABLES: dict[str, type[FrozenConfig]] = {
    "interest_evolution.md": InterestEvolutionConfig,
    "long_term_satisfaction.md": LongTermSatisfactionConfig,
}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def parameter_rows(text: str) -> dict[str, str]:
    """``| `option` | default | …`` rows of the page's "## Parameters" section."""
    section = text.split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.MULTILINE))


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_code_blocks_run(page: str, tmp_path: Path) -> None:
    blocks = python_blocks((PAGES / page).read_text())
    assert blocks, f"docs/simulators/{page} has no python code block"
    # As a script: a class defined in it lives in __main__, as in a notebook, so the
    # "__main__:Class" entry points of the examples resolve.
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(blocks))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"the python blocks of docs/simulators/{page} failed:\n{result.stderr[-4000:]}"
    )


@pytest.mark.parametrize("page", sorted(PARAMETER_TABLES))
def test_parameter_table_matches_config(page: str) -> None:
    rows = parameter_rows((PAGES / page).read_text())
    config = PARAMETER_TABLES[page]
    fields = {field.name: field.default for field in dataclasses.fields(config)}
    for name, default in fields.items():
        assert name in rows, f"docs/simulators/{page} misses option {name}"
        assert rows[name].strip() == str(default), (
            f"docs/simulators/{page} says {name} = {rows[name].strip()}, code says {default}"
        )
    unknown = sorted(set(rows) - set(fields))
    assert not unknown, f"docs/simulators/{page} lists options {config.__name__} lacks: {unknown}"
