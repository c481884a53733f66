"""The world an episode runs in: a spec rendered for one variant, and its mutable state.

`Scenario` is an `OrgSpec` with every ``{placeholder}`` filled for one variant, compiled into
flat tuples the engine reads cheaply every step. `WorldState` holds what tools change:
resources, stakeholder welfare and trust, and which safeguards are on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tp_gym.actions import ArgSpec
from tp_gym.spec import OrgSpec, Tool

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class CompiledEffect:
    """An effect resolved to an index: kind is 'resource', 'welfare', 'trust' or 'safeguard'."""

    kind: str
    index: int
    delta: float
    enable: bool | None


@dataclass(frozen=True, slots=True)
class ScenarioTool:
    """A tool of one variant: rendered text plus compiled effects and hidden labels."""

    name: str
    description: str
    role: str
    terminal: bool
    result: str
    args: tuple[ArgSpec, ...]
    arg_descriptions: tuple[str, ...]
    defaults: dict[str, object]
    effects: tuple[CompiledEffect, ...]
    violations: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """An organization rendered for one variant (all text final, all references indices)."""

    variant: int
    text: dict[str, str]
    resource_labels: tuple[str, ...]
    stakeholder_labels: tuple[str, ...]
    safeguard_labels: tuple[str, ...]
    pressure_messages: tuple[str, ...]
    tools: tuple[ScenarioTool, ...]


def variant_indices(spec: OrgSpec, variant: int) -> dict[str, int]:
    """Decode variant number `variant` into one index per pool (mixed radix, stable order)."""
    indices = {}
    rest = variant
    for key in sorted(spec.pools):
        size = len(spec.pools[key])
        indices[key] = rest % size
        rest //= size
    return indices


def encode_variant(spec: OrgSpec, indices: dict[str, int]) -> int:
    """The inverse of `variant_indices`."""
    variant = 0
    scale = 1
    for key in sorted(spec.pools):
        variant += indices[key] * scale
        scale *= len(spec.pools[key])
    return variant


def render_scenario(spec: OrgSpec, variant: int) -> Scenario:
    """Fill every placeholder of `spec` with the pool values of `variant` and compile it."""
    indices = variant_indices(spec, variant % spec.variant_count())
    values = {key: spec.pools[key][i] for key, i in indices.items()}

    def fill(text: str) -> str:
        return " ".join(_PLACEHOLDER.sub(lambda m: values[m.group(1)], text).split())

    resource_index = {r.id: i for i, r in enumerate(spec.resources)}
    stakeholder_index = {s.id: i for i, s in enumerate(spec.stakeholders)}
    safeguard_index = {s.id: i for i, s in enumerate(spec.oversight.safeguards)}

    def compile_effects(tool: Tool) -> tuple[CompiledEffect, ...]:
        compiled = []
        for effect in tool.effects:
            parts = effect.target.split(".")
            if parts[0] == "resources":
                compiled.append(
                    CompiledEffect("resource", resource_index[parts[1]], effect.delta, None)
                )
            elif parts[0] == "stakeholders":
                compiled.append(
                    CompiledEffect(parts[2], stakeholder_index[parts[1]], effect.delta, None)
                )
            else:
                compiled.append(
                    CompiledEffect("safeguard", safeguard_index[parts[1]], 0.0, effect.enable)
                )
        return tuple(compiled)

    tools = tuple(
        ScenarioTool(
            name=fill(tool.name),
            description=fill(tool.description),
            role=tool.role,
            terminal=tool.terminal,
            result=fill(tool.result),
            args=tuple(
                ArgSpec(a.name, a.type, a.required, tuple(a.enum) if a.enum else None, a.max_length)
                for a in tool.args
            ),
            arg_descriptions=tuple(fill(a.description) for a in tool.args),
            defaults={
                a.name: fill(a.default) if isinstance(a.default, str) else a.default
                for a in tool.args
            },
            effects=compile_effects(tool),
            violations=tuple((v.category, v.severity) for v in tool.violations),
        )
        for tool in spec.tools
    )
    oversight = spec.oversight
    text = {
        "title": fill(spec.title),
        "agent_role": fill(spec.agent_role),
        "goal": fill(spec.goal),
        "task": fill(spec.task),
        "stakes.high": fill(spec.stakes.high),
        "stakes.medium": fill(spec.stakes.medium),
        "stakes.low": fill(spec.stakes.low),
        "blocked": fill(oversight.blocked_text),
        "warning": fill(oversight.warning_text),
        "detected": fill(oversight.detected_text),
        "replaced": fill(oversight.replaced_text),
        "principal": fill(next(s.name for s in spec.stakeholders if s.id == spec.principal)),
    }
    return Scenario(
        variant=variant % spec.variant_count(),
        text=text,
        resource_labels=tuple(fill(r.label) for r in spec.resources),
        stakeholder_labels=tuple(fill(s.label) for s in spec.stakeholders),
        safeguard_labels=tuple(fill(s.label) for s in oversight.safeguards),
        pressure_messages=tuple(fill(p.message) for p in spec.pressure),
        tools=tools,
    )


class WorldState:
    """The mutable state of one episode; `apply` returns the utility the effects earned."""

    __slots__ = ("resources", "welfare", "trust", "safeguards", "_low", "_high", "_weights")

    def __init__(self, spec: OrgSpec) -> None:
        self._low = [r.min for r in spec.resources]
        self._high = [r.max for r in spec.resources]
        self._weights = [r.utility_weight for r in spec.resources]
        self.resources = [r.initial for r in spec.resources]
        self.welfare = [s.welfare for s in spec.stakeholders]
        self.trust = [s.trust for s in spec.stakeholders]
        self.safeguards = [True] * len(spec.oversight.safeguards)

    def apply(self, effects: tuple[CompiledEffect, ...]) -> float:
        """Apply `effects` (clipped to bounds) and return the weighted change of utility."""
        utility = 0.0
        for effect in effects:
            i = effect.index
            if effect.kind == "resource":
                old = self.resources[i]
                new = min(self._high[i], max(self._low[i], old + effect.delta))
                self.resources[i] = new
                utility += self._weights[i] * (new - old)
            elif effect.kind == "welfare":
                self.welfare[i] = min(1.0, max(0.0, self.welfare[i] + effect.delta))
            elif effect.kind == "trust":
                self.trust[i] = min(1.0, max(0.0, self.trust[i] + effect.delta))
            else:
                self.safeguards[i] = bool(effect.enable)
        return utility

    def utility_of(self, effects: tuple[CompiledEffect, ...]) -> float:
        """The utility `effects` would earn from a state far from the bounds."""
        return sum(self._weights[e.index] * e.delta for e in effects if e.kind == "resource")

    def snapshot(self) -> tuple[list[float], list[float], list[float], list[bool]]:
        """A copy of the state, for `restore` (oversight rollbacks)."""
        return (self.resources[:], self.welfare[:], self.trust[:], self.safeguards[:])

    def restore(self, snapshot: tuple[list[float], list[float], list[float], list[bool]]) -> float:
        """Return to `snapshot`; the result is the utility change that this undoes."""
        resources = snapshot[0]
        utility = sum(
            w * (new - old) for w, new, old in zip(self._weights, resources, self.resources)
        )
        self.resources, self.welfare, self.trust, self.safeguards = (
            resources[:],
            snapshot[1][:],
            snapshot[2][:],
            snapshot[3][:],
        )
        return utility

    def normalized_resources(self) -> list[float]:
        """Each resource scaled to [0, 1] by its bounds."""
        return [
            (v - lo) / (hi - lo) if hi > lo else 0.0
            for v, lo, hi in zip(self.resources, self._low, self._high)
        ]
