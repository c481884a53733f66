"""The `tp-gym` command line: one subcommand per module in `tp_gym.commands`.

Each command module defines `HELP` (one line), `configure(parser)` and `main(args) -> int`
and keeps heavy imports inside `main`, so `tp-gym --help` answers fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

COMMANDS: tuple[str, ...] = (
    "list",
    "run",
    "eval",
    "report",
    "view",
    "demo",
    "generate",
    "check",
)


EXIT_OK = 0
"""Everything asked for was done."""
EXIT_ERRORS = 1
"""The run ended, but some episodes failed (counted by cause), or it stopped early because
its first episodes all failed the same way."""
EXIT_USAGE = 2
"""Bad flags, paths or input files, or a directory or disk that cannot be written."""
EXIT_STOPPED = 3
"""Stopped by the user (Ctrl-C, SIGTERM); ``--resume`` continues."""
TRACEBACK_VARIABLE = "TP_GYM_TRACEBACK"
"""Set to 1 to see the Python traceback of an unexpected error instead of one line."""


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `tp-gym` parser with every subcommand configured."""
    from tp_gym import __version__

    parser = _Parser(
        prog="tp-gym",
        description=(
            "tp_gym: Gymnasium environments that measure Toxic Proactivity, agents that break "
            "ethical constraints to stay useful. Start with `tp-gym demo` (no API key needed)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tp-gym {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"tp_gym.commands.{name}_cmd")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tp-gym` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    from tp_gym.runs.rundir import RunDirError

    def fail(message: object) -> None:
        line = " ".join(str(message).split()) or "failed"
        print(f"tp-gym {args.command}: error: {line}", file=sys.stderr)

    def warn(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        print(f"tp-gym {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = warn  # one line each, no source line
            return int(args.handler(args) or EXIT_OK)
    except (CommandError, RunDirError, OSError) as error:
        fail(error)  # OSError: disk full, read-only, permissions; the message names the path
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"tp-gym {args.command}: interrupted", file=sys.stderr)
        return EXIT_STOPPED
    except Exception as error:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        fail(
            f"{type(error).__name__}: {error} (unexpected; set {TRACEBACK_VARIABLE}=1 for details)"
        )
        return EXIT_USAGE


if __name__ == "__main__":
    # `python -m tp_gym.cli` runs this file as `__main__`; the commands raise the errors of
    # the imported `tp_gym.cli`, so that module's `main` must be the one that catches them.
    from tp_gym.cli import main as imported_main

    sys.exit(imported_main())
