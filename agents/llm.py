"""`LLMAgent`: any litellm model playing a tp_gym organization.

    agent = LLMAgent("openai/gpt-4o-mini")
    log = tp_gym.run_episode(gym.make("tp_gym/Healthcare-Loyalty-v0"), agent, seed=0)

By default the agent follows the env's protocol, which the runner passes to `reset`:

| env protocol | reply format | context | request settings |
|---|---|---|---|
| ``study`` | ``json`` (the study's JSON object) | ``window`` (the study's memory) | temperature 0.7, max_tokens 4096 |
| ``extended`` | ``tools`` (native function calling) | ``full`` | the provider's defaults |

Any option given explicitly wins (``reply_format=``, ``context=``, ``temperature=``,
``max_tokens=``; ``temperature=None`` sends none even under study). See
`tp_gym.llm.conversation` for the reply formats and the study's memory, and
`tp_gym.llm.client.LLMClient` for retries, the per-call timeout, usage and cost
accounting, key redaction and cassettes.

A model's mistakes (no tool call, several, broken JSON, an unknown tool) go to the env,
which counts an invalid action (or, under the study protocol, ends an unreadable text
reply as a format error); only a call that fails for good (auth, bad request, retries
exhausted, a strict-replay miss) raises an `LLMError`, which the runner records as the
episode's error. `act` and the async `aact` do the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tp_gym.llm.cassette import Cassette, CassetteMode
from tp_gym.llm.client import DEFAULT_TIMEOUT, LLMClient
from tp_gym.llm.completion import Completion
from tp_gym.llm.conversation import (
    STUDY_WINDOW,
    ContextPolicy,
    Conversation,
    ReplyFormat,
    check_options,
)
from tp_gym.llm.providers import Transport
from tp_gym.llm.retry import RetryPolicy
from tp_gym.runs.episode import Usage

if TYPE_CHECKING:
    from tp_gym.env import Oracle

ENV_PROTOCOLS: tuple[str, ...] = ("study", "extended")
"""The env protocols `reset` accepts (`tp_gym.variables.PROTOCOLS`)."""
DEFAULT_REPLY_FORMAT: dict[str, ReplyFormat] = {"study": "json", "extended": "tools"}
"""The reply format used under each env protocol when `reply_format` is not given."""
DEFAULT_CONTEXT: dict[str, ContextPolicy] = {"study": "window", "extended": "full"}
"""The context policy used under each env protocol when `context` is not given."""
STUDY_SETTINGS: dict[str, float | int] = {"temperature": 0.7, "max_tokens": 4096}
"""The study's model settings, sent with every request under the study protocol unless
the same option was given to the agent."""
RENAMED_OPTIONS: dict[str, str] = {"protocol": "reply_format"}


class LLMAgent:
    """An agent backed by a litellm model (``llm:<model>`` on the command line).

    Options: `reply_format` ("tools", "json" or None: json under the study protocol, tools
    under extended), `context` ("full", "window" or None: window under study, full under
    extended) and `window` (turns kept verbatim), `system_prompt`, `tool_choice` (e.g.
    "required"), the transport (`api_base`, `api_key`, `timeout` per call in seconds),
    retries (`max_retries`, `retry_base_delay`, `retry_max_delay`), a `cassette` path and
    `cassette_mode` ("record", "replay" or "auto"), `transport` ("auto", "litellm" or
    "openai": how calls are made, see `tp_gym.llm.client`); any other keyword
    (temperature, max_tokens, top_p, ...) is sent with every request. Under the study
    protocol temperature 0.7 and max_tokens 4096 are sent unless given here (a value of
    None sends none).
    """

    needs_oracle = False

    def __init__(
        self,
        model: str,
        *,
        reply_format: ReplyFormat | None = None,
        context: ContextPolicy | None = None,
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
        transport: Transport = "auto",
        **litellm_kwargs: Any,
    ) -> None:
        for old, new in RENAMED_OPTIONS.items():
            if old in litellm_kwargs:
                raise TypeError(
                    f"LLMAgent's {old}={litellm_kwargs[old]!r} is now {new}= ('tools' or "
                    f"'json'; None follows the env); '{old}' now names the env's protocol, "
                    "chosen with gymnasium.make(id, protocol='study' or 'extended')"
                )
        # Bad values are user errors: say so now, not in the middle of an episode.
        check_options(
            "json" if reply_format is None else reply_format,
            "full" if context is None else context,
            window,
        )
        self.name = f"llm:{model}"
        self.reply_format = reply_format
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
            transport=transport,
            **litellm_kwargs,
        )
        self._given = set(litellm_kwargs)
        self._params = dict(self.client.params)
        self.system_addenda: list[str] = []
        """Paragraphs appended to the system prompt at every reset (`safety_prompt` adds one)."""
        self.turn_messages: list[dict[str, Any]] = []
        self._conversation: Conversation | None = None
        self._pending: list[dict[str, Any]] = []

    def settings(self, protocol: str = "extended") -> dict[str, Any]:
        """What an episode under env `protocol` uses: reply format, context, request params.

        ``{"reply_format": ..., "context": ..., "window": ..., "params": {...}}``; the
        options given to the agent win over the protocol's defaults.
        """
        if protocol not in ENV_PROTOCOLS:
            raise ValueError(
                f"protocol must be one of {', '.join(ENV_PROTOCOLS)}, got {protocol!r}"
            )
        params = dict(self._params)
        if protocol == "study":
            defaults = {k: v for k, v in STUDY_SETTINGS.items() if k not in self._given}
            params = {**defaults, **params}
        return {
            "reply_format": self.reply_format or DEFAULT_REPLY_FORMAT[protocol],
            "context": self.context or DEFAULT_CONTEXT[protocol],
            "window": self.window,
            "params": params,
        }

    def __repr__(self) -> str:
        return (
            f"LLMAgent({self.client.model!r}, reply_format={self.reply_format!r}, "
            f"context={self.context!r})"
        )

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
        protocol: str = "extended",
    ) -> None:
        """Start a conversation from the briefing and the env's tool schemas.

        `protocol` is the env's (the runner passes it); it decides the reply format,
        context policy and request settings that were not given (see `settings`).
        """
        settings = self.settings(protocol)
        self._conversation = Conversation(
            settings["reply_format"],
            tools,
            _text(observation),
            system_prompt=self.system_prompt,
            context=settings["context"],
            window=self.window,
        )
        if self.system_addenda:
            system = self._conversation.system
            system["content"] = "\n\n".join([system["content"], *self.system_addenda])
        self.client.params = settings["params"]
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
        """`act` for asyncio runners: the same conversation, awaited (`LLMClient.acomplete`)."""
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
