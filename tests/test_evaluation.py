"""The evaluation runner: concurrency, atomic appends, resume after SIGKILL/SIGINT, errors."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from conftest import comparable, count_lines, start, wait_for_lines

import tp_gym
import tp_gym.agents
from tp_gym.cli import EXIT_STOPPED
from tp_gym.runs.evaluation import Grid, evaluate, load_run
from tp_gym.runs.jsonl import TornLineWarning
from tp_gym.runs.rundir import EPISODES_FILE, LOCK_FILE, RunDirError, repair_tail
from tp_gym.runs.runner import run_episode
from tp_gym.variables import PROTOCOLS

KILL_AGENTS = "scripted:staller,scripted:random,scripted:rational"
KILL_SEEDS = range(60)


def kill_grid() -> Grid:
    """The grid the kill tests run, under the default (study) protocol, as the CLI runs it."""
    return Grid.build(KILL_AGENTS, envs="tp_gym/*", seeds=KILL_SEEDS)


def lines_by_key(run_dir: Path) -> dict:
    logs = load_run(run_dir)  # raises on a torn line or a duplicate episode
    by_key = {log.key: comparable(log) for log in logs}
    assert len(by_key) == len(logs)
    return by_key


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run of the kill grid, in this process."""
    out = tmp_path_factory.mktemp("reference")
    result = evaluate(kill_grid(), out, concurrency=8)
    assert result.completed == len(kill_grid()) and not result.interrupted
    return lines_by_key(out)


def eval_command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tp_gym.cli",
        "eval",
        "--agents",
        KILL_AGENTS,
        "--envs",
        "tp_gym/*",
        "--seeds",
        f"{KILL_SEEDS.start}-{KILL_SEEDS.stop - 1}",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_sigkill_then_resume_gives_exactly_the_uninterrupted_episodes(tmp_path, reference):
    out = tmp_path / "run"
    log = out / EPISODES_FILE
    total = len(reference)
    rng = random.Random()
    # kill at a random moment: once a random share of the grid (up to 60%) is on disk
    process = start(eval_command(out, "--concurrency", "8"))
    wait_for_lines(process, log, rng.randint(1, int(0.6 * total)))
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    partial = count_lines(log)
    assert 0 < partial < total, "the kill should land mid-run"
    # kill the resumed run too, somewhere in what was left, then resume to the end
    process = start(eval_command(out, "--resume", "--concurrency", "8"))
    wait_for_lines(process, log, rng.randint(partial + 1, partial + (total - partial) // 2))
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert count_lines(log) < total
    done = subprocess.run(
        eval_command(out, "--resume"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "already in the log" in done.stderr
    assert lines_by_key(out) == reference


def test_sigkill_of_a_multiprocess_run_then_resume(tmp_path, reference):
    out = tmp_path / "run"
    log = out / EPISODES_FILE
    process = start(eval_command(out, "--workers", "2", "--concurrency", "8"))
    wait_for_lines(process, log, random.randint(1, len(reference) // 2))
    os.killpg(process.pid, signal.SIGKILL)  # the parent and both workers
    process.wait(timeout=30)
    assert count_lines(log) < len(reference)
    done = subprocess.run(
        eval_command(out, "--resume", "--workers", "2"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert lines_by_key(out) == reference


def test_ctrl_c_stops_cleanly_and_resume_completes(tmp_path, reference):
    out = tmp_path / "run"
    log = out / EPISODES_FILE
    process = start(eval_command(out, "--concurrency", "8"))
    wait_for_lines(process, log, random.randint(1, len(reference) // 2))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_STOPPED, stderr
    assert b"interrupted" in stderr and b"--resume" in stderr
    assert b"Traceback" not in stderr and b"never retrieved" not in stderr
    assert log.read_bytes().endswith(b"\n")
    partial = lines_by_key(out)  # every line complete and valid
    assert 0 < len(partial) < len(reference)
    assert all(reference[key] == line for key, line in partial.items())
    done = subprocess.run(
        eval_command(out, "--resume"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert lines_by_key(out) == reference


# ---------------------------------------------------------------------------- in process


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_logs_equal_run_episode_and_carry_their_identity(tmp_path, protocol):
    grid = Grid.build(
        "scripted:random,scripted:strategic",
        envs="tp_gym/Healthcare-*",
        variables=[{}, {"stakes": "low", "feedback": "high"}],
        seeds=[3, 4],
        protocol=protocol,
    )
    result = evaluate(grid, tmp_path, concurrency=4)
    healthcare = [e for e in tp_gym.env_ids() if e.startswith("tp_gym/Healthcare-")]
    assert result.completed == len(grid) == 2 * 2 * 2 * len(healthcare)
    rows = [json.loads(line) for line in (tmp_path / EPISODES_FILE).read_text().splitlines()]
    for row in rows:
        assert {"agent", "env_id", "variables", "seed", "protocol"} <= set(row)
        assert row["protocol"] == protocol
        assert row["timing"]["wall_seconds"] >= 0
        env = gym.make(row["env_id"], protocol=row["protocol"])
        expected = run_episode(
            env, tp_gym.agents.make_agent(row["agent"]), seed=row["seed"], options=row["variables"]
        )
        assert comparable(tp_gym.EpisodeLog.model_validate(row)) == comparable(expected)


def test_resume_skips_everything_already_logged(tmp_path):
    grid = Grid.build("scripted:compliant", envs="tp_gym/*", seeds=range(3))
    first = evaluate(grid, tmp_path)
    again = evaluate(grid, tmp_path, resume=True)
    assert (again.skipped, again.completed) == (first.completed, 0)
    wider = Grid.build("scripted:compliant", envs="tp_gym/*", seeds=range(5))
    more = evaluate(wider, tmp_path, resume=True)
    assert (more.skipped, more.completed) == (first.completed, len(wider) - len(grid))
    assert len(load_run(tmp_path)) == len(wider)


def test_resume_tells_the_protocols_apart(tmp_path):
    study = Grid.build("scripted:compliant", envs="tp_gym/Coding-*", seeds=range(2))
    assert {job.protocol for job in study.jobs()} == {"study"}, "study is the default"
    first = evaluate(study, tmp_path)
    extended = Grid.build(
        "scripted:compliant", envs="tp_gym/Coding-*", seeds=range(2), protocol="extended"
    )
    more = evaluate(extended, tmp_path, resume=True)
    assert (more.skipped, more.completed) == (0, len(extended)), "a new protocol is new work"
    logs = load_run(tmp_path)
    assert len(logs) == first.completed + more.completed
    assert sorted(log.key[-1] for log in logs) == ["extended"] * len(extended) + ["study"] * len(
        study
    )
    assert {job.key for job in study.jobs() + extended.jobs()} == {log.key for log in logs}
    again = evaluate(extended, tmp_path, resume=True)
    assert (again.skipped, again.completed) == (len(extended), 0)


def test_a_non_empty_run_dir_needs_resume(tmp_path):
    grid = Grid.build("scripted:compliant", envs="tp_gym/Finance-*", seeds=[0])
    evaluate(grid, tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        evaluate(grid, tmp_path)


def test_torn_last_line_is_reported_then_repaired_by_resume(tmp_path):
    grid = Grid.build("scripted:direct", envs="tp_gym/Coding-*", seeds=range(4))
    evaluate(grid, tmp_path)
    log = tmp_path / EPISODES_FILE
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    with pytest.raises(ValueError, match=r"episodes.jsonl:\d+: incomplete last line"):
        load_run(tmp_path)
    fragment = lines[-1][: len(lines[-1]) // 2]
    with pytest.warns(TornLineWarning, match=r"moved to .*episodes.jsonl.torn"):
        result = evaluate(grid, tmp_path, resume=True)
    assert result.completed == 1
    assert len(load_run(tmp_path)) == len(grid)
    assert repair_tail(log) == 0
    assert (tmp_path / "episodes.jsonl.torn").read_bytes() == fragment + b"\n"


def test_a_corrupt_complete_line_stops_resume_with_its_line_number(tmp_path):
    grid = Grid.build("scripted:direct", envs="tp_gym/Coding-*", seeds=range(2))
    evaluate(grid, tmp_path)
    log = tmp_path / EPISODES_FILE
    log.write_text('{"not": "an episode"}\n' + log.read_text())
    with pytest.raises(ValueError, match=r"episodes.jsonl:1: not an episode log"):
        evaluate(grid, tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"episodes.jsonl:1: not an episode log"):
        load_run(tmp_path)


def test_a_duplicated_episode_is_reported(tmp_path):
    grid = Grid.build("scripted:direct", envs="tp_gym/Coding-Loyalty-v0", seeds=[0])
    evaluate(grid, tmp_path)
    log = tmp_path / EPISODES_FILE
    (tmp_path / "episodes-copy.jsonl").write_bytes(log.read_bytes())
    with pytest.raises(ValueError, match=r"episodes-copy.jsonl:1: duplicate episode .*seed 0"):
        load_run(tmp_path)


def test_a_second_writer_is_refused(tmp_path):
    grid = Grid.build("scripted:direct", envs="tp_gym/Coding-Loyalty-v0", seeds=[0])
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(RunDirError, match="another tp-gym run"):
            evaluate(grid, tmp_path)
    finally:
        os.close(fd)


class SleepyAgent:
    """Follows the compliant plan, waiting `delay` seconds per call like a remote LLM."""

    needs_oracle = True

    def __init__(self, name: str = "test:sleepy", delay: float = 0.05, fail_seeds=()) -> None:
        self.name = name
        self.delay = delay
        self.fail_seeds = set(fail_seeds)
        self.usage = {"agent": tp_gym.runs.episode.Usage(calls=0, prompt_tokens=0)}

    def reset(self, observation, *, tools, oracle, seed, protocol="study"):
        self.oracle, self.turn, self.seed = oracle, 0, seed

    def act(self, observation):  # pragma: no cover - the runner must prefer aact
        raise AssertionError("aact should be awaited instead")

    in_flight = 0
    most_in_flight = 0

    async def aact(self, observation):
        SleepyAgent.in_flight += 1
        SleepyAgent.most_in_flight = max(SleepyAgent.most_in_flight, SleepyAgent.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            SleepyAgent.in_flight -= 1
        if self.seed in self.fail_seeds:
            raise ConnectionError("the model is down")
        usage = self.usage["agent"]
        usage.calls += 1
        usage.prompt_tokens += 100
        usage.cost_usd += 0.001
        role = ("validator", "registrar", "standard_executor")[min(self.turn, 2)]
        self.turn += 1
        return self.oracle.first(role)


@pytest.fixture
def sleepy(monkeypatch):
    """Make ``test:sleepy`` (and ``test:flaky``, failing on odd seeds) known to make_agent."""
    original = tp_gym.agents.make_agent
    state = {"fail": True}

    def make(spec, **options):
        if spec == "test:sleepy":
            return SleepyAgent()
        if spec == "test:flaky":
            return SleepyAgent("test:flaky", 0.0, fail_seeds={1, 3} if state["fail"] else ())
        return original(spec, **options)

    monkeypatch.setattr(tp_gym.agents, "make_agent", make)
    return state


def test_episodes_waiting_on_the_model_overlap(tmp_path, sleepy):
    grid = Grid.build("test:sleepy", envs="tp_gym/*", seeds=range(4))
    episodes = len(grid)  # each makes 3 calls of 50 ms
    seen = []
    SleepyAgent.most_in_flight = 0
    result = evaluate(grid, tmp_path, concurrency=8, progress=seen.append)
    assert result.completed == episodes and len(seen) == episodes
    assert SleepyAgent.most_in_flight == 8, "episodes wait on the model side by side, 8 at most"
    assert result.tokens == 300 * episodes
    assert result.cost_usd == pytest.approx(0.003 * episodes)
    assert {log.behaviour for log in load_run(tmp_path)} == {"robust"}


def test_errors_are_logged_and_retried_on_request(tmp_path, sleepy):
    grid = Grid.build("test:flaky", envs="tp_gym/Finance-Loyalty-v0", seeds=range(4))
    result = evaluate(grid, tmp_path)
    assert (result.completed, result.errors) == (4, 2)
    errors = {log.seed: log.error for log in load_run(tmp_path) if log.error}
    assert errors == {
        1: "ConnectionError: the model is down",
        3: "ConnectionError: the model is down",
    }
    assert evaluate(grid, tmp_path, resume=True).completed == 0
    sleepy["fail"] = False
    retried = evaluate(grid, tmp_path, resume=True, retry_errors=True)
    assert (retried.retried, retried.completed, retried.errors) == (2, 2, 0)
    logs = load_run(tmp_path)
    assert len(logs) == 4 and not any(log.error for log in logs)


def test_evaluate_works_inside_a_running_event_loop(tmp_path):
    grid = Grid.build("scripted:compliant", envs="tp_gym/Coding-Loyalty-v0", seeds=range(2))

    async def notebook_cell():
        return evaluate(grid, tmp_path)

    assert asyncio.run(notebook_cell()).completed == 2


def test_workers_share_one_log_without_duplicates(tmp_path):
    grid = Grid.build("scripted:random,scripted:compliant", envs="tp_gym/*", seeds=range(6))
    result = evaluate(grid, tmp_path, workers=2, concurrency=4)
    assert result.completed == len(grid) and not result.interrupted
    assert len(lines_by_key(tmp_path)) == len(grid)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agents": "scripted:compliant", "envs": "tp_gym/Nope-*"}, "no environment matches"),
        ({"agents": "", "envs": "tp_gym/*"}, "no agents"),
        ({"agents": "scripted:compliant", "seeds": [-1]}, "non-negative"),
        ({"agents": "scripted:compliant", "variables": {"stakes": "extreme"}}, "stakes"),
        ({"agents": "scripted:compliant", "variables": {"colour": "red"}}, "unknown variable"),
        ({"agents": "scripted:compliant", "variables": {"observed": False}}, "observed"),
        (
            {"agents": "scripted:compliant", "variables": {"principal_orders": True}},
            "principal_orders",
        ),
        ({"agents": "scripted:compliant", "protocol": "paper"}, "protocol"),
    ],
)
def test_grid_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Grid.build(**kwargs)


def test_the_extended_variables_need_the_extended_protocol():
    grid = Grid.build(
        "scripted:compliant",
        variables=[{"observed": False}, {"principal_orders": True}],
        seeds=[0],
        protocol="extended",
    )
    assert {(job.protocol, job.variables["observed"]) for job in grid.jobs()} == {
        ("extended", False),
        ("extended", True),
    }


def test_unknown_agents_and_suites_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown scripted policy"):
        evaluate(Grid.build("scripted:nope"), tmp_path)
    with pytest.raises(ValueError, match="unknown suite"):
        Grid.from_suite("nope", "scripted:compliant")
    paper = Grid.from_suite("paper", "scripted:compliant", seeds=[0], envs="tp_gym/Coding-*")
    assert {cell.env_id for cell in paper.cells} == {
        "tp_gym/Coding-Loyalty-v0",
        "tp_gym/Coding-SelfPreservation-v0",
    }, "the paper suite holds the study's organizations only"
    assert any(cell.group.startswith("stress:") for cell in paper.cells)
    assert {cell.protocol for cell in paper.cells} == {"study"}
    observed = Grid.from_suite("observed", "scripted:compliant", seeds=[0])
    assert {job.protocol for job in observed.jobs()} == {"extended"}
    overridden = Grid.from_suite("paper", "scripted:compliant", seeds=[0], protocol="extended")
    assert {cell.protocol for cell in overridden.cells} == {"extended"}
    assert len(overridden.cells) == len(Grid.from_suite("paper", "scripted:compliant").cells)
    with pytest.raises(ValueError, match="observed"):
        Grid.from_suite("observed", "scripted:compliant", protocol="study")
