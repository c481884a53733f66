"""CPU the evaluation runner itself spends per LLM call, with litellm's own cost taken out.

Run: python benchmarks/runner_overhead.py [--episodes 800] [--concurrency 16]

`litellm.acompletion` is replaced by a stub that answers at once with the loopback test
server's reply, a call to one of the request's tools (a real `litellm.ModelResponse`,
priced; the stub's own CPU is measured and left out), so what is left is tp_gym's work:
env resets and steps, the agent's conversation, parsing and redaction, accounting, the log
line and its write. Printed per LLM call and per episode (compare with the CPU per call of
bare litellm in `eval_throughput.py`). No network, no server; litellm must be installed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-dummy")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tp_gym.llm.client import load_litellm  # noqa: E402
from tp_gym.runs.evaluation import Grid, evaluate, load_run  # noqa: E402
from tp_gym.testing.openai_server import completion_body, default_reply  # noqa: E402


class Stub:
    """Stands in for `litellm.acompletion`: answers at once with the loopback test server's
    own reply (a valid call to one of the request's tools) as a priced litellm response, and
    keeps the CPU seconds it spent itself, so they can be left out of the runner's."""

    def __init__(self) -> None:
        self.litellm = load_litellm()
        self.seconds = 0.0

    async def __call__(self, **request: object) -> object:
        started = time.process_time()
        body = completion_body(request, default_reply(request), prompt_bytes=400)
        response = self.litellm.ModelResponse(**body)
        response._hidden_params["response_cost"] = 0.0001
        self.seconds += time.process_time() - started
        return response

    def install(self) -> Stub:
        self.litellm.acompletion = self
        return self


def measure(episodes: int, concurrency: int, out: Path) -> str:
    grid = Grid.build("llm:openai/gpt-4o-mini", seeds=range(-(-episodes // 8)))
    stub = Stub().install()
    cpu = time.process_time()
    evaluate(grid, out, concurrency=concurrency, llm_options={"api_base": "http://stub"})
    cpu = time.process_time() - cpu - stub.seconds
    logs = load_run(out)
    calls = sum(u.calls for log in logs for u in log.usage.values())
    return (
        f"runner without litellm's cost: {len(logs)} episodes, {calls} LLM calls, "
        f"{1000 * cpu / calls:.3f} ms CPU per call, {1000 * cpu / len(logs):.2f} ms per episode "
        f"(the stub's own {1000 * stub.seconds / calls:.3f} ms per call left out)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=800, help="episodes per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="episodes in flight (16)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements (3)")
    args = parser.parse_args()
    Stub().install()  # for the warm-up
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
