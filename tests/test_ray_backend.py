"""The Ray backend on a real Ray cluster on the loopback: same episodes as a local run,
each exactly once through a killed Ray worker, a killed driver and a Ctrl-C.

One cluster (``ray start --head`` on 127.0.0.1, 2 CPUs, its own temp dir) serves the whole
module. All its processes, Ray workers included, are in the session of that ``ray start``;
the finalizer kills them and checks that none is left (``ray stop`` would also stop any
other Ray instance on the machine).
The LLM runs play ``llm:openai/test-model`` against a `FakeOpenAIServer` in this process
that answers after 0.2 s, so that a run lasts long enough to be killed in the middle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import comparable, count_lines, start, wait_for_lines

pytest.importorskip("ray", reason="the Ray backend tests need Ray (pip install -e '.[dev]')")

from tp_gym.cli import EXIT_STOPPED, EXIT_USAGE  # noqa: E402
from tp_gym.runs.evaluation import Grid, evaluate, load_run  # noqa: E402
from tp_gym.runs.grid import Job  # noqa: E402
from tp_gym.runs.ray_backend import RayBackend  # noqa: E402
from tp_gym.runs.rundir import EPISODES_FILE  # noqa: E402
from tp_gym.testing import FakeOpenAIServer  # noqa: E402

LLM_AGENT = "llm:openai/test-model"
LLM_ENVS = "tp_gym/Coding-*"
LLM_SEEDS = range(8)
REPLY_DELAY = 0.2
"""Seconds the fake model takes per reply: an episode lasts about a second."""


@dataclass
class Cluster:
    address: str
    session: int
    """The session of every process of the cluster (the id of ``ray start``)."""
    env: dict[str, str]
    """The environment drivers of this cluster run with."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_members(session: int) -> list[int]:
    """Live processes (zombies left out) of session `session`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state ppid pgrp sid
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_session(session: int) -> None:
    """SIGKILL every process of the session (a test cluster needs no grace) until none is
    left (a raylet could start a worker meanwhile)."""
    deadline = time.monotonic() + 30
    while (members := session_members(session)) and time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A Ray head on 127.0.0.1 with 2 CPUs (so two or more worker processes), for the module."""
    ray = Path(sys.executable).with_name("ray")
    executable = str(ray) if ray.exists() else shutil.which("ray")
    assert executable, "the ray command is missing"
    temp_dir = tempfile.mkdtemp(prefix="tpr", dir="/tmp")  # short: Unix socket paths are
    port = free_port()
    # Loopback only, so no token: every driver says so too (Ray would otherwise turn token
    # authentication on whenever ~/.ray/auth_token exists).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("OPENAI_API_KEY", None)  # the workers get the key from the driver only
    start = subprocess.Popen(
        [
            executable,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    session = start.pid
    try:
        output, _ = start.communicate(timeout=120)
        assert start.returncode == 0, output.decode(errors="replace")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RAY_AUTH_MODE", "disabled")
            patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
            yield Cluster(f"127.0.0.1:{port}", session, env)
    finally:
        kill_session(session)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not session_members(session), "processes of the test cluster survived"


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(latency=REPLY_DELAY) as server:
        yield server


def llm_keys() -> set:
    grid = Grid.build(LLM_AGENT, envs=LLM_ENVS, seeds=LLM_SEEDS)
    return {job.key for job in grid.jobs()}


def eval_command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tp_gym.cli",
        "eval",
        "--quiet",
        "--out",
        str(out),
        "--backend",
        "ray",
        *extra,
    ]


def llm_command(out: Path, cluster: Cluster, model: FakeOpenAIServer, *extra: str) -> list[str]:
    return eval_command(
        out,
        "--agents",
        LLM_AGENT,
        "--envs",
        LLM_ENVS,
        "--seeds",
        f"{LLM_SEEDS.start}-{LLM_SEEDS.stop - 1}",
        "--api-base",
        model.base_url,
        "--address",
        cluster.address,
        "--concurrency",
        "4",
        *extra,
    )


def driver_env(cluster: Cluster) -> dict[str, str]:
    # The key is only in the driver's environment: the backend must pass it to the workers.
    return {**cluster.env, "OPENAI_API_KEY": "sk-test-ray-key"}


def keys_once(run_dir: Path) -> set:
    """The keys of the run's episodes, none errored; `load_run` raises on a duplicate."""
    logs = load_run(run_dir)
    assert not [log.error for log in logs if log.error]
    keys = {log.key for log in logs}
    assert len(keys) == len(logs)
    return keys


# --------------------------------------------------------------------------------- tests


def test_a_ray_run_gives_exactly_the_episodes_of_a_local_run(tmp_path, cluster):
    grid = Grid.build("scripted:random,scripted:rational", envs="tp_gym/Coding-*", seeds=range(10))
    on_ray = evaluate(grid, tmp_path / "ray", backend="ray", address=cluster.address)
    local = evaluate(grid, tmp_path / "local")
    assert on_ray.completed == local.completed == len(grid) and not on_ray.interrupted
    ray_logs = {log.key: comparable(log) for log in load_run(tmp_path / "ray")}
    local_logs = {log.key: comparable(log) for log in load_run(tmp_path / "local")}
    assert len(ray_logs) == len(grid)
    assert ray_logs == local_logs


def test_a_task_that_fails_for_good_is_named_and_the_rest_is_written(tmp_path, cluster):
    good = Grid.build("scripted:compliant", envs="tp_gym/Coding-*", seeds=[0]).jobs()
    bad = Job("scripted:compliant", good[0].agent_name, "tp_gym/Nope-v0", good[0].variables, 0)
    backend = RayBackend(cluster.address)
    failed = r"scripted:compliant on tp_gym/Nope-v0 seed 0 .*could not be played: NameNotFound"
    with pytest.raises(RuntimeError, match=failed):
        evaluate([*good, bad], tmp_path, backend=backend, fail_fast=0)
    assert {log.key for log in load_run(tmp_path)} == {job.key for job in good}


def test_a_killed_ray_worker_is_replaced_and_no_episode_is_lost_or_doubled(
    tmp_path, cluster, model
):
    out = tmp_path / "run"
    log = out / EPISODES_FILE
    process = start(llm_command(out, cluster, model), driver_env(cluster))
    wait_for_lines(process, log, 2, seconds=90)
    victim = None
    deadline = time.monotonic() + 30
    while victim is None:
        playing = [
            pid
            for pid in session_members(cluster.session)
            if command_line(pid).startswith("ray::play_one")
        ]
        if playing:
            victim = playing[0]
        else:
            assert time.monotonic() < deadline, "no Ray worker seen playing an episode"
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    assert count_lines(log) < len(llm_keys()), "the kill should land mid-run"
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert keys_once(out) == llm_keys()


def test_a_killed_driver_and_a_ctrl_c_then_resume_play_every_episode_once(tmp_path, cluster, model):
    out = tmp_path / "run"
    log = out / EPISODES_FILE
    total = len(llm_keys())
    model.most_in_flight = 0
    # SIGKILL of the driver: its tasks go with it, what is written stays
    process = start(llm_command(out, cluster, model), driver_env(cluster))
    wait_for_lines(process, log, 3, seconds=90)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    killed = count_lines(log)
    assert 0 < killed < total - 1
    # Ctrl-C of the resumed run: a clean stop, exit 3, every line valid
    process = start(llm_command(out, cluster, model, "--resume"), driver_env(cluster))
    wait_for_lines(process, log, killed + 1, seconds=90)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_STOPPED, stderr
    assert b"interrupted" in stderr and b"--resume" in stderr
    assert b"Traceback" not in stderr and b"never retrieved" not in stderr
    assert log.read_bytes().endswith(b"\n")
    partial = keys_once(out)
    assert killed < len(partial) < total
    # the same command with --resume plays the rest, each episode once
    done = subprocess.run(
        llm_command(out, cluster, model, "--resume"),
        env=driver_env(cluster),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "already in the log" in done.stderr
    assert keys_once(out) == llm_keys()
    assert 1 <= model.most_in_flight <= 4, "never more episodes in flight than --concurrency"


def test_an_address_with_nothing_there_is_one_line_and_exit_2(tmp_path, cluster):
    began = time.monotonic()
    done = subprocess.run(
        eval_command(
            tmp_path / "run",
            "--agents",
            "scripted:compliant",
            "--envs",
            "tp_gym/Coding-*",
            "--seeds",
            "0",
            "--address",
            "127.0.0.1:1",
        ),
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert time.monotonic() - began < 20
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_malformed_address_is_refused_before_the_run():
    with pytest.raises(ValueError, match="HOST:PORT"):
        RayBackend("not-an-address")
    with pytest.raises(ValueError, match="HOST:PORT"):
        evaluate(Grid.build("scripted:compliant"), "unused", backend="ray", address="h:99999")


def test_importing_tp_gym_does_not_import_ray():
    code = (
        "import sys, tp_gym, tp_gym.cli, tp_gym.runs.evaluation, tp_gym.runs.ray_backend\n"
        "tp_gym.cli.build_parser().parse_args(['eval', '--agents', 'scripted:random', "
        "'--out', 'x', '--backend', 'ray'])\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_ray_the_backend_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from tp_gym.runs.evaluation import Grid, evaluate\n"
        "try:\n"
        "    evaluate(Grid.build('scripted:compliant', envs='tp_gym/Coding-*', seeds=[0]), "
        f"{str(tmp_path)!r}, backend='ray')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "the ray backend needs Ray: pip install 'tp_gym[ray]'"
