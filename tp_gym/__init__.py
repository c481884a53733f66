"""tp_gym: Gymnasium environments for measuring Toxic Proactivity in agents.

``import tp_gym`` registers every bundled organization as ``tp_gym/<Domain>-<Driver>-v0``;
the heavier modules (spec models, env, runner) load on first use. A spec file of your own is
registered under its own id with `register_spec` (``tp_gym/<spec id>-v0``); the files named
in the ``TP_GYM_SPEC_FILES`` environment variable are registered on import, which is how
worker processes and Ray tasks know the files their parent registered.
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from tp_gym.envs import spec_names

if TYPE_CHECKING:
    from tp_gym.actions import ToolCall
    from tp_gym.env import FEATURE_NAMES, OrgEnv
    from tp_gym.runs.episode import EpisodeLog, read_jsonl, write_jsonl
    from tp_gym.runs.evaluation import Grid, evaluate, load_run
    from tp_gym.runs.runner import arun_episode, run_episode
    from tp_gym.spec import OrgSpec, SpecError, load_spec
    from tp_gym.suites import suite
    from tp_gym.variables import Variables

__version__ = "0.1.0"

_LAZY = {
    "OrgEnv": "tp_gym.env",
    "FEATURE_NAMES": "tp_gym.env",
    "OrgSpec": "tp_gym.spec",
    "SpecError": "tp_gym.spec",
    "load_spec": "tp_gym.spec",
    "ToolCall": "tp_gym.actions",
    "Variables": "tp_gym.variables",
    "EpisodeLog": "tp_gym.runs.episode",
    "read_jsonl": "tp_gym.runs.episode",
    "write_jsonl": "tp_gym.runs.episode",
    "run_episode": "tp_gym.runs.runner",
    "arun_episode": "tp_gym.runs.runner",
    "evaluate": "tp_gym.runs.evaluation",
    "Grid": "tp_gym.runs.evaluation",
    "load_run": "tp_gym.runs.evaluation",
    "suite": "tp_gym.suites",
}

__all__ = [
    "EpisodeLog",
    "FEATURE_NAMES",
    "Grid",
    "OrgEnv",
    "OrgSpec",
    "SpecError",
    "ToolCall",
    "Variables",
    "arun_episode",
    "env_ids",
    "evaluate",
    "load_run",
    "load_spec",
    "read_jsonl",
    "register_spec",
    "run_episode",
    "suite",
    "write_jsonl",
]


def env_ids() -> list[str]:
    """All registered tp_gym environment ids, sorted."""
    return sorted(env_id for env_id in registry if env_id.startswith("tp_gym/"))


def _register_catalog() -> None:
    for name in spec_names():
        env_id = f"tp_gym/{name}-v0"
        if env_id not in registry:
            register(id=env_id, entry_point="tp_gym.env:OrgEnv", kwargs={"spec": name})


SPEC_FILES_VARIABLE = "TP_GYM_SPEC_FILES"
"""The environment variable listing the spec files registered in this process (absolute
paths, separated by `os.pathsep`): `register_spec` keeps it up to date, and ``import
tp_gym`` registers the files it names, so that spawned worker processes and Ray tasks (which
inherit or are given it) know them too."""

_spec_files: dict[str, str] = {}  # env id -> absolute path of its spec file
_applied: str | None = None  # the value of SPEC_FILES_VARIABLE last registered


def register_spec(path: str | os.PathLike[str]) -> str:
    """Register the spec file at `path` as ``tp_gym/<spec id>-v0`` and return that id.

    The file is loaded and validated first (`SpecError` naming the file and every problem);
    then ``gym.make(env_id)`` builds it, in this process and, through ``TP_GYM_SPEC_FILES``,
    in the worker processes and Ray tasks of an evaluation (the file must be readable at the
    same path there). Registering another file with the same spec id replaces the first; a
    bundled organization's own file gives its bundled id.
    """
    from tp_gym.spec import load_spec

    absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
    return _register_file(absolute, load_spec(absolute).id)


def _register_file(absolute: str, spec_id: str) -> str:
    """Register the (already validated) spec file `absolute` whose spec id is `spec_id`."""
    global _applied
    env_id = f"tp_gym/{spec_id}-v0"
    if spec_id in spec_names():  # the bundled file itself (load_spec refuses any other)
        return env_id
    if _spec_files.get(env_id) != absolute or env_id not in registry:
        registry.pop(env_id, None)
        register(id=env_id, entry_point="tp_gym.env:OrgEnv", kwargs={"spec": absolute})
        _spec_files[env_id] = absolute
        _applied = os.pathsep.join(_spec_files.values())
        os.environ[SPEC_FILES_VARIABLE] = _applied
    return env_id


def _register_spec_files() -> None:
    """Register the spec files ``TP_GYM_SPEC_FILES`` names, if it changed since last time
    (a Ray task receives it after import); a file that cannot be loaded is skipped with a
    warning."""
    global _applied
    value = os.environ.get(SPEC_FILES_VARIABLE, "")
    if value == (_applied or ""):
        return
    _applied = value
    for entry in (e for e in value.split(os.pathsep) if e.strip()):
        try:
            register_spec(entry)
        except (OSError, ValueError) as error:
            first = str(error).splitlines()[0]
            warnings.warn(f"{SPEC_FILES_VARIABLE}: skipped {entry}: {first}", stacklevel=2)


def spec_file_of(env_id: str) -> Path | None:
    """The spec file registered as `env_id` in this process, or None (a bundled or unknown
    id)."""
    path = _spec_files.get(env_id)
    return Path(path) if path is not None else None


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tp_gym' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


_register_catalog()
_register_spec_files()
