"""`tp-gym view`: a static HTML viewer of a run directory's episodes (view.html)."""

from __future__ import annotations

import argparse

HELP = (
    "write view.html for a run directory: one self-contained page (opens from disk, no "
    "server) with the run summary, filters and every episode's transcript"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `tp-gym eval`")
    parser.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write the page to this file instead of RUN_DIR/view.html",
    )


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from tp_gym.cli import CommandError
    from tp_gym.viewer import write_viewer

    run_dir = Path(args.run_dir)
    if not run_dir.exists():
        raise CommandError(f"{run_dir}: no such run directory")
    try:
        page = write_viewer(run_dir, args.out)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    Console(highlight=False).print(f"viewer: {page}", markup=False, soft_wrap=True)
    return 0
