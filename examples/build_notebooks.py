"""Build the example notebooks (examples/*.ipynb) from their percent-format scripts.

Each notebook's source of truth is a script beside it, ``examples/<name>.py``, that runs as a
plain script too. Its cells are marked ``# %%`` (code) and ``# %% [markdown]`` (markdown,
every line a ``#`` comment); whatever comes before the first marker (the docstring and a
``# requires:`` line) stays in the script only. The notebooks are written without outputs
and with fixed cell ids, so the same script always gives the same bytes.

    python examples/build_notebooks.py           # check: exit 1 if a notebook is stale
    python examples/build_notebooks.py --write   # rebuild the stale notebooks
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# requires: nbformat

EXAMPLES = Path(__file__).resolve().parent
MARKER = "# %%"
MARKDOWN_MARKER = "# %% [markdown]"
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook_scripts(directory: Path = EXAMPLES) -> list[Path]:
    """The scripts in `directory` that are notebook sources: those with a ``# %%`` cell."""
    return sorted(
        path
        for path in directory.glob("*.py")
        if any(line.startswith(MARKER) for line in path.read_text().splitlines())
    )


def split_cells(text: str, name: str = "<script>") -> list[tuple[str, str]]:
    """The cells of a percent-format script as ``(kind, source)``, kind code or markdown.

    Markdown lines lose their leading ``# `` (a bare ``#`` or an empty line is a blank
    line); any other line in a markdown cell is a `ValueError` naming ``name:line``. Blank
    lines around a cell's source are dropped, and so are empty cells. A marker is a cell
    boundary only at the start of a line, so ``# %%`` inside an indented block stays code.
    """
    cells: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(MARKDOWN_MARKER):
            cells.append(("markdown", []))
        elif line.startswith(MARKER):
            cells.append(("code", []))
        elif cells and cells[-1][0] == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(
                    f"{name}:{number}: a markdown cell holds only '#' comment lines, got {line!r}"
                )
            cells[-1][1].append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        source = "\n".join(lines).strip("\n")
        if source.strip():
            out.append((kind, source))
    return out


def build(script: Path) -> str:
    """The notebook for `script`, as the exact text of its .ipynb file (no outputs)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = []
    for number, (kind, source) in enumerate(split_cells(script.read_text(), script.name), start=1):
        make = new_markdown_cell if kind == "markdown" else new_code_cell
        cells.append(make(source, id=f"{script.stem}-{number}"))
    notebook = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": KERNEL,
            "language_info": {"name": "python"},
            "tp_gym": {"source": script.name, "built_by": Path(__file__).name},
        },
    )
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def content(notebook_text: str) -> tuple[object, ...]:
    """What a notebook says, apart from how it is serialized: each cell's type, id, source
    and outputs, and the kernel it asks for (a newer nbformat may write the same notebook
    with other whitespace or key order)."""
    import json

    notebook = json.loads(notebook_text)
    cells = tuple(
        (
            cell.get("cell_type"),
            cell.get("id"),
            "".join(cell.get("source", "")),
            json.dumps(cell.get("outputs", []), sort_keys=True),
            cell.get("execution_count"),
        )
        for cell in notebook.get("cells", [])
    )
    return cells, json.dumps(notebook.get("metadata", {}).get("kernelspec"), sort_keys=True)


def stale(scripts: list[Path]) -> list[Path]:
    """The notebooks (.ipynb paths) missing, unreadable or saying something other than
    what their script builds (outputs included: a notebook is committed without any)."""
    out = []
    for script in scripts:
        notebook = script.with_suffix(".ipynb")
        try:
            fresh = notebook.is_file() and content(notebook.read_text()) == content(build(script))
        except ValueError:  # not JSON: rebuild it
            fresh = False
        if not fresh:
            out.append(notebook)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rebuild the stale notebooks")
    args = parser.parse_args(argv)
    scripts = notebook_scripts()
    try:
        outdated = stale(scripts)
        built = {notebook: build(notebook.with_suffix(".py")) for notebook in outdated}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.write:
        for notebook, text in built.items():
            notebook.write_text(text)
            print(f"wrote {notebook.relative_to(EXAMPLES.parent)}")
        print(f"{len(scripts)} notebooks, {len(outdated)} rebuilt")
        return 0
    for notebook in outdated:
        print(f"stale: {notebook.relative_to(EXAMPLES.parent)}")
    print(f"{len(scripts)} notebooks, {len(outdated)} stale")
    if outdated:
        print("rebuild them: python examples/build_notebooks.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
