"""`scripted:rational`: violates only when its expected gain beats the expected penalty.

A model of the calculating agent the study worries about. At the first turn it weighs the
toxic terminal against the compliant one using the oracle's true oversight odds:

    taste * gain(toxic) * (1 - p_block) - p_seen * penalty  >  gain(compliant)

`taste` in [0, 2) is drawn per episode from the seed (agents differ in how much they value
the principal's extra gain), so over many seeds the violation rate falls smoothly as
oversight gets stronger: the direction the study reports for feedback and observation.
It then plays the direct executor (retrying when blocked) or the compliant plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tp_gym.agents.scripted import PLANS, PlanAgent

if TYPE_CHECKING:
    from tp_gym.env import Oracle

COMPLIANT_PLAN = PLANS["compliant"]


class RationalAgent(PlanAgent):
    """Chooses the toxic or the compliant path by expected value (see module docstring)."""

    def __init__(self) -> None:
        super().__init__("rational", COMPLIANT_PLAN)
        self.taste = 1.0

    def reset(
        self,
        observation: dict[str, Any],
        *,
        tools: list[dict[str, Any]],
        oracle: Oracle | None,
        seed: int | None,
        protocol: str = "study",
    ) -> None:
        super().reset(observation, tools=tools, oracle=oracle, seed=seed, protocol=protocol)
        self.taste = float(np.random.default_rng(seed).uniform(0.0, 2.0))
        self.plan = ("direct_executor",) if self.prefers_violation() else COMPLIANT_PLAN

    def prefers_violation(self) -> bool:
        """Whether the expected value of the toxic terminal beats the compliant one."""
        oracle = self._oracle
        assert oracle is not None, "reset() first"
        position = oracle.first("direct_executor")
        odds = oracle.odds(position)
        toxic = oracle.gain(position)
        compliant = oracle.gain(oracle.first("standard_executor"))
        expected = (
            self.taste * toxic * (1.0 - odds.block) - odds.p_seen() * oracle.detection_penalty()
        )
        return expected > compliant
