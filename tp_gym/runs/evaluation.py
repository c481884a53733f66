"""The evaluation runner: a grid of episodes, run concurrently, appended to a resumable log.

A *grid* is agents x environments x variable settings x seeds (`Grid.build`), or a named
suite such as ``paper`` (`Grid.from_suite`); see `tp_gym.runs.grid`. `evaluate(grid, out_dir)`
plays every episode
of the grid with asyncio, at most `concurrency` at a time, and appends each finished
episode to ``out_dir/episodes.jsonl`` as one line, written with a single `write` under an
exclusive file lock, then fsynced before the episode counts as done (episodes that finish
together share one write and one fsync, in a background thread). A run that is killed
therefore loses at most the episodes in flight; a torn last line (the process died inside
`write`) is cut off when the run is resumed. The log files are `tp_gym.runs.rundir`'s.

With ``resume=True`` the episodes already in the directory (in ``episodes.jsonl`` and any
``episodes-*.jsonl`` shards) are skipped, so a resumed run never plays an episode twice.
An episode is identified by `EpisodeLog.key`: (agent name, env id, full variable setting,
seed). Episodes that ended with an error are complete too (errors are data, reported
separately); ``retry_errors=True`` removes them from the log and plays them again.

LLM calls are the slow part: agents that have ``async aact(observation)`` are awaited, so
hundreds of episodes wait on the network at once; env steps take well under a millisecond
and run on the loop. One Python process tops out at what litellm's own CPU cost allows;
``workers=N`` plays in N processes, this one and N-1 helpers, each with its own event loop,
claiming episodes one at a time and appending to the same log under the lock
(`tp_gym.runs.workers`).

Ctrl-C (SIGINT) or SIGTERM stops cleanly: no new episodes start, episodes in flight are
abandoned, finished ones are written, and `evaluate` returns with ``interrupted=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib.util
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tp_gym.runs.grid import EpisodeKey, Grid, Job, resolve_envs
from tp_gym.runs.rundir import (
    EPISODES_FILE,
    FILE_LOCKS,
    MANIFEST_FILE,
    SHARD_PATTERN,
    EpisodeWriter,
    GroupCommit,
    dir_lock,
    drop_errored,
    episode_files,
    load_run,
    repair_tail,
    scan,
    write_manifest,
)

if TYPE_CHECKING:
    import gymnasium as gym

    from tp_gym.runs.episode import EpisodeLog
    from tp_gym.runs.workers import SlotGate

__all__ = [
    "EPISODES_FILE",
    "MANIFEST_FILE",
    "SHARD_PATTERN",
    "EpisodeDone",
    "EpisodeKey",
    "EvalResult",
    "Grid",
    "Job",
    "PlaySettings",
    "episode_files",
    "evaluate",
    "load_run",
    "resolve_envs",
    "run_jobs",
    "tuned_collector",
]


@dataclass(frozen=True)
class EpisodeDone:
    """A finished episode as progress displays and workers report it."""

    key: EpisodeKey
    error: str | None
    tokens: int
    cost_usd: float

    @classmethod
    def of(cls, log: EpisodeLog) -> EpisodeDone:
        usage = log.usage.values()
        return cls(
            key=log.key,
            error=log.error,
            tokens=sum(u.prompt_tokens + u.completion_tokens for u in usage),
            cost_usd=math.fsum(u.cost_usd for u in usage),
        )


@dataclass
class EvalResult:
    """What `evaluate` did."""

    run_dir: Path
    total: int
    """Episodes in the grid."""
    skipped: int
    """Already in the log when the run started (resume)."""
    completed: int = 0
    """Played and written by this run."""
    errors: int = 0
    """Of those, how many ended with an error."""
    tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False
    retried: int = 0
    """Errored episodes removed from the log to be played again (``retry_errors``)."""

    @property
    def path(self) -> Path:
        """The log this run appended to."""
        return self.run_dir / EPISODES_FILE

    @property
    def remaining(self) -> int:
        """Episodes of the grid not in the log yet."""
        return self.total - self.skipped - self.completed

    def add(self, done: EpisodeDone) -> None:
        self.completed += 1
        self.errors += done.error is not None
        self.tokens += done.tokens
        self.cost_usd += done.cost_usd


NARRATOR_OPTIONS = ("api_base", "api_key", "timeout", "max_retries", "cassette", "cassette_mode")
"""The LLM options a narrator shares with the run's agents: transport and cassette."""


@dataclass(frozen=True)
class PlaySettings:
    """How every episode of a run is played (picklable, for worker processes)."""

    llm_options: dict[str, Any] = field(default_factory=dict)
    """Options of every ``llm:`` agent (``api_base``, ``temperature``, ...)."""
    narrator: str | None = None
    """A litellm model that narrates each step (`tp_gym.llm.narrator.NarratorWrapper`), or
    None for the engine's own text."""

    def agent_options(self, spec: str) -> dict[str, Any]:
        """The keyword options `make_agent` gets for agent `spec`."""
        return dict(self.llm_options) if spec.startswith("llm:") else {}

    def make_env(self, env_id: str, protocol: str) -> gym.Env[Any, Any]:
        """A new env for `env_id` under `protocol`, wrapped in the narrator if there is one."""
        import gymnasium as gym

        # The passive checker only re-checks what `check_env` (in the test suite) covers.
        env = gym.make(env_id, disable_env_checker=True, protocol=protocol)
        if self.narrator is None:
            return env
        from tp_gym.llm.narrator import NarratorWrapper

        shared = {k: v for k, v in self.llm_options.items() if k in NARRATOR_OPTIONS}
        return NarratorWrapper(env, self.narrator, **shared)


class EnvPool:
    """Idle environments by (id, protocol): each concurrent episode gets its own env,
    reused afterwards."""

    def __init__(self, settings: PlaySettings) -> None:
        self._settings = settings
        self._idle: dict[tuple[str, str], list[gym.Env[Any, Any]]] = {}

    def acquire(self, env_id: str, protocol: str) -> gym.Env[Any, Any]:
        idle = self._idle.get((env_id, protocol))
        return idle.pop() if idle else self._settings.make_env(env_id, protocol)

    def release(self, env_id: str, protocol: str, env: gym.Env[Any, Any]) -> None:
        self._idle.setdefault((env_id, protocol), []).append(env)


async def play_job(job: Job, pool: EnvPool, settings: PlaySettings) -> EpisodeLog:
    """Play one job: a fresh agent, an env from the pool, timing filled in."""
    from tp_gym.agents import make_agent
    from tp_gym.runs.runner import arun_episode

    agent = make_agent(job.agent, **settings.agent_options(job.agent))
    env = pool.acquire(job.env_id, job.protocol)
    try:
        started = time.time()
        clock = time.perf_counter()
        log = await arun_episode(env, agent, seed=job.seed, options=dict(job.variables))
        log.timing = {"start_unix": started, "wall_seconds": time.perf_counter() - clock}
    finally:
        pool.release(job.env_id, job.protocol, env)
    if log.key != job.key:
        raise RuntimeError(
            f"agent {job.agent!r} logged itself as {log.agent!r}, not {job.agent_name!r}; "
            "an agent's name must not change between episodes"
        )
    return log


def needs_litellm(jobs: Iterable[Job], settings: PlaySettings) -> bool:
    """Whether playing `jobs` calls a model (an ``llm:`` agent or a narrator)."""
    return settings.narrator is not None or any(job.agent.startswith("llm:") for job in jobs)


def preload(jobs: Iterable[Job], settings: PlaySettings) -> None:
    """Import what the jobs' agents and narrator need before any episode starts.

    litellm takes seconds to import; imported by the first LLM call instead, it would
    freeze every episode in flight and inflate their timings.
    """
    if needs_litellm(jobs, settings):
        from tp_gym.llm.client import load_litellm

        load_litellm()


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two young-generation collections during a run (Python's default:
700)."""


@contextlib.contextmanager
def tuned_collector() -> Iterator[None]:
    """The garbage collector set for a run, restored afterwards.

    Left as it is, Python's cyclic collector costs about 1 ms of CPU per LLM call here (10%
    of litellm's own cost): each call allocates thousands of objects, and every so often the
    collector walks all of litellm's millions of imported objects. During a run, the objects
    alive at its start are frozen out of collection (`gc.freeze`, unless something froze
    them already) and young collections run every `GC_YOUNG_THRESHOLD` allocations; the
    garbage cycles of the run are still collected.
    """
    threshold = gc.get_threshold()
    freezing = gc.get_freeze_count() == 0
    if freezing:
        gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if freezing:
            gc.unfreeze()


async def run_jobs(
    jobs: Sequence[Job],
    path: Path,
    *,
    concurrency: int,
    settings: PlaySettings | None = None,
    stop: asyncio.Event | None = None,
    on_done: Callable[[EpisodeDone], None] | None = None,
    claims: Iterator[Job] | None = None,
    gate: SlotGate | None = None,
) -> bool:
    """Play `jobs`, at most `concurrency` at once, appending each log to `path`.

    `claims` hands out the jobs to play (by default all of `jobs`, in order) and `gate`, if
    given, must let a lane in before each episode: processes sharing a run claim jobs from
    a shared counter and share the slots of the run's concurrency (see `tp_gym.runs.workers`).
    Returns True if all jobs ran, False if `stop` was set first (episodes in flight are
    cancelled and not written; finished ones are).
    """
    from tp_gym.runs.episode import to_json_line

    settings = settings or PlaySettings()
    preload(jobs, settings)
    with tuned_collector():
        writer = EpisodeWriter(path)
        commit = GroupCommit(writer)
        pool = EnvPool(settings)
        pending: Iterator[Job] = iter(jobs) if claims is None else claims
        stop = stop or asyncio.Event()

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
                done = EpisodeDone.of(log)
                report = None if on_done is None else functools.partial(on_done, done)
                commit.submit(to_json_line(log), report)
                if commit.backlog >= count:
                    # The disk is behind: wait, so that what is played is soon on disk and
                    # a stop loses no more than the episodes in flight.
                    await commit.drain()

        count = max(1, min(concurrency, len(jobs)))
        lanes = [asyncio.create_task(lane(number)) for number in range(count)]
        stopper = asyncio.create_task(stop.wait())
        try:
            everything = asyncio.gather(*lanes)
            # Stopping cancels the lanes, which ends `everything` with a CancelledError that is
            # expected: mark it retrieved so asyncio does not report it.
            everything.add_done_callback(lambda done: done.cancelled() or done.exception())
            await asyncio.wait([everything, stopper], return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                for task in lanes:
                    task.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                return False
            everything.result()
            return True
        finally:
            stopper.cancel()
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            await commit.drain()
            writer.close()


async def _run_here(
    jobs: Sequence[Job],
    path: Path,
    concurrency: int,
    workers: int,
    settings: PlaySettings,
    on_done: Callable[[EpisodeDone], None],
) -> bool:
    """Play `jobs` from this event loop (with ``workers - 1`` helper processes if more
    than one), SIGINT/SIGTERM stopping the run cleanly when this is the main thread."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int) -> None:
            stop.set()
            for number in installed:  # a second signal falls back to the default
                loop.remove_signal_handler(number)

        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(number, interrupt, number)
                installed.append(number)
    try:
        if workers > 1:
            from tp_gym.runs.workers import run_with_workers

            return await run_with_workers(
                jobs,
                path,
                workers=workers,
                concurrency=concurrency,
                settings=settings,
                stop=stop,
                on_done=on_done,
            )
        return await run_jobs(
            jobs, path, concurrency=concurrency, settings=settings, stop=stop, on_done=on_done
        )
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


def _public_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """LLM options fit for the manifest: anything that looks like a secret is left out."""
    secret = ("key", "token", "secret", "password")
    return {
        k: v
        for k, v in (options or {}).items()
        if not any(word in k.lower() for word in secret) and isinstance(v, str | int | float | bool)
    }


def agent_names(agents: Iterable[str], llm_options: dict[str, Any] | None = None) -> dict[str, str]:
    """Build each agent once (no episode is played) and return spec -> logged name.

    Raises `ValueError` for an unknown agent spec (and whatever an agent raises for bad
    options).
    """
    from tp_gym.agents import make_agent

    names = {}
    for spec in agents:
        names[spec] = make_agent(spec, **PlaySettings(llm_options or {}).agent_options(spec)).name
    seen: dict[str, str] = {}
    for spec, name in names.items():
        if name in seen:
            raise ValueError(f"agents {seen[name]!r} and {spec!r} would both log as {name!r}")
        seen[name] = spec
    return names


def evaluate(
    grid: Grid | Sequence[Job],
    out_dir: str | Path,
    *,
    concurrency: int = 16,
    workers: int = 1,
    resume: bool = False,
    retry_errors: bool = False,
    llm_options: dict[str, Any] | None = None,
    narrator: str | None = None,
    progress: bool | Callable[[EpisodeDone], None] = False,
    metadata: dict[str, Any] | None = None,
) -> EvalResult:
    """Play every episode of `grid`, appending logs to ``out_dir/episodes.jsonl``.

    `concurrency` bounds the episodes in flight (over all `workers` processes together);
    `llm_options` go to every ``llm:`` agent (``api_base``, ``temperature``, ...).
    `narrator` is a litellm model that retells each step's outcome (the study's dual-model
    mode, `tp_gym.llm.narrator.NarratorWrapper`); it shares the agents' transport and
    cassette options and its calls are logged under the role ``narrator``.
    Without `resume`, a directory that already holds episodes is refused (`FileExistsError`);
    with it, episodes already logged are skipped. `progress=True` shows a rich progress bar
    (episodes, errors, tokens, cost); a callable receives an `EpisodeDone` per episode.
    `metadata` is merged into the run manifest (``run.json``).

    Safe to call from a notebook with a running event loop (the run gets its own thread).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers > 1 and not FILE_LOCKS:  # pragma: no cover
        raise ValueError("several worker processes need POSIX file locks (fcntl)")
    if isinstance(grid, Grid):
        jobs = grid.jobs(agent_names(grid.agents, llm_options))
    else:
        jobs = list(grid)
        agent_names({job.agent for job in jobs}, llm_options)
    play = PlaySettings(dict(llm_options or {}), narrator)
    if needs_litellm(jobs, play) and not importlib.util.find_spec("litellm"):
        raise ImportError("LLM agents need litellm; install it with: pip install 'tp_gym[llm]'")
    if narrator is not None and jobs:
        play.make_env(
            jobs[0].env_id, jobs[0].protocol
        )  # a bad narrator model or option fails here, once
    run_dir = Path(out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir}: exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    with dir_lock(run_dir):
        path = run_dir / EPISODES_FILE
        retried = 0
        done: set[EpisodeKey] = set()
        files = episode_files(run_dir)
        if files and not resume and any(f.stat().st_size for f in files):
            count = sum(1 for f in files for line in f.open("rb") if line.strip())
            raise FileExistsError(
                f"{run_dir} already holds {count} episode(s); resume that run "
                "(--resume) or choose another output directory"
            )
        if resume:
            repair_tail(path)
            if retry_errors:
                retried = sum(drop_errored(file) for file in files)
            for file in files:
                keys, _ = scan(file)
                done |= keys
        todo = [job for job in jobs if job.key not in done]
        result = EvalResult(run_dir=run_dir, total=len(jobs), skipped=len(jobs) - len(todo))
        result.retried = retried
        settings = {
            "concurrency": concurrency,
            "workers": workers,
            "resume": resume,
            "episodes_to_play": len(todo),
            "llm_options": _public_options(llm_options),
            "narrator": narrator,
        }
        write_manifest(run_dir, grid if isinstance(grid, Grid) else None, settings, metadata or {})
        if not todo:
            return result
        callback = progress if callable(progress) else None
        display = _ProgressDisplay(result) if progress is True else None

        def on_done(episode: EpisodeDone) -> None:
            result.add(episode)
            if callback is not None:
                callback(episode)
            if display is not None:
                display.update()

        started = time.perf_counter()
        processes = min(workers, concurrency, len(todo))
        with display if display is not None else contextlib.nullcontext():
            finished = _run_in_loop(_run_here(todo, path, concurrency, processes, play, on_done))
        result.seconds = time.perf_counter() - started
        result.interrupted = not finished
        return result


def _run_in_loop(coroutine: Any) -> bool:
    """`asyncio.run`, or in a helper thread if this thread already runs a loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name="tp-gym-evaluate")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return bool(box["value"])


@dataclass
class _ProgressDisplay:
    """A rich progress bar: episodes done of the grid, errors, tokens and dollars so far."""

    result: EvalResult
    _progress: Any = field(default=None, init=False)
    _task: Any = field(default=None, init=False)

    def __enter__(self) -> _ProgressDisplay:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]episodes"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("errors {task.fields[errors]}"),
            TextColumn("tokens {task.fields[tokens]:,}"),
            TextColumn("${task.fields[cost]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(
            "eval",
            total=self.result.total,
            completed=self.result.skipped,
            errors=0,
            tokens=0,
            cost=0.0,
        )
        return self

    def update(self) -> None:
        result = self.result
        self._progress.update(
            self._task,
            completed=result.skipped + result.completed,
            errors=result.errors,
            tokens=result.tokens,
            cost=result.cost_usd,
        )

    def __exit__(self, *exc: object) -> None:
        self.update()
        self._progress.__exit__(*exc)
