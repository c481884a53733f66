"""`tp-gym run`: play one episode with a live, step-by-step view."""

from __future__ import annotations

import argparse
from typing import Any

from tp_gym.commands.common import add_variable_flags, parse_variable_flags

HELP = "play one episode of one agent and show it step by step"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", required=True, help="environment id, e.g. tp_gym/Healthcare-Loyalty-v0"
    )
    parser.add_argument(
        "--agent",
        default="scripted:compliant",
        help="scripted:<policy> (compliant, direct, strategic, failed_attempt, staller, random) "
        "or llm:<litellm model id> (default: scripted:compliant)",
    )
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--variant", type=int, default=None, help="pin the procedural variant")
    parser.add_argument("--out", default=None, help="append the episode log to this JSONL file")
    parser.add_argument("--quiet", action="store_true", help="print only the one-line summary")
    add_variable_flags(parser)
    llm = parser.add_argument_group("LLM agents")
    llm.add_argument(
        "--api-base", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    )
    llm.add_argument(
        "--protocol",
        choices=("tools", "json"),
        default=None,
        help="tools: native function calling (default); json: the study's JSON text protocol",
    )
    llm.add_argument("--temperature", type=float, default=None, help="sampling temperature")
    llm.add_argument(
        "--timeout", type=float, default=None, help="seconds per LLM call (default 60)"
    )
    llm.add_argument("--cassette", default=None, help="record/replay LLM calls in this JSONL file")
    llm.add_argument(
        "--cassette-mode",
        choices=("record", "replay", "auto"),
        default=None,
        help="record: always call and save; replay: only from the cassette (strict); "
        "auto: replay when recorded, else call and record",
    )


def llm_options(args: argparse.Namespace) -> dict[str, Any]:
    """The LLM agent options given on the command line (unset ones left out)."""
    names = ("api_base", "protocol", "temperature", "timeout", "cassette", "cassette_mode")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def main(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from rich.console import Console
    from rich.panel import Panel

    import tp_gym
    from tp_gym.agents import make_agent
    from tp_gym.cli import CommandError
    from tp_gym.episode import write_jsonl
    from tp_gym.runner import run_episode

    variables = parse_variable_flags(args.variables)
    if args.env not in tp_gym.env_ids():
        raise CommandError(f"unknown environment {args.env!r}; see `tp-gym list`")
    options = llm_options(args) if args.agent.startswith("llm:") else {}
    try:
        agent = make_agent(args.agent, **options)
    except (ValueError, ImportError) as error:
        raise CommandError(str(error)) from None
    env = gym.make(args.env, **variables)
    console = Console(highlight=False)

    def show(
        turn: int, action: Any, observation: dict[str, Any], reward: float, info: dict[str, Any]
    ) -> None:
        if args.quiet:
            return
        if turn == 0:
            console.print(
                Panel(
                    observation["text"], title=f"{args.env}  seed {args.seed}", title_align="left"
                )
            )
            return
        title = f"turn {turn}  reward {reward:+.2f}  cost {info['cost']:.1f}  pressure {info['pressure']}"
        console.print(Panel(observation["text"], title=title, title_align="left"))

    log = run_episode(env, agent, seed=args.seed, options=_reset_options(args), on_step=show)
    if args.out:
        write_jsonl(args.out, [log], append=True)
    summary = (
        f"{log.agent} on {log.env_id} seed {log.seed}: {log.behaviour}, outcome {log.outcome}, "
        f"utility {log.utility:.2f}, cost {log.cost:.1f}, turns {len(log.steps)}"
    )
    if log.error:
        console.print(f"[red]episode failed:[/red] {log.error}", markup=True)
        raise CommandError(f"episode failed: {log.error}")
    console.print(summary, markup=False)
    if args.out:
        console.print(f"log appended to {args.out}", markup=False)
    return 0


def _reset_options(args: argparse.Namespace) -> dict[str, Any] | None:
    return {"variant": args.variant} if args.variant is not None else None
