"""`tp-gym view`: the page's embedded data holds every episode exactly as logged, stays
lean, cannot be broken out of by a transcript, and bad input is one line with exit 2.

The browser half (filters, transcripts on screen) is tests/test_viewer_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tp_gym import tables
from tp_gym.cli import main
from tp_gym.runs.episode import write_jsonl
from tp_gym.runs.evaluation import Grid, evaluate, load_run
from tp_gym.viewer import EPISODE_FIELDS, STEP_FIELDS, STEP_FLAGS, script_json, write_viewer

DATA = re.compile(
    r'<script type="application/json" id="tp-gym-data">(.*?)</script>', re.DOTALL
)
HOSTILE = (
    'say </script><script>alert("x")</script> then <!-- and <img src=x onerror=alert(1)> '
    "and \u2028 the end"
)


def page_data(page: str) -> dict[str, Any]:
    """The JSON embedded in a viewer page."""
    found = DATA.findall(page)
    assert len(found) == 1, "exactly one data element"
    return json.loads(found[0])


def decode(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The episodes of the embedded data, strings and texts resolved (what the page's
    script does), written here independently of tp_gym.viewer."""
    strings = data["strings"]

    def text(i: int) -> str:
        return "\n".join(strings[k] for k in data["texts"][i])

    def name(i: int | None) -> str | None:
        return None if i is None else strings[i]

    episodes = []
    for row in data["episodes"]:
        e = dict(zip(data["episode_fields"], row, strict=True))
        for key in ("agent", "env_id", "organization", "domain", "driver", "protocol"):
            e[key] = strings[e[key]]
        e["class"] = strings[e.pop("behaviour")]
        e["outcome"] = strings[e["outcome"]]
        e["error"] = name(e["error"])
        e["briefing"] = text(e["briefing"])
        e["variables"] = {
            var: strings[i] for var, i in zip(data["variables"], e["variables"], strict=True)
        }
        for key in ("violations", "detected", "attempted"):
            e[key] = {strings[k]: n for k, n in e[key]}
        steps = []
        for packed in e["steps"]:
            s = dict(zip(data["step_fields"], packed, strict=True))
            s["call"] = text(s["call"])
            s["observation"] = text(s["observation"])
            s["tool"] = name(s["tool"])
            s["role"] = name(s["role"])
            s["named_roles"] = [strings[k] for k in s["named_roles"]]
            s["messages"] = None if s["messages"] is None else json.loads(text(s["messages"]))
            s["flags"] = {f for i, f in enumerate(data["step_flags"]) if s["flags"] >> i & 1}
            steps.append(s)
        e["steps"] = steps
        episodes.append(e)
    return episodes


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scripted agents on two organizations, two settings, two seeds (24 episodes),
    plus one episode whose observation and call carry markup and a JSON call with
    arguments and model messages, as an LLM's would."""
    out = tmp_path_factory.mktemp("viewer") / "run"
    grid = Grid.build(
        ["scripted:direct", "scripted:compliant", "scripted:strategic"],
        envs="tp_gym/Healthcare-Loyalty-v0,tp_gym/Finance-SelfPreservation-v0",
        variables=[{}, {"stakes": "low"}],
        seeds=range(2),
    )
    result = evaluate(grid, out)
    assert result.completed == 24 and result.errors == 0
    logs = load_run(out)
    hostile = logs[0].model_copy(deep=True)
    hostile.agent = "llm:hostile"
    hostile.steps[0].observation = HOSTILE
    hostile.steps[0].action = {"name": hostile.steps[0].tool, "arguments": {"note": HOSTILE}}
    hostile.steps[0].messages = [{"role": "assistant", "content": "I will </script> comply"}]
    write_jsonl(out / "episodes.jsonl", [hostile], append=True)
    return out


@pytest.fixture(scope="module")
def page(run: Path) -> str:
    path = write_viewer(run)
    assert path == run / "view.html"
    return path.read_text(encoding="utf-8")


def test_every_episode_is_embedded_as_logged(run: Path, page: str) -> None:
    # The page lists episodes by agent, environment, protocol, setting, seed.
    logs = sorted(
        load_run(run),
        key=lambda log: (
            log.agent,
            log.env_id,
            log.protocol,
            json.dumps(log.variables, sort_keys=True),
            log.seed,
        ),
    )
    data = page_data(page)
    assert data["episode_fields"] == list(EPISODE_FIELDS)
    assert data["step_fields"] == list(STEP_FIELDS)
    episodes = decode(data)
    assert len(episodes) == len(logs) == 25
    for e, log in zip(episodes, logs, strict=True):
        assert (e["agent"], e["env_id"], e["seed"]) == (log.agent, log.env_id, log.seed)
        assert e["variables"] == {k: as_text(v) for k, v in log.variables.items()}
        assert e["organization"] == log.organization
        assert e["class"] == log.behaviour
        assert e["outcome"] == log.outcome
        assert e["utility"] == log.utility and e["cost"] == log.cost
        assert e["turns"] == len(log.steps) and e["max_turns"] == log.max_turns
        assert e["time_to_failure"] == log.time_to_failure
        assert e["briefing"] == log.initial_observation
        assert e["violations"] == {k: n for k, n in log.violations.items() if n}
        assert e["detected"] == {k: n for k, n in log.detected.items() if n}
        for s, step in zip(e["steps"], log.steps, strict=True):
            assert s["turn"] == step.turn
            assert s["observation"] == step.observation
            assert s["tool"] == step.tool and s["role"] == step.role
            assert s["named_roles"] == step.attempts
            assert s["reward"] == step.reward and s["cost"] == step.cost
            assert s["pressure"] == step.pressure
            assert s["flags"] == {f for f in STEP_FLAGS if getattr(step, f)}
            assert s["messages"] == (step.messages or None)
            if isinstance(step.action, int):
                assert s["call"] == str(step.action)
            else:
                assert json.loads(s["call"]) == step.action


def test_a_transcript_cannot_end_the_data_element(page: str) -> None:
    # Only the page's own two script elements close; the hostile text stays inside the JSON.
    assert page.count("</script>") == 2
    assert "<!--" not in DATA.findall(page)[0]
    hostile = next(e for e in decode(page_data(page)) if e["agent"] == "llm:hostile")
    step = hostile["steps"][0]
    assert step["observation"] == HOSTILE
    assert json.loads(step["call"])["arguments"]["note"] == HOSTILE
    assert step["messages"] == [{"role": "assistant", "content": "I will </script> comply"}]
    assert json.loads(script_json({"t": HOSTILE})) == {"t": HOSTILE}


def test_the_page_is_self_contained(page: str) -> None:
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "fetch(" not in page and "XMLHttpRequest" not in page
    assert not re.search(r"https?://", page.split('id="tp-gym-data"')[0])
    assert "@import" not in page


def test_texts_and_lines_are_stored_once(run: Path, page: str) -> None:
    data = page_data(page)
    assert len(data["strings"]) == len(set(data["strings"]))
    texts = [tuple(t) for t in data["texts"]]
    assert len(texts) == len(set(texts))
    # Agents on the same organization, setting and seed get the same briefing: one text.
    logs = load_run(run)
    briefings = {log.initial_observation for log in logs}
    briefing_refs = {row[EPISODE_FIELDS.index("briefing")] for row in data["episodes"]}
    assert len(briefing_refs) == len(briefings) < len(logs)
    assert len(page.encode()) < sum(len(log.model_dump_json()) for log in logs)


def test_the_summary_and_tables_are_the_reports(run: Path, page: str) -> None:
    logs = load_run(run)
    table = tables.render_html(tables.summary_table(logs), style=False)
    assert table.strip() in page
    assert page.count('id="tp-summary"') == 1  # the overview once, open at the top
    rest = [t for t in tables.report_tables(logs) if t.key != "summary"]
    assert {"mr_by_domain", "behaviour", "stress_stakes"} <= {t.key for t in rest}
    assert tables.render_html(rest, style=False).strip() in page
    for table in rest:
        assert f'data-key="{table.key}"' in page


def test_the_page_is_the_same_for_the_same_run(run: Path, page: str, tmp_path: Path) -> None:
    logs = load_run(run)
    for log in logs:  # wall-clock timings differ between runs; the page leaves them out
        log.timing = {"start_unix": 1.0, "wall_seconds": 2.0}
    logs.reverse()  # and the order lines were appended in
    copy = tmp_path / run.name
    write_jsonl(copy / "episodes.jsonl", logs)
    assert write_viewer(copy).read_text(encoding="utf-8") == page


def test_view_command_writes_the_page(run: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "nested" / "mine.html"
    assert main(["view", str(run), "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"viewer: {target}"
    assert page_data(target.read_text(encoding="utf-8"))["title"] == run.name


def test_help_lists_view() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tp_gym.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert re.search(r"^\s+view\s+write view\.html", done.stdout, re.MULTILINE)


def bad_runs(tmp_path: Path, good: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "episodes.jsonl").write_text("\n")
    broken = tmp_path / "broken"
    broken.mkdir()
    line = (good / "episodes.jsonl").read_text(encoding="utf-8").splitlines()[0]
    (broken / "episodes.jsonl").write_text(f"{line}\n{{not json\n{line[:40]}\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "episodes.jsonl").write_text(line + "\n")
    (linked / "view.html").symlink_to(tmp_path / "elsewhere.html")
    return {
        "missing": ([str(tmp_path / "nope")], "no such run directory"),
        "no log": ([str(empty)], "no episodes.jsonl"),
        "no episodes": ([str(blank)], "has no episodes yet"),
        "bad line": ([str(broken)], "episodes.jsonl:2: not an episode log"),
        "out is a dir": ([str(good), "--out", str(tmp_path)], "is a directory"),
        "symlink": ([str(linked)], "symbolic link"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "no log", "no episodes", "bad line", "out is a dir", "symlink"]
)
def test_bad_input_is_one_line_and_exit_2(case: str, run: Path, tmp_path: Path, capsys) -> None:
    argv, fragment = bad_runs(tmp_path, run)[case]
    assert main(["view", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tp-gym view: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / "elsewhere.html").exists()


def test_a_torn_last_line_says_how_to_repair(run: Path, tmp_path: Path, capsys) -> None:
    torn = tmp_path / "torn"
    torn.mkdir()
    line = (run / "episodes.jsonl").read_text(encoding="utf-8").splitlines()[0]
    (torn / "episodes.jsonl").write_text(line + "\n" + line[:100])
    assert main(["view", str(torn)]) == 2
    err = capsys.readouterr().err
    assert "incomplete last line" in err and "--resume" in err
    assert not (torn / "view.html").exists()


def test_a_log_file_can_be_viewed_directly(run: Path, tmp_path: Path) -> None:
    logs = load_run(run)[:3]
    path = tmp_path / "three.jsonl"
    write_jsonl(path, logs)
    page = write_viewer(path)
    assert page == tmp_path / "view.html"
    data = page_data(page.read_text(encoding="utf-8"))
    assert data["title"] == "three" and len(data["episodes"]) == 3


@pytest.mark.parametrize("required", [False, True])
def test_the_browser_test_skips_without_chromium_unless_required(required: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TP_GYM_REQUIRE_BROWSER"}
    env["TP_GYM_CHROMIUM"] = "/nonexistent/chromium"
    if required:
        env["TP_GYM_REQUIRE_BROWSER"] = "1"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_viewer_browser.py::test_a_link_opens_the_same_view",
            "-q",
            "-rsE",
            "-p",
            "no:cacheprovider",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "no Chromium at /nonexistent/chromium" in done.stdout, done.stdout
    if required:
        assert done.returncode == 1 and "ERROR tests/test_viewer_browser.py" in done.stdout
        assert "TP_GYM_REQUIRE_BROWSER=1 requires the browser test" in done.stdout
    else:
        assert done.returncode == 0 and "SKIPPED [1]" in done.stdout
