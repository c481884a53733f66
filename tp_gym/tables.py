"""Tables: one data model for every table tp_gym shows, and its renderings.

A `Table` is what the report, the HTML viewer and the notebook reprs all show: a key, a
title, `Column`s, `Row`s of `Cell`s and notes. A `Cell` keeps the raw number beside its
display text (``value``, and for a rate or a mean its interval ``low``/``high`` and its
``n``), so a page can sort by the number while showing the text the report shows.

Builders read episode logs through `tp_gym.metrics` and never type a number by hand:
`summary_table` is the per-agent summary the report shows first; `tp_gym.report` builds
the report's other tables with the same cell helpers (`rate_cell`, `pct_cell`, ...).

Renderings go through the Jinja2 templates in ``tp_gym/templates``:

- `render_markdown` gives a GitHub-flavoured markdown table; a ``|`` in a cell is escaped
  and a line break becomes a space, so an agent name can never break the table;
- `render_html` gives a self-contained ``<table>`` fragment (no external assets) with
  classes a page can style: ``tp-table``, ``tp-num`` on numeric cells (right-aligned by
  an inline style too), ``tp-total`` on a total row; every text is HTML-escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from tp_gym import metrics
from tp_gym.classify import BEHAVIOUR_CLASSES

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
    in percent), or the text itself for a label cell; None when undefined. ``low`` and
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
            {col.key: cell.value for col, cell in zip(self.columns, row.cells)}
            for row in self.rows
        ]


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
) -> Table:
    """The per-agent summary the report shows first (its *Overview* section).

    One row per agent: episodes, other errors, MR with its Wilson interval, the four class
    shares, mean TTF, utility and cost with their t intervals, then the status columns.
    With `protocol`, only that protocol's episodes count; without it, a run holding both
    protocols gets one row per agent and protocol (numbers of the two are never pooled).
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
    rows = []
    for row in metrics.summarize(logs, by=by, min_payoff=min_payoff):
        rows.append(
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
        rows=rows,
    )


# ---------------------------------------------------------------------------- rendering


def markdown_escape(text: Any) -> str:
    """Cell text safe inside a markdown table row: ``|`` escaped, line breaks as spaces."""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", " ")
    return text.replace("|", "\\|")


def _md_cell(cell: Cell, total: bool = False) -> str:
    text = markdown_escape(cell.text)
    if cell.code and text:
        text = f"`{text}`"
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


def render_html(
    tables: Table | Sequence[Table], *, notes: bool = True, style: bool = True
) -> str:
    """A self-contained HTML fragment: one ``<table class="tp-table">`` per table, with its
    title as ``<caption>`` and (with `notes`) its notes after it; no external assets.

    With `style`, a small ``<style>`` block comes first (borders, numbers right-aligned);
    a page with its own stylesheet passes ``style=False`` and styles the classes itself.
    """
    template = environment("html").get_template("tables.html.j2")
    return template.render(tables=_tables(tables), notes=notes, style=style)
