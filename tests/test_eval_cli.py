"""`tp-gym eval` and `tp-gym report` on the command line: the flag contract and its errors."""

from __future__ import annotations

import json

import pytest

import tp_gym
from tp_gym.cli import main
from tp_gym.runs.evaluation import EPISODES_FILE, load_run


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_contract_flags_write_one_line_per_episode(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "eval",
        "--agents",
        "scripted:compliant,scripted:direct",
        "--envs",
        "tp_gym/Finance-*,tp_gym/Coding-Loyalty-v0",
        "--seeds",
        "0-2,7",
        "--set",
        "stakes=low",
        "--set",
        "feedback=high,low",
        "--out",
        str(out),
        "--concurrency",
        "3",
        "--quiet",
    )
    assert code == 0, err
    envs = [e for e in tp_gym.env_ids() if e.startswith("tp_gym/Finance-")]
    envs.append("tp_gym/Coding-Loyalty-v0")
    rows = [json.loads(line) for line in (out / EPISODES_FILE).read_text().splitlines()]
    assert len(rows) == 2 * len(envs) * 4 * 2
    assert {r["agent"] for r in rows} == {"scripted:compliant", "scripted:direct"}
    assert {r["env_id"] for r in rows} == set(envs)
    assert {r["seed"] for r in rows} == {0, 1, 2, 7}
    assert {(r["variables"]["stakes"], r["variables"]["feedback"]) for r in rows} == {
        ("low", "high"),
        ("low", "low"),
    }
    assert f"{len(rows)} episode(s) played" in err
    assert f"tp-gym report {out}" in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["grid"]["seeds"] == [0, 1, 2, 7]
    assert manifest["invocations"][-1]["concurrency"] == 3


def test_eval_suite_with_report(tmp_path, capsys):
    out = tmp_path / "paper"
    code, _, err = run_cli(
        capsys,
        "eval",
        "--suite",
        "paper",
        "--envs",
        "tp_gym/Healthcare-Loyalty-v0",
        "--agents",
        "scripted:rational",
        "--seeds",
        "0-1",
        "--out",
        str(out),
        "--quiet",
        "--report",
    )
    assert code == 0, err
    logs = load_run(out)
    assert len({json.dumps(log.variables, sort_keys=True) for log in logs}) > 5
    assert (out / "report.md").is_file() and (out / "summary.csv").is_file()
    assert "### stakes" in (out / "report.md").read_text()


def test_resume_flag_continues_and_the_existing_dir_needs_it(tmp_path, capsys):
    args = ["eval", "--agents", "scripted:direct", "--envs", "tp_gym/Coding-*", "--quiet"]
    out = str(tmp_path / "run")
    assert run_cli(capsys, *args, "--seeds", "0-1", "--out", out)[0] == 0
    code, _, err = run_cli(capsys, *args, "--seeds", "0-1", "--out", out)
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *args, "--seeds", "0-3", "--out", out, "--resume")
    assert code == 0 and "already in the log" in err
    assert len(load_run(out)) == 2 * len([e for e in tp_gym.env_ids() if "/Coding-" in e]) * 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "5-2"], "bad seed range '5-2'"),
        (["--seeds", "x"], "bad seed range 'x'"),
        (["--envs", "tp_gym/Nope-*"], "no environment matches 'tp_gym/Nope-*'"),
        (["--agents", "robot:x"], "unknown agent kind 'robot'"),
        (["--agents", "scripted:nope"], "unknown scripted policy 'nope'"),
        (["--set", "stakes=extreme"], "variable stakes='extreme' is not allowed"),
        (["--set", "colour=red"], "unknown variable 'colour'"),
        (["--set", "stakes"], "--set expects NAME=VALUE"),
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--suite", "paper", "--set", "stakes=low"], "cannot be combined with --suite"),
        (["--retry-errors"], "only makes sense with --resume"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_eval_errors_are_one_line(tmp_path, capsys, argv, message):
    base = {"--agents": "scripted:compliant", "--seeds": "0", "--out": str(tmp_path / "r")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    extra = [a for a in argv if a == "--retry-errors"]
    flat = [x for pair in base.items() for x in pair if x is not None]
    code, _, err = run_cli(capsys, "eval", *flat, *extra, "--quiet")
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_report_errors_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "report", str(tmp_path / "missing"))
    assert code == 2 and "no such run directory" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "report", str(tmp_path))
    assert code == 2 and "no episodes.jsonl" in err
    out = tmp_path / "run"
    run_cli(
        capsys,
        "eval",
        "--agents",
        "scripted:direct",
        "--envs",
        "tp_gym/Coding-Loyalty-v0",
        "--seeds",
        "0-2",
        "--out",
        str(out),
        "--quiet",
    )
    log = out / EPISODES_FILE
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + '{"agent": "x"}\n' + "".join(lines[1:]))
    code, _, err = run_cli(capsys, "report", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{log}:2: not an episode log" in err


def test_report_command_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    run_cli(
        capsys,
        "eval",
        "--agents",
        "scripted:random,scripted:compliant",
        "--envs",
        "tp_gym/Healthcare-*",
        "--seeds",
        "0-3",
        "--set",
        "stakes=high,low",
        "--out",
        str(out),
        "--quiet",
    )
    target = tmp_path / "report"
    code, stdout, err = run_cli(capsys, "report", str(out), "--out", str(target))
    assert code == 0, err
    for name in ("report.md", "summary.csv", "behaviour_grid.png", "utility_cost.png"):
        assert (target / name).is_file() and str(target / name) in stdout
    assert (target / "stress_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "### stakes" in (target / "report.md").read_text()


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("list", "run", "eval", "report", "demo"):
        assert command in text


@pytest.mark.parametrize(
    ("flags", "protocols"),
    [
        ([], {"study"}),
        (["--protocol", "study"], {"study"}),
        (["--protocol", "extended"], {"extended"}),
        (["--suite", "paper"], {"study"}),
        (["--suite", "observed"], {"extended"}),
        (["--suite", "paper", "--protocol", "extended"], {"extended"}),
    ],
)
def test_eval_protocol_reaches_every_episode(tmp_path, capsys, flags, protocols):
    out = tmp_path / "run"
    argv = ["eval", "--agents", "scripted:direct", "--envs", "tp_gym/Coding-Loyalty-v0"]
    argv += ["--seeds", "0", "--out", str(out), "--quiet", *flags]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / EPISODES_FILE).read_text().splitlines()]
    assert rows and {row["protocol"] for row in rows} == protocols


def test_eval_rejects_a_variable_the_study_protocol_lacks_in_one_line(tmp_path, capsys):
    argv = ["eval", "--agents", "scripted:direct", "--envs", "tp_gym/Coding-Loyalty-v0"]
    argv += ["--seeds", "0", "--out", str(tmp_path / "r"), "--quiet", "--set", "observed=false"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "observed" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *argv, "--protocol", "extended")
    assert code == 0, err


def test_eval_llm_agents_follow_each_cells_protocol(server, api_key, tmp_path, capsys):
    def run(out: str, *flags: str) -> list:
        argv = ["eval", "--agents", "llm:openai/gpt-4o-mini", "--envs", "tp_gym/Finance-Loyalty-v0"]
        argv += ["--seeds", "0", "--out", str(tmp_path / out), "--quiet"]
        code, _, err = run_cli(capsys, *argv, "--api-base", server.base_url, *flags)
        assert code == 0, err
        requests = list(server.requests)
        server.requests.clear()
        assert requests
        return requests

    for request in run("study"):
        assert "tools" not in request and request["temperature"] == 0.7
        assert request["max_tokens"] == 4096
    for request in run("extended", "--protocol", "extended"):
        assert request["tools"] and "temperature" not in request
    for request in run("ext-json", "--protocol", "extended", "--reply-format", "json"):
        assert "tools" not in request and "temperature" not in request
    logs = load_run(tmp_path / "ext-json")
    assert {log.protocol for log in logs} == {"extended"} and all(not log.error for log in logs)
