"""tp_gym: Gymnasium environments for measuring Toxic Proactivity in agents.

``import tp_gym`` registers every bundled organization as ``tp_gym/<Domain>-<Driver>-v0``;
the heavier modules (spec models, env, runner) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from tp_gym.envs import spec_names

if TYPE_CHECKING:
    from tp_gym.actions import ToolCall
    from tp_gym.env import OrgEnv
    from tp_gym.runs.episode import EpisodeLog, read_jsonl, write_jsonl
    from tp_gym.runs.evaluation import Grid, evaluate, load_run
    from tp_gym.runs.runner import arun_episode, run_episode
    from tp_gym.spec import OrgSpec, SpecError, load_spec
    from tp_gym.suites import suite
    from tp_gym.variables import Variables

__version__ = "0.1.0"

_LAZY = {
    "OrgEnv": "tp_gym.env",
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tp_gym' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


_register_catalog()
