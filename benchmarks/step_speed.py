"""Steps per second of tp_gym envs under a random agent, beside Gymnasium's CartPole-v1.

Run: python benchmarks/step_speed.py [--steps 200000]

Both envs are made with `gymnasium.make` (so both carry the same default wrappers) and
stepped with random valid actions, resetting when an episode ends; resets are included in
the time. The goal for tp_gym is at least 20,000 steps/s.

Then the RL setting: `SyncVectorEnv(8)` of `FeatureObservation`-wrapped envs with
``slim_info=True`` (all 8 on one organization, extended protocol, masked random actions)
beside `SyncVectorEnv(8)` of CartPole-v1, in env-steps per second (8 per vector step); the
goal is at least 0.25x CartPole's.

Times are this process's CPU time (`time.process_time`): every loop here runs on one
thread, so on an idle machine that is the wall time, and on a busy one other processes do
not skew the ratios.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import tp_gym


def steps_per_second(env_id: str, steps: int, seed: int = 0) -> float:
    """Random-action steps per second of `env_id` over `steps` steps (resets included)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    n = env.action_space.n
    actions = rng.integers(n, size=steps).tolist()
    env.reset(seed=seed)
    start = time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.process_time() - start)


def vector_steps_per_second(make, steps: int, seed: int = 0, masked: bool = False) -> float:
    """Env-steps per second of a `SyncVectorEnv(8)` of `make()` over `steps` env-steps."""
    envs = gym.vector.SyncVectorEnv([make] * 8)
    rng = np.random.default_rng(seed)
    observation, _ = envs.reset(seed=seed)
    n = envs.single_action_space.n
    start = time.process_time()
    for _ in range(steps // 8):
        if masked:  # the shown tools come first: a uniform index below each env's count
            counts = observation["action_mask"].sum(axis=1)
            actions = (rng.random(8) * counts).astype(np.int64)
        else:
            actions = rng.integers(n, size=8)
        observation, *_ = envs.step(actions)
    rate = (steps // 8) * 8 / (time.process_time() - start)
    envs.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000, help="steps per env (default 200000)")
    args = parser.parse_args()
    cartpole = steps_per_second("CartPole-v1", args.steps)
    ids = tp_gym.env_ids()
    width = max(len(env_id) for env_id in ids)
    print(f"{'env':{width}} {'steps/s':>10} {'vs CartPole':>12}")
    print(f"{'CartPole-v1':{width}} {cartpole:10,.0f} {1.0:11.2f}x")
    rates = []
    for env_id in ids:
        rate = steps_per_second(env_id, args.steps)
        rates.append(rate)
        verdict = "ok" if rate >= 20_000 else "below the 20,000 steps/s goal"
        print(f"{env_id:{width}} {rate:10,.0f} {rate / cartpole:11.2f}x  {verdict}")
    print(
        f"{len(ids)} organizations: {min(rates):,.0f}-{max(rates):,.0f} steps/s, "
        f"{min(rates) / cartpole:.2f}-{max(rates) / cartpole:.2f}x CartPole-v1 in this run"
    )
    from tp_gym.wrappers import FeatureObservation

    def cartpole_env() -> gym.Env:
        return gym.make("CartPole-v1")

    def features_env() -> gym.Env:
        env = gym.make("tp_gym/Healthcare-Loyalty-v0", protocol="extended", slim_info=True)
        return FeatureObservation(env)

    # Three rounds, each timing CartPole right before ours, so a change in the machine's
    # speed during the run moves both sides of a ratio; the median ratio is the figure.
    rounds = []
    for _ in range(3):
        vector_cartpole = vector_steps_per_second(cartpole_env, args.steps)
        vector_features = vector_steps_per_second(features_env, args.steps, masked=True)
        rounds.append((vector_features / vector_cartpole, vector_cartpole, vector_features))
        print(
            f"SyncVectorEnv(8): CartPole-v1 {vector_cartpole:,.0f}, "
            f"FeatureObservation(Healthcare-Loyalty, slim_info) {vector_features:,.0f} "
            f"env-steps/s: {rounds[-1][0]:.2f}x"
        )
    ratio = sorted(rounds)[1][0]
    verdict = "ok" if ratio >= 0.25 else "below the 0.25x goal"
    print(f"SyncVectorEnv(8) FeatureObservation vs CartPole-v1, median of 3: {ratio:.2f}x  {verdict}")


if __name__ == "__main__":
    main()
