"""Which failures are worth retrying, and how long to wait before the next attempt.

Retryable: rate limits (429), timeouts (408 and client-side), connection failures, server
errors (5xx) and empty responses. Not retryable: authentication (401/403, or no key at all)
and every other request error (400, 404, 422, context too long, unknown provider): the
same request would fail the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from tp_gym.llm.errors import EmptyResponseError, MissingCredentialsError

Verdict = Literal["retry", "auth", "request"]

_RETRY_STATUS = frozenset({408, 409, 425, 429})
_AUTH_STATUS = frozenset({401, 403})
_CREDENTIAL_HINTS = ("missing credentials", "api_key client option", "no api key", "api key not")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    Attempt ``n`` (0-based) waits a uniform time in ``[0, min(max_delay, base_delay * 2**n)]``,
    but at least a server's ``Retry-After`` (capped at `max_delay`).
    """

    max_retries: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must be >= 0")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        wait = rng.uniform(0.0, ceiling)
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


def status_of(error: BaseException) -> int | None:
    """The HTTP status an exception carries, if any."""
    status = getattr(error, "status_code", None)
    if status is None:
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def classify(error: BaseException) -> Verdict:
    """Decide whether `error` from a completion call is retryable, an auth or a request error."""
    if isinstance(error, MissingCredentialsError):
        return "auth"
    text = str(error).lower()
    if any(hint in text for hint in _CREDENTIAL_HINTS):
        return "auth"
    if isinstance(error, EmptyResponseError | TimeoutError | ConnectionError):
        return "retry"
    status = status_of(error)
    if status is not None:
        if status in _AUTH_STATUS:
            return "auth"
        if status in _RETRY_STATUS or status >= 500:
            return "retry"
        return "request"
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"APIConnectionError", "APITimeoutError", "TimeoutException", "TransportError"}:
        return "retry"
    return "request"


def retry_after(error: BaseException) -> float | None:
    """The ``Retry-After`` seconds a 429/503 response asked for, if it gave a number."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
