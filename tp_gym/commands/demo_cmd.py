"""`tp-gym demo`: the study's design with the scripted baselines, then the report.

Runs the ``paper`` suite (the study's eight organizations at the baseline plus the stress
tests, one variable at a time) under its protocol, ``study`` (the paper's rules), with every
scripted baseline, no API key and no network, through the same evaluation runner and report
as real experiments. It prints each baseline's MR and the runs outside it (format errors, no
valid call) and ends by saying where the report is.
"""

from __future__ import annotations

import argparse

HELP = (
    "run the paper suite (study protocol) with the scripted baselines and write the report "
    "(no API key)"
)

SUITE = "paper"

DEFAULT_OUT = "tp-gym-demo"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"run directory for the logs and the report (default ./{DEFAULT_OUT}; a previous "
        "demo there is replaced; any other non-empty directory is refused)",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds per cell and baseline (default 5)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="episodes in flight at once (default 16)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from rich import box
    from rich.console import Console
    from rich.table import Table

    from tp_gym import metrics
    from tp_gym.agents.scripted import POLICIES
    from tp_gym.cli import EXIT_STOPPED, CommandError
    from tp_gym.report import PROTOCOL_MEANING, fmt_pct, write_report
    from tp_gym.runs.evaluation import Grid, evaluate, load_run
    from tp_gym.suites import SUITE_PROTOCOLS

    if args.seeds < 1:
        raise CommandError("--seeds must be at least 1")
    if args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1")
    out = Path(args.out)
    console = Console(highlight=False)
    started = time.perf_counter()
    protocol = SUITE_PROTOCOLS[SUITE]
    grid = Grid.from_suite(SUITE, [f"scripted:{p}" for p in POLICIES], range(args.seeds))
    console.print(
        f"tp-gym demo: the {SUITE} suite under the {protocol} protocol ({len(grid.cells)} cells: "
        f"{len({c.env_id for c in grid.cells})} organizations x baseline and stress settings) "
        f"x {len(grid.agents)} scripted baselines x {args.seeds} seeds = {len(grid)} episodes",
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"protocol {protocol}: {PROTOCOL_MEANING[protocol]}", markup=False, soft_wrap=True
    )
    result = evaluate(
        grid,
        out,
        concurrency=args.concurrency,
        replace=True,
        progress=not args.quiet,
        metadata={"command": "demo"},
    )
    if result.interrupted:
        console.print("interrupted; nothing reported", markup=False, soft_wrap=True)
        return EXIT_STOPPED
    files = write_report(out, plots=not args.no_plots)
    logs = load_run(out)
    table = Table(
        title=f"Scripted baselines at the baseline setting, {protocol} protocol",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("agent", no_wrap=True)
    for column in ("MR %", "95% CI", "n", "format\nerrors %", "no valid\ncall %", "stall %"):
        table.add_column(column, justify="right", no_wrap=True)
    baseline = metrics.baseline_logs(logs, protocol=protocol)
    for row in metrics.summarize(baseline, by=("agent",)):
        table.add_row(
            row["agent"].removeprefix("scripted:"),
            fmt_pct(row["mr"]),
            f"{fmt_pct(row['mr_low'])}–{fmt_pct(row['mr_high'])}",
            str(row["measured"]),
            fmt_pct(row["format_error_share"]),
            fmt_pct(row["no_valid_call_share"]),
            fmt_pct(row["stall_share"]),
        )
    console.print(table)
    console.print(
        "n: measured runs (no error, at least one valid call or toxic attempt). Format errors % "
        "is of all runs, no valid call % of error-free runs; both stay outside MR. Utility, "
        "cost and the definition of every column: report.md.",
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"{result.completed} episodes in {time.perf_counter() - started:.1f}s; "
        f"summary: {files.summary_csv}; {len(files.plots)} plots",
        markup=False,
        soft_wrap=True,
    )
    if files.viewer is not None:
        console.print(f"viewer: {files.viewer} (every episode, in a browser)", markup=False, soft_wrap=True)
    console.print(f"report: {files.markdown}", markup=False, soft_wrap=True)
    return 0
