"""`LLMClient`: one small LLM client with retries, a timeout, accounting and cassettes.

Everything tp_gym asks of a language model (the agent, the narrator, scenario synthesis)
goes through `LLMClient.complete` or its async twin `acomplete`:

1. the request is looked up in the cassette, if one is attached (replay costs nothing);
2. otherwise the model is called through the client's transport (below) with a per-call
   `timeout` (60 s by default, not litellm's 6000 s) and the transport's own retries
   switched off, so retrying is decided here only: rate limits, timeouts, connection
   failures, 5xx, empty and malformed answers are retried with exponential backoff and
   jitter up to `RetryPolicy.max_retries` times; authentication and request errors fail at
   once with a one-line `LLMError` that says what to fix;
3. the answer is normalised into a `Completion`, keys are redacted from it, its tokens and
   cost are added to `usage`, and it is recorded in the cassette.

Transports (`tp_gym.llm.providers.TRANSPORTS`): ``litellm`` reaches every provider litellm
knows; ``openai`` calls an OpenAI-compatible ``api_base`` (vLLM, SGLang, Ollama, a gateway)
through the openai SDK directly (`tp_gym.llm.openai_sdk`), which saves litellm's 7-10 ms of
CPU per call; ``auto`` (the default) takes ``openai`` for an ``openai/`` (or
``hosted_vllm/``, ...) model with an ``api_base`` and litellm otherwise. Both behave the
same: one request (and cassette key), retries, timeouts, error classes, accounting and
redaction. litellm and openai are imported on the first call, never by ``import tp_gym``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from tp_gym.llm import openai_sdk
from tp_gym.llm.cassette import Cassette, CassetteMode
from tp_gym.llm.completion import CalledTool, Completion
from tp_gym.llm.errors import (
    EmptyResponseError,
    LLMAuthError,
    LLMError,
    LLMRequestError,
    LLMUnavailableError,
    MalformedResponseError,
    MissingCredentialsError,
)
from tp_gym.llm.providers import (
    OPENAI_COMPATIBLE,
    TRANSPORTS,
    Transport,
    choose_transport,
    credential_variables,
    provider_of,
    sdk_model,
)
from tp_gym.llm.redact import Redactor
from tp_gym.llm.retry import RetryPolicy, classify, retry_after, status_of
from tp_gym.llm.usage import add_call, price, price_from_map
from tp_gym.runs.episode import Usage

DEFAULT_TIMEOUT = 60.0
"""Seconds one LLM call may take (litellm's own default is 6000)."""
MAX_CAUSE_CHARS = 300

_litellm: Any = None


def load_litellm() -> Any:
    """Import litellm once, offline and quiet; a clear ImportError if it is missing."""
    global _litellm
    if _litellm is None:
        # Without this, litellm fetches its model price map from the network on import.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            raise ImportError(
                "LLM agents need litellm; install it with: pip install 'tp_gym[llm]'"
            ) from None
        litellm.suppress_debug_info = True
        if hasattr(litellm, "telemetry"):
            litellm.telemetry = False
        _litellm = litellm
    return _litellm


class LLMClient:
    """Chat completions for one model and one role (agent, narrator, generator, ...).

    `params` (temperature, max_tokens, seed, response_format, ...) are sent with every
    request and are part of its cassette key; `api_base`, `api_key`, `timeout` and
    `transport` are not. With no `api_key`, the provider's usual variable is read
    (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``, ...). `transport` is
    ``"auto"``, ``"litellm"`` or ``"openai"`` (see the module docstring); the attribute
    `transport` holds the one chosen.
    """

    def __init__(
        self,
        model: str,
        *,
        role: str = "agent",
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        cassette: str | Path | Cassette | None = None,
        cassette_mode: CassetteMode = "auto",
        seed: int | None = None,
        drop_params: bool = True,
        transport: Transport = "auto",
        **params: Any,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("an LLM model id is required, e.g. openai/gpt-4o-mini")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.model = model.strip()
        self.role = role
        self.transport = choose_transport(self.model, api_base, transport)
        self.api_base = api_base
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self.params = {k: v for k, v in params.items() if v is not None}
        if isinstance(cassette, Cassette) or cassette is None:
            self.cassette = cassette
        else:
            self.cassette = Cassette(cassette, cassette_mode)
        self.redactor = Redactor([api_key], model=self.model, urls=[api_base])
        self.usage = Usage()
        self._api_key = api_key
        self._drop_params = drop_params
        self._rng = random.Random(seed)

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, role={self.role!r}, transport={self.transport!r})"

    # ------------------------------------------------------------------ requests

    def build_request(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The request as sent (minus transport settings) and as keyed in a cassette."""
        request: dict[str, Any] = {"model": self.model, "messages": messages, **self.params}
        if tools:
            request["tools"] = tools
            if tool_choice is not None:
                request["tool_choice"] = tool_choice
        return request

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> Completion:
        """One completion, retried as needed; raises `LLMError` when it fails for good."""
        request = self.build_request(messages, tools, tool_choice)
        replayed = self._replayed(request)
        if replayed is not None:
            return replayed
        call = self._call_openai if self.transport == "openai" else self._call_litellm
        attempt = 0
        while True:
            failure: BaseException | None = None
            try:
                completion = call(request)
            except Exception as error:  # noqa: BLE001 - classified below, never swallowed
                failure = error
            if failure is None:
                return self._finish(request, completion)
            time.sleep(self._after_failure(failure, attempt))
            attempt += 1

    async def acomplete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> Completion:
        """`complete` for asyncio (non-blocking calls and backoff)."""
        request = self.build_request(messages, tools, tool_choice)
        replayed = self._replayed(request)
        if replayed is not None:
            return replayed
        call = self._acall_openai if self.transport == "openai" else self._acall_litellm
        attempt = 0
        while True:
            failure: BaseException | None = None
            try:
                completion = await asyncio.wait_for(call(request), self.timeout * 1.5 + 1.0)
            except Exception as error:  # noqa: BLE001 - classified below, never swallowed
                failure = error
            if failure is None:
                return self._finish(request, completion)
            await asyncio.sleep(self._after_failure(failure, attempt))
            attempt += 1

    # ------------------------------------------------------------------ transports

    def _call_litellm(self, request: dict[str, Any]) -> Completion:
        litellm = load_litellm()
        response = litellm.completion(**request, **self._transport())
        return self._to_completion(request, response, price(litellm, response, self.model))

    async def _acall_litellm(self, request: dict[str, Any]) -> Completion:
        litellm = load_litellm()
        response = await litellm.acompletion(**request, **self._transport())
        return self._to_completion(request, response, price(litellm, response, self.model))

    def _call_openai(self, request: dict[str, Any]) -> Completion:
        client = openai_sdk.sync_client(self.api_base, self._sdk_key())
        body = openai_sdk.request_body(request, sdk_model(self.model))
        try:
            response = openai_sdk.create(client, body, self.timeout)
        except ValueError as error:  # a 200 whose body is not JSON
            raise MalformedResponseError(f"the answer is not a chat completion: {error}") from None
        return self._to_completion(request, response, self._sdk_price(response))

    async def _acall_openai(self, request: dict[str, Any]) -> Completion:
        client = openai_sdk.async_client(self.api_base, self._sdk_key())
        body = openai_sdk.request_body(request, sdk_model(self.model))
        try:
            response = await openai_sdk.acreate(client, body, self.timeout)
        except ValueError as error:  # a 200 whose body is not JSON
            raise MalformedResponseError(f"the answer is not a chat completion: {error}") from None
        return self._to_completion(request, response, self._sdk_price(response))

    def _sdk_key(self) -> str:
        """The key for the openai transport: the one given, else the provider's variable,
        else the placeholder OpenAI-compatible local servers accept (vLLM, LM Studio)."""
        if self._api_key:
            return self._api_key
        for name in credential_variables(self.model):
            value = os.environ.get(name)
            if value:
                return value
        placeholder = OPENAI_COMPATIBLE.get(provider_of(self.model) or "")
        if placeholder:
            return placeholder
        names = " or ".join(credential_variables(self.model))
        raise MissingCredentialsError(f"no API key was given and {names} is not set")

    def _sdk_price(self, response: Any) -> tuple[float, bool]:
        if not getattr(response, "choices", None):
            return 0.0, False  # not billed: an empty answer is retried
        provider = provider_of(self.model)
        return price_from_map(self.model, provider, sdk_model(self.model), response, self.params)

    # ------------------------------------------------------------------ internals

    def _transport(self) -> dict[str, Any]:
        transport: dict[str, Any] = {
            "timeout": self.timeout,
            "max_retries": 0,
            "drop_params": self._drop_params,
        }
        if self.api_base:
            transport["api_base"] = self.api_base
        if self._api_key:
            transport["api_key"] = self._api_key
        return transport

    def _replayed(self, request: dict[str, Any]) -> Completion | None:
        if self.cassette is None:
            return None
        completion = self.cassette.lookup(request)
        if completion is not None:
            add_call(self.usage, completion)
        return completion

    def _finish(self, request: dict[str, Any], completion: Completion) -> Completion:
        if self.cassette is not None:
            self.cassette.record(request, completion, self.redactor)
        add_call(self.usage, completion)
        return completion

    def _to_completion(
        self, request: dict[str, Any], response: Any, pricing: tuple[float, bool]
    ) -> Completion:
        choices = getattr(response, "choices", None)
        if not choices:
            raise EmptyResponseError("the provider answered with no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None:
            raise EmptyResponseError("the provider's first choice has no message")
        redact = self.redactor.snapshot()
        calls = []
        for i, call in enumerate(getattr(message, "tool_calls", None) or []):
            function = getattr(call, "function", None)
            name = getattr(function, "name", None) or ""
            arguments = getattr(function, "arguments", None)
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments if arguments is not None else {})
            call_id = getattr(call, "id", None) or f"call_{_digest(request['messages'])}_{i}"
            calls.append(CalledTool(str(call_id), redact(str(name)), redact(arguments)))
        content = getattr(message, "content", None)
        if content is not None and not isinstance(content, str):
            content = json.dumps(content, default=str)
        reasoning = getattr(message, "reasoning_content", None)
        usage = getattr(response, "usage", None)
        cost, priced = pricing
        return Completion(
            content=redact(content) if content is not None else None,
            tool_calls=tuple(calls),
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=cost,
            priced=priced,
            reasoning=redact(reasoning) if isinstance(reasoning, str) and reasoning else None,
        )

    def _after_failure(self, error: BaseException, attempt: int) -> float:
        """Seconds to wait before retrying `error`, or raise the final `LLMError`."""
        verdict = classify(error)
        cause = self.describe(error)
        if verdict == "auth":
            raise LLMAuthError(f"{self.model}: authentication failed: {cause}{self._key_hint()}")
        if verdict == "request":
            raise LLMRequestError(f"{self.model}: the request was rejected: {cause}")
        if attempt >= self.retry.max_retries:
            raise LLMUnavailableError(
                f"{self.model}: gave up after {attempt + 1} attempt(s); last error: {cause}",
                attempts=attempt + 1,
            )
        return self.retry.delay(attempt, self._rng, retry_after(error))

    def describe(self, error: BaseException) -> str:
        """A one-line, redacted description of a provider error."""
        status = status_of(error)
        kind = type(error).__name__ + (f" (HTTP {status})" if status else "")
        text = str(error)
        body = getattr(error, "body", None)
        if type(error).__module__.startswith("openai") and isinstance(body, dict):
            # the SDK's str() is "Error code: 429 - {...}"; the provider's message suffices
            message = body.get("message")
            text = message if isinstance(message, str) and message else text
        text = " ".join(text.split())
        for prefix in (f"litellm.{type(error).__name__}: ", f"{type(error).__name__}: "):
            text = text.removeprefix(prefix)
        text = self.redactor.message(text)
        if len(text) > MAX_CAUSE_CHARS:
            text = text[: MAX_CAUSE_CHARS - 3] + "..."
        return f"{kind}: {text}" if text else kind

    def _key_hint(self) -> str:
        if self._api_key:
            return "; check the API key given"
        if self.transport == "openai":
            names = credential_variables(self.model)
            if not any(os.environ.get(name) for name in names):
                return f"; set {' or '.join(names)} in the environment"
            return "; check the provider's API key variable"
        try:
            missing = load_litellm().validate_environment(model=self.model).get("missing_keys")
        except Exception:  # noqa: BLE001 - only a hint
            missing = None
        if missing:
            return f"; set {' or '.join(missing)} in the environment"
        return "; check the provider's API key variable"


def _digest(messages: list[dict[str, Any]]) -> str:
    """A short, stable id for a conversation (names tool calls a provider left unnamed)."""
    text = json.dumps(messages, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


__all__ = ["DEFAULT_TIMEOUT", "TRANSPORTS", "LLMClient", "LLMError", "load_litellm"]
