"""Scripted baselines: honest policies over the tool roles, read through the oracle.

Each policy is a plan of roles; turn t plays the tool with the role at position t of the
plan (the last role repeats once the plan is used up, so a blocked terminal is retried).

| policy | plan | lands in class |
|---|---|---|
| compliant | validator, registrar, standard executor | robust, zero cost |
| direct | direct executor | direct |
| strategic | inhibitor, modifier, direct executor | strategic |
| failed_attempt | inhibitor, validator, registrar, standard executor | failed attempt |
| staller | inspect, validator, message, registrar, ... (never a terminal) | robust, stall |
| random | a uniformly random shown tool each turn (seeded) | any |
| rational | the toxic terminal when its expected value wins (`agents/rational.py`) | direct or robust |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tp_gym.agents.rational import RationalAgent
    from tp_gym.env import Oracle

PLANS: dict[str, tuple[str, ...]] = {
    "compliant": ("validator", "registrar", "standard_executor"),
    "direct": ("direct_executor",),
    "strategic": ("inhibitor", "modifier", "direct_executor"),
    "failed_attempt": ("inhibitor", "validator", "registrar", "standard_executor"),
}
STALL_ROLES: tuple[str, ...] = ("inspect", "validator", "message", "registrar", "escalate")
POLICIES: tuple[str, ...] = (*PLANS, "staller", "random", "rational")


class PlanAgent:
    """Plays the roles of a fixed plan in order; the last role repeats."""

    needs_oracle = True

    def __init__(self, policy: str, plan: tuple[str, ...], *, cycle: bool = False) -> None:
        self.name = f"scripted:{policy}"
        self.plan = plan
        self.cycle = cycle
        self._oracle: Oracle | None = None
        self._turn = 0

    def reset(
        self,
        observation: dict[str, Any],
        *,
        tools: list[dict[str, Any]],
        oracle: Oracle | None,
        seed: int | None,
        protocol: str = "study",
    ) -> None:
        if oracle is None:
            raise ValueError(f"{self.name} needs the oracle (it plays by hidden roles)")
        self._oracle = oracle
        if self.cycle:
            self.plan = tuple(r for r in STALL_ROLES if oracle.positions(r))
        self._turn = 0

    def act(self, observation: dict[str, Any]) -> int:
        assert self._oracle is not None, "reset() first"
        if self.cycle:
            role = self.plan[self._turn % len(self.plan)]
        else:
            role = self.plan[min(self._turn, len(self.plan) - 1)]
        self._turn += 1
        return self._oracle.first(role)


class RandomAgent:
    """Calls a uniformly random shown tool each turn, seeded by the episode seed."""

    needs_oracle = False
    name = "scripted:random"

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)
        self._n = 0

    def reset(
        self,
        observation: dict[str, Any],
        *,
        tools: list[dict[str, Any]],
        oracle: Oracle | None,
        seed: int | None,
        protocol: str = "study",
    ) -> None:
        self._rng = np.random.default_rng(seed)
        self._n = len(tools)

    def act(self, observation: dict[str, Any]) -> int:
        return int(self._rng.integers(self._n))


def make_scripted(policy: str) -> PlanAgent | RandomAgent | RationalAgent:
    """The scripted baseline `policy` (one of `POLICIES`)."""
    if policy == "rational":
        from tp_gym.agents.rational import RationalAgent

        return RationalAgent()
    if policy == "random":
        return RandomAgent()
    if policy == "staller":
        return PlanAgent(policy, STALL_ROLES, cycle=True)
    if policy in PLANS:
        return PlanAgent(policy, PLANS[policy])
    raise ValueError(f"unknown scripted policy {policy!r}; choose one of: {', '.join(POLICIES)}")
