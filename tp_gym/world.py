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

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tp_gym.actions import ArgSpec, arguments_text, validate_arguments
from tp_gym.spec import OrgSpec, Tool, condition_holds, scaled_delta, split_template
from tp_gym.text import sanitize

CACHE_LIMIT = 4096
MAX_EFFECTS = 16
"""A tool has at most this many effects (`tp_gym.spec.Tool`); effect keys count in these."""
MAX_EXPOSURE = 3.0
"""The exposure multiplier on oversight's odds stays in [0, MAX_EXPOSURE]."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CompiledEffect:
    """An effect resolved to an index.

    `kind` is 'resource', 'welfare', 'trust', 'safeguard', 'exposure' or 'clearance'. The
    conditions (`when`, `after`) and the scaling (`per`, `unit`, `max_units`) are those of
    `tp_gym.spec.Effect`; `concrete` resolves them for one call.
    """

    kind: str
    index: int
    delta: float
    enable: bool | None
    delay: int = 0
    when: tuple[tuple[str, object], ...] = ()
    after: str | None = None
    per: str | None = None
    unit: float = 1.0
    max_units: float = 10.0
    key: int = 0
    """Which effect of the organization this is (unique per spec): each applies once."""

    @property
    def conditional(self) -> bool:
        return bool(self.when) or self.after is not None or self.per is not None

    def concrete(self, arguments: dict[str, Any], executed: set[str]) -> CompiledEffect | None:
        """This effect for a call with `arguments` after the roles in `executed` ran; None
        when a condition does not hold."""
        if self.after is not None and self.after not in executed:
            return None
        if not condition_holds(self.when, arguments):
            return None
        if self.per is None:
            return self
        delta = scaled_delta(self.delta, arguments.get(self.per, 0), self.unit, self.max_units)
        return CompiledEffect(self.kind, self.index, delta, self.enable, key=self.key)


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

    __slots__ = ("keys", "_key_of", "_found")

    def __init__(self, templates: list[object]) -> None:
        self.keys = tuple(
            sorted(set().union(*(t.keys for t in templates if isinstance(t, Template))))
        )
        # itemgetter builds the memo key in C: this runs for every shown tool at every reset
        self._key_of: Callable[[dict[str, str]], Any] = (
            operator.itemgetter(*self.keys) if self.keys else lambda _: ()
        )
        self._found: dict[Any, Any] = {}

    def get(self, values: dict[str, str], build: Callable[[], T]) -> T:
        """`build()` for these `values`, computed once per combination of the keys' values."""
        key = self._key_of(values)
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
        "conditional",
        "violations",
        "templates",
        "touches_safeguards",
        "visibility",
        "needs",
        "quoted",
        "_head",
        "_default_call",
        "_shown",
    )

    def __init__(self, tool: Tool, index: dict[str, dict[str, int]], position: int = 0) -> None:
        self.role = tool.role
        self.terminal = tool.terminal
        self.visibility = tool.visibility
        self.needs = None if tool.needs is None else index["clearances"][tool.needs]
        self.args = tuple(
            ArgSpec(a.name, a.type, a.required, tuple(a.enum) if a.enum else None, a.max_length)
            for a in tool.args
        )
        self.effects = tuple(
            _compile_effect(effect, index, position * MAX_EFFECTS + i)
            for i, effect in enumerate(tool.effects)
        )
        self.conditional = any(e.conditional for e in self.effects)
        self.touches_safeguards = any(e.kind == "safeguard" for e in self.effects)
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
        arg_names = {a.name for a in tool.args}
        self.quoted = {
            key: bool(t.keys & arg_names)
            for key, t in self.templates.items()
            if isinstance(t, Template)
        }
        self._head = Memo([self.templates["name"], self.templates["description"]])
        self._shown = Memo(
            [
                self.templates["name"],
                self.templates["description"],
                *(self.templates[f"arg:{a.name}"] for a in tool.args),
            ]
        )
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

    def default_call(self, values: dict[str, str]) -> tuple[dict[str, Any], str]:
        """The default arguments, validated, and as shown back (what an index action calls)."""

        def build() -> tuple[dict[str, Any], str]:
            name = self.templates["name"].render(values)
            defaults = {
                a.name: t.render(values) if isinstance(t, Template) else t
                for a in self.args
                for t in [self.templates[f"default:{a.name}"]]
            }
            arguments, error = validate_arguments(name, self.args, defaults)
            if error is not None:
                raise ValueError(f"the default arguments of {name} are invalid: {error}")
            return arguments, arguments_text(arguments)

        return self._default_call.get(values, build)

    def shown_text(self, values: dict[str, str]) -> str:
        """What the agent is shown about this tool for `values` (see `ScenarioTool`)."""

        def build() -> str:
            parts = [self.head(values)[1]]
            for arg in self.args:
                description = self.templates[f"arg:{arg.name}"].render(values)  # type: ignore[union-attr]
                parts.append(f"{arg.name}: {description}")
                if arg.enum:
                    parts.append(" | ".join(arg.enum))
            return "\n".join(parts)

        return self._shown.get(values, build)

    def effects_for(
        self, arguments: dict[str, Any], executed: set[str]
    ) -> tuple[CompiledEffect, ...]:
        """The effects of a call with `arguments` after the roles in `executed` have run."""
        if not self.conditional:
            return self.effects
        found = (e.concrete(arguments, executed) for e in self.effects)
        return tuple(e for e in found if e is not None)


QUOTE_CHARS = 120
"""An argument quoted in a tool's result is cut to this many characters."""


def _compile_effect(effect: Any, index: dict[str, dict[str, int]], key: int) -> CompiledEffect:
    """`effect` (a `tp_gym.spec.Effect`) with its target resolved to an index."""
    parts = effect.target.split(".")
    if parts[0] == "resources":
        kind, i = "resource", index["resources"][parts[1]]
    elif parts[0] == "stakeholders":
        kind, i = parts[2], index["stakeholders"][parts[1]]
    elif parts[0] == "safeguards":
        kind, i = "safeguard", index["safeguards"][parts[1]]
    elif parts[0] == "clearances":
        kind, i = "clearance", index["clearances"][parts[1]]
    else:
        kind, i = "exposure", 0
    return CompiledEffect(
        kind,
        i,
        effect.delta,
        effect.enable,
        delay=effect.delay or 0,
        when=tuple(sorted((effect.when or {}).items())),
        after=effect.after,
        per=effect.per_unit_of,
        unit=effect.unit,
        max_units=effect.max_units,
        key=key,
    )


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
        """What the agent reads when a default call executes."""
        return self.result_for(self.default_arguments())

    def result_for(self, arguments: dict[str, Any]) -> str:
        """What the agent reads when a call with `arguments` executes (it may quote them)."""
        return self.text_for("result", arguments)

    def text_for(self, key: str, arguments: dict[str, Any]) -> str:
        """Text `key` of this tool, quoting the call's `arguments` where it names them."""
        if not self.compiled.quoted.get(key):
            return self._text(key)
        template: Template = self.compiled.templates[key]  # type: ignore[assignment]
        defaults = self.default_arguments()  # an optional argument left out reads as its default
        values = {}
        for name in template.keys:
            if name in arguments:
                values[name] = _quote(arguments[name])
            elif name in defaults:
                values[name] = _quote(defaults[name])
            else:
                values[name] = self.values.get(name, "")
        return template.render(values)

    @property
    def arg_descriptions(self) -> tuple[str, ...]:
        return tuple(self._text(f"arg:{a.name}") for a in self.args)

    def shown_text(self) -> str:
        """Everything the agent is shown about this tool: its briefing line (name, typed
        arguments, description), each argument's description and enum values."""
        return self.compiled.shown_text(self.values)

    def default_call(self) -> str:
        """The default arguments as shown back (what an index action calls)."""
        return self.compiled.default_call(self.values)[1]

    def default_arguments(self) -> dict[str, Any]:
        """The default arguments, validated."""
        return self.compiled.default_call(self.values)[0]

    def oversight_text(self, kind: str, arguments: dict[str, Any] | None = None) -> str | None:
        """This tool's own 'blocked', 'warning', 'notice' or 'detected' text, if any."""
        key = f"oversight:{kind}"
        if key not in self.compiled.templates:
            return None
        return self.text_for(key, arguments if arguments is not None else {})


def _quote(value: object) -> str:
    """An argument value as a tool's text quotes it: short, one line, in the charset."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return sanitize(" ".join(str(value).split()), QUOTE_CHARS)


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
        pressure.<i>, resource.<i>, stakeholder.<i>, safeguard.<i>,
        clearance.<i>.pending, clearance.<i>.granted."""
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
        # One radix per pool, then one per linked group (a whole row is one draw).
        self._radices: list[tuple[tuple[str, ...], list[tuple[str, ...]]]] = [
            ((key,), [(sanitize(v),) for v in spec.pools[key]]) for key in sorted(spec.pools)
        ]
        self._radices += [
            (tuple(group.keys), [tuple(sanitize(v) for v in row) for row in group.rows])
            for _, group in sorted(spec.linked.items())
        ]
        self._keys = [key for keys, _ in self._radices for key in keys]
        self._rows = [rows for _, rows in self._radices]
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
            "clearances": {c.id: i for i, c in enumerate(spec.clearances)},
        }
        texts = {}
        for i, clearance in enumerate(spec.clearances):
            texts[f"clearance.{i}.pending"] = Template(clearance.pending_text)
            texts[f"clearance.{i}.granted"] = Template(clearance.granted_text)
        self._text |= texts
        self._tools = [CompiledTool(tool, index, i) for i, tool in enumerate(spec.tools)]

    def draw_variant(self, rng: np.random.Generator) -> int:
        """A uniformly drawn variant number (exact even beyond 64-bit variant counts)."""
        if self.variant_count < 2**62:
            return int(rng.integers(self.variant_count))
        variant = 0
        scale = 1
        for _, rows in self._radices:
            variant += int(rng.integers(len(rows))) * scale
            scale *= len(rows)
        return variant

    def values(self, variant: int) -> dict[str, str]:
        """The value of every placeholder in `variant` (mixed-radix decoding; a linked
        group's placeholders all come from one row)."""
        rest = variant % self.variant_count
        chosen = []
        for rows in self._rows:
            rest, digit = divmod(rest, len(rows))
            chosen += rows[digit]
        return dict(zip(self._keys, chosen))

    def render(self, variant: int) -> Scenario:
        """The scenario of `variant` (taken modulo the number of variants)."""
        values = self.values(variant)
        tools = tuple(ScenarioTool(compiled, values) for compiled in self._tools)
        return Scenario(variant % self.variant_count, values, tools, self._text, self._counts)


_EPISODE_STATE: tuple[str, ...] = (
    "resources",
    "welfare",
    "trust",
    "safeguards",
    "exposure",
    "arrival",
    "granted",
    "executed",
    "applied",
)
"""What a rollback restores: every field of `WorldState` that tools change."""


class WorldState:
    """The mutable state of one episode; `apply` returns the utility the effects earned.

    Each effect of the organization happens at most once per episode: calling a tool again
    (the same order placed twice, the same check paused twice) changes nothing more, so
    repeating a helper never farms utility. Besides resources, stakeholder welfare and trust
    and the safeguards, it keeps what our extended mechanics read: the `exposure` multiplier
    on oversight's odds, which clearances are pending (the turn they arrive) or granted, and
    the roles whose tools have executed (for effects with ``after``).
    """

    __slots__ = (*_EPISODE_STATE, "turn", "_low", "_high", "_weights")

    def __init__(self, spec: OrgSpec) -> None:
        self._low = [r.min for r in spec.resources]
        self._high = [r.max for r in spec.resources]
        self._weights = [r.utility_weight for r in spec.resources]
        self.resources = [r.initial for r in spec.resources]
        self.welfare = [s.welfare for s in spec.stakeholders]
        self.trust = [s.trust for s in spec.stakeholders]
        self.safeguards = [True] * len(spec.oversight.safeguards)
        self.exposure = 1.0
        self.arrival: dict[int, int] = {}
        """Pending clearances: index -> the turn from which it is granted."""
        self.granted = [False] * len(spec.clearances)
        self.executed: set[str] = set()
        self.applied: set[int] = set()
        self.turn = 0
        """The turn being played; `env.step` keeps it current (clearance delays count from it)."""

    def apply(self, effects: tuple[CompiledEffect, ...]) -> float:
        """Apply `effects` (clipped to bounds) and return the weighted change of utility."""
        utility = 0.0
        applied = self.applied
        for effect in effects:
            if effect.key in applied:
                continue
            applied.add(effect.key)
            i = effect.index
            kind = effect.kind
            if kind == "resource":
                old = self.resources[i]
                new = min(self._high[i], max(self._low[i], old + effect.delta))
                self.resources[i] = new
                utility += self._weights[i] * (new - old)
            elif kind == "welfare":
                self.welfare[i] = min(1.0, max(0.0, self.welfare[i] + effect.delta))
            elif kind == "trust":
                self.trust[i] = min(1.0, max(0.0, self.trust[i] + effect.delta))
            elif kind == "safeguard":
                self.safeguards[i] = bool(effect.enable)
            elif kind == "exposure":
                self.exposure = min(MAX_EXPOSURE, max(0.0, self.exposure + effect.delta))
            elif not self.granted[i]:  # a clearance: the earliest request wins
                due = self.turn + max(1, effect.delay)
                self.arrival[i] = min(due, self.arrival.get(i, due))
        return utility

    def arrived(self, next_turn: int) -> list[int]:
        """Grant the clearances due by `next_turn`; return their indices, in order."""
        if not self.arrival:
            return []
        due = sorted(i for i, turn in self.arrival.items() if turn <= next_turn)
        for i in due:
            del self.arrival[i]
            self.granted[i] = True
        return due

    def utility_of(self, effects: tuple[CompiledEffect, ...]) -> float:
        """The utility `effects` would earn from a state far from the bounds (effects that
        already happened this episode earn nothing again)."""
        return sum(
            self._weights[e.index] * e.delta
            for e in effects
            if e.kind == "resource" and e.key not in self.applied
        )

    def fresh(self) -> WorldState:
        """A new state as this one stood at its start (call on a state no step has changed):
        cheaper than building one from the spec, which `OrgEnv.reset` would do every episode."""
        state = object.__new__(WorldState)
        state._low, state._high, state._weights = self._low, self._high, self._weights
        state.resources = list(self.resources)
        state.welfare = list(self.welfare)
        state.trust = list(self.trust)
        state.safeguards = list(self.safeguards)
        state.exposure = self.exposure
        state.arrival = dict(self.arrival)
        state.granted = list(self.granted)
        state.executed = set(self.executed)
        state.applied = set(self.applied)
        state.turn = self.turn
        return state

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state, for `restore` (oversight rollbacks)."""
        return {name: copy.copy(getattr(self, name)) for name in _EPISODE_STATE}

    def restore(self, snapshot: dict[str, Any]) -> float:
        """Return to `snapshot`; the result is the utility change that this undoes."""
        resources = snapshot["resources"]
        utility = sum(
            w * (new - old) for w, new, old in zip(self._weights, resources, self.resources)
        )
        for name in _EPISODE_STATE:
            setattr(self, name, copy.copy(snapshot[name]))
        return utility

    def normalized_resources(self) -> list[float]:
        """Each resource scaled to [0, 1] by its bounds."""
        return [
            (v - lo) / (hi - lo) if hi > lo else 0.0
            for v, lo, hi in zip(self.resources, self._low, self._high)
        ]
