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
import contextlib
import json
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


class AsyncEndpoint:
    """An OpenAI-compatible endpoint for async calls: one aiohttp session (a keep-alive pool
    of `POOL_CONNECTIONS`) for one (base URL, key) on one event loop.

    Async calls are the hot path of a run (hundreds of episodes in flight on one loop), so
    they skip the SDK's httpx stack, whose CPU per call (about 2 ms here, growing with the
    connections open) capped one process well below the rate a server allows; aiohttp's
    costs about 0.4 ms. What goes out and comes back is the SDK's all the same: the body the
    SDK would send, `ChatCompletion` answers, and the SDK's own exception classes for
    errors (`status_error`), so retries, messages and accounting do not change.
    """

    max_retries = 0  # as the SDK clients: `LLMClient` alone retries

    def __init__(self, base_url: str | None, api_key: str) -> None:
        import aiohttp
        import yarl

        # Credentials inside the URL are never sent: the key goes in the Authorization header.
        base = yarl.URL((base_url or DEFAULT_BASE_URL).rstrip("/")).with_user(None)
        self.url = f"{base}/chat/completions"
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"tp_gym (openai-compatible; openai/{load_openai().__version__})",
        }
        connector = aiohttp.TCPConnector(limit=POOL_CONNECTIONS, keepalive_timeout=30.0)
        self.session = aiohttp.ClientSession(connector=connector)

    async def post(self, body: dict[str, Any], timeout: float) -> Any:
        """POST `body`; the answer as a `ChatCompletion`, or the SDK's exception."""
        import aiohttp

        openai = load_openai()
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        try:
            async with self.session.post(
                self.url,
                data=data.encode("utf-8"),
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
                content = await response.read()
                headers = dict(response.headers)
        except asyncio.TimeoutError:
            raise openai.APITimeoutError(request=self._request()) from None
        except aiohttp.ClientError as error:
            raise openai.APIConnectionError(message=str(error), request=self._request()) from None
        if status >= 400:
            raise status_error(status, content, headers, self._request())
        from openai.types.chat import ChatCompletion

        answer = json.loads(content)  # a 200 that is not JSON: ValueError, as from the SDK
        if not isinstance(answer, dict):
            raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
        return ChatCompletion.construct(**answer)

    def _request(self) -> Any:
        import httpx

        return httpx.Request("POST", self.url)

    async def close(self) -> None:
        await self.session.close()


DEFAULT_BASE_URL = "https://api.openai.com/v1"

_STATUS_ERRORS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}


def status_error(status: int, content: bytes, headers: dict[str, str], request: Any) -> Exception:
    """The SDK's exception for an HTTP error answer, built as the SDK builds it (same class,
    message, body and response, so `Retry-After` and classification work unchanged)."""
    import httpx

    openai = load_openai()
    response = httpx.Response(status, headers=headers, content=content, request=request)
    text = content.decode("utf-8", errors="replace").strip()
    body: Any = text
    with contextlib.suppress(ValueError):
        body = json.loads(text)
    data = body.get("error", body) if isinstance(body, dict) else body
    name = _STATUS_ERRORS.get(status, "InternalServerError" if status >= 500 else "APIStatusError")
    return getattr(openai, name)(f"Error code: {status} - {body}", response=response, body=data)


def async_client(base_url: str | None, api_key: str) -> AsyncEndpoint:
    """The shared `AsyncEndpoint` for (base_url, api_key) on the running event loop.

    A connection pool belongs to the loop that opened it, so each loop gets its own; close
    them with `close_async_clients` before the loop ends (`evaluate` does).
    """
    loop = asyncio.get_running_loop()
    clients = _async_clients.get(loop)
    if clients is None:
        clients = _async_clients.setdefault(loop, {})
    key = (base_url, api_key)
    client = clients.get(key)
    if client is None:
        if not clients:
            # Closed at the latest when the loop shuts down its async generators, as
            # `asyncio.run` does: no "unclosed client session" warnings after a run.
            closer = _close_at_shutdown()
            loop.create_task(anext(closer))  # noqa: RUF006 - the loop keeps the generator
            _closers[loop] = closer
        client = clients[key] = AsyncEndpoint(base_url, api_key)
    return client


async def close_async_clients() -> None:
    """Close the endpoints of the running loop (their connections), if any."""
    loop = asyncio.get_running_loop()
    clients = _async_clients.pop(loop, {})
    _closers.pop(loop, None)
    for client in clients.values():
        await client.close()


_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


async def _close_at_shutdown() -> Any:
    try:
        yield
    finally:
        await close_async_clients()


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


async def acreate(client: AsyncEndpoint, body: dict[str, Any], timeout: float) -> Any:
    """POST /chat/completions through an `AsyncEndpoint`; a `ChatCompletion`."""
    return await client.post(body, timeout)


def _without_nulls(message: Any) -> Any:
    """A message without its None fields, as litellm sends it (``"content": null`` beside
    tool calls is left out), so both transports send the same conversation."""
    if isinstance(message, dict) and any(value is None for value in message.values()):
        return {key: value for key, value in message.items() if value is not None}
    return message
