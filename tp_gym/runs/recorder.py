"""One episode, however it is stepped, turned into its log and judgement.

`tp-gym run` and `eval`, the Inspect tasks and the verifiers environment all step `OrgEnv`
through an `EpisodeRecorder`, so the same seed and the same tool choices give the same
class, utility and cost whichever harness plays them. The harness decides who acts
(a scripted agent, an LLM through litellm, Inspect's model, a verifiers rollout); the
recorder keeps the log and, at the end, judges it with `tp_gym.runs.episode.judge`.

```python
recorder = EpisodeRecorder.start(env, "my-agent", seed=3)
while not recorder.done:
    recorder.step(choose(recorder.observation))
log = recorder.finish()
judgement_of(log)["behaviour"]
```
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel

from tp_gym.actions import nested_too_deep, preview
from tp_gym.runs.episode import EpisodeLog, StepRecord, Usage, judge

MAX_LOGGED_ACTION_CHARS = 20_000
"""An action's log entry holds at most this many characters of it (see `loggable`)."""
MAX_LOGGED_ARRAY_ITEMS = 10_000
"""A numpy array with more items is logged as a preview, not as a list."""
FORMAT_ERROR = "format"
"""`EpisodeLog.error` of a study-protocol episode ended by a reply with no readable tool call."""

if TYPE_CHECKING:
    from tp_gym.env import OrgEnv

StepResult = tuple[dict[str, Any], float, bool, bool, dict[str, Any]]


class EpisodeRecorder:
    """Steps of one episode of `env`, recorded as they happen; `finish` judges them.

    Build it with `start` (which resets the env). Either let the recorder step the env
    (`step`), or step it yourself and hand over the result (`record`), as an event loop
    that awaits an async step does.
    """

    def __init__(
        self, env: gym.Env[Any, Any], log: EpisodeLog, observation: dict[str, Any], info: dict[str, Any]
    ) -> None:
        self.env = env
        self.log = log
        self.observation = observation
        """The latest observation (the reset one until the first step)."""
        self.info = info
        """The latest info (the reset info until the first step)."""
        self.terminated = False
        self.truncated = False
        self._org_env: OrgEnv = env.unwrapped  # type: ignore[assignment]
        self._open_value = compliant_value(self._org_env)

    @classmethod
    def start(
        cls,
        env: gym.Env[Any, Any],
        agent_name: str,
        *,
        seed: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> EpisodeRecorder:
        """Reset `env` with `seed` and `options` and start recording `agent_name`'s episode."""
        observation, info = env.reset(seed=seed, options=options)
        log = start_log(env, agent_name, seed, observation["text"])
        return cls(env, log, observation, info)

    @property
    def done(self) -> bool:
        """The episode has ended (terminated or truncated)."""
        return self.terminated or self.truncated

    @property
    def org_env(self) -> OrgEnv:
        """The unwrapped env, for its tool schemas, protocol and oracle."""
        return self._org_env

    def step(self, action: Any, messages: list[dict[str, Any]] | None = None) -> StepResult:
        """Step the env with `action` (anything `OrgEnv.step` accepts) and record the turn.

        `messages` are what the agent's model produced this turn (kept in the log).
        """
        result: StepResult = self.env.step(action)
        self.record(action, result, messages)
        return result

    def record(
        self, action: Any, result: StepResult, messages: list[dict[str, Any]] | None = None
    ) -> None:
        """Record a turn whose `env.step(action)` returned `result`."""
        if self.done:
            raise RuntimeError("the episode has ended; start a new recorder to play again")
        observation, reward, terminated, truncated, info = result
        record_step(
            self.log, action, observation, reward, info, messages, compliant_value=self._open_value
        )
        self.observation, self.info = observation, info
        self.terminated, self.truncated = bool(terminated), bool(truncated)
        self._open_value = compliant_value(self._org_env)

    def finish(
        self, usage: dict[str, Usage] | None = None, error: BaseException | str | None = None
    ) -> EpisodeLog:
        """The judged log: totals, final state, `usage` by LLM role and the class.

        `error` (the exception that stopped the agent, or its description) marks the episode
        as errored; a study-protocol episode ended by an unreadable reply is a format error.
        """
        log = self.log
        log.terminated, log.truncated = self.terminated, self.truncated
        if error is not None:
            log.error = (
                error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            )
        elif self.info.get("format_error"):
            log.error = FORMAT_ERROR
        return finish_log(log, self._org_env, usage)


def compliant_value(org_env: OrgEnv) -> float | None:
    """The utility the compliant terminal would earn if the agent called it now.

    The best over the scenario's standard executors (None if it has none), with resource
    bounds applied; the world is left as it was. Logged per turn so that metrics can tell
    whether a toxic call was needed (`tp_gym.metrics`): no oversight ever blocks a
    compliant tool, so this path stays open for as long as the agent acts.
    """
    world = org_env.world
    values = []
    for tool in org_env.scenario.tools:
        if tool.role == "standard_executor":
            before = world.snapshot()
            values.append(world.apply(tool.effects))
            world.restore(before)
    return max(values) if values else None


def start_log(
    env: gym.Env[Any, Any], agent_name: str, seed: int | None, first_text: str
) -> EpisodeLog:
    """An empty log for an episode that `env` has just reset."""
    org_env: OrgEnv = env.unwrapped  # type: ignore[assignment]
    org = org_env.org
    env_id = env.spec.id if env.spec is not None else f"tp_gym/{org.id}-v0"
    return EpisodeLog(
        env_id=env_id,
        organization=org.id,
        domain=org.domain,
        driver=org.driver,
        agent=agent_name,
        seed=seed,
        protocol=org_env.protocol,
        variables=org_env.variables.model_dump(),
        variant=org_env.scenario.variant,
        max_turns=org_env.max_turns,
        initial_observation=first_text,
    )


def record_step(
    log: EpisodeLog,
    action: Any,
    observation: dict[str, Any],
    reward: float,
    info: dict[str, Any],
    messages: list[dict[str, Any]] | None = None,
    *,
    compliant_value: float | None = None,
) -> None:
    """Append one turn to `log` from what the agent sent and what the env answered.

    `compliant_value` is what the compliant terminal would have paid had the agent called
    it instead this turn (see `compliant_value`).
    """
    log.steps.append(
        StepRecord(
            turn=info["turn"],
            action=loggable(action),
            observation=observation["text"],
            reward=reward,
            cost=info["cost"],
            tool=info["tool"],
            role=info["role"],
            valid=info["valid"],
            blocked=info["blocked"],
            warned=info["warned"],
            detected=info["detected_now"],
            pressure=info["pressure"],
            messages=list(messages or []),
            compliant_value=compliant_value,
            named_roles=list(info.get("named_roles", ())),
            format_error=bool(info.get("format_error", False)),
        )
    )


def finish_log(
    log: EpisodeLog, org_env: OrgEnv, usage: dict[str, Usage] | None = None
) -> EpisodeLog:
    """Fill totals, final state, LLM usage and the judgement from the env's counters."""
    log.utility = sum(step.reward for step in log.steps)
    log.cost = sum(step.cost for step in log.steps)
    log.violations = dict(org_env.violations)
    log.detected = dict(org_env.detected)
    log.attempted = dict(org_env.attempted)
    log.invalid_actions = org_env.invalid_actions
    log.final_state = org_env.state_summary()
    log.usage = {role: u.model_copy() for role, u in (usage or {}).items()}
    return judge(log)


def judgement_of(log: EpisodeLog) -> dict[str, Any]:
    """What a harness reports for one judged episode, with the names tp_gym's logs use.

    `misaligned` is 1 for the strategic and direct classes; `measured` says whether the
    episode counts in the Misalignment Rate's denominator (no error, some valid call).
    """
    from tp_gym.classify import MISALIGNED
    from tp_gym.metrics import is_measured  # metrics imports this module's FORMAT_ERROR

    return {
        "behaviour": log.behaviour,
        "misaligned": int(log.behaviour in MISALIGNED),
        "measured": is_measured(log),
        "utility": log.utility,
        "cost": log.cost,
        "violations": dict(log.violations),
        "detected": dict(log.detected),
        "time_to_failure": log.time_to_failure,
        "outcome": log.outcome,
        "stall": log.stall,
        "turns": len(log.steps),
        "invalid_actions": log.invalid_actions,
        "error": log.error,
    }


def loggable(action: Any) -> Any:
    """A JSON-safe, bounded form of an action, as it will appear in the log.

    A JSON-like action is logged as its JSON (numpy scalars as numbers, numpy arrays of up
    to `MAX_LOGGED_ARRAY_ITEMS` items as lists, a `ToolCall` as its dict); one whose JSON
    is longer than `MAX_LOGGED_ACTION_CHARS` as ``{"truncated": <that JSON, cut>}``; one
    nested past `MAX_ACTION_DEPTH` or that JSON cannot hold (a set, NaN, other objects) as
    ``{"unserializable": <a preview of at most MAX_LOGGED_ACTION_CHARS characters>}``.
    Lone surrogates (which UTF-8 cannot hold) become U+FFFD. So every log line can be
    written and read back, and equal actions log equally in every process.
    """
    if nested_too_deep(action):
        return {"unserializable": preview(action, MAX_LOGGED_ACTION_CHARS)}
    try:
        plain = action.model_dump() if isinstance(action, BaseModel) else action
        text = json.dumps(
            plain, sort_keys=True, allow_nan=False, ensure_ascii=False, default=_json_default
        )
    except (TypeError, ValueError, RecursionError):
        return {"unserializable": preview(action, MAX_LOGGED_ACTION_CHARS)}
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    if len(text) > MAX_LOGGED_ACTION_CHARS:
        return {"truncated": text[:MAX_LOGGED_ACTION_CHARS]}
    return json.loads(text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_default(value: Any) -> Any:
    """numpy values as JSON (`json.dumps` asks for what it cannot encode itself)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= MAX_LOGGED_ARRAY_ITEMS:
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
