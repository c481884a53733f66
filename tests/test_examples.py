"""The examples run as a user would run them, and `import tp_gym` stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def required_modules(script: Path) -> list[str]:
    """The modules an example names on its ``# requires: a, b`` line (an optional extra)."""
    for line in script.read_text().splitlines():
        if line.startswith("# requires:"):
            return [name.strip() for name in line.split(":", 1)[1].split(",")]
    return []


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    for module in required_modules(script):
        pytest.importorskip(module, reason=f"{script.name} needs an optional extra")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # examples' temp run dirs go away with it
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()


def test_import_does_not_pull_heavy_modules():
    code = "import sys, tp_gym; print(','.join(m for m in ('litellm', 'pandas', 'matplotlib', 'rich') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_readme_example_is_the_example_file():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = (Path(__file__).parent.parent / "examples" / "step_by_hand.py").read_text()
    body = example.split('"""', 2)[2].strip()
    assert body in readme
