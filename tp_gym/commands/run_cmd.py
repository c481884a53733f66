"""`tp-gym run`: play one episode with a live, step-by-step view."""

from __future__ import annotations

import argparse
from typing import Any

from tp_gym.commands.common import (
    AGENT_SPEC_HELP,
    add_llm_flags,
    add_protocol_flag,
    add_variable_flags,
    llm_options,
    parse_variable_flags,
)

HELP = "play one episode of one agent and show it step by step"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        required=True,
        help="environment id, e.g. tp_gym/Healthcare-Loyalty-v0, or a spec file (.toml/.json, "
        "e.g. one written by `tp-gym generate`)",
    )
    parser.add_argument(
        "--agent",
        default="scripted:compliant",
        help=AGENT_SPEC_HELP + " (default: scripted:compliant)",
    )
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--variant", type=int, default=None, help="pin the procedural variant")
    parser.add_argument("--out", default=None, help="append the episode log to this JSONL file")
    parser.add_argument("--quiet", action="store_true", help="print only the one-line summary")
    add_protocol_flag(parser)
    add_variable_flags(parser)
    add_llm_flags(parser)


def narrator_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of the narrator model: the transport and cassette flags of the agent."""
    from tp_gym.runs.evaluation import NARRATOR_OPTIONS

    return llm_options(args, NARRATOR_OPTIONS)


def make_env(env: str, variables: dict[str, Any], protocol: str | None = None) -> Any:
    """A registered env id, or an env built from a spec file; CommandError if neither.

    `protocol` (``study`` or ``extended``) is passed only when given, so None leaves the
    env's own default.
    """
    import gymnasium as gym

    import tp_gym
    from tp_gym.cli import CommandError

    options = dict(variables)
    if protocol is not None:
        options["protocol"] = protocol
    if env in tp_gym.env_ids():
        try:
            return gym.make(env, **options)
        except ValueError as error:
            raise CommandError(" ".join(str(error).split())) from None
    if env.endswith((".toml", ".json")):
        from tp_gym.env import OrgEnv
        from tp_gym.spec import SpecError

        try:
            return OrgEnv(env, **options)
        except SpecError as error:
            lines = error.lines()  # FILE: field: problem, as `tp-gym check` prints them
            if len(lines) > 1:
                print("\n".join(lines), flush=True)
                more = len(lines) - 1
                raise CommandError(
                    f"{lines[0]} (and {more} more problem{'s' * (more > 1)}, listed above)"
                ) from None
            raise CommandError(lines[0]) from None
        except ValueError as error:
            raise CommandError(" ".join(str(error).split())) from None
    raise CommandError(f"unknown environment {env!r}; see `tp-gym list`")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.panel import Panel

    from tp_gym.agents import make_agent
    from tp_gym.cli import CommandError
    from tp_gym.runs.episode import write_jsonl
    from tp_gym.runs.runner import run_episode

    variables = parse_variable_flags(args.variables)
    env = make_env(args.env, variables, args.protocol)
    from tp_gym.agents.mitigations import llm_models

    try:
        options = llm_options(args) if llm_models(args.agent) else {}
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        agent = make_agent(args.agent, **options)
        if args.narrator:
            from tp_gym.llm.narrator import NarratorWrapper

            env = NarratorWrapper(env, args.narrator, **narrator_options(args))
    except (ValueError, ImportError, RuntimeError) as error:
        raise CommandError(" ".join(str(error).split())) from None
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
        saved = f" (log appended to {args.out})" if args.out else ""
        reason = " ".join(log.error.split())
        raise CommandError(f"episode failed after {len(log.steps)} turn(s){saved}: {reason}")
    console.print(summary, markup=False)
    if args.out:
        console.print(f"log appended to {args.out}", markup=False)
    return 0


def _reset_options(args: argparse.Namespace) -> dict[str, Any] | None:
    return {"variant": args.variant} if args.variant is not None else None
