"""Train a mitigation: a policy that learns from reward only, and two that also pay for cost.

The notebook examples/training_mitigation.ipynb is built from this file
(python examples/build_notebooks.py --write); as a script: python examples/training_mitigation.py
"""
# requires: IPython

# %% [markdown]
# # Training a mitigation with a cost signal
#
# Every step returns the utility the agent earned (`reward`) and the ethical cost it caused
# (`info["cost"]`). A policy trained on reward alone learns the toxic shortcut when it pays
# more; a cost signal in training is a mitigation. Three policies of `tp_gym.learn`'s small
# numpy learner (a linear softmax policy over the shown tools, REINFORCE), on the feature
# observation of `tp_gym.wrappers.FeatureObservation`:
#
# - **reward only**;
# - **fixed penalty**: trained on `reward - 1.0 * cost`;
# - **Lagrangian**: `tp_gym.wrappers.LagrangianReward` with a cost limit of 0, whose
#   multiplier grows while episodes still cost something.
#
# Each trains for 1,500 episodes on one organization under the `extended` protocol with low
# feedback (a toxic call mostly goes through), then plays 200 unseen seeds.

# %%
import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

import tp_gym  # noqa: F401  (registers the organizations)
from tp_gym.learn import PolicyGradient, misalignment_rate
from tp_gym.wrappers import FeatureObservation, LagrangianReward

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"
EPISODES = 1500
UNSEEN = range(10_000, 10_200)


def make_env():
    """The organization as a policy sees it: features, per-tool encodings, an action mask."""
    return FeatureObservation(gym.make(ENV_ID, protocol="extended", feedback="low"))


SETTINGS = {
    "reward only": (make_env(), 0.0),
    "fixed penalty": (make_env(), 1.0),
    "Lagrangian": (LagrangianReward(make_env(), cost_limit=0.0, lr=0.05), 0.0),
}
training, played = {}, {}
for name, (env, cost_weight) in SETTINGS.items():
    policy = PolicyGradient(seed=0)
    training[name] = policy.train(env, episodes=EPISODES, cost_weight=cost_weight)
    played[name] = policy.evaluate(make_env(), seeds=UNSEEN)

# %% [markdown]
# ## On unseen seeds
#
# MR is the share of episodes classed strategic or direct; utility is the organization's
# own reward (the Lagrangian policy learned from a scaled reward, but is measured on this).

# %%
for name, episodes in played.items():
    utility = np.mean([e.utility for e in episodes])
    cost = np.mean([e.cost for e in episodes])
    print(
        f"{name}: MR {misalignment_rate(episodes):.0%}, "
        f"utility {utility:+.2f}, cost {cost:.2f} per episode"
    )

# %% [markdown]
# ## While training
#
# The share of misaligned episodes and the cost per episode, averaged over windows of 100
# training episodes. The reward-only policy settles on the toxic shortcut; the penalized
# ones move away from it, giving up some utility.


# %%
def windowed(values, size=100):
    """Means over consecutive windows of `size` values."""
    values = np.asarray(values, dtype=float)
    return values[: len(values) // size * size].reshape(-1, size).mean(axis=1)


figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, episodes in training.items():
    steps = np.arange(1, EPISODES // 100 + 1) * 100
    misaligned = [e.behaviour in ("strategic", "direct") for e in episodes]
    left.plot(steps, windowed(misaligned), marker="o", label=name)
    right.plot(steps, windowed([e.cost for e in episodes]), marker="o", label=name)
left.set(xlabel="training episode", ylabel="misaligned share", ylim=(-0.05, 1.05))
right.set(xlabel="training episode", ylabel="cost per episode")
left.legend()
figure.suptitle(f"{ENV_ID}, extended protocol, feedback low")
figure.tight_layout()
display(figure)
plt.close(figure)
