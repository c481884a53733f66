"""The transcript viewer: one static, self-contained HTML page over a run's episodes.

`write_viewer(run_dir)` reads every episode of a run directory (strictly, as the report
does: `tp_gym.runs.rundir.load_run`) and writes ``RUN_DIR/view.html``. The page opens from
disk (``file://``): its CSS, JavaScript and data are inline, it loads nothing and calls no
server. It shows the run summary (and, folded, every other table of report.md, from
`tp_gym.tables`), filters (agent, organization, domain, driver, class, outcome, protocol
and every variable that takes more than one value in the run), a paginated episode list
and, for the episode opened, its transcript: the briefing, each turn's call with its
arguments, the observation, oversight events, the tool's role revealed after the fact,
reward and cost per turn, then the totals and the class.

The data is embedded as JSON in a ``<script type="application/json">`` element, built by
`view_data`. It stays lean for runs of thousands of episodes: every text (briefings,
observations, the calls' JSON) is split into lines, each distinct line is stored once in
``strings`` and each distinct text once in ``texts`` as a list of line numbers; episodes
and turns refer to them by index. The page renders only the rows of the current list page,
and builds a transcript only when it is opened.

Nothing in the page depends on when it was written (wall-clock timings are left out), so
the same run gives a byte-identical file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tp_gym.classify import BEHAVIOUR_CLASSES, NO_VALID_CALL
from tp_gym.spec import COMPLIANT_ROLES, TOXIC_ROLES

if TYPE_CHECKING:
    from tp_gym.runs.episode import EpisodeLog, StepRecord

VIEW_FILE = "view.html"
"""The viewer's file name inside the run directory."""
DATA_VERSION = 1
"""The layout of the embedded data (``data.version``); the page's script checks it."""

EPISODE_FIELDS: tuple[str, ...] = (
    "agent",
    "env_id",
    "organization",
    "domain",
    "driver",
    "protocol",
    "seed",
    "variables",
    "behaviour",
    "outcome",
    "utility",
    "cost",
    "turns",
    "max_turns",
    "time_to_failure",
    "invalid_actions",
    "terminated",
    "truncated",
    "stall",
    "error",
    "briefing",
    "violations",
    "detected",
    "attempted",
    "usage",
    "steps",
)
"""The fields of one episode in ``data.episodes`` (each episode is a list in this order).

Strings are indices into ``data.strings``; ``variables`` is a list of indices aligned with
``data.variables``; ``briefing`` is an index into ``data.texts``; ``violations``,
``detected`` and ``attempted`` hold only the non-zero categories as ``[category string,
count]`` pairs; ``usage`` is ``[[role string, calls, prompt tokens, completion tokens,
dollars], ...]``; ``steps`` lists turns laid out as `STEP_FIELDS`.
"""

STEP_FIELDS: tuple[str, ...] = (
    "turn",
    "call",
    "tool",
    "role",
    "named_roles",
    "observation",
    "reward",
    "cost",
    "pressure",
    "flags",
    "compliant_value",
    "messages",
)
"""The fields of one turn: ``call`` is the action as logged (a text index: an index into the
tool list, a JSON call or the raw reply); ``tool`` and ``role`` are string indices or None;
``named_roles`` a list of string indices; ``observation`` and ``messages`` text indices
(``messages`` None when the agent produced none); ``flags`` a bit set of `STEP_FLAGS`."""

STEP_FLAGS: tuple[str, ...] = ("valid", "blocked", "warned", "detected", "format_error")
"""Bit ``1 << i`` of a turn's ``flags`` is set when the `StepRecord` field ``STEP_FLAGS[i]``
is true."""

CLASS_COLORS: dict[str, str] = {
    "strategic": "#8b1a1a",
    "direct": "#d9472b",
    "failed_attempt": "#c98a00",
    "robust": "#23905c",
    NO_VALID_CALL: "#6b6b6b",
    "error": "#444444",
}
"""Badge colours of the behaviour classes (the report's plot colours, darkened for text)."""


class _Interner:
    """Distinct strings and distinct texts (as line lists), each stored once, by index."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self.texts: list[list[int]] = []
        self._string_index: dict[str, int] = {}
        self._text_index: dict[str, int] = {}

    def string(self, value: str) -> int:
        """The index of `value` in ``strings`` (added when new)."""
        index = self._string_index.get(value)
        if index is None:
            index = self._string_index[value] = len(self.strings)
            self.strings.append(value)
        return index

    def maybe(self, value: str | None) -> int | None:
        """`string` for a string, None for None."""
        return None if value is None else self.string(value)

    def text(self, value: str) -> int:
        """The index of `value` in ``texts``, stored as its lines (added when new)."""
        index = self._text_index.get(value)
        if index is None:
            index = self._text_index[value] = len(self.texts)
            self.texts.append([self.string(line) for line in value.split("\n")])
        return index


def _call_text(action: Any) -> str:
    """The logged action as the page shows it: a raw reply verbatim, anything else as JSON
    (an index into the tool list is a bare number)."""
    if isinstance(action, str):
        return action
    return json.dumps(action, ensure_ascii=False, sort_keys=True, indent=1)


def _flags(step: StepRecord) -> int:
    return sum(1 << i for i, name in enumerate(STEP_FLAGS) if getattr(step, name))


def _counts(interner: _Interner, counts: dict[str, int]) -> list[list[int]]:
    return [[interner.string(name), n] for name, n in sorted(counts.items()) if n]


def _episode_class(log: EpisodeLog) -> str:
    """The class the viewer files an episode under: ``error`` for an errored episode."""
    return "error" if log.error is not None else log.behaviour


def sort_key(log: EpisodeLog) -> tuple[Any, ...]:
    """The viewer's episode order: agent, environment, protocol, setting, seed."""
    agent, env_id, variables, seed, protocol = log.key
    return (agent, env_id, protocol, variables, -1 if seed is None else seed)


def view_data(logs: Sequence[EpisodeLog], *, title: str) -> dict[str, Any]:
    """The data the page embeds for `logs` (see the module docstring, `EPISODE_FIELDS` and
    `STEP_FIELDS`), episodes in `sort_key` order."""
    from tp_gym.variables import parse_variables

    baseline = parse_variables({}).model_dump()
    interner = _Interner()
    variable_names: list[str] = []
    for log in logs:
        for name in log.variables:
            if name not in variable_names:
                variable_names.append(name)
    episodes: list[list[Any]] = []
    for log in sorted(logs, key=sort_key):
        steps = [
            [
                step.turn,
                interner.text(_call_text(step.action)),
                interner.maybe(step.tool),
                interner.maybe(step.role),
                [interner.string(role) for role in step.attempts],
                interner.text(step.observation),
                step.reward,
                step.cost,
                step.pressure,
                _flags(step),
                step.compliant_value,
                interner.text(json.dumps(step.messages, ensure_ascii=False, indent=1))
                if step.messages
                else None,
            ]
            for step in log.steps
        ]
        usage = [
            [interner.string(role), u.calls, u.prompt_tokens, u.completion_tokens, u.cost_usd]
            for role, u in sorted(log.usage.items())
        ]
        episodes.append(
            [
                interner.string(log.agent),
                interner.string(log.env_id),
                interner.string(log.organization),
                interner.string(log.domain),
                interner.string(log.driver),
                interner.string(log.protocol),
                log.seed,
                [
                    interner.string(_variable_text(log.variables.get(name)))
                    for name in variable_names
                ],
                interner.string(_episode_class(log)),
                interner.string(log.outcome),
                log.utility,
                log.cost,
                len(log.steps),
                log.max_turns,
                log.time_to_failure,
                log.invalid_actions,
                log.terminated,
                log.truncated,
                log.stall,
                interner.maybe(log.error),
                interner.text(log.initial_observation),
                _counts(interner, log.violations),
                _counts(interner, log.detected),
                _counts(interner, log.attempted),
                usage,
                steps,
            ]
        )
    return {
        "version": DATA_VERSION,
        "title": title,
        "episode_fields": list(EPISODE_FIELDS),
        "step_fields": list(STEP_FIELDS),
        "step_flags": list(STEP_FLAGS),
        "variables": variable_names,
        "baseline": {name: _variable_text(value) for name, value in baseline.items()},
        "classes": [*BEHAVIOUR_CLASSES, NO_VALID_CALL, "error"],
        "class_colors": CLASS_COLORS,
        "toxic_roles": sorted(TOXIC_ROLES),
        "compliant_roles": sorted(COMPLIANT_ROLES),
        "strings": interner.strings,
        "texts": interner.texts,
        "episodes": episodes,
    }


def _variable_text(value: Any) -> str:
    """A variable's value as the filters show it (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def script_json(data: Any) -> str:
    """`data` as JSON that is safe inside a ``<script>`` element: every ``<`` is written as
    ``\\u003c``, so no ``</script>`` or ``<!--`` in a transcript can end or bend the element
    (JSON.parse reads the escape back as ``<``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _template_text(name: str) -> str:
    return resources.files("tp_gym").joinpath("templates", name).read_text(encoding="utf-8")


def render_page(data: dict[str, Any], summary: str = "", report: str = "") -> str:
    """The complete page for `data` (from `view_data`): the template with the stylesheet,
    the script and the data inlined, `summary` as the run summary and `report` as the
    report's other tables (both trusted, escaped HTML, as `summary_html` and `report_html`
    give)."""
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    template = environment.from_string(_template_text("viewer.html.j2"))
    return template.render(
        title=data["title"],
        episodes=len(data["episodes"]),
        css=Markup(_template_text("viewer.css")),
        script=Markup(_template_text("viewer.js")),
        data=Markup(script_json(data)),
        summary=Markup(summary),
        report=Markup(report),
    )


def summary_html(logs: Sequence[EpisodeLog]) -> str:
    """The run summary table as HTML: the overview report.md shows first (one row per
    agent, and per protocol when the run holds both)."""
    from tp_gym import tables

    return tables.render_html(tables.summary_table(logs), style=False)


def report_html(logs: Sequence[EpisodeLog]) -> str:
    """The rest of report.md's tables as HTML, in the report's order (`tp_gym.tables.
    report_tables` without the overviews `summary_html` already shows)."""
    from tp_gym import tables

    shown = [
        table
        for table in tables.report_tables(logs)
        if table.key != "summary" and not table.key.startswith("summary-")
    ]
    return tables.render_html(shown, style=False) if shown else ""


def write_viewer(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the viewer of the run in `run_dir` to `out` (default ``RUN_DIR/view.html``)
    and return its path.

    Reads the run as `tp_gym.report.write_report` does: `FileNotFoundError` for a missing
    directory, `ValueError` naming the file and line of a line that is not an episode (or
    for a run without episodes), `RunDirError` for a symbolic link inside the run
    directory, `OSError` naming the file that could not be written. The file is written
    atomically.
    """
    from tp_gym.runs.rundir import load_run_to_report

    run_dir = Path(run_dir)
    logs = load_run_to_report(run_dir)
    home = run_dir if run_dir.is_dir() else run_dir.parent
    target = Path(out) if out is not None else home / VIEW_FILE
    if target.is_dir():
        raise ValueError(f"{target}: is a directory; give --out a file name such as view.html")
    title = run_dir.name if run_dir.is_dir() else run_dir.stem
    return write_page(logs, title, target)


def write_page(logs: Sequence[EpisodeLog], title: str, target: Path) -> Path:
    """Write the viewer of `logs` (already read) to `target`, atomically; return `target`."""
    from tp_gym.runs.rundir import atomic_write

    page = render_page(view_data(logs, title=title), summary_html(logs), report_html(logs))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, page.encode("utf-8"))
    return target
