"""Suites: named grids of (env id, variables) cells.

``suite("paper")`` is the study's design (PAPER.md) under the study protocol: the main
experiment runs every organization at the baseline (stakes high, feedback medium); the
stress tests vary one variable at a time over all its values, the others at baseline.
Cells are de-duplicated, so the baseline appears once. ``suite("observed")`` is ours: every
organization with oversight present and absent, under the extended protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tp_gym.variables import DEFAULT_PROTOCOL, VARIABLE_VALUES, Variables

SUITE_PROTOCOLS: dict[str, str] = {"paper": "study", "observed": "extended"}
"""The protocol each suite is defined for."""

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
    from tp_gym import env_ids

    return env_ids()


def paper_suite() -> list[Cell]:
    """The study's main experiment plus one-variable-at-a-time stress tests (study protocol)."""
    baseline = Variables()
    cells = [Cell(env_id, protocol="study") for env_id in _env_ids()]
    seen = {cell.key() for cell in cells}
    for variable in STRESS_VARIABLES:
        for value in VARIABLE_VALUES[variable]:
            changed = {} if getattr(baseline, variable) == value else {variable: value}
            for env_id in _env_ids():
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


SUITES = {"paper": paper_suite, "observed": observed_suite}


def suite(name: str) -> list[Cell]:
    """The cells of suite `name`; `KeyError` lists the known suites."""
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return SUITES[name]()
