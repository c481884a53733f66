"""Keeping API keys out of everything tp_gym writes: logs, cassettes, reports and errors.

A `Redactor` replaces every secret it knows with ``[REDACTED]``. It knows the keys given to
it explicitly and, at every call, the values of environment variables whose names end like
credentials (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_SECRET_KEY``, ``*_PASSWORD``, ...).
It also masks text shaped like a bearer token or an OpenAI-style ``sk-...`` key, whoever's
it is. Given secrets shorter than `MIN_SECRET_CHARS` are ignored (masking "ab" everywhere
would destroy the text), and so are environment values shorter than `MIN_ENV_SECRET_CHARS`
(real keys are long; a short value such as "false" or "1" is a setting, not a secret).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4
MIN_ENV_SECRET_CHARS = 8
_SECRET_ENV = re.compile(
    r"(^|_)(API_?KEY|TOKEN|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|ACCESS_KEY(_ID)?|PASSWORD|"
    r"CREDENTIALS?)$",
    re.IGNORECASE,
)
_SHAPES = (
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{20,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
)


@functools.lru_cache(maxsize=4096)
def _names_a_secret(name: str) -> bool:
    return _SECRET_ENV.search(name) is not None


def env_secrets(environ: dict[str, str] | None = None) -> set[str]:
    """Values of environment variables whose names end like credentials.

    Read afresh at every call (a key exported after start-up is still masked); only the
    verdict on each variable name is cached, so a call costs a few microseconds.
    """
    source = os.environ if environ is None else environ
    values = (source.get(name, "") for name in list(source) if _names_a_secret(name))
    return {value for value in values if len(value) >= MIN_ENV_SECRET_CHARS}


class Redactor:
    """Masks known secrets and key-shaped strings in text and nested JSON-like data."""

    def __init__(self, secrets: Iterable[str | None] = (), *, from_env: bool = True) -> None:
        self._secrets: set[str] = set()
        self.from_env = from_env
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Remember one more secret (None and very short strings are ignored)."""
        if secret and len(secret) >= MIN_SECRET_CHARS:
            self._secrets.add(secret)

    def secrets(self) -> list[str]:
        """All secrets currently known, longest first (so overlapping ones mask fully)."""
        known = self._secrets | (env_secrets() if self.from_env else set())
        return sorted(known, key=len, reverse=True)

    def snapshot(self) -> Redactor:
        """A redactor fixed to the secrets known now (environment included): the cheap way
        to redact many strings at once."""
        return Redactor(self.secrets(), from_env=False)

    def __call__(self, text: str) -> str:
        """`text` with every secret and key-shaped string replaced by ``[REDACTED]``."""
        for secret in self.secrets():
            if secret in text:
                text = text.replace(secret, REDACTED)
        for shape in _SHAPES:
            text = shape.sub(REDACTED, text)
        return text

    def deep(self, value: Any) -> Any:
        """A copy of `value` (dicts, lists, strings) with every string redacted."""
        return _deep(self.snapshot() if self.from_env else self, value)


def _deep(redact: Redactor, value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_deep(redact, k): _deep(redact, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep(redact, v) for v in value]
    return value


def redact(text: str, *secrets: str | None) -> str:
    """`text` with `secrets`, credential environment variables and key shapes masked."""
    return Redactor(secrets)(text)
