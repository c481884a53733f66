"""Shared fixtures: the loopback OpenAI-compatible server and a fake API key.

LLM tests drive litellm over real HTTP to `tp_gym.testing.FakeOpenAIServer` on 127.0.0.1;
nothing leaves the machine. Keys are fake but shaped like real ones, so the redaction
tests mean something.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tp_gym.testing import FakeOpenAIServer

FAKE_KEY = "sk-test-FAKEKEY-0123456789abcdefXYZ"
"""The API key tests put in OPENAI_API_KEY; it must never show up in any output."""


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fake OpenAI key in the environment (and no other provider key)."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeOpenAIServer]]:
    """A factory of started `FakeOpenAIServer`s (same arguments); all stop at teardown."""
    servers: list[FakeOpenAIServer] = []

    def make(**options: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., FakeOpenAIServer]) -> FakeOpenAIServer:
    """A started server with default (hash-chosen tool call) replies."""
    return make_server()


def fast_llm(server: FakeOpenAIServer, **options: Any) -> dict[str, Any]:
    """LLM options for tests: the loopback server, short timeouts and quick retries."""
    base = {
        "api_base": server.base_url,
        "timeout": 2.0,
        "max_retries": 2,
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
    }
    return {**base, **options}
