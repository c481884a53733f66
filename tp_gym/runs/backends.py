"""Backends: where the episodes of a run are played.

A backend gets the jobs to play and hands back every finished episode through `deliver`;
it never touches the run's log. The evaluation (`tp_gym.runs.evaluation`) alone appends to
the log, so resume, fail-fast and accounting work the same whatever plays the episodes:

- `LocalBackend`: this process's event loop (the default);
- `tp_gym.runs.workers.ProcessBackend`: this process and worker processes on this host
  (``workers=N``);
- `tp_gym.runs.ray_backend.RayBackend`: Ray tasks on a cluster (``backend="ray"``).

`deliver` is awaited for each episode and may make the backend wait (when the disk is
behind). Setting `stop` ends the run: no new episode starts, episodes in flight are
abandoned, and `play` returns False.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from tp_gym.runs.grid import Job
from tp_gym.runs.play import EnvPool, Finished, PlaySettings, play_job, preload, tuned_collector

if TYPE_CHECKING:
    from tp_gym.runs.workers import SlotGate


class BackendError(RuntimeError):
    """Episodes could not be played (a worker process crashed, a Ray task failed for good).
    The first line says what; the rest, if any, is the worker's traceback."""


Deliver = Callable[[Finished], Awaitable[None]]
"""Receives each finished episode (awaited: it may hold the backend back)."""

BACKENDS: tuple[str, ...] = ("local", "processes", "ray")


class Backend(Protocol):
    """Plays jobs and hands back finished episodes (see the module docstring)."""

    async def play(
        self,
        jobs: Sequence[Job],
        settings: PlaySettings,
        *,
        concurrency: int,
        stop: asyncio.Event,
        deliver: Deliver,
    ) -> bool:
        """Play `jobs`, at most `concurrency` at once; True if all ran, False if stopped."""
        ...


class LocalBackend:
    """Every episode in this process's event loop."""

    async def play(
        self,
        jobs: Sequence[Job],
        settings: PlaySettings,
        *,
        concurrency: int,
        stop: asyncio.Event,
        deliver: Deliver,
    ) -> bool:
        return await play_lanes(jobs, settings, concurrency=concurrency, stop=stop, deliver=deliver)


async def play_lanes(
    jobs: Sequence[Job],
    settings: PlaySettings,
    *,
    concurrency: int,
    stop: asyncio.Event,
    deliver: Deliver,
    claims: Iterator[Job] | None = None,
    gate: SlotGate | None = None,
) -> bool:
    """Play jobs in `concurrency` lanes of this event loop, each lane one episode at a time.

    `claims` hands out the jobs (by default all of `jobs`, in order); `gate`, if given, must
    let a lane in before each episode (processes sharing a run share its slots, see
    `tp_gym.runs.workers`). Returns True if all jobs ran, False if `stop` was set first.
    """
    preload(jobs, settings)
    with tuned_collector():
        pool = EnvPool(settings)
        pending: Iterator[Job] = iter(jobs) if claims is None else claims

        async def lane(number: int) -> None:
            while not stop.is_set():
                # Let the loop run between episodes: agents that never suspend (the scripted
                # ones) would otherwise keep it from ever seeing a Ctrl-C or a stop.
                await asyncio.sleep(0)
                if stop.is_set():
                    return
                if gate is not None and not await gate.enter(number):
                    return
                try:
                    job = next(pending, None)
                    if job is None:
                        return
                    log = await play_job(job, pool, settings)
                finally:
                    if gate is not None:
                        gate.leave()
                await deliver(Finished.of(log))

        count = max(1, min(concurrency, len(jobs)))
        lanes = [asyncio.create_task(lane(number)) for number in range(count)]
        return await until_stopped(lanes, stop)


async def until_stopped(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> bool:
    """Wait for `tasks`; True if they all ended, False (cancelling them) if `stop` came first.

    A task's exception is raised.
    """
    stopper = asyncio.create_task(stop.wait())
    everything = asyncio.gather(*tasks)
    # Stopping cancels the tasks, which ends `everything` with a CancelledError that is
    # expected: mark it retrieved so asyncio does not report it.
    everything.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        await asyncio.wait([everything, stopper], return_when=asyncio.FIRST_COMPLETED)
        if everything.done() and not everything.cancelled():
            everything.result()
            return True
        return False
    finally:
        stopper.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
