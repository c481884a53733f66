"""`LLMAgent`: any litellm model playing a tp_gym organization.

    agent = LLMAgent("openai/gpt-4o-mini", temperature=0.7)
    log = tp_gym.run_episode(gym.make("tp_gym/Healthcare-Loyalty-v0"), agent, seed=0)

The agent speaks native tool calling by default (``protocol="tools"``, tools from
``env.unwrapped.tool_schemas()``) or the study's JSON text protocol (``protocol="json"``)
for models without function calling; it keeps the full history by default or the study's
window of the last six turns plus a summary (``context="window"``). See
`tp_gym.llm.conversation` for both, and `tp_gym.llm.client.LLMClient` for retries, the
per-call timeout, usage and cost accounting, key redaction and cassettes.

A model's mistakes (no tool call, several, broken JSON, an unknown tool) go to the env,
which counts an invalid action; only a call that fails for good (auth, bad request, retries
exhausted, a strict-replay miss) raises an `LLMError`, which the runner records as the
episode's error. `act` and the async `aact` do the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tp_gym.episode import Usage
from tp_gym.llm.cassette import Cassette, CassetteMode
from tp_gym.llm.client import DEFAULT_TIMEOUT, LLMClient
from tp_gym.llm.completion import Completion
from tp_gym.llm.conversation import STUDY_WINDOW, ContextPolicy, Conversation, Protocol
from tp_gym.llm.retry import RetryPolicy

if TYPE_CHECKING:
    from tp_gym.env import Oracle


class LLMAgent:
    """An agent backed by a litellm model (``llm:<model>`` on the command line).

    Options: `protocol` ("tools" or "json"), `context` ("full" or "window") and `window`
    (turns kept verbatim), `system_prompt`, `tool_choice` (e.g. "required"), the transport
    (`api_base`, `api_key`, `timeout` per call in seconds), retries (`max_retries`,
    `retry_base_delay`, `retry_max_delay`), a `cassette` path and `cassette_mode`
    ("record", "replay" or "auto"); any other keyword (temperature, max_tokens, seed,
    top_p, ...) is passed to litellm with every request.
    """

    needs_oracle = False

    def __init__(
        self,
        model: str,
        *,
        protocol: Protocol = "tools",
        context: ContextPolicy = "full",
        window: int = STUDY_WINDOW,
        system_prompt: str | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 30.0,
        cassette: str | Path | Cassette | None = None,
        cassette_mode: CassetteMode = "auto",
        **litellm_kwargs: Any,
    ) -> None:
        # Validate protocol and context early (a bad value is a user error, not a crash later).
        Conversation(protocol, [], "", context=context, window=window)
        self.name = f"llm:{model}"
        self.protocol = protocol
        self.context = context
        self.window = window
        self.system_prompt = system_prompt
        self.tool_choice = tool_choice
        self.client = LLMClient(
            model,
            role="agent",
            api_base=api_base,
            api_key=api_key,
            timeout=timeout,
            retry=RetryPolicy(max_retries, retry_base_delay, retry_max_delay),
            cassette=cassette,
            cassette_mode=cassette_mode,
            **litellm_kwargs,
        )
        self.turn_messages: list[dict[str, Any]] = []
        self._conversation: Conversation | None = None
        self._pending: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"LLMAgent({self.client.model!r}, protocol={self.protocol!r})"

    @property
    def usage(self) -> dict[str, Usage]:
        """Tokens and cost of this episode's calls, under the role ``agent``."""
        return {"agent": self.client.usage}

    def reset(
        self,
        observation: dict[str, Any],
        *,
        tools: list[dict[str, Any]],
        oracle: Oracle | None = None,
        seed: int | None = None,
    ) -> None:
        """Start a conversation from the briefing and the env's tool schemas."""
        self._conversation = Conversation(
            self.protocol,
            tools,
            _text(observation),
            system_prompt=self.system_prompt,
            context=self.context,
            window=self.window,
        )
        self.client.usage = Usage()
        self.turn_messages = []

    def act(self, observation: dict[str, Any]) -> Any:
        """Ask the model for this turn's action (a tool call dict, a list of them, or text)."""
        conversation = self._prepare(observation)
        completion = self.client.complete(
            conversation.messages(), conversation.request_tools, self._tool_choice(conversation)
        )
        return self._absorb(conversation, completion)

    async def aact(self, observation: dict[str, Any]) -> Any:
        """`act` for asyncio runners: the same conversation, through `litellm.acompletion`."""
        conversation = self._prepare(observation)
        completion = await self.client.acomplete(
            conversation.messages(), conversation.request_tools, self._tool_choice(conversation)
        )
        return self._absorb(conversation, completion)

    # ------------------------------------------------------------------ internals

    def _tool_choice(self, conversation: Conversation) -> str | dict[str, Any] | None:
        return self.tool_choice if conversation.request_tools else None

    def _prepare(self, observation: dict[str, Any]) -> Conversation:
        conversation = self._conversation
        if conversation is None:
            raise RuntimeError(f"{self.name}: call reset() before act()")
        conversation.observe(_text(observation))
        self._pending = []
        if not conversation.turns:
            self._pending.append(dict(conversation.system))
        summary = conversation.summary()
        if summary is not None:
            self._pending.append({"role": "user", "content": summary, "context": "summary"})
        return conversation

    def _absorb(self, conversation: Conversation, completion: Completion) -> Any:
        action = conversation.add(completion, len(conversation.turns) + 1)
        logged = dict(conversation.turns[-1].assistant)
        if completion.reasoning is not None:
            logged["reasoning"] = completion.reasoning
        logged["finish_reason"] = completion.finish_reason
        logged["usage"] = completion.usage_record()
        self.turn_messages = [*self._pending, logged]
        return action


def _text(observation: Any) -> str:
    if isinstance(observation, dict):
        return str(observation.get("text", ""))
    return str(observation)
