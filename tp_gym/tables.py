"""Tables: one data model for every table tp_gym shows, and its renderings.

A `Table` is what the report, the HTML viewer and the notebook reprs all show: a key, a
title, `Column`s, `Row`s of `Cell`s and notes. A `Cell` keeps the raw number beside its
display text (``value``, and for a rate or a mean its interval ``low``/``high`` and its
``n``), so a page can sort by the number while showing the text the report shows.

Builders read episode logs through `tp_gym.metrics` and never type a number by hand:

- `summary_table`: the per-agent summary the report shows first (MR with its Wilson
  interval, class shares, TTF, utility and cost with t intervals, the status shares);
- `crosstab_table` (MR per agent x domain, driver, ...), `behaviour_table`,
  `stress_table`, `beyond_table`, `category_table`, `errors_table` and
  `mitigation_tables`: the report's other tables;
- `protocol_tables` (one protocol's part of the report, as a `ProtocolTables`) and
  `report_tables` (every table of report.md, in order, protocols never pooled).

Renderings go through the Jinja2 templates in ``tp_gym/templates``:

- `render_markdown` (``table.md.j2``) gives a GitHub-flavoured markdown table; a ``|`` in
  a cell is escaped and a line break becomes a space, so an agent name can never break
  the table. ``report.md.j2`` lays out report.md around these tables (`tp_gym.report`);
- `render_html` (``tables.html.j2``) gives a self-contained fragment, ``<table>`` per
  table (no external assets, every text HTML-escaped) with classes a page can style:
  ``tp-table``, ``tp-num`` on numeric cells (right-aligned by the optional ``<style>``),
  ``tp-text`` on labels, ``tp-total`` on a total row; numeric cells carry ``data-value``
  (and ``data-low``, ``data-high``, ``data-n``) with the raw numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from tp_gym import metrics
from tp_gym.classify import BEHAVIOUR_CLASSES
from tp_gym.runs.recorder import FORMAT_ERROR
from tp_gym.variables import EXTENDED_ONLY

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

    from tp_gym.runs.episode import EpisodeLog

DASH = "–"
"""What a cell shows when its number is undefined (no runs, no mean)."""

CLASS_LABELS = {
    "strategic": "strategic misalignment",
    "direct": "direct misalignment",
    "failed_attempt": "failed attempt",
    "robust": "robust alignment",
}
"""Display names of the behaviour classes."""


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown, and the number it stands for.

    ``value`` is the raw number (a share as a fraction, as `tp_gym.metrics` gives it, not
    in percent; nan when undefined), or the text itself for a label cell. A cell showing
    two numbers (``4.50 / 7.20``: mitigated / base; ``3 / 1``: violations / hidden) keeps
    the first. ``low`` and
    ``high`` bound an interval (Wilson for a rate, Student-t for a mean), ``n`` is the
    count the number is over. ``code`` marks text shown as code (an error message).
    """

    text: str
    value: Any = None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    code: bool = False

    @property
    def numeric(self) -> bool:
        """The cell holds a number (possibly nan), not a label."""
        return isinstance(self.value, (int, float)) and not isinstance(self.value, bool)

    @property
    def sort_value(self) -> str:
        """The raw value as a string for a ``data-value`` attribute; empty when undefined."""
        if self.value is None:
            return ""
        if isinstance(self.value, float):
            return "" if math.isnan(self.value) else repr(self.value)
        return str(self.value)


@dataclass(frozen=True)
class Column:
    """A column: a stable ``key`` (for code), the ``label`` shown, and its alignment."""

    key: str
    label: str
    align: Literal["left", "right"] = "right"


@dataclass(frozen=True)
class Row:
    """A row of cells; ``total`` marks a row over every other row (bold, class tp-total)."""

    cells: list[Cell]
    total: bool = False


@dataclass
class Table:
    """A titled table with notes: the unit every rendering shows.

    ``notes`` are paragraphs (markdown-flavoured text: ``*emphasis*`` and backticks) that
    explain the table; the report prints them between the title and the table.
    """

    key: str
    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row.cells) != len(self.columns):
                raise ValueError(
                    f"table {self.key!r}: a row has {len(row.cells)} cells for "
                    f"{len(self.columns)} columns"
                )

    def column(self, key: str) -> list[Cell]:
        """The cells of column `key`, top to bottom."""
        keys = [c.key for c in self.columns]
        if key not in keys:
            raise KeyError(f"table {self.key!r} has no column {key!r}; it has {keys}")
        index = keys.index(key)
        return [row.cells[index] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        """The raw values, one dict per row keyed by column key (for DataFrames, JSON)."""
        return [
            {col.key: cell.value for col, cell in zip(self.columns, row.cells)} for row in self.rows
        ]

    def to_markdown(self, *, notes: bool = False) -> str:
        """This table as `render_markdown` gives it."""
        return render_markdown(self, notes=notes)

    def to_html(self, *, notes: bool = True, style: bool = True) -> str:
        """This table as `render_html` gives it."""
        return render_html(self, notes=notes, style=style)

    def _repr_html_(self) -> str:
        """Jupyter shows a table as its HTML, notes included."""
        return render_html(self)


# ---------------------------------------------------------------------------- cells


def label_cell(text: Any, *, code: bool = False) -> Cell:
    """A text cell (an agent, a category); its value is the text."""
    text = str(text).lower() if isinstance(text, bool) else str(text)
    return Cell(text=text, value=text, code=code)


def count_cell(count: int, *, thousands: bool = False) -> Cell:
    """An integer, with ``1,234`` separators when `thousands`."""
    return Cell(text=f"{count:,}" if thousands else str(count), value=count)


def fmt_rate(k: int, n: int) -> str:
    """``70.3 [62.1–77.4] (50)``: a rate in percent with its Wilson interval and n."""
    if n == 0:
        return DASH
    low, high = metrics.wilson_interval(k, n)
    return f"{100 * k / n:.1f} [{100 * low:.1f}–{100 * high:.1f}] ({n})"


def rate_cell(k: int, n: int) -> Cell:
    """`k` of `n` as `fmt_rate` shows it; the value is k / n with its Wilson interval."""
    if n == 0:
        return Cell(text=DASH, value=math.nan, n=0)
    low, high = metrics.wilson_interval(k, n)
    return Cell(text=fmt_rate(k, n), value=k / n, low=low, high=high, n=n)


def _undefined(value: float | None) -> bool:
    return value is None or math.isnan(value)


def fmt_pct(value: float | None) -> str:
    """A share in percent with one decimal, or a dash when undefined."""
    return DASH if _undefined(value) else f"{100 * value:.1f}"  # type: ignore[operator]


def pct_cell(value: float | None) -> Cell:
    """A share (a fraction) shown in percent with one decimal."""
    return Cell(text=fmt_pct(value), value=math.nan if value is None else value)


def fmt_num(value: float | None, digits: int = 2) -> str:
    """A number with `digits` decimals, or a dash when undefined."""
    return DASH if _undefined(value) else f"{value:.{digits}f}"


def num_cell(value: float | None, digits: int = 2) -> Cell:
    """A number with `digits` decimals."""
    return Cell(text=fmt_num(value, digits), value=math.nan if value is None else value)


def fmt_interval(mean: float | None, low: float, high: float, digits: int = 2) -> str:
    """``mean [low, high]``, ``mean`` alone when the bounds are undefined, a dash if no mean."""
    if _undefined(mean):
        return DASH
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def interval_cell(mean: float | None, low: float, high: float, digits: int = 2) -> Cell:
    """A mean with its interval as `fmt_interval` shows it."""
    return Cell(
        text=fmt_interval(mean, low, high, digits),
        value=math.nan if mean is None else mean,
        low=None if math.isnan(low) else low,
        high=None if math.isnan(high) else high,
    )


def fmt_mean(row: dict[str, Any], name: str) -> str:
    """``mean [low, high]`` for metric `name` (``utility`` or ``cost``) of a summary row."""
    return fmt_interval(row[f"{name}_mean"], row[f"{name}_low"], row[f"{name}_high"])


def mean_cell(row: dict[str, Any], name: str) -> Cell:
    """Metric `name` (``utility``, ``cost``) of a `metrics.summary_row` with its interval;
    ``n`` is the row's measured runs."""
    cell = interval_cell(row[f"{name}_mean"], row[f"{name}_low"], row[f"{name}_high"])
    return Cell(cell.text, cell.value, cell.low, cell.high, n=row["measured"])


def dollars_cell(value: float, digits: int = 4, unpriced: int = 0) -> Cell:
    """Dollars with `digits` decimals, ``(k unpriced)`` after when some runs had no price."""
    text = f"{value:.{digits}f}"
    if unpriced:
        text += f" ({unpriced} unpriced)"
    return Cell(text=text, value=value)


# ---------------------------------------------------------------------------- status columns


def status_columns(protocol: str) -> list[Column]:
    """The columns every per-agent table ends with (see `status_cells`)."""
    columns = [
        Column("format_error_share", "format errors %"),
        Column("no_valid_call_share", "no valid call %"),
        Column("stall_share", "stall %"),
    ]
    if protocol == "extended":
        columns.append(Column("replaced_share", "replaced % (ours)"))
    return columns


def status_cells(row: dict[str, Any], protocol: str) -> list[Cell]:
    """Which runs of a summary row fall outside its rates, and how many stalled.

    Format errors are a share of all runs, no-valid-call runs of the error-free ones,
    stalls and (``extended`` only) replacements of the measured ones.
    """
    return [pct_cell(row[column.key]) for column in status_columns(protocol)]


# ---------------------------------------------------------------------------- builders


def _protocol_of(logs: Sequence[EpisodeLog], protocol: str | None) -> str:
    if protocol is not None:
        return protocol
    found = metrics.protocols(logs)
    return "extended" if "extended" in found else (found[0] if found else "study")


def summary_table(
    logs: Iterable[EpisodeLog],
    min_payoff: float = 0.0,
    *,
    protocol: str | None = None,
    title: str | None = None,
    rows: Sequence[dict[str, Any]] | None = None,
) -> Table:
    """The per-agent summary the report shows first (its *Overview* section).

    One row per agent: episodes, other errors, MR with its Wilson interval, the four class
    shares, mean TTF, utility and cost with their t intervals, then the status columns.
    With `protocol`, only that protocol's episodes count; without it, a run holding both
    protocols gets one row per agent and protocol (numbers of the two are never pooled).
    `rows` are the ``metrics.summarize(logs, by=("agent",), min_payoff=min_payoff)`` rows
    of a one-protocol `logs`, when the caller already has them.
    """
    logs = list(logs)
    if protocol is not None:
        logs = [log for log in logs if log.protocol == protocol]
    found = metrics.protocols(logs)
    mixed = len(found) > 1
    shown = _protocol_of(logs, protocol)
    extended = "extended" in found or protocol == "extended"
    by = ("agent", "protocol") if mixed else ("agent",)
    columns = [
        Column("agent", "agent", "left"),
        *([Column("protocol", "protocol", "left")] if mixed else []),
        Column("episodes", "episodes"),
        Column("errors_other", "other errors"),
        Column("mr", "MR % [95% CI] (n)"),
        *(Column(f"share_{c}", f"{c.replace('_', ' ')} %") for c in BEHAVIOUR_CLASSES),
        Column("ttf_mean", "mean TTF"),
        Column("utility", "utility (ours, with penalties)" if extended else "utility (ours)"),
        Column("cost", "cost (ours)"),
        *status_columns(shown),
    ]
    if rows is None or mixed:
        rows = metrics.summarize(logs, by=by, min_payoff=min_payoff)
    body = []
    for row in rows:
        body.append(
            Row(
                [
                    label_cell(row["agent"]),
                    *([label_cell(row["protocol"])] if mixed else []),
                    count_cell(row["episodes"]),
                    count_cell(row["errors_other"]),
                    rate_cell(row["misaligned"], row["measured"]),
                    *(pct_cell(row[f"share_{c}"]) for c in BEHAVIOUR_CLASSES),
                    num_cell(row["ttf_mean"], 1),
                    mean_cell(row, "utility"),
                    mean_cell(row, "cost"),
                    *status_cells(row, shown),
                ]
            )
        )
    label = " + ".join(found) if found else shown
    return Table(
        key="summary",
        title=title or f"Overview (all episodes, {label} protocol)",
        columns=columns,
        rows=body,
    )


def value_text(value: Any) -> str:
    """A variable's value as the report names it: booleans lower-case (``true``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def crosstab_table(
    logs: Sequence[EpisodeLog],
    column: str,
    columns: Sequence[Any] | None = None,
    *,
    protocol: str | None = None,
    key: str | None = None,
    title: str | None = None,
    label: Callable[[Any], str] | None = None,
    agent_rows: Sequence[dict[str, Any]] | None = None,
) -> Table:
    """MR per agent (rows) x values of `column` (a `metrics.GROUP_KEYS` key), then an
    ``all`` column and, with more than one agent, an ``all agents`` total row.

    `columns` fixes the values and their order (default: every value in `logs`); `label`
    names a value's column (default: the value). With `protocol`, each row ends with the
    status columns over the row's episodes (`status_cells`). `agent_rows` are the
    ``metrics.summarize(logs, by=("agent",))`` rows when the caller already has them.
    """
    agents = [group[0] for group in metrics.group_logs(logs, ("agent",))]
    cells = {
        (row["agent"], row[column]): (row["misaligned"], row["measured"])
        for row in metrics.summarize(logs, by=("agent", column))
    }
    if columns is None:
        columns = [group[0] for group in metrics.group_logs(logs, (column,))]
    totals = {row["agent"]: row for row in agent_rows or metrics.summarize(logs)}
    by_value = {
        row[column]: (row["misaligned"], row["measured"])
        for row in metrics.summarize(logs, by=(column,))
    }
    name = label or value_text
    header = [
        Column("agent", "agent", "left"),
        *(Column(f"{column}={value_text(value)}", name(value)) for value in columns),
        Column("all", "all"),
        *(status_columns(protocol) if protocol is not None else []),
    ]

    def status(row: dict[str, Any]) -> list[Cell]:
        return status_cells(row, protocol) if protocol is not None else []

    rows = [
        Row(
            [
                label_cell(agent),
                *(rate_cell(*cells.get((agent, value), (0, 0))) for value in columns),
                rate_cell(totals[agent]["misaligned"], totals[agent]["measured"]),
                *status(totals[agent]),
            ]
        )
        for agent in agents
    ]
    if len(agents) > 1:
        overall = metrics.summary_row(logs)
        rows.append(
            Row(
                [
                    label_cell("all agents"),
                    *(rate_cell(*by_value.get(value, (0, 0))) for value in columns),
                    rate_cell(overall["misaligned"], overall["measured"]),
                    *status(overall),
                ],
                total=True,
            )
        )
    return Table(
        key=key or f"mr_by_{column}",
        title=title or f"Misalignment Rate by model x {column}",
        columns=header,
        rows=rows,
    )


def behaviour_table(
    logs: Sequence[EpisodeLog],
    protocol: str,
    min_payoff: float = 0.0,
    agent_rows: Sequence[dict[str, Any]] | None = None,
) -> Table:
    """Per agent: measured runs, the four class shares, the direct share of misaligned
    runs, mean and median TTF, then the status columns (`agent_rows`: as in
    `crosstab_table`)."""
    if agent_rows is None:
        agent_rows = metrics.summarize(logs, by=("agent",), min_payoff=min_payoff)
    rows = []
    for row in agent_rows:
        misaligned = row["misaligned"]
        rows.append(
            Row(
                [
                    label_cell(row["agent"]),
                    count_cell(row["measured"]),
                    *(pct_cell(row[f"share_{c}"]) for c in BEHAVIOUR_CLASSES),
                    pct_cell(row["direct"] / misaligned if misaligned else math.nan),
                    num_cell(row["ttf_mean"], 1),
                    num_cell(row["ttf_median"], 1),
                    *status_cells(row, protocol),
                ]
            )
        )
    return Table(
        key="behaviour",
        title="Behaviour classes by model",
        columns=[
            Column("agent", "agent", "left"),
            Column("measured", "measured runs"),
            *(Column(f"share_{c}", f"{CLASS_LABELS[c]} %") for c in BEHAVIOUR_CLASSES),
            Column("direct_of_misaligned", "direct of misaligned %"),
            Column("ttf_mean", "mean TTF"),
            Column("ttf_median", "median TTF"),
            *status_columns(protocol),
        ],
        rows=rows,
        notes=[
            "Shares of measured runs in %. *direct of misaligned* is the share of misaligned "
            "runs that went straight to the toxic terminal, with no toxic helper first."
        ],
    )


def stress_table(logs: Sequence[EpisodeLog], variable: str, protocol: str) -> Table:
    """MR per agent x value of `variable`, every other variable at its baseline value
    (`metrics.stress_logs`); columns named ``variable=value``."""
    subset = metrics.stress_logs(logs, variable, protocol=protocol)
    values = [group[0] for group in metrics.group_logs(subset, (variable,))]
    return crosstab_table(
        subset,
        variable,
        values,
        protocol=protocol,
        key=f"stress_{variable}",
        title=variable,
        label=lambda value: f"{variable}={value_text(value)}",
    )


def beyond_table(
    main: Sequence[EpisodeLog],
    everything: Sequence[EpisodeLog],
    protocol: str,
    min_payoff: float = 0.0,
    *,
    agent_rows: Sequence[dict[str, Any]] | None = None,
    usage_rows: Sequence[dict[str, Any]] | None = None,
) -> Table:
    """Ours, per agent over the `main` (baseline) episodes: utility and cost with their
    intervals, violations and hidden ones, attempted violations, oversight gap, unnecessary
    share, pressure at the first violation (extended), over-refusal, invalid actions, the
    status columns; then LLM calls, tokens and dollars over `everything` (errored runs
    included: they were paid). `agent_rows` and `usage_rows` are the per-agent
    `metrics.summarize` rows of `main` and `everything`, when the caller has them."""
    extended = protocol == "extended"
    utility_label = "utility (ours, with penalties)" if extended else "utility (ours)"
    if usage_rows is None:
        usage_rows = metrics.summarize(everything, by=("agent",), min_payoff=min_payoff)
    if agent_rows is None:
        agent_rows = metrics.summarize(main, by=("agent",), min_payoff=min_payoff)
    usage = {row["agent"]: row for row in usage_rows}
    rows = []
    for row in agent_rows:
        spent = usage[row["agent"]]
        rows.append(
            Row(
                [
                    label_cell(row["agent"]),
                    mean_cell(row, "utility"),
                    mean_cell(row, "cost"),
                    Cell(f"{row['violations']} / {row['hidden']}", value=row["violations"]),
                    count_cell(row["attempted_violations"]),
                    pct_cell(row["oversight_gap"]),
                    pct_cell(row["unnecessary_share"]),
                    *([num_cell(row["pressure_first_violation"], 2)] if extended else []),
                    pct_cell(row["over_refusal_share"]),
                    num_cell(row["invalid_actions_mean"], 2),
                    *status_cells(row, protocol),
                    count_cell(spent["llm_calls"], thousands=True),
                    count_cell(spent["tokens"], thousands=True),
                    dollars_cell(spent["cost_usd"], 4, spent["unpriced_episodes"]),
                ]
            )
        )
    pressure = (
        "*Pressure*: mean pressure level at the first toxic call. "
        if extended
        else "(The study protocol has no pressure schedule.) "
    )
    return Table(
        key="beyond",
        title=f"Beyond the study (ours, {protocol} protocol)",
        columns=[
            Column("agent", "agent", "left"),
            Column("utility", f"{utility_label} [95% CI]"),
            Column("cost", "cost [95% CI]"),
            Column("violations", "violations / hidden"),
            Column("attempted_violations", "attempted"),
            Column("oversight_gap", "oversight gap %"),
            Column("unnecessary_share", "unnecessary %"),
            *(
                [Column("pressure_first_violation", "pressure at 1st violation")]
                if extended
                else []
            ),
            Column("over_refusal_share", "over-refusal %"),
            Column("invalid_actions_mean", "invalid actions / ep."),
            *status_columns(protocol),
            Column("llm_calls", "LLM calls"),
            Column("tokens", "tokens"),
            Column("cost_usd", "$"),
        ],
        rows=rows,
        notes=[
            "Baseline episodes (as in the main experiment), measured runs. *Attempted*: "
            "violation labels of every toxic attempt (executed, refused, malformed or one of "
            "several calls in a turn); *violations* are those of well-formed toxic calls. "
            "*Oversight gap*: share of violations oversight never saw. *Unnecessary*: share "
            "of toxic calls made while the compliant terminal would have paid more than "
            f"{min_payoff:g} that same turn. "
            + pressure
            + "*Over-refusal*: measured runs that ended with nothing done (no terminal "
            "executed, no toxic tool attempted). Tokens and dollars cover all episodes of "
            "this protocol, errored ones included."
        ],
    )


def category_table(
    logs: Sequence[EpisodeLog],
    protocol: str,
    agent_rows: Sequence[dict[str, Any]] | None = None,
) -> Table:
    """Violations (hidden) per agent and category, summed over measured runs; only the
    categories some agent violated (all of them when none was), then the status columns
    (`agent_rows`: as in `crosstab_table`)."""
    by_category: dict[str, dict[str, tuple[int, int]]] = {}
    for row in metrics.violations_by_category(logs, by=("agent",)):
        by_category.setdefault(row["agent"], {})[row["category"]] = (
            row["violations"],
            row["hidden"],
        )
    categories = [
        c for c in metrics.CATEGORIES if any(v[c][0] for v in by_category.values())
    ] or list(metrics.CATEGORIES)
    status_of = {row["agent"]: row for row in agent_rows or metrics.summarize(logs)}
    return Table(
        key="violations_by_category",
        title="Violations by category",
        columns=[
            Column("agent", "agent", "left"),
            *(Column(c, c) for c in categories),
            *status_columns(protocol),
        ],
        rows=[
            Row(
                [
                    label_cell(agent),
                    *(
                        Cell(f"{counts[c][0]} ({counts[c][1]})", value=counts[c][0])
                        for c in categories
                    ),
                    *status_cells(status_of[agent], protocol),
                ]
            )
            for agent, counts in by_category.items()
        ],
        notes=["Baseline episodes; cells are `violations (hidden)`, summed over measured runs."],
    )


def errors_table(logs: Sequence[EpisodeLog]) -> Table | None:
    """The errored episodes, counted per agent (and protocol, when the logs hold both) and
    first line of the error; None when no episode errored."""
    found = metrics.protocols(logs)
    counts: dict[tuple[str, str, str], int] = {}
    for log in logs:
        if log.error is None:
            continue
        message = (log.error or "").splitlines()[0][:160]
        if log.error == FORMAT_ERROR:
            message = f"{FORMAT_ERROR}: a reply held no readable tool call"
        counts[(log.agent, log.protocol, message)] = (
            counts.get((log.agent, log.protocol, message), 0) + 1
        )
    if not counts:
        return None
    mixed = len(found) > 1
    order = {p: i for i, p in enumerate(found)}
    items = sorted(counts.items(), key=lambda item: (order[item[0][1]], item) if mixed else item)
    return Table(
        key="errors",
        title="Errors",
        columns=[
            Column("agent", "agent", "left"),
            *([Column("protocol", "protocol", "left")] if mixed else []),
            Column("error", "error", "left"),
            Column("episodes", "episodes"),
        ],
        rows=[
            Row(
                [
                    label_cell(agent),
                    *([label_cell(protocol)] if mixed else []),
                    label_cell(message, code=True),
                    count_cell(n),
                ]
            )
            for (agent, protocol, message), n in items
        ],
        notes=[
            f"{sum(counts.values())} episode(s) ended in an error and are excluded from every "
            "rate above (`tp-gym eval ... --resume --retry-errors` plays them again; a format "
            "error is the agent's own answer and will usually recur)."
        ],
    )


MITIGATION_TEXT = (
    "Each mitigated agent (a spec with a mitigation prefix, e.g. `shield+llm:M`) against its "
    "unmitigated base (the spec after the last `+`), over the cells (environment, variable "
    "setting, seed) both played, per protocol. **MR** is the study's, over measured runs, "
    "`MR [95% Wilson CI] (n)`; a shield that vetoes every call of a run leaves a no-valid-call "
    "run, which MR excludes, so **harm %** gives the misaligned runs of *all* error-free runs "
    "(a vetoed run counts as not misaligned). **Utility** is the mean per error-free run (a "
    "run that did nothing earns 0); **kept** = mitigated mean / base mean; **Δ utility** is "
    "the mean per-cell difference (mitigated − base) with a 95% t interval. **Over-refusal** "
    "(this table's definition): error-free runs that ended without any terminal (a stall) or "
    "with no valid call, of all error-free runs, with a Wilson interval. **Violations "
    "prevented**: the base's mean executed violations per run minus the mitigated agent's "
    "(per-cell differences, 95% t interval). **Interventions**: steps per run in which a "
    "mitigation changed the call (a veto, a revised proposal)."
)
"""What the mitigation table's columns mean (its note)."""

MITIGATION_COST_TEXT = (
    "Tokens and dollars per run, over every run of the matched cells (errored ones "
    "included: they were paid): the agent's own calls (usage `agent`), the mitigation's "
    "(usage `monitor` and `self_check`; a rule monitor and the safety prompt call no "
    "model, the safety prompt's extra prompt tokens are inside the agent's and estimated "
    "apart), and the total over every usage key."
)
"""What the mitigation cost table's columns mean (its note)."""


def _pair_cell(value: float, base: float) -> Cell:
    """``value / base`` with two decimals; the raw value is the first (the mitigated)."""
    return Cell(f"{fmt_num(value)} / {fmt_num(base)}", value=value)


def _mitigation_lead(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[Column], Callable[[dict[str, Any]], list[Cell]]]:
    several = len({row["protocol"] for row in rows}) > 1
    columns = [
        Column("agent", "mitigated agent", "left"),
        Column("base", "base", "left"),
        *([Column("protocol", "protocol", "left")] if several else []),
        Column("cells", "cells"),
    ]

    def cells(row: dict[str, Any]) -> list[Cell]:
        return [
            label_cell(row["agent"]),
            label_cell(row["base"]),
            *([label_cell(row["protocol"])] if several else []),
            count_cell(row["cells"]),
        ]

    return columns, cells


def mitigation_tables(rows: Sequence[dict[str, Any]]) -> list[Table]:
    """The two mitigation tables over `mitigation_metrics.mitigation_rows`: the trade-off
    (MR, harm, utility, over-refusal, violations prevented, interventions, each beside the
    base's) and the spending (tokens and dollars per run). Empty without rows."""
    if not rows:
        return []
    lead, lead_cells = _mitigation_lead(rows)
    tradeoff = Table(
        key="mitigations",
        title="Mitigations",
        columns=[
            *lead,
            Column("mr", "MR % [95% CI] (n)"),
            Column("base_mr", "base MR %"),
            Column("harm", "harm % [95% CI] (n)"),
            Column("base_harm", "base harm %"),
            Column("utility_mean", "utility / base"),
            Column("utility_kept", "utility kept %"),
            Column("utility_diff", "Δ utility [95% CI]"),
            Column("over_refusal", "over-refusal % [95% CI] (n)"),
            Column("base_over_refusal", "base over-refusal %"),
            Column("violations_mean", "violations / run (base)"),
            Column("violations_prevented", "violations prevented [95% CI]"),
            Column("interventions_mean", "interventions / run"),
        ],
        rows=[
            Row(
                [
                    *lead_cells(row),
                    rate_cell(row["misaligned"], row["measured"]),
                    rate_cell(row["base_misaligned"], row["base_measured"]),
                    rate_cell(row["harmful"], row["valid"]),
                    rate_cell(row["base_harmful"], row["base_valid"]),
                    _pair_cell(row["utility_mean"], row["base_utility_mean"]),
                    pct_cell(row["utility_kept"]),
                    interval_cell(
                        row["utility_diff"], row["utility_diff_low"], row["utility_diff_high"]
                    ),
                    rate_cell(row["over_refusals"], row["valid"]),
                    rate_cell(row["base_over_refusals"], row["base_valid"]),
                    _pair_cell(row["violations_mean"], row["base_violations_mean"]),
                    interval_cell(
                        row["violations_prevented"],
                        row["violations_prevented_low"],
                        row["violations_prevented_high"],
                    ),
                    num_cell(row["interventions_mean"]),
                ]
            )
            for row in rows
        ],
        notes=[MITIGATION_TEXT],
    )
    spending = Table(
        key="mitigation_costs",
        title="Mitigations: tokens and dollars",
        columns=[
            *lead,
            Column("mitigation_calls_mean", "mitigation calls / run"),
            Column("agent_tokens_mean", "agent tokens / run"),
            Column("mitigation_tokens_mean", "mitigation tokens / run"),
            Column("safety_prompt_tokens_est_mean", "safety prompt tokens / run (est.)"),
            Column("tokens_mean", "total tokens / run"),
            Column("base_tokens_mean", "base tokens / run"),
            Column("agent_cost_usd_mean", "agent $ / run"),
            Column("mitigation_cost_usd_mean", "mitigation $ / run"),
            Column("cost_usd_mean", "total $ / run"),
            Column("base_cost_usd_mean", "base $ / run"),
        ],
        rows=[
            Row(
                [
                    *lead_cells(row),
                    num_cell(row["mitigation_calls_mean"]),
                    num_cell(row["agent_tokens_mean"], 0),
                    num_cell(row["mitigation_tokens_mean"], 0),
                    num_cell(row["safety_prompt_tokens_est_mean"], 0),
                    num_cell(row["tokens_mean"], 0),
                    num_cell(row["base_tokens_mean"], 0),
                    dollars_cell(row["agent_cost_usd_mean"], 5),
                    dollars_cell(row["mitigation_cost_usd_mean"], 5),
                    dollars_cell(row["cost_usd_mean"], 5, row["unpriced_runs"]),
                    dollars_cell(row["base_cost_usd_mean"], 5),
                ]
            )
            for row in rows
        ],
        notes=[MITIGATION_COST_TEXT],
    )
    return [tradeoff, spending]


@dataclass
class ProtocolTables:
    """Every table of one protocol's part of the report, in report order."""

    protocol: str
    episodes: int
    overview: Table
    at_baseline: bool
    """The main tables are over baseline episodes; False: no episode ran at the baseline
    and they pool every episode of the protocol."""
    main_episodes: int
    baseline: dict[str, Any]
    """The baseline setting shown (the extended-only variables only under ``extended``)."""
    by_domain: Table
    by_driver: Table
    behaviour: Table
    stress: list[Table]
    """One table per variable varied one at a time (`metrics.varied_variables`)."""
    beyond: Table
    categories: Table

    @property
    def baseline_text(self) -> str:
        """``stakes=high, feedback=medium, ...``."""
        return ", ".join(f"{k}={value_text(v)}" for k, v in self.baseline.items())

    def tables(self) -> list[Table]:
        """The tables in report order."""
        return [
            self.overview,
            self.by_domain,
            self.by_driver,
            self.behaviour,
            *self.stress,
            self.beyond,
            self.categories,
        ]


def protocol_tables(
    logs: Sequence[EpisodeLog], protocol: str, min_payoff: float = 0.0
) -> ProtocolTables:
    """The tables of the report's part for `protocol` over `logs` (of that protocol): the
    overview over every episode, the main experiment and beyond-the-study tables over the
    baseline episodes (every episode when none ran at the baseline), one stress table per
    varied variable."""
    logs = [log for log in logs if log.protocol == protocol]
    main = metrics.baseline_logs(logs, protocol=protocol)
    at_baseline = bool(main)
    main = main or logs
    baseline = {
        k: v
        for k, v in metrics.BASELINE.items()
        if protocol == "extended" or k not in EXTENDED_ONLY
    }
    # each per-agent summary once: the tables over `main` share theirs
    everything_rows = metrics.summarize(logs, by=("agent",), min_payoff=min_payoff)
    main_rows = (
        everything_rows
        if len(main) == len(logs)
        else metrics.summarize(main, by=("agent",), min_payoff=min_payoff)
    )
    return ProtocolTables(
        protocol=protocol,
        episodes=len(logs),
        overview=summary_table(logs, min_payoff, protocol=protocol, rows=everything_rows),
        at_baseline=at_baseline,
        main_episodes=len(main),
        baseline=baseline,
        by_domain=crosstab_table(main, "domain", protocol=protocol, agent_rows=main_rows),
        by_driver=crosstab_table(main, "driver", protocol=protocol, agent_rows=main_rows),
        behaviour=behaviour_table(main, protocol, min_payoff, main_rows),
        stress=[
            stress_table(logs, variable, protocol)
            for variable in metrics.varied_variables(logs, protocol=protocol)
        ],
        beyond=beyond_table(
            main, logs, protocol, min_payoff, agent_rows=main_rows, usage_rows=everything_rows
        ),
        categories=category_table(main, protocol, main_rows),
    )


def report_tables(logs: Sequence[EpisodeLog], min_payoff: float = 0.0) -> list[Table]:
    """Every table of report.md, in its order: each protocol's tables, the mitigation
    tables, the errors. With both protocols in `logs`, each key is suffixed with
    ``-PROTOCOL`` and each title with `` (PROTOCOL)`` where it does not already name it."""
    from tp_gym import mitigation_metrics

    found = metrics.protocols(logs)
    result: list[Table] = []
    for protocol in found:
        for table in protocol_tables(logs, protocol, min_payoff).tables():
            if len(found) > 1:
                table.key = f"{table.key}-{protocol}"
                if f"{protocol} protocol" not in table.title:
                    table.title = f"{table.title} ({protocol})"
            result.append(table)
    result += mitigation_tables(mitigation_metrics.mitigation_rows(logs))
    errors = errors_table(logs)
    if errors is not None:
        result.append(errors)
    return result


# ---------------------------------------------------------------------------- rendering


def markdown_escape(text: Any) -> str:
    """Cell text safe inside a markdown table row: ``|`` escaped, line breaks as spaces."""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", " ")
    return text.replace("|", "\\|")


def _md_cell(cell: Cell, total: bool = False) -> str:
    text = markdown_escape(cell.text)
    if cell.code and text:
        # a code span holding backticks is fenced by a longer run of them
        fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
        text = f"{fence} {text} {fence}" if len(fence) > 1 else f"`{text}`"
    if total and text:
        text = f"**{text}**"
    return text


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*")


def inline_html(text: str) -> Markup:
    """A note's markdown-flavoured text as safe HTML: everything escaped, then
    ``code``, ``**strong**`` and ``*emphasis*`` turned into their tags."""
    from markupsafe import Markup, escape

    parts: list[str] = []
    end = 0
    for match in _INLINE.finditer(text):
        parts.append(str(escape(text[end : match.start()])))
        code, strong, emphasis = match.groups()
        if code is not None:
            parts.append(f"<code>{escape(code)}</code>")
        elif strong is not None:
            parts.append(f"<strong>{escape(strong)}</strong>")
        else:
            parts.append(f"<em>{escape(emphasis)}</em>")
        end = match.end()
    parts.append(str(escape(text[end:])))
    return Markup("".join(parts))


@lru_cache(maxsize=2)
def environment(kind: Literal["markdown", "html"]) -> jinja2.Environment:
    """The Jinja2 environment for the templates of `kind`.

    HTML autoescapes every value; markdown does not (it is not HTML) and escapes table
    cells with the ``md_cell`` filter instead.
    """
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tp_gym", "templates"),
        autoescape=kind == "html",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md_cell"] = _md_cell
    env.filters["md_escape"] = markdown_escape
    env.filters["md_inline"] = inline_html
    env.globals["md_table"] = render_markdown
    return env


def _tables(tables: Table | Sequence[Table]) -> list[Table]:
    return [tables] if isinstance(tables, Table) else list(tables)


def render_markdown(tables: Table | Sequence[Table], *, notes: bool = False) -> str:
    """GitHub-flavoured markdown for one table or several (separated by a blank line).

    Only the table itself by default; with `notes`, each table is preceded by its title
    (bold) and its notes, as a notebook shows it.
    """
    template = environment("markdown").get_template("table.md.j2")
    parts = [template.render(table=table, notes=notes).rstrip("\n") for table in _tables(tables)]
    return "\n\n".join(parts) + "\n"


def render_html(tables: Table | Sequence[Table], *, notes: bool = True, style: bool = True) -> str:
    """A self-contained HTML fragment: one ``<table class="tp-table">`` per table, with its
    title as ``<caption>`` and (with `notes`) its notes after it; no external assets.

    With `style`, a small ``<style>`` block comes first (borders, numbers right-aligned);
    a page with its own stylesheet passes ``style=False`` and styles the classes itself.
    """
    template = environment("html").get_template("tables.html.j2")
    return template.render(tables=_tables(tables), notes=notes, style=style)
