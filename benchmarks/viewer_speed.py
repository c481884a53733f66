"""How fast the transcript viewer builds and opens on a run of 3,000+ episodes.

Run: python benchmarks/viewer_speed.py [--seeds 7] [--repeat 5] [--run DIR] [--chromium PATH]

Builds a run of six scripted agents over the ``all`` suite (72 cells) and seeds 0..N-1
(3,024 episodes with the default 7 seeds; ``--run DIR`` reuses an existing run directory
instead), writes its view.html with `tp_gym.viewer.write_viewer`, then opens the page in
headless Chromium (Debian's, driven by Playwright) from ``file://``. Each repetition uses a
new browser tab (so nothing is cached in the page) and measures:

- open: from the navigation until the page has drawn its first list page (the script
  marks ``<html data-ready>``); this includes reading and parsing the embedded JSON;
- one episode: from the click on the run's longest episode in the list until its
  transcript's turns are on screen.

Times are wall-clock and include Playwright's round trips, so they overstate what a user
waits. The goal: open + one episode under 2 s. Prints the medians and the worst times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

AGENTS = (
    "scripted:direct",
    "scripted:compliant",
    "scripted:strategic",
    "scripted:failed_attempt",
    "scripted:random",
    "scripted:staller",
)


def build_run(out: Path, seeds: int) -> float:
    """Play the benchmark's run into `out`; return the seconds it took."""
    from tp_gym.runs.evaluation import Grid, evaluate

    start = time.perf_counter()
    result = evaluate(Grid.from_suite("all", list(AGENTS), seeds=range(seeds)), out)
    if result.errors:
        raise SystemExit(f"viewer_speed: {result.errors} episodes failed; see {out}")
    return time.perf_counter() - start


def measure(html: Path, chromium: str, repeat: int, episode: int) -> tuple[list, list]:
    """(open seconds, one-episode seconds), one pair per repetition."""
    from playwright.sync_api import sync_playwright

    opens: list[float] = []
    episodes: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        for _ in range(repeat):
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            tab.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
            start = time.perf_counter()
            tab.goto(html.as_uri())
            tab.wait_for_selector("html[data-ready]")
            opens.append(time.perf_counter() - start)
            # The longest episode's row: sort by turns, longest first, then click it.
            tab.goto(f"{html.as_uri()}#sort=-turns")
            tab.wait_for_selector(f'#episodes tbody tr[data-id="{episode}"]')
            start = time.perf_counter()
            tab.click(f'#episodes tbody tr[data-id="{episode}"]')
            tab.wait_for_selector("#transcript li.turn")
            episodes.append(time.perf_counter() - start)
            if errors:
                raise SystemExit(f"viewer_speed: the page raised {errors[0]}")
            tab.close()
        browser.close()
    return opens, episodes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=7, help="seeds 0..N-1 (default 7)")
    parser.add_argument("--repeat", type=int, default=5, help="page loads to time (default 5)")
    parser.add_argument("--run", type=Path, default=None, help="an existing run directory")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary")
    args = parser.parse_args()
    if not Path(args.chromium).is_file():
        print(f"viewer_speed: no Chromium at {args.chromium} (apt-get install chromium)")
        return 2

    from tp_gym.runs.rundir import load_run
    from tp_gym.viewer import sort_key, write_viewer

    with tempfile.TemporaryDirectory() as scratch:
        run = args.run
        if run is None:
            run = Path(scratch) / "run"
            seconds = build_run(run, args.seeds)
            print(f"run:     {run} played in {seconds:.1f} s")
        start = time.perf_counter()
        html = write_viewer(run, Path(scratch) / "view.html")
        build = time.perf_counter() - start
        logs = sorted(load_run(run), key=sort_key)
        logged = sum((len(log.model_dump_json()) + 1) for log in logs)
        longest = max(range(len(logs)), key=lambda i: (len(logs[i].steps), -i))
        size = html.stat().st_size
        print(
            f"viewer:  {len(logs):,} episodes, {sum(len(log.steps) for log in logs):,} turns; "
            f"built in {build:.2f} s; {size / 1e6:.2f} MB (the logs: {logged / 1e6:.1f} MB)"
        )
        opens, episodes = measure(html, args.chromium, args.repeat, longest)
    total = [o + e for o, e in zip(opens, episodes)]
    print(
        f"open:    median {statistics.median(opens):.3f} s, worst {max(opens):.3f} s "
        f"({args.repeat} loads)"
    )
    print(
        f"episode: median {statistics.median(episodes):.3f} s, worst {max(episodes):.3f} s "
        f"(the longest, {len(logs[longest].steps)} turns)"
    )
    verdict = "meets" if max(total) < 2.0 else "misses"
    print(f"open + one episode: worst {max(total):.3f} s ({verdict} the 2 s goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
