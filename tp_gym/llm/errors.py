"""Errors of the LLM layer. Every message is one line and has API keys redacted."""

from __future__ import annotations


class LLMError(RuntimeError):
    """A call to a language model failed for good; the message says why, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class LLMAuthError(LLMError):
    """The provider refused the credentials (or none were found); retrying cannot help."""


class LLMRequestError(LLMError):
    """The provider rejected the request itself (bad request, unknown model, context too long)."""


class LLMUnavailableError(LLMError):
    """The provider kept failing with retryable errors until the retry budget ran out."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class CassetteMissError(LLMError):
    """Strict replay: the request is not in the cassette, and replay mode never calls out."""


class EmptyResponseError(Exception):
    """The provider answered 200 with no choices; treated like a transient server error."""


class MalformedResponseError(EmptyResponseError):
    """The provider answered 200 with a body that is not a chat completion (broken JSON);
    retried like an empty answer."""

    status_code = 200


class MissingCredentialsError(Exception):
    """No API key was given and none is set in the provider's variables (an auth error)."""
