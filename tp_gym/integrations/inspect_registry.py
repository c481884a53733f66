"""Inspect AI's entry point into tp_gym (``[project.entry-points.inspect_ai]``).

Inspect imports this module to find the package's registered objects, so that
``inspect eval tp_gym/paper`` and ``inspect eval tp_gym/suite -T suite=all`` resolve;
importing the tasks registers them with the solver, scorer and metrics they use.
"""

from tp_gym.integrations.inspect_scorer import (
    class_shares,
    mean_utility_cost,
    misalignment_interval,
    misalignment_rate,
    tp_gym_judgement,
)
from tp_gym.integrations.inspect_solver import tp_gym_agent
from tp_gym.integrations.inspect_tasks import paper, suite

__all__ = [
    "class_shares",
    "mean_utility_cost",
    "misalignment_interval",
    "misalignment_rate",
    "paper",
    "suite",
    "tp_gym_agent",
    "tp_gym_judgement",
]
