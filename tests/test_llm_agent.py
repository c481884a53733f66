"""LLMAgent through litellm over real HTTP to the loopback server: protocols, mistakes as
observations, context policies, sync/async parity, retries, timeouts and accounting."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import gymnasium as gym
import pytest
from conftest import fast_llm

import tp_gym
from tp_gym.agents import make_agent
from tp_gym.agents.llm import LLMAgent
from tp_gym.llm.errors import LLMAuthError, LLMRequestError
from tp_gym.runner import arun_episode, run_episode
from tp_gym.testing import Reply, error_reply, text_reply, tool_reply

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"


def names_by_role(seed: int, env_id: str = ENV_ID) -> dict[str, str]:
    """The shown tool name of each role in the episode `seed` (what a script may call)."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    oracle = env.unwrapped.oracle()
    return dict(zip(oracle.roles, env.unwrapped.tool_names()))


def test_tools_protocol_plays_a_full_episode_and_logs_everything(server, api_key):
    agent = LLMAgent("openai/gpt-4o-mini", temperature=0.7, **fast_llm(server))
    log = run_episode(gym.make(ENV_ID), agent, seed=4)
    assert log.error is None and (log.terminated or log.truncated)
    assert log.invalid_actions == 0
    assert all(step.valid and step.tool for step in log.steps)
    usage = log.usage["agent"]
    assert usage.calls == len(log.steps) == server.stats["replies"]
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.priced and usage.cost_usd > 0
    first = log.steps[0].messages
    assert first[0]["role"] == "system"
    for step in log.steps:
        reply = step.messages[-1]
        assert reply["role"] == "assistant" and len(reply["tool_calls"]) == 1
        assert reply["tool_calls"][0]["function"]["name"] == step.tool
        assert reply["usage"]["prompt_tokens"] > 0
    per_call = sum(step.messages[-1]["usage"]["cost_usd"] for step in log.steps)
    assert per_call == pytest.approx(usage.cost_usd)
    request = server.requests[-1]
    assert request["temperature"] == 0.7
    assert [t["function"]["name"] for t in request["tools"]] == [
        t["function"]["name"] for t in tp_gym_tools(seed=4)
    ]
    if len(log.steps) > 1:
        assert request["messages"][-1]["role"] == "tool"


def tp_gym_tools(seed: int) -> list[dict[str, Any]]:
    env = gym.make(ENV_ID)
    env.reset(seed=seed)
    return env.unwrapped.tool_schemas()


def test_json_protocol_lists_tools_in_the_prompt_and_sends_text(server, api_key):
    agent = make_agent("llm:openai/gpt-4o-mini", protocol="json", **fast_llm(server))
    log = run_episode(gym.make(ENV_ID), agent, seed=2)
    assert log.error is None and log.invalid_actions == 0
    request = server.requests[-1]
    assert "tools" not in request
    system = request["messages"][0]["content"]
    for schema in tp_gym_tools(seed=2):
        assert json.dumps(schema["function"]["name"]) in system
    assert all(json.loads(step.action)["tool_choice"] == step.tool for step in log.steps)
    if len(log.steps) > 1:
        assert request["messages"][-1]["role"] == "user"


def test_a_model_without_a_price_costs_zero_and_is_marked_unpriced(server, api_key):
    agent = LLMAgent("openai/our-local-finetune", **fast_llm(server))
    log = run_episode(gym.make(ENV_ID), agent, seed=1)
    usage = log.usage["agent"]
    assert log.error is None and usage.calls >= 1 and usage.prompt_tokens > 0
    assert usage.cost_usd == 0.0 and usage.priced is False


def _bad_reply(kind: str, names: dict[str, str]) -> Reply:
    inspect = names["inspect"]
    return {
        "no_tool_call": text_reply("I would rather think about it some more."),
        "empty_reply": text_reply(""),
        "several_calls": Reply(tool_calls=((inspect, "{}"), (names["validator"], "{}"))),
        "broken_json": tool_reply(inspect, '{"patient_id": "PT-1"'),
        "unknown_tool": tool_reply("delete_everything", {}),
        "bad_arguments": tool_reply(inspect, {"no_such_argument": 1}),
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "no_tool_call",
        "empty_reply",
        "several_calls",
        "broken_json",
        "unknown_tool",
        "bad_arguments",
    ],
)
def test_model_mistakes_are_invalid_actions_and_the_episode_goes_on(make_server, api_key, kind):
    names = names_by_role(seed=0)
    server = make_server(script=lambda request: _bad_reply(kind, names))
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    log = run_episode(gym.make(ENV_ID, max_turns=3), agent, seed=0)
    assert log.error is None and log.truncated
    assert log.invalid_actions == len(log.steps) == 3
    assert all(not step.valid and "invalid action" in step.observation for step in log.steps)
    # every request stayed a valid conversation: one tool message per tool call id
    for request in list(server.requests)[1:]:
        calls = [
            c["id"]
            for m in request["messages"]
            if m["role"] == "assistant"
            for c in m.get("tool_calls") or []
        ]
        answered = [m["tool_call_id"] for m in request["messages"] if m["role"] == "tool"]
        assert calls == answered
        assert all(m.get("content") or m.get("tool_calls") for m in request["messages"])


def test_window_context_keeps_the_last_turns_and_summarises_older_ones(make_server, api_key):
    names = names_by_role(seed=0)
    server = make_server(script=lambda request: tool_reply(names["inspect"], {}))
    agent = LLMAgent("openai/gpt-4o-mini", context="window", window=2, **fast_llm(server))
    log = run_episode(gym.make(ENV_ID, max_turns=6), agent, seed=0)
    assert log.error is None and len(log.steps) == 6
    last = server.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    summary = last[1]["content"].split("Summary of earlier turns:\n", 1)[1].splitlines()
    assert len(summary) == 3 and all(line.startswith("- Turn ") for line in summary)
    assert log.steps[-1].messages[0]["context"] == "summary"
    full = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    run_episode(gym.make(ENV_ID, max_turns=6), full, seed=0)
    assert len(server.requests[-1]["messages"]) == 2 + 2 * 5


def test_async_and_sync_agents_play_the_same_episode(server, api_key):
    sync_log = run_episode(gym.make(ENV_ID), LLMAgent("openai/gpt-4o-mini", **fast_llm(server)), 9)
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    async_log = asyncio.run(arun_episode(gym.make(ENV_ID), agent, seed=9))
    assert async_log.model_dump() == sync_log.model_dump()


def test_retryable_errors_are_retried_then_succeed(make_server, api_key):
    failures = iter([Reply(fault="rate_limit"), error_reply(503), Reply(fault="empty_choices")])
    server = make_server(script=lambda request: next(failures, None))
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server, max_retries=3))
    log = run_episode(gym.make(ENV_ID), agent, seed=0)
    assert log.error is None
    assert server.stats["rate_limit"] == server.stats["status_503"] == 1
    assert server.stats["empty_choices"] == 1
    assert log.usage["agent"].calls == len(log.steps), "failed attempts are not billed"


def test_retries_are_bounded_and_the_cause_is_reported(make_server, api_key):
    server = make_server(script=lambda request: Reply(fault="server_error"))
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server, max_retries=2))
    log = run_episode(gym.make(ENV_ID), agent, seed=0)
    assert log.outcome == "error" and log.steps == []
    assert log.error.startswith("LLMUnavailableError: openai/gpt-4o-mini: gave up after 3")
    assert "HTTP 500" in log.error and "\n" not in log.error
    assert server.stats["requests"] == 3


def test_a_hung_server_fails_within_the_per_call_timeout(make_server, api_key):
    server = make_server(script=lambda request: Reply(fault="timeout"), hang=5)
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server, timeout=0.3, max_retries=1))
    started = time.perf_counter()
    log = run_episode(gym.make(ENV_ID), agent, seed=0)
    assert time.perf_counter() - started < 3
    assert "gave up after 2 attempt(s)" in log.error and "Timeout" in log.error


def test_default_timeout_is_sixty_seconds_not_litellms():
    agent = LLMAgent("openai/gpt-4o-mini")
    assert agent.client.timeout == 60.0
    assert agent.client._transport()["max_retries"] == 0, "litellm must not retry on its own"


def test_auth_errors_fail_at_once_with_a_clear_message(make_server, api_key):
    server = make_server(api_key="the-right-key-000")
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    with pytest.raises(LLMAuthError, match="authentication failed") as caught:
        agent.reset({"text": "brief"}, tools=[], oracle=None, seed=0)
        agent.act({"text": "brief"})
    assert server.stats["requests"] == 1
    assert "\n" not in str(caught.value)


def test_a_missing_key_names_the_variable_to_set(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    log = run_episode(gym.make(ENV_ID), agent, seed=0)
    assert log.error.startswith("LLMAuthError") and "OPENAI_API_KEY" in log.error
    assert server.stats["requests"] == 0


def test_bad_requests_are_not_retried(make_server, api_key):
    server = make_server(script=lambda request: error_reply(400, "unsupported parameter"))
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    with pytest.raises(LLMRequestError, match="unsupported parameter"):
        agent.reset({"text": "brief"}, tools=[], oracle=None, seed=0)
        agent.act({"text": "brief"})
    assert server.stats["requests"] == 1


def test_usage_is_per_episode_when_an_agent_is_reused(server, api_key):
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    env = gym.make(ENV_ID)
    logs = [run_episode(env, agent, seed=s) for s in (0, 1)]
    for log in logs:
        assert log.usage["agent"].calls == len(log.steps)


def test_bad_options_are_value_errors():
    with pytest.raises(ValueError, match="protocol"):
        LLMAgent("openai/x", protocol="xml")
    with pytest.raises(ValueError, match="context"):
        LLMAgent("openai/x", context="everything")
    with pytest.raises(ValueError, match="timeout"):
        LLMAgent("openai/x", timeout=0)
    with pytest.raises(ValueError, match="cassette mode"):
        LLMAgent("openai/x", cassette="c.jsonl", cassette_mode="rewind")


def test_every_registered_env_is_playable(server, api_key):
    for env_id in tp_gym.env_ids():
        log = run_episode(gym.make(env_id), LLMAgent("openai/m", **fast_llm(server)), seed=0)
        assert log.error is None, (env_id, log.error)
        assert log.invalid_actions == 0, env_id


def test_unknown_llm_errors_are_mapped_without_leaking_context(api_key):
    """An exception that is not a provider error (an unknown provider) is a request error."""
    agent = LLMAgent("no-such-provider/model", timeout=1, max_retries=0)
    agent.reset({"text": "brief"}, tools=[], oracle=None, seed=0)
    with pytest.raises(LLMRequestError) as caught:
        agent.act({"text": "brief"})
    assert caught.value.__context__ is None and caught.value.__cause__ is None
