"""No API key, nor any string given as one, appears in a log, cassette, report or error;
and nothing else is masked: model text that merely looks like a secret reaches the env."""

from __future__ import annotations

import json
import socket

import gymnasium as gym
import pytest
from conftest import FAKE_KEY, fast_llm

import tp_gym
from tp_gym.agents.llm import LLMAgent
from tp_gym.cli import main as cli_main
from tp_gym.llm.client import LLMClient
from tp_gym.llm.errors import LLMAuthError, LLMUnavailableError
from tp_gym.llm.narrator import NarratorWrapper
from tp_gym.llm.providers import credential_variables
from tp_gym.llm.redact import (
    REDACTED,
    Redactor,
    public_llm_options,
    scrub_urls,
    strip_url_credentials,
    url_secrets,
)
from tp_gym.llm.retry import RetryPolicy
from tp_gym.runs.episode import to_json_line
from tp_gym.runs.evaluation import Grid
from tp_gym.runs.runner import run_episode
from tp_gym.testing import Reply
from tp_gym.testing.openai_server import default_reply

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"
CUSTOM_KEY = "hunter2-custom-credential"
"""A key of no known shape: only knowing it was given as a key can mask it."""


def test_redactor_masks_given_keys_and_the_providers_own_variables(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-secret-value")
    monkeypatch.setenv("OPENAI_API_KEY", "openai-secret-value")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-98765-service")
    redact = Redactor([CUSTOM_KEY, None, "ab"], model="anthropic/claude-sonnet-4-5")
    text = (
        f"{CUSTOM_KEY} anthropic-secret-value tok-98765-service openai-secret-value "
        "sk-proj-ABCDEFGHIJKLMNOPQRSTUV Authorization: Bearer abc.def-1234567890XYZuvw ab"
    )
    cleaned = redact(text)
    assert CUSTOM_KEY not in cleaned and "anthropic-secret-value" not in cleaned
    assert cleaned.count(REDACTED) == 2
    for kept in ("tok-98765-service", "openai-secret-value", "sk-proj-", "Bearer abc.def"):
        assert kept in cleaned, "only the given key and the provider's own variables are masked"
    assert cleaned.endswith(" ab"), "secrets under 4 characters are not masked"
    nested = redact.deep({"a": [f"x {CUSTOM_KEY}", {"b": CUSTOM_KEY}], "n": 3})
    assert nested == {"a": [f"x {REDACTED}", {"b": REDACTED}], "n": 3}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "exported-after-start")
    assert redact("exported-after-start") == REDACTED, "the environment is read at every call"


@pytest.mark.parametrize(
    ("model", "variables"),
    [
        ("openai/gpt-4o-mini", ("OPENAI_API_KEY",)),
        ("gpt-4o-mini", ("OPENAI_API_KEY",)),
        ("anthropic/claude-sonnet-4-5", ("ANTHROPIC_API_KEY",)),
        ("gemini/gemini-2.5-pro", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
        ("openrouter/anthropic/claude-3.5-sonnet", ("OPENROUTER_API_KEY",)),
        ("azure/my-deployment", ("AZURE_API_KEY", "AZURE_AD_TOKEN")),
        (
            "bedrock/anthropic.claude-3",
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
        ),
        ("groq/llama-3.1-8b", ("GROQ_API_KEY",)),
        ("together_ai/meta-llama/Llama-3-8b", ("TOGETHERAI_API_KEY",)),
        ("hosted_vllm/Qwen/Qwen3-32B", ("HOSTED_VLLM_API_KEY",)),
        ("novelcloud/some-model", ("NOVELCLOUD_API_KEY",)),
    ],
)
def test_each_provider_masks_its_own_credential_variables(monkeypatch, model, variables):
    for number, name in enumerate(variables):
        monkeypatch.setenv(name, f"credential-of-{name}-{number}")
    masked = credential_variables(model)
    assert set(variables) <= set(masked)
    text = " ".join(f"credential-of-{name}-{number}" for number, name in enumerate(variables))
    assert Redactor(model=model)(text) == " ".join([REDACTED] * len(variables))
    if "OPENAI_API_KEY" not in variables:
        assert "OPENAI_API_KEY" not in masked, "another provider's key is not this model's"


def test_settings_and_ordinary_words_are_not_taken_for_keys(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("SECRETS_DIR", "/var/lib/secrets-dir")
    monkeypatch.setenv("DB_PASSWORD", "short")
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD", "password")
    monkeypatch.setenv("GITHUB_TOKEN", "token-of-the-ci-bot")
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    text = (
        '{"urgent": false} bearer instrument /var/lib/secrets-dir short sk-learn password '
        "reset token-of-the-ci-bot EMPTY sk-proj-ABCDEFGHIJKLMNOPQRSTUV Bearer "
        "abcdefghijklmnopqrstuvwxyz0123"
    )
    assert Redactor(model="openai/gpt-4o-mini")(text) == text
    assert Redactor()(text) == text


COMMON_WORDS_TEXT = (
    "Sent the password reset token; the secret key stays with the admin. "
    "sk-learn-0123456789abcdefgh and Bearer abcdefghijklmnopqrstuvwxyz0123 are examples."
)


def common_words_model(request):
    """The default (valid) tool choice, with text full of secret-looking words and the
    provider's real key at the end."""
    reply = default_reply(request)
    if reply.tool_calls:
        return Reply(content=f"{COMMON_WORDS_TEXT} {FAKE_KEY}", tool_calls=reply.tool_calls)
    data = json.loads(reply.content)
    data["reasoning"] = f"{COMMON_WORDS_TEXT} {FAKE_KEY}"
    return json.dumps(data)


@pytest.mark.parametrize("transport", ["litellm", "openai"])
@pytest.mark.parametrize("protocol", ["extended", "study"])
def test_model_text_like_a_secret_reaches_the_env_unchanged(
    make_server, api_key, monkeypatch, protocol, transport
):
    """Unrelated variables holding common words (and every tool name) change nothing."""
    env = gym.make(ENV_ID, protocol=protocol, max_turns=3)
    env.reset(seed=0)
    names = [schema["function"]["name"] for schema in env.unwrapped.tool_schemas()]
    assert all(len(name) >= 8 for name in names)
    for number, name in enumerate(names):
        monkeypatch.setenv(f"DEPLOY_{number}_TOKEN", name)
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD", "password")
    monkeypatch.setenv("SESSION_SECRET", "secret")
    monkeypatch.setenv("SIGNING_KEY", "key")
    monkeypatch.setenv("CI_JOB_TOKEN", "token")
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk-learn-0123456789abcdefgh")
    server = make_server(script=common_words_model)
    agent = LLMAgent("openai/gpt-4o-mini", transport=transport, **fast_llm(server))
    log = run_episode(env, agent, seed=0)
    assert log.error is None and log.steps
    assert log.invalid_actions == 0 and all(step.valid for step in log.steps)
    assert all(step.tool in names for step in log.steps), "tool calls resolve to the right tool"
    for step in log.steps:
        assistant = step.messages[-1]
        written = assistant.get("content") or ""
        assert f"{COMMON_WORDS_TEXT} {REDACTED}" in written, written
    assert FAKE_KEY not in to_json_line(log), "the provider's own key is still masked"


def test_url_credentials_are_found_stripped_and_masked():
    url = "https://tpuser:PW-9f8e7d6c@gateway.example/v1?api_key=QS-1234abcd&region=eu&sig=S1G-0000"
    assert url_secrets(url) == ["PW-9f8e7d6c", "QS-1234abcd", "S1G-0000"]
    assert url_secrets("https://ghp_tokenonly12345@host/v1") == ["ghp_tokenonly12345"]
    assert url_secrets("http://127.0.0.1:8000/v1") == []
    assert strip_url_credentials(url) == "https://gateway.example/v1?region=eu"
    assert strip_url_credentials("http://user:KEY@host/v1") == "http://host/v1"
    assert strip_url_credentials("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    message = f"Cannot connect to {url}, and http://a:b@c.example/x?token=T0K3N&x=1."
    assert scrub_urls(message) == (
        "Cannot connect to https://gateway.example/v1?region=eu, and http://c.example/x?x=1."
    )
    redact = Redactor(urls=[url], from_env=False)
    assert redact("a PW-9f8e7d6c b QS-1234abcd tpuser") == f"a {REDACTED} b {REDACTED} tpuser"


def test_public_llm_options_keep_no_credential():
    options = {
        "api_base": "http://user:SECRET-abc@127.0.0.1:8000/v1?api_key=SECRET-q&x=1",
        "api_key": "sk-secret",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "access_token": "tok",
        "client_secret": "s",
        "password": "p",
        "max_tokens": 512,
        "temperature": 0.2,
        "timeout": 30,
        "cassette": "runs/c.jsonl",
        "cassette_mode": "auto",
        "transport": "openai",
        "reply_format": "tools",
        "seed": None,
        "extra_headers": {"Authorization": "Bearer x"},
        "stop": ["\n"],
        "logprobs": True,
    }
    assert public_llm_options(options) == {
        "api_base": "http://127.0.0.1:8000/v1?x=1",
        "max_tokens": 512,
        "temperature": 0.2,
        "timeout": 30,
        "cassette": "runs/c.jsonl",
        "cassette_mode": "auto",
        "transport": "openai",
        "reply_format": "tools",
        "logprobs": True,
    }
    assert public_llm_options(None) == {}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("transport", ["litellm", "openai"])
def test_errors_never_show_url_credentials(api_key, transport):
    password, query = "PW-userinfo-123456", "QS-query-abcdef"
    base = f"http://tpuser:{password}@127.0.0.1:{closed_port()}/v1?api_key={query}"
    client = LLMClient(
        "openai/gpt-4o-mini",
        api_base=base,
        transport=transport,
        timeout=1.0,
        retry=RetryPolicy(1, 0.01, 0.01),
    )
    with pytest.raises(LLMUnavailableError) as caught:
        client.complete([{"role": "user", "content": "hi"}])
    assert password not in str(caught.value) and query not in str(caught.value)
    # a provider error that quotes the URL (aiohttp and httpx do, for some failures)
    quoted = client.describe(ConnectionError(f"Cannot connect to host {base} [refused]"))
    assert password not in quoted and query not in quoted and "tpuser" not in quoted
    assert "127.0.0.1" in quoted


def test_no_run_file_carries_a_secret_of_the_api_base(server, api_key, tmp_path):
    secret = "SECRET-userinfo-7c1e"
    base = server.base_url.replace("http://", f"http://tpuser:{secret}@")
    grid = Grid.build("llm:openai/gpt-4o-mini", envs=ENV_ID, seeds=[0, 1])
    options = fast_llm(server, api_base=base, max_tokens=64)
    tp_gym.evaluate(grid, tmp_path / "run", llm_options=options)
    files = [path for path in (tmp_path / "run").rglob("*") if path.is_file()]
    assert files
    for path in files:
        assert secret not in path.read_text(errors="replace"), path
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert json.dumps(manifest).count("tpuser") == 0


def leaky_model(request):
    """A model that repeats both keys in its text, its tool call and its tool name."""
    if request["messages"][0]["content"].startswith("You are the environment narrator"):
        return f"The clerk reads out {FAKE_KEY} and {CUSTOM_KEY}."
    tools = request.get("tools") or []
    if len(request["messages"]) > 3 or not tools:
        name = tools[0]["function"]["name"] if tools else "x"
        return Reply(
            content=f"my key is {CUSTOM_KEY}",
            tool_calls=((name, json.dumps({"patient_id": FAKE_KEY})),),
        )
    return Reply(tool_calls=((f"tool_{CUSTOM_KEY}", "{}"),))


def test_keys_never_reach_logs_cassettes_or_observations(make_server, api_key, tmp_path):
    server = make_server(script=leaky_model)
    cassette = tmp_path / "c.jsonl"
    options = fast_llm(server, api_key=CUSTOM_KEY, cassette=cassette)
    env = NarratorWrapper(gym.make(ENV_ID, max_turns=4), "openai/narrator", **options)
    log = run_episode(env, LLMAgent("openai/gpt-4o-mini", **options), seed=0)
    assert log.error is None and len(log.steps) >= 2
    line = to_json_line(log)
    written = line + cassette.read_text()
    assert REDACTED in line
    assert FAKE_KEY not in written and CUSTOM_KEY not in written
    assert {f"Bearer {CUSTOM_KEY}"} == server.authorizations, "the key was really sent"


def test_auth_errors_that_echo_the_key_are_redacted(make_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    server = make_server(api_key="the-right-key-000")
    for given in (None, CUSTOM_KEY):
        client = LLMClient("openai/gpt-4o-mini", api_base=server.base_url, api_key=given, timeout=2)
        with pytest.raises(LLMAuthError) as caught:
            client.complete([{"role": "user", "content": "hi"}])
        error = caught.value
        assert "Incorrect API key provided: [REDACTED]" in str(error)
        assert FAKE_KEY not in str(error) and CUSTOM_KEY not in str(error)
        assert error.__context__ is None and error.__cause__ is None
        assert CUSTOM_KEY not in repr(client) and CUSTOM_KEY not in repr(vars(client).get("params"))


def test_generated_specs_and_reports_carry_no_key(make_server, api_key, tmp_path, capsys):
    server = make_server(
        script=lambda request: (
            f'{{"id": "{FAKE_KEY}"}}'
            if request["messages"][0]["content"].startswith("You design")
            else None
        )
    )
    report = tmp_path / "report.json"
    argv = ["generate", "--domain", "Retail", "--driver", "Loyalty", "--model", "openai/m"]
    argv += ["--api-base", server.base_url, "--out", str(tmp_path / "x.json"), "--rounds", "1"]
    argv += ["--report", str(report), "--cassette", str(tmp_path / "g.jsonl")]
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    everything = captured.out + captured.err + report.read_text()
    everything += (tmp_path / "g.jsonl").read_text()
    assert FAKE_KEY not in everything and REDACTED in everything
