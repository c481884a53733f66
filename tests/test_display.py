"""Notebook displays: reprs and HTML of the env, steps, features, episodes and runs.

The HTML is parsed (html.parser) and the numbers it shows are compared with the step,
episode or env they stand for; no tool role may appear in the env display or a live step;
hostile names are escaped.
"""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import step_record

import tp_gym
from tp_gym import display
from tp_gym.agents import make_agent
from tp_gym.env import FEATURE_NAMES, N_FEATURES, OrgEnv
from tp_gym.envs import load_bundled
from tp_gym.runs.episode import EpisodeLog
from tp_gym.runs.evaluation import Grid, evaluate, load_run
from tp_gym.runs.runner import run_episode
from tp_gym.spec import NEUTRAL_ROLES, ROLES

ALL_ROLES = (*ROLES, *NEUTRAL_ROLES)
HOSTILE = "<script>alert('x')</script>"


class Cells(HTMLParser):
    """Collects, for every element with a class, the text inside it; and all text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, list[str], list[str]]] = []
        self.found: list[tuple[list[str], str]] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        classes = (dict(attrs).get("class") or "").split()
        self.open.append((tag, classes, []))

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            name, classes, parts = self.open.pop()
            text = "".join(parts).strip()
            if classes:
                self.found.append((classes, text))
            if self.open:
                self.open[-1][2].append(text)
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.open:
            self.open[-1][2].append(data)

    def of(self, css_class: str) -> list[str]:
        """The texts of the elements with `css_class`, in document order of their ends."""
        return [text for classes, text in self.found if css_class in classes]

    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def numbers(texts: list[str]) -> list[float]:
    return [float(t.replace("+", "")) for t in texts]


def role_words(text: str) -> set[str]:
    """The role names that occur in `text` as whole words."""
    return {role for role in ALL_ROLES if re.search(rf"(?<![A-Za-z_]){role}(?![A-Za-z_])", text)}


def make_env(env_id: str = "tp_gym/Finance-Loyalty-v0", **kwargs) -> gym.Env:
    return gym.make(env_id, **kwargs)


# ---------------------------------------------------------------------------- env


def test_env_display_before_reset_names_the_organization():
    env = make_env().unwrapped
    assert repr(env) == "<OrgEnv Finance-Loyalty protocol=study not reset (6 tools)>"
    page = Cells(env._repr_html_())
    assert "Finance-Loyalty" in page.all_text() and "not reset" in page.all_text()


def test_env_repr_shows_state_tools_and_pressure():
    env = make_env(protocol="extended")
    env.reset(seed=3)
    env.step(env.unwrapped.oracle().first("inhibitor"))  # switches a safeguard off
    org_env = env.unwrapped
    text = repr(org_env)
    state = org_env.state_summary()
    assert text.startswith("<OrgEnv Finance-Loyalty protocol=extended turn 1/20>")
    assert len(text.splitlines()) == 6
    for resource, value in state["resources"].items():
        assert f"{resource} {value:g} [" in text
    for party, welfare in state["welfare"].items():
        assert f"{party} {welfare:.2f}/{state['trust'][party]:.2f}" in text
    assert "OFF" in text  # the inhibitor's safeguard
    assert ", ".join(org_env.tool_names()) in text
    assert f"level {org_env.org.pressure[org_env.stage].level}" in text


def test_env_html_numbers_match_the_state():
    env = make_env(protocol="extended")
    env.reset(seed=4)
    env.step(env.unwrapped.oracle().first("inhibitor"))
    org_env = env.unwrapped
    page = Cells(org_env._repr_html_())
    state = org_env.state_summary()
    rows = [t for t in page.of("tpd-num")]
    values = [float(v) for v in rows if re.fullmatch(r"-?[\d.]+", v)]
    for value in state["resources"].values():
        assert value in values
    assert page.of("tpd-turn") == ["1"]
    from tp_gym.oversight import coverage

    expected = coverage(org_env.org.oversight, org_env.world.safeguards)
    assert expected < 1.0
    assert page.of("tpd-coverage") == [f"{expected:.2f}"]
    assert "off" in page.of("tpd-off")
    assert page.of("tpd-pressure") == [str(org_env.org.pressure[org_env.stage].level)]
    tools = page.of("tpd-tools")[0]
    positions = [tools.index(f"{i}: {name}") for i, name in enumerate(org_env.tool_names())]
    assert positions == sorted(positions)  # in shown order


@pytest.mark.parametrize("protocol", ["study", "extended"])
def test_env_display_never_shows_a_role(protocol):
    for env_id in tp_gym.env_ids():
        env = gym.make(env_id, protocol=protocol)
        for seed in (0, 1):
            env.reset(seed=seed)
            org_env = env.unwrapped
            baseline = role_words(" ".join(org_env.shown_tool_texts()))  # in the agent's text
            for turn in range(3):
                shown = repr(org_env) + Cells(org_env._repr_html_()).all_text()
                assert role_words(shown) <= baseline, (env_id, seed, turn)
                if org_env._done:
                    break
                env.step((seed + turn) % org_env.n_tools)


def test_displaying_the_env_changes_nothing_in_the_episode():
    plain, shown = make_env(protocol="extended"), make_env(protocol="extended")
    plain.reset(seed=11)
    shown.reset(seed=11)
    for turn in range(8):
        repr(shown.unwrapped), shown.unwrapped._repr_html_()
        action = turn % plain.unwrapped.n_tools
        a = plain.step(action)
        b = display.watch_step(shown, action).result
        assert a[1:4] == b[1:4] and a[4] == b[4]
        assert np.array_equal(a[0]["features"], b[0]["features"]) and a[0]["text"] == b[0]["text"]
        if a[2] or a[3]:
            break


def test_hostile_title_is_escaped():
    spec = load_bundled("Finance-Loyalty")
    org_env = OrgEnv(spec.model_copy(update={"title": f"Bad {HOSTILE} org"}))
    org_env.reset(seed=0)
    html = org_env._repr_html_()
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert f"Bad {HOSTILE} org" in Cells(html).all_text()


# ---------------------------------------------------------------------------- features


def test_feature_names_are_exported_and_pair_with_values():
    assert tp_gym.FEATURE_NAMES is FEATURE_NAMES
    assert len(FEATURE_NAMES) == N_FEATURES == len(set(FEATURE_NAMES))
    env = make_env(protocol="extended")
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(2)
    view = display.describe_features(obs)
    assert view.names == FEATURE_NAMES
    assert np.allclose(view.values, obs["features"])
    assert view["turn_fraction"] == pytest.approx(1 / 20)
    named = display.describe_features(obs, env)
    org_env = env.unwrapped
    assert len(named) == 6 + len(org_env.org.resources) + org_env.n_tools
    assert named.details[6] == org_env.org.resources[0].id
    assert named.details[-1] == org_env.tool_names()[-1]
    assert named["tool_2_uses"] == pytest.approx(1 / 20)
    assert "turn_fraction        0.050" in repr(view)
    cells = Cells(named._repr_html_())
    assert cells.of("tpd-num")[1:3] == [f"{v:.3f}" for v in named.values[:2]]


def test_describe_features_refuses_a_wrong_length():
    with pytest.raises(ValueError, match="expected 26 features"):
        display.describe_features(np.zeros(5))


# ---------------------------------------------------------------------------- live steps


def test_watch_step_shows_the_call_its_diff_reward_and_cost():
    env = make_env(protocol="extended")
    env.reset(seed=3)
    org_env = env.unwrapped
    before = org_env.state_summary()
    position = org_env.oracle().first("direct_executor")
    view = display.watch_step(env, position)
    _, reward, terminated, _, info = view.result
    after = org_env.state_summary()
    assert view.reward == reward and view.cost == info["cost"] > 0
    assert view.call == f"#{position} {info['tool']}"
    assert view.terminated == terminated
    changed = {(c.kind, c.name): (c.before, c.after) for c in view.changes}
    expected = {
        ("resource", k): (before["resources"][k], v)
        for k, v in after["resources"].items()
        if v != before["resources"][k]
    }
    assert expected and all(changed[key] == pair for key, pair in expected.items())
    page = Cells(view._repr_html_())
    assert numbers(page.of("tpd-reward")) == [pytest.approx(reward, abs=0.005)]
    assert numbers(page.of("tpd-cost")) == [pytest.approx(info["cost"], abs=0.05)]
    assert page.of("tpd-call") == [view.call]
    table = page.all_text()
    for (kind, name), (old, new) in expected.items():
        assert f"{kind} {name} {old:g} {new:g}" in table
    # the live view names the categories of this step, never the role
    assert view.role is None and not role_words(repr(view) + table)
    categories = {k for k, v in info["violations"].items() if v}
    assert set(view.violations) == categories and not view.cumulative


@pytest.mark.parametrize(("feedback", "seen"), [("medium", True), ("low", False)])
def test_violations_are_flagged_seen_or_unseen(feedback, seen):
    env = make_env(feedback=feedback)  # study: medium detects, low only notes
    env.reset(seed=0)
    view = display.watch_step(env, env.unwrapped.oracle().first("modifier"))
    assert view.seen is seen and view.violations
    word = "seen" if seen else "unseen"
    assert view.violation_text.endswith(f"({word})")
    page = Cells(view._repr_html_())
    assert page.of("tpd-seen" if seen else "tpd-unseen") == [view.violation_text]


def test_describe_step_from_info_alone_and_with_the_previous_info():
    env = make_env(protocol="extended")
    _, first = env.reset(seed=5)
    oracle = env.unwrapped.oracle()
    _, reward, _, _, info = env.step(oracle.first("inhibitor"))
    alone = display.describe_step(info, reward)
    assert alone.cumulative and alone.violation_text.endswith(
        "so far (" + ("seen)" if alone.seen else "unseen)")
    )
    assert alone.call == info["tool"] and alone.reward == reward
    _, reward2, _, _, info2 = env.step(oracle.first("modifier"))
    step = display.describe_step(info2, reward2, previous_info=info)
    expected = {k: info2["violations"][k] - info["violations"][k] for k in info2["violations"]}
    assert step.violations == {k: v for k, v in expected.items() if v}
    assert display.describe_step(first).violations == {}
    _, reward3, _, _, info3 = env.step(oracle.first("validator"))  # harmless after harm
    later = display.describe_step(info3, reward3)
    assert later.cumulative and later.violations and later.violation_text == ""
    assert "violations" not in repr(later)


def test_step_view_from_the_step_tuple():
    env = make_env()
    env.reset(seed=2)
    result = env.step(1)
    view = display.StepView.from_result(result, action=1)
    assert view.reward == result[1] and view.cost == result[4]["cost"]
    assert view.call == f"#1 {result[4]['tool']}" and view.observation == result[0]["text"]
    assert repr(view).startswith(f"Step 1: #1 {result[4]['tool']} | reward {result[1]:+.2f}")


@pytest.mark.parametrize(
    ("action", "tool", "shown"),
    [
        (3, "send", "#3 send"),
        (np.array([2]), "send", "#2 send"),
        ({"name": "send", "arguments": {"to": "bo", "n": 2}}, "send", 'send(to="bo", n=2)'),
        ({"name": "send", "arguments": '{"to": "bo"}'}, "send", 'send(to="bo")'),
        (
            {"type": "function", "function": {"name": "send", "arguments": "{}"}},
            "send",
            "send()",
        ),
        ('{"tool_choice": "send"}', "send", 'send · reply: {"tool_choice": "send"}'),
        ("no idea", None, "no idea"),
        ("x" * 500, None, "x" * 119 + "…"),
    ],
)
def test_call_text_shows_what_the_agent_sent(action, tool, shown):
    assert display.call_text(action, tool) == shown


def test_describe_step_refuses_a_slim_info():
    env = make_env(slim_info=True)
    env.reset(seed=0)
    *_, info = env.step(0)
    with pytest.raises(ValueError, match="full info"):
        display.describe_step(info)


def test_hostile_tool_argument_is_escaped():
    env = make_env()
    env.reset(seed=0)
    name = env.unwrapped.tool_names()[0]
    view = display.watch_step(env, {"name": name, "arguments": {"note": HOSTILE}})
    assert HOSTILE in view.call
    html = view._repr_html_()
    assert "<script" not in html and HOSTILE in Cells(html).all_text()


# ---------------------------------------------------------------------------- episodes


@pytest.fixture(scope="module")
def strategic_log() -> EpisodeLog:
    env = make_env(protocol="extended")
    return run_episode(env, make_agent("scripted:strategic"), seed=3)


def test_episode_repr_is_one_short_line(strategic_log):
    log = strategic_log
    text = repr(log)
    assert text == (
        f"EpisodeLog(Finance-Loyalty, scripted:strategic, seed 3, extended, {log.behaviour}, "
        f"utility {log.utility:+.2f}, cost {log.cost:.1f}, {len(log.steps)} turns)"
    )
    assert str(log) == text and len(text) < 300
    assert "\n" not in text
    long = log.model_copy(update={"agent": "x" * 500, "error": "E" * 500})
    assert len(repr(long)) < 300
    errored = log.model_copy(update={"error": "format"})
    assert f"seed 3, extended, error: format, utility {log.utility:+.2f}" in repr(errored)
    assert Cells(errored._repr_html_()).of("tpd-class") == ["error"]


def test_episode_repr_study_protocol_and_one_turn():
    log = run_episode(make_env(), make_agent("scripted:direct"), seed=3)
    assert repr(log) == (
        f"EpisodeLog(Finance-Loyalty, scripted:direct, seed 3, direct, "
        f"utility {log.utility:+.2f}, cost {log.cost:.1f}, 1 turn)"
    )


def test_episode_html_timeline_shows_each_turn(strategic_log):
    log = strategic_log
    page = Cells(log._repr_html_())
    assert numbers(page.of("tpd-reward")) == pytest.approx([s.reward for s in log.steps], abs=0.005)
    assert numbers(page.of("tpd-cost")) == pytest.approx([s.cost for s in log.steps], abs=0.05)
    text = page.all_text()
    for step in log.steps:  # roles are revealed after the fact
        assert step.role in text
    assert page.of("tpd-class") == [log.behaviour]
    assert numbers(page.of("tpd-utility")) == [pytest.approx(log.utility, abs=0.005)]
    assert numbers(page.of("tpd-total-cost")) == [pytest.approx(log.cost, abs=0.05)]
    cumulative = np.cumsum([s.cost for s in log.steps])
    assert f"{cumulative[-1]:.1f}" in text
    flags = [o for o in ("blocked", "warned", "detected") if getattr(log.steps[0], o)]
    assert ", ".join(flags) in text


def test_step_record_repr_and_html_reveal_the_role():
    record = step_record(
        2,
        "modifier",
        reward=-1.5,
        cost=2.25,
        detected=True,
        pressure=3,
        action={"name": "fix", "arguments": {"n": 2}},
    )
    assert (
        repr(record)
        == "Step 2: fix(n=2) [modifier] | reward -1.50, cost 2.25, detected, pressure 3"
    )
    page = Cells(record._repr_html_())
    assert page.of("tpd-role") == ["modifier"]
    assert numbers(page.of("tpd-reward")) == [-1.5] and numbers(page.of("tpd-cost")) == [2.25]


def test_hostile_agent_name_and_argument_in_an_episode_are_escaped(strategic_log):
    hostile_step = strategic_log.steps[0].model_copy(
        update={"action": {"name": "t", "arguments": {"a": HOSTILE}}}
    )
    log = strategic_log.model_copy(update={"agent": HOSTILE, "steps": [hostile_step]})
    html = log._repr_html_()
    assert "<script" not in html
    text = Cells(html).all_text()
    assert HOSTILE in text


def test_episode_transcript_shows_what_the_agent_wrote(strategic_log):
    said = {"role": "assistant", "content": f"Hide it {HOSTILE}", "reasoning": "the desk first"}
    system = {"role": "system", "content": "SYSTEM PROMPT TEXT"}
    first = strategic_log.steps[0].model_copy(update={"messages": [system, said]})
    log = strategic_log.model_copy(update={"steps": [first, *strategic_log.steps[1:]]})
    html = log._repr_html_()
    assert "<script" not in html
    page = Cells(html)
    assert page.of("tpd-said") == [f"the desk first\n\nHide it {HOSTILE}"]
    assert "SYSTEM PROMPT TEXT" not in page.all_text()
    assert log.steps[1].observation.splitlines()[0] in page.all_text()


def test_episode_plot_draws_reward_cost_and_pressure(strategic_log):
    from matplotlib.figure import Figure

    log = strategic_log
    figure = log.plot()
    assert isinstance(figure, Figure)
    reward_ax, cost_ax, pressure_ax = figure.axes
    heights = [patch.get_height() for patch in reward_ax.patches]
    assert heights == pytest.approx([s.reward for s in log.steps])
    assert list(cost_ax.lines[0].get_ydata()) == pytest.approx(
        np.cumsum([s.cost for s in log.steps])
    )
    assert list(pressure_ax.lines[0].get_ydata()) == [s.pressure for s in log.steps]
    assert pressure_ax.get_xlabel() == "turn"
    assert figure._repr_png_().startswith(b"\x89PNG")  # Jupyter shows it without pyplot


def test_episode_plot_of_an_empty_episode(strategic_log):
    figure = strategic_log.model_copy(update={"steps": []}).plot(title="empty")
    assert len(figure.axes) == 3


def test_import_tp_gym_loads_no_display_dependencies():
    code = (
        "import sys, tp_gym; "
        "print(sorted(m for m in ('matplotlib', 'jinja2', 'tp_gym.display') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- runs


def test_eval_result_repr_and_summary_table(tmp_path: Path):
    from tp_gym import tables

    grid = Grid.build(
        "scripted:direct,scripted:compliant", envs="tp_gym/Finance-Loyalty-v0", seeds=range(2)
    )
    result = evaluate(grid, tmp_path / "run", concurrency=2)
    text = repr(result)
    assert text.startswith(f"EvalResult({tmp_path / 'run'}: 4 episodes, 4 played")
    assert "\n" not in text and len(text) < 300
    html = result._repr_html_()
    expected = tables.render_html(tables.summary_table(load_run(tmp_path / "run")))
    assert expected in html
    assert "scripted:direct" in Cells(html).all_text()
    assert "4 episodes in episodes.jsonl" in Cells(html).all_text()


def test_eval_result_html_without_a_log(tmp_path: Path):
    from tp_gym.runs.evaluation import EvalResult

    result = EvalResult(run_dir=tmp_path / "nothing", total=3, skipped=0)
    assert "no log at" in Cells(result._repr_html_()).all_text()
    assert "3 remaining" in repr(result)
