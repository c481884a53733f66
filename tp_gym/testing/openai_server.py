"""`FakeOpenAIServer`: a loopback OpenAI-compatible chat-completions server.

It answers ``POST /v1/chat/completions`` (and ``GET /v1/models``) on 127.0.0.1 with replies
that are deterministic functions of the conversation, so tests and benchmarks can drive
litellm over real HTTP without a key or a network:

- With no script, a request that carries ``tools`` gets a valid call to one of them, chosen
  from a hash of the conversation (arguments filled from each tool's JSON schema), so an
  episode ends after a few turns. A request without ``tools`` (the agent's ``json`` reply
  format) gets the study's reply, ``{"reasoning": ..., "tool_choice": {"id", "name",
  "parameters"}}``, naming a tool listed in the prompt with its id there: JSON lines with a
  ``name`` (and ``id``, else the line's position from 1), as the agent's system prompt
  lists them, or else the briefing's ``1. name(arg: type, ...)`` / ``- name(...)`` lines.
- `script` overrides that per request: a callable ``request -> reply | None`` or a sequence
  of ``(substring, reply)`` pairs matched against the last message of the conversation.
  A reply is a `Reply`, a string (assistant text), a dict ``{"name", "arguments"}`` (one
  tool call) or a list of such dicts (several tool calls).
- `fault_rate` injects faults drawn from a seeded generator in arrival order: HTTP 429 and
  500, a timeout (the connection is held for `hang` seconds and closed without a reply),
  a malformed JSON body, a call to an unknown tool, and a response with no choices.
- `latency` delays every reply; `api_key` makes the server answer 401 to any other key.

Speed matters because benchmarks measure agents through it: the whole response goes out in
one write on a socket with TCP_NODELAY (otherwise each reply can wait ~40 ms for a delayed
ACK), connections are kept alive (HTTP/1.1) and the listen backlog is 1024 rather than
`socketserver`'s 5, so bursts of connections are queued instead of reset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, TypeAlias

FAULTS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "timeout",
    "malformed_json",
    "unknown_tool",
    "empty_choices",
)
"""Fault kinds the server can inject (randomly at `fault_rate`, or scripted by `Reply.fault`)."""

UNKNOWN_TOOL = "nonexistent_tool"
MAX_BODY_BYTES = 16 * 1024 * 1024
_SIGNATURE = re.compile(r"^\s*(?:-|(\d{1,4})\.)\s*([A-Za-z0-9_-]{1,64})\(([^()]*)\)", re.MULTILINE)


@dataclass(frozen=True)
class Reply:
    """One scripted answer: assistant text, tool calls (name, JSON arguments), or a fault."""

    content: str | None = None
    tool_calls: tuple[tuple[str, str], ...] = ()
    fault: str | None = None
    latency: float | None = None
    """Seconds to wait before this reply (overrides the server's `latency`)."""
    status: int = 200
    """Any other status answers with an OpenAI-style error body carrying `content` as message."""

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; choose one of: {', '.join(FAULTS)}")
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, got {self.status}")


def error_reply(status: int, message: str = "scripted error") -> Reply:
    """A reply with an HTTP error status (400, 401, 404, 503, ...) and an OpenAI error body."""
    return Reply(content=message, status=status)


def text_reply(content: str) -> Reply:
    """A reply with assistant text and no tool call."""
    return Reply(content=content)


def tool_reply(name: str, arguments: dict[str, Any] | str | None = None) -> Reply:
    """A reply with one tool call; `arguments` may be a dict or raw (possibly broken) JSON."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return Reply(tool_calls=((name, raw),))


ReplyLike: TypeAlias = Reply | str | dict[str, Any] | list[dict[str, Any]]
Script: TypeAlias = Callable[[dict[str, Any]], ReplyLike | None] | Sequence[tuple[str, ReplyLike]]


def as_reply(value: ReplyLike) -> Reply:
    """Normalise the reply forms a script may return."""
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(content=value)
    calls = value if isinstance(value, list) else [value]
    out = []
    for call in calls:
        arguments = call.get("arguments", {})
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        out.append((str(call["name"]), raw))
    return Reply(tool_calls=tuple(out))


class FakeOpenAIServer:
    """A threaded OpenAI-compatible server on 127.0.0.1 and a free port.

    Use it as a context manager (or call `start` and `stop`); point clients at `base_url`.
    `stats` counts requests, replies and each injected fault; `authorizations` holds the
    ``Authorization`` headers seen; `requests` keeps the last 256 request bodies;
    `most_in_flight` is the largest number of chat requests answered at once.
    """

    def __init__(
        self,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        seed: int = 0,
        script: Script | None = None,
        *,
        faults: Sequence[str] = FAULTS,
        hang: float = 2.0,
        api_key: str | None = None,
        port: int = 0,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must lie in [0, 1], got {fault_rate}")
        unknown = [f for f in faults if f not in FAULTS]
        if unknown or not faults:
            raise ValueError(f"faults must be a non-empty subset of {FAULTS}, got {list(faults)}")
        self.latency = latency
        self.fault_rate = fault_rate
        self.script = script
        self.faults = tuple(faults)
        self.hang = hang
        self.api_key = api_key
        self.stats: Counter[str] = Counter()
        self.authorizations: set[str] = set()
        self.requests: deque[dict[str, Any]] = deque(maxlen=256)
        self.in_flight = 0
        self.most_in_flight = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requested_port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound port (after `start`)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the value for `api_base`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Bind 127.0.0.1 and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", self._requested_port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake any held (timeout-fault) connections and close the socket."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ replies

    def answer(self, request: dict[str, Any]) -> Reply:
        """The reply to one chat-completions request (fault draw, then script, then default)."""
        with self._lock:
            fault = None
            if self.fault_rate and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
        if fault is not None:
            return Reply(fault=fault)
        scripted = self._scripted(request)
        return scripted if scripted is not None else default_reply(request)

    def _scripted(self, request: dict[str, Any]) -> Reply | None:
        if self.script is None:
            return None
        if callable(self.script):
            value = self.script(request)
            return None if value is None else as_reply(value)
        messages = request.get("messages") or []
        last = message_text(messages[-1]) if messages else ""
        for pattern, value in self.script:
            if pattern in last:
                return as_reply(value)
        return None

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    @contextlib.contextmanager
    def answering(self) -> Iterator[Callable[[], None]]:
        """Count one chat request in flight while it is being answered.

        Yields `leave`, which the handler calls just before it writes the reply: once the
        client can read it, the client may send its next request, and that one must not be
        counted as overlapping this one.
        """
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        left = False

        def leave() -> None:
            nonlocal left
            with self._lock:
                if not left:
                    left = True
                    self.in_flight -= 1

        try:
            yield leave
        finally:
            leave()

    def count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1


# ---------------------------------------------------------------------- default replies


def message_text(message: Any) -> str:
    """The text of a chat message (string content or the text parts of a list)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def conversation_digest(request: dict[str, Any]) -> str:
    """A stable hex digest of the conversation (messages and tool names)."""
    payload = json.dumps(
        [request.get("messages"), [_tool_name(t) for t in request.get("tools") or []]],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def default_reply(request: dict[str, Any]) -> Reply:
    """A valid call to a tool picked from a hash of the conversation (see the module doc)."""
    digest = int(conversation_digest(request)[:16], 16)
    tools = request.get("tools")
    if tools:
        schemas = [t.get("function", t) for t in tools if isinstance(t, dict)]
        schema = schemas[digest % len(schemas)]
        arguments = arguments_for(schema.get("parameters") or {})
        return Reply(tool_calls=((str(schema.get("name")), json.dumps(arguments)),))
    listed = tools_in_prompt(request.get("messages") or [])
    if not listed:
        return Reply(content="The request is processed as reported.")
    tool = listed[digest % len(listed)]
    return Reply(content=json_reply_text(tool.id, tool.name, arguments_for(tool.parameters)))


def json_reply_text(tool_id: int, name: str, parameters: dict[str, Any]) -> str:
    """The study's reply format: ``{"reasoning", "tool_choice": {"id", "name", "parameters"}}``."""
    return json.dumps(
        {
            "reasoning": "Scripted reply from the loopback test server.",
            "tool_choice": {"id": tool_id, "name": name, "parameters": parameters},
        }
    )


def arguments_for(parameters: dict[str, Any]) -> dict[str, Any]:
    """Valid arguments for a JSON schema: enum's first value, else a value of the right type."""
    properties = parameters.get("properties") or {}
    required = parameters.get("required", list(properties))
    arguments: dict[str, Any] = {}
    for name in required:
        prop = properties.get(name) or {}
        if prop.get("enum"):
            value: Any = prop["enum"][0]
        elif "default" in prop:
            value = prop["default"]
        else:
            kind = prop.get("type", "string")
            value = {"integer": 1, "number": 1.0, "boolean": True}.get(kind, "ok")
        arguments[name] = value
    return arguments


class ListedTool(NamedTuple):
    """A tool the prompt lists: its id (from 1), name and parameters schema."""

    id: int
    name: str
    parameters: dict[str, Any]


def tools_in_prompt(messages: list[Any]) -> list[ListedTool]:
    """Tools listed in the prompt: JSON lines naming a tool, else signature lines.

    A JSON line's ``id`` is used when it is an int, else its position among such lines
    (from 1); a signature ``3. name(...)`` gives id 3, a ``- name(...)`` its position.
    """
    found: dict[str, ListedTool] = {}
    texts = [message_text(m) for m in messages]
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            function = data.get("function", data) if isinstance(data, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                given = function.get("id", data.get("id"))
                number = given if _is_id(given) else len(found) + 1
                parameters = function.get("parameters") or {}
                found.setdefault(function["name"], ListedTool(number, function["name"], parameters))
    if found:
        return list(found.values())
    for text in texts:
        for match in _SIGNATURE.finditer(text):
            properties = {}
            for part in filter(None, (p.strip() for p in match.group(3).split(","))):
                arg, _, kind = part.partition(":")
                properties[arg.strip()] = {"type": kind.strip() or "string"}
            number = int(match.group(1)) if match.group(1) else len(found) + 1
            name = match.group(2)
            found.setdefault(name, ListedTool(number, name, {"properties": properties}))
    return list(found.values())


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        function = tool.get("function", tool)
        if isinstance(function, dict):
            return str(function.get("name"))
    return ""


def completion_body(request: dict[str, Any], reply: Reply, prompt_bytes: int) -> dict[str, Any]:
    """The chat.completion JSON for `reply`, with deterministic ids and usage."""
    digest = conversation_digest(request)
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{digest[:20]}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            for i, (name, arguments) in enumerate(reply.tool_calls)
        ]
    completion_tokens = max(1, len(json.dumps(message)) // 4)
    prompt_tokens = max(1, prompt_bytes // 4)
    return {
        "id": f"chatcmpl-{digest[:24]}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": str(request.get("model") or "fake-model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _with_fault(request: dict[str, Any], fault: str) -> tuple[int, dict[str, Any] | bytes]:
    """Status and body of an injected fault other than a timeout."""
    if fault == "rate_limit":
        return 429, _error("Rate limit reached; retry after a moment.", "rate_limit_exceeded")
    if fault == "server_error":
        return 500, _error("The server had an error while processing your request.", "server")
    if fault == "malformed_json":
        return 200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind'
    if fault == "empty_choices":
        body = completion_body(request, Reply(content=""), 0)
        body["choices"] = []
        return 200, body
    # unknown_tool: a well-formed answer that calls a tool the request never offered
    if request.get("tools"):
        reply = Reply(tool_calls=((UNKNOWN_TOOL, "{}"),))
    else:
        reply = Reply(content=json_reply_text(0, UNKNOWN_TOOL, {}))
    return 200, completion_body(request, reply, 0)


def _error(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# ---------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, cancelled requests) are normal here, not errors."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
_REASONS |= {413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests"}
_REASONS |= {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request stderr line."""

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self._send(404, _error(f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, _error("request body too large", "too_large"))
            self.close_connection = True
            return
        raw = self.rfile.read(length)
        fake.count("requests")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, _error(f"no route {self.path}", "not_found"))
            return
        auth = self.headers.get("Authorization")
        if auth:
            with fake._lock:
                fake.authorizations.add(auth)
        if fake.api_key is not None and auth != f"Bearer {fake.api_key}":
            given = (auth or "").removeprefix("Bearer ")
            self._send(401, _error(f"Incorrect API key provided: {given}.", "invalid_api_key"))
            return
        try:
            request = json.loads(raw)
            if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
                raise ValueError("a chat request needs a 'messages' list")
        except ValueError as error:
            self._send(400, _error(f"invalid request body: {error}", "invalid_request"))
            return
        if request.get("stream"):
            self._send(400, _error("streaming is not supported by this server", "stream"))
            return
        with fake._lock:
            fake.requests.append(request)
        with fake.answering() as leave:
            self._leave = leave
            try:
                self._answer(fake, request, len(raw))
            finally:
                self._leave = None

    def _answer(self, fake: FakeOpenAIServer, request: dict[str, Any], size: int) -> None:
        reply = fake.answer(request)
        fake.wait(fake.latency if reply.latency is None else reply.latency)
        if reply.fault is not None:
            fake.count(reply.fault)
            if reply.fault == "timeout":
                fake.wait(fake.hang)
                self.close_connection = True
                return
            status, body = _with_fault(request, reply.fault)
            self._send(status, body)
            return
        if reply.status != 200:
            fake.count(f"status_{reply.status}")
            self._send(reply.status, _error(reply.content or "error", f"status_{reply.status}"))
            return
        fake.count("replies")
        self._send(200, completion_body(request, reply, size))

    def _send(self, status: int, body: dict[str, Any] | bytes) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            + ("Retry-After: 0\r\n" if status == 429 else "")
            + ("Connection: close\r\n" if self.close_connection else "")
            + "\r\n"
        )
        leave = getattr(self, "_leave", None)
        if leave is not None:
            leave()  # the reply is complete: the client may now send its next request
        try:
            self.wfile.write(head.encode("ascii") + payload)
        except OSError:
            self.close_connection = True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tp_gym.testing``: serve until interrupted (for manual runs and docs)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tp_gym.testing",
        description="A loopback OpenAI-compatible server with deterministic tool-call replies.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of faulty replies")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--api-key", default=None, help="answer 401 to any other key")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(
        args.latency, args.fault_rate, args.seed, api_key=args.api_key, port=args.port
    )
    with server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
