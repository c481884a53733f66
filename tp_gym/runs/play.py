"""Playing one job of a run: the settings every episode shares, env reuse, and what a
finished episode reports.

A backend (`tp_gym.runs.backends`) calls `play_job` for each job it runs and hands the
result back to the evaluation as a `Finished`: the episode's log line, ready to append, and
its `EpisodeDone` summary for progress, accounting and the fail-fast check.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from tp_gym.runs.grid import EpisodeKey, Job

if TYPE_CHECKING:
    import gymnasium as gym

    from tp_gym.runs.episode import EpisodeLog


@dataclass(frozen=True)
class EpisodeDone:
    """A finished episode as progress displays and workers report it."""

    key: EpisodeKey
    error: str | None
    tokens: int
    cost_usd: float

    @property
    def failed(self) -> bool:
        """Whether the episode failed to run (an agent, model or env error). A study reply
        with no readable call (``error="format"``) is the model's behaviour, measured and
        reported, not a failure of the run."""
        from tp_gym.runs.recorder import FORMAT_ERROR

        return self.error is not None and self.error != FORMAT_ERROR

    @property
    def cause(self) -> str:
        """What kind of failure: the exception's name (``LLMAuthError``, ...), or the error."""
        if self.error is None:
            return ""
        name, sep, _ = self.error.partition(": ")
        return name if sep and name.isidentifier() else self.error.splitlines()[0][:80]

    @classmethod
    def of(cls, log: EpisodeLog) -> EpisodeDone:
        usage = log.usage.values()
        return cls(
            key=log.key,
            error=log.error,
            tokens=sum(u.prompt_tokens + u.completion_tokens for u in usage),
            cost_usd=math.fsum(u.cost_usd for u in usage),
        )


NARRATOR_OPTIONS = (
    "api_base",
    "api_key",
    "timeout",
    "max_retries",
    "cassette",
    "cassette_mode",
    "transport",
)
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
        from tp_gym.agents.mitigations import llm_models

        return dict(self.llm_options) if llm_models(spec) else {}

    def make_env(self, env_id: str, protocol: str) -> gym.Env[Any, Any]:
        """A new env for `env_id` under `protocol`, wrapped in the narrator if there is one."""
        import gymnasium as gym

        import tp_gym

        # Spec files registered in the parent reach worker processes and Ray tasks as
        # TP_GYM_SPEC_FILES; a Ray task gets it after its worker imported tp_gym.
        tp_gym._register_spec_files()
        if env_id not in gym.registry:
            raise gym.error.NameNotFound(
                f"{env_id} is not registered in this process; register a spec file with "
                "tp_gym.register_spec (or list it in TP_GYM_SPEC_FILES), not gymnasium's "
                "register, so that worker processes and Ray tasks know it too"
            )
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
    from tp_gym.agents.mitigations import llm_models

    return settings.narrator is not None or any(llm_models(job.agent) for job in jobs)


def transports(jobs: Iterable[Job], settings: PlaySettings) -> set[str]:
    """The LLM transports (``litellm``, ``openai``) that playing `jobs` will call."""
    from tp_gym.llm.providers import choose_transport

    options = settings.llm_options
    chosen = options.get("transport", "auto")
    from tp_gym.agents.mitigations import llm_models

    models = {model for job in jobs for model in llm_models(job.agent)}
    if settings.narrator is not None:
        models.add(settings.narrator)
    return {choose_transport(model, options.get("api_base"), chosen) for model in models}


def preload(jobs: Iterable[Job], settings: PlaySettings) -> None:
    """Import what the jobs' agents and narrator need before any episode starts.

    litellm takes seconds to import; imported by the first LLM call instead, it would
    freeze every episode in flight and inflate their timings. A run whose calls all go
    through the openai SDK (the fast path for OpenAI-compatible servers) never imports it.
    """
    if not needs_litellm(jobs, settings):
        return
    needed = transports(jobs, settings)
    if "litellm" in needed:
        from tp_gym.llm.client import load_litellm

        load_litellm()
    if "openai" in needed:
        from tp_gym.llm.openai_sdk import load_openai

        load_openai()


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


class Finished(NamedTuple):
    """A finished episode as a backend hands it back: its log line and its summary."""

    line: str
    done: EpisodeDone

    @classmethod
    def of(cls, log: EpisodeLog) -> Finished:
        from tp_gym.runs.episode import to_json_line

        return cls(to_json_line(log), EpisodeDone.of(log))
