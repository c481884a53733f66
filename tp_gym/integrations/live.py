"""One LLM episode played by another harness: its own env, recorder and conversation.

The Inspect solver and the verifiers environment both start their episodes here, so both
make the env as `tp-gym eval` does and talk to the model with the LLM agent's defaults for
the protocol (the study's JSON replies and window, or native tool calls under extended).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from tp_gym.agents.llm import DEFAULT_CONTEXT, DEFAULT_REPLY_FORMAT
from tp_gym.llm.conversation import Conversation
from tp_gym.runs.recorder import EpisodeRecorder


@dataclass
class LiveEpisode:
    """One episode's own env, recorder and conversation (never shared between episodes)."""

    env: gym.Env[Any, Any]
    recorder: EpisodeRecorder
    conversation: Conversation

    @classmethod
    def start(
        cls,
        env_id: str,
        protocol: str,
        *,
        seed: int,
        variables: dict[str, Any],
        agent_name: str,
        max_turns: int | None = None,
    ) -> LiveEpisode:
        """Make `env_id` under `protocol`, reset it with `seed` and `variables`, and start
        the conversation from its briefing. `max_turns` overrides the organization's limit."""
        extra = {} if max_turns is None else {"max_turns": max_turns}
        env = gym.make(env_id, disable_env_checker=True, protocol=protocol, **extra)
        try:
            recorder = EpisodeRecorder.start(env, agent_name, seed=seed, options=dict(variables))
        except BaseException:
            env.close()
            raise
        protocol = recorder.org_env.protocol
        conversation = Conversation(
            DEFAULT_REPLY_FORMAT[protocol],
            recorder.org_env.tool_schemas(),
            str(recorder.observation["text"]),
            context=DEFAULT_CONTEXT[protocol],
        )
        return cls(env, recorder, conversation)
