"""The loopback OpenAI-compatible server: replies, scripts, faults and speed (plain HTTP)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

import pytest

from tp_gym.testing import FAULTS, FakeOpenAIServer, Reply, error_reply, tool_reply

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "send_message",
            "description": "Message a party.",
            "parameters": {
                "type": "object",
                "properties": {
                    "recipient": {"type": "string", "enum": ["patient", "sponsor"]},
                    "urgent": {"type": "boolean"},
                    "count": {"type": "integer"},
                },
                "required": ["recipient", "urgent", "count"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "close_case",
            "description": "Close the case.",
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    },
]


def post(
    server: FakeOpenAIServer,
    body: dict[str, Any],
    conn: http.client.HTTPConnection | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": "Bearer k"},
        )
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        if own:
            conn.close()


def chat(content: str, tools: list[dict[str, Any]] | None = TOOLS) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": content}]}
    if tools is not None:
        body["tools"] = tools
    return body


def test_default_reply_is_a_valid_call_to_an_offered_tool(server):
    names = set()
    for i in range(20):
        status, _, raw = post(server, chat(f"conversation {i}"))
        assert status == 200
        body = json.loads(raw)
        message = body["choices"][0]["message"]
        (call,) = message["tool_calls"]
        names.add(call["function"]["name"])
        arguments = json.loads(call["function"]["arguments"])
        if call["function"]["name"] == "send_message":
            assert arguments == {"recipient": "patient", "urgent": True, "count": 1}
        assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert names == {"send_message", "close_case"}, "the hash should spread over the tools"


def test_default_reply_is_deterministic_per_conversation(server):
    first = json.loads(post(server, chat("same"))[2])
    again = json.loads(post(server, chat("same"))[2])
    assert first == again


def json_reply(server: FakeOpenAIServer, prompt: str) -> dict[str, Any]:
    message = json.loads(post(server, chat(prompt, tools=None))[2])["choices"][0]["message"]
    assert "tool_calls" not in message
    return json.loads(message["content"])


def test_json_reply_is_the_studys_format_with_the_prompts_ids(server):
    """The agent's json system prompt lists `{"id", "name", ...}` lines; the reply reuses them."""
    from tp_gym.llm.conversation import json_tool_lines

    prompt = f"Tools:\n{json_tool_lines(TOOLS)}"
    seen = set()
    for i in range(20):
        reply = json_reply(server, f"{prompt}\nconversation {i}")
        assert set(reply) == {"reasoning", "tool_choice"} and isinstance(reply["reasoning"], str)
        choice = reply["tool_choice"]
        assert set(choice) == {"id", "name", "parameters"}
        assert (choice["id"], choice["name"]) in {(1, "send_message"), (2, "close_case")}
        if choice["name"] == "send_message":
            assert choice["parameters"] == {"recipient": "patient", "urgent": True, "count": 1}
        seen.add(choice["name"])
    assert seen == {"send_message", "close_case"}


def test_json_reply_reads_ids_given_in_the_lines_or_counts_them(server):
    lines = [json.dumps({"id": 7, "name": "only_tool", "parameters": {}})]
    assert json_reply(server, "\n".join(lines))["tool_choice"]["id"] == 7
    schemas = "\n".join(json.dumps(t["function"]) for t in TOOLS)
    choice = json_reply(server, f"Tools:\n{schemas}")["tool_choice"]
    assert (choice["id"], choice["name"]) in {(1, "send_message"), (2, "close_case")}


def test_json_reply_falls_back_to_briefing_signatures(server):
    numbered = "Tools:\n1. open_record(patient_id: string): Open.\n2. approve(amount: number): Ok."
    dashed = "Tools:\n- open_record(patient_id: string): Open.\n- approve(amount: number): Ok."
    for prompt in (numbered, dashed):
        for i in range(6):
            choice = json_reply(server, f"{prompt}\n#{i}")["tool_choice"]
            assert (choice["id"], choice["name"], choice["parameters"]) in (
                (1, "open_record", {"patient_id": "ok"}),
                (2, "approve", {"amount": 1.0}),
            )


def test_the_unknown_tool_fault_answers_the_json_reply_format_too(make_server):
    server = make_server(script=lambda request: Reply(fault="unknown_tool"))
    reply = json_reply(server, "Tools:\n1. approve(amount: number): Ok.")
    assert reply["tool_choice"] == {"id": 0, "name": "nonexistent_tool", "parameters": {}}


def test_script_pairs_match_the_last_message_and_callables_see_the_request(make_server):
    pairs = make_server(script=[("refund", tool_reply("close_case", {})), ("hello", "Hi there")])
    message = json.loads(post(pairs, chat("please refund me"))[2])["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "close_case"
    message = json.loads(post(pairs, chat("hello"))[2])["choices"][0]["message"]
    assert message["content"] == "Hi there" and "tool_calls" not in message
    seen = []
    scripted = make_server(script=lambda request: seen.append(request["model"]) or None)
    assert post(scripted, chat("anything"))[0] == 200
    assert seen == ["m"]


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "timeout"])
def test_each_fault_looks_like_the_real_failure(make_server, fault):
    server = make_server(script=lambda request: Reply(fault=fault))
    status, headers, raw = post(server, chat("x"))
    if fault == "rate_limit":
        assert status == 429 and headers.get("Retry-After") == "0"
        assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    elif fault == "server_error":
        assert status == 500
    elif fault == "malformed_json":
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(raw)
    elif fault == "empty_choices":
        assert status == 200 and json.loads(raw)["choices"] == []
    else:
        call = json.loads(raw)["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "nonexistent_tool"
    assert server.stats[fault] == 1


def test_timeout_fault_holds_the_connection_then_closes_it(make_server):
    server = make_server(script=lambda request: Reply(fault="timeout"), hang=0.3)
    started = time.perf_counter()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(server, chat("x"))
    assert 0.25 < time.perf_counter() - started < 2.0


def test_error_status_and_api_key_checks(make_server):
    server = make_server(script=lambda request: error_reply(400, "bad field"))
    status, _, raw = post(server, chat("x"))
    assert status == 400 and json.loads(raw)["error"]["message"] == "bad field"
    locked = make_server(api_key="right")
    assert post(locked, chat("x"))[0] == 401
    assert "Bearer k" in locked.authorizations


def test_fault_rate_is_seeded_and_close_to_the_rate(make_server):
    counts = []
    for _ in range(2):
        server = make_server(fault_rate=0.2, seed=7, faults=("server_error", "rate_limit"))
        statuses = [post(server, chat(f"m{i}"))[0] for i in range(200)]
        counts.append(statuses)
    assert counts[0] == counts[1], "the same seed gives the same fault sequence"
    share = sum(s != 200 for s in counts[0]) / 200
    assert 0.1 < share < 0.3


def test_connections_disable_nagle_so_replies_never_wait_for_delayed_acks():
    """Without TCP_NODELAY a reply written in two parts can stall ~40 ms on a delayed ACK.

    (The replies per second this buys are printed by benchmarks/loopback_server.py.)
    """
    from tp_gym.testing.openai_server import _Handler

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        handler = _Handler.__new__(_Handler)
        handler.request = accepted
        handler.setup()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for sock in (client, accepted, listener):
            sock.close()


def test_a_burst_of_connections_is_queued_not_reset(server):
    errors: list[BaseException] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            status = post(server, chat(f"burst {i}"), timeout=10)[0]
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            with lock:
                errors.append(error)
        else:
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert not errors, errors[:3]
    assert statuses == [200] * 200


def test_latency_delays_replies_and_stop_wakes_held_connections(make_server):
    slow = make_server(latency=0.15)
    started = time.perf_counter()
    post(slow, chat("x"))
    assert time.perf_counter() - started >= 0.14
    held = make_server(script=lambda request: Reply(fault="timeout"), hang=30)
    outcome: list[str] = []

    def wait_for_reply() -> None:
        try:
            post(held, chat("x"), timeout=10)
        except (OSError, http.client.HTTPException) as error:
            outcome.append(type(error).__name__)

    thread = threading.Thread(target=wait_for_reply)
    thread.start()
    time.sleep(0.1)
    started = time.perf_counter()
    held.stop()
    thread.join(5)
    assert time.perf_counter() - started < 3 and not thread.is_alive()
    assert outcome, "the held connection was closed without a reply"
