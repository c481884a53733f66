"""`tp_gym.tables`: the table model, its builders and its markdown and HTML renderings.

The summary table's raw values must be `tp_gym.metrics`' numbers, the HTML table must show
the same texts as the markdown one, and neither rendering may be broken by what an agent
name holds (a ``|``, a line break, markup).
"""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest

from tp_gym import metrics
from tp_gym.runs.evaluation import Grid, evaluate, load_run
from tp_gym.tables import (
    Cell,
    Column,
    Row,
    Table,
    beyond_table,
    crosstab_table,
    protocol_tables,
    rate_cell,
    render_html,
    render_markdown,
    report_tables,
    summary_table,
)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Three scripted agents on two environments, four seeds: 24 episodes."""
    run = tmp_path_factory.mktemp("tables") / "run"
    grid = Grid.build(
        ["scripted:direct", "scripted:random", "scripted:compliant"],
        envs=["tp_gym/Coding-Loyalty-v0", "tp_gym/Finance-Loyalty-v0"],
        seeds=range(4),
    )
    evaluate(grid, run)
    return load_run(run)


class TableCells(HTMLParser):
    """Collects every table of an HTML fragment: caption, header texts, body rows, and
    each body cell's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self._cell: list[str] | None = None
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"caption": "", "header": [], "rows": [], "attrs": []})
        elif tag == "caption":
            self._in_caption = True
        elif tag == "tr":
            self._row: list[str] = []
            self._row_attrs: list[dict] = []
        elif tag in ("td", "th"):
            self._cell = []
            self._tag = tag
            self._row_attrs.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "caption":
            self._in_caption = False
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            table = self.tables[-1]
            if self._tag == "th":
                table["header"] = self._row
            else:
                table["rows"].append(self._row)
                table["attrs"].append(self._row_attrs)

    def handle_data(self, data):
        if self._in_caption:
            self.tables[-1]["caption"] += data
        elif self._cell is not None:
            self._cell.append(data)


def parse_html(text: str) -> list[dict]:
    parser = TableCells()
    parser.feed(text)
    parser.close()
    return parser.tables


def parse_markdown(text: str) -> list[list[str]]:
    """Rows (header first, the alignment row dropped) of a markdown table, splitting only
    on unescaped pipes and unescaping the escaped ones."""
    rows = []
    for line in text.strip().splitlines():
        if not line.startswith("|"):
            continue
        cells, current, i = [], "", 1
        body = line.rstrip()[:-1]
        while i < len(body):
            if body[i] == "\\" and body[i + 1 : i + 2] == "|":
                current += "|"
                i += 2
                continue
            if body[i] == "|":
                cells.append(current.strip())
                current = ""
            else:
                current += body[i]
            i += 1
        cells.append(current.strip())
        rows.append(cells)
    return [rows[0], *rows[2:]]


def test_summary_table_values_are_the_metrics_numbers(logs):
    table = summary_table(logs)
    rows = metrics.summarize(logs, by=("agent",))
    assert [cell.value for cell in table.column("agent")] == [r["agent"] for r in rows]
    for record, row in zip(table.records(), rows):
        assert record["episodes"] == row["episodes"] == 8
        assert record["errors_other"] == row["errors_other"]
        assert record["mr"] == row["mr"]
        for name in ("strategic", "direct", "failed_attempt", "robust"):
            assert record[f"share_{name}"] == row[f"share_{name}"]
        assert record["utility"] == row["utility_mean"]
        assert record["cost"] == row["cost_mean"]
        assert record["stall_share"] == row["stall_share"]
        assert record["format_error_share"] == row["format_error_share"]
    for cell, row in zip(table.column("mr"), rows):
        assert (cell.low, cell.high) == (row["mr_low"], row["mr_high"])
        assert cell.n == row["measured"]
        assert cell.text == (
            f"{100 * row['mr']:.1f} [{100 * row['mr_low']:.1f}–{100 * row['mr_high']:.1f}] "
            f"({row['measured']})"
        )
    for cell, row in zip(table.column("utility"), rows):
        assert (cell.low, cell.high) == (row["utility_low"], row["utility_high"])
    direct = dict(zip([c.value for c in table.column("agent")], table.records()))
    assert direct["scripted:direct"]["mr"] == 1.0
    assert direct["scripted:compliant"]["mr"] == 0.0
    assert "replaced_share" not in direct["scripted:direct"]  # study protocol only


def test_summary_table_never_pools_protocols(tmp_path):
    run = tmp_path / "run"
    env = "tp_gym/Coding-Loyalty-v0"
    evaluate(Grid.build("scripted:direct", envs=env, seeds=range(2), protocol="study"), run)
    grid = Grid.build("scripted:direct", envs=env, seeds=range(3), protocol="extended")
    evaluate(grid, run, resume=True)
    logs = load_run(run)
    both = summary_table(logs)
    assert [(r["protocol"], r["episodes"]) for r in both.records()] == [
        ("study", 2),
        ("extended", 3),
    ]
    assert "replaced_share" in [c.key for c in both.columns]
    study = summary_table(logs, protocol="study")
    assert [r["episodes"] for r in study.records()] == [2]
    assert "protocol" not in [c.key for c in study.columns]
    assert "replaced_share" not in [c.key for c in study.columns]
    assert study.title == "Overview (all episodes, study protocol)"


def test_html_shows_the_same_numbers_as_markdown(logs):
    table = summary_table(logs)
    markdown = parse_markdown(render_markdown(table))
    (html,) = parse_html(render_html(table))
    assert html["caption"] == table.title
    assert html["header"] == markdown[0] == [c.label for c in table.columns]
    assert html["rows"] == markdown[1:]
    assert len(html["rows"]) == 3
    # numbers carry their raw value, right-aligned by class; labels do not
    for attrs, row in zip(html["attrs"], table.rows):
        assert "tp-text" in attrs[0]["class"] and "data-value" not in attrs[0]
        for cell_attrs, cell in zip(attrs[1:], row.cells[1:]):
            assert "tp-num" in cell_attrs["class"]
            if cell.numeric and not math.isnan(cell.value):
                assert float(cell_attrs["data-value"]) == cell.value
    mr = table.columns.index(next(c for c in table.columns if c.key == "mr"))
    for attrs, cell in zip(html["attrs"], table.column("mr")):
        assert float(attrs[mr]["data-low"]) == cell.low
        assert int(attrs[mr]["data-n"]) == cell.n


def test_html_is_self_contained():
    html = render_html(Table("t", "T", [Column("a", "a", "left")], [Row([Cell("x", "x")])]))
    assert "<link" not in html and "<script" not in html and "src=" not in html
    assert ".tp-num { text-align: right; }" in html
    assert "<style>" not in render_html(Table("t", "T", [Column("a", "a")]), style=False)


HOSTILE = "evil | agent\nwith <b>bold</b> & 'quotes'"


def hostile_table() -> Table:
    return Table(
        key="hostile",
        title="Agents <script>alert(1)</script>",
        columns=[Column("agent", "agent | name", "left"), Column("mr", "MR")],
        rows=[
            Row([Cell(HOSTILE, HOSTILE), rate_cell(1, 2)]),
            Row([Cell("all", "all"), rate_cell(3, 4)], total=True),
        ],
        notes=["a note with `code` and <tags>"],
    )


def test_markdown_escapes_pipes_and_line_breaks():
    text = render_markdown(hostile_table())
    lines = text.strip().splitlines()
    assert len(lines) == 4  # header, alignment, two rows: the line break did not split a row
    assert lines[0] == "| agent \\| name | MR |"
    assert lines[1] == "|:---|---:|"
    assert lines[2].startswith("| evil \\| agent with <b>bold</b> & 'quotes' | 50.0 [")
    assert lines[3].startswith("| **all** | 75.0 [")
    header, *rows = parse_markdown(text)
    assert header == ["agent | name", "MR"]
    assert rows[0][0] == HOSTILE.replace("\n", " ")
    assert [len(row) for row in rows] == [2, 2]


def test_markdown_with_notes_shows_title_and_notes():
    text = render_markdown(hostile_table(), notes=True)
    assert text.startswith(
        "**Agents <script>alert(1)</script>**\n\na note with `code` and <tags>\n"
    )


def test_html_autoescapes_every_text():
    text = render_html(hostile_table())
    assert "<script>" not in text and "<b>" not in text and "<tags>" not in text
    assert "Agents &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#39;quotes&#39;" in text
    assert "a note with <code>code</code> and &lt;tags&gt;" in text
    (table,) = parse_html(text)
    assert table["header"] == ["agent | name", "MR"]
    assert table["rows"][0][0] == HOSTILE  # the parser sees the text exactly
    assert table["attrs"][1][0] == {"class": "tp-text"}
    assert '<tr class="tp-total">' in text


def test_a_row_must_fit_its_columns():
    with pytest.raises(ValueError, match="a row has 1 cells for 2 columns"):
        Table("bad", "Bad", [Column("a", "a"), Column("b", "b")], [Row([Cell("x")])])
    with pytest.raises(KeyError, match="no column 'c'"):
        Table("ok", "Ok", [Column("a", "a")]).column("c")


def test_undefined_numbers_show_a_dash_and_no_value():
    table = Table("t", "T", [Column("mr", "MR")], [Row([rate_cell(0, 0)])])
    assert render_markdown(table).splitlines()[-1] == "| – |"
    (html,) = parse_html(render_html(table))
    assert html["rows"] == [["–"]] and html["attrs"][0][0]["data-value"] == ""


def test_report_tables_keep_protocols_apart_with_unique_keys(tmp_path):
    run = tmp_path / "run"
    env = "tp_gym/Coding-Loyalty-v0"
    evaluate(Grid.build("scripted:direct", envs=env, seeds=range(2), protocol="study"), run)
    grid = Grid.build("scripted:direct", envs=env, seeds=range(3), protocol="extended")
    evaluate(grid, run, resume=True)
    shown = report_tables(load_run(run))
    keys = [table.key for table in shown]
    assert len(keys) == len(set(keys))
    assert keys[0] == "summary-study" and "summary-extended" in keys
    assert "errors" not in keys  # no episode errored
    for table in shown:
        protocol = table.key.rsplit("-", 1)[1]
        assert f"{protocol} protocol" in table.title or table.title.endswith(f"({protocol})")
        episodes = {"study": 2, "extended": 3}[protocol]
        if table.key.startswith("mr_by_domain"):
            (row,) = table.rows
            assert row.cells[table.columns.index(Column("all", "all"))].n == episodes


def test_protocol_tables_share_one_summary_per_agent(logs):
    """The shared per-agent rows give the tables their own builders give alone."""
    part = protocol_tables(logs, "study")
    main = metrics.baseline_logs(logs, protocol="study")
    assert part.at_baseline and part.main_episodes == len(main) == 24
    assert render_markdown(part.overview) == render_markdown(summary_table(logs))
    alone = crosstab_table(main, "domain", protocol="study")
    assert render_markdown(part.by_domain) == render_markdown(alone)
    assert render_markdown(part.beyond) == render_markdown(beyond_table(main, logs, "study"))
    assert [r.total for r in alone.rows] == [False, False, False, True]
    assert alone.rows[-1].cells[0].text == "all agents"


def test_a_table_shows_itself_in_jupyter_as_its_html(logs):
    table = summary_table(logs)
    assert table._repr_html_() == render_html(table)
    assert table.to_markdown() == render_markdown(table)
    assert table.to_html(style=False) == render_html(table, style=False)


def test_a_code_cell_with_backticks_keeps_its_code_span():
    table = Table(
        "e",
        "E",
        [Column("error", "error", "left")],
        [Row([Cell("bad `x` | y", code=True)]), Row([Cell("plain", code=True)])],
    )
    assert render_markdown(table).splitlines()[2:] == ["| `` bad `x` \\| y `` |", "| `plain` |"]
    assert "<code>bad `x` | y</code>" in render_html(table)
