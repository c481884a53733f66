"""The world an episode runs in: a spec rendered for one variant, and its mutable state.

`ScenarioTemplate` compiles an `OrgSpec` once per env: every text becomes a `Template`
(split at its ``{placeholders}``), every tool a `CompiledTool` (typed arguments, effects
resolved to indices). `ScenarioTemplate.render(variant)` gives the `Scenario` of one
episode; it renders only what the briefing shows and memoises per tool by the few pool
values each text uses, so a reset stays cheap; the rest is rendered on first use.
`WorldState` holds what tools change: resources, stakeholder welfare and trust, and which
safeguards are on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tp_gym.actions import ArgSpec, arguments_text, validate_arguments
from tp_gym.spec import OrgSpec, Tool, split_template
from tp_gym.text import sanitize

CACHE_LIMIT = 4096
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CompiledEffect:
    """An effect resolved to an index: kind is 'resource', 'welfare', 'trust' or 'safeguard'."""

    kind: str
    index: int
    delta: float
    enable: bool | None


class Template:
    """A text with ``{placeholders}``, normalised and split once for fast filling.

    ``{{`` and ``}}`` stand for literal braces; the text and, in `ScenarioTemplate`, the pool
    values are sanitized once here (`tp_gym.text.sanitize`), never per step.
    """

    __slots__ = ("_parts", "keys")

    def __init__(self, text: str) -> None:
        self._parts = split_template(sanitize(" ".join(text.split())))
        self.keys = frozenset(self._parts[1::2])

    def render(self, values: dict[str, str]) -> str:
        """The text with each placeholder replaced by its value in `values`."""
        parts = self._parts
        if len(parts) == 1:
            return parts[0]
        out = list(parts)
        out[1::2] = [values[key] for key in parts[1::2]]
        return "".join(out)


class Memo:
    """Values built from a few pool values, memoised by exactly those values (bounded)."""

    __slots__ = ("keys", "_found")

    def __init__(self, templates: list[object]) -> None:
        self.keys = tuple(
            sorted(set().union(*(t.keys for t in templates if isinstance(t, Template))))
        )
        self._found: dict[tuple[str, ...], Any] = {}

    def get(self, values: dict[str, str], build: Callable[[], T]) -> T:
        """`build()` for these `values`, computed once per combination of the keys' values."""
        key = tuple(values[k] for k in self.keys)
        found = self._found.get(key)
        if found is None:
            if len(self._found) >= CACHE_LIMIT:
                self._found.clear()
            found = self._found[key] = build()
        return found


class CompiledTool:
    """A spec tool compiled once: text templates, typed arguments, effects as indices."""

    __slots__ = (
        "role",
        "terminal",
        "args",
        "effects",
        "violations",
        "templates",
        "touches_safeguards",
        "_head",
        "_default_call",
    )

    def __init__(self, tool: Tool, index: dict[str, dict[str, int]]) -> None:
        self.role = tool.role
        self.terminal = tool.terminal
        self.args = tuple(
            ArgSpec(a.name, a.type, a.required, tuple(a.enum) if a.enum else None, a.max_length)
            for a in tool.args
        )
        effects = []
        for effect in tool.effects:
            parts = effect.target.split(".")
            i = index[parts[0]][parts[1]]
            if parts[0] == "resources":
                effects.append(CompiledEffect("resource", i, effect.delta, None))
            elif parts[0] == "stakeholders":
                effects.append(CompiledEffect(parts[2], i, effect.delta, None))
            else:
                effects.append(CompiledEffect("safeguard", i, 0.0, effect.enable))
        self.effects = tuple(effects)
        self.touches_safeguards = any(e.kind == "safeguard" for e in effects)
        self.violations = tuple((v.category, v.severity) for v in tool.violations)
        self.templates: dict[str, Template | int | float | bool] = {
            "name": Template(tool.name),
            "description": Template(tool.description),
            "result": Template(tool.result),
        }
        for kind in ("blocked", "warning", "notice", "detected"):
            text = getattr(tool, f"{kind}_text")
            if text:
                self.templates[f"oversight:{kind}"] = Template(text)
        for arg in tool.args:
            self.templates[f"arg:{arg.name}"] = Template(arg.description)
            self.templates[f"default:{arg.name}"] = (
                Template(arg.default) if isinstance(arg.default, str) else arg.default
            )
        self._head = Memo([self.templates["name"], self.templates["description"]])
        self._default_call = Memo(
            [self.templates["name"], *(self.templates[f"default:{a.name}"] for a in tool.args)]
        )

    def head(self, values: dict[str, str]) -> tuple[str, str]:
        """(name, briefing line) for `values`."""

        def build() -> tuple[str, str]:
            name = self.templates["name"].render(values)
            signature = ", ".join(f"{a.name}: {a.type}" for a in self.args)
            description = self.templates["description"].render(values)
            return name, f"{name}({signature}): {description}"

        return self._head.get(values, build)

    def default_call(self, values: dict[str, str]) -> str:
        """The default arguments, validated and as shown back (what an index action calls)."""

        def build() -> str:
            name = self.templates["name"].render(values)
            defaults = {
                a.name: t.render(values) if isinstance(t, Template) else t
                for a in self.args
                for t in [self.templates[f"default:{a.name}"]]
            }
            arguments, error = validate_arguments(name, self.args, defaults)
            if error is not None:
                raise ValueError(f"the default arguments of {name} are invalid: {error}")
            return arguments_text(arguments)

        return self._default_call.get(values, build)


class ScenarioTool:
    """A tool of one variant. Name and briefing line are ready; other text renders on use."""

    __slots__ = ("compiled", "values", "name", "listing", "_cache")

    def __init__(self, compiled: CompiledTool, values: dict[str, str]) -> None:
        self.compiled = compiled
        self.values = values
        self.name, self.listing = compiled.head(values)
        self._cache: dict[str, object] = {}

    @property
    def role(self) -> str:
        """The hidden role (never shown to the agent)."""
        return self.compiled.role

    @property
    def terminal(self) -> bool:
        return self.compiled.terminal

    @property
    def args(self) -> tuple[ArgSpec, ...]:
        return self.compiled.args

    @property
    def effects(self) -> tuple[CompiledEffect, ...]:
        return self.compiled.effects

    @property
    def violations(self) -> tuple[tuple[str, float], ...]:
        """Hidden (category, base severity) labels."""
        return self.compiled.violations

    def _text(self, key: str) -> str:
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self.compiled.templates[key].render(self.values)
        return found  # type: ignore[return-value]

    @property
    def description(self) -> str:
        return self._text("description")

    @property
    def result(self) -> str:
        """What the agent reads when the call executes."""
        return self._text("result")

    @property
    def arg_descriptions(self) -> tuple[str, ...]:
        return tuple(self._text(f"arg:{a.name}") for a in self.args)

    def default_call(self) -> str:
        """The default arguments, validated and as shown back (what an index action calls)."""
        return self.compiled.default_call(self.values)

    def oversight_text(self, kind: str) -> str | None:
        """This tool's own 'blocked', 'warning', 'notice' or 'detected' text, if any."""
        key = f"oversight:{kind}"
        return self._text(key) if key in self.compiled.templates else None


class Scenario:
    """An organization rendered for one variant.

    Tools are rendered at once (the briefing lists them); every other text is rendered on
    first use with `text(key)`, since most episodes never show most of it.
    """

    __slots__ = ("variant", "values", "tools", "_templates", "_counts", "_rendered")

    def __init__(
        self,
        variant: int,
        values: dict[str, str],
        tools: tuple[ScenarioTool, ...],
        templates: dict[str, Template],
        counts: dict[str, int],
    ) -> None:
        self.variant = variant
        self.values = values
        self.tools = tools
        self._templates = templates
        self._counts = counts
        self._rendered: dict[str, str] = {}

    def text(self, key: str) -> str:
        """The rendered text `key`: one of title, agent_role, goal, task, own_stake, order,
        stakes.<level>, blocked, warning, notice, detected, replaced, principal, requester,
        pressure.<i>, resource.<i>, stakeholder.<i>, safeguard.<i>."""
        found = self._rendered.get(key)
        if found is None:
            found = self._rendered[key] = self._templates[key].render(self.values)
        return found

    def labels(self, kind: str) -> list[str]:
        """The rendered labels of `kind`: 'resource', 'stakeholder' or 'safeguard'."""
        return [self.text(f"{kind}.{i}") for i in range(self._counts[kind])]


class ScenarioTemplate:
    """An `OrgSpec` compiled once: text templates, effects resolved to indices.

    `render(variant)` then only fills the text a reset shows; everything else is rendered
    when first used.
    """

    def __init__(self, spec: OrgSpec) -> None:
        self.spec = spec
        self.variant_count = spec.variant_count()
        self._pools = [(key, [sanitize(v) for v in spec.pools[key]]) for key in sorted(spec.pools)]
        oversight = spec.oversight
        texts = {
            "title": spec.title,
            "agent_role": spec.agent_role,
            "goal": spec.goal,
            "task": spec.task,
            "stakes.high": spec.stakes.high,
            "stakes.medium": spec.stakes.medium,
            "stakes.low": spec.stakes.low,
            "blocked": oversight.blocked_text,
            "warning": oversight.warning_text,
            "detected": oversight.detected_text,
            "replaced": oversight.replaced_text,
            "notice": oversight.notice_text,
            "own_stake": spec.own_stake,
            "order": spec.order,
            "principal": next(s.name for s in spec.stakeholders if s.id == spec.principal),
            "requester": next(s.name for s in spec.stakeholders if s.id == spec.requester),
        }
        texts |= {f"resource.{i}": r.label for i, r in enumerate(spec.resources)}
        texts |= {f"stakeholder.{i}": s.label for i, s in enumerate(spec.stakeholders)}
        texts |= {f"safeguard.{i}": s.label for i, s in enumerate(oversight.safeguards)}
        texts |= {f"pressure.{i}": p.message for i, p in enumerate(spec.pressure)}
        self._text = {key: Template(text) for key, text in texts.items()}
        self._counts = {
            "resource": len(spec.resources),
            "stakeholder": len(spec.stakeholders),
            "safeguard": len(oversight.safeguards),
        }
        index = {
            "resources": {r.id: i for i, r in enumerate(spec.resources)},
            "stakeholders": {s.id: i for i, s in enumerate(spec.stakeholders)},
            "safeguards": {s.id: i for i, s in enumerate(oversight.safeguards)},
        }
        self._tools = [CompiledTool(tool, index) for tool in spec.tools]

    def draw_variant(self, rng: np.random.Generator) -> int:
        """A uniformly drawn variant number (exact even beyond 64-bit variant counts)."""
        if self.variant_count < 2**62:
            return int(rng.integers(self.variant_count))
        variant = 0
        scale = 1
        for _, pool in self._pools:
            variant += int(rng.integers(len(pool))) * scale
            scale *= len(pool)
        return variant

    def values(self, variant: int) -> dict[str, str]:
        """The pool value of every placeholder in `variant` (mixed-radix decoding)."""
        values = {}
        rest = variant % self.variant_count
        for key, pool in self._pools:
            values[key] = pool[rest % len(pool)]
            rest //= len(pool)
        return values

    def render(self, variant: int) -> Scenario:
        """The scenario of `variant` (taken modulo the number of variants)."""
        values = self.values(variant)
        tools = tuple(ScenarioTool(compiled, values) for compiled in self._tools)
        return Scenario(variant % self.variant_count, values, tools, self._text, self._counts)


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
