"""`tp-gym run` with LLM agents against the loopback server, and the CLI's start-up cost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAKE_KEY

from tp_gym.cli import main as cli_main
from tp_gym.runs.episode import read_jsonl

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"


def tp_gym_command() -> list[str]:
    script = Path(sys.executable).with_name("tp-gym")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tp_gym.cli"]


@pytest.mark.parametrize("reply_format", ["tools", "json"])
def test_run_plays_a_full_episode_and_logs_messages_tokens_and_cost(
    server, api_key, tmp_path, capsys, reply_format
):
    out = tmp_path / "episode.jsonl"
    argv = ["run", "--env", ENV_ID, "--agent", "llm:openai/gpt-4o-mini", "--seed", "3"]
    argv += ["--api-base", server.base_url, "--out", str(out), "--reply-format", reply_format]
    assert cli_main(argv) == 0
    assert "outcome" in capsys.readouterr().out
    (log,) = read_jsonl(out)
    assert log.error is None and (log.terminated or log.truncated)
    assert log.agent == "llm:openai/gpt-4o-mini" and log.seed == 3
    usage = log.usage["agent"]
    assert usage.calls == len(log.steps) > 0 and usage.cost_usd > 0 and usage.priced
    assert log.steps[0].messages[0]["role"] == "system"
    for step in log.steps:
        reply = step.messages[-1]
        assert reply["role"] == "assistant"
        assert reply["usage"]["prompt_tokens"] > 0 and reply["usage"]["cost_usd"] > 0
        if reply_format == "tools":
            assert reply["tool_calls"][0]["function"]["name"] == step.tool
        else:
            assert step.tool in reply["content"]
    text = out.read_text()
    assert FAKE_KEY not in text


@pytest.mark.parametrize(
    ("flags", "protocol", "tools", "temperature"),
    [
        ([], "study", False, 0.7),
        (["--protocol", "study"], "study", False, 0.7),
        (["--protocol", "extended"], "extended", True, None),
        (
            ["--protocol", "extended", "--reply-format", "json", "--temperature", "0.1"],
            "extended",
            False,
            0.1,
        ),
        (["--protocol", "study", "--reply-format", "tools"], "study", True, 0.7),
    ],
)
def test_run_protocol_picks_the_env_and_the_agent_follows_it(
    server, api_key, tmp_path, flags, protocol, tools, temperature
):
    out = tmp_path / "e.jsonl"
    argv = ["run", "--env", ENV_ID, "--agent", "llm:openai/gpt-4o-mini", "--seed", "2"]
    argv += ["--api-base", server.base_url, "--out", str(out), "--quiet", *flags]
    assert cli_main(argv) == 0
    (log,) = read_jsonl(out)
    assert log.protocol == protocol and log.error is None
    for request in server.requests:
        assert ("tools" in request) is tools
        assert request.get("temperature") == temperature
        assert request.get("max_tokens") == (4096 if protocol == "study" else None)


def test_run_protocol_works_for_spec_files_and_scripted_agents(tmp_path, capsys):
    from tp_gym.envs import spec_path

    out = tmp_path / "e.jsonl"
    path = str(spec_path("Healthcare-Loyalty"))
    argv = ["run", "--env", path, "--protocol", "extended", "--out", str(out), "--quiet"]
    assert cli_main(argv) == 0
    assert cli_main(["run", "--env", ENV_ID, "--out", str(out), "--quiet"]) == 0
    assert [log.protocol for log in read_jsonl(out)] == ["extended", "study"]
    capsys.readouterr()
    argv = ["run", "--env", ENV_ID, "--set", "observed=false", "--quiet"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "observed=false exists only under protocol='extended'" in err
    assert err.strip().count("\n") == 0


@pytest.mark.parametrize("command", ["run", "eval"])
@pytest.mark.parametrize("value", ["json", "tools"])
def test_the_old_protocol_flag_values_point_to_reply_format(capsys, command, value):
    argv = [command, "--protocol", value]
    argv += ["--env", ENV_ID] if command == "run" else ["--agents", "llm:x", "--out", "r"]
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --protocol: invalid choice: " + repr(value) in err
    assert f"moved to --reply-format {value}" in err
    with pytest.raises(SystemExit):
        cli_main([command, "--protocol", "paper"])
    assert "--reply-format" in capsys.readouterr().err


def test_help_explains_the_env_protocol_and_the_reply_format(capsys):
    for command in ("run", "eval"):
        with pytest.raises(SystemExit):
            cli_main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--protocol {study,extended}" in text
        assert "study reproduces the paper's rules exactly" in text
        assert "extended is tp_gym's richer engine: probabilistic oversight, replacement" in text
        assert "--reply-format {tools,json}" in text
        assert "json under study, tools under extended" in text
        assert "window under study, full under extended" in text


def test_env_protocols_of_the_parser_match_the_engine():
    from tp_gym.commands.common import ENV_PROTOCOLS, REPLY_FORMATS
    from tp_gym.llm.conversation import REPLY_FORMATS as AGENT_REPLY_FORMATS
    from tp_gym.variables import PROTOCOLS

    assert ENV_PROTOCOLS == PROTOCOLS and REPLY_FORMATS == AGENT_REPLY_FORMATS


def test_run_with_a_narrator_window_context_and_cassette(server, api_key, tmp_path):
    out, cassette = tmp_path / "e.jsonl", tmp_path / "c.jsonl"
    argv = ["run", "--env", ENV_ID, "--agent", "llm:openai/gpt-4o-mini", "--seed", "1"]
    argv += ["--api-base", server.base_url, "--out", str(out), "--quiet", "--context", "window"]
    argv += ["--narrator", "openai/narrator-model", "--cassette", str(cassette)]
    assert cli_main(argv) == 0
    calls = server.stats["requests"]
    assert cli_main([*argv, "--cassette-mode", "replay"]) == 0
    assert server.stats["requests"] == calls, "the second run replayed from the cassette"
    first, second = read_jsonl(out)
    assert set(first.usage) == {"agent", "narrator"}
    assert first.model_dump() == second.model_dump()


def test_a_failed_episode_exits_non_zero_with_one_line_and_no_traceback(make_server, tmp_path):
    server = make_server(api_key="the-right-key-000")
    out = tmp_path / "failed.jsonl"
    command = [*tp_gym_command(), "run", "--env", ENV_ID, "--agent", "llm:openai/gpt-4o-mini"]
    command += ["--api-base", server.base_url, "--seed", "0", "--out", str(out)]
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tp-gym run: error: episode failed after 0 turn(s)")
    assert "LLMAuthError" in lines[0] and "authentication failed" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert FAKE_KEY not in done.stderr + done.stdout + out.read_text()
    (log,) = read_jsonl(out)
    assert log.outcome == "error" and "[REDACTED]" in log.error, "errors are logged, not dropped"


def test_bad_llm_flags_are_one_line_errors(tmp_path, capsys):
    argv = ["run", "--env", ENV_ID, "--agent", "llm:openai/m", "--timeout", "-1"]
    assert cli_main(argv) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    missing = tmp_path / "none.jsonl"
    argv = ["run", "--env", ENV_ID, "--agent", "llm:openai/m", "--cassette", str(missing)]
    assert cli_main([*argv, "--cassette-mode", "replay"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_import_tp_gym_and_the_cli_parser_do_not_import_litellm():
    code = (
        "import sys, tp_gym, tp_gym.agents, tp_gym.agents.llm, tp_gym.llm, tp_gym.llm.narrator, "
        "tp_gym.testing, tp_gym.generate, tp_gym.cli\n"
        "tp_gym.cli.build_parser()\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_help_lists_every_command():
    done = subprocess.run([*tp_gym_command(), "--help"], capture_output=True, timeout=30)
    assert done.returncode == 0
    for command in (b"list", b"run", b"eval", b"report", b"demo", b"generate"):
        assert command in done.stdout
