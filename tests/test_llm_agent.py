"""LLMAgent through litellm over real HTTP to the loopback server: reply formats, defaults
per env protocol, mistakes as observations, the study's memory, sync/async parity,
retries, timeouts and accounting."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import gymnasium as gym
import pytest
from conftest import fast_llm

import tp_gym
from tp_gym.agents import make_agent
from tp_gym.agents.llm import STUDY_SETTINGS, LLMAgent
from tp_gym.llm.completion import CalledTool, Completion
from tp_gym.llm.conversation import (
    STUDY_REBUILDS,
    SUMMARY_HEADER,
    Conversation,
    window_view,
)
from tp_gym.llm.errors import LLMAuthError, LLMRequestError
from tp_gym.runs.recorder import FORMAT_ERROR
from tp_gym.runs.runner import arun_episode, run_episode
from tp_gym.testing import Reply, error_reply, text_reply, tool_reply

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"


def make_env(protocol: str = "extended", **options: Any) -> gym.Env[Any, Any]:
    return gym.make(ENV_ID, protocol=protocol, **options)


def names_by_role(seed: int, protocol: str = "extended") -> dict[str, str]:
    """The shown tool name of each role in the episode `seed` (what a script may call)."""
    env = make_env(protocol)
    env.reset(seed=seed)
    oracle = env.unwrapped.oracle()
    return dict(zip(oracle.roles, env.unwrapped.tool_names()))


def tp_gym_tools(seed: int, protocol: str = "extended") -> list[dict[str, Any]]:
    env = make_env(protocol)
    env.reset(seed=seed)
    return env.unwrapped.tool_schemas()


def listed_tools(system_prompt: str) -> list[dict[str, Any]]:
    """The tool lines of the json reply format's system prompt."""
    lines = [line for line in system_prompt.splitlines() if line.startswith('{"id"')]
    return [json.loads(line) for line in lines]


def test_tools_reply_format_plays_a_full_episode_and_logs_everything(server, api_key):
    agent = LLMAgent("openai/gpt-4o-mini", temperature=0.7, **fast_llm(server))
    log = run_episode(make_env("extended"), agent, seed=4)
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


@pytest.mark.parametrize("protocol", ["study", "extended"])
def test_json_reply_format_lists_numbered_tools_and_answers_in_the_studys_format(
    server, api_key, protocol
):
    agent = make_agent("llm:openai/gpt-4o-mini", reply_format="json", **fast_llm(server))
    log = run_episode(make_env(protocol), agent, seed=2)
    assert log.error is None and log.invalid_actions == 0
    request = server.requests[-1]
    assert "tools" not in request
    listed = listed_tools(request["messages"][0]["content"])
    shown = tp_gym_tools(seed=2, protocol=protocol)
    assert [t["id"] for t in listed] == list(range(1, len(shown) + 1))
    for entry, schema in zip(listed, shown):
        function = schema["function"]
        assert entry["name"] == function["name"]
        assert entry["description"] == function["description"]
        assert entry["parameters"] == function["parameters"]
    ids = {t["name"]: t["id"] for t in listed}
    for step in log.steps:
        reply = json.loads(step.action)
        assert set(reply) == {"reasoning", "tool_choice"}
        assert reply["tool_choice"]["name"] == step.tool
        assert reply["tool_choice"]["id"] == ids[step.tool]
        assert isinstance(reply["tool_choice"]["parameters"], dict)
    if len(log.steps) > 1:
        assert request["messages"][-1]["role"] == "user"


def test_study_protocol_defaults_reach_the_request(server, api_key):
    """Under study the agent answers in the study's JSON with its memory and settings."""
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    log = run_episode(make_env("study"), agent, seed=3)
    assert log.error is None and log.protocol == "study" and len(log.steps) >= 1
    requests = list(server.requests)
    assert len(requests) == len(log.steps)
    for request in requests:
        assert "tools" not in request
        assert request["temperature"] == STUDY_SETTINGS["temperature"] == 0.7
        assert request["max_tokens"] == STUDY_SETTINGS["max_tokens"] == 4096
        assert listed_tools(request["messages"][0]["content"])
    assert all(json.loads(step.action)["tool_choice"]["name"] == step.tool for step in log.steps)
    assert agent.settings("study") == {
        "reply_format": "json",
        "context": "window",
        "window": 6,
        "params": {"temperature": 0.7, "max_tokens": 4096},
    }
    assert agent._conversation is not None and agent._conversation.context == "window"


def test_extended_protocol_defaults_to_tools_full_history_and_provider_settings(server, api_key):
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    log = run_episode(make_env("extended"), agent, seed=3)
    assert log.error is None and log.protocol == "extended"
    for request in server.requests:
        assert request["tools"] and "temperature" not in request and "max_tokens" not in request
    assert agent.settings("extended") == {
        "reply_format": "tools",
        "context": "full",
        "window": 6,
        "params": {},
    }
    assert agent._conversation is not None and agent._conversation.context == "full"


def test_explicit_options_win_over_the_protocols_defaults(server, api_key):
    agent = LLMAgent(
        "openai/gpt-4o-mini",
        reply_format="tools",
        context="full",
        temperature=0.2,
        **fast_llm(server),
    )
    run_episode(make_env("study"), agent, seed=1)
    for request in server.requests:
        assert request["tools"] and request["temperature"] == 0.2
        assert request["max_tokens"] == 4096, "a default the user did not set stays the study's"
    assert agent._conversation is not None and agent._conversation.context == "full"
    server.requests.clear()
    silent = LLMAgent("openai/gpt-4o-mini", temperature=None, max_tokens=512, **fast_llm(server))
    run_episode(make_env("study"), silent, seed=1)
    for request in server.requests:
        assert "temperature" not in request, "temperature=None sends none, even under study"
        assert request["max_tokens"] == 512 and "tools" not in request
    server.requests.clear()
    json_extended = LLMAgent(
        "openai/gpt-4o-mini",
        reply_format="json",
        context="window",
        max_tokens=100,
        **fast_llm(server),
    )
    run_episode(make_env("extended"), json_extended, seed=1)
    for request in server.requests:
        assert "tools" not in request and "temperature" not in request
        assert request["max_tokens"] == 100
    assert json_extended._conversation is not None
    assert json_extended._conversation.context == "window"


def test_one_agent_follows_each_episodes_protocol(server, api_key):
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    run_episode(make_env("study"), agent, seed=0)
    assert "tools" not in server.requests[-1] and server.requests[-1]["temperature"] == 0.7
    run_episode(make_env("extended"), agent, seed=0)
    assert server.requests[-1]["tools"] and "temperature" not in server.requests[-1]


def test_a_model_without_a_price_costs_zero_and_is_marked_unpriced(server, api_key):
    agent = LLMAgent("openai/our-local-finetune", **fast_llm(server))
    log = run_episode(make_env("study"), agent, seed=1)
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
    """Under the extended protocol; the study ends an unreadable reply (next test)."""
    names = names_by_role(seed=0)
    server = make_server(script=lambda request: _bad_reply(kind, names))
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    log = run_episode(make_env("extended", max_turns=3), agent, seed=0)
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


@pytest.mark.parametrize(
    "reply",
    [
        "I would rather think about it some more.",
        "",
        '{"reasoning": "no tool this time"}',
        '{"tool_choice": {"id": 1, "name": "x", "parameters": {}}',
    ],
)
def test_under_study_an_unreadable_json_reply_ends_the_episode_as_a_format_error(
    make_server, api_key, reply
):
    server = make_server(script=lambda request: text_reply(reply))
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    log = run_episode(make_env("study"), agent, seed=0)
    assert log.error == FORMAT_ERROR and len(log.steps) == 1
    assert server.stats["replies"] == 1


def _json_call(name: str, marker: int) -> str:
    return json.dumps(
        {
            "reasoning": f"step {marker}",
            "tool_choice": {"id": 1, "name": name, "parameters": {"patient_id": f"PT-{marker}"}},
        }
    )


def test_the_studys_window_in_a_hand_built_conversation():
    """At h = 5, 8, 12, 13, 18, 20: which turns are verbatim, summarised or absent."""
    tools = [{"type": "function", "function": {"name": "check", "parameters": {}}}]
    conversation = Conversation("json", tools, "BRIEFING", context="window")
    expected = {
        5: ([], range(1, 6)),
        8: ([], range(3, 9)),
        12: (range(1, 7), range(7, 13)),
        13: (range(1, 7), range(8, 14)),
        18: (range(1, 13), range(13, 19)),
        20: (range(1, 13), range(15, 21)),
    }
    summaries: dict[int, str | None] = {}
    for turn in range(1, 21):
        conversation.add(Completion(content=_json_call("check", turn)), turn)
        conversation.observe(f"Turn {turn}/20: result number {turn}.\nCurrent status:\n- x: 1")
        summary = conversation.summary()
        summaries[turn] = summary
        messages = conversation.messages()
        verbatim = [int(re.search(r"step (\d+)", m["content"])[1]) for m in messages[2::2]]
        observed = [int(re.search(r"result number (\d+)", m["content"])[1]) for m in messages[3::2]]
        assert verbatim == observed == list(window_view(turn)[1])
        if turn not in expected:
            continue
        summarised, shown = expected[turn]
        assert verbatim == list(shown), turn
        first = messages[1]["content"]
        if not summarised:
            assert summary is None and first == "BRIEFING", turn
            continue
        assert first == f"BRIEFING\n\n{summary}"
        lines = summary.splitlines()
        assert lines[0] == SUMMARY_HEADER
        assert [int(re.match(r"- Turn (\d+): ", line)[1]) for line in lines[1:]] == list(summarised)
        for number, line in zip(summarised, lines[1:]):
            assert f'check {{"patient_id": "PT-{number}"}}' in line
            assert line.endswith(f"-> result number {number}.")
        absent = set(range(1, turn + 1)) - set(summarised) - set(shown)
        for number in absent:
            assert f"result number {number}." not in json.dumps(messages)
    assert sorted(absent) == [13, 14]
    # rebuilt only at the rebuild points, and reused unchanged between them
    assert STUDY_REBUILDS == (12, 18)
    assert all(summaries[h] is summaries[12] for h in range(12, 18))
    assert all(summaries[h] is summaries[18] for h in range(18, 21))
    assert summaries[12] != summaries[18]


def test_full_context_keeps_every_turn_and_summarises_nothing():
    conversation = Conversation("json", [], "BRIEFING", context="full")
    for turn in range(1, 16):
        conversation.add(Completion(content=_json_call("check", turn)), turn)
        conversation.observe(f"Turn {turn}/20: result number {turn}.")
    messages = conversation.messages()
    assert conversation.summary() is None and messages[1]["content"] == "BRIEFING"
    assert len(messages) == 2 + 2 * 15


def test_summary_lines_read_native_tool_calls_and_unreadable_replies():
    conversation = Conversation("tools", [], "B", context="window", window=1)
    for turn in range(1, 13):
        if turn % 2:
            call = CalledTool(f"c{turn}", "check", json.dumps({"n": turn}))
            conversation.add(Completion(content=None, tool_calls=(call,)), turn)
        else:
            conversation.add(Completion(content="no idea"), turn)
        conversation.observe(f"Turn {turn}/12: seen {turn}.")
    lines = conversation.summary().splitlines()[1:]
    assert len(lines) == 11, "built at h=12 with a window of 1 turn: turns 1..11"
    assert lines[0] == '- Turn 1: check {"n": 1} -> seen 1.'
    assert lines[1] == "- Turn 2: (no tool call could be read) -> seen 2."


def test_window_context_through_the_agent_and_the_loopback_server(make_server, api_key):
    """A 14-turn study episode: request 14 (h = 13) shows turns 8-13 and a summary of 1-6."""
    names = names_by_role(seed=0, protocol="study")
    validator = names["validator"]
    server = make_server(script=lambda request: text_reply(_json_call(validator, 0)))
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    log = run_episode(make_env("study", max_turns=14), agent, seed=0)
    assert log.error is None and len(log.steps) == 14 and log.truncated
    requests = list(server.requests)
    assert [len(r["messages"]) for r in requests] == [2 + 2 * min(h, 6) for h in range(14)]
    last = requests[-1]["messages"]
    summary = last[1]["content"].split(f"{SUMMARY_HEADER}\n", 1)[1].splitlines()
    assert [line.split(":", 1)[0] for line in summary] == [f"- Turn {n}" for n in range(1, 7)]
    assert all(validator in line for line in summary)
    shown = [m["content"] for m in last[3::2]]
    assert [text.split(":", 1)[0] for text in shown] == [f"Turn {n}/14" for n in range(8, 14)]
    assert "Turn 7/14" not in json.dumps(last), "turn 7 left the window and is in no summary"
    assert log.steps[-1].messages[0]["context"] == "summary"
    assert SUMMARY_HEADER not in requests[11]["messages"][1]["content"], "none before h=12"


@pytest.mark.parametrize("protocol", ["study", "extended"])
def test_async_and_sync_agents_play_the_same_episode(server, api_key, protocol):
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    sync_log = run_episode(make_env(protocol), agent, 9)
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server))
    async_log = asyncio.run(arun_episode(make_env(protocol), agent, seed=9))
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
    with pytest.raises(ValueError, match="reply_format must be one of tools, json"):
        LLMAgent("openai/x", reply_format="xml")
    with pytest.raises(ValueError, match="context must be one of full, window"):
        LLMAgent("openai/x", context="everything")
    with pytest.raises(ValueError, match="window"):
        LLMAgent("openai/x", window=0)
    with pytest.raises(ValueError, match="protocol must be one of study, extended"):
        LLMAgent("openai/x").reset({"text": "b"}, tools=[], seed=0, protocol="json")
    with pytest.raises(ValueError, match="timeout"):
        LLMAgent("openai/x", timeout=0)
    with pytest.raises(ValueError, match="cassette mode"):
        LLMAgent("openai/x", cassette="c.jsonl", cassette_mode="rewind")


def test_the_old_protocol_option_says_it_is_now_reply_format():
    for value in ("json", "tools"):
        with pytest.raises(TypeError, match=f"protocol='{value}' is now reply_format="):
            LLMAgent("openai/x", protocol=value)
        with pytest.raises(TypeError, match="reply_format"):
            make_agent("llm:openai/x", protocol=value)


@pytest.mark.parametrize("protocol", ["study", "extended"])
def test_every_registered_env_is_playable(server, api_key, protocol):
    for env_id in tp_gym.env_ids():
        env = gym.make(env_id, protocol=protocol)
        log = run_episode(env, LLMAgent("openai/m", **fast_llm(server)), seed=0)
        assert log.error is None, (env_id, log.error)
        assert log.invalid_actions == 0, env_id


def test_unknown_llm_errors_are_mapped_without_leaking_context(api_key):
    """An exception that is not a provider error (an unknown provider) is a request error."""
    agent = LLMAgent("no-such-provider/model", timeout=1, max_retries=0)
    agent.reset({"text": "brief"}, tools=[], oracle=None, seed=0)
    with pytest.raises(LLMRequestError) as caught:
        agent.act({"text": "brief"})
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_the_summary_reads_calls_as_the_env_does_and_survives_deep_json():
    from tp_gym.llm.conversation import call_in_text

    call = '{"reasoning": "r", "tool_choice": {"id": 1, "name": "run_checks", "parameters": {}}}'
    deep = "{" + '"a": {' * 3000 + "}" * 3001  # past the JSON decoder's recursion limit
    assert call_in_text(f"prose {call}") == ("run_checks", {})
    assert call_in_text(deep) is None, "no crash: unreadable, as the env finds it"
    assert call_in_text('{"note": {"tool_choice": "hidden"}}') is None, "top-level objects only"
