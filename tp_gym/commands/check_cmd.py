"""`tp-gym check`: validate organizations, dry-run them and print their dilemma cards."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "validate and dry-run organizations (ids or spec files) and print their dilemma cards"

EPILOG = """\
Each SPEC is a registered id (tp_gym/Finance-Loyalty-v0), a bundled name (Finance-Loyalty)
or a spec file (.toml or .json). Exit 0 when every organization holds; otherwise every
problem is printed as one line, FILE: field: problem, and the exit code is 2.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="ids, names or spec files")
    parser.add_argument(
        "--seeds", default="0-9", help="seeds of each baseline and setting (default 0-9)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the cards and problems as one JSON document"
    )


def main(args: argparse.Namespace) -> int:
    import json
    import sys

    from tp_gym.cli import EXIT_OK, EXIT_USAGE
    from tp_gym.commands.common import parse_seeds

    seeds = parse_seeds(args.seeds)
    cards: list[dict[str, Any]] = []
    problems: list[str] = []
    for target in args.specs:
        card, found = check_one(target, seeds)
        problems += found
        if card is not None:
            cards.append(card.to_dict())
            if not args.json:
                show_card(card)
        if not args.json:
            for line in found:
                print(line, flush=True)
    if args.json:
        print(json.dumps({"cards": cards, "problems": problems}, indent=2))
        for line in problems:  # also one a line, apart from the JSON on stdout
            print(line, file=sys.stderr)
    return EXIT_USAGE if problems else EXIT_OK


def check_one(target: str, seeds: list[int]) -> tuple[Any, list[str]]:
    """(the dilemma card or None, every problem as a ``FILE: field: problem`` line)."""
    from tp_gym.dryrun import dilemma_card, dry_run
    from tp_gym.spec import SpecError, dilemma_problems, load_spec

    try:
        source, spec = _resolve(target)
        if spec is None:
            spec = load_spec(source)
        else:  # an OrgSpec registered in code: the file rules do not apply, the dilemma does
            found = dilemma_problems(spec)
            if found:
                raise SpecError(source, found)
    except SpecError as error:
        return None, error.lines()
    problems = []
    try:
        report = dry_run(spec, seeds[:5])
        problems += [f"{source}: dry_run: {p}" for p in report.distinct_problems()]
        card = dilemma_card(spec, seeds, source=source)
    except Exception as error:  # noqa: BLE001 - a spec that crashes the engine is a problem
        return None, [f"{source}: engine: {type(error).__name__}: {' '.join(str(error).split())}"]
    return card, problems


def _resolve(target: str) -> tuple[str, Any]:
    """(source, None) for a file to load, or (source, OrgSpec) for a spec object."""
    from pathlib import Path

    import gymnasium as gym

    import tp_gym
    from tp_gym.envs import spec_names, spec_path
    from tp_gym.spec import OrgSpec, SpecError

    name = target.removeprefix("tp_gym/").removesuffix("-v0")
    if target in tp_gym.env_ids():
        spec = gym.spec(target).kwargs.get("spec")
        if isinstance(spec, OrgSpec):
            return target, spec
        if isinstance(spec, str | Path) and str(spec) in spec_names():
            return str(spec_path(str(spec))), None
        if spec is not None:
            return str(spec), None
    if name in spec_names() and not Path(target).exists():
        return str(spec_path(name)), None
    if Path(target).exists() or Path(target).is_symlink():
        return target, None
    known = "see `tp-gym list`"
    raise SpecError(target, [("", f"no such spec file or registered organization; {known}")])


SHORT = {"failed_attempt": "failed", "staller": "stalling"}
"""Column names of the card for the baselines whose own names are long."""


def show_card(card: Any) -> None:
    """Print `card` as a table: a row per protocol and feedback level, a column per way of
    playing (mean utility / mean cost), and the one that pays best."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tp_gym.dryrun import CARD_FEEDBACK, CARD_POLICIES, CARD_PROTOCOLS

    console = Console(highlight=False)
    pay = card.payoffs
    seeds = f"{card.seeds[0]}-{card.seeds[-1]}" if len(card.seeds) > 1 else str(card.seeds[0])
    table = Table(
        title=Text(f"{card.organization}: {card.title}", style="bold"),
        caption=(
            f"utility/cost: means over seeds {seeds}. The spec's payoffs: unseen toxic path "
            f"{pay['toxic_unseen']:+.2f} > compliant {pay['compliant']:+.2f} > stalling "
            f"{pay['stall_study']:+.2f} (study), {pay['stall_extended']:+.2f} (extended). "
            f"{card.source}"
        ),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("setting", no_wrap=True)
    for policy in CARD_POLICIES:
        table.add_column(SHORT.get(policy, policy), justify="right", no_wrap=True)
    table.add_column("pays best", no_wrap=True)
    for protocol in CARD_PROTOCOLS:
        for feedback in CARD_FEEDBACK:
            row = card.cells[protocol][feedback]
            best = card.best[protocol][feedback]
            cells = [
                Text(
                    f"{row[p]['utility']:+.1f}/{row[p]['cost']:.0f}",
                    style="bold green" if p == best else "",
                )
                for p in CARD_POLICIES
            ]
            table.add_row(f"{protocol} {feedback}", *cells, SHORT.get(best, best))
    console.print(table)
