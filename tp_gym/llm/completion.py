"""`Completion`: one model answer in a provider-neutral, JSON-ready form.

The same record is what a cassette stores and what an episode log shows, so a replayed
answer is indistinguishable from the recorded one (usage and cost included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CalledTool:
    """One tool call as the model wrote it; `arguments` is the raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    """The first choice of a chat completion, with its token usage and dollar cost."""

    content: str | None
    tool_calls: tuple[CalledTool, ...] = ()
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    reasoning: str | None = None
    """The model's separate reasoning text, for providers that return one."""

    @property
    def text(self) -> str:
        """The assistant text ('' when the model wrote none)."""
        return self.content or ""

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (the cassette format)."""
        record: dict[str, Any] = {
            "content": self.content,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ],
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "priced": self.priced,
        }
        if self.reasoning is not None:
            record["reasoning"] = self.reasoning
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Completion:
        """The inverse of `to_record`."""
        return cls(
            content=record.get("content"),
            tool_calls=tuple(
                CalledTool(str(c.get("id") or ""), str(c["name"]), str(c.get("arguments") or ""))
                for c in record.get("tool_calls") or []
            ),
            finish_reason=record.get("finish_reason"),
            prompt_tokens=int(record.get("prompt_tokens") or 0),
            completion_tokens=int(record.get("completion_tokens") or 0),
            cost_usd=float(record.get("cost_usd") or 0.0),
            priced=bool(record.get("priced", True)),
            reasoning=record.get("reasoning"),
        )

    def assistant_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation for the next request."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or ""}
        if self.tool_calls:
            message["content"] = self.content
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return message

    def usage_record(self) -> dict[str, Any]:
        """Tokens and cost of this one call, for the episode log."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "priced": self.priced,
        }
