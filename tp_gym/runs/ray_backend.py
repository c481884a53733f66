"""The Ray backend: `evaluate(..., backend="ray")` plays each episode as a Ray task.

Each job of the run becomes one Ray task (`play_one`), which plays the episode with
`play_job` in the worker's own event loop and returns it as a `Finished` (its log line and
summary). This process, the driver, keeps at most `concurrency` tasks submitted and
unfinished, awaits them from its event loop, and hands each result to `deliver`: the
evaluation appends it to the log, so only the driver writes, and ``--resume`` works as with
the other backends.

Guarantees:

- **Exactly once.** One task (one ObjectRef) per job, and each result is delivered once (a
  set of delivered keys guards against a duplicate anyway).
- **Lost workers.** A task whose worker process (or node) dies is retried by Ray, up to
  `max_retries` times (`retry_exceptions=False`: an exception raised by the episode is not
  retried; `run_episode` turns agent errors into an episode with an ``error`` anyway). Its
  first attempt returned nothing, so a retry never doubles an episode.
- **A task that fails for good** (its worker died more than `max_retries` times, or the
  task itself raised, e.g. tp_gym missing on a node) delivers nothing. No new task is
  submitted after it; once the tasks in flight are done (and delivered), `play` raises
  `BackendError` naming the job and the cause. ``--resume`` plays it later.
- **Stop** (Ctrl-C, SIGTERM, fail fast): nothing more is submitted or delivered, the tasks
  in flight are cancelled (``ray.cancel(force=False)``) and `play` returns False.
- **A killed driver** takes its tasks with it (Ray ends a job's workers when its driver
  goes); what was written stays, and ``--resume`` plays the rest.

Where Ray runs: with ``address=None`` (or ``"local"``), a Ray instance is started on this
machine for the run, quietly and without dashboard or usage stats, and shut down after it.
With an address (``HOST:PORT`` of a cluster's head, or ``auto`` for the cluster started
with ``ray start`` on this machine) the driver connects to that cluster and only
disconnects at the end; the cluster keeps running. An address that cannot be reached fails
in `connect_timeout` seconds with one `ConnectionError` naming it. If this process is
already connected (the caller ran ``ray.init``), that connection is used and left open.

Every node needs tp_gym importable by its Ray workers, in the same version as the driver:
``pip install 'tp_gym[ray]'`` in the Python environment that runs ``ray start``. A Ray
instance started here, from this environment, has it. Ray workers do not inherit the
driver's environment: the provider credentials the run's models read (``OPENAI_API_KEY``,
...) are taken from this process's environment and passed to the tasks through Ray's
object store (see `credentials`); the other LLM options travel in the `PlaySettings`.

Resources: every task asks for `num_cpus_per_episode` CPUs. By default that is 1 for runs
of scripted agents only (their episodes use the CPU and nothing else) and 0.25 when the run
calls a model (an ``llm:`` agent or a narrator), since such an episode spends nearly all its
time waiting on the network: four of them share a core. Each task in flight occupies one
Ray worker process (a Python process that imports tp_gym and, for LLM runs, the model
client on its first task), so `concurrency` is also about how many worker processes the run
keeps busy over the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Sequence
from typing import Any

from tp_gym.runs.backends import BackendError, Deliver
from tp_gym.runs.grid import EpisodeKey, Job
from tp_gym.runs.play import EnvPool, Finished, PlaySettings, needs_litellm, play_job

MISSING_RAY = "the ray backend needs Ray: pip install 'tp_gym[ray]'"

SCRIPTED_CPUS = 1.0
"""CPUs per episode task when no episode of the run calls a model."""
LLM_CPUS = 0.25
"""CPUs per episode task when the run calls a model (its episodes mostly wait)."""
MAX_RETRIES = 3
"""Times Ray retries a task whose worker died."""
CONNECT_TIMEOUT = 10.0
"""Seconds to reach a cluster's address before giving up."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def import_ray() -> Any:
    """Ray, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(MISSING_RAY) from None
    return ray


class RayBackend:
    """Plays every episode as a Ray task (see the module docstring)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus_per_episode: float | None = None,
        max_retries: int = MAX_RETRIES,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        if num_cpus_per_episode is not None and num_cpus_per_episode <= 0:
            raise ValueError(f"num_cpus_per_episode must be positive, got {num_cpus_per_episode}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.address = None if address in (None, "", "local") else address
        if self.address is not None:
            cluster_address(self.address)  # a malformed address fails here, before the run
        self.num_cpus_per_episode = num_cpus_per_episode
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout

    def cpus_per_episode(self, jobs: Sequence[Job], settings: PlaySettings) -> float:
        """What each task asks for: `num_cpus_per_episode`, or the default for these jobs."""
        if self.num_cpus_per_episode is not None:
            return self.num_cpus_per_episode
        return LLM_CPUS if needs_litellm(jobs, settings) else SCRIPTED_CPUS

    async def play(
        self,
        jobs: Sequence[Job],
        settings: PlaySettings,
        *,
        concurrency: int,
        stop: asyncio.Event,
        deliver: Deliver,
    ) -> bool:
        """Play `jobs` as Ray tasks, at most `concurrency` in flight; True if all ran.

        Raises `ConnectionError` if the cluster cannot be reached and `BackendError` if a
        task failed for good (after the tasks in flight are done).
        """
        ray = import_ray()
        session = _Session(ray, self.address, self.connect_timeout)
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        # ray.init takes seconds: in a thread, so that a Ctrl-C meanwhile still sets `stop`.
        await asyncio.to_thread(session.open)
        if sigterm is not None:
            # Ray's core installs its crash handler for SIGTERM, which prints a stack trace
            # before passing the signal on; give SIGTERM back to its handler (a clean stop).
            signal.signal(signal.SIGTERM, sigterm)
        try:
            if stop.is_set():
                return False
            return await self._play(ray, jobs, settings, concurrency, stop, deliver)
        finally:
            await asyncio.to_thread(session.close)

    async def _play(
        self,
        ray: Any,
        jobs: Sequence[Job],
        settings: PlaySettings,
        concurrency: int,
        stop: asyncio.Event,
        deliver: Deliver,
    ) -> bool:
        task = ray.remote(play_one).options(
            num_cpus=self.cpus_per_episode(jobs, settings),
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        shared = ray.put(settings)  # shipped once, not with every task
        keys = ray.put({**credentials(jobs, settings), **spec_files_variable()})
        pending = iter(jobs)
        running: dict[asyncio.Future[Any], tuple[Any, Job]] = {}
        delivered: set[EpisodeKey] = set()
        failures: list[tuple[Job, BaseException]] = []
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                while not failures and len(running) < concurrency:
                    job = next(pending, None)
                    if job is None:
                        break
                    ref = task.remote(job, shared, keys)
                    running[ref.as_future()] = (ref, job)
                if not running:
                    break
                done, _ = await asyncio.wait(
                    [*running, stopper], return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    if future is stopper or stop.is_set():
                        continue
                    _, job = running.pop(future)
                    try:
                        finished: Finished = future.result()
                    except Exception as error:  # noqa: BLE001 - raised below, with the job
                        failures.append((job, error))
                        continue
                    if job.key in delivered:  # pragma: no cover - one task per job
                        continue
                    delivered.add(job.key)
                    await deliver(finished)
            if stop.is_set():
                return False
            if failures:
                raise BackendError(self._explain(failures))
            return True
        finally:
            stopper.cancel()
            for future, (ref, _) in running.items():
                future.cancel()
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=False)

    def _explain(self, failures: list[tuple[Job, BaseException]]) -> str:
        """The error for tasks that failed for good: one line first, then the details."""
        job, error = failures[0]
        cause = getattr(error, "cause", None)  # a RayTaskError: what the task raised
        if isinstance(cause, BaseException):
            reason = f"{type(cause).__name__}: {cause}"
        else:
            reason = f"{str(error).strip() or type(error).__name__} (after up to {self.max_retries} retries)"
        reason = " ".join(_ANSI.sub("", reason).split())
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return (
            f"an evaluation worker failed on Ray: {describe(job)}{more} could not be played: "
            f"{reason}; nothing was written for it, continue with --resume\n"
            + _ANSI.sub("", str(error))
        )


def credentials(jobs: Sequence[Job], settings: PlaySettings) -> dict[str, str]:
    """The provider credentials set in this environment that the run's models read
    (``OPENAI_API_KEY``, ...): Ray workers do not inherit the driver's environment."""
    from tp_gym.agents.mitigations import llm_models

    models = {model for job in jobs for model in llm_models(job.agent)}
    if settings.narrator is not None:
        models.add(settings.narrator)
    if not models:
        return {}
    from tp_gym.llm.providers import credential_variables

    names = sorted({name for model in models for name in credential_variables(model)})
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def spec_files_variable() -> dict[str, str]:
    """``TP_GYM_SPEC_FILES`` as set here (the spec files registered with
    `tp_gym.register_spec`), for the tasks: their workers register the same files."""
    from tp_gym import SPEC_FILES_VARIABLE

    value = os.environ.get(SPEC_FILES_VARIABLE)
    return {SPEC_FILES_VARIABLE: value} if value else {}


def describe(job: Job) -> str:
    """A job in words, for error messages."""
    return f"{job.agent} on {job.env_id} seed {job.seed} ({job.protocol} protocol)"


def cluster_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``HOST:PORT`` address (``ray://`` allowed), None for ``auto``.

    Raises `ValueError` for anything else.
    """
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"bad Ray address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379) or auto"
        )
    return host, int(port)


class _Session:
    """This process's connection to Ray for one run: opened, then closed (see `open`)."""

    def __init__(self, ray: Any, address: str | None, timeout: float) -> None:
        self.ray = ray
        self.address = address
        self.timeout = timeout
        self.owned = False
        self.level: int | None = None

    def open(self) -> None:
        """Start a local Ray instance (no address), or connect to the cluster at the address;
        nothing if this process is already connected."""
        ray = self.ray
        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        logger = logging.getLogger("ray")
        self.level = logger.level
        logger.setLevel(logging.ERROR)  # Ray's start-up chatter, before ray.init sets it
        options: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        }
        if self.address is None:
            try:
                ray.init(address="local", **options)
            except Exception:
                self._restore_logging()
                raise
            self.owned = True
            return
        where = cluster_address(self.address)
        if where is not None:
            self._probe(*where)
        # Ray retries a connection for about 20 s; an address that answers but refuses us
        # (a token it does not get, a version mismatch) fails in `timeout` seconds instead.
        budget = "RAY_gcs_server_port_wait_time_s"
        preset = budget in os.environ
        if not preset:
            os.environ[budget] = str(max(1, round(self.timeout)))
        try:
            ray.init(address=self.address, **options)
        except Exception as error:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._restore_logging()
            raise ConnectionError(self._connect_error(error)) from None
        finally:
            if not preset:
                os.environ.pop(budget, None)
        self.owned = True

    def close(self) -> None:
        """Shut down the Ray instance started for the run, or disconnect from the cluster."""
        if not self.owned:
            return
        try:
            self.ray.shutdown()
        finally:
            self.owned = False
            self._restore_logging()

    def _probe(self, host: str, port: int) -> None:
        """Fail fast, in one line, if nothing answers at the address (ray.init would retry
        for about 20 s, printing as it goes)."""
        try:
            socket.create_connection((host, port), timeout=self.timeout).close()
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise ConnectionError(
                f"cannot reach the Ray cluster at {self.address}: {reason} "
                "(is `ray start --head` running there, and the port open?)"
            ) from None

    def _connect_error(self, error: BaseException) -> str:
        chain: list[BaseException] = []
        cause: BaseException | None = error
        while cause is not None and cause not in chain:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        text = " ".join(str(error).split()) or type(error).__name__
        message = f"cannot connect to the Ray cluster at {self.address}: {text}"
        if any("auth" in type(e).__name__.lower() or "AuthToken" in str(e) for e in chain):
            message += (
                "; the cluster uses token authentication: set RAY_AUTH_MODE=token with its "
                "token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
            )
        return message

    def _restore_logging(self) -> None:
        if self.level is not None:
            logging.getLogger("ray").setLevel(self.level)
            self.level = None


# ----------------------------------------------------------------------- in the workers

_loop: asyncio.AbstractEventLoop | None = None
_pool: tuple[PlaySettings, EnvPool] | None = None


def play_one(job: Job, settings: PlaySettings, keys: dict[str, str] | None = None) -> Finished:
    """The Ray task: play `job` in this worker's event loop and return it as a `Finished`.

    `keys` are the driver's provider credentials (see `credentials`), set in this worker's
    environment. A worker runs one task at a time; its event loop and its idle
    environments are kept for the next task (the loop, so that a model client's
    connections stay with one loop).
    """
    global _loop, _pool
    os.environ.update(keys or {})
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    if _pool is None or _pool[0] != settings:
        _pool = (settings, EnvPool(settings))
    try:
        log = _loop.run_until_complete(play_job(job, _pool[1], settings))
    except BaseException:
        # Cancelled (a KeyboardInterrupt from ray.cancel) or broken: start afresh next time.
        loop, _loop, _pool = _loop, None, None
        _discard(loop)
        raise
    return Finished.of(log)


def _discard(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left in `loop` and close it."""
    with contextlib.suppress(BaseException):
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    with contextlib.suppress(BaseException):
        loop.close()
