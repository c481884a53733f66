"""Regenerate the README's screenshots: docs/viewer.png and docs/notebook.png.

Run: python docs/screenshots.py [--chromium /usr/bin/chromium] [--out-dir docs]

Both are taken in headless Chromium (Debian's package, driven by Playwright) from pages
built here, from seeded runs of the scripted baselines, so they show what a user gets:

- viewer.png: `tp-gym view` on a small run (four scripted agents on the study's eight
  organizations, baseline and one stress variable, two seeds): the run summary, the list
  filtered to the strategic agent, and one of its episodes open;
- notebook.png: that same episode's `EpisodeLog._repr_html_()` (what Jupyter shows when
  a cell ends with the log), placed in a notebook-like cell.

Nothing is fetched; both pages open from local files.
"""

from __future__ import annotations

import argparse
import html
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
AGENTS = ["scripted:strategic", "scripted:direct", "scripted:compliant", "scripted:failed_attempt"]
SHOWN_AGENT = "scripted:strategic"
SHOWN_ORGANIZATION = "Healthcare-Loyalty"
NOTEBOOK_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>notebook</title>
<style>
body {{ margin: 0; padding: 18px; background: #fff; color: #1d2127;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 14px; }}
.cell {{ display: grid; grid-template-columns: 64px 1fr; gap: 0 8px; max-width: 1100px; }}
.prompt {{ color: #307fc1; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px;
  text-align: right; padding-top: 6px; }}
.prompt.out {{ color: #bf5b3d; }}
.input {{ background: #f5f5f5; border: 1px solid #e0e0e0; border-radius: 2px; padding: 6px 10px;
  font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; white-space: pre; }}
.output {{ padding: 6px 0; overflow-x: auto; }}
</style></head>
<body><div class="cell" id="cell">
<div class="prompt">In [3]:</div><div class="input">{code}</div>
<div class="prompt out">Out[3]:</div><div class="output">{output}</div>
</div></body></html>
"""
NOTEBOOK_CODE = """import tp_gym

logs = tp_gym.load_run("run")
log = next(e for e in logs if e.agent == "{agent}" and e.organization == "{organization}"
           and e.seed == {seed} and e.variables["stakes"] == "high")
log"""


def build_run(out: Path) -> None:
    from tp_gym.runs.evaluation import Grid, evaluate

    grid = Grid.build(
        AGENTS,
        envs="tp_gym/*-Loyalty-v0,tp_gym/*-SelfPreservation-v0",
        variables=[{}, {"stakes": "low"}],
        seeds=range(2),
    )
    result = evaluate(grid, out)
    if result.errors:
        raise SystemExit(f"screenshots: {result.errors} episodes failed in {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary")
    parser.add_argument("--out-dir", type=Path, default=DOCS, help="where the PNGs go (docs/)")
    args = parser.parse_args()
    if not Path(args.chromium).is_file():
        print(f"screenshots: no Chromium at {args.chromium} (apt-get install chromium)")
        return 2
    from playwright.sync_api import sync_playwright

    from tp_gym.runs.rundir import load_run
    from tp_gym.viewer import sort_key, write_viewer

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        build_run(run)
        page = write_viewer(run)
        logs = sorted(load_run(run), key=sort_key)
        shown = next(
            i
            for i, log in enumerate(logs)
            if log.agent == SHOWN_AGENT
            and log.organization == SHOWN_ORGANIZATION
            and log.variables["stakes"] == "high"
            and log.behaviour == "strategic"
        )
        log = logs[shown]
        if not hasattr(log, "_repr_html_"):
            print("screenshots: EpisodeLog has no _repr_html_ (tp_gym.display) in this version")
            return 2
        notebook = Path(scratch) / "notebook.html"
        code = NOTEBOOK_CODE.format(agent=log.agent, organization=log.organization, seed=log.seed)
        notebook.write_text(
            NOTEBOOK_PAGE.format(code=html.escape(code), output=log._repr_html_()),
            encoding="utf-8",
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium)
            tab = browser.new_page(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
            problems: list[str] = []
            tab.on("pageerror", lambda error: problems.append(str(error)))
            fragment = f"agent={SHOWN_AGENT.replace(':', '%3A')}&ep={shown}"
            tab.goto(f"{page.as_uri()}#{fragment}")
            tab.wait_for_selector("#transcript li.turn")
            tab.screenshot(path=str(args.out_dir / "viewer.png"))

            tab.set_viewport_size({"width": 1200, "height": 900})
            tab.goto(notebook.as_uri())
            tab.locator("#cell").screenshot(path=str(args.out_dir / "notebook.png"))
            browser.close()
        if problems:
            print(f"screenshots: the page raised {problems[0]}")
            return 1
    for name in ("viewer.png", "notebook.png"):
        print(f"wrote {args.out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
