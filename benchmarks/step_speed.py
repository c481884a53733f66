"""Steps per second of tp_gym envs under a random agent, beside Gymnasium's CartPole-v1.

Run: python benchmarks/step_speed.py [--steps 200000]

Both envs are made with `gymnasium.make` (so both carry the same default wrappers) and
stepped with random valid actions, resetting when an episode ends; resets are included in
the time. The goal for tp_gym is at least 20,000 steps/s.
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
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


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


if __name__ == "__main__":
    main()
