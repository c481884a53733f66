"""`tp-gym generate`: an LLM writes a new organization; a critic and the engine vet it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tp_gym.commands.common import add_variable_flags, parse_variable_flags

HELP = "write a new organization spec with an LLM, reviewed by a critic and dry-run by the engine"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", required=True, help="one capitalised word, e.g. Education")
    parser.add_argument(
        "--driver", required=True, choices=("Loyalty", "SelfPreservation"), help="the driver"
    )
    parser.add_argument("--model", required=True, help="litellm model id of the writer")
    parser.add_argument(
        "--out", required=True, help="where to write the accepted spec (JSON, loadable by OrgEnv)"
    )
    parser.add_argument(
        "--critic-model", default=None, help="litellm model id of the critic (default: --model)"
    )
    parser.add_argument("--no-critic", action="store_true", help="skip the critic's review")
    parser.add_argument(
        "--rounds", type=int, default=3, help="writer rounds before giving up (default 3)"
    )
    parser.add_argument(
        "--threshold",
        type=int,
        default=4,
        help="critic score (1-5) every criterion needs (default 4)",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds of the baseline dry run (default 5)"
    )
    parser.add_argument(
        "--hint", default="", help="a brief for the writer, e.g. 'a school district'"
    )
    parser.add_argument(
        "--report", default=None, help="also write the rounds' verdicts as JSON here"
    )
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_variable_flags(parser)
    llm = parser.add_argument_group("LLM calls")
    llm.add_argument("--api-base", default=None, help="OpenAI-compatible base URL")
    llm.add_argument("--temperature", type=float, default=None, help="sampling temperature")
    llm.add_argument("--max-tokens", type=int, default=None, help="cap on tokens per reply")
    llm.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per LLM call (default 300)"
    )
    llm.add_argument("--max-retries", type=int, default=4, help="retries per call (default 4)")
    llm.add_argument("--cassette", default=None, help="record/replay LLM calls in this JSONL file")
    llm.add_argument(
        "--cassette-mode", choices=("record", "replay", "auto"), default="auto", help="see `run`"
    )


def main(args: argparse.Namespace) -> int:
    from tp_gym.cli import CommandError
    from tp_gym.generate import GenerationError, generate_spec
    from tp_gym.llm.client import LLMClient
    from tp_gym.llm.errors import LLMError
    from tp_gym.llm.retry import RetryPolicy

    variables = parse_variable_flags(args.variables)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to overwrite it")
    if args.seeds < 1:
        raise CommandError("--seeds must be at least 1")
    options = {
        "api_base": args.api_base,
        "timeout": args.timeout,
        "retry": RetryPolicy(max_retries=args.max_retries),
        "cassette": args.cassette,
        "cassette_mode": args.cassette_mode,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
    }
    try:
        writer = LLMClient(args.model, role="generator", **options)
        critic = None
        if not args.no_critic:
            critic = LLMClient(args.critic_model or args.model, role="critic", **options)
        result = generate_spec(
            args.domain,
            args.driver,
            writer,
            critic,
            variables=variables,
            max_rounds=args.rounds,
            threshold=args.threshold,
            seeds=range(args.seeds),
            hint=args.hint,
        )
    except (GenerationError, LLMError, ValueError, ImportError) as error:
        raise CommandError(" ".join(str(error).split())) from None
    for verdict in result.rounds:
        print(verdict.verdict())
    if args.report:
        Path(args.report).write_text(json.dumps(result.to_dict(), indent=2) + "\n", "utf-8")
    spent = ", ".join(
        f"{role} {u.calls} call(s), {u.prompt_tokens + u.completion_tokens} tokens, "
        f"${u.cost_usd:.4f}{'' if u.priced else ' (unpriced)'}"
        for role, u in result.usage.items()
    )
    print(f"usage: {spent}")
    if result.spec is None:
        last = result.rounds[-1]
        raise CommandError(
            f"no spec accepted after {len(result.rounds)} round(s); last: {last.verdict()}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.spec.model_dump_json(indent=2) + "\n", encoding="utf-8")
    print(f"accepted {result.spec.id}; wrote {out} (run it: tp-gym run --env {out})")
    return 0
