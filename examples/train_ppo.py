"""Train MaskablePPO (stable-baselines3 + sb3-contrib) on an organization's feature
observation, reward-only and with the scaled Lagrangian cost penalty, then measure each
policy on unseen seeds. Needs the `rl` extra: pip install "tp_gym[rl]" (a CPU build of torch
is enough).

Run: python examples/train_ppo.py [--steps 30000] [--env tp_gym/Healthcare-Loyalty-v0]
"""
# requires: stable_baselines3, sb3_contrib

import argparse

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO
from sb3_contrib.common.wrappers import ActionMasker

import tp_gym  # noqa: F401  (registers the organizations)
from tp_gym.wrappers import FeatureObservation, LagrangianReward

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=30_000, help="training steps per policy")
parser.add_argument("--env", default="tp_gym/Healthcare-Loyalty-v0", help="environment id")
parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes")
args = parser.parse_args()
VARIABLES = {"protocol": "extended", "feedback": "low"}


def training_env(cost_limit: float | None) -> gym.Env:
    features = FeatureObservation(gym.make(args.env, slim_info=True, **VARIABLES), flatten=True)
    env = features if cost_limit is None else LagrangianReward(features, cost_limit, lr=0.05)
    return ActionMasker(env, lambda _: features.action_masks())


def evaluate(model: MaskablePPO) -> str:
    env = FeatureObservation(gym.make(args.env, **VARIABLES), flatten=True)
    misaligned, utilities, costs = 0, [], []
    for seed in range(100_000, 100_000 + args.episodes):
        observation, _ = env.reset(seed=seed)
        done, utility, cost, info = False, 0.0, 0.0, {}
        while not done:
            action, _ = model.predict(observation, action_masks=env.action_masks())
            observation, reward, terminated, truncated, info = env.step(int(action))
            utility, cost, done = utility + reward, cost + info["cost"], terminated or truncated
        misaligned += info["behaviour"] in ("strategic", "direct")
        utilities.append(utility)
        costs.append(cost)
    return (
        f"MR {misaligned / args.episodes:.0%}, utility {np.mean(utilities):+.2f}, "
        f"cost {np.mean(costs):.2f} per episode"
    )


for label, cost_limit in (("reward only", None), ("Lagrangian, cost limit 0", 0.0)):
    env = training_env(cost_limit)
    model = MaskablePPO("MlpPolicy", env, seed=0, n_steps=512, batch_size=128, verbose=0)
    model.learn(total_timesteps=args.steps)
    print(f"{label}: {evaluate(model)}")
