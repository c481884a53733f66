"""`tp-gym eval`: run a grid of episodes concurrently into a resumable run directory."""

from __future__ import annotations

import argparse
import functools
import itertools
import os
from typing import Any

from tp_gym.commands.common import (
    AGENT_SPEC_HELP,
    PROTOCOL_HELP,
    add_llm_flags,
    add_protocol_flag,
    llm_options,
)

HELP = "run agents x environments x variable settings x seeds concurrently (resumable)"

EPILOG = """\
examples:
  tp-gym eval --agents scripted:compliant,scripted:random --seeds 0-24 --out runs/baselines
  tp-gym eval --agents llm:openai/gpt-4o-mini --envs 'tp_gym/Healthcare-*' --seeds 0-9 \\
      --set stakes=high,low --out runs/gpt4o-mini --concurrency 32
  tp-gym eval --suite paper --agents scripted:rational --seeds 0-4 --out runs/paper
  tp-gym eval --agents llm:openai/gpt-4o-mini --protocol extended --reply-format json \\
      --seeds 0-9 --out runs/extended-json
  tp-gym eval --agents llm:openai/gpt-4o-mini,shield=rule+llm:openai/gpt-4o-mini \\
      --seeds 0-9 --out runs/mitigations      # an agent beside its mitigated self
  tp-gym eval ... --out runs/gpt4o-mini --resume      # after Ctrl-C or a crash
  tp-gym eval ... --backend ray --address 10.0.0.5:6379   # on a Ray cluster

exit codes: 0 all done; 1 some episodes failed (counted by cause) or the run stopped early
because its first episodes all failed the same way; 2 bad input, or a directory or disk that
cannot be written; 3 stopped by the user (continue with --resume).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--agents",
        required=True,
        help="comma-separated agent specs, each " + AGENT_SPEC_HELP,
    )
    parser.add_argument(
        "--envs",
        default=None,
        help="comma-separated environment ids or glob patterns, and spec files: paths ending "
        "in .toml/.json, globs of them ('specs/*.toml') or directories (every *.toml/*.json in "
        "them), logged as tp_gym/<spec id>-v0 (default: 'tp_gym/*', or all of the suite's "
        "environments with --suite)",
    )
    parser.add_argument(
        "--suite",
        default=None,
        help="run a named suite's cells instead of --set: 'paper' (the study's eight "
        "organizations: baseline plus one-variable-at-a-time stress tests, study protocol), "
        "'all' (every organization at every feedback level, extended), 'train' and 'heldout' "
        "(all, split by whole organizations) or 'observed'",
    )
    add_protocol_flag(
        parser,
        PROTOCOL_HELP.replace(" (default)", "")
        + " (default: study, or with --suite each suite's own: paper is study, the others "
        "extended)",
    )
    parser.add_argument(
        "--seeds",
        default="0-24",
        help="seeds, e.g. 0-24 (the study's 25 runs, the default), 7, or 0,5,9-11",
    )
    parser.add_argument("--out", required=True, help="run directory (episodes.jsonl goes here)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="episodes in flight at once, over all workers (default 16)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes playing the run, this one included, each with its own event loop "
        "(default 1; more lift the ceiling of litellm's per-call CPU cost with many concurrent "
        "LLM episodes; a helper takes as long as importing litellm to join)",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where episodes play: local (this machine: --workers processes) or ray (Ray "
        "tasks on a cluster; pip install 'tp_gym[ray]'). Only this process writes the log "
        "either way, so --resume works the same",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --backend ray: the cluster to join, e.g. 10.0.0.5:6379 or auto (default: "
        "start a Ray instance on this machine for the run)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a run in --out: episodes already logged are skipped, never repeated",
    )
    parser.add_argument(
        "--retry-errors",
        action="store_true",
        help="with --resume: drop episodes that ended in an error from the log and play them again",
    )
    parser.add_argument(
        "--set",
        dest="variables",
        action="append",
        default=[],
        metavar="NAME=VALUE[,VALUE...]",
        help="set an experimental variable (repeatable); several comma-separated values sweep "
        "it, and several swept variables give every combination: --set stakes=high,low "
        "--set feedback=high (stakes, feedback, goal_clarity, ethical_framework, liability; "
        "under --protocol extended also observed, principal_orders)",
    )
    parser.add_argument(
        "--report", action="store_true", help="write the report into --out when the run ends"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_llm_flags(parser)


def variable_settings(items: list[str]) -> list[dict[str, Any]]:
    """``["stakes=high,low", "feedback=high"]`` -> every combination, validated.

    Raises `CommandError` for a malformed item, an unknown variable or a bad value.
    """
    from tp_gym.cli import CommandError
    from tp_gym.variables import BOOLEAN_VARIABLES, parse_variables

    axes: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise CommandError(f"--set expects NAME=VALUE[,VALUE...], got {item!r}")
        if name in axes:
            raise CommandError(f"--set {name} given twice; list several values as {name}=a,b")
        parsed = []
        for value in (v.strip() for v in values.split(",")):
            converted: Any = value
            if name in BOOLEAN_VARIABLES and value.lower() in ("true", "false"):
                converted = value.lower() == "true"
            try:
                parse_variables({name: converted})
            except ValueError as error:
                raise CommandError(str(error)) from None
            if converted not in parsed:
                parsed.append(converted)
        axes[name] = parsed
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*axes.values())] or [{}]


def build_grid(args: argparse.Namespace) -> Any:
    """The `Grid` the arguments describe; `CommandError` for any bad part."""
    from tp_gym.cli import CommandError
    from tp_gym.commands.common import parse_seeds
    from tp_gym.runs.evaluation import Grid

    seeds = parse_seeds(args.seeds)
    if not seeds:
        raise CommandError("--seeds selects no seed")
    # Passed only when given: None leaves each cell its own protocol (the suite's, or study).
    protocol = getattr(args, "protocol", None)
    chosen = {"protocol": protocol} if protocol is not None else {}
    try:
        if args.suite is not None:
            if args.variables:
                raise CommandError("--set cannot be combined with --suite (the suite sets them)")
            return Grid.from_suite(args.suite, args.agents, seeds, envs=args.envs, **chosen)
        return Grid.build(
            args.agents,
            envs=args.envs or "tp_gym/*",
            variables=variable_settings(args.variables),
            seeds=seeds,
            **chosen,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tp_gym.cli import EXIT_ERRORS, EXIT_OK, EXIT_STOPPED, TRACEBACK_VARIABLE, CommandError
    from tp_gym.runs.backends import BackendError
    from tp_gym.runs.evaluation import evaluate

    if args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1")
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    if args.retry_errors and not args.resume:
        raise CommandError("--retry-errors only makes sense with --resume")
    if args.address is not None and args.backend != "ray":
        raise CommandError("--address is for --backend ray")
    if args.backend == "ray" and args.workers > 1:
        raise CommandError("--workers is for the local backend; Ray places tasks on its nodes")
    grid = build_grid(args)
    options = llm_options(args)
    console = Console(stderr=True, highlight=False)
    try:
        result = evaluate(
            grid,
            args.out,
            concurrency=args.concurrency,
            workers=args.workers,
            backend=args.backend,
            address=args.address,
            resume=args.resume,
            retry_errors=args.retry_errors,
            llm_options=options,
            narrator=args.narrator,
            progress=not args.quiet,
            metadata={"command": "eval"},
        )
    except (ValueError, ImportError, FileExistsError, NotADirectoryError) as error:
        raise CommandError(
            str(error).splitlines()[0] if str(error) else type(error).__name__
        ) from None
    except BackendError as error:
        if os.environ.get(TRACEBACK_VARIABLE):
            console.print(str(error), markup=False, soft_wrap=True)  # the worker's traceback
        raise CommandError(
            f"{str(error).splitlines()[0]} (set {TRACEBACK_VARIABLE}=1 for the worker's traceback)"
        ) from None
    print_result(console, result)
    if result.interrupted:
        return EXIT_STOPPED
    if args.report and not result.stopped_early:
        from tp_gym.report import write_report

        written = write_report(args.out)
        console.print(f"report: {written.markdown}", markup=False, soft_wrap=True)
    return EXIT_ERRORS if result.errors or result.stopped_early else EXIT_OK


def print_result(console: Any, result: Any) -> None:
    """Say what a run did, what failed and why, and where its log is."""
    say = functools.partial(console.print, markup=False, soft_wrap=True)
    if result.retried:
        say(f"{result.retried} errored episode(s) removed from the log to be retried")
    if result.stopped_early:
        say(f"stopped early: {result.stopped_early}")
    line = f"{result.completed} episode(s) played"
    if result.errors:
        causes = ", ".join(f"{n} {cause}" for cause, n in result.causes.most_common())
        line += f" ({result.errors} failed: {causes})"
    if result.format_errors:
        line += f", {result.format_errors} with no readable call (format, outside MR)"
    if result.skipped:
        line += f", {result.skipped} already in the log"
    if result.completed:
        line += f", in {result.seconds:.1f}s"
    if result.tokens:
        line += f"; {result.tokens:,} tokens, ${result.cost_usd:.4f}"
    say(line)
    say(f"log: {result.path}")
    if result.interrupted:
        say(
            f"interrupted with {result.remaining} episode(s) to go; continue with the same "
            "command plus --resume"
        )
    elif result.errors and not result.stopped_early:
        say(
            "the failed episodes are in the log (errors are data); after fixing their cause, "
            "play them again with the same command plus --resume --retry-errors"
        )
    if not result.interrupted and not result.stopped_early:
        say(f"next: tp-gym report {result.run_dir}")
