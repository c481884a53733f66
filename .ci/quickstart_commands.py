#!/usr/bin/env python3
"""Print the README's Quick start commands, one per line, exactly as written.

Run: python3 .ci/quickstart_commands.py [--readme PATH]

The "## Quick start" section of README.md must hold one ```bash fenced block with exactly
two commands, one line each: the first installs the package and runs `tp-gym demo`, the
second installs the dev extra and runs the tests. `.ci/run` runs what this prints, so CI
runs the README itself, not a copy of it. Anything else (no section, no block, more than
one block, a different number of commands, a continued line) ends with one line on stderr
and exit status 1. Standard library only: it runs with the system python3, before any venv.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SECTION = "## Quick start"
EXPECTED = 2
DEFAULT_README = Path(__file__).resolve().parent.parent / "README.md"


class QuickstartError(Exception):
    """The README's Quick start is not what CI can run."""


def section_lines(text: str, heading: str = SECTION) -> list[str]:
    """The lines under `heading` up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    if not starts:
        raise QuickstartError(f'no "{heading}" section')
    if len(starts) > 1:
        raise QuickstartError(f'{len(starts)} "{heading}" sections; expected one')
    body: list[str] = []
    fenced = False
    for line in lines[starts[0] + 1 :]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,2} ", line):
            break
        body.append(line)
    return body


def bash_blocks(lines: list[str]) -> list[list[str]]:
    """The contents of the ```bash fenced blocks in `lines` (other fences are skipped)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    other_fence = False
    for line in lines:
        stripped = line.strip()
        if current is None and not other_fence:
            if stripped == "```bash":
                current = []
            elif stripped.startswith("```"):
                other_fence = True
        elif current is not None:
            if stripped == "```":
                blocks.append(current)
                current = None
            else:
                current.append(line)
        elif stripped == "```":
            other_fence = False
    if current is not None:
        raise QuickstartError("the ```bash block is never closed")
    return blocks


def quickstart_commands(text: str) -> list[str]:
    """The commands of the Quick start block of README text `text`."""
    blocks = bash_blocks(section_lines(text))
    if not blocks:
        raise QuickstartError(f'no ```bash fenced block in the "{SECTION}" section')
    if len(blocks) > 1:
        raise QuickstartError(
            f'{len(blocks)} ```bash blocks in the "{SECTION}" section; expected one'
        )
    commands = [
        line.strip() for line in blocks[0] if line.strip() and not line.lstrip().startswith("#")
    ]
    for command in commands:
        if command.endswith("\\"):
            raise QuickstartError(f"a command continues on the next line: {command!r}")
    if len(commands) != EXPECTED:
        raise QuickstartError(
            f'the "{SECTION}" ```bash block has {len(commands)} command(s); expected '
            f"exactly {EXPECTED} (install and `tp-gym demo`, then install dev and pytest)"
        )
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=DEFAULT_README, help="default: README.md")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text(encoding="utf-8")
        commands = quickstart_commands(text)
    except (OSError, UnicodeDecodeError, QuickstartError) as error:
        message = error.strerror if isinstance(error, OSError) and error.strerror else error
        print(f"quickstart_commands: {args.readme}: {message}", file=sys.stderr)
        return 1
    for command in commands:
        print(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
