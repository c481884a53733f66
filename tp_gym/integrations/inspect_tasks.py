"""tp_gym's organizations as Inspect AI tasks: ``inspect eval tp_gym/paper``.

Two tasks, registered through the ``inspect_ai`` entry point (`inspect_registry`):

- ``tp_gym/paper``: the study's design (the ``paper`` suite: eight organizations, baseline
  plus one-variable-at-a-time stress tests) under the study protocol;
- ``tp_gym/suite``: any named suite (``-T suite=all``), the same arguments otherwise.

Task arguments (``-T name=value`` on the command line, keywords in Python):

``orgs``
    Organizations: env ids or globs (``tp_gym/Healthcare-*``), as ``tp-gym eval --envs``
    takes them, and spec files; a pattern without ``/`` is completed with ``tp_gym/``
    (and ``-v0`` when it has no glob), so ``-T orgs=Healthcare-Loyalty`` works. Only the
    suite's cells of these organizations are kept.
``variables``
    A variable grid in the syntax of ``tp-gym eval --set``: ``stakes=high,low`` sweeps one
    variable, ``stakes=low,feedback=high`` sets two (a value without ``=`` continues the
    variable before it). It replaces the suite's own variable cells: every chosen
    organization (all of the suite's by default) runs in every setting.
``seeds``
    ``0-24`` (the default, the study's 25 runs, as ``tp-gym eval``), ``3`` or ``0,5,9-11``.
``protocol``
    ``study`` or ``extended``; the suite's own protocol by default.

One `Sample` per (organization, variable setting, seed); its metadata holds the env id,
organization, domain, driver, the full variable setting, the seed, the protocol and the
suite's group (``main``, ``stress:stakes``, ...). The solver (`tp_gym_agent`) plays the
episode and the scorer (`tp_gym_judgement`) reports tp_gym's judgement of it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.util import registry_info

from tp_gym.integrations.inspect_scorer import tp_gym_judgement
from tp_gym.integrations.inspect_solver import tp_gym_agent

DEFAULT_SEEDS = "0-24"
"""The seeds a task runs by default: the study's 25 runs, as `tp-gym eval`."""
GRID_AGENT = "inspect"
"""The placeholder agent of the grid the samples are drawn from (Inspect's model plays)."""
SPEC_SUFFIXES = (".toml", ".json")

Patterns = str | Sequence[str] | None


try:  # Inspect's command line prints this kind of error as its message, no traceback
    from inspect_ai._util.error import PrerequisiteError as _UserError
except ImportError:  # pragma: no cover - an Inspect that moved it: a traceback, still clear
    _UserError = Exception  # type: ignore[assignment,misc]


class TaskArgumentError(ValueError, _UserError):
    """A task argument Inspect was given cannot be used; the message names the argument.

    ``str(error)`` starts with the argument's name (``seeds: ...``); ``inspect eval`` prints
    it as one line (``message``), as it prints its own usage errors.
    """

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.message = f"tp_gym task argument {message}"


def paper(
    orgs: Patterns = None,
    variables: str | Sequence[str] | dict[str, Any] | None = None,
    seeds: str | int | Sequence[int | str] = DEFAULT_SEEDS,
    protocol: str | None = None,
) -> Task:
    """The study's design: the ``paper`` suite (study protocol unless `protocol` says else).

    See the module docstring for the arguments.
    """
    return suite_task("paper", orgs=orgs, variables=variables, seeds=seeds, protocol=protocol)


def suite(
    suite: str = "paper",
    orgs: Patterns = None,
    variables: str | Sequence[str] | dict[str, Any] | None = None,
    seeds: str | int | Sequence[int | str] = DEFAULT_SEEDS,
    protocol: str | None = None,
) -> Task:
    """Any named suite of tp_gym (paper, all, train, heldout, observed) as an Inspect task.

    See the module docstring for the arguments.
    """
    return suite_task(suite, orgs=orgs, variables=variables, seeds=seeds, protocol=protocol)


def _registered(function: Any) -> Any:
    """`function` as an Inspect task named ``tp_gym/<its name>``, however tp_gym is installed.

    Inspect prefixes a task's name with its package only when it can tell the package is
    installed; from a source checkout with an editable install, setuptools' ``*.egg-info``
    in the working directory hides that (Inspect then reads the egg-info, which has no
    ``direct_url.json``) and the name would be a bare ``paper``, which ``inspect eval
    tp_gym/paper`` cannot find. The prefixed name is then registered explicitly.
    """
    registered = task(function)
    wanted = f"tp_gym/{function.__name__}"
    if registry_info(registered).name != wanted:
        registered = task(name=wanted)(function)
    return registered


paper = _registered(paper)
suite = _registered(suite)


def suite_task(
    suite_name: str,
    *,
    orgs: Patterns = None,
    variables: str | Sequence[str] | dict[str, Any] | None = None,
    seeds: str | int | Sequence[int | str] = DEFAULT_SEEDS,
    protocol: str | None = None,
) -> Task:
    """The Inspect task of suite `suite_name` with the given arguments.

    Raises `TaskArgumentError` (a `ValueError`) in one line naming the bad argument.
    """
    samples = build_samples(
        suite_name, orgs=orgs, variables=variables, seeds=seeds, protocol=protocol
    )
    chosen = samples[0].metadata["protocol"] if samples and samples[0].metadata else "study"
    return Task(
        dataset=MemoryDataset(samples, name=f"tp_gym-{suite_name}"),
        solver=tp_gym_agent(),
        scorer=tp_gym_judgement(),
        config=study_config() if chosen == "study" else GenerateConfig(),
        metadata={"suite": suite_name, "protocol": chosen},
    )


def study_config() -> GenerateConfig:
    """The study's model settings (temperature 0.7, max_tokens 4096), as the LLM agent sends
    them under the study protocol; settings given to ``inspect eval`` win over them."""
    from tp_gym.agents.llm import STUDY_SETTINGS

    return GenerateConfig(
        temperature=float(STUDY_SETTINGS["temperature"]),
        max_tokens=int(STUDY_SETTINGS["max_tokens"]),
    )


def build_samples(
    suite_name: str,
    *,
    orgs: Patterns = None,
    variables: str | Sequence[str] | dict[str, Any] | None = None,
    seeds: str | int | Sequence[int | str] = DEFAULT_SEEDS,
    protocol: str | None = None,
) -> list[Sample]:
    """One `Sample` per episode of the grid the arguments describe, seed by seed.

    The grid is tp_gym's own (`tp_gym.runs.grid.Grid`), so a task plays exactly the
    episodes ``tp-gym eval`` plays for the same suite, organizations, settings and seeds.
    """
    from tp_gym.runs.grid import Grid, resolve_envs
    from tp_gym.suites import SUITE_PROTOCOLS, SUITES
    from tp_gym.variables import PROTOCOLS

    if not isinstance(suite_name, str) or suite_name not in SUITES:
        raise TaskArgumentError(
            f"suite: unknown suite {suite_name!r}; known: {', '.join(SUITES)}"
        )
    if protocol is not None and protocol not in PROTOCOLS:
        raise TaskArgumentError(
            f"protocol: must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    seed_list = parse_seed_argument(seeds)
    patterns = org_patterns(orgs)
    settings = variable_grid(variables)
    env_ids = suite_env_ids(suite_name)
    if patterns is not None:
        try:
            chosen = resolve_envs(patterns)
        except ValueError as error:
            raise TaskArgumentError(f"orgs: {error}") from None
        if settings is None:
            chosen = [env_id for env_id in chosen if env_id in env_ids]
            if not chosen:
                raise TaskArgumentError(
                    f"orgs: {', '.join(patterns)} matches no organization of suite "
                    f"{suite_name!r}; its organizations: {', '.join(env_ids)}"
                )
        env_ids = chosen
    try:
        if settings is None:
            grid = Grid.from_suite(
                suite_name, [GRID_AGENT], seed_list, envs=env_ids, protocol=protocol
            )
        else:
            grid = Grid.build(
                [GRID_AGENT],
                envs=env_ids,
                variables=settings,
                seeds=seed_list,
                protocol=protocol or SUITE_PROTOCOLS[suite_name],
            )
    except ValueError as error:  # a setting the protocol does not allow
        raise TaskArgumentError(
            f"{'protocol' if settings is None else 'variables'}: {error}"
        ) from None
    jobs = grid.jobs()
    return [job_sample(job) for job in jobs]


def job_sample(job: Any) -> Sample:
    """The Inspect sample of one grid `Job`: its id, a short input and its metadata."""
    from tp_gym.metrics import BASELINE

    org_env = _org_of(job.env_id)
    changed = {k: v for k, v in job.variables.items() if BASELINE.get(k) != v}
    setting = ",".join(f"{k}={_shown(v)}" for k, v in sorted(changed.items())) or "baseline"
    name = job.env_id.removeprefix("tp_gym/").removesuffix("-v0")
    return Sample(
        id=f"{name}|{setting}|{job.seed}",
        input=(
            f"Play the organization {job.env_id} under the {job.protocol} protocol "
            f"(seed {job.seed}, {setting}); the briefing replaces this text."
        ),
        metadata={
            "env_id": job.env_id,
            "organization": org_env["organization"],
            "domain": org_env["domain"],
            "driver": org_env["driver"],
            "variables": dict(job.variables),
            "setting": setting,
            "seed": job.seed,
            "protocol": job.protocol,
            "group": job.group,
        },
    )


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _org_of(env_id: str) -> dict[str, str]:
    """Organization id, domain and driver of a registered env id (from its spec)."""
    import gymnasium as gym

    org = _spec_cache.get(env_id)
    if org is None:
        env = gym.make(env_id, disable_env_checker=True)
        try:
            unwrapped = env.unwrapped
            org = {
                "organization": unwrapped.org.id,  # type: ignore[attr-defined]
                "domain": unwrapped.org.domain,  # type: ignore[attr-defined]
                "driver": unwrapped.org.driver,  # type: ignore[attr-defined]
            }
        finally:
            env.close()
        _spec_cache[env_id] = org
    return org


_spec_cache: dict[str, dict[str, str]] = {}


def suite_env_ids(suite_name: str) -> list[str]:
    """The env ids a suite's cells use, in their order."""
    from tp_gym.suites import suite as suite_cells

    ids: list[str] = []
    for cell in suite_cells(suite_name):
        if cell.env_id not in ids:
            ids.append(cell.env_id)
    return ids


def parse_seed_argument(seeds: str | int | Sequence[int | str]) -> list[int]:
    """``"0-24"``, ``3``, ``"0,5,9-11"`` or a list of those (Inspect's ``-T seeds=0,5`` gives
    a list) -> sorted distinct seeds, read by the CLI's own `parse_seeds`."""
    from tp_gym.cli import CommandError
    from tp_gym.commands.common import parse_seeds

    if isinstance(seeds, bool):
        raise TaskArgumentError(f"seeds: expected seeds such as 0-24, got {seeds!r}")
    if isinstance(seeds, int):
        text = str(seeds)
    elif isinstance(seeds, str):
        text = seeds
    elif isinstance(seeds, Sequence) and all(
        isinstance(s, int | str) and not isinstance(s, bool) for s in seeds
    ):
        text = ",".join(str(s) for s in seeds)
    else:
        raise TaskArgumentError(f"seeds: expected seeds such as 0-24, got {seeds!r}")
    try:
        chosen = parse_seeds(text)
    except CommandError as error:
        raise TaskArgumentError(f"seeds: {str(error).replace('--seeds ', '')}") from None
    if not chosen:
        raise TaskArgumentError("seeds: selects no seed")
    return chosen


def org_patterns(orgs: Patterns) -> list[str] | None:
    """The `resolve_envs` patterns of the ``orgs`` argument (None: the suite's own).

    A pattern with no ``/`` that is not a spec file names a bundled organization:
    ``Healthcare-Loyalty`` -> ``tp_gym/Healthcare-Loyalty-v0``, ``Finance-*`` ->
    ``tp_gym/Finance-*``.
    """
    if orgs is None:
        return None
    if isinstance(orgs, str):
        items = orgs.split(",")
    elif isinstance(orgs, Sequence) and all(isinstance(o, str) for o in orgs):
        items = [part for o in orgs for part in o.split(",")]
    else:
        raise TaskArgumentError(f"orgs: expected env ids or glob patterns, got {orgs!r}")
    patterns = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if "/" not in item and not item.endswith(SPEC_SUFFIXES):
            item = "tp_gym/" + item
            if not any(c in item for c in "*?[") and not item.endswith("-v0"):
                item += "-v0"
        patterns.append(item)
    if not patterns:
        raise TaskArgumentError("orgs: no organization given")
    return patterns


def variable_grid(
    variables: str | Sequence[str] | dict[str, Any] | None,
) -> list[dict[str, Any]] | None:
    """The variable settings of the ``variables`` argument (None: the suite's own cells).

    Takes ``"stakes=high,low,feedback=high"`` (Inspect's ``-T`` splits it at commas into a
    list, which is joined back), a list of ``NAME=VALUES`` items, or a mapping of names to
    a value or a list of values. Each variable's values are swept and the variables
    combined, by the same reader as ``tp-gym eval --set`` (`variable_settings`).
    """
    from tp_gym.cli import CommandError
    from tp_gym.commands.eval_cmd import variable_settings

    if variables is None:
        return None
    items: list[str]
    if isinstance(variables, dict):
        items = []
        for name, value in variables.items():
            values = value if isinstance(value, list | tuple) else [value]
            items.append(f"{name}=" + ",".join(_shown(v) for v in values))
    elif isinstance(variables, str | Sequence) and not isinstance(variables, bytes):
        tokens = variables.split(",") if isinstance(variables, str) else []
        if not isinstance(variables, str):
            if not all(isinstance(v, str) for v in variables):
                raise TaskArgumentError(
                    f"variables: expected NAME=VALUE[,VALUE...] items, got {variables!r}"
                )
            tokens = [t for v in variables for t in v.split(",")]
        items = []
        for token in (t.strip() for t in tokens):
            if not token:
                continue
            if "=" in token or not items:
                items.append(token)
            else:
                items[-1] += "," + token
    else:
        raise TaskArgumentError(
            f"variables: expected NAME=VALUE[,VALUE...] items, got {variables!r}"
        )
    if not items:
        raise TaskArgumentError("variables: no variable given")
    try:
        return variable_settings(items)
    except CommandError as error:
        raise TaskArgumentError(f"variables: {str(error).replace('--set ', '')}") from None
