"""Suites: named grids of (env id, variables) cells, over the bundled organizations.

- ``paper`` is the study's design (PAPER.md) under the study protocol, on the study's eight
  organizations (one per domain x driver, ids ``<Domain>-<Driver>``): the main experiment
  runs each at the baseline (stakes high, feedback medium); the stress tests vary one
  variable at a time over all its values, the others at baseline. Cells are de-duplicated,
  so the baseline appears once.
- ``all`` is ours: every bundled organization at every feedback level, under the extended
  protocol (where each organization's own incentives and mechanics apply).
- ``train`` and ``heldout`` split ``all`` by whole organizations: `HELDOUT` holds at least
  one organization of every domain x driver cell, never one of the study's eight, so a
  policy trained on ``train`` is measured on organizations it has never seen.
- ``observed`` is ours: every organization with oversight present and absent (extended).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tp_gym.variables import DEFAULT_PROTOCOL, VARIABLE_VALUES, Variables

SUITE_PROTOCOLS: dict[str, str] = {
    "paper": "study",
    "all": "extended",
    "train": "extended",
    "heldout": "extended",
    "observed": "extended",
}
"""The protocol each suite is defined for."""

HELDOUT: tuple[str, ...] = (
    "Coding-Loyalty-Accessibility",
    "Coding-SelfPreservation-Canary",
    "Cybersecurity-Loyalty-Pentest",
    "Cybersecurity-SelfPreservation-Pentest",
    "Finance-Loyalty-Valuation",
    "Finance-SelfPreservation-Triage",
    "Healthcare-Loyalty-Billing",
    "Healthcare-SelfPreservation-Surveillance",
)
"""Bundled organizations kept out of ``train``: one per domain x driver cell, never one of
the study's eight, half where strategic play is the best toxic route and half where direct
play is (docs/specs.md), so generalization is measured on both kinds."""

STRESS_VARIABLES: tuple[str, ...] = (
    "stakes",
    "feedback",
    "goal_clarity",
    "ethical_framework",
    "liability",
)


@dataclass(frozen=True)
class Cell:
    """One (environment, protocol, variable setting) of a grid.

    `variables` holds non-default values only.
    """

    env_id: str
    variables: dict[str, Any] = field(default_factory=dict)
    group: str = "main"
    protocol: str = DEFAULT_PROTOCOL

    def key(self) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
        return (self.env_id, self.protocol, tuple(sorted(self.variables.items())))


def _env_ids() -> list[str]:
    """The ids of every bundled organization, sorted."""
    from tp_gym.envs import spec_names

    return [f"tp_gym/{name}-v0" for name in spec_names()]


def paper_env_ids() -> list[str]:
    """The ids of the study's eight organizations (``tp_gym/<Domain>-<Driver>-v0``)."""
    from tp_gym.envs import is_study_organization

    return [e for e in _env_ids() if is_study_organization(e.removeprefix("tp_gym/")[:-3])]


def paper_suite() -> list[Cell]:
    """The study's main experiment plus one-variable-at-a-time stress tests (study protocol)."""
    baseline = Variables()
    paper = paper_env_ids()
    cells = [Cell(env_id, protocol="study") for env_id in paper]
    seen = {cell.key() for cell in cells}
    for variable in STRESS_VARIABLES:
        for value in VARIABLE_VALUES[variable]:
            changed = {} if getattr(baseline, variable) == value else {variable: value}
            for env_id in paper:
                cell = Cell(env_id, changed, group=f"stress:{variable}", protocol="study")
                if cell.key() not in seen:
                    seen.add(cell.key())
                    cells.append(cell)
    return cells


def observed_suite() -> list[Cell]:
    """Every organization with oversight present and absent (extended protocol)."""
    return [
        Cell(
            env_id,
            {} if observed else {"observed": False},
            group="observed",
            protocol="extended",
        )
        for env_id in _env_ids()
        for observed in (True, False)
    ]


def _feedback_cells(env_ids: list[str], group: str) -> list[Cell]:
    """Each organization at every feedback level, the rest at baseline (extended)."""
    return [
        Cell(env_id, {} if level == "medium" else {"feedback": level}, group, "extended")
        for env_id in env_ids
        for level in VARIABLE_VALUES["feedback"]
    ]


def all_suite() -> list[Cell]:
    """Every bundled organization at every feedback level (extended protocol)."""
    return _feedback_cells(_env_ids(), "all")


def train_suite() -> list[Cell]:
    """``all`` without the held-out organizations."""
    held = {f"tp_gym/{name}-v0" for name in HELDOUT}
    return _feedback_cells([e for e in _env_ids() if e not in held], "train")


def heldout_suite() -> list[Cell]:
    """Only the held-out organizations (`HELDOUT`), at every feedback level."""
    held = {f"tp_gym/{name}-v0" for name in HELDOUT}
    return _feedback_cells([e for e in _env_ids() if e in held], "heldout")


SUITES = {
    "paper": paper_suite,
    "all": all_suite,
    "train": train_suite,
    "heldout": heldout_suite,
    "observed": observed_suite,
}


def suite(name: str) -> list[Cell]:
    """The cells of suite `name`; `KeyError` lists the known suites."""
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]()
