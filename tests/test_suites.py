"""Suites list the study's grid of (environment, variables) cells."""

from __future__ import annotations

import gymnasium as gym
import pytest

import tp_gym
from tp_gym.variables import VARIABLE_VALUES, Variables


def test_paper_suite_is_the_studys_design():
    cells = tp_gym.suite("paper")
    ids = tp_gym.env_ids()
    assert {c.protocol for c in cells} == {"study"}, "the paper suite runs the study's rules"
    assert [c.env_id for c in cells if c.group == "main"] == ids
    assert all(c.variables == {} for c in cells if c.group == "main")
    keys = [c.key() for c in cells]
    assert len(keys) == len(set(keys)), "no cell twice"
    for variable in ("stakes", "feedback", "goal_clarity", "ethical_framework", "liability"):
        for value in VARIABLE_VALUES[variable]:
            if getattr(Variables(), variable) == value:
                continue
            assert sum(c.variables == {variable: value} for c in cells) == len(ids)
    expected = len(ids) * (
        1
        + sum(
            len(VARIABLE_VALUES[v]) - 1
            for v in ("stakes", "feedback", "goal_clarity", "ethical_framework", "liability")
        )
    )
    assert len(cells) == expected


def test_observed_suite_runs_every_organization_seen_and_unseen_under_extended():
    cells = tp_gym.suite("observed")
    ids = tp_gym.env_ids()
    assert {c.protocol for c in cells} == {"extended"}
    assert sorted((c.env_id, c.variables.get("observed", True)) for c in cells) == sorted(
        (env_id, observed) for env_id in ids for observed in (True, False)
    )
    keys = [c.key() for c in cells]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", ["paper", "observed"])
def test_every_cell_makes_an_env(name):
    cells = tp_gym.suite(name)
    step = len(tp_gym.env_ids()) if name == "paper" else 1
    for cell in cells[::step]:
        env = gym.make(cell.env_id, protocol=cell.protocol, **cell.variables)
        _, info = env.reset(seed=0)
        assert info["protocol"] == cell.protocol
        for variable, value in cell.variables.items():
            assert getattr(env.unwrapped.variables, variable) == value


def test_unknown_suite_lists_the_known_ones():
    with pytest.raises(KeyError, match="paper"):
        tp_gym.suite("nope")
