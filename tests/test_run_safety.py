"""Runs never lose, hide or leak anything: the run directory is tp_gym's alone, every append
survives a crash, and failures are loud, one line each, with exit codes that say what
happened (0 done, 1 episodes failed, 2 bad input or unwritable, 3 stopped by the user)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

import pytest
from conftest import FAKE_KEY

import tp_gym
import tp_gym.runs.jsonl
import tp_gym.runs.rundir
from tp_gym.cli import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, main
from tp_gym.runs.episode import read_jsonl
from tp_gym.runs.evaluation import FAIL_FAST, Grid, evaluate, load_run
from tp_gym.runs.rundir import EPISODES_FILE, LOCK_FILE, MANIFEST_FILE, RunDirError

SMALL = ["--agents", "scripted:direct", "--envs", "tp_gym/Coding-Loyalty-v0", "--quiet"]
ENV_ID = "tp_gym/Coding-Loyalty-v0"


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    """Run the CLI in this process; (exit code, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(directory.rglob("*"))
    }


def dead_endpoint() -> str:
    """An OpenAI-style base URL on the loopback address where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# ---------------------------------------------------------------- the run directory is ours


def test_an_unrelated_non_empty_directory_is_refused_and_left_untouched(tmp_path, capsys):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("my own report")
    (mine / "summary.csv").write_text("a,b\n1,2\n")
    (mine / "run.json").write_text('{"mine": true}')
    (mine / "utility_cost.png").write_bytes(b"not yours")
    before = snapshot(mine)
    for argv in (
        ["eval", *SMALL, "--seeds", "0-1", "--out", mine],
        ["eval", *SMALL, "--seeds", "0-1", "--out", mine, "--resume"],
        ["demo", "--out", mine, "--seeds", "1", "--quiet", "--no-plots"],
    ):
        code, err = cli(capsys, *argv)
        assert code == EXIT_USAGE
        assert "not a tp-gym run directory" in one_line(err)
    assert snapshot(mine) == before, "nothing written, not even a lock file"


def test_an_empty_or_new_directory_is_fine_and_becomes_ours(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "eval", *SMALL, "--seeds", "0-1", "--out", empty)[0] == EXIT_OK
    assert cli(capsys, "eval", *SMALL, "--seeds", "0-3", "--out", empty, "--resume")[0] == 0
    assert len(load_run(empty)) == 4
    manifest = json.loads((empty / MANIFEST_FILE).read_text())
    assert [i["tp_gym"] for i in manifest["invocations"]] == [tp_gym.__version__] * 2


@pytest.mark.parametrize("planted", ["report.md", "summary.csv", EPISODES_FILE, "other-link"])
def test_a_symlink_inside_a_run_directory_is_refused_and_its_target_untouched(
    tmp_path, capsys, planted
):
    out = tmp_path / "run"
    assert cli(capsys, "eval", *SMALL, "--seeds", "0-1", "--out", out)[0] == EXIT_OK
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = out / planted
    if link.exists():
        link.unlink()
    link.symlink_to(target)
    for argv in (
        ["eval", *SMALL, "--seeds", "0-2", "--out", out, "--resume"],
        ["report", out, "--no-plots"],
    ):
        code, err = cli(capsys, *argv)
        assert code == EXIT_USAGE, (argv, err)
        assert "symbolic link" in one_line(err)
    assert target.read_text() == "keep me"


def test_a_second_demo_on_a_running_demo_touches_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(capsys, "demo", "--out", out, "--seeds", "1", "--no-plots", "--quiet")[0] == 0
    before = snapshot(out)
    fd = os.open(out / LOCK_FILE, os.O_RDWR)  # the first demo, still running
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, err = cli(capsys, "demo", "--out", out, "--seeds", "1", "--no-plots", "--quiet")
    finally:
        os.close(fd)
    assert code == EXIT_USAGE
    assert "another tp-gym run is writing" in one_line(err)
    assert snapshot(out) == before, "the running demo's log was not deleted"


def test_the_lock_comes_before_any_write_in_evaluate(tmp_path):
    grid = Grid.build("scripted:direct", envs=ENV_ID, seeds=[0])
    evaluate(grid, tmp_path, metadata={"command": "demo"})
    before = snapshot(tmp_path)
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(RunDirError, match="another tp-gym run"):
            evaluate(grid, tmp_path, replace=True, metadata={"command": "demo"})
    finally:
        os.close(fd)
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- appends survive a crash


def test_a_torn_run_out_file_is_repaired_and_its_fragment_kept(tmp_path, capsys):
    out = tmp_path / "episodes.jsonl"
    assert cli(capsys, "run", "--env", ENV_ID, "--seed", "1", "--quiet", "--out", out)[0] == 0
    good = out.read_bytes()
    fragment = good[: len(good) // 2]  # the process died in the middle of the next line
    out.write_bytes(good + fragment)
    code, err = cli(capsys, "run", "--env", ENV_ID, "--seed", "2", "--quiet", "--out", out)
    assert code == EXIT_OK
    assert "incomplete" in err and ".torn" in err
    assert [log.seed for log in read_jsonl(out)] == [1, 2], "no good record lost or glued"
    assert Path(f"{out}.torn").read_bytes() == fragment + b"\n", "the fragment is kept"


def test_a_torn_cassette_is_repaired_on_the_next_record_and_replays(
    server, api_key, tmp_path, capsys
):
    cassette = tmp_path / "calls.jsonl"
    base = ["run", "--env", ENV_ID, "--agent", "llm:openai/gpt-4o-mini", "--quiet"]
    llm = ["--api-base", server.base_url, "--cassette", cassette, "--max-retries", "0"]
    assert cli(capsys, *base, "--seed", "1", *llm)[0] == EXIT_OK
    recorded = cassette.read_bytes()
    cassette.write_bytes(recorded + b'{"key": "abc", "requ')
    code, err = cli(capsys, *base, "--seed", "2", *llm)
    assert code == EXIT_OK, err
    assert Path(f"{cassette}.torn").read_bytes() == b'{"key": "abc", "requ\n'
    entries = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert len(entries) > recorded.count(b"\n"), "the new calls were recorded after the repair"
    calls = server.stats["requests"]
    for seed in (1, 2):  # both episodes replay from the repaired cassette, offline
        replay = [*llm, "--cassette-mode", "replay"]
        assert cli(capsys, *base, "--seed", seed, *replay)[0] == EXIT_OK
    assert server.stats["requests"] == calls


def test_retry_errors_on_a_bad_line_names_the_file_and_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "eval", *SMALL, "--seeds", "0-2", "--out", out)[0] == EXIT_OK
    log = out / EPISODES_FILE
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + b'{"agent": 7}\n' + b"".join(lines[1:]))
    code, err = cli(
        capsys, "eval", *SMALL, "--seeds", "0-2", "--out", out, "--resume", "--retry-errors"
    )
    assert code == EXIT_USAGE
    assert f"{log}:2: not an episode log" in one_line(err)


# ---------------------------------------------------------------- failures are loud


def test_every_episode_failing_exits_1_with_a_count_by_cause(api_key, tmp_path, capsys):
    seeds = f"0-{FAIL_FAST - 2}"  # too few episodes to stop early: all are played and logged
    argv = ["eval", "--agents", "llm:openai/gpt-4o-mini", "--envs", ENV_ID, "--seeds", seeds]
    llm = ["--api-base", dead_endpoint(), "--max-retries", "0", "--timeout", "2", "--quiet"]
    code, err = cli(capsys, *argv, *llm, "--out", tmp_path / "run")
    assert code == EXIT_ERRORS
    assert f"({FAIL_FAST - 1} failed: {FAIL_FAST - 1} LLMUnavailableError)" in err
    assert "--resume --retry-errors" in err
    assert FAKE_KEY not in err
    assert all(log.error for log in load_run(tmp_path / "run"))


def test_a_dead_endpoint_stops_the_run_early_and_resume_completes_after_the_fix(
    server, api_key, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["eval", "--agents", "llm:openai/gpt-4o-mini", "--envs", ENV_ID, "--seeds", "0-29"]
    flags = ["--max-retries", "0", "--timeout", "2", "--quiet", "--concurrency", "2"]
    code, err = cli(capsys, *argv, *flags, "--out", out, "--api-base", dead_endpoint())
    assert code == EXIT_ERRORS
    stopped = [line for line in err.splitlines() if line.startswith("stopped early")]
    assert stopped and f"the first {FAIL_FAST} episodes all failed the same way" in stopped[0]
    assert "LLMUnavailableError" in stopped[0] and "--resume" in stopped[0]
    assert (out / EPISODES_FILE).read_bytes().count(b"\n") < 30 - FAIL_FAST, "stopped early"
    assert not any(log.error for log in load_run(out)), "the same-cause failures are not kept"
    code, err = cli(capsys, *argv, *flags, "--out", out, "--api-base", server.base_url, "--resume")
    assert code == EXIT_OK, err
    logs = load_run(out)
    assert len(logs) == 30 and not any(log.error for log in logs)


def test_a_full_disk_is_one_line_naming_the_file_and_resume_completes(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    real = tp_gym.runs.jsonl.write_all
    writes = {"count": 0}

    def disk_fills_up(fd: int, data: bytes) -> None:
        writes["count"] += 1
        if writes["count"] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(tp_gym.runs.jsonl, "write_all", disk_fills_up)
    argv = ["eval", *SMALL, "--seeds", "0-199", "--out", out, "--concurrency", "1"]
    code, err = cli(capsys, *argv)
    assert code == EXIT_USAGE
    line = one_line(err)
    assert str(out / EPISODES_FILE) in line and "No space left on device" in line
    written = load_run(out)  # what was written before the disk filled up is intact
    assert 0 < len(written) < 200
    monkeypatch.setattr(tp_gym.runs.jsonl, "write_all", real)  # space freed
    assert cli(capsys, *argv, "--resume")[0] == EXIT_OK
    assert len(load_run(out)) == 200


def test_an_unwritable_run_directory_is_one_line(tmp_path, capsys, monkeypatch):
    def refused(path: Path) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tp_gym.runs.rundir, "open_append", refused)
    code, err = cli(capsys, "eval", *SMALL, "--seeds", "0-1", "--out", tmp_path / "run")
    assert code == EXIT_USAGE
    line = one_line(err)
    assert f"{tmp_path / 'run' / EPISODES_FILE}: Permission denied" in line


def test_a_report_that_cannot_be_written_keeps_the_previous_files(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert cli(capsys, "eval", *SMALL, "--seeds", "0-2", "--out", out, "--report")[0] == 0
    before = snapshot(out)

    def no_space(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tp_gym.runs.rundir, "write_all", no_space)
    code, err = cli(capsys, "report", out)
    assert code == EXIT_USAGE
    assert "No space left on device" in one_line(err)
    assert snapshot(out) == before, "no empty summary.csv, no half-written file, no temporary"


def test_report_out_never_overwrites_a_foreign_directory(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "eval", *SMALL, "--seeds", "0-1", "--out", run)[0] == EXIT_OK
    foreign = tmp_path / "paper-draft"
    foreign.mkdir()
    (foreign / "report.md").write_text("# my paper\n")
    before = snapshot(foreign)
    code, err = cli(capsys, "report", run, "--out", foreign, "--no-plots")
    assert code == EXIT_USAGE and "holds no report of ours" in one_line(err)
    assert snapshot(foreign) == before
    fresh = tmp_path / "reports"
    for _ in range(2):  # a new directory, then the same one again: ours, so rewritten
        assert cli(capsys, "report", run, "--out", fresh, "--no-plots")[0] == EXIT_OK
    assert (fresh / "summary.csv").stat().st_size > 0


def test_a_full_disk_during_run_out_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "episodes.jsonl"

    def no_space(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tp_gym.runs.jsonl, "write_all", no_space)
    code, err = cli(capsys, "run", "--env", ENV_ID, "--quiet", "--out", out)
    assert code == EXIT_USAGE
    assert f"{out}: No space left on device" in one_line(err)
