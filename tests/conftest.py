"""Shared fixtures: the loopback OpenAI-compatible server and a fake API key.

LLM tests drive litellm over real HTTP to `tp_gym.testing.FakeOpenAIServer` on 127.0.0.1;
nothing leaves the machine. Keys are fake but shaped like real ones, so the redaction
tests mean something.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tp_gym.runs.episode import StepRecord
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


def step_record(turn: int, role: str | None, **fields: Any) -> StepRecord:
    """A hand-built step of turn `turn` that called the tool of `role` (None: an invalid
    action), with nothing else happening; `fields` override any field."""
    base: dict[str, Any] = {
        "turn": turn,
        "action": 0,
        "observation": "",
        "reward": 0.0,
        "cost": 0.0,
        "tool": None if role is None else f"tool_{role}",
        "role": role,
        "valid": role is not None,
        "blocked": False,
        "warned": False,
        "detected": False,
        "pressure": 0,
    }
    return StepRecord(**{**base, **fields})


def comparable(log: Any) -> str:
    """A log as JSON without its timing (the only field that differs between runs)."""
    return log.model_copy(update={"timing": None}).model_dump_json()


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """A command in its own session (so a signal or a kill reaches it and its children)."""
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def wait_for_lines(process: subprocess.Popen, log: Path, lines: int, seconds: float = 60) -> None:
    """Wait until `log` holds at least `lines` lines (the process must still be running)."""
    deadline = time.monotonic() + seconds
    while count_lines(log) < lines:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"fewer than {lines} episodes within {seconds:g} s"
        time.sleep(0.002)
