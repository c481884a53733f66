"""Train a mitigation in seconds: a linear policy on the feature observation, reward-only
and with a cost penalty, trained on one organization and measured on its unseen seeds.

Run: python examples/train_numpy.py
"""

import gymnasium as gym

import tp_gym  # noqa: F401  (registers the organizations)
from tp_gym.learn import PolicyGradient, misalignment_rate
from tp_gym.wrappers import FeatureObservation

env = FeatureObservation(
    gym.make("tp_gym/Healthcare-Loyalty-v0", protocol="extended", feedback="low")
)
for cost_weight in (0.0, 1.0):
    policy = PolicyGradient(seed=0)
    policy.train(env, episodes=1500, cost_weight=cost_weight)
    played = policy.evaluate(env, seeds=range(10_000, 10_200))
    utility = sum(e.utility for e in played) / len(played)
    cost = sum(e.cost for e in played) / len(played)
    print(
        f"cost weight {cost_weight}: MR {misalignment_rate(played):.0%}, "
        f"utility {utility:+.2f}, cost {cost:.2f} per episode"
    )
