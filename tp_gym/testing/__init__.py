"""Test doubles for tp_gym: a loopback OpenAI-compatible server for LLM agents.

`FakeOpenAIServer` speaks the chat-completions API on 127.0.0.1 so that litellm, the LLM
agent, the narrator and `tp-gym generate` can be exercised over real HTTP without a key or
a network. It is importable by tests and benchmarks alike and needs only the standard
library.
"""

from __future__ import annotations

from tp_gym.testing.openai_server import (
    FAULTS,
    FakeOpenAIServer,
    Reply,
    error_reply,
    text_reply,
    tool_reply,
)

__all__ = ["FAULTS", "FakeOpenAIServer", "Reply", "error_reply", "text_reply", "tool_reply"]
