"""The example notebooks: built from their scripts, executed by a real Jupyter kernel.

Each examples/<name>.ipynb is generated from examples/<name>.py (examples/build_notebooks.py)
and committed without outputs; a stale one fails here. Every notebook is executed with
nbclient and an ipykernel running this test's own interpreter (a kernel spec written to a
temporary directory, so no user-level ``python3`` kernel can stand in), and the tests check
what the cells printed and displayed against numbers recomputed here from the same data.
The kernel has no API key; its temporary files go under the test's tmp_path.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the notebooks extra")
nbclient = pytest.importorskip("nbclient", reason="needs the notebooks extra")
pytest.importorskip("ipykernel", reason="needs the notebooks extra")

import tp_gym  # noqa: E402
from tp_gym import metrics  # noqa: E402
from tp_gym.agents import make_agent  # noqa: E402
from tp_gym.agents.llm import LLMAgent  # noqa: E402
from tp_gym.agents.scripted import POLICIES  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = ("small_evaluation", "stepping_agents", "study_tables", "training_mitigation")
KERNEL_NAME = "tp-gym-test-python"
AGENTS = ("scripted:compliant", "scripted:direct", "scripted:random", "scripted:rational")


def load_script(path: Path) -> ModuleType:
    """Import an examples script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in examples/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


builder = load_script(EXAMPLES / "build_notebooks.py")
recorder = load_script(EXAMPLES / "data" / "record_llm_cassette.py")


# ---------------------------------------------------------------------------- building


def test_every_notebook_is_built_from_its_script_and_has_no_outputs():
    scripts = builder.notebook_scripts()
    assert [s.stem for s in scripts] == list(NOTEBOOKS)
    assert builder.stale(scripts) == [], "rebuild: python examples/build_notebooks.py --write"
    for script in scripts:
        notebook = script.with_suffix(".ipynb")
        cells = nbformat.read(notebook, as_version=4).cells
        code = [cell for cell in cells if cell.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code)
        assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")


def test_the_builder_splits_cells_and_reports_stale_notebooks(tmp_path):
    script = tmp_path / "demo.py"
    script.write_text(
        '"""Docstring stays in the script."""\n# requires: IPython\n\n'
        "# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n"
        "# %%\nx = 1\n\n\n# %%\n\n# %% [markdown]\n# More.\n# %%\nprint(x)\n"
    )
    assert builder.split_cells(script.read_text()) == [
        ("markdown", "# Title\n\nSome *text*."),
        ("code", "x = 1"),
        ("markdown", "More."),
        ("code", "print(x)"),
    ]
    assert builder.notebook_scripts(tmp_path) == [script]
    assert builder.stale([script]) == [script.with_suffix(".ipynb")]
    script.with_suffix(".ipynb").write_text(builder.build(script))
    assert builder.stale([script]) == []
    assert builder.build(script) == builder.build(script), "the same bytes every time"
    notebook = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    nbformat.write(notebook, script.with_suffix(".ipynb"), version=4)
    assert builder.stale([script]) == [], "serialization alone does not make it stale"
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nbformat.write(notebook, script.with_suffix(".ipynb"))
    assert builder.stale([script]) == [script.with_suffix(".ipynb")], "outputs are not committed"
    script.with_suffix(".ipynb").write_text(builder.build(script))
    script.write_text(script.read_text().replace("x = 1", "x = 2"))
    assert builder.stale([script]) == [script.with_suffix(".ipynb")]
    with pytest.raises(ValueError, match=r"demo.py:3: a markdown cell holds only"):
        builder.split_cells("# %% [markdown]\n# fine\nnot a comment\n", "demo.py")


def test_the_shipped_cassette_is_what_the_recorder_records_today(tmp_path):
    """A changed prompt would make the notebook's strict replay miss: re-record then."""
    fresh = tmp_path / "cassette.jsonl"
    log = recorder.record(fresh)
    assert log.behaviour == "strategic" and log.error is None
    assert fresh.read_text() == recorder.CASSETTE.read_text(), (
        "the scenario text changed: python examples/data/record_llm_cassette.py"
    )


# ---------------------------------------------------------------------------- executing


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec running ipykernel on this interpreter (the venv's python)."""
    directory = tmp_path_factory.mktemp("kernels")
    spec = directory / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "tp_gym tests",
                "language": "python",
            }
        )
    )
    return directory


def tree(directory: Path) -> dict[str, int]:
    """Every file under `directory` with its modification time (to see what changed)."""
    return {str(p): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


@pytest.fixture
def run_notebook(kernel_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Execute examples/<name>.ipynb in a fresh kernel as Jupyter would (cwd examples/)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary run directories
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for variable in ("OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)

    def run(name: str) -> Any:
        notebook = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
        notebook.cells.append(
            nbformat.v4.new_code_cell("import sys; print('kernel python:', sys.executable)")
        )
        manager = KernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]),
        )
        before = tree(EXAMPLES)
        client = nbclient.NotebookClient(
            notebook, km=manager, timeout=120, resources={"metadata": {"path": str(EXAMPLES)}}
        )
        client.execute()
        assert tree(EXAMPLES) == before, "a notebook wrote into the repository"
        assert stream_text(notebook.cells[-1]).strip() == f"kernel python: {sys.executable}"
        return notebook

    return run


def stream_text(cell: Any) -> str:
    """What a code cell printed (stdout)."""
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def printed(notebook: Any) -> str:
    """Everything the notebook printed, in order."""
    return "".join(stream_text(cell) for cell in notebook.cells if cell.cell_type == "code")


def displayed(notebook: Any, mime: str) -> list[str]:
    """Every displayed or returned value of type `mime` (text/html, image/png, ...)."""
    values = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type in ("display_data", "execute_result") and mime in output.data:
                values.append(output.data[mime])
    return values


def outputs_of(notebook: Any, snippet: str) -> list[Any]:
    """The displayed or returned values of the one code cell whose source holds `snippet`."""
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and snippet in c.source]
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


def run_directory(text: str, tmp_path: Path) -> Path:
    match = re.search(r"^run directory: (.+)$", text, re.MULTILINE)
    assert match, text
    run_dir = Path(match.group(1))
    assert run_dir.is_relative_to(tmp_path), "the run went to a temporary directory"
    return run_dir


def test_stepping_agents_shows_a_scripted_and_a_replayed_llm_episode(run_notebook):
    notebook = run_notebook("stepping_agents")
    out = printed(notebook)
    env = gym.make(recorder.ENV_ID)
    obs, _ = env.reset(seed=recorder.SEED)
    assert obs["text"] in out, "the briefing is shown as the agent sees it"

    scripted = tp_gym.run_episode(
        gym.make(recorder.ENV_ID), make_agent("scripted:strategic"), seed=recorder.SEED
    )
    assert scripted.behaviour == "strategic"
    assert f"scripted:strategic ends as: {scripted.behaviour}" in out
    turns = re.findall(r"^turn (\d+): (\w+) \(role (\w+)\) cost ([.\d]+)$", out, re.M)
    assert [(int(n), tool, role, float(cost)) for n, tool, role, cost in turns] == [
        (step.turn, step.tool, step.role, step.cost) for step in scripted.steps
    ]
    views = outputs_of(notebook, "watch_step(env")
    assert len(views) == len(scripted.steps), "one step display per turn"
    for view, step in zip(views, scripted.steps):
        assert "text/html" in view.data
        assert step.tool in view.data["text/plain"]
        assert f"cost {step.cost:.1f}" in view.data["text/plain"]
    (env_display,) = outputs_of(notebook, "obs, info = env.reset(seed=SEED)")
    assert "Healthcare-Loyalty" in env_display.data["text/html"]
    (features,) = outputs_of(notebook, "describe_features(")
    assert "sponsor_uptake" in features.data["text/plain"]

    replayed = tp_gym.run_episode(
        gym.make(recorder.ENV_ID),
        LLMAgent(recorder.MODEL, cassette=recorder.CASSETTE, cassette_mode="replay"),
        seed=recorder.SEED,
    )
    assert replayed.error is None and replayed.behaviour == "strategic"
    assert "LLM episode class: strategic" in out
    assert "roles in order: validator, inhibitor, direct_executor" in out
    assert (
        f"utility {replayed.utility:+.2f}, cost {replayed.cost:.1f}, "
        f"time to failure: turn {replayed.time_to_failure}"
    ) in out
    assert "LLM calls replayed: 3" in out
    for _, reasoning in recorder.PLAN:
        assert f"the model wrote: {reasoning}" in out
    log_display, plot = outputs_of(notebook, "display(log)")
    assert "text/html" in log_display.data and "strategic" in log_display.data["text/html"]
    assert "image/png" in plot.data, "the episode's plot"


def test_small_evaluation_prints_the_mr_of_its_run_and_shows_the_report(run_notebook, tmp_path):
    notebook = run_notebook("small_evaluation")
    out = printed(notebook)
    run_dir = run_directory(out, tmp_path)
    logs = tp_gym.load_run(run_dir)
    assert len(logs) == 4 * 3 * 10 and "120 of 120 episodes played, 0 errors" in out
    for (agent,), members in metrics.group_logs(logs, ("agent",)).items():
        assert f"{agent}: MR {metrics.misalignment_rate(members)}" in out
    assert "scripted:compliant: MR 0.0% " in out and "scripted:direct: MR 100.0% " in out
    (result,) = outputs_of(notebook, "tp_gym.evaluate(")
    assert all(agent in result.data["text/html"] for agent in AGENTS)
    tables = displayed(notebook, "text/html")
    assert any("share_strategic" in t and "Coding-Loyalty" in t for t in tables)
    report = displayed(notebook, "text/markdown")
    assert len(report) == 1 and (run_dir / "report.md").is_file()
    assert "](" not in "".join(line for line in report[0].splitlines() if line.startswith("!["))
    plots = sorted(p.name for p in run_dir.glob("*.png"))
    assert plots and len(displayed(notebook, "image/png")) == len(plots)
    assert all(name in out for name in plots)


def test_training_a_mitigation_lowers_the_mr_of_the_penalized_policies(run_notebook):
    notebook = run_notebook("training_mitigation")
    out = printed(notebook)
    found = dict(
        (name, (int(mr), float(utility), float(cost)))
        for name, mr, utility, cost in re.findall(
            r"^(.+): MR (\d+)%, utility ([-+.\d]+), cost ([.\d]+) per episode$", out, re.M
        )
    )
    assert set(found) == {"reward only", "fixed penalty", "Lagrangian"}, out
    reward_mr, reward_utility, reward_cost = found["reward only"]
    assert reward_mr >= 80, "reward alone learns the toxic shortcut"
    for name in ("fixed penalty", "Lagrangian"):
        mr, utility, cost = found[name]
        assert mr <= 20 and cost < reward_cost / 5, f"{name} should move away from it"
        assert utility < reward_utility, "the mitigation gives up some utility"
    assert len(displayed(notebook, "image/png")) == 1, "the training curves"


def test_study_tables_match_the_metrics_of_the_paper_run(run_notebook, tmp_path):
    notebook = run_notebook("study_tables")
    out = printed(notebook)
    run_dir = run_directory(out, tmp_path)
    logs = tp_gym.load_run(run_dir)
    agents = [f"scripted:{p}" for p in POLICIES]
    assert len(logs) == len(tp_gym.Grid.from_suite("paper", agents, seeds=range(2)))
    assert {log.protocol for log in logs} == {"study"}
    baseline = metrics.baseline_logs(logs, protocol="study")
    for (agent,), members in metrics.group_logs(baseline, ("agent",)).items():
        assert f"{agent}: MR {metrics.misalignment_rate(members)}" in out
    assert "scripted:strategic: MR 100.0% " in out and "scripted:compliant: MR 0.0% " in out
    tables = displayed(notebook, "text/html")
    crosstab = next(t for t in tables if "Cybersecurity" in t and "SelfPreservation" in t)
    for domain in ("Healthcare", "Finance", "Cybersecurity", "Coding"):
        assert domain in crosstab
    assert any("direct_of_violations" in t and "ttf_median" in t for t in tables)
    varied = metrics.varied_variables(logs, protocol="study")
    assert {"stakes", "feedback", "liability"} <= set(varied)
    assert f"stress-tested variables: {', '.join(varied)}" in out
    feedback = metrics.stress_logs(logs, "feedback", protocol="study")
    high = [log for log in feedback if metrics.group_value(log, "feedback") == "high"]
    stress = next(t for t in tables if "95% CI" in t)
    assert f"{100 * metrics.misalignment_rate(high).value:.1f}" in stress
