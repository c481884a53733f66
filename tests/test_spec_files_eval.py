"""Spec files everywhere: `tp-gym eval --envs` and `Grid.build` take spec files, globs of them
and directories of them beside registered ids; their episodes are logged as
``tp_gym/<spec id>-v0``, in worker processes and Ray tasks too; `gym.make` builds them
through `tp_gym.register_spec` or ``TP_GYM_SPEC_FILES`` in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest

import tp_gym
from tp_gym.cli import main
from tp_gym.envs import CATALOG_DIR
from tp_gym.runs.evaluation import Grid, evaluate, load_run
from tp_gym.testing import FakeOpenAIServer

try:
    import ray  # noqa: F401
except ImportError:  # pragma: no cover - Ray is a dev dependency
    HAVE_RAY = False
else:
    HAVE_RAY = True
    from test_ray_backend import Cluster, cluster  # noqa: F401 - the module's Ray head

MINE = "tp_gym/Mycoding-Loyalty-v0"
THEIRS = "tp_gym/Myfinance-Loyalty-v0"


def write_spec(path: Path, bundled: str, domain: str) -> Path:
    """A copy of bundled organization `bundled` under its own domain and id."""
    old_domain, driver = bundled.split("-")
    text = (CATALOG_DIR / f"{bundled}.toml").read_text(encoding="utf-8")
    text = text.replace(f'id = "{bundled}"', f'id = "{domain}-{driver}"', 1)
    text = text.replace(f'domain = "{old_domain}"', f'domain = "{domain}"', 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        import tomllib

        path.write_text(json.dumps(tomllib.loads(text)), encoding="utf-8")
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def registrations(monkeypatch):
    """Whatever a test registers is gone afterwards (other tests glob ``tp_gym/*``)."""
    before = set(gym.registry)
    monkeypatch.setenv(tp_gym.SPEC_FILES_VARIABLE, "")
    monkeypatch.setattr(tp_gym, "_spec_files", {})
    monkeypatch.setattr(tp_gym, "_applied", "")
    yield
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]


@pytest.fixture
def specs(tmp_path) -> Path:
    """A directory with two spec files of their own: a TOML one and a JSON one."""
    directory = tmp_path / "specs"
    write_spec(directory / "mine.toml", "Coding-Loyalty", "Mycoding")
    write_spec(directory / "theirs.json", "Finance-Loyalty", "Myfinance")
    (directory / "notes.md").write_text("not a spec")
    return directory


def env_ids_of(run_dir: Path) -> set[str]:
    return {log.env_id for log in load_run(run_dir)}


def test_paths_globs_and_directories_resolve_to_the_spec_ids(specs):
    def envs(*patterns: str) -> list[str]:
        return [cell.env_id for cell in Grid.build("scripted:compliant", envs=list(patterns)).cells]

    assert envs(str(specs / "mine.toml")) == [MINE]
    assert envs(str(specs / "*.json")) == [THEIRS]
    assert envs(str(specs)) == [MINE, THEIRS]
    assert envs(str(specs / "*")) == [MINE, THEIRS]  # notes.md is not a spec
    assert envs(f"{specs}/", "tp_gym/Coding-Loyalty-v*") == [
        MINE,
        THEIRS,
        "tp_gym/Coding-Loyalty-v0",
    ]
    # The same file twice (by path and through its directory) is one environment.
    assert envs(str(specs / "mine.toml"), str(specs)) == [MINE, THEIRS]
    assert tp_gym.spec_file_of(MINE) == specs / "mine.toml"


def test_a_run_of_spec_files_logs_their_ids_resumes_and_reports(specs, tmp_path, capsys):
    grid = Grid.build("scripted:compliant,scripted:direct", envs=str(specs), seeds=range(2))
    result = evaluate(grid, tmp_path / "run")
    assert result.completed == len(grid) == 8
    assert env_ids_of(tmp_path / "run") == {MINE, THEIRS}
    again = Grid.build(
        "scripted:compliant,scripted:direct", envs=f"{specs}/*.toml,{specs}/*.json", seeds=range(2)
    )
    resumed = evaluate(again, tmp_path / "run", resume=True)
    assert (resumed.completed, resumed.skipped) == (0, len(grid))
    assert main(["report", str(tmp_path / "run")]) == 0
    summary = (tmp_path / "run" / "summary.csv").read_text()
    assert MINE in summary and THEIRS in summary
    assert "Mycoding" in (tmp_path / "run" / "report.md").read_text()
    capsys.readouterr()


def test_workers_play_spec_files_registered_in_the_parent(specs, tmp_path):
    # Model replies take a while, so the spawned helper plays episodes too; it knows the
    # files only through TP_GYM_SPEC_FILES.
    grid = Grid.build("llm:openai/gpt-4o-mini", envs=str(specs), seeds=range(4))
    with FakeOpenAIServer(latency=0.02) as server:
        result = evaluate(
            grid,
            tmp_path / "run",
            concurrency=4,
            workers=2,
            llm_options={"api_base": server.base_url, "api_key": "sk-test-key"},
        )
    logs = load_run(tmp_path / "run")
    assert result.completed == len(grid) == len(logs) and not result.interrupted
    assert not [log.error for log in logs if log.error]
    assert {log.env_id for log in logs} == {MINE, THEIRS}


def test_the_cli_runs_spec_files_with_workers_resumes_and_reports(specs, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["eval", "--agents", "scripted:random", "--seeds", "0-29", "--out", str(out)]
    envs = f"{specs / 'mine.toml'},{specs}/*.json,tp_gym/Coding-Loyalty-v0"
    assert main([*argv, "--envs", envs, "--workers", "2", "--quiet"]) == 0
    assert env_ids_of(out) == {MINE, THEIRS, "tp_gym/Coding-Loyalty-v0"}
    assert len(load_run(out)) == 90
    assert main([*argv, "--envs", f"{specs},tp_gym/Coding-Loyalty-v0", "--resume"]) == 0
    assert "0 episode(s) played, 90 already in the log" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()


@pytest.mark.parametrize(
    ("envs", "message"),
    [
        ("{dir}/missing.toml", "{dir}/missing.toml: no such spec file"),
        ("{dir}/empty", "{dir}/empty: a directory with no spec file (*.toml, *.json) in it"),
        ("{dir}/nowhere/*.toml", "no spec file (*.toml, *.json) matches '{dir}/nowhere/*.toml'"),
        ("{dir}/bad.toml", "{dir}/bad.toml: id: "),
        ("{dir}/bad/", "{dir}/bad/bad.toml: id: "),
        ("{dir}/one,{dir}/two", "both have the spec id 'Mycoding-Loyalty'"),
    ],
)
def test_bad_spec_files_are_one_line_and_exit_2(tmp_path, capsys, envs, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    for bad in (tmp_path / "bad.toml", tmp_path / "bad" / "bad.toml"):
        bad.write_text('id = 3\ndomain = "Coding"\n')
    write_spec(tmp_path / "one" / "a.toml", "Coding-Loyalty", "Mycoding")
    write_spec(tmp_path / "two" / "b.toml", "Coding-SelfPreservation", "Mycoding")
    (tmp_path / "two" / "b.toml").write_text(
        (tmp_path / "two" / "b.toml")
        .read_text()
        .replace('id = "Mycoding-SelfPreservation"', 'id = "Mycoding-Loyalty"')
        .replace('driver = "SelfPreservation"', 'driver = "Loyalty"')
    )
    argv = ["eval", "--agents", "scripted:compliant", "--seeds", "0", "--quiet"]
    code = main([*argv, "--out", str(tmp_path / "r"), "--envs", envs.format(dir=tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert message.format(dir=tmp_path) in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_gym_make_of_a_spec_file_in_a_fresh_interpreter(specs):
    path = str(specs / "mine.toml")
    code = textwrap.dedent(
        f"""
        import gymnasium as gym
        import tp_gym
        env_id = tp_gym.register_spec({path!r})
        env = gym.make(env_id, protocol="extended")
        env.reset(seed=0)
        print(env_id, env.spec.id)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != tp_gym.SPEC_FILES_VARIABLE}
    made = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.split()[:2] == [MINE, MINE]
    # Without register_spec: the files TP_GYM_SPEC_FILES names are registered on import.
    listed = {
        **env,
        tp_gym.SPEC_FILES_VARIABLE: os.pathsep.join([path, str(specs / "theirs.json")]),
    }
    code = f"import gymnasium as gym; print(gym.make({THEIRS!r}.join(['tp_gym:', ''])).spec.id)"
    made = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=listed
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == THEIRS


def test_an_env_registered_with_gymnasium_alone_is_explained(tmp_path):
    from tp_gym.runs.play import PlaySettings

    path = write_spec(tmp_path / "mine.toml", "Coding-Loyalty", "Mycoding")
    assert PlaySettings().make_env(tp_gym.register_spec(path), "study") is not None
    with pytest.raises(gym.error.NameNotFound, match="tp_gym.register_spec"):
        PlaySettings().make_env("tp_gym/Unknown-Loyalty-v0", "study")


@pytest.mark.skipif(not HAVE_RAY, reason="the Ray backend needs Ray")
def test_ray_tasks_play_spec_files_registered_in_the_driver(specs, tmp_path, cluster):  # noqa: F811
    # The cluster started before the files were registered: its workers learn them from
    # the driver (TP_GYM_SPEC_FILES goes with the tasks).
    grid = Grid.build("scripted:compliant", envs=str(specs), seeds=range(3))
    result = evaluate(grid, tmp_path / "run", backend="ray", address=cluster.address)
    assert result.completed == len(grid) and not result.interrupted
    assert env_ids_of(tmp_path / "run") == {MINE, THEIRS}
