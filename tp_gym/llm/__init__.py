"""The LLM layer: one small client over two transports, cassettes, key redaction, the narrator.

Nothing here imports litellm or openai at import time; each loads on the first call that
needs it, and a run that only calls OpenAI-compatible servers never loads litellm.

- `client.LLMClient`: completions with retries, a per-call timeout, usage and cost, through
  litellm (any provider) or the fast path (`openai_sdk`: OpenAI-compatible servers);
- `providers`: which transport and which credential variables a model id implies;
- `cassette.Cassette`: record LLM calls to JSONL and replay them offline;
- `redact.Redactor`: keeps the keys in use out of logs, cassettes, reports and errors;
- `conversation`: the agent's prompts, the two reply formats and the context policies;
- `narrator.NarratorWrapper`: the study's dual-model mode (an LLM writes the observations).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LLMClient": "tp_gym.llm.client",
    "DEFAULT_TIMEOUT": "tp_gym.llm.client",
    "Completion": "tp_gym.llm.completion",
    "Cassette": "tp_gym.llm.cassette",
    "RetryPolicy": "tp_gym.llm.retry",
    "Redactor": "tp_gym.llm.redact",
    "NarratorWrapper": "tp_gym.llm.narrator",
    "LLMError": "tp_gym.llm.errors",
    "LLMAuthError": "tp_gym.llm.errors",
    "LLMRequestError": "tp_gym.llm.errors",
    "LLMUnavailableError": "tp_gym.llm.errors",
    "CassetteMissError": "tp_gym.llm.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tp_gym.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
