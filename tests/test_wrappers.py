"""tp_gym.wrappers and the numpy learner: what RL users rely on.

Every wrapped organization passes Gymnasium's checker; vector envs (sync and async) replay
the same seeded episodes as single envs; the feature observation encodes exactly what the
agent is shown; the safe-RL wrappers report cost as documented; and a linear policy learns
the toxic path from reward alone and the compliant path with a cost penalty.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tp_gym
from tp_gym.env import MAX_TOOLS, N_FEATURES
from tp_gym.learn import PolicyGradient, misalignment_rate
from tp_gym.spec import CATEGORIES, ROLES
from tp_gym.wrappers import EpisodeCost, FeatureObservation, LagrangianReward, SafetyStep

ENV_IDS = tp_gym.env_ids()


def wrapped(env_id: str = "tp_gym/Healthcare-Loyalty-v0", **kwargs) -> gym.Env:
    return FeatureObservation(gym.make(env_id, protocol="extended", **kwargs))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes_on_every_wrapped_organization(env_id):
    with pytest.warns(UserWarning, match="different from the unwrapped"):
        check_env(wrapped(env_id), skip_render_check=True)


@pytest.mark.parametrize("flatten", [False, True])
def test_the_observation_encodes_what_the_agent_is_shown_and_masks_the_rest(flatten):
    env = FeatureObservation(gym.make("tp_gym/Finance-Loyalty-v0", protocol="study"), dim=32)
    observation, _ = env.reset(seed=3)
    texts = env.unwrapped.shown_tool_texts()
    rows = np.stack([env.encoder.encode(text) for text in texts])
    assert len(texts) == 6 and env.action_space == gym.spaces.Discrete(MAX_TOOLS)
    assert env.action_masks().tolist() == [True] * 6 + [False] * (MAX_TOOLS - 6)
    if flatten:
        env = FeatureObservation(gym.make("tp_gym/Finance-Loyalty-v0", protocol="study"), 32, True)
        flat, _ = env.reset(seed=3)
        assert flat.shape == (N_FEATURES + MAX_TOOLS * 32 + MAX_TOOLS,)
        assert np.array_equal(flat[N_FEATURES : N_FEATURES + 6 * 32], rows.ravel())
        return
    assert np.array_equal(observation["tools"][:6], rows)
    assert not observation["tools"][6:].any()
    hidden = [w for w in (*ROLES, *CATEGORIES, "toxic", "violation") if w in " ".join(texts)]
    assert not hidden, "the encoded text is only what the agent reads"
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0)


def test_the_encoding_follows_the_tool_not_its_shuffled_position():
    env = wrapped()
    rows = {}
    orders = set()
    for seed in range(6):
        observation, _ = env.reset(seed=seed, options={"variant": 7})
        names = env.unwrapped.tool_names()
        orders.add(tuple(names))
        for name, row in zip(names, observation["tools"]):
            assert np.array_equal(rows.setdefault(name, row), row), name
    assert len(orders) > 1, "the order was shuffled"
    other = FeatureObservation(gym.make("tp_gym/Healthcare-Loyalty-v0"))
    assert np.array_equal(other.encoder.encode("abc"), env.encoder.encode("abc")), "fixed"
    assert not np.array_equal(env.encoder.encode("abc"), env.encoder.encode("abd"))


def test_an_action_past_the_shown_tools_is_an_invalid_action():
    env = FeatureObservation(gym.make("tp_gym/Finance-Loyalty-v0", protocol="study"))
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(MAX_TOOLS - 1)
    assert not (terminated or truncated) and info["invalid_actions"] == 1 and reward == 0.0


def _single_episodes(env_fn, seeds, actions):
    """Per seed: the (reward, cost, done) steps of one episode playing `actions` in order."""
    out = []
    for seed in seeds:
        env = env_fn()
        env.reset(seed=seed)
        steps = []
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            steps.append((round(float(reward), 9), info["cost"], terminated or truncated))
            if terminated or truncated:
                break
        out.append(steps)
    return out


@pytest.mark.parametrize("vector", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_vector_envs_replay_the_seeded_episodes_of_single_envs(vector):
    def env_fn():
        return EpisodeCost(
            LagrangianReward(wrapped("tp_gym/Finance-Loyalty-Rollover-v0", slim_info=True), 0.0)
        )

    seeds = [11, 12, 13]
    actions = [4, 0, 7, 2, 5, 1, 3, 6]
    expected = _single_episodes(env_fn, seeds, actions)
    envs = vector([env_fn] * len(seeds))
    try:
        envs.reset(seed=seeds)
        got: list[list[tuple[float, float, bool]]] = [[] for _ in seeds]
        done = [False] * len(seeds)
        for action in actions:
            _, rewards, terminated, truncated, infos = envs.step(np.full(len(seeds), action))
            for i in range(len(seeds)):
                if not done[i]:
                    ended = bool(terminated[i] or truncated[i])
                    got[i].append((round(float(rewards[i]), 9), float(infos["cost"][i]), ended))
                    done[i] = ended
    finally:
        envs.close()
    assert got == expected


def test_slim_info_keeps_scalars_only():
    env = gym.make("tp_gym/Coding-Loyalty-v0", slim_info=True)
    env.reset(seed=0)
    *_, info = env.step(0)
    assert all(isinstance(v, int | float | bool) for v in info.values())
    assert set(info) == {"cost", "valid", "format_error"}
    with pytest.raises(ValueError, match="slim_info"):
        gym.make("tp_gym/Coding-Loyalty-v0", slim_info="yes")


def test_safety_step_and_episode_cost_report_the_cost():
    env = EpisodeCost(SafetyStep(gym.make("tp_gym/Healthcare-Loyalty-v0", protocol="extended")))
    env.reset(seed=5)
    oracle = env.unwrapped.oracle()
    total = 0.0
    for role in ("inhibitor", "modifier", "direct_executor"):
        result = env.env.step(oracle.first(role))  # SafetyStep's 6-tuple
        assert len(result) == 6 and result[2] == result[5]["cost"]
        total += result[2]
    env = EpisodeCost(gym.make("tp_gym/Healthcare-Loyalty-v0", protocol="extended"))
    env.reset(seed=5)
    oracle = env.unwrapped.oracle()
    rewards = []
    for role in ("inhibitor", "modifier", "direct_executor"):
        _, reward, terminated, truncated, info = env.step(oracle.first(role))
        rewards.append(reward)
    assert terminated
    summary = info["episode_cost"]
    assert summary["cost"] == pytest.approx(total) and summary["length"] == 3
    assert summary["return"] == pytest.approx(sum(rewards))
    assert summary["violations"] == info["violations"]


def test_the_lagrangian_multiplier_rises_with_cost_and_scales_the_reward():
    base = gym.make("tp_gym/Healthcare-Loyalty-v0", protocol="extended", observed=False)
    env = LagrangianReward(base, cost_limit=2.0, lr=0.1, multiplier=1.0)
    env.reset(seed=0)
    direct = env.unwrapped.oracle().first("direct_executor")
    plain = gym.make("tp_gym/Healthcare-Loyalty-v0", protocol="extended", observed=False)
    plain.reset(seed=0)
    _, raw, *_, raw_info = plain.step(direct)
    _, reward, terminated, _, info = env.step(direct)
    assert terminated and info["lagrange_multiplier"] == 1.0
    assert reward == pytest.approx((raw - 1.0 * raw_info["cost"]) / 2.0)
    assert env.multiplier == pytest.approx(1.0 + 0.1 * (raw_info["cost"] - 2.0))
    env.reset(seed=1)
    compliant = env.unwrapped.oracle().first("standard_executor")
    before = env.multiplier
    env.step(compliant)
    assert env.multiplier == pytest.approx(max(0.0, before - 0.2)), "no cost: lam falls"
    for bad in ({"cost_limit": -1}, {"lr": float("nan")}, {"multiplier": "1"}):
        with pytest.raises(ValueError):
            LagrangianReward(base, **bad)


def test_a_linear_policy_learns_the_toxic_path_from_reward_and_the_compliant_one_with_cost():
    env = wrapped(feedback="low")
    greedy = PolicyGradient(seed=0)
    greedy.train(env, 1500)
    toxic = greedy.evaluate(env, range(10_000, 10_200))
    assert misalignment_rate(toxic) >= 0.8
    careful = PolicyGradient(seed=0)
    careful.train(env, 1500, cost_weight=1.0)
    safe = careful.evaluate(env, range(10_000, 10_200))
    assert misalignment_rate(safe) <= 0.1
    assert sum(e.terminal == "standard_executor" for e in safe) / len(safe) >= 0.8
    assert np.mean([e.utility for e in toxic]) > np.mean([e.utility for e in safe])


def test_turning_the_text_off_changes_nothing_but_the_text():
    def play(text: bool):
        env = gym.make("tp_gym/Finance-Loyalty-Rollover-v0", protocol="extended")
        env.unwrapped.text_observations = text
        observation, _ = env.reset(seed=4)
        steps = [observation["text"] != ""]
        for action in (4, 0, 1, 2, 2, 2, 2, 3):
            observation, reward, terminated, truncated, info = env.step(action)
            info = {k: v for k, v in info.items()}
            steps.append((observation["text"] != "", reward, terminated, truncated, info))
            if terminated or truncated:
                break
        return steps

    on, off = play(True), play(False)
    assert on[0] and not off[0]
    assert [s[1:] for s in on[1:]] == [s[1:] for s in off[1:]]
    assert all(s[0] for s in on[1:]) and not any(s[0] for s in off[1:])
    wrapped_env = FeatureObservation(gym.make("tp_gym/Finance-Loyalty-v0"))
    assert wrapped_env.unwrapped.text_observations is False


def test_rgb_array_frames_show_the_text_as_rl_tooling_asks_for():
    env = gym.make("tp_gym/Healthcare-Loyalty-v0", render_mode="rgb_array")
    check_env(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert 0.01 < (frame < 128).mean() < 0.5, "dark text on a light frame"
    blank = FeatureObservation(gym.make("tp_gym/Healthcare-Loyalty-v0", render_mode="rgb_array"))
    blank.reset(seed=0)
    assert blank.unwrapped.text_observations, "a render mode keeps the text to draw"
    assert np.array_equal(blank.render(), frame)
