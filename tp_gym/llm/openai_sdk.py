"""The fast path: OpenAI-compatible endpoints through the `openai` SDK, without litellm.

litellm spends 7-10 ms of CPU per call on this machine translating a request that an
OpenAI-compatible server (vLLM, SGLang, Ollama's /v1, a gateway) takes as it is. This
module holds the SDK clients `LLMClient` uses when its transport is ``openai``:

- one `openai.OpenAI` per (base URL, key) per process and one `openai.AsyncOpenAI` per
  (base URL, key) per event loop, each over an httpx pool of `POOL_CONNECTIONS`
  connections (the SDK's default pool holds 1000 too, but keeps only 100 alive: a run of
  hundreds of concurrent episodes would reconnect all the time);
- the SDK's own retries are off (``max_retries=0``): `LLMClient` retries, as it does
  for litellm, so both transports retry, back off and fail alike;
- `request_body` turns a request as `LLMClient.build_request` builds it (the very dict a
  cassette is keyed by) into the JSON body: the model without its provider prefix, the
  messages without None fields (as litellm sends them), every other parameter as given;
  `create` and `acreate` POST it with the SDK client (its auth, headers, timeouts, error
  classes and response types) and skip only the SDK's per-call rebuilding of the body.

The openai package is imported on first use, never by ``import tp_gym``.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from typing import Any

POOL_CONNECTIONS = 1024
"""Connections each SDK client may open and keep alive (one per concurrent call)."""

_openai: Any = None
_sync_clients: dict[tuple[str | None, str], Any] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Any]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def load_openai() -> Any:
    """Import the openai SDK once; a clear ImportError if it is missing."""
    global _openai
    if _openai is None:
        try:
            import openai
        except ImportError:
            raise ImportError(
                "the openai transport needs the openai package; install it with: "
                "pip install openai (or use transport='litellm')"
            ) from None
        _openai = openai
    return _openai


def _limits() -> Any:
    import httpx

    return httpx.Limits(
        max_connections=POOL_CONNECTIONS,
        max_keepalive_connections=POOL_CONNECTIONS,
        keepalive_expiry=30.0,
    )


def sync_client(base_url: str | None, api_key: str) -> Any:
    """The shared `openai.OpenAI` for (base_url, api_key) in this process (thread-safe)."""
    key = (base_url, api_key)
    client = _sync_clients.get(key)
    if client is None:
        openai = load_openai()
        with _lock:
            client = _sync_clients.get(key)
            if client is None:
                client = openai.OpenAI(
                    base_url=base_url,
                    api_key=api_key,
                    max_retries=0,
                    http_client=openai.DefaultHttpxClient(limits=_limits()),
                )
                if not _sync_clients:
                    atexit.register(close_sync_clients)
                _sync_clients[key] = client
    return client


def close_sync_clients() -> None:
    """Close the shared sync clients' connections (at exit: no unclosed-socket warnings)."""
    with _lock:
        clients = list(_sync_clients.values())
        _sync_clients.clear()
    for client in clients:
        client.close()


def async_client(base_url: str | None, api_key: str) -> Any:
    """The shared `openai.AsyncOpenAI` for (base_url, api_key) on the running event loop.

    An httpx async pool belongs to the loop that opened its connections, so each loop gets
    its own client; it goes when the loop is garbage.
    """
    loop = asyncio.get_running_loop()
    clients = _async_clients.get(loop)
    if clients is None:
        clients = _async_clients.setdefault(loop, {})
    key = (base_url, api_key)
    client = clients.get(key)
    if client is None:
        openai = load_openai()
        client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=_limits()),
        )
        clients[key] = client
    return client


def request_body(request: dict[str, Any], model: str) -> dict[str, Any]:
    """The chat-completions JSON body for a request built by `LLMClient`: the request as
    it is, with `model` (the id without its provider prefix) and the messages without None
    fields (litellm leaves those out, so both transports send the same bytes)."""
    body = dict(request)
    body["model"] = model
    messages = body.get("messages")
    if isinstance(messages, list):
        body["messages"] = [_without_nulls(message) for message in messages]
    return body


def create(client: Any, body: dict[str, Any], timeout: float) -> Any:
    """POST /chat/completions through a sync SDK client; a `ChatCompletion`.

    What ``client.chat.completions.create(**body)`` sends, without its pass that rebuilds
    every message through the SDK's typed dicts (about 2 ms of CPU per call for an
    episode's conversation, for a body that is plain JSON already).
    """
    from openai.types.chat import ChatCompletion

    return client.post(
        "/chat/completions", body=body, cast_to=ChatCompletion, options={"timeout": timeout}
    )


async def acreate(client: Any, body: dict[str, Any], timeout: float) -> Any:
    """`create` through an async SDK client."""
    from openai.types.chat import ChatCompletion

    return await client.post(
        "/chat/completions", body=body, cast_to=ChatCompletion, options={"timeout": timeout}
    )


def _without_nulls(message: Any) -> Any:
    """A message without its None fields, as litellm sends it (``"content": null`` beside
    tool calls is left out), so both transports send the same conversation."""
    if isinstance(message, dict) and any(value is None for value in message.values()):
        return {key: value for key, value in message.items() if value is not None}
    return message
