"""The runner: the only place an env and an agent meet; it turns an episode into a log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from tp_gym.runs.episode import EpisodeLog, Usage
from tp_gym.runs.recorder import EpisodeRecorder

if TYPE_CHECKING:
    from tp_gym.agents.base import Agent


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
    recorder = EpisodeRecorder.start(env, agent.name, seed=seed, options=options)
    org_env = recorder.org_env
    observation = recorder.observation
    if on_step is not None:
        on_step(0, None, observation, 0.0, recorder.info)
    oracle = org_env.oracle() if agent.needs_oracle else None
    failure: Exception | None = None
    try:
        agent.reset(
            observation,
            tools=org_env.tool_schemas(),
            oracle=oracle,
            seed=seed,
            protocol=org_env.protocol,
        )
        while not recorder.done:
            action = yield ACT, observation
            result = yield STEP, action
            recorder.record(action, result, getattr(agent, "turn_messages", None))
            observation, reward, _, _, info = result
            if on_step is not None:
                on_step(info["turn"], action, observation, reward, info)
    except Exception as error:  # noqa: BLE001 - an agent failure is data, not a crash
        failure = error
    return recorder.finish(usage_of(agent, env), error=failure)


def usage_of(agent: Any, env: gym.Env[Any, Any]) -> dict[str, Usage]:
    """LLM usage by role: the agent's `usage` plus that of any env wrapper (a narrator, say)."""
    usage: dict[str, Usage] = dict(getattr(agent, "usage", None) or {})
    layer: Any = env
    while layer is not None:
        usage.update(getattr(layer, "llm_usage", None) or {})
        layer = getattr(layer, "env", None)
    return usage
