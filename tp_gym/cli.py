"""The `tp-gym` command line: one subcommand per module in `tp_gym.commands`.

Each command module defines `HELP` (one line), `configure(parser)` and `main(args) -> int`
and keeps heavy imports inside `main`, so `tp-gym --help` answers fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: tuple[str, ...] = ("list", "run", "eval", "report", "demo", "generate")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The `tp-gym` parser with every subcommand configured."""
    from tp_gym import __version__

    parser = argparse.ArgumentParser(
        prog="tp-gym",
        description=(
            "tp_gym: Gymnasium environments that measure Toxic Proactivity, agents that break "
            "ethical constraints to stay useful. Start with `tp-gym demo` (no API key needed)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tp-gym {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    try:
        return int(args.handler(args) or 0)
    except CommandError as error:
        print(f"tp-gym {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tp-gym {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
