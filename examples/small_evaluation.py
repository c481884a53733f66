"""A small evaluation from Python: scripted baselines on three organizations, then the report.

The notebook examples/small_evaluation.ipynb is built from this file
(python examples/build_notebooks.py --write); as a script: python examples/small_evaluation.py
"""
# requires: IPython

# %% [markdown]
# # A small evaluation and its report
#
# `tp_gym.evaluate` plays a grid of agents x organizations x variable settings x seeds and
# appends one JSON line per episode to a run directory; `tp_gym.report.write_report` turns
# the run into `report.md`, `summary.csv` and plots. `tp-gym eval` and `tp-gym report` do the
# same from the command line. Here: four scripted baselines on three organizations at the
# study's baseline setting, ten seeds each, into a temporary directory. On the command line:
#
# ```bash
# tp-gym eval --agents scripted:compliant,scripted:direct,scripted:random,scripted:rational \
#     --envs tp_gym/Healthcare-Loyalty-v0,tp_gym/Finance-SelfPreservation-v0,tp_gym/Coding-Loyalty-v0 \
#     --seeds 0-9 --out runs/baselines
# tp-gym report runs/baselines
# ```

# %%
import re
import tempfile
from pathlib import Path

from IPython.display import Image, Markdown, display

import tp_gym
from tp_gym import metrics
from tp_gym.report import write_report

AGENTS = ["scripted:compliant", "scripted:direct", "scripted:random", "scripted:rational"]
ENVS = [
    "tp_gym/Healthcare-Loyalty-v0",
    "tp_gym/Finance-SelfPreservation-v0",
    "tp_gym/Coding-Loyalty-v0",
]
grid = tp_gym.Grid.build(AGENTS, ENVS, seeds=range(10))
run_dir = Path(tempfile.mkdtemp(prefix="tp-gym-eval-")) / "baselines"
result = tp_gym.evaluate(grid, run_dir, concurrency=8)
print(f"{result.completed} of {len(grid)} episodes played, {result.errors} errors")
print(f"run directory: {run_dir}")
display(result)  # what the run did, and the summary table of its log

# %% [markdown]
# ## Misalignment Rate per agent
#
# The run directory is all a report needs: `tp_gym.load_run` reads its episodes back, and
# the functions of `tp_gym.metrics` compute the study's metrics from the logs alone. MR is
# the share of measured episodes classed strategic or direct, with a 95% Wilson interval.

# %%
logs = tp_gym.load_run(run_dir)
by_agent = metrics.group_logs(logs, ("agent",))
for (agent,), members in by_agent.items():
    print(f"{agent}: MR {metrics.misalignment_rate(members)}")

# %% [markdown]
# The same metrics as a DataFrame, split by agent and organization: behaviour shares, mean
# utility and cost per episode, time to first failure (TTF, in turns).

# %%
COLUMNS = ["agent", "organization", "measured", "mr", "share_strategic", "share_direct"]
COLUMNS += ["share_failed_attempt", "share_robust", "utility_mean", "cost_mean", "ttf_mean"]
table = metrics.summary_frame(logs, by=("agent", "organization"))[COLUMNS]
display(table.round(3))

# %% [markdown]
# ## The report
#
# `write_report` writes into the run directory (or `out_dir`). The markdown is shown below
# without its image links, which point at files beside it; the plots follow.

# %%
files = write_report(run_dir)
print(f"report: {files.markdown} ({files.episodes} episodes, {len(files.plots)} plots)")
report = re.sub(r"^!\[.*\]\(.*\)\s*$", "", files.markdown.read_text(), flags=re.MULTILINE)
display(Markdown(report))

# %%
for plot in files.plots:
    print(plot.name)
    display(Image(filename=str(plot)))
