"""Every command answers bad flags, paths and files with one line and exit code 2, never a
traceback, and writes nothing where it refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tp_gym.cli import EXIT_USAGE, main

ENV_ID = "tp_gym/Coding-Loyalty-v0"
EVAL = ["eval", "--agents", "scripted:direct", "--envs", ENV_ID, "--quiet"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Bad inputs of every kind, by name."""
    made = {
        "missing": tmp_path / "missing",
        "a_file": tmp_path / "a_file.txt",
        "garbage_log": tmp_path / "garbage" / "episodes.jsonl",
        "binary_log": tmp_path / "binary" / "episodes.jsonl",
        "empty_dir": tmp_path / "empty",
        "bad_toml": tmp_path / "bad.toml",
        "bad_spec": tmp_path / "bad_spec.json",
        "not_utf8_spec": tmp_path / "latin1.json",
    }
    made["a_file"].write_text("hello")
    made["garbage_log"].parent.mkdir()
    made["garbage_log"].write_text('{"agent": "x"}\nnot json\n')
    made["binary_log"].parent.mkdir()
    made["binary_log"].write_bytes(b"\x00\xff\xfe garbage \x80\n")
    made["empty_dir"].mkdir()
    made["bad_toml"].write_text("this is = = not toml [")
    made["bad_spec"].write_text('{"id": "x"}')
    made["not_utf8_spec"].write_bytes(b'{"id": "caf\xe9"}')
    return made


CASES: list[tuple[str, list[str], str]] = [
    # (name, argv with {placeholders}, a fragment the one line must hold)
    ("unknown command", ["bogus"], "invalid choice"),
    ("unknown flag", ["list", "--bogus"], "unrecognized arguments"),
    ("eval without --out", ["eval", "--agents", "scripted:direct"], "required"),
    ("eval unknown agent", ["eval", "--agents", "scripted:nope", "--out", "{missing}"], "nope"),
    ("eval unknown llm option", [*EVAL, "--out", "{missing}", "--timeout", "x"], "invalid float"),
    ("eval no env matches", [*EVAL[:3], "--envs", "zzz*", "--out", "{missing}"], "zzz"),
    ("eval bad seeds", [*EVAL, "--seeds", "a-b", "--out", "{missing}"], "seed"),
    ("eval reversed seeds", [*EVAL, "--seeds", "9-1", "--out", "{missing}"], "seed"),
    ("eval too many seeds", [*EVAL, "--seeds", "0-100000000", "--out", "{missing}"], "seed"),
    ("eval bad variable", [*EVAL, "--set", "stakes=huge", "--out", "{missing}"], "stakes"),
    ("eval unknown variable", [*EVAL, "--set", "mood=calm", "--out", "{missing}"], "mood"),
    ("eval unknown suite", [*EVAL, "--suite", "nope", "--out", "{missing}"], "nope"),
    ("eval zero concurrency", [*EVAL, "--concurrency", "0", "--out", "{missing}"], "concurrency"),
    ("eval --out is a file", [*EVAL, "--seeds", "0", "--out", "{a_file}"], "not a directory"),
    (
        "eval into a foreign directory",
        [*EVAL, "--seeds", "0", "--out", "{garbage_dir}", "--resume"],
        "not a tp-gym run directory",
    ),
    ("eval bad protocol", [*EVAL, "--protocol", "loose", "--out", "{missing}"], "loose"),
    ("eval address without ray", [*EVAL, "--address", "h:1", "--out", "{missing}"], "ray"),
    ("eval retry without resume", [*EVAL, "--retry-errors", "--out", "{missing}"], "--resume"),
    (
        "eval replay without cassette",
        [
            "eval",
            "--agents",
            "llm:openai/m",
            "--envs",
            ENV_ID,
            "--seeds",
            "0",
            "--cassette",
            "{missing}",
            "--cassette-mode",
            "replay",
            "--out",
            "{missing_out}",
        ],
        "cassette",
    ),
    ("run unknown env", ["run", "--env", "tp_gym/Nope-v0"], "Nope"),
    ("run missing spec file", ["run", "--env", "{missing}.toml"], "missing"),
    ("run malformed toml", ["run", "--env", "{bad_toml}"], "bad.toml"),
    ("run spec with missing fields", ["run", "--env", "{bad_spec}"], "bad_spec.json"),
    ("run spec not utf-8", ["run", "--env", "{not_utf8_spec}"], "latin1.json"),
    ("run bad seed", ["run", "--env", ENV_ID, "--seed", "-3"], "seed"),
    ("run bad variant", ["run", "--env", ENV_ID, "--variant", "-1"], "variant"),
    ("run --out is a directory", ["run", "--env", ENV_ID, "--out", "{empty_dir}"], "empty"),
    ("report missing dir", ["report", "{missing}"], "missing"),
    ("report empty dir", ["report", "{empty_dir}"], "episodes.jsonl"),
    ("report garbage log", ["report", "{garbage_dir}"], "episodes.jsonl:1"),
    ("report binary log", ["report", "{binary_dir}"], "episodes.jsonl:1"),
    ("report a text file", ["report", "{a_file}"], "a_file.txt:1"),
    ("demo zero seeds", ["demo", "--seeds", "0", "--out", "{missing}"], "seeds"),
    ("demo --out is a file", ["demo", "--seeds", "1", "--out", "{a_file}"], "not a directory"),
    ("generate bad driver", ["generate", "--domain", "X", "--driver", "Greed"], "Greed"),
    (
        "generate existing out",
        [
            "generate",
            "--domain",
            "Education",
            "--driver",
            "Loyalty",
            "--model",
            "m",
            "--out",
            "{a_file}",
        ],
        "a_file.txt",
    ),
]


@pytest.mark.parametrize(("argv", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, fragment, files, tmp_path, capsys):
    places = {name: str(path) for name, path in files.items()}
    places["garbage_dir"] = str(files["garbage_log"].parent)
    places["binary_dir"] = str(files["binary_log"].parent)
    places["missing_out"] = str(tmp_path / "out")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [part.format(**places) for part in argv]
    try:
        code = main(argv)
    except SystemExit as stopped:  # argparse's own usage errors exit
        code = stopped.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EXIT_USAGE, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing written"


def test_an_unexpected_error_is_one_line_unless_the_traceback_is_asked_for():
    code = (
        "import sys, tp_gym.commands.list_cmd as c\n"
        "def boom(args): raise ZeroDivisionError('deep inside')\n"
        "c.main = boom\n"
        "from tp_gym.cli import main\n"
        "sys.exit(main(['list']))\n"
    )
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert quiet.returncode == EXIT_USAGE
    assert quiet.stderr.count("\n") == 1 and "ZeroDivisionError: deep inside" in quiet.stderr
    assert "TP_GYM_TRACEBACK=1" in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TP_GYM_TRACEBACK": "1"},
    )
    assert "Traceback" in loud.stderr
