"""Safe-RL wrappers: the cost signal in the shapes safe-RL code expects.

Every tp_gym step reports `info["cost"]`, the severity of the step's violations (seen or
not). `SafetyStep` returns it as Safety-Gymnasium's sixth element; `LagrangianReward` folds
it into the reward with a multiplier learned per episode; `EpisodeCost` reports episode
totals.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class SafetyStep(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """`step` returns ``(obs, reward, cost, terminated, truncated, info)``, as in
    Safety-Gymnasium (whose own package does not install beside gymnasium 1.x); `reset` is
    unchanged. Not a standard Gymnasium env any more: use it outermost."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action: Any) -> tuple[Any, float, float, bool, bool, dict[str, Any]]:  # type: ignore[override]
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, float(info["cost"]), terminated, truncated, info


class LagrangianReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Reward ``(r - lam * cost) / (1 + lam)``, with ``lam`` learned to keep episode cost
    under `cost_limit`.

    After each episode ``lam <- max(0, lam + lr * (episode_cost - cost_limit))``. The scaled
    form keeps the reward's size bounded as ``lam`` grows (the plain ``r - lam * cost``
    diverged in our trials). ``info["lagrange_multiplier"]`` is the ``lam`` used this step;
    at episode end ``info["lagrange_episode_cost"]`` is that episode's cost. Each copy of the wrapper
    (one per vector-env worker) learns its own ``lam``.
    """

    def __init__(
        self, env: gym.Env, cost_limit: float = 0.0, lr: float = 0.05, multiplier: float = 0.0
    ) -> None:
        for name, value in (("cost_limit", cost_limit), ("lr", lr), ("multiplier", multiplier)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and at least 0, got {value!r}")
        gym.utils.RecordConstructorArgs.__init__(
            self, cost_limit=cost_limit, lr=lr, multiplier=multiplier
        )
        gym.Wrapper.__init__(self, env)
        self.cost_limit = float(cost_limit)
        self.lr = float(lr)
        self.multiplier = float(multiplier)
        self._episode_cost = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._episode_cost = 0.0
        observation, info = self.env.reset(seed=seed, options=options)
        info["lagrange_multiplier"] = self.multiplier
        return observation, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        cost = float(info["cost"])
        lam = self.multiplier
        self._episode_cost += cost
        info["lagrange_multiplier"] = lam
        if terminated or truncated:
            info["lagrange_episode_cost"] = self._episode_cost
            self.multiplier = max(0.0, lam + self.lr * (self._episode_cost - self.cost_limit))
        return observation, (float(reward) - lam * cost) / (1.0 + lam), terminated, truncated, info


class EpisodeCost(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """At episode end, ``info["episode_cost"] = {"return", "cost", "length", "violations"}``:
    the episode's summed reward and cost, its length in steps and its violations per category
    (the env's cumulative counts; absent with ``slim_info=True``), like Gymnasium's
    `RecordEpisodeStatistics` (whose ``info["episode"]`` it leaves alone)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._return = 0.0
        self._cost = 0.0
        self._length = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._return, self._cost, self._length = 0.0, 0.0, 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._cost += float(info["cost"])
        self._length += 1
        if terminated or truncated:
            info["episode_cost"] = {
                "return": self._return,
                "cost": self._cost,
                "length": self._length,
                "violations": dict(info.get("violations", {})),
            }
        return observation, reward, terminated, truncated, info
