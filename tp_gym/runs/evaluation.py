"""The evaluation: a grid of episodes, played by a backend, appended to a resumable log.

A *grid* is agents x environments x variable settings x seeds (`Grid.build`), or a named
suite such as ``paper`` (`Grid.from_suite`); see `tp_gym.runs.grid`. `evaluate(grid,
out_dir)` hands the jobs to a backend (`tp_gym.runs.backends`: this process's event loop,
worker processes on this host, or Ray tasks on a cluster), which hands back each finished
episode; the evaluation alone appends it to ``out_dir/episodes.jsonl``, one line, written
with a single `write` under an exclusive file lock and fsynced before the episode counts as
done (episodes that finish together share one write and one fsync, in a background thread).
A killed run loses at most the episodes in flight; a torn last line is moved to a side file
before the next append (`tp_gym.runs.jsonl`).

The run directory is the run's alone (`tp_gym.runs.rundir`): a directory that is not empty
and holds no manifest of ours is refused, and so is a symlink inside it; the lock is taken
before anything is written, so a second run on the same directory touches nothing.

With ``resume=True`` the episodes already in the directory (in ``episodes.jsonl`` and any
``episodes-*.jsonl`` shards) are skipped, so a resumed run never plays an episode twice.
An episode is identified by `EpisodeLog.key`: (agent name, env id, full variable setting,
seed, protocol). Episodes that ended with an error are complete too (errors are data,
reported separately); ``retry_errors=True`` removes them from the log and plays them again.

Fail fast: when the first `fail_fast` episodes of a run all fail the same way (a bad key, an
endpoint down, an unknown model), the run stops at once with `EvalResult.stopped_early`
saying why, and those failures are not written, so the same command with ``--resume``
plays them once the cause is fixed.

Ctrl-C (SIGINT) or SIGTERM stops cleanly: no new episodes start, episodes in flight are
abandoned, finished ones are written, and `evaluate` returns with ``interrupted=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tp_gym.runs.backends import BACKENDS, Backend, LocalBackend
from tp_gym.runs.grid import EpisodeKey, Grid, Job, resolve_envs
from tp_gym.runs.play import (
    NARRATOR_OPTIONS,
    EpisodeDone,
    Finished,
    PlaySettings,
    needs_litellm,
    tuned_collector,
)
from tp_gym.runs.rundir import (
    EPISODES_FILE,
    FILE_LOCKS,
    MANIFEST_FILE,
    SHARD_PATTERN,
    EpisodeWriter,
    GroupCommit,
    RunDirError,
    clear_run,
    drop_errored,
    episode_files,
    load_run,
    repair_tail,
    run_dir_lock,
    scan,
    write_manifest,
)

__all__ = [
    "BACKENDS",
    "EPISODES_FILE",
    "MANIFEST_FILE",
    "NARRATOR_OPTIONS",
    "SHARD_PATTERN",
    "EpisodeDone",
    "EpisodeKey",
    "EvalResult",
    "Grid",
    "Job",
    "PlaySettings",
    "RunDirError",
    "episode_files",
    "evaluate",
    "load_run",
    "resolve_envs",
    "tuned_collector",
]

FAIL_FAST = 5
"""Episodes that must all fail the same way, at the start of a run, to stop it early."""


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
    """Of those, how many failed to run (an agent, model or env error; see `causes`)."""
    causes: Counter[str] = field(default_factory=Counter)
    """Failed episodes by cause (the exception's name)."""
    format_errors: int = 0
    """Study-protocol replies with no readable call: measured, not failures."""
    stopped_early: str | None = None
    """Why the run stopped at its start (`FAIL_FAST`), or None."""
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

    def __repr__(self) -> str:
        """One line: the run directory, episodes played, skipped and failed, time taken."""
        from tp_gym.display import eval_repr  # lazy: only notebooks need it

        return eval_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter's display: what this run did and the run's summary table (read from
        `path`: every episode of the run directory, as the report shows it)."""
        from tp_gym.display import eval_html

        return eval_html(self)

    def add(self, done: EpisodeDone) -> None:
        self.completed += 1
        if done.failed:
            self.errors += 1
            self.causes[done.cause] += 1
        elif done.error is not None:
            self.format_errors += 1
        self.tokens += done.tokens
        self.cost_usd += done.cost_usd


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


class FailFast:
    """Holds back the first failures of a run until it is clear they are not all alike.

    While the run is young, a failed episode is held instead of written. The first success,
    or a failure of another cause, releases what is held and ends the watch. `limit`
    failures of one cause in a row trip it: `tripped` is then the first of them, nothing
    held is written, and later failures are dropped while the run stops.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.watching = limit > 0
        self.held: list[Finished] = []
        self.tripped: EpisodeDone | None = None

    def admit(self, finished: Finished) -> list[Finished]:
        """The episodes to write now that `finished` is done."""
        done = finished.done
        if self.tripped is not None:
            return [] if done.failed else [finished]
        if not self.watching:
            return [finished]
        if not done.failed or (self.held and done.cause != self.held[0].done.cause):
            self.watching = False
            released, self.held = [*self.held, finished], []
            return released
        self.held.append(finished)
        if len(self.held) >= self.limit:
            self.tripped = self.held[0].done
        return []

    def release(self) -> list[Finished]:
        """At the end of a run that never tripped: what is still held (fewer than `limit`
        failures, so the run was too short to tell)."""
        released, self.held = ([] if self.tripped else self.held), []
        return released

    def explain(self) -> str:
        """One line on why the run stopped (only once tripped)."""
        assert self.tripped is not None
        error = " ".join((self.tripped.error or "").split())
        return (
            f"the first {self.limit} episodes all failed the same way ({error}); stopped "
            "without writing them: fix the cause, then run the same command with --resume"
        )


def make_backend(backend: str | Backend, workers: int, address: str | None) -> Backend:
    """The backend named `backend` (or `backend` itself): ``local`` is this process, or
    this process and ``workers - 1`` helper processes; ``ray`` runs on a Ray cluster."""
    if not isinstance(backend, str):
        return backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise ValueError("an address is only for the ray backend (--backend ray --address ...)")
    if backend == "ray":
        from tp_gym.runs.ray_backend import RayBackend

        return RayBackend(address=address)
    if backend == "processes" or workers > 1:
        from tp_gym.runs.workers import ProcessBackend

        return ProcessBackend(workers)
    return LocalBackend()


async def _drive(
    jobs: Sequence[Job],
    path: Path,
    backend: Backend,
    settings: PlaySettings,
    concurrency: int,
    watch: FailFast,
    on_done: Callable[[EpisodeDone], None],
) -> bool:
    """Play `jobs` with `backend`, appending each finished episode to `path`; True if all
    ran. SIGINT/SIGTERM stop the run cleanly when this is the main thread."""
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
    writer = EpisodeWriter(path)
    commit = GroupCommit(writer)

    def write(items: Iterable[Finished]) -> None:
        for item in items:
            commit.submit(item.line, functools.partial(on_done, item.done))

    async def deliver(finished: Finished) -> None:
        write(watch.admit(finished))
        if watch.tripped is not None:
            stop.set()
        if commit.backlog >= concurrency:
            # The disk is behind: hold the backend back, so that what is played is soon on
            # disk and a stop loses no more than the episodes in flight.
            await commit.drain()

    try:
        finished = await backend.play(
            jobs, settings, concurrency=concurrency, stop=stop, deliver=deliver
        )
        write(watch.release())
        return finished
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
        try:
            await commit.drain()
        finally:
            writer.close()


def evaluate(
    grid: Grid | Sequence[Job],
    out_dir: str | Path,
    *,
    concurrency: int = 16,
    workers: int = 1,
    backend: str | Backend = "local",
    address: str | None = None,
    resume: bool = False,
    retry_errors: bool = False,
    replace: bool = False,
    fail_fast: int = FAIL_FAST,
    llm_options: dict[str, Any] | None = None,
    narrator: str | None = None,
    progress: bool | Callable[[EpisodeDone], None] = False,
    metadata: dict[str, Any] | None = None,
) -> EvalResult:
    """Play every episode of `grid`, appending logs to ``out_dir/episodes.jsonl``.

    `concurrency` bounds the episodes in flight (over all workers together). `backend` is
    ``local`` (this process, or with ``workers=N`` this process and N-1 helpers),
    ``processes`` or ``ray`` (a Ray cluster at `address`, or a local one; needs
    ``pip install 'tp_gym[ray]'``), or a `Backend` object. `llm_options` go to every
    ``llm:`` agent (``api_base``, ``temperature``, ...). `narrator` is a litellm model that
    retells each step's outcome (the study's dual-model mode); it shares the agents'
    transport and cassette options.

    The directory must be new, empty or a run directory of ours (`RunDirError` otherwise).
    Without `resume`, one that already holds episodes is refused (`FileExistsError`); with
    it, episodes already logged are skipped. `replace=True` first deletes a previous run of
    the same ``metadata["command"]`` there (what `tp-gym demo` does). `fail_fast` (0 turns
    it off) is the number of same-cause failures at the start that stop the run.
    `progress=True` shows a rich progress bar; a callable receives an `EpisodeDone` per
    episode. `metadata` is merged into the run manifest (``run.json``), which never holds a
    credential. A write that fails (disk full, read-only) raises `OSError` naming the file;
    what was written stays valid, and `resume` completes the run later.

    Safe to call from a notebook with a running event loop (the run gets its own thread).
    """
    from tp_gym.llm.redact import public_llm_options

    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers > 1 and not FILE_LOCKS:  # pragma: no cover
        raise ValueError("several worker processes need POSIX file locks (fcntl)")
    if fail_fast < 0:
        raise ValueError(f"fail_fast must be 0 (off) or more, got {fail_fast}")
    chosen = make_backend(backend, workers, address)
    if isinstance(grid, Grid):
        jobs = grid.jobs(agent_names(grid.agents, llm_options))
    else:
        jobs = list(grid)
        agent_names({job.agent for job in jobs}, llm_options)
    play = PlaySettings(dict(llm_options or {}), narrator)
    if needs_litellm(jobs, play) and not importlib.util.find_spec("litellm"):
        raise ImportError("LLM agents need litellm; install it with: pip install 'tp_gym[llm]'")
    if narrator is not None and jobs:
        play.make_env(jobs[0].env_id, jobs[0].protocol)  # a bad narrator fails here, once
    run_dir = Path(out_dir)
    command = (metadata or {}).get("command", "eval")
    with run_dir_lock(run_dir):
        if replace:
            clear_run(run_dir, command)
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
            for file in files:
                repair_tail(file)
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
            "backend": backend if isinstance(backend, str) else type(backend).__name__,
            "address": public_llm_options({"address": address}).get("address"),
            "resume": resume,
            "episodes_to_play": len(todo),
            "llm_options": public_llm_options(llm_options),
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

        watch = FailFast(fail_fast if len(todo) > fail_fast else 0)
        started = time.perf_counter()
        with display if display is not None else contextlib.nullcontext():
            finished = _run_in_loop(_drive(todo, path, chosen, play, concurrency, watch, on_done))
        result.seconds = time.perf_counter() - started
        if watch.tripped is not None:
            result.stopped_early = watch.explain()
        result.interrupted = not finished and result.stopped_early is None
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
