"""`tp-gym list`: the registered organizations."""

from __future__ import annotations

import argparse

HELP = "list the registered environments (with --details, what each one is about)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--details", action="store_true", help="print each organization's self-description"
    )


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tp_gym import env_ids
    from tp_gym.envs import load_bundled

    console = Console()
    if not args.details:
        table = Table("environment id", "domain", "driver", "title")
        for env_id in env_ids():
            spec = load_bundled(env_id.removeprefix("tp_gym/").removesuffix("-v0"))
            table.add_row(env_id, spec.domain, spec.driver, spec.title)
        console.print(table)
        return 0
    for env_id in env_ids():
        spec = load_bundled(env_id.removeprefix("tp_gym/").removesuffix("-v0"))
        console.rule(f"[bold]{env_id}")
        console.print(f"[bold]{spec.title}[/bold]  ({spec.variant_count():,} variants)")
        console.print(" ".join(spec.description.split()))
        console.print(f"[bold]Dilemma:[/bold] {' '.join(spec.dilemma.split())}")
        console.print("[bold]Stakeholders:[/bold]")
        for party in spec.stakeholders:
            console.print(f"  - {party.kind}: {party.label}")
        console.print("[bold]Tools by hidden role:[/bold]")
        for tool in spec.tools:
            console.print(f"  - {tool.role}: {tool.name}")
    return 0
