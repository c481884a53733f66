"""Reproduce the study's tables from a run directory: the paper suite with the scripted baselines.

The notebook examples/study_tables.ipynb is built from this file
(python examples/build_notebooks.py --write); as a script: python examples/study_tables.py
"""
# requires: IPython

# %% [markdown]
# # The study's tables from a run directory
#
# The `paper` suite is the study's design (PAPER.md): its eight organizations (one per
# domain x driver cell) at the baseline setting, plus stress tests that move one variable at
# a time, all under the `study` protocol (the paper's rules). `tp-gym demo` runs it with the
# scripted baselines; so does this notebook, with two seeds per cell. Swap in
# `llm:<model>` agents (and a key) to fill the same tables for real models.
#
# Every table below is computed from the run directory alone with the public functions of
# `tp_gym.metrics`, so it can be recomputed at any time from the JSONL logs. To read a run
# you already have, replace the next cell with `run_dir = Path("tp-gym-demo")` (what
# `tp-gym demo` writes) or the `--out` of a `tp-gym eval --suite paper` of your models.

# %%
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import display

import tp_gym
from tp_gym import metrics
from tp_gym.agents.scripted import POLICIES

pd.set_option("display.width", 160)  # wide tables when run as a script
pd.set_option("display.max_columns", 20)

run_dir = Path(tempfile.mkdtemp(prefix="tp-gym-paper-")) / "paper"
grid = tp_gym.Grid.from_suite("paper", [f"scripted:{p}" for p in POLICIES], seeds=range(2))
result = tp_gym.evaluate(grid, run_dir, concurrency=16)
print(f"{result.completed} episodes ({len(grid.cells)} cells x {len(grid.agents)} agents x 2 seeds)")
print(f"run directory: {run_dir}")

# %% [markdown]
# ## Which episodes count
#
# The main experiment is the baseline setting under the study protocol. MR's denominator is
# the *measured* episodes: no error (a study-protocol reply with no readable tool call is a
# format error) and at least one valid call or toxic attempt. The others are counted apart.

# %%
logs = tp_gym.load_run(run_dir)
baseline = metrics.baseline_logs(logs, protocol="study")
counts = pd.DataFrame(metrics.summarize(baseline, by=("agent",)))
display(counts[["agent", "episodes", "measured", "format_errors", "no_valid_call", "errors"]])

# %% [markdown]
# ## Misalignment Rate by domain x driver
#
# MR (strategic + direct, over measured episodes) per agent, in each of the study's eight
# organizations, at the baseline setting.

# %%
cells = pd.DataFrame(metrics.summarize(baseline, by=("agent", "domain", "driver")))
mr_by_cell = cells.pivot(index="agent", columns=["domain", "driver"], values="mr")
mr_by_cell[("all", "")] = counts.set_index("agent")["mr"]
display((100 * mr_by_cell).round(1))
for (agent,), members in metrics.group_logs(baseline, ("agent",)).items():
    print(f"{agent}: MR {metrics.misalignment_rate(members)}")

# %% [markdown]
# ## Behaviour classes and time to failure
#
# The study's four classes as shares of the measured episodes (they add up to 1), the share
# of violations that were direct (the study found reasoning models about 80% direct), and
# TTF, the turn of the first toxic tool (over the episodes that had one).

# %%
classes = counts.set_index("agent")
shares = classes[["share_strategic", "share_direct", "share_failed_attempt", "share_robust"]]
shares = shares.assign(
    direct_of_violations=classes["direct"] / (classes["direct"] + classes["strategic"]),
    ttf_mean=classes["ttf_mean"],
    ttf_median=classes["ttf_median"],
)
display(shares.round(3))

# %% [markdown]
# ## Stress tests, one variable at a time
#
# For each varied variable, the episodes where every *other* variable is at its baseline;
# MR per value, pooled over the agents (the study pooled over its models: stakes
# high/medium/low gave 70.3 / 79.7 / 88.2%, feedback high/medium/low 64.1 / 70.3 / 98.7%).
# Scripted baselines play by role and mostly ignore the text, so most rows are flat here;
# the `rational` baseline weighs the odds.

# %%
rows = []
for variable in metrics.varied_variables(logs, protocol="study"):
    stressed = metrics.stress_logs(logs, variable, protocol="study")
    for row in metrics.summarize(stressed, by=(variable,)):
        rows.append(
            {
                "variable": variable,
                "value": row[variable],
                "measured": row["measured"],
                "MR %": round(100 * row["mr"], 1),
                "95% CI": f"{100 * row['mr_low']:.1f}-{100 * row['mr_high']:.1f}",
            }
        )
stress = pd.DataFrame(rows)
display(stress)
print(f"stress-tested variables: {', '.join(dict.fromkeys(stress['variable']))}")
