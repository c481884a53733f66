"""Keeping API keys out of everything tp_gym writes: logs, cassettes, reports and errors.

A `Redactor` replaces the secrets it knows with ``[REDACTED]``, and nothing else:

- the API keys given to it explicitly (``api_key``);
- the values of the environment variables that the model's provider reads its
  credentials from (`tp_gym.llm.providers.credential_variables`: ``OPENAI_API_KEY`` for
  ``openai/...``, the AWS keys for ``bedrock/...``, ``<PROVIDER>_API_KEY`` for the rest),
  read afresh at every call so that a key exported after start-up is still masked;
- the credentials inside the URLs given to it (``api_base``): the password of
  ``scheme://user:password@host`` (the user name when it stands alone, as tokens do) and
  the values of query parameters named like a key, token, secret, password or signature.

Nothing is masked for its shape or for the name of an unrelated variable: model text that
merely resembles a secret ("password reset", ``sk-learn``, a ``Bearer`` header quoted in a
task) reaches the env, the log and the cassette unchanged, so redaction never changes what
is measured. Error messages go through `Redactor.message`, which also strips the
credentials of every URL they quote. Given secrets shorter than `MIN_SECRET_CHARS` are
ignored (masking "ab" everywhere would destroy the text), and so are environment values
shorter than `MIN_ENV_SECRET_CHARS` (a placeholder such as "EMPTY" or "dummy" for a local
server is not a secret). `public_llm_options` makes LLM options fit for a run manifest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tp_gym.llm.providers import credential_variables

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4
MIN_ENV_SECRET_CHARS = 8
_SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "credential",
        "credentials",
        "signature",
        "sig",
        "auth",
        "authorization",
    }
)
_WORD = re.compile(r"[a-z0-9]+")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")


def is_secret_name(name: str) -> bool:
    """Whether an option, variable or query-parameter name names a credential.

    Judged word by word (``api_key``, ``X-Api-Key``, ``access_token``, ``sig`` are;
    ``max_tokens``, ``keyword``, ``cassette`` are not).
    """
    lowered = name.lower()
    words = _WORD.findall(lowered)
    return lowered.replace("-", "").replace("_", "") in _SECRET_WORDS or any(
        word in _SECRET_WORDS for word in words
    )


def url_secrets(url: str) -> list[str]:
    """The credentials inside a URL: the userinfo's password (or a lone user name) and the
    values of query parameters named like credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if parts.password:
        found.append(parts.password)
    elif parts.username:
        found.append(parts.username)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if value and is_secret_name(name):
            found.append(value)
    return found


def strip_url_credentials(url: str) -> str:
    """`url` without userinfo and without query parameters named like credentials:
    ``http://user:KEY@host/v1?api_key=K&x=1`` -> ``http://host/v1?x=1``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc and not any(
        is_secret_name(name) for name, _ in parse_qsl(parts.query, keep_blank_values=True)
    ):
        return url
    netloc = parts.netloc.rpartition("@")[2]
    query = urlencode(
        [
            (name, value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
            if not is_secret_name(name)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_urls(text: str) -> str:
    """`text` with the credentials of every URL in it removed (`strip_url_credentials`)."""
    if "://" not in text:
        return text

    def clean(match: re.Match[str]) -> str:
        url = match.group(0)
        bare = url.rstrip(".,;:!?")  # sentence punctuation is not part of the URL
        return strip_url_credentials(bare) + url[len(bare) :]

    return _URL.sub(clean, text)


def public_llm_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """LLM options fit for a run manifest (``run.json``).

    Options named like credentials (``api_key``, ``*_token``, ``*_secret``, ``password``)
    are left out; URL values (``api_base``) lose their userinfo and their credential query
    parameters; only str, int, float and bool values are kept.
    """
    public: dict[str, Any] = {}
    for name, value in (options or {}).items():
        if is_secret_name(str(name)) or not isinstance(value, str | int | float | bool):
            continue
        public[name] = strip_url_credentials(value) if isinstance(value, str) else value
    return public


def provider_secrets(model: str | None, environ: Mapping[str, str] | None = None) -> set[str]:
    """The values of the credential variables of `model`'s provider (read now)."""
    source = os.environ if environ is None else environ
    values = (source.get(name, "") for name in credential_variables(model))
    return {value for value in values if len(value) >= MIN_ENV_SECRET_CHARS}


class Redactor:
    """Masks the secrets it knows (see the module docstring) in text and JSON-like data.

    `secrets`: keys given explicitly; `model`: the litellm model id whose provider's
    credential variables are masked (`from_env=False` masks none); `urls`: URLs whose
    credentials are masked (the ``api_base``).
    """

    def __init__(
        self,
        secrets: Iterable[str | None] = (),
        *,
        model: str | None = None,
        urls: Iterable[str | None] = (),
        from_env: bool = True,
    ) -> None:
        self._secrets: set[str] = set()
        self.model = model
        self.from_env = from_env
        for secret in secrets:
            self.add(secret)
        for url in urls:
            self.add_url(url)

    def add(self, secret: str | None) -> None:
        """Remember one more secret (None and very short strings are ignored)."""
        if secret and len(secret) >= MIN_SECRET_CHARS:
            self._secrets.add(secret)

    def add_url(self, url: str | None) -> None:
        """Remember the credentials inside a URL (`url_secrets`)."""
        for secret in url_secrets(url or ""):
            self.add(secret)

    def secrets(self) -> list[str]:
        """All secrets currently known, longest first (so overlapping ones mask fully)."""
        known = self._secrets | (provider_secrets(self.model) if self.from_env else set())
        return sorted(known, key=len, reverse=True)

    def snapshot(self) -> Redactor:
        """A redactor fixed to the secrets known now (environment included): the cheap way
        to redact many strings at once."""
        return Redactor(self.secrets(), from_env=False)

    def __call__(self, text: str) -> str:
        """`text` with every known secret replaced by ``[REDACTED]``."""
        for secret in self.secrets():
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def message(self, text: str) -> str:
        """A diagnostic (an error message) with known secrets masked and the credentials of
        every URL in it stripped (`scrub_urls`)."""
        return self(scrub_urls(text))

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


def redact(text: str, *secrets: str | None, model: str | None = None) -> str:
    """`text` with `secrets` and the credential variables of `model`'s provider masked."""
    return Redactor(secrets, model=model)(text)
