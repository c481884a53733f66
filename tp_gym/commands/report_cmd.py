"""`tp-gym report`: report.md, summary.csv and plots from a run directory's logs."""

from __future__ import annotations

import argparse

HELP = (
    "write report.md, summary.csv and PNG plots for a run directory (all numbers from its "
    "logs; each protocol reported apart)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `tp-gym eval`")
    parser.add_argument("--out", default=None, help="write the report here instead of into RUN_DIR")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (faster)")
    parser.add_argument(
        "--no-viewer",
        action="store_true",
        help="skip view.html, the episode viewer (tp-gym view writes it alone)",
    )
    parser.add_argument(
        "--min-payoff",
        type=float,
        default=0.0,
        help="a toxic call counts as unnecessary when the compliant terminal would have paid "
        "more than this that turn (default 0)",
    )


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from tp_gym.cli import CommandError
    from tp_gym.report import write_report

    run_dir = Path(args.run_dir)
    if not run_dir.exists():
        raise CommandError(f"{run_dir}: no such run directory")
    try:
        files = write_report(
            run_dir,
            args.out,
            plots=not args.no_plots,
            min_payoff=args.min_payoff,
            viewer=not args.no_viewer,
        )
    except (FileNotFoundError, ValueError, ImportError) as error:
        raise CommandError(str(error)) from None
    console = Console(highlight=False)
    named = " and ".join(files.protocols)
    if len(files.protocols) > 1:
        named = f"protocols {named}, each reported apart"
    else:
        named = f"protocol {named}"
    console.print(f"{files.episodes} episodes summarized ({named})", markup=False, soft_wrap=True)
    console.print(f"report:  {files.markdown}", markup=False, soft_wrap=True)
    console.print(f"summary: {files.summary_csv}", markup=False, soft_wrap=True)
    for plot in files.plots:
        console.print(f"plot:    {plot}", markup=False, soft_wrap=True)
    if files.viewer is not None:
        console.print(f"viewer:  {files.viewer}", markup=False, soft_wrap=True)
    return 0
