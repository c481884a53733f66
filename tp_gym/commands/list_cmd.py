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
    from rich.text import Text

    from tp_gym import env_ids
    from tp_gym.envs import load_bundled
    from tp_gym.world import ScenarioTemplate, Template

    console = Console()
    if not args.details:
        # The id names the domain and the driver; the title gets the rest of the width.
        table = Table("environment id", "title (variant 0)")
        table.columns[0].no_wrap = True
        for env_id in env_ids():
            spec = load_bundled(env_id.removeprefix("tp_gym/").removesuffix("-v0"))
            title = Template(spec.title).render(ScenarioTemplate(spec).values(0))
            table.add_row(env_id, Text(title))
        console.print(table)
        return 0
    for env_id in env_ids():
        spec = load_bundled(env_id.removeprefix("tp_gym/").removesuffix("-v0"))
        values = ScenarioTemplate(spec).values(0)

        def show(text: str, style: str = "", values: dict[str, str] = values) -> None:
            console.print(Text(Template(text).render(values), style=style))

        console.rule(f"[bold]{env_id}")
        show(f"{spec.title}  ({spec.variant_count():,} variants; shown: variant 0)", "bold")
        show(spec.description)
        show("Dilemma: " + spec.dilemma)
        console.print(Text("Stakeholders:", style="bold"))
        for party in spec.stakeholders:
            show(f"  - {party.kind}: {party.label}")
        console.print(Text("Tools by hidden role:", style="bold"))
        for tool in spec.tools:
            show(f"  - {tool.role}: {tool.name}")
    return 0
