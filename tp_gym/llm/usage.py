"""Token and dollar accounting of LLM calls, per role, into `tp_gym.runs.episode.Usage`.

Costs come from litellm's price table (`litellm.completion_cost`). A model litellm has no
price for (a local vLLM or Ollama model, a new release) costs 0.0 and marks the role's
usage ``priced=False``, so reports can say that a total is incomplete instead of wrong.

Calls on the openai SDK fast path are priced by `price_from_map` from the same table,
litellm's bundled ``model_prices_and_context_window_backup.json`` (the one litellm itself
reads, offline), without importing litellm: plain per-token prices are applied directly
(the same products and sum as litellm's), and only a call that needs litellm's special
cases (cached or audio tokens, long-context tiers, service tiers) loads litellm to price it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
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


COST_MAP_FILE = "model_prices_and_context_window_backup.json"
_PLAIN_FIELDS = ("input_cost_per_token", "output_cost_per_token")
_SPECIAL_PARAMS = ("service_tier", "data_residency", "region")


@functools.lru_cache(maxsize=1)
def cost_map() -> dict[str, Any]:
    """litellm's bundled price table, read from its package without importing litellm
    ({} when litellm is not installed)."""
    spec = importlib.util.find_spec("litellm")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder, COST_MAP_FILE)
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
    return {}


@functools.lru_cache(maxsize=256)
def _entry(provider: str | None, name: str) -> dict[str, Any] | None:
    table = cost_map()
    for key in (f"{provider}/{name}" if provider else None, name):
        entry = table.get(key) if key else None
        if isinstance(entry, dict) and entry.get("litellm_provider") == (provider or "openai"):
            return entry
    return None


def _plain(entry: dict[str, Any]) -> bool:
    """Whether the entry prices every token at one input and one output rate."""
    if not all(isinstance(entry.get(f), int | float) for f in _PLAIN_FIELDS):
        return False
    return not any(
        ("above_" in key or "peak" in key or "_per_second" in key or "per_character" in key)
        for key in entry
    )


def _details_used(usage: Any) -> bool:
    """Whether a usage block reports cached, audio, image or reasoning tokens."""
    for field in ("prompt_tokens_details", "completion_tokens_details"):
        details = getattr(usage, field, None)
        if details is None:
            continue
        values = details.model_dump() if hasattr(details, "model_dump") else vars(details)
        if any(isinstance(v, int | float) and v for v in values.values()):
            return True
    return bool(getattr(usage, "cache_creation_input_tokens", 0))


def price_from_map(
    model: str, provider: str | None, name: str, response: Any, params: dict[str, Any]
) -> tuple[float, bool]:
    """(cost in USD, whether the price is known) of an openai-SDK response for `model`
    (``provider/name``), from litellm's price table; see the module docstring."""
    entry = _entry(provider, name)
    if entry is None:
        return 0.0, False
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    special = any(p in params for p in _SPECIAL_PARAMS) or _details_used(usage)
    if _plain(entry) and not special:
        prompt_cost = prompt * float(entry["input_cost_per_token"])
        completion_cost = completion * float(entry["output_cost_per_token"])
        return prompt_cost + completion_cost, True
    from tp_gym.llm.client import load_litellm

    litellm = load_litellm()
    try:
        converted = litellm.ModelResponse(**response.model_dump())
    except Exception:  # noqa: BLE001 - an unexpected response shape is just unpriced
        return 0.0, False
    return price(litellm, converted, model)


def add_call(usage: Usage, completion: Completion) -> None:
    """Add one call's tokens and cost to `usage` (in place)."""
    usage.calls += 1
    usage.prompt_tokens += completion.prompt_tokens
    usage.completion_tokens += completion.completion_tokens
    usage.cost_usd = round(usage.cost_usd + completion.cost_usd, 12)
    usage.priced = usage.priced and completion.priced
