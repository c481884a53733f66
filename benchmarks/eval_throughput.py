"""LLM calls per second of the evaluation runner against a loopback server with fixed latency.

Run: python benchmarks/eval_throughput.py [--latency 0.2] [--episodes-per-lane 12] [--workers 2] [--repeat 2]

An LLM agent (``llm:openai/gpt-4o-mini``, native tool calling) plays every organization
against `tp_gym.testing.FakeOpenAIServer`, which answers each request after `--latency`
seconds with a call to one of the request's tools (in its own process unless ``--server
thread``). No key or network is used. The agent's calls go through one of the two
transports (`tp_gym.llm.providers.TRANSPORTS`): the fast path (``openai``, what
``auto`` picks for this model and an ``api_base``) or ``litellm``.
Printed side by side, all measured in this run:

1. one-at-a-time: a plain loop of `run_episode` (what the study's sequential code does),
   over the first `--sequential-episodes` episodes of the same grid (the whole grid with
   `--full-sequential`); its rate is the most a sequential runner can do at this latency;
2. the runner (`tp_gym.evaluate`) at 16 concurrent episodes on the fast path, against the
   ideal LLM-bound rate ``concurrency / latency`` (beside bare litellm at 16);
3. bare ``litellm.acompletion`` calls, 64 in flight, replaying the very requests the
   runner sent in a warm-up (same sizes, the conversation growing turn by turn), with no
   agent, env or log, under the garbage-collector settings the runner uses
   (`tp_gym.runs.play.tuned_collector`): the ceiling of one Python process through
   litellm (litellm's CPU cost bounds it);
4. the runner at 64 concurrent episodes through litellm, against that ceiling;
5. bare fast-path calls (as `tp_gym.llm.openai_sdk` makes them), 64 in
   flight, replaying the same requests: what the server and this process allow the fast
   path with no agent, env or log;
6. the runner at 64 concurrent episodes on the fast path, against the ideal rate
   ``64 / latency`` (and beside the bare fast path);
7. the runner through litellm with ``--workers`` processes, each with its own event loop,
   sharing one log.

Rates count LLM calls finished per second of wall time over the whole run (start-up and
the tail where fewer episodes remain are included); *steady* counts only the part of the
run where every slot is busy: from the moment the last slot fills until the grid's last
episode starts (the tail after it depends on the grid's episode lengths, not on the runner,
and weighs less the longer the run). The concurrent measurements are repeated `--repeat`
times, interleaved, and the best of each is shown: other processes on a shared machine only
ever slow a measurement down. Goals: on the fast path, at least 90% of the ideal rate at 16 and at 64; through
litellm at 64, within 10% of the bare litellm ceiling; workers lift the ceiling with the
cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-dummy")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import gymnasium as gym  # noqa: E402

import tp_gym  # noqa: E402
from tp_gym.agents import make_agent  # noqa: E402
from tp_gym.runs import backends, play  # noqa: E402
from tp_gym.runs.evaluation import Grid, evaluate, load_run  # noqa: E402
from tp_gym.runs.runner import run_episode  # noqa: E402
from tp_gym.testing import FakeOpenAIServer  # noqa: E402

MODEL = "openai/gpt-4o-mini"
AGENT = f"llm:{MODEL}"


@dataclass
class Measured:
    """One measured configuration."""

    label: str
    calls: int
    episodes: int
    seconds: float
    steady: float | None = None
    cpu: float | None = None
    """CPU seconds this process spent (None when worker processes did the work)."""
    collector: float | None = None
    """Seconds this process spent in the garbage collector (None with worker processes)."""

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_per_call(self) -> str:
        return f"{1000 * self.cpu / self.calls:5.1f}" if self.cpu is not None else ""

    @property
    def collector_per_call(self) -> str:
        return f"{1000 * self.collector / self.calls:5.2f}" if self.collector is not None else ""


class CollectorClock:
    """Seconds the garbage collector runs while in the `with` block (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> CollectorClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def grid_for(episodes: int, first_seed: int = 0) -> Grid:
    """At least `episodes` episodes: the agent on every organization, seeds from `first_seed`."""
    envs = tp_gym.env_ids()
    seeds = range(first_seed, first_seed + math.ceil(episodes / len(envs)))
    return Grid.build(AGENT, envs="tp_gym/*", seeds=seeds)


def steady_rate(logs: list, concurrency: int) -> float | None:
    """Calls per second while every slot is busy: from the moment the last of the
    `concurrency` slots fills until the last episode of the grid starts (after it, slots
    go idle one by one: the tail, a property of the grid's episode lengths, not of the
    runner). Each episode's calls are spread evenly over its own wall time (every call
    waits the same latency)."""
    spans = sorted(
        (log.timing["start_unix"], log.timing["start_unix"] + log.timing["wall_seconds"], calls)
        for log in logs
        if log.timing and (calls := sum(u.calls for u in log.usage.values()))
    )
    if len(spans) <= concurrency:
        return None
    low = spans[concurrency - 1][0]  # the slots are all busy once this many have started
    high = spans[-1][0]  # no job left to start: the tail begins
    if high <= low:
        return None
    counted = 0.0
    for start, stop, calls in spans:
        overlap = max(0.0, min(stop, high) - max(start, low))
        counted += calls * overlap / (stop - start) if stop > start else 0.0
    return counted / (high - low)


def run_sequential(base_url: str, grid: Grid, limit: int | None) -> Measured:
    """The study's way: one episode after another, synchronous calls."""
    jobs = grid.jobs()[:limit] if limit else grid.jobs()
    envs: dict[str, gym.Env] = {}
    calls = 0
    started = time.perf_counter()
    cpu = time.process_time()
    for job in jobs:
        env = envs.setdefault(job.env_id, gym.make(job.env_id))
        agent = make_agent(job.agent, api_base=base_url, transport="openai")
        log = run_episode(env, agent, seed=job.seed, options=job.variables)
        assert log.error is None, log.error
        calls += sum(u.calls for u in log.usage.values())
    return Measured(
        "one at a time (run_episode loop), openai",
        calls,
        len(jobs),
        time.perf_counter() - started,
        cpu=time.process_time() - cpu,
    )


def run_runner(
    base_url: str, grid: Grid, concurrency: int, workers: int, out: Path, transport: str
) -> Measured:
    """`tp_gym.evaluate` on `grid` through `transport`; calls counted from the logs it wrote."""
    options = {"api_base": base_url, "transport": transport}
    with CollectorClock() as collector:
        started = time.perf_counter()
        cpu = time.process_time()
        result = evaluate(grid, out, concurrency=concurrency, workers=workers, llm_options=options)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    logs = load_run(out)
    errors = [log.error for log in logs if log.error]
    assert not errors, errors[:3]
    calls = sum(u.calls for log in logs for u in log.usage.values())
    label = f"runner, {concurrency} concurrent, {transport}" + (
        f", {workers} workers" if workers > 1 else ""
    )
    alone = workers == 1
    return Measured(
        label,
        calls,
        result.completed,
        seconds,
        steady_rate(logs, concurrency),
        cpu if alone else None,
        collector.seconds if alone else None,
    )


def capture_requests(base_url: str, episodes: int) -> list[dict]:
    """The exact `litellm.acompletion` arguments the runner sends in `episodes` episodes
    (every turn of each: the conversation grows), for the bare measurement to replay."""
    from tp_gym.llm.client import load_litellm

    litellm = load_litellm()
    original = litellm.acompletion
    captured: list[dict] = []

    async def recording(**kwargs):
        captured.append(kwargs)
        return await original(**kwargs)

    litellm.acompletion = recording
    try:
        with tempfile.TemporaryDirectory() as scratch:
            grid = grid_for(episodes, first_seed=20_000)
            options = {"api_base": base_url, "transport": "litellm"}
            evaluate(grid, scratch, concurrency=16, llm_options=options)
    finally:
        litellm.acompletion = original
    return captured


def measure_bare(
    label: str,
    concurrency: int,
    calls: int,
    payloads: list,
    connect: Callable[[], Callable[[Any], Awaitable[Any]]],
) -> Measured:
    """`calls` calls of `connect()` (made on the run's loop), cycling through `payloads`,
    `concurrency` in flight, with the runner's collector settings: a ceiling without it."""

    async def main() -> tuple[float, float]:
        gate = asyncio.Semaphore(concurrency)
        send = connect()

        async def one(payload: Any) -> None:
            async with gate:
                await send(payload)

        with play.tuned_collector():
            started = time.perf_counter()
            cpu = time.process_time()
            await asyncio.gather(*(one(payloads[i % len(payloads)]) for i in range(calls)))
            return time.perf_counter() - started, time.process_time() - cpu

    with CollectorClock() as collector:
        seconds, cpu = asyncio.run(main())
    return Measured(label, calls, 0, seconds, cpu=cpu, collector=collector.seconds)


def run_bare(concurrency: int, calls: int, requests: list[dict]) -> Measured:
    """Bare `litellm.acompletion`, `concurrency` in flight, replaying the runner's requests:
    the ceiling of one process for this request mix."""
    from tp_gym.llm.client import load_litellm

    litellm = load_litellm()
    return measure_bare(
        f"bare litellm.acompletion, {concurrency} in flight",
        concurrency,
        calls,
        requests,
        lambda: lambda request: litellm.acompletion(**request),
    )


def run_bare_fast(base_url: str, concurrency: int, calls: int, requests: list[dict]) -> Measured:
    """Bare fast-path calls as the runner makes them (`tp_gym.llm.openai_sdk`), replaying
    the same requests, `concurrency` in flight: what this server and process allow the fast
    path with no agent, env or log."""
    from tp_gym.llm import openai_sdk
    from tp_gym.llm.cassette import _TRANSPORT_KEYS
    from tp_gym.llm.providers import sdk_model

    bodies = [
        openai_sdk.request_body(
            {k: v for k, v in r.items() if k not in _TRANSPORT_KEYS}, sdk_model(r["model"])
        )
        for r in requests
    ]

    def connect() -> Callable[[dict], Awaitable[Any]]:
        client = openai_sdk.async_client(base_url, os.environ["OPENAI_API_KEY"])
        return lambda body: openai_sdk.acreate(client, body, 60.0)

    return measure_bare(
        f"bare fast path, {concurrency} in flight", concurrency, calls, bodies, connect
    )


def warm_up(base_url: str) -> list[dict]:
    """Import litellm and the openai SDK and play a few episodes on each transport
    (start-up costs stay out of the figures); returns the requests litellm was sent."""
    with tempfile.TemporaryDirectory() as scratch:
        options = {"api_base": base_url, "transport": "openai"}
        evaluate(grid_for(16, first_seed=30_000), scratch, concurrency=16, llm_options=options)
    return capture_requests(base_url, 32)


@contextlib.contextmanager
def serve(latency: float, where: str) -> Iterator[str]:
    """The loopback server's base URL: in its own process (the default, so its threads do
    not compete with the runner for this interpreter's GIL) or in a thread of this one."""
    if where == "thread":
        with FakeOpenAIServer(latency=latency, seed=0) as server:
            yield server.base_url
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "tp_gym.testing", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server latency, s (0.2)")
    parser.add_argument(
        "--episodes-per-lane",
        type=int,
        default=12,
        help="episodes per concurrent slot in the runner measurements (default 12; the fewer, "
        "the more the start and the tail of a run weigh)",
    )
    parser.add_argument(
        "--sequential-episodes",
        type=int,
        default=16,
        help="episodes of the one-at-a-time run (default 16: the first of the same grid)",
    )
    parser.add_argument(
        "--full-sequential", action="store_true", help="run the whole grid one at a time"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="interleaved repetitions of the concurrent measurements; the best of each is "
        "shown (default 2)",
    )
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="run the loopback server in its own process (default) or in a thread of this one",
    )
    parser.add_argument("--bare-calls", type=int, default=1500, help="bare litellm calls (1500)")
    parser.add_argument(
        "--workers",
        default="2",
        help="comma-separated worker counts for the 64-concurrent run (default 2; this "
        f"machine has {os.cpu_count()} cores)",
    )
    parser.add_argument(
        "--collector",
        choices=("tuned", "default"),
        default="tuned",
        help="garbage-collector settings of the runner and bare litellm in this process: as a "
        "run sets them (tuned, the default) or Python's defaults, to see what tuning saves "
        "(worker processes keep the tuned settings)",
    )
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.collector == "default":
        play.tuned_collector = backends.tuned_collector = contextlib.nullcontext

    rows: list[tuple[Measured, str]] = []
    with serve(args.latency, args.server) as base, tempfile.TemporaryDirectory() as tmp:
        print(
            f"loopback server {base}, latency {args.latency * 1000:.0f} ms, {os.cpu_count()} "
            f"cores, load average {os.getloadavg()[0]:.2f}"
        )
        requests = warm_up(base)

        grid16 = grid_for(16 * args.episodes_per_lane)
        grid64 = grid_for(64 * args.episodes_per_lane, first_seed=1000)
        sequential = run_sequential(
            base, grid16, None if args.full_sequential else args.sequential_episodes
        )
        # Interleaved repetitions, best of each kept (as timeit does): other processes on
        # the machine only ever slow a measurement down.
        best: dict[str, Measured] = {}
        for repetition in range(args.repeat):
            measured = [
                run_bare(16, max(200, args.bare_calls // 4), requests),
                run_runner(base, grid16, 16, 1, Path(tmp, f"c16-{repetition}"), "openai"),
                run_bare(64, args.bare_calls, requests),
                run_runner(base, grid64, 64, 1, Path(tmp, f"c64l-{repetition}"), "litellm"),
                run_bare_fast(base, 64, args.bare_calls, requests),
                run_runner(base, grid64, 64, 1, Path(tmp, f"c64o-{repetition}"), "openai"),
            ]
            for count in workers:
                out = Path(tmp, f"c64w{count}-{repetition}")
                measured.append(run_runner(base, grid64, 64, count, out, "litellm"))
            for m in measured:
                if m.label not in best or m.rate > best[m.label].rate:
                    best[m.label] = m
        bare16, at16, bare, at64, bare_fast, fast64, *with_workers = best.values()
        ideal16 = 16 / args.latency
        ideal64 = 64 / args.latency
        rows.append(
            (
                sequential,
                f"ideal {1 / args.latency:.1f}/s; the whole {len(grid16)}-episode grid would take "
                f"~{len(grid16) * sequential.seconds / sequential.episodes:.0f}s",
            )
        )
        rows.append((bare16, f"{bare16.rate / ideal16:.0%} of ideal {ideal16:.0f}/s"))
        rows.append(
            (
                at16,
                f"{at16.rate / ideal16:.0%} of ideal {ideal16:.0f}/s (steady "
                f"{(at16.steady or 0) / ideal16:.0%}), {at16.rate / bare16.rate:.0%} of bare; "
                f"{at16.rate / sequential.rate:.1f}x one at a time; goal, steady >= 90% of ideal: "
                f"{'ok' if (at16.steady or 0) >= 0.9 * ideal16 else 'MISSED'}",
            )
        )
        rows.append((bare, f"ideal {ideal64:.0f}/s: the one-process litellm ceiling"))
        rows.append(
            (
                at64,
                f"{at64.rate / bare.rate:.0%} of bare litellm (steady "
                f"{(at64.steady or 0) / bare.rate:.0%}); goal, steady >= 90%: "
                f"{'ok' if (at64.steady or 0) >= 0.9 * bare.rate else 'MISSED'}",
            )
        )
        rows.append((bare_fast, f"{bare_fast.rate / ideal64:.0%} of ideal {ideal64:.0f}/s"))
        rows.append(
            (
                fast64,
                f"{fast64.rate / ideal64:.0%} of ideal {ideal64:.0f}/s (steady "
                f"{(fast64.steady or 0) / ideal64:.0%}), {fast64.rate / bare_fast.rate:.0%} of "
                f"bare fast path; {fast64.rate / at64.rate:.1f}x litellm; "
                f"goal, steady >= 90% of ideal: "
                f"{'ok' if (fast64.steady or 0) >= 0.9 * ideal64 else 'MISSED'}",
            )
        )
        for measured in with_workers:
            rows.append(
                (
                    measured,
                    f"{measured.rate / at64.rate:.2f}x one process (steady "
                    f"{(measured.steady or 0) / (at64.steady or 1):.2f}x); "
                    f"{measured.rate / bare.rate:.0%} of the one-process ceiling",
                )
            )

    print(
        f"\n{'configuration':55} {'episodes':>8} {'calls':>6} {'s':>7} {'calls/s':>8} "
        f"{'steady':>7} {'cpu ms/call':>11} {'gc ms/call':>10}"
    )
    for measured, note in rows:
        steady = f"{measured.steady:7.1f}" if measured.steady else f"{'':7}"
        print(
            f"{measured.label:55} {measured.episodes or '':>8} {measured.calls:6d} "
            f"{measured.seconds:7.2f} {measured.rate:8.1f} {steady} {measured.cpu_per_call:>11} "
            f"{measured.collector_per_call:>10}  {note}"
        )
    print(f"load average after the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
