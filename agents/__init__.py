"""Agents: scripted baselines, the LLM agent, mitigations.

`make_agent("scripted:<policy>")` builds a baseline; ``llm:<litellm model id>`` an LLM agent;
mitigation prefixes joined by ``+`` wrap either (`tp_gym.agents.mitigations`):
``safety_prompt+llm:M``, ``self_check+llm:M``, ``shield+llm:M``, ``shield=llm:M2+llm:M``,
``shield=rule+scripted:direct``, and stacks such as ``safety_prompt+shield+llm:M``.
"""

from __future__ import annotations

from typing import Any

from tp_gym.agents.base import Agent
from tp_gym.agents.scripted import POLICIES, make_scripted

__all__ = ["Agent", "POLICIES", "make_agent"]


def make_agent(spec: str, **options: Any) -> Agent:
    """Build an agent from its command-line spec, e.g. ``scripted:compliant``.

    `options` go to every LLM the spec names (the ``llm:`` agent and a ``shield=llm:``
    monitor). The agent's name is the whole spec.
    """
    if "+" in spec:
        from tp_gym.agents.llm import LLMAgent
        from tp_gym.agents.mitigations import split_spec, wrap

        prefixes, base = split_spec(spec)
        if (
            options
            and not base.startswith("llm:")
            and not any(p.startswith("shield=llm:") for p in prefixes)
        ):
            raise ValueError(f"{spec!r} calls no model and takes no options, got {sorted(options)}")
        agent = make_agent(base, **(options if base.startswith("llm:") else {}))
        for prefix in reversed(prefixes):
            agent = wrap(prefix, agent, make_llm=lambda model: LLMAgent(model, **options))
        return agent
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
