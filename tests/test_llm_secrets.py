"""No API key, nor any string given as one, appears in a log, cassette, report or error."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from conftest import FAKE_KEY, fast_llm

from tp_gym.agents.llm import LLMAgent
from tp_gym.cli import main as cli_main
from tp_gym.llm.client import LLMClient
from tp_gym.llm.errors import LLMAuthError
from tp_gym.llm.narrator import NarratorWrapper
from tp_gym.llm.redact import REDACTED, Redactor
from tp_gym.runs.episode import to_json_line
from tp_gym.runs.runner import run_episode
from tp_gym.testing import Reply

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"
CUSTOM_KEY = "hunter2-custom-credential"
"""A key of no known shape: only knowing it was given as a key can mask it."""


def test_redactor_masks_given_keys_environment_keys_and_key_shapes(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-secret-value")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-98765")
    redact = Redactor([CUSTOM_KEY, None, "ab"])
    text = (
        f"{CUSTOM_KEY} anthropic-secret-value tok-98765 "
        "sk-proj-ABCDEFGHIJKLMNOPQRSTUV Authorization: Bearer abc.def-1234567890XYZuvw ab"
    )
    cleaned = redact(text)
    for secret in (CUSTOM_KEY, "anthropic-secret-value", "tok-98765", "sk-proj-", "abc.def"):
        assert secret not in cleaned
    assert cleaned.count(REDACTED) == 5
    assert cleaned.endswith(" ab"), "secrets under 4 characters are not masked"
    nested = redact.deep({"a": [f"x {CUSTOM_KEY}", {"b": CUSTOM_KEY}], "n": 3})
    assert nested == {"a": [f"x {REDACTED}", {"b": REDACTED}], "n": 3}


def test_settings_and_ordinary_words_are_not_taken_for_keys(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("SECRETS_DIR", "/var/lib/secrets-dir")
    monkeypatch.setenv("DB_PASSWORD", "short")
    text = '{"urgent": false} bearer instrument /var/lib/secrets-dir short sk-learn'
    assert Redactor()(text) == text


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
