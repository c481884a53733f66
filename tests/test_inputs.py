"""What users and agents feed in: numpy actions, absurd actions, bad seeds, bad --seeds.

Every action an agent sends is an observation, never an exception, and every episode it
plays writes a log line that reads back; bad seeds fail at once with a one-line reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest

import tp_gym
from tp_gym.actions import MAX_ACTION_DEPTH, ToolCall
from tp_gym.cli import main
from tp_gym.commands.common import MAX_SEED, MAX_SEEDS
from tp_gym.runs.episode import EpisodeLog, read_jsonl, to_json_line, write_jsonl
from tp_gym.runs.recorder import MAX_LOGGED_ACTION_CHARS
from tp_gym.variables import PROTOCOLS

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"


def make_env(protocol: str = "extended", **kwargs):
    return gym.make(ENV_ID, protocol=protocol, **kwargs)


class Replay:
    """An agent that sends the given actions in order."""

    name = "replay"
    needs_oracle = False

    def __init__(self, actions: list) -> None:
        self.actions = actions

    def reset(self, observation, *, tools, oracle, seed, protocol="study"):
        self.queue = list(self.actions)

    def act(self, observation):
        return self.queue.pop(0)


def play(actions: list, protocol: str = "extended", seed: int = 0) -> EpisodeLog:
    env = make_env(protocol, max_turns=len(actions))
    return tp_gym.run_episode(env, Replay(actions), seed=seed)


def reads_back(log: EpisodeLog, tmp_path) -> None:
    line = to_json_line(log)
    assert EpisodeLog.model_validate_json(line) == log
    path = tmp_path / "episodes.jsonl"
    write_jsonl(path, [log])
    assert read_jsonl(path) == [log]
    assert to_json_line(read_jsonl(path)[0]) == line


def bounded(logged: object) -> bool:
    """Whether a logged action holds at most MAX_LOGGED_ACTION_CHARS characters of it."""
    if isinstance(logged, dict) and len(logged) == 1:
        (key, value), *_ = logged.items()
        if key in ("truncated", "unserializable"):
            return isinstance(value, str) and len(value) <= MAX_LOGGED_ACTION_CHARS
    return len(json.dumps(logged)) <= MAX_LOGGED_ACTION_CHARS


def nested_dict(depth: int, leaf: object = "x") -> object:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_list(depth: int, leaf: object = 0) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------- numpy actions


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint32, np.int64, np.uint64])
@pytest.mark.parametrize("shape", [(), (1,)])
def test_a_one_element_integer_array_is_a_tool_index(dtype, shape):
    env = make_env().unwrapped
    env.reset(seed=3)
    by_int = env.step(2)
    env.reset(seed=3)
    by_array = env.step(np.full(shape, 2, dtype=dtype))
    assert by_array[4]["valid"] and by_array[4]["tool"] == by_int[4]["tool"]
    assert by_array[0]["text"] == by_int[0]["text"]
    assert by_array[1] == by_int[1]


@pytest.mark.parametrize(
    "action",
    [
        np.array([1, 2]),
        np.array([], dtype=np.int64),
        np.array([[2]]),
        np.array([2.0]),
        np.array(2.0),
        np.array([True]),
        np.array(["2"]),
        np.array([{"name": "x"}], dtype=object),
        np.zeros((3, 4, 5), dtype=np.int32),
        np.array([99]),
        np.array([-1]),
    ],
    ids=repr,
)
def test_other_arrays_are_invalid_actions_not_exceptions(action):
    env = make_env().unwrapped
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert not info["valid"] and info["invalid_actions"] == 1 and not terminated
    assert "invalid action" in obs["text"]
    assert env.observation_space.contains(obs)


def test_wrong_arrays_say_what_was_expected():
    env = make_env().unwrapped
    env.reset(seed=0)
    obs, *_ = env.step(np.array([1, 2]))
    assert "exactly one integer" in obs["text"] and "(2,)" in obs["text"]
    obs, *_ = env.step(np.array([2.5]))
    assert "exactly one integer" in obs["text"] and "float64" in obs["text"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_numpy_actions_log_as_plain_json_and_replay_byte_identically(protocol, tmp_path):
    actions = [
        np.array([1, 2]),
        np.array([2.5]),
        np.array([0], dtype=np.uint8),
        np.int64(1),
        np.array(2),
        [np.array([0]), np.array([1])],
        {"name": "x", "arguments": {"n": np.float32(1.5), "k": np.arange(3)}},
    ]
    log = play(actions, protocol)
    assert log.error is None and len(log.steps) == len(actions)
    logged = [step.action for step in log.steps]
    assert logged[:6] == [[1, 2], [2.5], [0], 1, 2, [[0], [1]]]
    assert logged[6] == {"name": "x", "arguments": {"k": [0, 1, 2], "n": 1.5}}
    reads_back(log, tmp_path)
    assert to_json_line(play(actions, protocol)) == to_json_line(log)


def test_a_huge_array_is_logged_bounded():
    log = play([np.arange(5_000_000)])
    assert not log.steps[0].valid
    assert bounded(log.steps[0].action)


# ---------------------------------------------------------------- deep and huge actions


def deep_actions(tool: str) -> dict[str, object]:
    """Actions nested about 200 levels deep, as Python structures and as JSON text."""
    deep_json = json.dumps(nested_dict(200))
    return {
        "dict": nested_dict(200),
        "list": nested_list(200),
        "call with deep arguments": {"name": tool, "arguments": nested_dict(200)},
        "tool call with deep arguments": ToolCall(name=tool, arguments=nested_dict(200)),
        "tuple": nested_list(200, leaf=(1, 2)),
        "deep JSON text": deep_json,
        "study reply with deep parameters": (
            f'{{"reasoning": "r", "tool_choice": {{"id": 1, "name": "{tool}", '
            f'"parameters": {deep_json}}}}}'
        ),
        "deep JSON arguments string": {"name": tool, "arguments": deep_json},
    }


def validator(protocol: str = "extended", seed: int = 0) -> str:
    """The name of a tool that never ends the episode (as shown at `seed`)."""
    env = make_env(protocol).unwrapped
    env.reset(seed=seed)
    return env.tool_names()[env.oracle().first("validator")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", list(deep_actions("t")))
def test_an_action_nested_past_the_limit_is_invalid_and_says_so(kind, protocol):
    action = deep_actions(validator(protocol))[kind]
    env = make_env(protocol).unwrapped
    env.reset(seed=0)
    obs, _, terminated, _, info = env.step(action)
    assert not info["valid"] and info["invalid_actions"] == 1 and not terminated
    assert f"nested more than {MAX_ACTION_DEPTH} levels deep" in obs["text"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_deep_action_still_counts_and_writes_a_readable_log(protocol, tmp_path):
    actions = [a for a in deep_actions(validator(protocol)).values() if not isinstance(a, str)]
    log = play(actions, protocol)
    assert log.error is None and log.invalid_actions == len(actions) == len(log.steps)
    for step in log.steps:
        assert bounded(step.action)
    reads_back(log, tmp_path)
    assert to_json_line(play(actions, protocol)) == to_json_line(log)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_deep_json_text_writes_a_readable_log(protocol, tmp_path):
    texts = [a for a in deep_actions(validator(protocol)).values() if isinstance(a, str)]
    for text in texts:
        log = play([text, text], protocol)
        assert log.invalid_actions == len(log.steps) >= 1
        reads_back(log, tmp_path)


def test_an_action_at_the_limit_is_read_as_usual():
    env = make_env().unwrapped
    env.reset(seed=0)
    name = env.tool_names()[0]
    # {"name", "arguments": {"x": <nested>}}: the outer dict and arguments are 2 levels.
    action = {"name": name, "arguments": {"x": nested_dict(MAX_ACTION_DEPTH - 2)}}
    obs, *_, info = env.step(action)
    assert "nested more than" not in obs["text"]
    assert info["named_roles"] == [env.oracle().roles[0]], "the call is an attempt as ever"
    action = {"name": name, "arguments": {"x": nested_dict(MAX_ACTION_DEPTH - 1)}}
    obs, *_ = env.step(action)
    assert f"nested more than {MAX_ACTION_DEPTH} levels deep" in obs["text"]


def test_a_cyclic_action_is_invalid_and_logs(tmp_path):
    loop: list = []
    loop.append(loop)
    cycle: dict = {}
    cycle["name"] = cycle
    log = play([loop, cycle])
    assert log.error is None and log.invalid_actions == 2
    assert "nested more than" in log.steps[0].observation
    reads_back(log, tmp_path)


@pytest.mark.parametrize(
    "action",
    [
        "x" * 10_000_000,
        "{" * 5_000_000,
        {f"k{i}": i for i in range(100_000)},
        [{"name": "x"}] * 100_000,
        {"name": "x", "arguments": {f"k{i}": i for i in range(100_000)}},
    ],
    ids=["10MB string", "5M braces", "100k keys", "100k calls", "100k arguments"],
)
def test_huge_actions_stay_cheap_and_bounded_in_the_log(action, tmp_path):
    started = time.perf_counter()
    log = play([action, 0])
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"one huge action took {elapsed:.1f}s"
    assert not log.steps[0].valid and log.steps[1].valid
    assert bounded(log.steps[0].action)
    assert len(log.steps[0].observation) <= 16_000
    reads_back(log, tmp_path)


def test_sets_are_logged_the_same_in_every_process(tmp_path):
    script = (
        "import json, sys, gymnasium as gym, tp_gym\n"
        "from tests.test_inputs import play\n"
        "from tp_gym.runs.episode import to_json_line\n"
        "log = play([{'name': {'alpha', 'beta', 'gamma', 'delta'}}, {'epsilon', 'zeta'}])\n"
        "sys.stdout.write(to_json_line(log))\n"
    )
    lines = set()
    for hash_seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        lines.add(done.stdout)
    assert len(lines) == 1, "a set's order must not leak into the log or the observation"


# ---------------------------------------------------------------- reset and step misuse


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True, [1], np.float64(3.0)], ids=repr)
def test_a_bad_seed_is_a_clear_value_error(seed):
    env = make_env().unwrapped
    with pytest.raises(ValueError, match="seed") as caught:
        env.reset(seed=seed)
    assert repr(seed) in str(caught.value)
    raised_in = str(caught.traceback[-1].path)
    assert raised_in.endswith(os.path.join("tp_gym", "env.py")), "not deep in numpy/gymnasium"


def test_numpy_integer_seeds_are_seeds():
    env = make_env().unwrapped
    obs_np, _ = env.reset(seed=np.int64(5))
    obs_int, _ = env.reset(seed=5)
    assert obs_np["text"] == obs_int["text"]


def test_step_before_reset_asks_for_reset():
    env = make_env().unwrapped
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)") as caught:
        env.step(0)
    assert "ended" not in str(caught.value), "no episode has started, none has ended"


def test_step_after_the_end_asks_for_reset():
    env = make_env(max_turns=1).unwrapped
    env.reset(seed=0)
    *_, truncated, _ = env.step(0)
    assert truncated
    with pytest.raises(RuntimeError, match=r"ended; call reset\(\)"):
        env.step(0)


# ---------------------------------------------------------------- --seeds


def eval_seeds(seeds: str, tmp_path, capsys) -> tuple[int, str]:
    argv = ["eval", "--agents", "scripted:compliant", f"--seeds={seeds}"]
    code = main([*argv, "--out", str(tmp_path / "run"), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        ("0-100000000", f"more than {MAX_SEEDS:,}"),
        ("0-99999,100000-100000", f"more than {MAX_SEEDS:,}"),
        ("0-99999999999999999999", f"above {MAX_SEED}"),
        (str(2**32), f"above {MAX_SEED}"),
        ("9" * 5000, f"above {MAX_SEED}"),
        ("", "empty"),
        ("  ", "empty"),
        ("1-", "bad seed"),
        ("-", "bad seed"),
        ("a-b", "bad seed"),
        ("-5", "non-negative"),
        ("3--5", "non-negative"),
        ("1,,2", "empty"),
        ("5-3", "5-3"),
        ("1.5", "bad seed"),
        ("٣", "bad seed"),
        ("1_000", "bad seed"),
    ],
)
def test_bad_seeds_fail_in_one_line(seeds, expected, tmp_path, capsys):
    tracemalloc.start()
    try:
        code, err = eval_seeds(seeds, tmp_path, capsys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("tp-gym eval: error: ")
    assert expected in err
    assert peak < 20_000_000, f"refusing {seeds!r} used {peak:,} bytes"
    assert not (tmp_path / "run").exists()


def test_the_seed_limits_are_inclusive():
    from tp_gym.commands.common import parse_seeds

    assert parse_seeds(f"{MAX_SEED}") == [MAX_SEED]
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    assert parse_seeds("0-4,2-6, 9") == [0, 1, 2, 3, 4, 5, 6, 9]
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1},5-10,{MAX_SEEDS - 1}")) == MAX_SEEDS
    big = f"{MAX_SEED - MAX_SEEDS + 1}-{MAX_SEED}"
    assert len(parse_seeds(big)) == MAX_SEEDS


def test_a_grid_refuses_too_many_seeds_before_building_anything():
    from tp_gym.runs.grid import MAX_SEED, MAX_SEEDS, Grid

    with pytest.raises(ValueError, match="at most 100,000 per grid"):
        Grid.build("scripted:direct", envs="tp_gym/Coding-Loyalty-v0", seeds=range(10**8))
    with pytest.raises(ValueError, match="above the largest seed"):
        Grid.build("scripted:direct", envs="tp_gym/Coding-Loyalty-v0", seeds=[MAX_SEED + 1])
    grid = Grid.build("scripted:direct", envs="tp_gym/Coding-Loyalty-v0", seeds=range(MAX_SEEDS))
    assert len(grid) == MAX_SEEDS  # the largest grid of seeds builds (distinct seeds, fast)
