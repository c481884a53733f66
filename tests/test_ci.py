"""CI and packaging: the README's Quick start is what CI runs, and `import tp_gym` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTRACTOR = ROOT / ".ci" / "quickstart_commands.py"
CI_RUN = ROOT / ".ci" / "run"
HEAVY = ("litellm", "matplotlib", "pandas", "scipy")


def extract(readme: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXTRACTOR), "--readme", str(readme)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("module", ["tp_gym", "tp_gym.metrics"])
def test_import_loads_no_heavy_dependency(module):
    code = f"import {module}, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_real_readme_gives_the_two_quickstart_commands():
    result = extract(ROOT / "README.md")
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()
    assert len(commands) == 2
    first, second = commands
    assert "tp-gym demo" in first
    assert re.search(r"pip install -e \.(\s|$)", first), "the demo installs with no extras"
    assert "[" not in first
    assert "pip install" in second and "[dev]" in second
    assert "pytest" in second
    # verbatim: each command is a line of the README as written
    readme_lines = {line.strip() for line in (ROOT / "README.md").read_text().splitlines()}
    assert set(commands) <= readme_lines


def test_ci_runs_the_readme_and_installs_nothing_itself():
    script = CI_RUN.read_text()
    assert "pip install" not in script
    assert "quickstart_commands.py" in script
    assert "README.md" in script
    assert "set -euo pipefail" in script
    assert "ruff check" in script
    for expected in ("tp-gym-demo/report.md", "tp-gym-demo/summary.csv", "*.png"):
        assert expected in script


def test_gitignore_covers_the_venv_and_the_demo():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {".venv/", "/tp-gym-demo/"} <= set(ignored)


QUICKSTART_ONE = """# x

## Quick start

```bash
python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/tp-gym demo
```

## Next
"""

GOOD = QUICKSTART_ONE.replace(
    "demo\n```", 'demo\npython3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && pytest\n```'
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (QUICKSTART_ONE, "has 1 command(s); expected exactly 2"),
        ("# x\n\nNo quick start here.\n", 'no "## Quick start" section'),
        ("## Quick start\n\nJust prose.\n\n## Next\n\n```bash\na\nb\n```\n", "no ```bash"),
        (GOOD.replace("pytest\n", "pytest\nruff check .\n"), "has 3 command(s)"),
        (GOOD + "\n## Quick start\n", '2 "## Quick start" sections'),
        ("## Quick start\n\n```bash\na\nb\n", "never closed"),
    ],
    ids=["one-command", "no-section", "no-block", "three-commands", "two-sections", "unclosed"],
)
def test_the_extractor_fails_with_one_clear_line(tmp_path, text, message):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    result = extract(readme)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert str(readme) in lines[0]


def test_the_extractor_reports_a_missing_file(tmp_path):
    result = extract(tmp_path / "nope.md")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"quickstart_commands: {tmp_path / 'nope.md'}: No such file or directory"
    ]


def test_the_extractor_reads_the_given_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(GOOD)
    result = extract(readme)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/tp-gym demo",
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && pytest',
    ]


def test_every_subpackage_is_installed():
    """A subpackage missing from pyproject's list works in an editable install and breaks
    `pip install .`; every package directory must be listed."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    listed = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        "tp_gym." + init.parent.relative_to(root / "tp_gym").as_posix().replace("/", ".")
        for init in (root / "tp_gym").glob("*/__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
