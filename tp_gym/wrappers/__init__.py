"""Gymnasium wrappers for training policies on the organizations (RL and safe RL).

- `FeatureObservation`: a numeric observation a policy can learn from: the env's features,
  a fixed hashed encoding of each shown tool (from what the agent is shown, never its hidden
  role) and an action mask; one `Discrete(MAX_TOOLS)` action space for every organization.
- `SafetyStep`: Safety-Gymnasium's ``(obs, reward, cost, terminated, truncated, info)``.
- `LagrangianReward`: the scaled Lagrangian reward ``(r - lam * cost) / (1 + lam)`` with the
  multiplier updated after each episode.
- `EpisodeCost`: episode return, cost, length and violations in ``info`` at episode end.

Pass ``slim_info=True`` to `gymnasium.make` for vector envs: it keeps `info` to scalars.
"""

from tp_gym.wrappers.features import FeatureObservation, ToolEncoder
from tp_gym.wrappers.safety import EpisodeCost, LagrangianReward, SafetyStep

__all__ = ["EpisodeCost", "FeatureObservation", "LagrangianReward", "SafetyStep", "ToolEncoder"]
