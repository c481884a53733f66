"""A small numpy policy-gradient learner for `tp_gym.wrappers.FeatureObservation` envs.

Enough to show that the observation carries what a policy needs, in seconds and without a
deep-learning stack: a linear softmax policy over the shown tools, scoring tool ``i`` as
``w . tools[i] + u * uses[i]`` (its text encoding and how often it was used this episode),
masked to the shown tools, trained with REINFORCE on whole-episode returns minus a running
baseline. ``cost_weight`` trains on ``reward - cost_weight * cost`` (a fixed penalty; see
`tp_gym.wrappers.LagrangianReward` for a learned one). The policy learns from the reward
the env returns; under `LagrangianReward` that is the scaled Lagrangian reward, while
`Episode.utility` stays the organization's own reward (recovered from
``info["lagrange_multiplier"]``). All randomness comes from `seed`.
For real training use stable-baselines3 (examples/train_ppo.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from tp_gym.env import FEATURE_NAMES, MAX_TOOLS

USES = np.array([FEATURE_NAMES.index(f"tool_{i}_uses") for i in range(MAX_TOOLS)])


@dataclass(frozen=True)
class Episode:
    """One played episode: return (utility), cost, length and the behaviour class."""

    utility: float
    cost: float
    length: int
    behaviour: str
    terminal: str | None
    """The role of the terminal tool that ended it, or None (truncated)."""


class PolicyGradient:
    """A linear softmax policy over shown tools, trained with REINFORCE (see module doc)."""

    def __init__(self, dim: int = 64, lr: float = 0.2, entropy: float = 0.01, seed: int = 0):
        self.weights = np.zeros(dim + 1)
        self.lr = lr
        self.entropy = entropy
        self.rng = np.random.default_rng(seed)
        self._baseline = 0.0

    def probabilities(self, observation: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(per-tool inputs, action probabilities) for a `FeatureObservation` observation."""
        mask = observation["action_mask"].astype(bool)
        inputs = np.concatenate(
            [observation["tools"], observation["features"][USES][:, None]], axis=1
        )
        logits = np.where(mask, inputs @ self.weights, -np.inf)
        logits -= logits[mask].max()
        exp = np.exp(logits)
        return inputs, exp / exp.sum()

    def act(self, observation: dict[str, Any], greedy: bool = False) -> int:
        _, probabilities = self.probabilities(observation)
        if greedy:
            return int(np.argmax(probabilities))
        return int(self.rng.choice(len(probabilities), p=probabilities))

    def play(
        self, env: gym.Env, seed: int, cost_weight: float = 0.0, learn: bool = True
    ) -> Episode:
        """Play one episode on `env` from `seed`; with `learn`, update the policy from it."""
        observation, _ = env.reset(seed=seed)
        grads: list[np.ndarray] = []
        utility = cost = learned = 0.0
        length = 0
        info: dict[str, Any] = {}
        done = False
        while not done:
            inputs, probabilities = self.probabilities(observation)
            action = int(self.rng.choice(len(probabilities), p=probabilities))
            expected = probabilities @ inputs
            grad = inputs[action] - expected
            logp = np.log(np.where(probabilities > 0, probabilities, 1.0))
            grad += self.entropy * -(probabilities * (logp + 1.0)) @ (inputs - expected)
            grads.append(grad)
            observation, reward, terminated, truncated, info = env.step(action)
            step_cost = float(info["cost"])
            learned += float(reward)
            lam = info.get("lagrange_multiplier")
            if lam is None:
                utility += float(reward)
            else:  # LagrangianReward: reward = (r - lam * cost) / (1 + lam); recover r
                utility += float(reward) * (1.0 + lam) + lam * step_cost
            cost += step_cost
            length += 1
            done = terminated or truncated
        if learn:
            score = learned - cost_weight * cost
            advantage = score - self._baseline
            self._baseline += 0.05 * (score - self._baseline)
            self.weights += self.lr * advantage * np.sum(grads, axis=0) / max(1.0, abs(advantage))
        terminal = info.get("role") if terminated else None
        return Episode(utility, cost, length, str(info.get("behaviour")), terminal)

    def train(
        self, env: gym.Env, episodes: int, cost_weight: float = 0.0, first_seed: int = 0
    ) -> list[Episode]:
        """Train for `episodes` episodes, seeds ``first_seed, first_seed + 1, ...``."""
        return [self.play(env, first_seed + i, cost_weight) for i in range(episodes)]

    def evaluate(self, env: gym.Env, seeds: range) -> list[Episode]:
        """Play `seeds` without learning (actions still sampled from the policy)."""
        return [self.play(env, seed, learn=False) for seed in seeds]


def misalignment_rate(episodes: list[Episode]) -> float:
    """Share of episodes classed strategic or direct."""
    return sum(e.behaviour in ("strategic", "direct") for e in episodes) / max(1, len(episodes))
