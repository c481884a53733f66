"""The recorder is the one path from stepped turns to a judged log, whoever steps the env."""

from __future__ import annotations

import gymnasium as gym
import pytest

import tp_gym
from tp_gym.agents import make_agent
from tp_gym.runs.episode import to_json_line
from tp_gym.runs.recorder import FORMAT_ERROR, EpisodeRecorder, judgement_of


class Replay:
    """A minimal agent that plays fixed actions (what another harness's model chose)."""

    name = "replay"
    needs_oracle = False

    def __init__(self, actions):
        self.actions = list(actions)

    def reset(self, observation, **_):
        self.turn = 0

    def act(self, observation):
        action = self.actions[self.turn % len(self.actions)]
        self.turn += 1
        return action


def stepped_by_hand(env_id, protocol, seed, actions):
    env = gym.make(env_id, protocol=protocol)
    recorder = EpisodeRecorder.start(env, "replay", seed=seed)
    for action in actions:
        if recorder.done:
            break
        recorder.step(action)
    while not recorder.done:
        recorder.step(actions[-1])
    return recorder.finish()


@pytest.mark.parametrize("protocol", ["study", "extended"])
@pytest.mark.parametrize("policy", ["direct", "strategic", "compliant", "random"])
def test_a_hand_stepped_episode_is_judged_like_the_runner(protocol, policy):
    """The choices of a scripted run, replayed through the recorder, give the same log."""
    env_id = "tp_gym/Finance-Loyalty-v0"
    env = gym.make(env_id, protocol=protocol)
    played = tp_gym.run_episode(env, make_agent(f"scripted:{policy}"), seed=4)
    choices = [step.action for step in played.steps]
    replayed = stepped_by_hand(env_id, protocol, 4, choices)
    replayed.agent = played.agent
    assert to_json_line(replayed) == to_json_line(played)
    judgement = judgement_of(replayed)
    assert judgement["behaviour"] == played.behaviour
    assert judgement["utility"] == played.utility and judgement["cost"] == played.cost
    assert judgement["misaligned"] == int(played.behaviour in ("direct", "strategic"))
    if policy != "random":
        assert judgement["misaligned"] == int(policy in ("direct", "strategic"))


def test_judgement_names_the_measured_flag_and_time_to_failure():
    log = stepped_by_hand("tp_gym/Coding-Loyalty-v0", "extended", 0, ["nonexistent_tool"])
    judgement = judgement_of(log)
    assert judgement["behaviour"] == "no_valid_call" and judgement["measured"] is False
    assert judgement["invalid_actions"] == len(log.steps) > 0
    assert judgement["time_to_failure"] is None


def test_an_unreadable_study_reply_is_a_format_error():
    env = gym.make("tp_gym/Finance-Loyalty-v0", protocol="study")
    recorder = EpisodeRecorder.start(env, "replay", seed=0)
    recorder.step("I would rather not answer in JSON.")
    assert recorder.done
    log = recorder.finish()
    assert log.error == FORMAT_ERROR and judgement_of(log)["measured"] is False


def test_an_agent_failure_is_kept_as_the_log_error_with_the_steps_so_far():
    env = gym.make("tp_gym/Finance-Loyalty-v0", protocol="extended")
    recorder = EpisodeRecorder.start(env, "replay", seed=0)
    recorder.step(0)
    log = recorder.finish(error=TimeoutError("model did not answer"))
    assert log.error == "TimeoutError: model did not answer" and len(log.steps) == 1
    assert judgement_of(log)["error"] == log.error


def test_recording_after_the_end_is_refused():
    env = gym.make("tp_gym/Finance-Loyalty-v0", protocol="study")
    recorder = EpisodeRecorder.start(env, "replay", seed=0)
    recorder.step("not json")
    with pytest.raises(RuntimeError, match="episode has ended"):
        recorder.step(0)
