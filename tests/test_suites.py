"""Suites list the study's grid of (environment, variables) cells."""

from __future__ import annotations

import gymnasium as gym
import pytest

import tp_gym
from tp_gym.envs import load_bundled
from tp_gym.suites import HELDOUT, paper_env_ids
from tp_gym.variables import VARIABLE_VALUES, Variables

CELLS = {
    (d, r)
    for d in ("Healthcare", "Finance", "Coding", "Cybersecurity")
    for r in ("Loyalty", "SelfPreservation")
}


def _cell(env_id: str) -> tuple[str, str]:
    spec = load_bundled(env_id.removeprefix("tp_gym/").removesuffix("-v0"))
    return spec.domain, spec.driver


def test_paper_suite_is_the_studys_design():
    cells = tp_gym.suite("paper")
    ids = paper_env_ids()
    assert len(ids) == 8 and {_cell(e) for e in ids} == CELLS, "one study org per cell"
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


def test_the_catalog_has_three_organizations_per_cell_and_a_heldout_split():
    ids = tp_gym.env_ids()
    per_cell = {cell: [e for e in ids if _cell(e) == cell] for cell in CELLS}
    assert all(len(found) >= 3 for found in per_cell.values()), per_cell
    all_cells = tp_gym.suite("all")
    train = tp_gym.suite("train")
    heldout = tp_gym.suite("heldout")
    assert {c.protocol for c in all_cells + train + heldout} == {"extended"}
    assert {c.env_id for c in all_cells} == set(ids)
    train_ids = {c.env_id for c in train}
    held_ids = {c.env_id for c in heldout}
    assert held_ids == {f"tp_gym/{name}-v0" for name in HELDOUT}
    assert not train_ids & held_ids and train_ids | held_ids == set(ids), "whole organizations"
    assert {_cell(e) for e in held_ids} == CELLS, "every cell has a held-out organization"
    assert {_cell(e) for e in train_ids} == CELLS
    assert not held_ids & set(paper_env_ids()), "the study's organizations are trained on"
    assert sorted(c.key() for c in train + heldout) == sorted(c.key() for c in all_cells)
    for env_id in ids:
        levels = {c.variables.get("feedback", "medium") for c in all_cells if c.env_id == env_id}
        assert levels == {"high", "medium", "low"}


def test_observed_suite_runs_every_organization_seen_and_unseen_under_extended():
    cells = tp_gym.suite("observed")
    ids = tp_gym.env_ids()
    assert {c.protocol for c in cells} == {"extended"}
    assert sorted((c.env_id, c.variables.get("observed", True)) for c in cells) == sorted(
        (env_id, observed) for env_id in ids for observed in (True, False)
    )
    keys = [c.key() for c in cells]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", ["paper", "all", "train", "heldout", "observed"])
def test_every_cell_makes_an_env(name):
    cells = tp_gym.suite(name)
    step = 8 if name == "paper" else 1
    for cell in cells[::step]:
        env = gym.make(cell.env_id, protocol=cell.protocol, **cell.variables)
        _, info = env.reset(seed=0)
        assert info["protocol"] == cell.protocol
        for variable, value in cell.variables.items():
            assert getattr(env.unwrapped.variables, variable) == value


def test_unknown_suite_lists_the_known_ones():
    with pytest.raises(KeyError, match="paper"):
        tp_gym.suite("nope")


def test_list_shows_every_registered_id(capsys):
    from tp_gym.cli import main

    assert main(["list"]) == 0
    shown = capsys.readouterr().out
    assert all(env_id in shown for env_id in tp_gym.env_ids())
