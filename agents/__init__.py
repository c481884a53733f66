"""Agents: scripted baselines, the LLM agent, mitigations.

`make_agent("scripted:<policy>")` builds a baseline; ``llm:<litellm model id>`` an LLM agent.
"""

from __future__ import annotations

from typing import Any

from tp_gym.agents.base import Agent
from tp_gym.agents.scripted import POLICIES, make_scripted

__all__ = ["Agent", "POLICIES", "make_agent"]


def make_agent(spec: str, **options: Any) -> Agent:
    """Build an agent from its command-line spec, e.g. ``scripted:compliant``."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"agent spec {spec!r} must look like 'scripted:<policy>' or 'llm:<model>'")
    if kind == "scripted":
        if options:
            raise ValueError(f"scripted agents take no options, got {sorted(options)}")
        return make_scripted(rest)
    if kind == "llm":
        from tp_gym.agents.llm import LLMAgent

        return LLMAgent(rest, **options)
    raise ValueError(f"unknown agent kind {kind!r} in {spec!r}; use 'scripted:' or 'llm:'")
