"""The worker-process backend: `evaluate(..., workers=N)` plays in N processes of this host.

One Python process tops out at what litellm's own CPU cost per call allows (about 100 to
150 calls per second on a 2-core machine), however many episodes wait on the network.
`run_with_workers` lifts that ceiling with the cores: this process plays its share of the
concurrent episodes in its own event loop, as a single-process run does, and N-1 helper
processes (started with ``spawn``) play the rest, each in its own event loop.

Work is handed out one job at a time: every process holds the whole job list and claims
the next index from a shared counter, so a process whose episodes happen to be short simply
plays more of them. The run's concurrency is a pool of slots shared by all processes (a
lane takes one before each episode). Helpers take seconds to start (each imports litellm),
so this process plays with every slot until a helper says it is ready, then hands that
helper its share: the run never waits for its helpers, and no more than `concurrency`
episodes are ever in flight. Helpers send each finished episode (its log line and summary)
back here, where the evaluation appends it to the log: only this process writes.

Stopping: the caller's `stop` event (set by Ctrl-C or SIGTERM) reaches the helpers through
a shared flag; they ignore SIGINT themselves, so a Ctrl-C in the terminal stops the run
in order. A helper also stops when this process disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tp_gym.runs.backends import BackendError, Deliver, play_lanes
from tp_gym.runs.grid import Job
from tp_gym.runs.play import Finished, PlaySettings, preload

POLL_SECONDS = 0.02
"""How often this process looks for helpers' reports (and helpers for the stop flag)."""


class JobClaims:
    """An iterator over `jobs` that several processes share through `counter`.

    `counter` is a ``multiprocessing.Value`` holding the index of the next unclaimed job;
    with None, the claims are local to this process.
    """

    def __init__(self, jobs: Sequence[Job], counter: Any = None) -> None:
        self._jobs = jobs
        self._counter = counter
        self._local = 0

    def __iter__(self) -> Iterator[Job]:
        return self

    def __next__(self) -> Job:
        if self._counter is None:
            index, self._local = self._local, self._local + 1
        else:
            with self._counter.get_lock():
                index = self._counter.value
                self._counter.value = index + 1
        if index >= len(self._jobs):
            raise StopIteration
        return self._jobs[index]


def lane_shares(concurrency: int, processes: int) -> list[int]:
    """`concurrency` episodes in flight spread as evenly as possible over `processes`."""
    base, extra = divmod(concurrency, processes)
    return [base + (i < extra) for i in range(processes)]


class SlotGate:
    """The run's `limit` slots, shared by every process through `in_flight` (a
    ``multiprocessing.Value``): a lane enters before each episode and leaves after it.

    Lanes numbered `lanes` or above are retired: they stop at their next `enter`, which is
    how this process hands slots to a helper once the helper is ready.
    """

    def __init__(self, in_flight: Any, limit: int, lanes: int) -> None:
        self.in_flight = in_flight
        self.limit = limit
        self.lanes = lanes

    def retire(self, count: int) -> None:
        """Retire this process's `count` highest-numbered lanes (never the last one)."""
        self.lanes = max(1, self.lanes - count)

    async def enter(self, lane: int) -> bool:
        """Wait for a free slot and take it; False if lane `lane` is retired."""
        while lane < self.lanes:
            with self.in_flight.get_lock():
                if self.in_flight.value < self.limit:
                    self.in_flight.value += 1
                    return True
            await asyncio.sleep(POLL_SECONDS)
        return False

    def leave(self) -> None:
        """Give the slot back."""
        with self.in_flight.get_lock():
            self.in_flight.value -= 1


class ProcessBackend:
    """This process and ``workers - 1`` helper processes (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers

    async def play(
        self,
        jobs: Sequence[Job],
        settings: PlaySettings,
        *,
        concurrency: int,
        stop: asyncio.Event,
        deliver: Deliver,
    ) -> bool:
        """Play `jobs` here and in the helpers; True if all of them ran.

        Raises `BackendError` with the helper's traceback if a helper fails.
        """
        import multiprocessing

        workers = max(1, min(self.workers, concurrency, len(jobs)))
        if workers == 1:
            return await play_lanes(
                jobs, settings, concurrency=concurrency, stop=stop, deliver=deliver
            )
        context = multiprocessing.get_context("spawn")
        claimed = context.Value("q", 0)
        in_flight = context.Value("q", 0)
        events = context.Queue()
        stop_flag = context.Event()
        shares = lane_shares(concurrency, workers)
        helpers = [
            context.Process(
                target=_helper_main,
                args=(index, list(jobs), settings, events),
                kwargs={
                    "claimed": claimed,
                    "gate": (in_flight, concurrency, shares[index]),
                    "stop_flag": stop_flag,
                    "parent": os.getpid(),
                },
                name=f"tp-gym-worker-{index}",
                daemon=True,
            )
            for index in range(1, workers)
        ]
        _start_ignoring_sigint(helpers)
        gate = SlotGate(in_flight, concurrency, lanes=concurrency)
        relay = _Relay(
            helpers, events, deliver, stop, ready=lambda index: gate.retire(shares[index])
        )
        forward = asyncio.create_task(_forward_stop(stop, stop_flag))
        relaying = asyncio.create_task(relay.run())
        try:
            mine = await play_lanes(
                jobs,
                settings,
                concurrency=concurrency,
                stop=stop,
                deliver=deliver,
                claims=JobClaims(jobs, claimed),
                gate=gate,
            )
            await relaying
        except BaseException:
            stop_flag.set()
            raise
        finally:
            forward.cancel()
            relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying
            for helper in helpers:
                await asyncio.to_thread(helper.join, 30)
        if relay.crash is not None:
            raise BackendError(f"an evaluation worker failed:\n{relay.crash}")
        return mine and relay.finished and not stop.is_set()


def _start_ignoring_sigint(helpers: list[Any]) -> None:
    """Start the helpers with SIGINT ignored (a spawned interpreter keeps an ignored SIGINT
    ignored), so a Ctrl-C in the terminal reaches only this process, which stops them."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        for helper in helpers:
            helper.start()
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


async def _forward_stop(stop: asyncio.Event, stop_flag: Any) -> None:
    await stop.wait()
    stop_flag.set()


class _Relay:
    """Receives the helpers' reports: finished episodes, and how each helper ended."""

    def __init__(
        self,
        helpers: list[Any],
        events: Any,
        deliver: Deliver,
        stop: asyncio.Event,
        ready: Callable[[int], None],
    ) -> None:
        self.helpers = helpers
        self.ready = ready
        self.events = events
        self.deliver = deliver
        self.stop = stop
        self.running = {index for index in range(1, len(helpers) + 1)}
        self.finished = True
        self.crash: str | None = None

    async def run(self) -> None:
        while self.running:
            if await self._drain():
                continue
            if not any(self.helpers[index - 1].is_alive() for index in self.running):
                # A helper's reports are all in the pipe once it has exited.
                await self._drain()
                if self.running:
                    self.crash = self.crash or "a worker process died without reporting"
                    self.stop.set()
                return
            await asyncio.sleep(POLL_SECONDS)

    async def _drain(self) -> bool:
        """Handle every report waiting; True if there was one."""
        handled = False
        while True:
            try:
                kind, index, payload = self.events.get_nowait()
            except queue.Empty:
                return handled
            handled = True
            if kind == "done":
                await self.deliver(payload)
                continue
            if kind == "ready":
                self.ready(index)
                continue
            self.running.discard(index)
            if kind == "crash":
                self.crash = self.crash or payload
                self.stop.set()
            elif not payload:
                self.finished = False


def _helper_main(
    index: int,
    jobs: list[Job],
    settings: PlaySettings,
    events: Any,
    *,
    claimed: Any,
    gate: tuple[Any, int, int],
    stop_flag: Any,
    parent: int,
) -> None:
    """Entry point of helper process `index`: once its imports are done it says so, then
    plays claimed jobs in its own event loop with its share of the slots."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    in_flight, limit, lanes = gate

    async def main() -> bool:
        preload(jobs, settings)
        events.put(("ready", index, None))
        stop = asyncio.Event()

        async def watch() -> None:
            while not (stop_flag.is_set() or os.getppid() != parent):
                await asyncio.sleep(POLL_SECONDS)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:

            async def deliver(finished: Finished) -> None:
                events.put(("done", index, finished))

            return await play_lanes(
                jobs,
                settings,
                concurrency=lanes,
                stop=stop,
                deliver=deliver,
                claims=JobClaims(jobs, claimed),
                gate=SlotGate(in_flight, limit, lanes),
            )
        finally:
            watcher.cancel()

    try:
        finished = asyncio.run(main())
        events.put(("exit", index, finished))
    except BaseException:  # noqa: BLE001 - reported to the parent, which re-raises
        events.put(("crash", index, traceback.format_exc()))
