"""Cassettes: recording LLM requests and responses to JSONL, and replaying them offline.

Each line is ``{"v": 1, "key": ..., "request": ..., "response": ...}``. The key is a SHA-256
of the canonical JSON of what decides the answer (model, messages, tools and sampling
parameters) and never of how it is sent (API base, key, timeout, retries), so an episode
recorded against a provider replays anywhere. Requests are stored with keys redacted;
responses carry their token usage and cost, so a replayed episode logs the same usage.

Modes: ``record`` always calls the model and appends; ``replay`` never calls and fails with
`CassetteMissError` on a request it does not hold (strict, for CI fixtures); ``auto``
replays what it holds and records the rest. A key recorded twice replays its last answer.
All handles on one file share one in-memory index and one lock, so concurrent agents can
record into the same cassette.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

from tp_gym.llm.completion import Completion
from tp_gym.llm.errors import CassetteMissError
from tp_gym.llm.redact import Redactor
from tp_gym.runs.jsonl import TornLineWarning, append_lines

CassetteMode = Literal["record", "replay", "auto"]
MODES: tuple[str, ...] = ("record", "replay", "auto")
FORMAT_VERSION = 1
_TRANSPORT_KEYS = frozenset(
    {"api_base", "base_url", "api_key", "timeout", "max_retries", "num_retries", "drop_params"}
)


def request_key(request: dict[str, Any]) -> str:
    """The cassette key of a request: a hash of everything but transport settings."""
    content = {k: v for k, v in request.items() if k not in _TRANSPORT_KEYS}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Store:
    """The shared index of one cassette file (one per file per process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}
        self.signature: tuple[int, int] | None = None
        with self.lock:
            self._load()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _load(self) -> None:
        self.entries = {}
        self.signature = self._stat()
        if self.signature is None:
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        torn = bool(data) and not data.endswith(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = entry["key"]
                entry["response"]["content"]  # noqa: B018 - shape check
            except (ValueError, KeyError, TypeError):
                if torn and number == len(lines):
                    # Left by an interrupted run; the next record moves it to the side file.
                    warnings.warn(
                        f"{self.path}:{number}: incomplete last line (a crash while "
                        "recording), not replayed",
                        TornLineWarning,
                        stacklevel=2,
                    )
                    continue
                raise ValueError(f"{self.path}:{number}: not a cassette entry") from None
            self.entries[key] = entry

    def refresh(self) -> None:
        """Re-read the file if something else changed, replaced or removed it."""
        with self.lock:
            if self._stat() != self.signature:
                self._load()

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
        with self.lock:
            self.entries[entry["key"]] = entry
            append_lines(self.path, [line])  # a torn last line goes to the side file first
            self.signature = self._stat()


_STORES: dict[Path, _Store] = {}
_STORES_LOCK = threading.Lock()


class Cassette:
    """A handle on a cassette file in one mode (see the module docstring)."""

    def __init__(self, path: str | Path, mode: CassetteMode = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"cassette mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.path = Path(path).expanduser().resolve()
        self.mode = mode
        if mode == "replay" and not self.path.is_file():
            raise CassetteMissError(
                f"cassette {self.path} does not exist; strict replay needs a recorded cassette "
                "(record one with cassette mode 'record' or 'auto')"
            )
        with _STORES_LOCK:
            store = _STORES.get(self.path)
            if store is None:
                store = _STORES[self.path] = _Store(self.path)
        store.refresh()
        self._store = store

    def __len__(self) -> int:
        return len(self._store.entries)

    def lookup(self, request: dict[str, Any]) -> Completion | None:
        """The recorded answer to `request`, or None (`CassetteMissError` in replay mode)."""
        if self.mode == "record":
            return None
        key = request_key(request)
        entry = self._store.entries.get(key)
        if entry is not None:
            return Completion.from_record(entry["response"])
        if self.mode == "replay":
            messages = request.get("messages") or []
            last = messages[-1].get("content") if messages else ""
            preview = " ".join(str(last or "")[:80].split())
            raise CassetteMissError(
                f"request {key[:12]} (model {request.get('model')}, {len(messages)} messages, "
                f"last: {preview!r}) is not in cassette {self.path}; strict replay never calls "
                "the model; re-record with cassette mode 'record' or 'auto'"
            )
        return None

    def record(self, request: dict[str, Any], completion: Completion, redactor: Redactor) -> None:
        """Append `request` -> `completion` (keys redacted) unless replaying."""
        if self.mode == "replay":
            return
        entry = {
            "v": FORMAT_VERSION,
            "key": request_key(request),
            "request": redactor.deep(request),
            "response": completion.to_record(),
        }
        self._store.append(entry)
