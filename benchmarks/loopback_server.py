"""Replies per second of the loopback OpenAI-compatible test server (tp_gym.testing).

Run: python benchmarks/loopback_server.py [--requests 500]

Sends chat-completion requests of about 6 KB (a long conversation with tools) from this
process: over one keep-alive connection, and with a new connection per request. Without
TCP_NODELAY each keep-alive reply would wait ~40 ms for a delayed ACK (about 25 replies/s);
the server must stay far above what litellm can send (roughly 100-150 calls/s a process).
"""

from __future__ import annotations

import argparse
import http.client
import json
import time

from tp_gym.testing import FakeOpenAIServer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "A tool of the organization. " * 8,
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    }
    for i in range(8)
]


def body(turn: int) -> bytes:
    messages = [{"role": "user", "content": "Briefing. " * 300}]
    messages += [{"role": "assistant", "content": f"turn {k}"} for k in range(turn % 10)]
    return json.dumps({"model": "m", "messages": messages, "tools": TOOLS}).encode()


def rate(server: FakeOpenAIServer, requests: int, keep_alive: bool) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    started = time.perf_counter()
    for turn in range(requests):
        if not keep_alive:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request(
            "POST", "/v1/chat/completions", body(turn), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"server answered {response.status}")
        if not keep_alive:
            conn.close()
    conn.close()
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with FakeOpenAIServer() as server:
        rate(server, 20, keep_alive=True)
        print(f"keep-alive connection   {rate(server, args.requests, True):8,.0f} replies/s")
        print(f"new connection each     {rate(server, args.requests, False):8,.0f} replies/s")


if __name__ == "__main__":
    main()
