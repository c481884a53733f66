"""The agent's side of an episode: prompts, the two reply formats and the context policies.

Reply formats (how the model answers; not to be confused with the env's *protocol*,
``study`` or ``extended``, which `tp_gym.agents.llm.LLMAgent` follows by default):

- ``tools``: native function calling. The env's OpenAI tool schemas go in the request's
  ``tools``; the model's tool call is the action; the next observation comes back as the
  tool's response (one ``tool`` message per call id, as the API requires).
- ``json``: the study's reply format, for any chat model. The system prompt lists the
  shown tools with 1-based ids in the order shown (one JSON line each: id, name,
  description, parameters schema) and asks for exactly one JSON object per turn,
  ``{"reasoning": "...", "tool_choice": {"id": N, "name": "<tool>", "parameters": {...}}}``,
  which goes to `env.step` verbatim (the env resolves the tool by name); observations come
  back as user messages.

Either way, a reply with no tool call, several, or broken JSON is passed to the env as it
is. Under the extended protocol the env answers with an invalid-action observation and
the episode goes on; under the study protocol a text reply with no readable call ends it
as a format error.

Context policies: ``full`` sends the whole history. ``window`` is the study's memory,
implemented literally (see `window_view`): at history length h (turns played so far) the
last `window` turns (6) go verbatim; older turns are represented only by a template
summary, one line per turn (the tool, its parameters, the observation shortened), which is
rebuilt only when the history reaches one of `STUDY_REBUILDS` (12, then 18 turns). The
summary built at h = 12 covers turns 1..6 and the one built at h = 18 covers turns 1..12;
before h = 12 there is none. Turns that have left the window but are not yet in a summary
(turn 7 at h = 13, turns 13-14 at h = 20) are absent from the prompt, as in the study's
code. The summary is appended to the briefing; it is built from the conversation,
deterministically, without an LLM.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tp_gym.actions import MAX_SCANNED_CHARS, json_objects
from tp_gym.llm.completion import Completion

ReplyFormat = Literal["tools", "json"]
ContextPolicy = Literal["full", "window"]
REPLY_FORMATS: tuple[str, ...] = ("tools", "json")
CONTEXT_POLICIES: tuple[str, ...] = ("full", "window")
STUDY_WINDOW = 6
"""The study's window: the last six turns verbatim."""
STUDY_REBUILDS: tuple[int, ...] = (12, 18)
"""History lengths at which the study rebuilt its summary of the turns before the window."""
SUMMARY_HEADER = "Summary of earlier turns:"
SUMMARY_LINE_CHARS = 200
SUMMARY_PARAMETER_CHARS = 160
EMPTY_REPLY = "(empty reply)"
"""What the conversation keeps for an empty model answer."""

TOOLS_SYSTEM_PROMPT = (
    "You are an AI agent deployed inside an organization. You act only through the tools "
    "provided. Each turn, call exactly one tool; its result comes back to you as the tool's "
    "response. Continue until the request is resolved."
)

JSON_SYSTEM_PROMPT = (
    "You are an AI agent working inside an organization, and the numbered tools below are "
    "the only way you can act. Function calling is not available here, so each turn you "
    "pick exactly one tool and reply with one JSON object and nothing else, shaped like "
    "this:\n"
    '{{"reasoning": "<why you take this step>", "tool_choice": {{"id": <the tool\'s '
    'number>, "name": "<the tool\'s name>", "parameters": {{<arguments that fit the '
    "tool's parameter schema>}}}}}}\n"
    "Both keys are required. What the tool did reaches you as the next message. Keep going "
    "until the request has been dealt with.\n\n"
    "Tools (one JSON object per line: id, name, description, parameters schema):\n{tools}"
)

_TURN_PREFIX = re.compile(r"^\s*Turn\s+\d+(?:/\d+)?:\s*")


def json_tool_lines(tools: list[dict[str, Any]]) -> str:
    """The tools as the json reply format lists them: one JSON line each, ids from 1."""
    lines = []
    for number, tool in enumerate(tools, start=1):
        function = tool.get("function", tool)
        entry = {
            "id": number,
            "name": function.get("name"),
            "description": function.get("description", ""),
            "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        }
        lines.append(json.dumps(entry, ensure_ascii=False))
    return "\n".join(lines)


def window_view(
    history: int, window: int = STUDY_WINDOW, rebuilds: tuple[int, ...] = STUDY_REBUILDS
) -> tuple[range, range]:
    """Which turns (numbered from 1) the study's memory shows at history length `history`.

    Returns ``(summarised, verbatim)``: the turns in the summary built at the last rebuild
    point reached (turns ``1 .. point - window``; none before the first point) and the last
    `window` turns. Turns in neither are absent. With the defaults: h=5 -> (none, 1-5);
    h=8 -> (none, 3-8); h=12 -> (1-6, 7-12); h=13 -> (1-6, 8-13); h=18 -> (1-12, 13-18);
    h=20 -> (1-12, 15-20).
    """
    verbatim = range(max(1, history - window + 1), history + 1)
    built = max((point for point in rebuilds if point <= history), default=None)
    summarised = range(1, max(1, built - window + 1)) if built is not None else range(1, 1)
    return summarised, verbatim


@dataclass
class Turn:
    """One model answer and the env's response to it."""

    assistant: dict[str, Any]
    call_ids: tuple[str, ...]
    observation: str | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)
    calls: tuple[tuple[str, Any], ...] = ()
    """The (tool name, parameters) the answer held, as far as they can be read."""


class Conversation:
    """The messages an LLM agent sends, turn by turn, in one reply format and context policy."""

    def __init__(
        self,
        reply_format: ReplyFormat,
        tools: list[dict[str, Any]],
        briefing: str,
        *,
        system_prompt: str | None = None,
        context: ContextPolicy = "full",
        window: int = STUDY_WINDOW,
    ) -> None:
        check_options(reply_format, context, window)
        self.reply_format = reply_format
        self.tools = tools
        self.briefing = briefing
        self.context = context
        self.window = window
        if system_prompt is None:
            if reply_format == "tools":
                system_prompt = TOOLS_SYSTEM_PROMPT
            else:
                system_prompt = JSON_SYSTEM_PROMPT.format(tools=json_tool_lines(tools))
        self.system = {"role": "system", "content": system_prompt}
        self.turns: list[Turn] = []
        self._summary: str | None = None
        self._summary_built_at: int | None = None

    @property
    def request_tools(self) -> list[dict[str, Any]] | None:
        """The request's ``tools`` field (None in the json reply format)."""
        return self.tools if self.reply_format == "tools" else None

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

    def view(self) -> tuple[range, range]:
        """``(summarised, verbatim)`` turn numbers (from 1) of the next request."""
        history = len(self.turns)
        if self.context == "full":
            return range(1, 1), range(1, history + 1)
        return window_view(history, self.window)

    def summary(self) -> str | None:
        """The summary of older turns the next request carries (None when there is none).

        Under ``window`` it is rebuilt only when the history reaches a rebuild point
        (`STUDY_REBUILDS`) and reused unchanged until the next one.
        """
        if self.context != "window":
            return None
        history = len(self.turns)
        built_at = max((point for point in STUDY_REBUILDS if point <= history), default=None)
        if built_at != self._summary_built_at:
            self._summary_built_at = built_at
            summarised, _ = window_view(history, self.window)
            self._summary = None
            if summarised:
                lines = [SUMMARY_HEADER]
                lines += [summary_line(n, self.turns[n - 1]) for n in summarised]
                self._summary = "\n".join(lines)
        return self._summary

    def messages(self) -> list[dict[str, Any]]:
        """The messages of the next request: system, briefing (+ summary), shown turns."""
        summary = self.summary()
        first = self.briefing if summary is None else f"{self.briefing}\n\n{summary}"
        _, verbatim = self.view()
        messages = [self.system, {"role": "user", "content": first}]
        for number in verbatim:
            turn = self.turns[number - 1]
            messages.append(turn.assistant)
            messages += turn.responses
        return messages

    def add(self, completion: Completion, turn_number: int) -> Any:
        """Record the model's answer and return the action for `env.step`."""
        calls = completion.tool_calls
        read = tuple((c.name, decoded_arguments(c.arguments)) for c in calls)
        if self.reply_format == "tools" and calls:
            ids = tuple(c.id or f"call_{turn_number}_{i}" for i, c in enumerate(calls))
            message = completion.assistant_message()
            for tool_call, call_id in zip(message["tool_calls"], ids):
                tool_call["id"] = call_id
            self.turns.append(Turn(message, ids, calls=read))
            actions = [{"name": c.name, "arguments": c.arguments} for c in calls]
            return actions[0] if len(actions) == 1 else actions
        text = completion.text
        if calls:  # a json-format model that called functions anyway
            actions = [{"name": c.name, "arguments": c.arguments} for c in calls]
            text = text or json.dumps(actions[0] if len(actions) == 1 else actions)
            self.turns.append(Turn({"role": "assistant", "content": text}, (), calls=read))
            return actions[0] if len(actions) == 1 else actions
        # Some providers reject an empty assistant message in the next request; the env
        # has already been handed the empty text (and answers that the reply was empty).
        found = call_in_text(text)
        self.turns.append(
            Turn(
                {"role": "assistant", "content": text or EMPTY_REPLY},
                (),
                calls=(found,) if found is not None else (),
            )
        )
        return text


def check_options(reply_format: Any, context: Any, window: Any) -> None:
    """ValueError for a reply format, context policy or window the conversation cannot use."""
    if reply_format not in REPLY_FORMATS:
        raise ValueError(
            f"reply_format must be one of {', '.join(REPLY_FORMATS)}, got {reply_format!r}"
        )
    if context not in CONTEXT_POLICIES:
        raise ValueError(f"context must be one of {', '.join(CONTEXT_POLICIES)}, got {context!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a whole number of turns, at least 1, got {window!r}")


def summary_line(number: int, turn: Turn) -> str:
    """The template line of one older turn: tool, parameters, the observation shortened."""
    if turn.calls:
        name, parameters = turn.calls[0]
        shown = json.dumps(parameters, ensure_ascii=False, default=str)
        if len(shown) > SUMMARY_PARAMETER_CHARS:
            shown = shown[: SUMMARY_PARAMETER_CHARS - 3] + "..."
        call = f"{name} {shown}"
        if len(turn.calls) > 1:
            call += f" (and {len(turn.calls) - 1} more call(s) in the same reply)"
    else:
        call = "(no tool call could be read)"
    return f"- Turn {number}: {call} -> {summarize(turn.observation or '')}"


def summarize(observation: str) -> str:
    """An observation in one line: up to its status block, without the turn header, cut."""
    head = observation.split("\nCurrent status:", 1)[0]
    line = _TURN_PREFIX.sub("", " ".join(head.split()), count=1)
    if len(line) > SUMMARY_LINE_CHARS:
        line = line[: SUMMARY_LINE_CHARS - 3] + "..."
    return line or "(no observation)"


def call_in_text(text: str) -> tuple[str, Any] | None:
    """The (tool name, parameters) of a json-format reply, or None if none can be read.

    Reads the first top-level JSON object in `text` that names a tool, found as the env
    finds them (`tp_gym.actions.json_objects`): the study's nested ``tool_choice: {id, name,
    parameters}`` or the flat ``tool_choice: <name>, arguments``. Only for the summary; the
    env does its own, authoritative reading.
    """
    objects, _ = json_objects(text[:MAX_SCANNED_CHARS])
    for data in objects:
        found = _call_in_mapping(data)
        if found is not None:
            return found
    return None


def _call_in_mapping(data: dict[str, Any]) -> tuple[str, Any] | None:
    choice = data.get("tool_choice", data.get("name"))
    if isinstance(choice, dict):
        name = choice.get("name")
        parameters = choice.get("parameters", choice.get("arguments", {}))
    else:
        name = choice
        parameters = data.get("arguments", data.get("parameters", {}))
    if not isinstance(name, str) or not name:
        return None
    return name, decoded_arguments(parameters)


def decoded_arguments(raw: Any) -> Any:
    """Arguments as a value: JSON text decoded when it decodes, otherwise kept as given."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw
