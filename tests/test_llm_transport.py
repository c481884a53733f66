"""The two transports, litellm and the openai SDK fast path, behave the same.

Same episode logs (usage and cost included), same retries and errors under faults, one
cassette format, and neither library is imported by ``import tp_gym``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import gymnasium as gym
import pytest
from conftest import FAKE_KEY, fast_llm

import tp_gym
from tp_gym.agents.llm import LLMAgent
from tp_gym.cli import main as cli_main
from tp_gym.commands.common import LLM_OPTIONS
from tp_gym.llm import openai_sdk
from tp_gym.llm.client import LLMClient
from tp_gym.llm.errors import LLMAuthError, LLMRequestError, LLMUnavailableError
from tp_gym.llm.providers import choose_transport, sdk_model
from tp_gym.llm.retry import RetryPolicy
from tp_gym.runs.episode import EpisodeLog, read_jsonl
from tp_gym.runs.runner import arun_episode, run_episode
from tp_gym.testing import Reply, error_reply

TRANSPORTS = ("litellm", "openai")
MODEL = "openai/gpt-4o-mini"
HELLO = [{"role": "user", "content": "hello"}]


def comparable(log: EpisodeLog) -> dict:
    """A log without its timing (the only field two runs of one episode may differ in)."""
    dumped = log.model_dump()
    dumped.pop("timing", None)
    return dumped


def client(server, transport: str, **options) -> LLMClient:
    retry = RetryPolicy(options.pop("max_retries", 2), 0.01, 0.05)
    options = {"api_base": server.base_url, "timeout": 2.0, "retry": retry, **options}
    return LLMClient(MODEL, transport=transport, **options)


@pytest.mark.parametrize(
    ("model", "api_base", "transport", "chosen"),
    [
        ("openai/gpt-4o-mini", "http://127.0.0.1:8000/v1", "auto", "openai"),
        ("hosted_vllm/Qwen/Qwen3-32B", "http://127.0.0.1:8000/v1", "auto", "openai"),
        ("openai/gpt-4o-mini", None, "auto", "litellm"),
        ("gpt-4o-mini", "http://127.0.0.1:8000/v1", "auto", "litellm"),
        ("anthropic/claude-sonnet-4-5", "http://gateway/v1", "auto", "litellm"),
        ("groq/llama-3.1-8b", None, "auto", "litellm"),
        ("openai/gpt-4o-mini", "http://127.0.0.1:8000/v1", "litellm", "litellm"),
        ("openai/gpt-4o-mini", None, "openai", "openai"),
        ("groq/llama-3.1-8b", "http://gateway/v1", "openai", "openai"),
    ],
)
def test_auto_takes_the_fast_path_only_for_openai_compatible_endpoints(
    model, api_base, transport, chosen
):
    assert choose_transport(model, api_base, transport) == chosen
    assert LLMClient(model, api_base=api_base, transport=transport).transport == chosen


def test_bad_transports_are_value_errors():
    with pytest.raises(ValueError, match="transport must be one of auto, litellm, openai"):
        LLMAgent(MODEL, transport="grpc")
    with pytest.raises(ValueError, match="needs api_base"):
        LLMClient("anthropic/claude-sonnet-4-5", transport="openai")
    assert sdk_model("openai/gpt-4o-mini") == "gpt-4o-mini"
    assert sdk_model("hosted_vllm/Qwen/Qwen3-32B") == "Qwen/Qwen3-32B"
    assert sdk_model("Qwen/Qwen3-32B") == "Qwen/Qwen3-32B"


@pytest.mark.parametrize("protocol", ["study", "extended"])
def test_both_transports_play_the_same_episodes(server, api_key, protocol):
    logs: dict[str, list[dict]] = {}
    for transport in TRANSPORTS:
        for mode in ("sync", "async"):
            played = []
            for env_id, seed in zip(tp_gym.env_ids()[:4], (0, 5, 11, 17), strict=True):
                env = gym.make(env_id, protocol=protocol, max_turns=6)
                agent = LLMAgent(MODEL, transport=transport, **fast_llm(server))
                assert agent.client.transport == transport
                if mode == "sync":
                    log = run_episode(env, agent, seed=seed)
                else:
                    log = asyncio.run(arun_episode(env, agent, seed=seed))
                assert log.error is None
                played.append(comparable(log))
            logs[f"{transport}-{mode}"] = played
    reference = logs["litellm-sync"]
    assert sum(len(log["steps"]) for log in reference) >= 4
    assert all(log["usage"]["agent"]["priced"] for log in reference)
    assert all(log["usage"]["agent"]["cost_usd"] > 0 for log in reference)
    for name, played in logs.items():
        assert played == reference, f"{name} differs from litellm-sync"


def test_an_unpriced_model_costs_nothing_on_both_paths(server, api_key):
    for transport in TRANSPORTS:
        completion = client(server, transport).complete(HELLO)
        assert completion.priced and completion.cost_usd > 0
        unpriced = LLMClient(
            "openai/a-local-finetune", api_base=server.base_url, transport=transport
        ).complete(HELLO)
        assert (unpriced.cost_usd, unpriced.priced) == (0.0, False), transport


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retryable_faults_are_retried_alike(make_server, api_key, transport, mode):
    faults = [
        Reply(fault="rate_limit"),
        error_reply(503),
        Reply(fault="server_error"),
        Reply(fault="empty_choices"),
        Reply(fault="malformed_json"),
    ]
    script = iter(faults)
    server = make_server(script=lambda request: next(script, None))
    llm = client(server, transport, max_retries=len(faults))
    completion = llm.complete(HELLO) if mode == "sync" else asyncio.run(llm.acomplete(HELLO))
    assert completion.text == "The request is processed as reported."
    assert server.stats["requests"] == len(faults) + 1
    assert llm.usage.calls == 1, "failed attempts are not billed"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_failures_end_alike(make_server, api_key, transport):
    server = make_server(script=lambda request: Reply(fault="server_error"))
    with pytest.raises(LLMUnavailableError) as caught:
        client(server, transport, max_retries=2).complete(HELLO)
    message = str(caught.value)
    assert message.startswith("openai/gpt-4o-mini: gave up after 3 attempt(s); last error: ")
    assert "HTTP 500" in message and "The server had an error" in message and "\n" not in message
    assert caught.value.attempts == 3 and server.stats["requests"] == 3

    server = make_server(api_key="the-right-key-000")
    with pytest.raises(LLMAuthError) as caught:
        asyncio.run(client(server, transport).acomplete(HELLO))
    assert "authentication failed" in str(caught.value) and "HTTP 401" in str(caught.value)
    assert "Incorrect API key provided: [REDACTED]" in str(caught.value)
    assert FAKE_KEY not in str(caught.value) and server.stats["requests"] == 1

    server = make_server(script=lambda request: error_reply(400, "unsupported parameter"))
    with pytest.raises(LLMRequestError, match="HTTP 400.*unsupported parameter"):
        client(server, transport).complete(HELLO)
    assert server.stats["requests"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_timeouts_are_retried_then_fail_within_the_per_call_timeout(
    make_server, api_key, transport, mode
):
    server = make_server(script=lambda request: Reply(fault="timeout"), hang=5)
    llm = client(server, transport, timeout=0.3, max_retries=1)
    started = time.perf_counter()
    with pytest.raises(LLMUnavailableError, match="gave up after 2 attempt.*Timeout"):
        if mode == "sync":
            llm.complete(HELLO)
        else:
            asyncio.run(llm.acomplete(HELLO))
    assert time.perf_counter() - started < 3
    assert server.stats["timeout"] == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_missing_key_is_an_auth_error_naming_the_variable(server, monkeypatch, transport):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMAuthError, match="set OPENAI_API_KEY in the environment"):
        client(server, transport).complete(HELLO)
    assert server.stats["requests"] == 0


def test_the_fast_path_strips_the_provider_and_needs_no_key_for_vllm(server, monkeypatch):
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)
    llm = LLMClient("hosted_vllm/Qwen/Qwen3-32B", api_base=server.base_url, top_k=20)
    assert llm.transport == "openai"
    assert llm.complete(HELLO).text
    sent = server.requests[-1]
    assert sent["model"] == "Qwen/Qwen3-32B" and sent["top_k"] == 20, "extra params reach it"
    assert server.authorizations == {"Bearer fake-api-key"}


@pytest.mark.parametrize(("recorder", "player"), [("openai", "litellm"), ("litellm", "openai")])
def test_a_cassette_recorded_on_one_transport_replays_on_the_other(
    server, api_key, tmp_path, recorder, player
):
    cassette = tmp_path / "c.jsonl"
    options = fast_llm(server, cassette=cassette)

    def play(transport: str, mode: str) -> dict:
        env = gym.make("tp_gym/Coding-Loyalty-v0", protocol="extended")
        agent = LLMAgent(MODEL, transport=transport, cassette_mode=mode, **options)
        return comparable(run_episode(env, agent, seed=4))

    recorded = play(recorder, "record")
    calls = server.stats["requests"]
    assert calls >= 1 and recorded["error"] is None
    assert play(player, "replay") == recorded
    assert server.stats["requests"] == calls, "the replay made no call"


def test_one_shared_sdk_client_per_endpoint_and_loop(server, api_key):
    async def clients() -> list:
        return [openai_sdk.async_client(server.base_url, key) for key in ("k1", "k1", "k2")]

    first = asyncio.run(clients())
    assert first[0] is first[1] and first[0] is not first[2]
    second = asyncio.run(clients())
    assert second[0] is not first[0], "a new event loop gets its own client"
    sync = openai_sdk.sync_client(server.base_url, "k1")
    assert sync is openai_sdk.sync_client(server.base_url, "k1")
    assert sync.max_retries == 0 and first[0].max_retries == 0, "the SDK never retries itself"
    assert openai_sdk.POOL_CONNECTIONS >= 1000


def test_many_concurrent_fast_path_calls_share_a_pool(make_server, api_key):
    server = make_server(latency=0.2)
    llm = client(server, "openai")

    async def burst() -> list:
        return await asyncio.gather(*(llm.acomplete(HELLO) for _ in range(200)))

    completions = asyncio.run(burst())
    assert len(completions) == 200 and server.stats["requests"] == 200
    assert server.most_in_flight >= 64, "calls wait on the server side by side"


def test_the_cli_takes_a_transport(server, api_key, tmp_path):
    assert "transport" in LLM_OPTIONS
    out = tmp_path / "log.jsonl"
    argv = ["run", "--env", "tp_gym/Healthcare-Loyalty-v0", "--agent", f"llm:{MODEL}"]
    argv += ["--api-base", server.base_url, "--seed", "0", "--out", str(out)]
    assert cli_main([*argv, "--transport", "litellm"]) == 0
    assert cli_main([*argv, "--transport", "openai"]) == 0
    first, second = read_jsonl(out)
    assert comparable(first) == comparable(second)
    with pytest.raises(SystemExit) as caught:
        cli_main([*argv, "--transport", "grpc"])
    assert caught.value.code == 2


@pytest.mark.parametrize("module", ["tp_gym", "tp_gym.llm.client", "tp_gym.agents.llm"])
def test_importing_loads_neither_litellm_nor_openai(module):
    code = (
        f"import {module}, sys; print(sorted(m for m in ('litellm', 'openai') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_episode_on_the_fast_path_never_imports_litellm(server, api_key):
    code = f"""
import sys, gymnasium as gym
from tp_gym.agents.llm import LLMAgent
from tp_gym.runs.runner import run_episode
agent = LLMAgent("{MODEL}", api_base="{server.base_url}")
log = run_episode(gym.make("tp_gym/Healthcare-Loyalty-v0"), agent, seed=0)
assert log.error is None and log.usage["agent"].priced, log.error
print(agent.client.transport, "litellm" in sys.modules, "openai" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"OPENAI_API_KEY": FAKE_KEY, "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.split() == ["openai", "False", "True"], done.stderr


def test_requests_on_both_paths_carry_the_same_body(server, api_key):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    conversation = [
        *HELLO,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    bodies = []
    for transport in TRANSPORTS:
        llm = client(server, transport, temperature=0.7, max_tokens=64)
        llm.complete(conversation, tools=tools, tool_choice="required")
        bodies.append(json.dumps(server.requests[-1], sort_keys=True))
    litellm_body, sdk_body = bodies
    assert litellm_body == sdk_body


def test_an_eval_through_the_fast_path_never_imports_litellm(server, tmp_path):
    """`evaluate` preloads what the run's transports need: the openai SDK alone here."""
    code = (
        "import sys, tp_gym\n"
        f"grid = tp_gym.Grid.build('llm:openai/m', envs='tp_gym/Coding-Loyalty-v0', seeds=[0, 1])\n"
        f"result = tp_gym.evaluate(grid, {str(tmp_path / 'run')!r}, llm_options="
        f"{{'api_base': {server.base_url!r}, 'api_key': 'k-123456'}})\n"
        "assert result.completed == 2 and not result.errors, result\n"
        "print('litellm' in sys.modules, 'openai' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_credentials_in_the_api_base_are_never_sent_and_the_key_is(make_server, tmp_path):
    """A key inside --api-base (`http://user:SECRET@host/v1`) is not sent as Basic auth nor
    written anywhere; the run uses the key given and works."""
    server = make_server(api_key="the-right-key-000")
    host = server.base_url.removeprefix("http://")
    grid = tp_gym.Grid.build("llm:openai/m", envs="tp_gym/Coding-Loyalty-v0", seeds=[0, 1])
    options = {"api_base": f"http://user:SECRET-IN-URL@{host}", "api_key": "the-right-key-000"}
    result = tp_gym.evaluate(grid, tmp_path, llm_options=options)
    assert result.completed == 2 and not result.errors
    assert not any(b"SECRET-IN-URL" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
