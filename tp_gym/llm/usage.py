"""Token and dollar accounting of LLM calls, per role, into `tp_gym.runs.episode.Usage`.

Costs come from litellm's price table (`litellm.completion_cost`). A model litellm has no
price for (a local vLLM or Ollama model, a new release) costs 0.0 and marks the role's
usage ``priced=False``, so reports can say that a total is incomplete instead of wrong.
"""

from __future__ import annotations

from typing import Any

from tp_gym.llm.completion import Completion
from tp_gym.runs.episode import Usage


def price(litellm: Any, response: Any, model: str) -> tuple[float, bool]:
    """(cost in USD, whether litellm knows the price) of one raw completion response."""
    hidden = getattr(response, "_hidden_params", None)
    known = hidden.get("response_cost") if isinstance(hidden, dict) else None
    if isinstance(known, int | float) and not isinstance(known, bool) and known >= 0.0:
        # litellm priced this very call while logging it; pricing it again costs ~1 ms of CPU.
        return float(known), True
    try:
        cost = litellm.completion_cost(completion_response=response, model=model)
    except Exception:  # noqa: BLE001 - litellm raises many kinds for unmapped models
        return 0.0, False
    try:
        value = float(cost)
    except (TypeError, ValueError):
        return 0.0, False
    return (value, True) if value >= 0.0 else (0.0, False)


def add_call(usage: Usage, completion: Completion) -> None:
    """Add one call's tokens and cost to `usage` (in place)."""
    usage.calls += 1
    usage.prompt_tokens += completion.prompt_tokens
    usage.completion_tokens += completion.completion_tokens
    usage.cost_usd = round(usage.cost_usd + completion.cost_usd, 12)
    usage.priced = usage.priced and completion.priced
