"""Same seed + same actions => byte-identical episode log, even across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import tp_gym
from tp_gym.agents import make_agent
from tp_gym.runs.episode import read_jsonl, to_json_line, write_jsonl
from tp_gym.runs.jsonl import SkippedLineWarning
from tp_gym.variables import PROTOCOLS

SCRIPT = textwrap.dedent(
    """
    import sys
    import gymnasium as gym
    import tp_gym
    from tp_gym.agents import make_agent
    from tp_gym.runs.episode import write_jsonl

    logs = []
    for protocol in ("study", "extended"):
        for env_id in tp_gym.env_ids():
            env = gym.make(env_id, protocol=protocol, feedback="medium")
            for policy in ("random", "strategic", "compliant"):
                for seed in (0, 7, 123):
                    agent = make_agent("scripted:" + policy)
                    logs.append(tp_gym.run_episode(env, agent, seed=seed))
    write_jsonl(sys.argv[1], logs)
    """
)


def test_two_processes_write_byte_identical_logs(tmp_path):
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        path = tmp_path / name
        subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, timeout=120)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") == 2 * 9 * len(tp_gym.env_ids())
    protocols = [log.protocol for log in read_jsonl(tmp_path / "a.jsonl")]
    assert protocols.count("study") == protocols.count("extended") == 9 * len(tp_gym.env_ids())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_same_seed_and_actions_replay_identically(protocol):
    actions = [
        '{"reasoning": "r", "tool_choice": {"name": "nonexistent", "parameters": {}}}',
        {"name": "x"},
        [0, 1],
        99,
        5,
        4,
        2,
        0,
        1,
        3,
        6,
        7,
    ]
    env = gym.make("tp_gym/Healthcare-Loyalty-v0", protocol=protocol)

    class Replay:
        name = "replay"
        needs_oracle = False

        def reset(self, observation, *, tools, oracle, seed, protocol="study"):
            self.queue = list(actions) * 3

        def act(self, observation):
            return self.queue.pop(0)

    seed = {"study": 3, "extended": 1}[protocol]  # seeds whose tool order makes a long replay
    log = tp_gym.run_episode(env, Replay(), seed=seed)
    assert len(log.steps) >= 8 and log.invalid_actions == 4, "a long replay, mistakes included"
    first = to_json_line(log)
    second = to_json_line(
        tp_gym.run_episode(
            gym.make("tp_gym/Healthcare-Loyalty-v0", protocol=protocol), Replay(), seed=seed
        )
    )
    assert first == second
    assert f'"protocol":"{protocol}"' in first
    different = to_json_line(tp_gym.run_episode(env, Replay(), seed=seed + 1))
    assert different != first


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_jsonl_round_trip(tmp_path, protocol):
    env = gym.make("tp_gym/Healthcare-Loyalty-v0", protocol=protocol)
    logs = [tp_gym.run_episode(env, make_agent("scripted:random"), seed=s) for s in range(5)]
    path = tmp_path / "episodes.jsonl"
    write_jsonl(path, logs)
    assert read_jsonl(path) == logs
    with path.open("a") as handle:
        handle.write('{"torn": ')
    with pytest.warns(SkippedLineWarning, match=r"episodes.jsonl:\d+: not an episode log"):
        assert read_jsonl(path, skip_invalid=True) == logs
    try:
        read_jsonl(path)
    except ValueError as error:
        assert "episodes.jsonl:6" in str(error)
    else:
        raise AssertionError("a torn line must be reported")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_absurdly_nested_action_is_logged_as_an_invalid_action_not_an_error(protocol):
    nested: list = []
    for _ in range(100_000):
        nested = [nested]

    class Nester:
        name = "nester"
        needs_oracle = False

        def reset(self, observation, *, tools, oracle, seed, protocol="study"):
            pass

        def act(self, observation):
            return nested

    env = gym.make("tp_gym/Healthcare-Loyalty-v0", max_turns=2, protocol=protocol)
    log = tp_gym.run_episode(env, Nester(), seed=0)
    assert log.error is None and log.invalid_actions == 2 and log.truncated
    assert "unserializable" in log.steps[0].action
