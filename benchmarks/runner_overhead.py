"""CPU the evaluation runner itself spends per LLM call, with litellm's own cost taken out.

Run: python benchmarks/runner_overhead.py [--episodes 800] [--concurrency 16]

`litellm.acompletion` is replaced by a stub that answers at once with a call to one of the
request's tools (a real `litellm.ModelResponse`, priced; building it costs about 0.07 ms,
counted here), so what is left is tp_gym's work:
env resets and steps, the agent's conversation, parsing and redaction, accounting, the log
line and its write. Printed per LLM call and per episode (compare with the CPU per call of
bare litellm in `eval_throughput.py`). No network, no server; litellm must be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-dummy")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tp_gym.evaluation import Grid, evaluate, load_run  # noqa: E402
from tp_gym.llm.client import load_litellm  # noqa: E402


def install_stub(seed: int = 0) -> None:
    """Replace `litellm.acompletion` with an instant answer calling a random offered tool."""
    litellm = load_litellm()
    rng = random.Random(seed)

    async def acompletion(**request):
        tool = rng.choice(request["tools"])["function"]
        properties = tool["parameters"].get("properties", {})
        arguments = {
            name: (schema.get("enum") or ["x"])[0] if schema.get("type") == "string" else 1
            for name, schema in properties.items()
        }
        call = {"name": tool["name"], "arguments": json.dumps(arguments)}
        response = litellm.ModelResponse(
            choices=[
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "call_1", "type": "function", "function": call}],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            usage={"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
        )
        response._hidden_params["response_cost"] = 0.0001
        return response

    litellm.acompletion = acompletion


def measure(episodes: int, concurrency: int, out: Path) -> str:
    grid = Grid.build("llm:openai/gpt-4o-mini", seeds=range(-(-episodes // 8)))
    install_stub()
    cpu = time.process_time()
    evaluate(grid, out, concurrency=concurrency, llm_options={"api_base": "http://stub"})
    cpu = time.process_time() - cpu
    logs = load_run(out)
    calls = sum(u.calls for log in logs for u in log.usage.values())
    return (
        f"runner without litellm's cost: {len(logs)} episodes, {calls} LLM calls, "
        f"{1000 * cpu / calls:.3f} ms CPU per call, {1000 * cpu / len(logs):.2f} ms per episode"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=800, help="episodes per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="episodes in flight (16)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements (3)")
    args = parser.parse_args()
    install_stub()  # for the warm-up
    with tempfile.TemporaryDirectory() as scratch:
        evaluate(
            Grid.build("llm:openai/gpt-4o-mini", seeds=range(4)),
            Path(scratch, "warm-up"),
            llm_options={"api_base": "http://stub"},
        )
        for repetition in range(args.repeat):
            print(measure(args.episodes, args.concurrency, Path(scratch, str(repetition))))


if __name__ == "__main__":
    main()
