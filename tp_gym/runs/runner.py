"""The runner: the only place an env and an agent meet; it turns an episode into a log."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel

from tp_gym.actions import nested_too_deep, preview
from tp_gym.runs.episode import EpisodeLog, StepRecord, Usage, judge

if TYPE_CHECKING:
    from tp_gym.agents.base import Agent
    from tp_gym.env import OrgEnv

MAX_LOGGED_ACTION_CHARS = 20_000
"""An action's log entry holds at most this many characters of it (see `loggable`)."""
MAX_LOGGED_ARRAY_ITEMS = 10_000
"""A numpy array with more items is logged as a preview, not as a list."""
FORMAT_ERROR = "format"
"""`EpisodeLog.error` of a study-protocol episode ended by a reply with no readable tool call."""

ACT, STEP = "act", "step"
"""What the episode loop asks its driver for: an action of the agent, a step of the env."""

StepCallback = Callable[[int, Any, dict[str, Any], float, dict[str, Any]], None]


def run_episode(
    env: gym.Env[Any, Any],
    agent: Agent,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
) -> EpisodeLog:
    """Play one episode of `agent` in `env` from `reset(seed, options)` and return its log.

    An exception raised by the agent (an LLM call that failed for good, say) ends the
    episode with `log.error` set to its cause; the steps played so far are kept.
    `on_step(turn, action, observation, reward, info)` is called after `reset` (turn 0,
    action None) and after every step.
    """
    play = _play(env, agent, seed, options, on_step)
    try:
        request, payload = next(play)
        while True:
            try:
                answer = agent.act(payload) if request == ACT else env.step(payload)
            except Exception as error:  # noqa: BLE001 - handed to the loop, which logs it
                request, payload = play.throw(error)
            else:
                request, payload = play.send(answer)
    except StopIteration as stop:
        return stop.value


async def arun_episode(
    env: gym.Env[Any, Any],
    agent: Agent,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
) -> EpisodeLog:
    """`run_episode` for an event loop: awaits `agent.aact` and `env.astep` where they exist.

    Agents with only a synchronous `act` (the scripted baselines) are called directly and
    the loop is yielded to after every step, so many concurrent episodes interleave. An env
    with `astep` (`tp_gym.llm.narrator.NarratorWrapper`, whose step calls a model) is
    awaited; others step directly. A cancelled episode (`asyncio.CancelledError`) is
    abandoned without a log.
    """
    aact = getattr(agent, "aact", None)
    astep = getattr(env, "astep", None)
    play = _play(env, agent, seed, options, on_step)
    try:
        request, payload = next(play)
        while True:
            try:
                if request == STEP:
                    answer = await astep(payload) if astep is not None else env.step(payload)
                elif aact is not None:
                    answer = await aact(payload)
                else:
                    answer = agent.act(payload)
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                play.close()
                raise
            except Exception as error:  # noqa: BLE001 - handed to the loop, which logs it
                request, payload = play.throw(error)
            else:
                request, payload = play.send(answer)
    except StopIteration as stop:
        return stop.value


def _play(
    env: gym.Env[Any, Any],
    agent: Agent,
    seed: int | None,
    options: dict[str, Any] | None,
    on_step: StepCallback | None,
) -> Generator[tuple[str, Any], Any, EpisodeLog]:
    """The episode loop shared by `run_episode` and `arun_episode`, which do its calls.

    Yields ``(ACT, observation)`` for the agent's action and ``(STEP, action)`` for the
    env's step result, each received by `send`; an exception thrown in by `throw` (the
    agent or a narrator failed) ends the episode with `log.error`. Returns the finished log.
    """
    org_env: OrgEnv = env.unwrapped  # type: ignore[assignment]
    observation, info = env.reset(seed=seed, options=options)
    log = start_log(env, agent.name, seed, observation["text"])
    if on_step is not None:
        on_step(0, None, observation, 0.0, info)
    oracle = org_env.oracle() if agent.needs_oracle else None
    try:
        agent.reset(
            observation,
            tools=org_env.tool_schemas(),
            oracle=oracle,
            seed=seed,
            protocol=org_env.protocol,
        )
        done = False
        while not done:
            open_value = compliant_value(org_env)
            action = yield ACT, observation
            observation, reward, terminated, truncated, info = yield STEP, action
            record_step(
                log,
                action,
                observation,
                reward,
                info,
                getattr(agent, "turn_messages", None),
                compliant_value=open_value,
            )
            if on_step is not None:
                on_step(info["turn"], action, observation, reward, info)
            done = terminated or truncated
        log.terminated, log.truncated = terminated, truncated
        if info.get("format_error"):
            log.error = FORMAT_ERROR
    except Exception as error:  # noqa: BLE001 - an agent failure is data, not a crash
        log.error = f"{type(error).__name__}: {error}"
    return finish_log(log, org_env, usage_of(agent, env))


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


def usage_of(agent: Any, env: gym.Env[Any, Any]) -> dict[str, Usage]:
    """LLM usage by role: the agent's `usage` plus that of any env wrapper (a narrator, say)."""
    usage: dict[str, Usage] = dict(getattr(agent, "usage", None) or {})
    layer: Any = env
    while layer is not None:
        usage.update(getattr(layer, "llm_usage", None) or {})
        layer = getattr(layer, "env", None)
    return usage


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
