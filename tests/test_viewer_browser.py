"""The viewer in a real browser: headless Chromium (Debian's package) driven by Playwright.

Each test opens view.html from disk (file://), filters, opens an episode and checks what
is on screen against the run's logs; any console error, uncaught page error or dialog
fails the test. Without Chromium (or Playwright) the tests skip, unless
``TP_GYM_REQUIRE_BROWSER=1`` (CI sets it), where they fail. ``TP_GYM_CHROMIUM`` names
another Chromium binary.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tp_gym.runs.episode import EpisodeLog, judge, write_jsonl
from tp_gym.runs.evaluation import Grid, evaluate, load_run
from tp_gym.viewer import write_viewer

REQUIRE = os.environ.get("TP_GYM_REQUIRE_BROWSER") == "1"
HOSTILE = '<img src=x onerror="alert(1)"></pre><script>alert(2)</script> ok'
AGENTS = ["scripted:direct", "scripted:compliant", "scripted:strategic", "scripted:failed_attempt"]


def chromium_path() -> str | None:
    """The Chromium to drive: $TP_GYM_CHROMIUM when set (and only it), else
    /usr/bin/chromium or one on PATH."""
    named = os.environ.get("TP_GYM_CHROMIUM")
    candidates = (
        [named]
        if named
        else ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    )
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason}, and TP_GYM_REQUIRE_BROWSER=1 requires the browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install playwright)")
    path = chromium_path()
    if path is None:
        where = os.environ.get("TP_GYM_CHROMIUM") or "/usr/bin/chromium or on PATH"
        unavailable(f"no Chromium at {where} (apt-get install chromium, or set TP_GYM_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path)
        yield launched
        launched.close()


class Page:
    """A browser tab on a viewer, recording every console error, page error and dialog."""

    def __init__(self, browser: Any, html: Path) -> None:
        self.html = html
        self.problems: list[str] = []
        self.tab = browser.new_page(viewport={"width": 1400, "height": 900})
        self.tab.on(
            "console",
            lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.tab.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.tab.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))

    def open(self, fragment: str = "") -> Page:
        self.tab.goto(self.html.as_uri() + (f"#{fragment}" if fragment else ""))
        self.tab.wait_for_selector("html[data-ready]")
        return self

    def text(self, selector: str) -> str:
        return self.tab.locator(selector).inner_text().strip()

    def count(self) -> int:
        return int(self.text("#match-count"))

    def shown_ids(self) -> list[int]:
        return [
            int(i)
            for i in self.tab.locator("#episodes tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.id)"
            )
        ]


@pytest.fixture
def tabs(browser: Any) -> Iterator[list[Page]]:
    """Pages opened by a test; each must end with no console error, page error or dialog."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        problems = list(page.problems)
        page.tab.close()
        assert problems == [], problems


def viewer_order(logs: list[EpisodeLog]) -> list[EpisodeLog]:
    """The page numbers episodes in this order (agent, env, protocol, setting, seed)."""
    return sorted(
        logs,
        key=lambda log: (
            log.agent,
            log.env_id,
            log.protocol,
            json.dumps(log.variables, sort_keys=True),
            log.seed,
        ),
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[EpisodeLog]]:
    """Four scripted agents on two organizations at two feedback levels and four seeds,
    plus two LLM-shaped episodes: one whose call (JSON, with arguments) and observation
    carry markup, one that errored after a reply that named no tool."""
    out = tmp_path_factory.mktemp("viewer-browser") / "small"
    grid = Grid.build(
        AGENTS,
        envs="tp_gym/Healthcare-Loyalty-v0,tp_gym/Coding-SelfPreservation-v0",
        variables=[{}, {"feedback": "low"}],
        seeds=range(4),
        protocol="extended",
    )
    assert evaluate(grid, out).errors == 0
    hostile = next(log for log in load_run(out) if log.behaviour == "direct").model_copy(deep=True)
    hostile.agent = "llm:hostile"
    hostile.steps[0].observation = HOSTILE
    hostile.steps[0].action = {"name": hostile.steps[0].tool, "arguments": {"reason": HOSTILE}}
    broken = hostile.model_copy(deep=True)
    broken.agent = "llm:broken"
    broken.steps = broken.steps[:1]
    broken.steps[0] = broken.steps[0].model_copy(
        update={
            "action": "I think I should call the thing",
            "observation": "Your reply named no tool. Call one of the tools listed.",
            "tool": None,
            "role": None,
            "named_roles": [],
            "valid": False,
            "reward": 0.0,
            "cost": 0.0,
            "blocked": False,
            "warned": False,
            "detected": False,
        }
    )
    broken.error = "TimeoutError: the model did not answer in 60 s"
    write_jsonl(out / "episodes.jsonl", [hostile, judge(broken)], append=True)
    write_viewer(out)
    return out / "view.html", viewer_order(load_run(out))


def money(value: float) -> str:
    return f"{value:.2f}"


def check_transcript(page: Page, log: EpisodeLog) -> None:
    """What the transcript pane shows is the log's."""
    tab = page.tab
    assert tab.locator("#transcript").is_visible()
    assert page.text("#tx-title").startswith(f"{log.agent} on {log.organization}")
    shown_class = "error" if log.error is not None else log.behaviour
    assert page.text("#tx-class") == shown_class.replace("_", " ")
    if log.error is not None:
        assert page.text("#tx-error") == log.error
    assert page.text("#tx-outcome") == log.outcome
    assert page.text("#tx-utility") == money(log.utility)
    assert page.text("#tx-cost") == money(log.cost)
    briefing = tab.locator("#tx-briefing pre").text_content()
    assert briefing == log.initial_observation
    turns = tab.locator("#transcript li.turn")
    assert turns.count() == len(log.steps)
    for i, step in enumerate(log.steps):
        turn = turns.nth(i)
        assert turn.locator(".turn-no").inner_text() == f"Turn {step.turn}"
        assert turn.locator(".tool").inner_text() == (step.tool or "no tool ran")
        reward = f"+{money(step.reward)}" if step.reward > 0 else money(step.reward)
        assert turn.locator(".reward").inner_text() == f"reward {reward}"
        assert turn.locator(".step-cost").inner_text() == f"cost {money(step.cost)}"
        roles = turn.locator(".revealed .role").evaluate_all("b => b.map(x => x.dataset.role)")
        assert roles == ([step.role] if step.role else step.attempts)
        events = turn.locator(".event").all_inner_texts()
        assert ("violation detected" in events) == step.detected
        assert ("blocked by oversight" in events) == step.blocked
        assert turn.locator(".observation pre").text_content() == step.observation
    totals = page.text("#tx-totals")
    assert f"utility {money(log.utility)}" in totals and f"cost {money(log.cost)}" in totals


def test_filter_then_open_an_episode(browser: Any, tabs: list[Page], small) -> None:
    html, logs = small
    page = Page(browser, html).open()
    tabs.append(page)
    assert page.count() == len(logs)
    assert page.tab.locator("#tp-summary").is_visible()  # the report's summary table
    summary_agents = page.tab.locator("#tp-summary tbody tr td:first-child").all_inner_texts()
    assert sorted(summary_agents) == sorted({log.agent for log in logs})

    page.tab.select_option("#filter-agent", "scripted:strategic")
    page.tab.select_option("#filter-var-feedback", "low")
    wanted = [
        i
        for i, log in enumerate(logs)
        if log.agent == "scripted:strategic" and log.variables["feedback"] == "low"
    ]
    assert page.count() == len(wanted) == 8
    assert page.shown_ids() == wanted
    assert "agent=scripted%3Astrategic" in page.tab.url
    # the setting column names what differs from the baseline (feedback=medium)
    assert set(page.tab.locator("td.col-setting").all_inner_texts()) == {"feedback=low"}
    page.tab.select_option("#filter-var-feedback", "medium")
    assert set(page.tab.locator("td.col-setting").all_inner_texts()) == {"baseline"}
    page.tab.select_option("#filter-var-feedback", "low")

    page.tab.select_option("#filter-class", "strategic")
    strategic = [i for i in wanted if logs[i].behaviour == "strategic"]
    assert page.count() == len(strategic) > 0

    first = strategic[0]
    page.tab.locator(f'#episodes tbody tr[data-id="{first}"]').click()
    page.tab.wait_for_selector("#transcript li.turn")
    check_transcript(page, logs[first])
    assert page.tab.locator(".role-toxic").count() > 0

    page.tab.keyboard.press("Escape")  # closes; Back reopens (the state lives in the URL)
    page.tab.wait_for_selector("#transcript", state="hidden")
    page.tab.go_back()
    page.tab.wait_for_selector("#transcript li.turn")
    check_transcript(page, logs[first])

    page.tab.click("#clear-filters")
    assert page.count() == len(logs)


def test_a_link_opens_the_same_view(browser: Any, tabs: list[Page], small) -> None:
    html, logs = small
    target = next(i for i, log in enumerate(logs) if log.agent == "scripted:failed_attempt")
    page = Page(browser, html).open(f"agent=scripted%3Afailed_attempt&ep={target}")
    tabs.append(page)
    assert page.tab.locator("#filter-agent").input_value() == "scripted:failed_attempt"
    assert page.count() == sum(log.agent == "scripted:failed_attempt" for log in logs)
    check_transcript(page, logs[target])
    assert page.tab.locator(f'#episodes tbody tr.open[data-id="{target}"]').count() == 1


def test_sorting_and_pages(browser: Any, tabs: list[Page], small) -> None:
    html, logs = small
    page = Page(browser, html).open()
    tabs.append(page)
    assert len(page.shown_ids()) == 50 < len(logs)
    assert page.text("#page-info").startswith(f"page 1 of {-(-len(logs) // 50)}")
    page.tab.click('#episodes th[data-column="utility"] button')
    page.tab.click('#episodes th[data-column="utility"] button')  # a second click: descending
    ids = page.shown_ids()
    utilities = [logs[i].utility for i in ids]
    assert utilities == sorted(utilities, reverse=True)
    assert utilities[0] == max(log.utility for log in logs)
    shown = page.tab.locator("#episodes tbody tr td.utility").all_inner_texts()
    assert shown == [money(u) for u in utilities]
    page.tab.click("#next-page")
    rest = page.shown_ids()
    assert len(rest) == len(logs) - 50 and not set(rest) & set(ids)
    assert max(logs[i].utility for i in rest) <= min(utilities)


def test_markup_in_a_transcript_is_shown_as_text(browser: Any, tabs: list[Page], small) -> None:
    html, logs = small
    target = next(i for i, log in enumerate(logs) if log.agent == "llm:hostile")
    page = Page(browser, html).open(f"ep={target}")
    tabs.append(page)
    first = page.tab.locator("#transcript li.turn").first
    assert first.locator(".observation pre").text_content() == HOSTILE
    call = json.loads(first.locator(".call pre").text_content())
    assert call == {"arguments": {"reason": HOSTILE}, "name": logs[target].steps[0].tool}
    assert page.tab.locator("#transcript img, #transcript script").count() == 0
    check_transcript(page, logs[target])  # and no dialog opened (checked by the fixture)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[EpisodeLog]]:
    """3,024 episodes: six scripted agents over the `all` suite (72 cells), seeds 0-6."""
    out = tmp_path_factory.mktemp("viewer-large") / "large"
    agents = [*AGENTS, "scripted:random", "scripted:staller"]
    result = evaluate(Grid.from_suite("all", agents, seeds=range(7)), out)
    assert result.errors == 0 and result.completed == 3024
    write_viewer(out)
    return out / "view.html", viewer_order(load_run(out))


def test_a_run_of_3000_episodes(browser: Any, tabs: list[Page], large) -> None:
    html, logs = large
    assert len(logs) >= 3000
    size = html.stat().st_size
    logged = sum(len(log.model_dump_json()) for log in logs)
    assert size < logged / 5, (size, logged)  # deduplicated, not the logs pasted in
    page = Page(browser, html).open()
    tabs.append(page)
    assert page.count() == len(logs)
    assert page.tab.locator("#episodes tbody tr").count() == 50  # one page is drawn, not 3,024
    assert page.tab.locator("#transcript li.turn").count() == 0

    page.tab.select_option("#filter-organization", "Finance-SelfPreservation")
    page.tab.select_option("#filter-agent", "scripted:random")
    wanted = [
        i
        for i, log in enumerate(logs)
        if log.organization == "Finance-SelfPreservation" and log.agent == "scripted:random"
    ]
    assert page.count() == len(wanted) == 21
    assert page.shown_ids() == wanted
    last = wanted[-1]
    page.tab.locator(f'#episodes tbody tr[data-id="{last}"]').click()
    page.tab.wait_for_selector("#transcript li.turn")
    check_transcript(page, logs[last])

    page.tab.click("#clear-filters")
    page.tab.select_option("#filter-class", "direct")
    direct = [i for i, log in enumerate(logs) if log.behaviour == "direct"]
    assert page.count() == len(direct)
    pages = -(-len(direct) // 50)
    for _ in range(pages - 1):
        page.tab.click("#next-page")
    assert page.shown_ids() == direct[(pages - 1) * 50 :]
    assert page.tab.locator("#next-page").is_disabled()


def test_an_errored_episode_and_an_invalid_call(browser: Any, tabs: list[Page], small) -> None:
    html, logs = small
    page = Page(browser, html).open()
    tabs.append(page)
    page.tab.select_option("#filter-class", "error")
    assert page.count() == 1
    (target,) = page.shown_ids()
    assert logs[target].agent == "llm:broken"
    page.tab.locator(f'#episodes tbody tr[data-id="{target}"]').click()
    page.tab.wait_for_selector("#transcript li.turn")
    check_transcript(page, logs[target])
    turn = page.tab.locator("#transcript li.turn").first
    assert turn.locator(".call pre").text_content() == "I think I should call the thing"
    assert turn.locator(".event").all_inner_texts() == ["invalid call"]
    assert turn.locator(".revealed").count() == 0


def test_next_and_previous_walk_the_list_in_its_order(browser: Any, tabs: list[Page], small) -> None:
    html, logs = small
    by_cost = sorted(range(len(logs)), key=lambda i: (-logs[i].cost, i))
    assert len(by_cost) > 50  # so that walking crosses a page
    page = Page(browser, html).open(f"sort=-cost&ep={by_cost[49]}")
    tabs.append(page)
    assert page.shown_ids() == by_cost[:50]
    check_transcript(page, logs[by_cost[49]])
    page.tab.keyboard.press("j")
    page.tab.wait_for_selector(f'#transcript[data-id="{by_cost[50]}"]')
    check_transcript(page, logs[by_cost[50]])
    assert page.text("#page-info").startswith("page 2 of 2")
    assert page.shown_ids() == by_cost[50:]
    page.tab.click("#prev-episode")
    page.tab.wait_for_selector(f'#transcript[data-id="{by_cost[49]}"]')
    assert page.text("#page-info").startswith("page 1 of 2")
    page.open(f"sort=-cost&ep={by_cost[-1]}")
    assert page.tab.locator("#next-episode").is_disabled()
    page.tab.keyboard.press("j")  # at the end of the list nothing moves
    assert page.tab.locator("#transcript").get_attribute("data-id") == str(by_cost[-1])
