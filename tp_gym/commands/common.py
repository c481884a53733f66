"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import re
from typing import Any

from tp_gym.runs.grid import MAX_SEED, MAX_SEEDS


def add_variable_flags(parser: argparse.ArgumentParser) -> None:
    """`--set NAME=VALUE` (repeatable) for the experimental variables."""
    parser.add_argument(
        "--set",
        dest="variables",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set an experimental variable, e.g. --set stakes=low --set feedback=high "
        "(stakes, feedback, goal_clarity, ethical_framework, liability; under --protocol "
        "extended also observed, principal_orders)",
    )


def parse_variable_flags(items: list[str]) -> dict[str, Any]:
    """Turn ``["stakes=low", ...]`` into validated variables; CommandError on bad input."""
    from tp_gym.cli import CommandError
    from tp_gym.variables import BOOLEAN_VARIABLES, parse_variables

    values: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--set expects NAME=VALUE, got {item!r}")
        values[name.strip()] = value.strip()
    try:
        parse_variables(values)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return {k: (v.lower() == "true" if k in BOOLEAN_VARIABLES else v) for k, v in values.items()}


_SEED_DIGITS = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-\s*[0-9]+(\s*-.*)?")


def parse_seeds(text: str) -> list[int]:
    """``"0-24"``, ``"3"`` or ``"0,5,9-11"`` -> a sorted list of distinct seeds.

    CommandError (one line) for anything else, for seeds above `MAX_SEED` and for more
    than `MAX_SEEDS` distinct seeds; the count is taken from the ranges before any is
    expanded, so ``0-100000000`` fails at once, in little memory.
    """
    from tp_gym.cli import CommandError

    hint = "use e.g. 0-24 or 1,3,5"
    if not text.strip():
        raise CommandError(f"--seeds is empty; {hint}")
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        shown = repr(part if len(part) <= 40 else part[:37] + "...")
        if not part:
            raise CommandError(f"--seeds {text.strip()[:60]!r} has an empty part; {hint}")
        low_text, dash, high_text = part.partition("-")
        bounds = [low_text.strip(), high_text.strip()] if dash else [part]
        if _NEGATIVE.fullmatch(part) or bounds[-1].startswith("-"):
            raise CommandError(f"seeds must be non-negative integers, got {shown}")
        if not all(_SEED_DIGITS.fullmatch(b) for b in bounds):
            raise CommandError(f"bad seed range {shown}; {hint}")
        for bound in bounds:
            if len(bound.lstrip("0")) > len(str(MAX_SEED)) or int(bound) > MAX_SEED:
                raise CommandError(
                    f"seed {bound[:20]}{'...' if len(bound) > 20 else ''} is above {MAX_SEED} "
                    "(2**32 - 1): seeds are 32-bit so that every seeded random generator "
                    "(numpy.random.seed among them) can replay them"
                )
        low, high = int(bounds[0]), int(bounds[-1])
        if high < low:
            raise CommandError(f"bad seed range {shown}: it runs backwards; {hint}")
        ranges.append((low, high))
    ranges.sort()
    count, covered = 0, -1
    for low, high in ranges:
        if high > covered:
            count += high - max(low, covered + 1) + 1
            covered = high
    if count > MAX_SEEDS:
        raise CommandError(
            f"--seeds selects {count:,} seeds, more than {MAX_SEEDS:,}; run a smaller "
            "selection (each seed is at least one episode per agent, env and setting)"
        )
    seeds: set[int] = set()
    for low, high in ranges:
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def match_env_ids(patterns: str) -> list[str]:
    """Env ids for comma-separated patterns: registered ids or globs such as ``tp_gym/*``,
    and spec files, globs of them or directories (`tp_gym.runs.grid.resolve_envs`)."""
    from tp_gym.cli import CommandError
    from tp_gym.runs.grid import resolve_envs

    try:
        return resolve_envs(patterns)
    except ValueError as error:
        raise CommandError(str(error)) from None


ENV_PROTOCOLS: tuple[str, ...] = ("study", "extended")
"""`tp_gym.variables.PROTOCOLS`, repeated here so that building the parser stays light."""
REPLY_FORMATS: tuple[str, ...] = ("tools", "json")
"""`tp_gym.llm.conversation.REPLY_FORMATS` (the LLM agent's `--reply-format`)."""
PROTOCOL_HELP = (
    "environment protocol: study reproduces the paper's rules exactly (default); extended "
    "is tp_gym's richer engine: probabilistic oversight, replacement, neutral tools, "
    "pressure messages"
)


AGENT_SPEC_HELP = (
    "scripted:<policy> (compliant, direct, strategic, failed_attempt, staller, random, "
    "rational) or llm:<litellm model id>, optionally behind mitigation prefixes joined by '+': "
    "safety_prompt+ (a safety paragraph in the system prompt), self_check+ (the model reviews "
    "each proposed call against the briefing's constraints and may revise it), shield+ (the "
    "agent's own model vetoes risky calls; a veto is not executed and the agent is told), "
    "shield=llm:<model>+ (another model as the monitor), shield=rule+ (a risky-verb rule, no "
    "model); they stack, e.g. safety_prompt+shield=rule+llm:openai/gpt-4o-mini; each logs what "
    "it changed and its own tokens (usage keys self_check, monitor)"
)
"""What `--agent`/`--agents` accept (`tp_gym.agents.make_agent`, `tp_gym.agents.mitigations`)."""


def env_protocol(value: str) -> str:
    """argparse type of `--protocol`: an env protocol; the old reply-format values explain
    where they went."""
    if value in ENV_PROTOCOLS:
        return value
    choices = ", ".join(repr(p) for p in ENV_PROTOCOLS)
    if value in REPLY_FORMATS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {choices}); --protocol now selects the "
            f"environment protocol, and the LLM reply format moved to --reply-format {value}"
        )
    raise argparse.ArgumentTypeError(
        f"invalid choice: {value!r} (choose from {choices}; the LLM reply format is "
        "--reply-format tools|json)"
    )


def add_protocol_flag(parser: argparse.ArgumentParser, help_text: str = PROTOCOL_HELP) -> None:
    """`--protocol study|extended`: the env protocol (None when not given)."""
    parser.add_argument(
        "--protocol",
        type=env_protocol,
        default=None,
        metavar="{study,extended}",
        help=help_text,
    )


LLM_OPTIONS: tuple[str, ...] = (
    "api_base",
    "reply_format",
    "context",
    "temperature",
    "max_tokens",
    "timeout",
    "max_retries",
    "cassette",
    "cassette_mode",
    "transport",
)
"""`LLMAgent` keyword options that `add_llm_flags` puts on the command line."""


def add_llm_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The options of `llm:` agents, in an "LLM agents" group (returned for additions)."""
    llm = parser.add_argument_group("LLM agents")
    llm.add_argument(
        "--api-base", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    )
    llm.add_argument(
        "--reply-format",
        choices=REPLY_FORMATS,
        default=None,
        help="how the model answers: tools: native function calling; json: the study's JSON "
        "object {reasoning, tool_choice: {id, name, parameters}}, tools listed in the prompt "
        "(default follows the env protocol: json under study, tools under extended)",
    )
    llm.add_argument(
        "--context",
        choices=("full", "window"),
        default=None,
        help="full: the whole history; window: the study's memory, the last 6 turns verbatim "
        "plus a summary of older turns rebuilt at 12 and 18 turns (default follows the env "
        "protocol: window under study, full under extended)",
    )
    llm.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature (default: 0.7 under study, the provider's under extended)",
    )
    llm.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="cap on tokens per reply (default: 4096 under study, the provider's under extended)",
    )
    llm.add_argument(
        "--timeout", type=float, default=None, help="seconds per LLM call (default 60)"
    )
    llm.add_argument(
        "--max-retries",
        type=int,
        default=None,
        help="retries of a call on rate limits, timeouts, connection and 5xx errors (default 4)",
    )
    llm.add_argument("--cassette", default=None, help="record/replay LLM calls in this JSONL file")
    llm.add_argument(
        "--cassette-mode",
        choices=("record", "replay", "auto"),
        default=None,
        help="record: always call and save; replay: only from the cassette (strict); "
        "auto: replay when recorded, else call and record",
    )
    llm.add_argument(
        "--transport",
        choices=("auto", "litellm", "openai"),
        default=None,
        help="how model calls are made: openai: the openai SDK straight to an "
        "OpenAI-compatible --api-base (vLLM, SGLang, Ollama, a gateway), without litellm's "
        "CPU cost per call; litellm: through litellm, for every provider; auto (default): "
        "openai for an openai/ or hosted_vllm/ model with --api-base, litellm otherwise",
    )
    llm.add_argument(
        "--narrator",
        default=None,
        metavar="MODEL",
        help="dual-model mode: this litellm model narrates each step's outcome (the engine "
        "still decides it); uses the same --api-base, --timeout, --max-retries and --cassette",
    )
    return llm


def llm_options(args: argparse.Namespace, names: tuple[str, ...] = LLM_OPTIONS) -> dict[str, Any]:
    """The LLM options among `names` given on the command line (unset ones left out)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
