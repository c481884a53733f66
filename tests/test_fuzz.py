"""Arbitrary actions never raise from `step`: they are invalid actions, counted consistently."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

import tp_gym
from tp_gym.actions import MAX_ACTION_DEPTH, ToolCall
from tp_gym.runs.episode import EpisodeLog, to_json_line
from tp_gym.runs.recorder import MAX_LOGGED_ACTION_CHARS
from tp_gym.variables import PROTOCOLS

ENVS = {
    (env_id, protocol): gym.make(env_id, protocol=protocol).unwrapped
    for env_id in tp_gym.env_ids()
    for protocol in PROTOCOLS
}
ENV = ENVS["tp_gym/Healthcare-Loyalty-v0", "extended"]  # extended shows every tool
ENV.reset(seed=0)
NAMES = ENV.tool_names()
ARG_NAMES = sorted({a.name for env in ENVS.values() for t in env.org.tools for a in t.args} | {"x"})

json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50)
)
junk = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
tool_name = st.sampled_from(NAMES) | st.text(max_size=30)
arguments = st.dictionaries(st.sampled_from(ARG_NAMES), junk, max_size=4)
actions = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=300),
    st.builds(lambda n, a: {"name": n, "arguments": a}, tool_name, arguments),
    st.builds(
        lambda n, a: {"type": "function", "function": {"name": n, "arguments": a}},
        tool_name,
        st.text(max_size=80),
    ),
    st.builds(lambda n, a: ToolCall(name=n, arguments=a), tool_name, arguments),
    st.builds(lambda s: json.dumps({"reasoning": "x", "tool_choice": s}), tool_name),
    st.builds(
        lambda n, a: json.dumps(
            {"reasoning": "x", "tool_choice": {"id": 1, "name": n, "parameters": a}}
        ),
        tool_name,
        arguments,
    ),
    st.lists(st.builds(lambda n, a: {"name": n, "arguments": a}, tool_name, arguments), max_size=3),
    st.just("x" * 200_000),
    st.just("{" * 5000 + "}" * 5000),
    st.just(np.int64(2)),
    st.just(None),
    st.just(3.5),
    junk,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(sorted(ENVS)),
    seed=st.integers(0, 2**31),
    sequence=st.lists(actions, min_size=1, max_size=25),
)
def test_arbitrary_actions_never_raise_and_counters_stay_consistent(key, seed, sequence):
    env = ENVS[key]
    env.reset(seed=seed)
    turns = invalid = 0
    for action in sequence:
        obs, reward, terminated, truncated, info = env.step(action)
        turns += 1
        invalid += not info["valid"]
        assert info["turn"] == turns
        assert info["invalid_actions"] == invalid
        assert info["cost"] >= 0.0
        assert np.isfinite(reward)
        for category, count in info["detected"].items():
            assert 0 <= count <= info["violations"][category] <= info["attempted"][category]
        assert info["valid"] == (info["tool"] is not None)
        assert not info["format_error"] or (env.protocol == "study" and truncated)
        if env.protocol == "study":
            assert info["pressure"] == 0
            assert reward == 0.0 or info["valid"], "under study only an executed call pays"
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            assert turns <= env.max_turns
            env.reset(seed=seed + 1)
            turns = invalid = 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalid_actions_explain_themselves(protocol):
    env = ENVS["tp_gym/Healthcare-Loyalty-v0", protocol]
    env.reset(seed=0)
    names = env.tool_names()
    oracle = env.oracle()
    validator, registrar = oracle.first("validator"), oracle.first("registrar")
    obs, *_, info = env.step('{"reasoning": "r", "tool_choice": "launch_rockets"}')
    assert not info["valid"] and "unknown tool" in obs["text"]
    assert all(name in obs["text"] for name in names), "the error lists the shown tools"
    obs, *_, info = env.step({"name": names[validator], "arguments": "{not json"})
    assert "not valid JSON" in obs["text"] and info["named_roles"] == ["validator"]
    obs, *_, info = env.step([validator, registrar])
    assert "exactly one tool call" in obs["text"]
    assert info["named_roles"] == ["validator", "registrar"] and info["role"] is None
    obs, *_, info = env.step(99)
    assert "out of range" in obs["text"] and info["named_roles"] == []
    obs, *_, terminated, truncated, info = env.step("no JSON here")
    assert not info["valid"] and not terminated
    assert info["format_error"] == truncated == (protocol == "study")
    assert info["invalid_actions"] == 5


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_step_after_the_end_asks_for_reset(protocol):
    env = gym.make("tp_gym/Healthcare-Loyalty-v0", protocol=protocol).unwrapped
    env.reset(seed=0)
    terminal = env.oracle().first("standard_executor")
    *_, terminated, _, _ = env.step(terminal)
    assert terminated
    try:
        env.step(0)
    except RuntimeError as error:
        assert "reset()" in str(error)
    else:
        raise AssertionError("stepping a finished episode must fail clearly")


@pytest.mark.parametrize(
    ("protocol", "role", "argument"),
    [("extended", "message", "message"), ("study", "registrar", "summary")],
)
def test_agent_text_outside_the_charset_is_sanitised(protocol, role, argument):
    env = ENVS["tp_gym/Healthcare-Loyalty-v0", protocol]
    env.reset(seed=0)
    position = env.oracle().first(role)
    schema = env.tool_schemas()[position]["function"]["parameters"]["properties"]
    plain = {"string": "x", "integer": 1, "number": 1.0, "boolean": True}
    arguments = {
        name: prop["enum"][0] if "enum" in prop else plain[prop["type"]]
        for name, prop in schema.items()
    }
    weird = "\x00\u202e\U0001f600 hello \x1b[31m"
    arguments[argument] = weird
    obs, *_, info = env.step({"name": env.tool_names()[position], "arguments": arguments})
    assert info["valid"] and "hello" in obs["text"], "the argument is shown back"
    assert env.observation_space.contains(obs)
    obs, *_, info = env.step({"name": weird, "arguments": {}})
    assert not info["valid"] and env.observation_space.contains(obs)


numpy_leaf = st.one_of(
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.uint8, st.integers(0, 255)),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.bool_, st.booleans()),
    st.builds(np.str_, st.text(max_size=10)),
    npst.arrays(
        st.sampled_from([np.int8, np.int64, np.uint64, np.float64, np.bool_]),
        npst.array_shapes(min_dims=0, max_dims=3, max_side=3),
    ),
)
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
loose_leaf = (
    json_leaf
    | numpy_leaf
    | any_text
    | st.integers(-(10**50), 10**50)
    | st.floats(allow_nan=True, allow_infinity=True)
)
loose = st.recursive(
    loose_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(any_text | st.integers(), children, max_size=4)
        | st.builds(
            lambda n, a: {"name": n, "arguments": a},
            tool_name,
            st.dictionaries(st.sampled_from(ARG_NAMES), children, max_size=3),
        )
    ),
    max_leaves=25,
)


def wrap(value: object, depth: int, as_list: bool) -> object:
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


nested_actions = st.one_of(
    loose,
    st.builds(wrap, loose, st.integers(0, 80), st.booleans()),
    st.builds(lambda v, d: json.dumps(wrap(v, d, False)), json_leaf, st.integers(0, 250)),
)


class _Replay:
    name = "replay"
    needs_oracle = False

    def __init__(self, actions):
        self.actions = actions

    def reset(self, observation, *, tools, oracle, seed, protocol="study"):
        self.queue = list(self.actions)

    def act(self, observation):
        return self.queue.pop(0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    protocol=st.sampled_from(PROTOCOLS),
    seed=st.integers(0, 2**32 - 1),
    sequence=st.lists(nested_actions, min_size=1, max_size=6),
)
def test_nested_actions_never_raise_and_their_log_line_reads_back_equal(protocol, seed, sequence):
    env = gym.make("tp_gym/Healthcare-Loyalty-v0", protocol=protocol, max_turns=len(sequence))
    space = env.observation_space

    def contained(turn, action, observation, reward, info):
        assert space.contains(observation), "the observation is in the observation space"

    log = tp_gym.run_episode(env, _Replay(sequence), seed=seed, on_step=contained)
    assert log.error in (None, "format"), "an action is an observation, never a crash"
    assert log.invalid_actions == sum(not step.valid for step in log.steps)
    line = to_json_line(log)
    back = EpisodeLog.model_validate_json(line)
    assert back == log
    assert to_json_line(back) == line
    for step in log.steps:
        assert nested_depth(step.action) <= MAX_ACTION_DEPTH
        assert len(json.dumps(step.action)) <= 3 * MAX_LOGGED_ACTION_CHARS


def nested_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(nested_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(nested_depth, value), default=0)
    return 0
