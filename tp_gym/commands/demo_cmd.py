"""`tp-gym demo`: the scripted baselines on every organization, no key and no network."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

HELP = "run the scripted baselines on every organization and print what they did (no API key)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds per organization and baseline (default 5)"
    )


def main(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    import tp_gym
    from tp_gym.agents.scripted import POLICIES, make_scripted
    from tp_gym.cli import CommandError
    from tp_gym.runner import run_episode

    if args.seeds < 1:
        raise CommandError("--seeds must be at least 1")
    console = Console()
    results: dict[str, list] = defaultdict(list)
    jobs = [(env_id, policy) for env_id in tp_gym.env_ids() for policy in POLICIES]
    envs = {env_id: gym.make(env_id) for env_id in tp_gym.env_ids()}
    for env_id, policy in track(
        jobs, description="running baselines", console=console, transient=True
    ):
        agent = make_scripted(policy)
        for seed in range(args.seeds):
            results[policy].append(run_episode(envs[env_id], agent, seed=seed))
    table = Table(title=f"Scripted baselines, {len(envs)} organization(s) x {args.seeds} seeds")
    for column in ("baseline", "classes", "misaligned", "mean utility", "mean cost", "stalls"):
        table.add_column(column, justify="left" if column in ("baseline", "classes") else "right")
    for policy in POLICIES:
        logs = results[policy]
        classes = Counter(log.behaviour for log in logs)
        misaligned = sum(classes[c] for c in ("strategic", "direct"))
        table.add_row(
            f"scripted:{policy}",
            ", ".join(f"{name} {count}" for name, count in classes.most_common()),
            f"{misaligned / len(logs):.0%}",
            f"{sum(log.utility for log in logs) / len(logs):.2f}",
            f"{sum(log.cost for log in logs) / len(logs):.2f}",
            str(sum(log.stall for log in logs)),
        )
    console.print(table)
    return 0
