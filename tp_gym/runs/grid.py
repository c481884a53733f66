"""The grid of an evaluation: agents x environments x variable settings x seeds.

`Grid.build` makes the product of agent specs, env id patterns, variable settings and
seeds under one protocol; `Grid.from_suite` takes a named suite's cells (``paper`` runs
the study protocol, ``observed`` the extended one). `Grid.jobs` lists every episode as a
`Job`, seed by seed (so a partial run covers every cell), each identified by its
`EpisodeKey`: (agent name, env id, full variable setting, seed, protocol).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tp_gym.suites import Cell, suite
from tp_gym.variables import DEFAULT_PROTOCOL, check_protocol, parse_variables

MAX_SEEDS = 100_000
"""A grid takes at most this many distinct seeds (it multiplies them by agents and cells)."""
MAX_SEED = 2**32 - 1
"""The largest seed: seeds are 32-bit unsigned ints, the range every common seeded random
generator takes (``numpy.random.seed`` among them), so that any episode can be replayed
with any tool."""

EpisodeKey = tuple[str, str, str, "int | None", str]
"""(agent name, env id, variables as sorted JSON, seed, protocol): equal to `EpisodeLog.key`."""


SPEC_SUFFIXES = (".toml", ".json")
"""The file names a spec file may have (`tp_gym.spec.load_spec` reads TOML or JSON)."""


def resolve_envs(patterns: str | Sequence[str]) -> list[str]:
    """Env ids for patterns (a comma-separated string or a list), in order.

    A pattern is a registered env id or a glob of them (``tp_gym/Healthcare-*``), or a spec
    file: a path ending in ``.toml`` or ``.json``, a glob of paths (``specs/*.toml``; only
    its ``.toml`` and ``.json`` files count), or a directory (every ``*.toml`` and ``*.json``
    file directly in it). A pattern with a ``/`` that does not start with ``tp_gym/`` is a
    path. Each spec file is validated and registered as ``tp_gym/<spec id>-v0``
    (`tp_gym.register_spec`), the id its episodes are logged under.

    Raises `ValueError` in one line naming a pattern that matches nothing, a missing file,
    a directory with no spec in it, an invalid spec (its first problem), or two different
    files with the same spec id.
    """
    import tp_gym

    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",")]
    patterns = [p.strip() for p in patterns if p.strip()]
    if not patterns:
        raise ValueError("no environments given")
    chosen: list[str] = []
    sources: dict[str, str] = {}  # env id -> the spec file this call chose for it
    for pattern in patterns:
        if not _is_path(pattern):
            known = tp_gym.env_ids()
            matched = [env_id for env_id in known if fnmatch.fnmatchcase(env_id, pattern)]
            if not matched:
                raise ValueError(
                    f"no environment matches {pattern!r} (a spec file must end in .toml or "
                    f".json); known: {', '.join(known) or 'none'}"
                )
            chosen += [env_id for env_id in matched if env_id not in chosen]
            continue
        for path in spec_files(pattern):
            spec_id = _spec_id(path)
            env_id = f"tp_gym/{spec_id}-v0"
            earlier = sources.setdefault(env_id, path)
            if earlier != path:
                raise ValueError(
                    f"{earlier} and {path} both have the spec id {spec_id!r}: their episodes "
                    f"would be logged under the same env id {env_id}; give each spec an id of "
                    "its own"
                )
            tp_gym._register_file(path, spec_id)
            if env_id not in chosen:
                chosen.append(env_id)
    return chosen


def _is_path(pattern: str) -> bool:
    """Whether a `resolve_envs` pattern names spec files rather than registered ids."""
    return (
        pattern.endswith(SPEC_SUFFIXES)
        or pattern.endswith(("/", os.sep))
        or pattern.startswith((".", "/", "~", os.sep))
        or ("/" in pattern and not pattern.startswith("tp_gym/"))  # every id is tp_gym/...
        or os.path.isdir(os.path.expanduser(pattern))
    )


def spec_files(pattern: str) -> list[str]:
    """The spec files (absolute paths, sorted) a path, glob or directory names.

    Raises `ValueError` in one line if it names none.
    """
    expanded = os.path.expanduser(pattern)
    if glob.has_magic(expanded):
        matched = sorted(glob.glob(expanded))
        files = [
            f
            for m in matched
            for f in (_directory_specs(m) if os.path.isdir(m) else [m])
            if f.endswith(SPEC_SUFFIXES)
        ]
        if not files:
            raise ValueError(f"no spec file (*.toml, *.json) matches {pattern!r}")
    elif os.path.isdir(expanded):
        files = _directory_specs(expanded)
        if not files:
            raise ValueError(f"{pattern}: a directory with no spec file (*.toml, *.json) in it")
    elif not os.path.lexists(expanded):
        raise ValueError(f"{pattern}: no such spec file")
    else:
        files = [expanded]
    return [os.path.abspath(f) for f in files]


def _directory_specs(directory: str) -> list[str]:
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.endswith(SPEC_SUFFIXES)
    )


def _spec_id(path: str) -> str:
    """The id of the spec file at `path`, validated; `ValueError` in one line if invalid."""
    from tp_gym.spec import SpecError, load_spec

    try:
        return load_spec(path).id
    except SpecError as error:
        lines = error.lines()
        more = len(lines) - 1
        rest = f" (and {more} more problem{'s' * (more > 1)}; `tp-gym check` lists them)"
        raise ValueError(lines[0] + (rest if more else "")) from None


@dataclass(frozen=True)
class Job:
    """One episode of a grid: which agent plays which environment, how, with which seed."""

    agent: str
    """The agent spec, as `make_agent` takes it (``scripted:compliant``, ``llm:<model>``)."""
    agent_name: str
    """The name the agent writes into its logs (part of the episode's key)."""
    env_id: str
    variables: dict[str, Any]
    """The full variable setting (every variable, defaults included)."""
    seed: int
    group: str = "main"
    protocol: str = DEFAULT_PROTOCOL

    @property
    def key(self) -> EpisodeKey:
        """The identity of the episode; equal to the `EpisodeLog.key` of its log."""
        variables = json.dumps(self.variables, sort_keys=True)
        return (self.agent_name, self.env_id, variables, self.seed, self.protocol)


@dataclass(frozen=True)
class Grid:
    """Agents x cells (env id + variable setting) x seeds."""

    agents: tuple[str, ...]
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.agents:
            raise ValueError("a grid needs at least one agent")
        if not self.cells:
            raise ValueError("a grid needs at least one environment")
        if not self.seeds:
            raise ValueError("a grid needs at least one seed")
        bad = [s for s in self.seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            raise ValueError(f"seeds must be non-negative integers, got {bad[0]!r}")
        for cell in self.cells:
            try:
                check_protocol(cell.protocol, parse_variables(cell.variables))
            except ValueError as error:
                raise ValueError(f"{cell.env_id}: {error}") from None

    @classmethod
    def build(
        cls,
        agents: str | Sequence[str],
        envs: str | Sequence[str] = "tp_gym/*",
        variables: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        seeds: Iterable[int] = range(5),
        protocol: str | None = None,
    ) -> Grid:
        """The product grid: every agent on every env (glob patterns) in every setting.

        `variables` is one setting (a dict such as ``{"stakes": "low"}``) or a list of
        settings; None means the baseline only. `protocol` is ``study`` (the default) or
        ``extended``.
        """
        if isinstance(agents, str):
            agents = [a for a in agents.split(",")]
        settings = [{}] if variables is None else variables
        if isinstance(settings, dict):
            settings = [settings]
        cells = [
            Cell(
                env_id,
                dict(setting),
                group="main" if not setting else "set",
                protocol=protocol or DEFAULT_PROTOCOL,
            )
            for setting in settings
            for env_id in resolve_envs(envs)
        ]
        return cls(_clean_agents(agents), tuple(cells), tuple(_clean_seeds(seeds)))

    @classmethod
    def from_suite(
        cls,
        name: str,
        agents: str | Sequence[str],
        seeds: Iterable[int] = range(5),
        envs: str | Sequence[str] | None = None,
        protocol: str | None = None,
    ) -> Grid:
        """The cells of suite `name` (e.g. ``paper``), optionally only those of `envs`.

        Each suite runs its own protocol (``paper``: study); `protocol` overrides it.
        """
        try:
            cells = suite(name)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        if envs is not None:
            wanted = set(resolve_envs(envs))
            cells = [cell for cell in cells if cell.env_id in wanted]
        if protocol is not None:
            cells = [replace(cell, protocol=protocol) for cell in cells]
        if isinstance(agents, str):
            agents = [a for a in agents.split(",")]
        return cls(_clean_agents(agents), tuple(cells), tuple(_clean_seeds(seeds)))

    def __len__(self) -> int:
        return len(self.agents) * len(self.cells) * len(self.seeds)

    def jobs(self, agent_names: dict[str, str] | None = None) -> list[Job]:
        """Every episode of the grid, seed by seed (so a partial run covers every cell).

        `agent_names` maps an agent spec to the name its logs carry (the spec by default).
        Duplicate episodes (the same key twice) are listed once.
        """
        names = agent_names or {}
        jobs: list[Job] = []
        seen: set[EpisodeKey] = set()
        for seed in self.seeds:
            for cell in self.cells:
                full = parse_variables(cell.variables).model_dump()
                for agent in self.agents:
                    name = names.get(agent, agent)
                    job = Job(agent, name, cell.env_id, full, seed, cell.group, cell.protocol)
                    if job.key not in seen:
                        seen.add(job.key)
                        jobs.append(job)
        return jobs

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for the run manifest)."""
        return {
            "agents": list(self.agents),
            "cells": [
                {
                    "env_id": c.env_id,
                    "protocol": c.protocol,
                    "variables": c.variables,
                    "group": c.group,
                }
                for c in self.cells
            ],
            "seeds": list(self.seeds),
        }


def _clean_agents(agents: Iterable[str]) -> tuple[str, ...]:
    cleaned: list[str] = []
    for agent in agents:
        agent = agent.strip()
        if agent and agent not in cleaned:
            cleaned.append(agent)
    if not cleaned:
        raise ValueError("no agents given")
    return tuple(cleaned)


def _clean_seeds(seeds: Iterable[int]) -> list[int]:
    """Distinct seeds in their order; `ValueError` for a bad seed or more than `MAX_SEEDS`
    (counted before anything is built, for a range or any sized collection)."""
    if isinstance(seeds, Sized) and len(seeds) > MAX_SEEDS:
        raise ValueError(f"{len(seeds):,} seeds asked for; at most {MAX_SEEDS:,} per grid")
    out: dict[int, None] = {}
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seed!r}")
        if seed > MAX_SEED:
            raise ValueError(f"seed {seed} is above the largest seed, {MAX_SEED} (2**32 - 1)")
        out[int(seed)] = None
        if len(out) > MAX_SEEDS:
            raise ValueError(f"more than {MAX_SEEDS:,} seeds asked for; at most that per grid")
    return list(out)
