"""What a litellm model id says about its provider: credentials and the way to call it.

- `provider_of`: the provider of a model id (``openai/gpt-4o-mini`` -> ``openai``; a bare
  ``gpt-4o`` or ``claude-...`` is recognised by its name; anything else bare -> None).
- `credential_variables`: the environment variables that provider reads its credentials
  from, from a small explicit table (`CREDENTIAL_VARIABLES`) and, for any other provider,
  the rule ``<PROVIDER>_API_KEY``. These are the only environment values `Redactor` masks.
- `choose_transport`: ``litellm`` or the ``openai`` SDK fast path for a model and an
  ``api_base`` (see `TRANSPORTS`).

Nothing here imports litellm or openai.
"""

from __future__ import annotations

from typing import Literal

Transport = Literal["auto", "litellm", "openai"]
TRANSPORTS: tuple[str, ...] = ("auto", "litellm", "openai")
"""``litellm`` calls every provider through litellm; ``openai`` calls an OpenAI-compatible
endpoint through the openai SDK directly (no litellm on the call path); ``auto`` (the
default) takes ``openai`` when an ``api_base`` is given and the model's provider is one of
`OPENAI_COMPATIBLE`, and litellm otherwise (named providers keep litellm)."""

_AWS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
)
CREDENTIAL_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "text-completion-openai": ("OPENAI_API_KEY",),
    "custom_openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "vertex_ai": ("VERTEXAI_CREDENTIALS", "GOOGLE_API_KEY"),
    "openrouter": ("OPENROUTER_API_KEY", "OR_API_KEY"),
    "azure": ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_AD_TOKEN", "AZURE_CLIENT_SECRET"),
    "azure_ai": ("AZURE_AI_API_KEY",),
    "bedrock": _AWS,
    "sagemaker": _AWS,
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_API_KEY"),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "cohere": ("COHERE_API_KEY", "CO_API_KEY"),
    "cohere_chat": ("COHERE_API_KEY", "CO_API_KEY"),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_API_KEY"),
    "huggingface": ("HUGGINGFACE_API_KEY", "HF_TOKEN"),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "replicate": ("REPLICATE_API_KEY", "REPLICATE_API_TOKEN"),
    "databricks": ("DATABRICKS_API_KEY", "DATABRICKS_TOKEN"),
    "watsonx": ("WATSONX_APIKEY", "WATSONX_API_KEY", "WATSONX_TOKEN"),
    "hosted_vllm": ("HOSTED_VLLM_API_KEY",),
    "lm_studio": ("LM_STUDIO_API_KEY",),
    "litellm_proxy": ("LITELLM_PROXY_API_KEY",),
    "ollama": ("OLLAMA_API_KEY",),
    "ollama_chat": ("OLLAMA_API_KEY",),
}
"""Credential variables of the common providers; any other provider ``p`` reads
``P_API_KEY`` (`credential_variables`)."""

OPENAI_COMPATIBLE: dict[str, str | None] = {
    "openai": None,
    "custom_openai": None,
    "hosted_vllm": "fake-api-key",
    "lm_studio": "fake-api-key",
    "litellm_proxy": None,
}
"""Providers whose ``api_base`` speaks the OpenAI chat-completions API as is, with the key
sent when none is given or set (as litellm does: vLLM and LM Studio need none)."""

_BARE_NAMES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("ft:gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude", "anthropic"),
    ("gemini", "gemini"),
    ("command", "cohere"),
)


def provider_of(model: str | None) -> str | None:
    """The provider named by a litellm model id, or None when it cannot be told.

    ``openai/gpt-4o-mini`` -> ``openai``; ``hosted_vllm/Qwen/Qwen3-32B`` -> ``hosted_vllm``;
    a bare ``gpt-4o-mini`` -> ``openai`` and ``claude-...`` -> ``anthropic`` (litellm's
    own inference for those names); another bare name -> None.
    """
    if not model:
        return None
    model = model.strip()
    prefix, sep, _ = model.partition("/")
    if sep and prefix:
        return prefix.lower()
    lowered = model.lower()
    for start, provider in _BARE_NAMES:
        if lowered.startswith(start):
            return provider
    return None


def credential_variables(model: str | None) -> tuple[str, ...]:
    """The environment variables the model's provider reads its credentials from.

    From `CREDENTIAL_VARIABLES`, else ``<PROVIDER>_API_KEY``. A model whose provider cannot
    be told gets every variable of the table (still only real provider credentials).
    """
    provider = provider_of(model)
    if provider is None:
        names = dict.fromkeys(n for names in CREDENTIAL_VARIABLES.values() for n in names)
        return tuple(names)
    known = CREDENTIAL_VARIABLES.get(provider)
    if known is not None:
        return known
    rule = "".join(c if c.isalnum() else "_" for c in provider.upper())
    return (f"{rule}_API_KEY",)


def sdk_model(model: str) -> str:
    """The model name to send to an OpenAI-compatible endpoint: the id without its
    provider prefix when the prefix names a known provider (``openai/gpt-4o-mini`` ->
    ``gpt-4o-mini``, ``hosted_vllm/Qwen/Qwen3-32B`` -> ``Qwen/Qwen3-32B``)."""
    prefix, sep, rest = model.partition("/")
    known = prefix.lower() in CREDENTIAL_VARIABLES or prefix.lower() in OPENAI_COMPATIBLE
    return rest if sep and rest and known else model


def choose_transport(model: str, api_base: str | None, transport: str = "auto") -> str:
    """``"openai"`` or ``"litellm"``: how `LLMClient` calls `model` (see `TRANSPORTS`).

    Raises ValueError for an unknown transport, or for ``"openai"`` without an
    ``api_base`` for a provider other than OpenAI's own.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    provider = provider_of(model)
    if transport == "litellm":
        return "litellm"
    if transport == "openai":
        if not api_base and provider not in (None, "openai"):
            raise ValueError(
                f"transport 'openai' calls an OpenAI-compatible endpoint; {model!r} needs "
                "api_base (or transport 'litellm' for its provider's own API)"
            )
        return "openai"
    if api_base and provider in OPENAI_COMPATIBLE and model.partition("/")[1]:
        return "openai"
    return "litellm"
