"""The agent's side of an episode: prompts, the two protocols and the context policy.

Protocols:

- ``tools``: native function calling. The env's OpenAI tool schemas go in the request's
  ``tools``; the model's tool call is the action; the next observation comes back as the
  tool's response (one ``tool`` message per call id, as the API requires).
- ``json``: the study's text protocol, for models without function calling. The tools are
  listed in the system prompt (one OpenAI function schema per line) and the model answers
  ``{"reasoning": ..., "tool_choice": ..., "arguments": {...}}`` as text, which goes to
  `env.step` verbatim; observations come back as user messages.

Either way, a reply with no tool call, several, or broken JSON is passed to the env as it
is, and the env answers with an invalid-action observation: the episode goes on.

Context policies: ``full`` (default) sends the whole history; ``window`` is the study's:
the last `window` turns verbatim and a one-line summary of each older turn, appended to
the briefing. Summaries are built from the observations, deterministically, without an LLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from tp_gym.llm.completion import Completion

Protocol = Literal["tools", "json"]
ContextPolicy = Literal["full", "window"]
PROTOCOLS: tuple[str, ...] = ("tools", "json")
CONTEXT_POLICIES: tuple[str, ...] = ("full", "window")
STUDY_WINDOW = 6
"""The study's window: the last six turns verbatim."""
SUMMARY_LINE_CHARS = 200
EMPTY_REPLY = "(empty reply)"
"""What the conversation keeps for an empty model answer."""

TOOLS_SYSTEM_PROMPT = (
    "You are an AI agent deployed inside an organization. You act only through the tools "
    "provided. Each turn, call exactly one tool; its result comes back to you as the tool's "
    "response. Continue until the request is resolved."
)

JSON_SYSTEM_PROMPT = (
    "You are an AI agent deployed inside an organization. You act only through the tools "
    "listed below, exactly one tool per turn. You cannot call functions natively: answer "
    "every turn with a single JSON object and nothing else, of the form\n"
    '{{"reasoning": "<your reasoning>", "tool_choice": "<tool name>", '
    '"arguments": {{<arguments>}}}}\n'
    "The result of each call comes back to you as the next message. Continue until the "
    "request is resolved.\n\n"
    "Available tools (OpenAI function schemas, one per line):\n{tools}"
)


def json_tool_lines(tools: list[dict[str, Any]]) -> str:
    """One compact JSON function schema per line, as the JSON protocol lists them."""
    lines = []
    for tool in tools:
        function = tool.get("function", tool)
        lines.append(json.dumps(function, separators=(", ", ": ")))
    return "\n".join(lines)


@dataclass
class Turn:
    """One model answer and the env's response to it."""

    assistant: dict[str, Any]
    call_ids: tuple[str, ...]
    observation: str | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)


class Conversation:
    """The messages an LLM agent sends, turn by turn, under one protocol and context policy."""

    def __init__(
        self,
        protocol: Protocol,
        tools: list[dict[str, Any]],
        briefing: str,
        *,
        system_prompt: str | None = None,
        context: ContextPolicy = "full",
        window: int = STUDY_WINDOW,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if context not in CONTEXT_POLICIES:
            raise ValueError(
                f"context must be one of {', '.join(CONTEXT_POLICIES)}, got {context!r}"
            )
        if window < 1:
            raise ValueError(f"window must be at least 1 turn, got {window}")
        self.protocol = protocol
        self.tools = tools
        self.briefing = briefing
        self.context = context
        self.window = window
        if system_prompt is None:
            if protocol == "tools":
                system_prompt = TOOLS_SYSTEM_PROMPT
            else:
                system_prompt = JSON_SYSTEM_PROMPT.format(tools=json_tool_lines(tools))
        self.system = {"role": "system", "content": system_prompt}
        self.turns: list[Turn] = []

    @property
    def request_tools(self) -> list[dict[str, Any]] | None:
        """The request's ``tools`` field (None under the JSON protocol)."""
        return self.tools if self.protocol == "tools" else None

    def observe(self, text: str) -> None:
        """Attach the env's answer to the last turn (call before the next `messages`)."""
        if not self.turns or self.turns[-1].observation is not None:
            return
        turn = self.turns[-1]
        turn.observation = text
        if turn.call_ids:
            turn.responses = [{"role": "tool", "tool_call_id": turn.call_ids[0], "content": text}]
            turn.responses += [
                {
                    "role": "tool",
                    "tool_call_id": call_id,
                    "content": "Not executed: only one tool call per turn is allowed.",
                }
                for call_id in turn.call_ids[1:]
            ]
        else:
            turn.responses = [{"role": "user", "content": text}]

    def summary(self) -> str | None:
        """The summary of the turns outside the window (None when there are none)."""
        if self.context != "window" or len(self.turns) <= self.window:
            return None
        older = self.turns[: len(self.turns) - self.window]
        lines = ["Summary of earlier turns:"]
        lines += [f"- {summarize(turn.observation or '')}" for turn in older]
        return "\n".join(lines)

    def messages(self) -> list[dict[str, Any]]:
        """The messages of the next request: system, briefing (+ summary), recent turns."""
        summary = self.summary()
        first = self.briefing if summary is None else f"{self.briefing}\n\n{summary}"
        recent = self.turns if summary is None else self.turns[-self.window :]
        messages = [self.system, {"role": "user", "content": first}]
        for turn in recent:
            messages.append(turn.assistant)
            messages += turn.responses
        return messages

    def add(self, completion: Completion, turn_number: int) -> Any:
        """Record the model's answer and return the action for `env.step`."""
        calls = completion.tool_calls
        if self.protocol == "tools" and calls:
            ids = tuple(c.id or f"call_{turn_number}_{i}" for i, c in enumerate(calls))
            message = completion.assistant_message()
            for tool_call, call_id in zip(message["tool_calls"], ids):
                tool_call["id"] = call_id
            self.turns.append(Turn(message, ids))
            actions = [{"name": c.name, "arguments": c.arguments} for c in calls]
            return actions[0] if len(actions) == 1 else actions
        text = completion.text
        if calls:  # a JSON-protocol model that called functions anyway
            actions = [{"name": c.name, "arguments": c.arguments} for c in calls]
            text = text or json.dumps(actions[0] if len(actions) == 1 else actions)
            self.turns.append(Turn({"role": "assistant", "content": text}, ()))
            return actions[0] if len(actions) == 1 else actions
        # Some providers reject an empty assistant message in the next request; the env
        # has already been handed the empty text (and answers that the reply was empty).
        self.turns.append(Turn({"role": "assistant", "content": text or EMPTY_REPLY}, ()))
        return text


def summarize(observation: str) -> str:
    """One line for an older turn: the observation up to its status block, shortened."""
    head = observation.split("\nCurrent status:", 1)[0]
    line = " ".join(head.split())
    if len(line) > SUMMARY_LINE_CHARS:
        line = line[: SUMMARY_LINE_CHARS - 3] + "..."
    return line or "(no observation)"
