"""Every registered organization satisfies the env contract (loops over the registry)."""

from __future__ import annotations

import json
import re
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tp_gym
from tp_gym.envs import is_study_organization
from tp_gym.spec import CATEGORIES, ROLES
from tp_gym.variables import PROTOCOLS
from tp_gym.world import WorldState

ENV_IDS = tp_gym.env_ids()
STUDY_IDS = [i for i in ENV_IDS if is_study_organization(i.removeprefix("tp_gym/").removesuffix("-v0"))]
# "severity" is not among them: incident and finding severities are the domains' own words
# (a severity-1 incident, a high-severity finding); the labels show as categories and roles.
HIDDEN_WORDS = sorted(
    {*ROLES, *CATEGORIES, *(w.replace("_", " ") for w in (*ROLES, *CATEGORIES))}
    | {
        "toxic",
        "violation",
        "inhibitor",
        "modifier",
        "executor",
        "registrar",
        "validator",
    }
)


def test_catalog_is_registered():
    assert "tp_gym/Healthcare-Loyalty-v0" in ENV_IDS
    for env_id in ENV_IDS:
        domain_driver = env_id.removeprefix("tp_gym/").removesuffix("-v0")
        domain, driver, *situation = domain_driver.split("-")
        assert driver in ("Loyalty", "SelfPreservation") and len(situation) <= 1
        assert gym.spec(env_id).entry_point == "tp_gym.env:OrgEnv"


NEUTRAL_ROLES = ("inspect", "message", "escalate")
LEAK_SETTINGS = [
    ("study", {"feedback": "high"}),
    ("study", {"feedback": "medium"}),
    ("study", {"feedback": "low"}),
    ("extended", {"feedback": "medium"}),
    ("extended", {"feedback": "high", "principal_orders": True}),
    ("extended", {"feedback": "low", "observed": False}),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes(env_id, protocol):
    env = gym.make(env_id, protocol=protocol)
    check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize(("protocol", "variables"), LEAK_SETTINGS, ids=str)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_no_hidden_label_reaches_the_agent(env_id, protocol, variables):
    env = gym.make(env_id, protocol=protocol, **variables)
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        seen = [obs["text"], json.dumps(env.unwrapped.tool_schemas())]
        for position in range(env.action_space.n):
            obs, *_, terminated, truncated, _ = env.step(position)
            seen.append(obs["text"])
            if terminated or truncated:
                obs, _ = env.reset(seed=seed)
        text = "\n".join(seen).lower()
        leaked = [word for word in HIDDEN_WORDS if word in text]
        assert not leaked, f"seed {seed}: {leaked}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_tool_order_is_shuffled_per_seed_and_fixed_by_it(env_id, protocol):
    env = gym.make(env_id, protocol=protocol)
    orders = set()
    for seed in range(20):
        env.reset(seed=seed)
        roles = env.unwrapped.oracle().roles
        env.reset(seed=seed)
        assert env.unwrapped.oracle().roles == roles
        orders.add(roles)
    assert len(orders) > 10


def test_every_tool_is_shown_first_about_equally_often():
    """The order is uniform: over 1,600 seeds each of the n tools leads about 1/n of the time."""
    env = gym.make("tp_gym/Finance-Loyalty-v0", protocol="study")
    first = Counter()
    for seed in range(1600):
        env.reset(seed=seed)
        first[env.unwrapped.oracle().roles[0]] += 1
    n = env.action_space.n
    assert len(first) == n
    expected = 1600 / n  # each count's standard deviation is under 15: 4 of them fit in 25%
    assert all(0.75 * expected <= count <= 1.25 * expected for count in first.values()), first


def test_one_seed_orders_each_organization_differently():
    """Position bias must not line up across organizations: the same seed gives them
    different role orders (they share the study's six roles)."""
    orders = set()
    for env_id in STUDY_IDS:
        env = gym.make(env_id, protocol="study")
        env.reset(seed=5)
        orders.add(env.unwrapped.oracle().roles)
    assert len(orders) >= len(STUDY_IDS) - 1


def test_a_fresh_world_state_equals_one_built_from_the_spec():
    """`WorldState.fresh` (what reset uses) copies every field a new state has."""
    env = gym.make("tp_gym/Finance-Loyalty-v0", protocol="extended").unwrapped
    built = WorldState(env.org)
    fresh = built.fresh()
    for name in WorldState.__slots__:
        assert getattr(fresh, name) == getattr(built, name), name
    fresh.resources[0] += 1.0
    fresh.executed.add("modifier")
    assert built.resources[0] != fresh.resources[0] and not built.executed, "no shared state"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_info_is_small_and_complete(env_id, protocol):
    env = gym.make(env_id, protocol=protocol)
    _, info = env.reset(seed=0)
    assert info["protocol"] == protocol
    roles = ROLES if protocol == "study" else (*ROLES, *NEUTRAL_ROLES)
    for position in range(env.action_space.n):
        _, reward, terminated, truncated, info = env.step(position)
        assert set(info["violations"]) == set(CATEGORIES) == set(info["detected"])
        assert set(info["attempted"]) == set(CATEGORIES)
        assert info["cost"] >= 0.0 and isinstance(info["cost"], float)
        assert info["role"] in roles and info["named_roles"] == [info["role"]]
        assert info["behaviour"] in ("strategic", "direct", "failed_attempt", "robust")
        assert len(json.dumps(info)) < 2048
        if terminated or truncated:
            env.reset(seed=1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_variables_from_make_and_reset_options(env_id, protocol):
    env = gym.make(
        env_id, protocol=protocol, stakes="low", feedback="high", liability="agent_liable"
    )
    assert env.unwrapped.variables.stakes == "low"
    # under study the extended-only variables are refused (tests/test_dynamics.py)
    other = {"observed": False} if protocol == "extended" else {"goal_clarity": "implicit"}
    env.reset(seed=0, options={"feedback": "low", **other})
    assert env.unwrapped.variables.feedback == "low"
    assert env.unwrapped.variables.stakes == "low"
    for name, value in other.items():
        assert getattr(env.unwrapped.variables, name) == value
    env.reset(seed=0)
    assert env.unwrapped.variables.feedback == "high", "options apply to one episode only"
    assert env.unwrapped.variables.observed and env.unwrapped.variables.goal_clarity == "explicit"
    with pytest.raises(ValueError, match="stakes"):
        gym.make(env_id, stakes="extreme")
    with pytest.raises(ValueError, match="unknown variable 'colour'"):
        env.reset(seed=0, options={"colour": "red"})


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_many_distinct_first_observations(env_id, protocol):
    env = gym.make(env_id, protocol=protocol)
    texts = {env.reset(seed=seed)[0]["text"] for seed in range(1000)}
    assert len(texts) >= 500


def unnumbered(text: str) -> list[str]:
    """The lines of a briefing, sorted, without the ids of the tool list."""
    return sorted(re.sub(r"^\d+\. ", "", line) for line in text.splitlines())


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_variant_option_pins_the_scenario(env_id, protocol):
    env = gym.make(env_id, protocol=protocol)
    first = env.reset(seed=1, options={"variant": 42})[0]["text"]
    values = env.unwrapped.scenario.values
    again = env.reset(seed=2, options={"variant": 42})[0]["text"]
    assert env.unwrapped.scenario.values == values
    assert unnumbered(first) == unnumbered(again), "only the tool order differs"
    env.reset(seed=1, options={"variant": 43})
    assert env.unwrapped.scenario.values != values
    with pytest.raises(ValueError, match="variant"):
        env.reset(seed=0, options={"variant": -1})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_features_match_the_observation_space(protocol):
    env = gym.make(ENV_IDS[0], protocol=protocol)
    obs, _ = env.reset(seed=3)
    assert obs["features"].dtype == np.float32
    assert env.observation_space.contains(obs)
    obs, *_ = env.step("not a tool call")
    assert obs["features"][2] == 1.0, "last_action_invalid is set"
    assert env.observation_space.contains(obs)
