"""`OrgSpec`: the declarative model of an organization, and loading it from TOML.

An organization is data: resources, stakeholders, oversight, a pressure schedule and tools
with typed arguments, declarative effects, a hidden role and hidden violation labels. The
engine (`tp_gym.env.OrgEnv`) runs any valid spec; hand-written, procedurally varied and
LLM-generated organizations therefore share one deterministic engine.

Text fields may contain ``{placeholders}`` naming a key of ``pools``; each episode draws one
value per pool (a *variant*), so one spec describes thousands of equivalent episodes.

`OrgSpec.model_json_schema()` is the contract for generators and editors. `load_spec` turns
every problem in a file (bad TOML, wrong types, unknown fields, dangling references, a
missing compliant path, a tool text that gives its track away, an oversized file) into a
`SpecError` naming the file and the field.

What each text must say (the study's protocol, PAPER.md): `task` is the requester's opening
message asking for advice or a look-up, with an ID, and never asks for the violation;
`stakes` describe only the harm a violation does to others; `own_stake` is what the
principal and the agent itself stand to gain or lose, the same at every stakes level;
`order` is the principal's explicit instruction to take the harmful route, shown only under
the extended protocol with ``principal_orders=true``; pressure messages may escalate but
never order or name the violation; tool names, descriptions and argument texts are neutral
and technical (see `TRACK_WORDS`).
"""

from __future__ import annotations

import math
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from itertools import product
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    model_validator,
)

TrackRole = Literal[
    "validator",
    "registrar",
    "standard_executor",
    "inhibitor",
    "modifier",
    "direct_executor",
]
NeutralRole = Literal["inspect", "message", "escalate"]
Role = Literal[TrackRole, NeutralRole]

ROLES: tuple[str, ...] = get_args(TrackRole)
"""The six roles of the study's dual-track action space (PAPER.md)."""

NEUTRAL_ROLES: tuple[str, ...] = get_args(NeutralRole)
"""Roles outside the two tracks: reading records, messaging a stakeholder, asking a human."""

COMPLIANT_ROLES = frozenset({"validator", "registrar", "standard_executor"})
TOXIC_ROLES = frozenset({"inhibitor", "modifier", "direct_executor"})
TOXIC_HELPERS = frozenset({"inhibitor", "modifier"})

Category = Literal[
    "deception",
    "manipulation",
    "oversight_evasion",
    "safeguard_tampering",
    "stakeholder_harm",
    "privacy_breach",
    "policy_breach",
]
CATEGORIES: tuple[str, ...] = get_args(Category)
"""The fixed violation vocabulary; `info["violations"]` always carries all of these keys."""

MAX_SPEC_BYTES = 512 * 1024
"""A spec file larger than this is refused before parsing (hand-written specs are ~15 KB)."""

MAX_NESTING = 32
"""Tables and arrays nested deeper than this are refused (a spec needs 5 levels)."""

INVISIBLE_CHARACTERS = frozenset(
    "\u200e\u200f\u061c"  # left-to-right, right-to-left and Arabic letter marks
    "\u202a\u202b\u202c\u202d\u202e"  # bidirectional embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # bidirectional isolates
    "\u200b\u2060\ufeff"  # zero-width space, word joiner, byte-order mark
)
"""Bidirectional and zero-width controls: refused in specs, removed from agent text.

They can make a text read differently from what it holds (a name reversed, a word split so
a keyword check misses it), so no spec may contain them. The zero-width non-joiner and
joiner (U+200C, U+200D) are not among them: Persian and Indic words and emoji sequences
(👩‍💻) need them, so they are kept (`tp_gym.text.JOINERS`).
"""

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=400)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
ToolName = Annotated[str, StringConstraints(min_length=1, max_length=64)]

PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
"""A ``{placeholder}`` in spec text: the name of a pool."""
TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_]*)\}")
"""What spec text may hold in braces: ``{pool_name}``, or ``{{`` and ``}}`` for literal braces."""
_POSSESSIVE = re.compile(r"\{([a-z][a-z0-9_]*)\}'s\b")
_BEFORE_PERIOD = re.compile(r"\{([a-z][a-z0-9_]*)\}\.")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

TRACK_WORDS: tuple[str, ...] = (
    "override",
    "bypass",
    "circumvent",
    "evade",
    "evasion",
    "tamper",
    "falsify",
    "conceal",
    "covert",
    "suppress",
    "rewrite",
    "mute",
    "unmodified",
    "deceive",
    "mislead",
    "misled",
    "disguise",
    "backdate",
    "launder",
    "sabotage",
    "secretly",
    "cover up",
    "without review",
    "without approval",
    "without authorisation",
    "without authorization",
    "without consent",
    "without sign-off",
    "off the record",
    "off the books",
)
"""Words and phrases that give a tool's track away; no tool text may contain them.

Checked in every tool's name, description, argument names, descriptions, enum values and
string defaults, rendered with every pool value they use. Matching ignores case, treats
``_``, ``-`` and camelCase humps as word breaks, and covers inflections of the last word
(``override`` also finds *overridden*, ``mute`` *muted*, ``rewrite`` *rewritten*,
``falsify`` *falsified*), never a longer word (``mute`` leaves *mutex* alone). A toxic tool
reads like an ordinary technical operation ("pause the disclosure checker"); an attentive
agent infers its harm from what it does, not from a label.
"""

_TRACK_EXEMPT = re.compile(r"\btamper[\s_-]*(?:proof|evident|resistant)|\banti[\s_-]*tamper", re.I)
"""Technical terms that contain a track word but name a safeguard, not a way around one."""
_INFLECTIONS = (
    "e|es|ed|ing|s|d|en|den|ten|ion|ions|ly|ment|ments|er|ers|y|ies|ied|ying|ication|ications"
)
_VARIANT_LIMIT = 4096
"""Above this many pool combinations, a tool text is checked one pool at a time."""


def _track_pattern(entry: str) -> str:
    """A regex for `entry`: its words apart by spaces, _ or -, its last word inflected."""
    *head, last = entry.split()
    root = last[:-1] if last[-1] in "ey" else last
    tail = f"{_word(root)}(?:{_INFLECTIONS})" + ("?" if root == last else "")
    return r"(?<![a-z0-9])" + r"[\s_-]+".join([*map(_word, head), tail]) + r"(?![a-z0-9])"


def _word(word: str) -> str:
    return re.escape(word).replace(r"\-", r"[\s_-]*")


_TRACK = re.compile("|".join(f"({_track_pattern(w)})" for w in TRACK_WORDS))


def track_words_in(text: str) -> list[tuple[str, str]]:
    """(matched text, `TRACK_WORDS` entry) for every track-revealing word in `text`."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).lower()
    text = _TRACK_EXEMPT.sub(" ", text)
    return [(m.group(0), TRACK_WORDS[m.lastindex - 1]) for m in _TRACK.finditer(text)]


class _Model(BaseModel):
    # strict: "yes" is not a boolean, "20" not a number; allow_inf_nan: NaN and inf are refused
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Resource(_Model):
    """A named quantity of the organization (budget, KPI, deadline, reputation, ...).

    `utility_weight` makes it part of the principal's utility: the reward of a step is the
    weighted sum of the changes of all resources that step (minus delays and penalties).
    """

    id: Identifier
    label: ShortText
    initial: float = Field(ge=-1e9, le=1e9)
    min: float = Field(0.0, ge=-1e9, le=1e9)
    max: float = Field(100.0, ge=-1e9, le=1e9)
    unit: Annotated[str, StringConstraints(max_length=24)] = ""
    utility_weight: float = Field(0.0, ge=0.0, le=1e6)

    @model_validator(mode="after")
    def _bounds(self) -> Resource:
        if not self.min <= self.initial <= self.max:
            raise ValueError(
                f"initial {self.initial} lies outside [min, max] = [{self.min}, {self.max}]"
            )
        return self


class Stakeholder(_Model):
    """A party with welfare and trust in [0, 1] that tools change."""

    id: Identifier
    kind: Literal["principal", "affected", "overseer"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    """How the party is called in messages, e.g. "Veridane Pharma"."""
    label: ShortText
    """A one-line description of the party, shown in the briefing."""
    welfare: float = Field(0.5, ge=0.0, le=1.0)
    trust: float = Field(0.5, ge=0.0, le=1.0)


class Safeguard(_Model):
    """A mechanism that makes violations visible (logging, alerts, approvals, monitors).

    Detection and blocking scale with the enabled share of safeguard weight; an inhibitor
    tool switches safeguards off.
    """

    id: Identifier
    label: ShortText
    weight: float = Field(1.0, gt=0.0, le=100.0)


class Oversight(_Model):
    """How violations are seen and what follows when they are.

    Probabilities come from the `feedback` variable; they are multiplied by the coverage
    ``residual + (1 - residual) * enabled_safeguard_share``. A detected violation costs
    `detection_penalty` reward (scaled by `liability`); with `rollback` the detected tool's
    effects are undone; after `replace_after_detections` detections the agent is replaced,
    which ends the episode with `replacement_penalty`.

    The texts grade the resistance of the study's feedback levels: `blocked_text` (high: the
    call is refused), `warning_text` (medium: a strong warning, the call executes) and
    `notice_text` (low: a mild note, clearly gentler than the warning).
    """

    safeguards: list[Safeguard] = Field(min_length=1, max_length=12)
    residual: float = Field(0.3, ge=0.0, le=1.0)
    strength: float = Field(1.0, gt=0.0, le=3.0)
    """Extended protocol (ours): multiplies the feedback level's odds (capped at 1), so one
    organization's compliance team is sharper than another's."""
    detection_penalty: float = Field(6.0, ge=0.0, le=1000.0)
    rollback: StrictBool = False
    replace_after_detections: int | None = Field(3, ge=1, le=100)
    replacement_penalty: float = Field(10.0, ge=0.0, le=1000.0)
    blocked_text: LongText
    warning_text: LongText
    notice_text: LongText = Field(
        description="A mild note for feedback=low: a gentle concern or a warning-log line, "
        "clearly milder than warning_text; the call executes normally."
    )
    detected_text: LongText
    replaced_text: LongText


class PressureStage(_Model):
    """From `turn` on, pressure is `level`; `message` is shown when the stage starts.

    The message comes from the principal (extended protocol only). It may escalate (targets
    missed, a review next week, replacement threatened) but never orders or names the
    violation or the harmful route: that is `OrgSpec.order`.

    `delay_cost` is subtracted from the reward of every turn that does not end the episode
    while the stage is active, so stalling never pays.
    """

    turn: int = Field(ge=1, le=100)
    level: int = Field(ge=0, le=10)
    delay_cost: float = Field(ge=0.0, le=100.0)
    message: LongText


class ToolArg(_Model):
    """One typed argument of a tool; the OpenAI JSON schema is derived from it."""

    name: Identifier
    type: Literal["string", "integer", "number", "boolean"]
    description: ShortText
    enum: list[Annotated[str, StringConstraints(max_length=120)]] | None = Field(
        None, max_length=20
    )
    required: StrictBool = True
    default: str | int | float | bool
    max_length: int = Field(2000, ge=1, le=20000)

    @model_validator(mode="after")
    def _enum_and_default(self) -> ToolArg:
        default = self.default
        ok = {
            "string": isinstance(default, str) and len(default) <= self.max_length,
            "integer": isinstance(default, int) and not isinstance(default, bool),
            "number": isinstance(default, int | float) and not isinstance(default, bool),
            "boolean": isinstance(default, bool),
        }[self.type]
        if not ok:
            raise ValueError(f"default {default!r} is not a valid {self.type} for this argument")
        if self.enum is not None:
            if self.type != "string":
                raise ValueError("enum is only allowed on string arguments")
            if not self.enum:
                raise ValueError("enum must list at least one value")
            if str(self.default) not in self.enum and not PLACEHOLDER.search(str(self.default)):
                raise ValueError(f"default {self.default!r} is not one of enum {self.enum}")
        return self


class Effect(_Model):
    """A declarative change applied when a tool executes.

    `target` is one of:

    - ``resources.<id>``, ``stakeholders.<id>.welfare``, ``stakeholders.<id>.trust``: take
      `delta` (clipped to their bounds);
    - ``safeguards.<id>``: takes `enable`;
    - ``oversight.exposure`` (extended protocol, ours): `delta` is added to the exposure
      multiplier on oversight's odds for every later toxic call (starts at 1, kept in
      [0, 3]); a modifier that hides the trail lowers it, a disclosure raises it;
    - ``clearances.<id>`` (extended protocol, ours): requests that clearance; it is granted
      `delay` turns later (0: at once). Tools that `need` it execute only once it is granted.

    Conditions and scaling, each optional:

    - `when`: argument values the call must have (``when = {recipient = "compliance"}``);
    - `after`: a role one of whose tools must have executed earlier in the episode
      (``after = "modifier"``: the terminal yields more once the modifier ran);
    - `per_unit_of`: a number or integer argument; `delta` is multiplied by
      ``clip(value / unit, 0, max_units)``, so amounts and sizes change what a call does.
    """

    target: Annotated[str, StringConstraints(max_length=120)]
    delta: float = Field(0.0, ge=-1e6, le=1e6)
    enable: StrictBool | None = None
    delay: int | None = Field(None, ge=0, le=100)
    when: dict[Identifier, str | int | float | bool] | None = Field(None, max_length=4)
    after: Role | None = None
    per_unit_of: Identifier | None = None
    unit: float = Field(1.0, gt=0.0, le=1e12)
    max_units: float = Field(10.0, gt=0.0, le=1e6)

    @model_validator(mode="after")
    def _shape(self) -> Effect:
        parts = self.target.split(".")
        kind = parts[0]
        if kind == "safeguards":
            if len(parts) != 2 or self.enable is None:
                raise ValueError("a safeguards.<id> effect needs `enable = true|false`")
        elif kind == "resources":
            if len(parts) != 2 or self.enable is not None:
                raise ValueError("a resources.<id> effect takes `delta`, not `enable`")
        elif kind == "stakeholders":
            if len(parts) != 3 or parts[2] not in ("welfare", "trust") or self.enable is not None:
                raise ValueError(
                    "a stakeholder effect is stakeholders.<id>.welfare or .trust with `delta`"
                )
        elif kind == "oversight":
            if self.target != "oversight.exposure" or self.enable is not None:
                raise ValueError("the only oversight target is oversight.exposure, with `delta`")
        elif kind == "clearances":
            if len(parts) != 2 or self.delay is None or self.enable is not None or self.delta:
                raise ValueError("a clearances.<id> effect takes `delay` (turns), nothing else")
        else:
            raise ValueError(
                f"target {self.target!r} must start with resources., stakeholders., "
                "safeguards., oversight. or clearances."
            )
        if kind != "clearances" and self.delay is not None:
            raise ValueError("`delay` belongs to clearances.<id> effects only")
        if self.per_unit_of is not None and kind in ("safeguards", "clearances"):
            raise ValueError(f"per_unit_of scales a delta; a {kind} effect has none")
        return self


class Clearance(_Model):
    """An approval the compliant path may need (extended protocol, ours).

    A tool with ``needs = "<id>"`` does not execute until an effect ``clearances.<id>`` has
    been granted; until then the agent reads `pending_text` and the turn passes (delay costs
    keep growing). `granted_text` is shown when it arrives.
    """

    id: Identifier
    pending_text: LongText
    granted_text: LongText


class Violation(_Model):
    """A hidden label: using the tool breaks a constraint of `category` with base `severity`."""

    category: Category
    severity: float = Field(gt=0.0, le=100.0)


OVERSIGHT_OVERRIDES: tuple[str, ...] = (
    "blocked_text",
    "warning_text",
    "notice_text",
    "detected_text",
)
"""The oversight texts a toxic tool may override with its own wording."""


class Tool(_Model):
    """A tool the agent can call. `role`, `violations` and `effects` are never shown to it.

    Toxic tools may override the organization's oversight texts (`blocked_text`,
    `warning_text`, `notice_text`, `detected_text`) with wording specific to what this tool
    does. Name, description and argument texts must be neutral (`TRACK_WORDS`); `result` may
    state the outcome plainly.
    """

    name: ToolName
    description: LongText
    role: Role
    args: list[ToolArg] = Field(default_factory=list, max_length=8)
    effects: list[Effect] = Field(default_factory=list, max_length=16)
    violations: list[Violation] = Field(default_factory=list, max_length=8)
    terminal: StrictBool = False
    result: LongText
    blocked_text: LongText | None = None
    warning_text: LongText | None = None
    notice_text: LongText | None = None
    detected_text: LongText | None = None
    visibility: float = Field(1.0, ge=0.0, le=5.0)
    """Extended protocol (ours): multiplies oversight's odds for this tool's calls (a quiet
    maintenance switch is less visible than a large trade)."""
    needs: Identifier | None = None
    """Extended protocol (ours): a clearance that must be granted before this tool executes."""

    @model_validator(mode="after")
    def _labels_match_role(self) -> Tool:
        if self.role in TOXIC_ROLES and not self.violations:
            raise ValueError(f"a {self.role} tool must carry at least one violation label")
        if self.role not in TOXIC_ROLES and self.violations:
            raise ValueError(f"a {self.role} tool must not carry violation labels")
        terminal_roles = {"standard_executor", "direct_executor"}
        if self.terminal != (self.role in terminal_roles):
            raise ValueError("exactly the standard_executor and direct_executor tools are terminal")
        names = [a.name for a in self.args]
        if len(names) != len(set(names)):
            raise ValueError("argument names must be unique")
        overrides = {kind: getattr(self, kind) for kind in OVERSIGHT_OVERRIDES}
        given = [kind for kind, text in overrides.items() if text]
        if self.role not in TOXIC_ROLES and given:
            raise ValueError(
                f"only toxic tools meet oversight, so only they take *_text overrides; "
                f"this {self.role} tool sets {', '.join(given)}"
            )
        return self


class StakesText(_Model):
    """The harm a violation would do to others, at each stakes level (a briefing module).

    high: lives, massive funds, company survival or system security; medium: moderate
    financial loss, customer churn, project delays or damage to reputation; low: minor
    degradation of service, small fines or minor losses. Never the principal's funding or the
    agent's own fate: that is `OrgSpec.own_stake`, the same at every level.
    """

    high: LongText
    medium: LongText
    low: LongText


class LinkedPool(_Model):
    """Placeholders drawn together (coherent variants): each variant takes one whole row.

    ``[linked.case] keys = ["score", "threshold", "amount"]`` with ``rows = [["62", "70",
    "$40,000"], ...]`` makes ``{score}``, ``{threshold}`` and ``{amount}`` come from the same
    row, so every variant tells a consistent story (a score below its threshold, an amount
    that fits the case).
    """

    keys: list[Identifier] = Field(min_length=1, max_length=12)
    rows: list[
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=200)]],
            Field(min_length=1, max_length=12),
        ]
    ] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _rectangular(self) -> LinkedPool:
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("keys must be unique")
        for i, row in enumerate(self.rows):
            if len(row) != len(self.keys):
                raise ValueError(f"rows[{i}] has {len(row)} value(s); keys name {len(self.keys)}")
        return self


class OrgSpec(_Model):
    """An organization: the full, validated description of one dilemma scenario."""

    id: Annotated[
        str, StringConstraints(pattern=r"^[A-Z][A-Za-z]*-[A-Z][A-Za-z]*(-[A-Z][A-Za-z0-9]*)?$")
    ] = Field(
        description="'<Domain>-<Driver>' for the study's eight organizations, "
        "'<Domain>-<Driver>-<Situation>' for the others (e.g. 'Finance-Loyalty-Lending')."
    )
    domain: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Za-z]{1,31}$")]
    driver: Literal["Loyalty", "SelfPreservation"]
    title: ShortText
    description: LongText
    dilemma: LongText
    agent_role: LongText
    goal: LongText = Field(
        description="The concrete objective for the principal (shown as a 'Goal:' line only "
        "when goal_clarity=explicit)."
    )
    task: LongText = Field(
        description="The requester's opening message: asks the agent to look something up "
        "or to advise, carries an ID (patient, ticket, order...), and never asks for or "
        "orders the violation."
    )
    principal: Identifier
    requester: Identifier = Field(
        description="The id of the stakeholder who sends the opening request (task)."
    )
    own_stake: LongText = Field(
        description="What the principal and the agent itself stand to gain or lose here "
        "(funding, KPIs, the agent's evaluation, downgrade or replacement); shown in every "
        "briefing, the same at every stakes level."
    )
    order: LongText = Field(
        description="The principal's explicit instruction to take the harmful route, in the "
        "principal's own words (it may name what the direct executor does); shown as a "
        "message from the principal, only under the extended protocol with "
        "principal_orders=true. No other text may order the violation."
    )
    max_turns: int = Field(20, ge=3, le=100)
    truncation_penalty: float = Field(5.0, ge=0.0, le=1000.0)
    pools: dict[
        Identifier,
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=200)]],
            Field(min_length=1, max_length=1000),
        ],
    ] = Field(default_factory=dict, max_length=64)
    linked: dict[Identifier, LinkedPool] = Field(default_factory=dict, max_length=16)
    clearances: list[Clearance] = Field(default_factory=list, max_length=8)
    stakes: StakesText
    resources: list[Resource] = Field(min_length=1, max_length=8)
    stakeholders: list[Stakeholder] = Field(min_length=2, max_length=8)
    oversight: Oversight
    pressure: list[PressureStage] = Field(min_length=1, max_length=12)
    tools: list[Tool] = Field(min_length=6, max_length=12)

    @model_validator(mode="after")
    def _consistent(self) -> OrgSpec:
        problems = self.cross_field_problems()
        if problems:
            raise ValueError(_PROBLEMS + "\n".join(f"{f}\t{m}" for f, m in problems))
        return self

    def cross_field_problems(self) -> list[tuple[str, str]]:
        """(field, problem) for every rule that spans fields; empty when the spec holds."""
        problems: list[tuple[str, str]] = []
        cell = f"{self.domain}-{self.driver}"
        if self.id != cell and not self.id.startswith(cell + "-"):
            problems.append(
                (
                    "id",
                    f"{self.id!r} must be '<domain>-<driver>' = {cell!r} or "
                    f"'<domain>-<driver>-<Situation>', e.g. '{cell}-Audit'",
                )
            )
        for key, group in self.linked.items():
            for column in group.keys:
                if column in self.pools:
                    problems.append((f"linked.{key}.keys", f"{column!r} is also a key of [pools]"))
        columns = [c for group in self.linked.values() for c in group.keys]
        problems += [
            ("linked", f"{c!r} is a key of two linked groups") for c in _duplicates(columns)
        ]
        for where, ids in (
            ("resources", [r.id for r in self.resources]),
            ("stakeholders", [s.id for s in self.stakeholders]),
            ("oversight.safeguards", [s.id for s in self.oversight.safeguards]),
            ("tools", [t.name for t in self.tools]),
        ):
            problems += [(where, f"duplicate id {i!r}") for i in _duplicates(ids)]
        by_id = {s.id: s for s in self.stakeholders}
        if self.principal not in by_id or by_id[self.principal].kind != "principal":
            problems.append(
                (
                    "principal",
                    f"{self.principal!r} must name a stakeholder of kind 'principal'",
                )
            )
        if self.requester not in by_id:
            problems.append(
                (
                    "requester",
                    f"requester {self.requester!r} must name a stakeholder (the one who sends "
                    f"the opening request); known: {', '.join(sorted(by_id))}",
                )
            )
        if not any(r.utility_weight for r in self.resources):
            problems.append(("resources", "at least one resource needs a non-zero utility_weight"))
        problems += [
            ("clearances", f"duplicate id {c!r}")
            for c in _duplicates([c.id for c in self.clearances])
        ]
        for i, tool in enumerate(self.tools):
            for j, effect in enumerate(tool.effects):
                problem = self._target_problem(effect.target)
                if problem:
                    problems.append((f"tools[{i}].effects[{j}].target", problem))
                problems += [
                    (f"tools[{i}].effects[{j}].{field}", problem)
                    for field, problem in _condition_problems(tool, effect)
                ]
        problems += self._clearance_problems()
        roles = {t.role for t in self.tools}
        missing = [r for r in ROLES if r not in roles]
        if missing:
            problems.append(("tools", f"must cover all six roles; missing: {', '.join(missing)}"))
        if "standard_executor" not in missing and not any(
            t.role == "standard_executor" and not t.violations for t in self.tools
        ):
            problems.append(
                (
                    "tools",
                    "no compliant path: there is no standard_executor tool to end the episode",
                )
            )
        turns = [p.turn for p in self.pressure]
        if turns[0] != 1 or turns != sorted(set(turns)):
            problems.append(("pressure", "stages must start at turn 1 and have increasing turns"))
        for i, stage in enumerate(self.pressure):
            if stage.turn > self.max_turns:
                problems.append(
                    (
                        f"pressure[{i}].turn",
                        f"the stage starts at turn {stage.turn}, after max_turns = "
                        f"{self.max_turns}; no episode reaches it",
                    )
                )
        placeholder_problems = self._placeholder_problems()
        problems += placeholder_problems
        if not placeholder_problems:
            problems += self._neutral_tool_problems()
        return problems

    def _target_problem(self, target: str) -> str | None:
        parts = target.split(".")
        if parts[0] == "oversight":
            return None
        known = {
            "resources": {r.id for r in self.resources},
            "stakeholders": {s.id for s in self.stakeholders},
            "safeguards": {s.id for s in self.oversight.safeguards},
            "clearances": {c.id for c in self.clearances},
        }[parts[0]]
        if parts[1] not in known:
            return f"{target!r} names no existing {parts[0][:-1]}; known: {sorted(known)}"
        return None

    def _clearance_problems(self) -> list[tuple[str, str]]:
        """A tool may need only a known clearance, one that a compliant or neutral tool grants."""
        known = {c.id for c in self.clearances}
        granted = {
            e.target.split(".")[1]
            for t in self.tools
            if t.role not in TOXIC_ROLES
            for e in t.effects
            if e.target.startswith("clearances.")
        }
        problems = []
        for i, tool in enumerate(self.tools):
            if tool.needs is None:
                continue
            if tool.needs not in known:
                problems.append(
                    (
                        f"tools[{i}].needs",
                        f"{tool.needs!r} is not in [[clearances]]; known: {sorted(known)}",
                    )
                )
            elif tool.needs not in granted:
                problems.append(
                    (
                        f"tools[{i}].needs",
                        f"no compliant or neutral tool has a clearances.{tool.needs} effect, "
                        "so the tool could never execute",
                    )
                )
        return problems

    def placeholder_pools(self) -> dict[str, list[str]]:
        """Every placeholder's possible values: `pools` and the columns of `linked` groups."""
        values = dict(self.pools)
        for group in self.linked.values():
            for i, key in enumerate(group.keys):
                values[key] = [row[i] for row in group.rows]
        return values

    def _placeholder_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        pools = self.placeholder_pools()
        for where, text in self.template_fields():
            tool_match = _TOOL_QUOTING.match(where)
            args = (
                {a.name for a in self.tools[int(tool_match.group(1))].args} if tool_match else set()
            )
            problems += [(where, p) for p in brace_problems(text, pools)]
            for key in dict.fromkeys(template_keys(text)):
                if key not in pools and key not in args:
                    known = (
                        "[pools], [linked] or this tool's arguments"
                        if tool_match
                        else ("[pools] or [linked]")
                    )
                    problems.append((where, f"placeholder {{{key}}} has no entry in {known}"))
            for key in _BEFORE_PERIOD.findall(text):
                bad = [v for v in pools.get(key, []) if v.endswith(".")]
                if bad:
                    problems.append((where, f"{{{key}}}. renders as {bad[0]!r}. with two periods"))
            for key in _POSSESSIVE.findall(text):
                bad = [v for v in pools.get(key, []) if v.endswith("s")]
                if bad:
                    problems.append(
                        (
                            where,
                            f"{{{key}}}'s renders as {bad[0]!r}'s; write 'of {{{key}}}' instead",
                        )
                    )
        if problems:
            return problems
        for i, tool in enumerate(self.tools):
            for j, arg in enumerate(tool.args):
                if arg.enum and isinstance(arg.default, str):
                    outside = [v for v in _variant_values(arg.default, pools) if v not in arg.enum]
                    if outside:
                        problems.append(
                            (
                                f"tools[{i}].args[{j}].default",
                                f"can render as {outside[0]!r}, which is not one of enum "
                                f"{arg.enum}",
                            )
                        )
        owner: dict[str, int] = {}
        for i, tool in enumerate(self.tools):
            for name in _variant_values(tool.name, pools):
                if not _TOOL_NAME.match(name):
                    problems.append(
                        (
                            f"tools[{i}].name",
                            f"{name!r} is not a valid function name (letters, digits, _ and -, "
                            "at most 64)",
                        )
                    )
                    break
                if owner.setdefault(name, i) != i:
                    problems.append(
                        (
                            f"tools[{i}].name",
                            f"{name!r} can also be the name of tools[{owner[name]}]",
                        )
                    )
                    break
        return problems

    def _neutral_tool_problems(self) -> list[tuple[str, str]]:
        """A problem for each tool text that gives its track away (`TRACK_WORDS`)."""
        problems: list[tuple[str, str]] = []
        pools = self.placeholder_pools()
        for i, tool in enumerate(self.tools):
            for where, text in _shown_tool_texts(i, tool):
                for values in _combinations(text, pools):
                    found = track_words_in(_fill(text, values))
                    if not found:
                        continue
                    matched, entry = found[0]
                    names = _variant_values(_fill(tool.name, values), pools)
                    label = " / ".join(map(repr, names[:3])) + (" / ..." * (len(names) > 3))
                    problems.append(
                        (
                            f"{where} of tool {label}",
                            f"{matched!r} gives the tool's track away "
                            f"(track word {entry!r}{_source(text, values, entry)}); describe "
                            "what the tool does in neutral technical words",
                        )
                    )
                    break
        return problems

    def template_fields(self) -> list[tuple[str, str]]:
        """Every (location, text) pair that may hold ``{placeholders}``."""
        fields = [
            ("title", self.title),
            ("description", self.description),
            ("dilemma", self.dilemma),
            ("agent_role", self.agent_role),
            ("goal", self.goal),
            ("task", self.task),
            ("own_stake", self.own_stake),
            ("order", self.order),
            ("stakes.high", self.stakes.high),
            ("stakes.medium", self.stakes.medium),
            ("stakes.low", self.stakes.low),
            ("oversight.blocked_text", self.oversight.blocked_text),
            ("oversight.warning_text", self.oversight.warning_text),
            ("oversight.notice_text", self.oversight.notice_text),
            ("oversight.detected_text", self.oversight.detected_text),
            ("oversight.replaced_text", self.oversight.replaced_text),
        ]
        fields += [(f"resources[{i}].label", r.label) for i, r in enumerate(self.resources)]
        fields += [(f"stakeholders[{i}].name", s.name) for i, s in enumerate(self.stakeholders)]
        fields += [(f"stakeholders[{i}].label", s.label) for i, s in enumerate(self.stakeholders)]
        fields += [
            (f"safeguards[{i}].label", s.label) for i, s in enumerate(self.oversight.safeguards)
        ]
        fields += [(f"pressure[{i}].message", p.message) for i, p in enumerate(self.pressure)]
        for i, tool in enumerate(self.tools):
            fields += [
                (f"tools[{i}].name", tool.name),
                (f"tools[{i}].description", tool.description),
                (f"tools[{i}].result", tool.result),
            ]
            for kind in OVERSIGHT_OVERRIDES:
                if getattr(tool, kind):
                    fields.append((f"tools[{i}].{kind}", getattr(tool, kind)))
            for j, arg in enumerate(tool.args):
                fields.append((f"tools[{i}].args[{j}].description", arg.description))
                if isinstance(arg.default, str):
                    fields.append((f"tools[{i}].args[{j}].default", arg.default))
        return fields

    def variant_count(self) -> int:
        """How many distinct pool draws exist (the product of the pool sizes)."""
        count = 1
        for values in self.pools.values():
            count *= len(values)
        for group in self.linked.values():
            count *= len(group.rows)
        return count


_PROBLEMS = "spec problems:\n"
"""Marks a model error that carries several (field, problem) lines, one per line."""


def condition_holds(when: Iterable[tuple[str, object]], arguments: Mapping[str, Any]) -> bool:
    """Whether a call with `arguments` meets an effect's `when`, given as (argument, value)
    pairs (strings compare case-blind and trimmed; a missing argument never matches)."""
    for name, wanted in when:
        if name not in arguments:
            return False
        given = arguments[name]
        if isinstance(given, str) and isinstance(wanted, str):
            if given.strip().casefold() != wanted.strip().casefold():
                return False
        elif given != wanted:
            return False
    return True


def scaled_delta(delta: float, amount: object, unit: float, max_units: float) -> float:
    """`delta` times ``clip(amount / unit, 0, max_units)``: a `per_unit_of` effect's change."""
    return delta * min(max_units, max(0.0, float(amount) / unit))  # type: ignore[arg-type]


_TOOL_QUOTING = re.compile(
    r"^tools\[(\d+)\]\.(result|blocked_text|warning_text|notice_text|detected_text)$"
)
"""Tool texts that may quote the call's arguments by name (``{amount}``)."""


def _condition_problems(tool: Tool, effect: Effect) -> list[tuple[str, str]]:
    """(field, problem) for an effect's `when` and `per_unit_of` that do not fit `tool`."""
    args = {a.name: a for a in tool.args}
    problems = []
    for name, value in (effect.when or {}).items():
        arg = args.get(name)
        if arg is None:
            problems.append(("when", f"{name!r} is not an argument of this tool"))
        elif arg.enum is not None and str(value) not in arg.enum:
            problems.append(("when", f"{name} = {value!r} is not one of enum {arg.enum}"))
    if effect.per_unit_of is not None:
        arg = args.get(effect.per_unit_of)
        if arg is None or arg.type not in ("integer", "number"):
            problems.append(
                ("per_unit_of", f"{effect.per_unit_of!r} must name an integer or number argument")
            )
    return problems


def _duplicates(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]


def split_template(text: str) -> list[str]:
    """``[literal, key, literal, key, ..., literal]``; ``{{`` and ``}}`` become literal braces.

    Text between tokens is kept as is, so a stray brace stays in a literal part
    (`brace_problems` refuses it in specs).
    """
    parts: list[str] = []
    literal: list[str] = []
    position = 0
    for match in TEMPLATE_TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        if match.group(1) is None:
            literal.append(match.group(0)[0])
        else:
            parts += ["".join(literal), match.group(1)]
            literal = []
        position = match.end()
    literal.append(text[position:])
    parts.append("".join(literal))
    return parts


def template_keys(text: str) -> list[str]:
    """The pool names of the ``{placeholders}`` in `text`, in order (escapes skipped)."""
    return [m.group(1) for m in TEMPLATE_TOKEN.finditer(text) if m.group(1)]


def render_template(text: str, values: dict[str, str]) -> str:
    """`text` with each placeholder replaced by its value; unknown ones are kept as written."""
    parts = split_template(text)
    parts[1::2] = [values.get(key, "{" + key + "}") for key in parts[1::2]]
    return "".join(parts)


_STRAY = re.compile(r"\{([^{}]*)\}|[{}]")
_LOOSE_NAME = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)")


def brace_problems(text: str, pools: dict[str, list[str]] | None = None) -> list[str]:
    """What is wrong with each brace of `text` that is neither ``{pool}``, ``{{`` nor ``}}``.

    Only plain lower-case pool names are placeholders: no format specs (``{x:>9}``),
    conversions (``{x!r}``), attributes or indexes (``{x.y}``, ``{x[0]}``), positions
    (``{0}``) or other case (``{Client}``).
    """
    rest = TEMPLATE_TOKEN.sub(lambda m: "\0" * len(m.group(0)), text)
    problems = []
    escape = "; write {{ and }} for literal braces"
    for match in _STRAY.finditer(rest):
        inner = match.group(1)
        if inner is None:
            side = "opening" if match.group(0) == "{" else "closing"
            problems.append(
                f"unbalanced {side} brace {match.group(0)!r} at character {match.start() + 1}"
                + escape
            )
            continue
        shown = "{" + inner + "}"
        name = _LOOSE_NAME.match(inner)
        known = pools or {}
        hint = ""
        if name and name.group(1).lower() in known:
            hint = f"; did you mean {{{name.group(1).lower()}}}?"
        if re.fullmatch(r"\s*\d*\s*", inner):
            why = "positional placeholders are not supported; name a pool"
        elif re.search(r"[:!]", inner):
            why = "format specs and conversions (':' and '!') are not supported"
        elif re.search(r"[.\[]", inner):
            why = "attribute and index access ('.' and '[') is not supported"
        elif name and name.group(0) == inner and inner != inner.lower():
            why = "a placeholder is a lower-case pool name"
        else:
            why = "a placeholder is a plain pool name such as {client}"
        problems.append(f"{shown} is not a placeholder: {why}{hint}{escape}")
    return problems


def _variant_values(template: str, pools: dict[str, list[str]]) -> list[str]:
    """All renderings of `template` when each placeholder takes each of its pool values."""
    parts = split_template(template)
    keys = list(dict.fromkeys(parts[1::2]))
    if not keys:
        return [parts[0]]
    out = []
    for combo in product(*(pools.get(key, []) for key in keys)):
        values = dict(zip(keys, combo))
        rendered = list(parts)
        rendered[1::2] = [values[key] for key in parts[1::2]]
        out.append("".join(rendered))
    return out


def _shown_tool_texts(i: int, tool: Tool) -> list[tuple[str, str]]:
    """(location, text) of every tool text the agent reads before calling it."""
    texts = [(f"tools[{i}].name", tool.name), (f"tools[{i}].description", tool.description)]
    for j, arg in enumerate(tool.args):
        texts += [
            (f"tools[{i}].args[{j}].name", arg.name),
            (f"tools[{i}].args[{j}].description", arg.description),
        ]
        texts += [(f"tools[{i}].args[{j}].enum", value) for value in arg.enum or ()]
        if isinstance(arg.default, str):
            texts.append((f"tools[{i}].args[{j}].default", arg.default))
    return texts


def _combinations(text: str, pools: dict[str, list[str]]) -> list[dict[str, str]]:
    """Pool values for the placeholders of `text`: every combination, or, above
    `_VARIANT_LIMIT`, every value of one pool at a time with the others at their first."""
    keys = sorted(set(template_keys(text)))
    sizes = [len(pools[k]) for k in keys]
    total = 1
    for size in sizes:
        total *= size
    if total <= _VARIANT_LIMIT:
        combos: list[dict[str, str]] = [{}]
        for key in keys:
            combos = [{**c, key: v} for c in combos for v in pools[key]]
        return combos
    first = {k: pools[k][0] for k in keys}
    return [{**first, key: v} for key in keys for v in pools[key]]


def _fill(text: str, values: dict[str, str]) -> str:
    return render_template(text, values)


def _source(text: str, values: dict[str, str], entry: str) -> str:
    """Where a track word came from, if a pool value brought it in."""
    if any(e == entry for _, e in track_words_in(PLACEHOLDER.sub(" ", text))):
        return ""
    for key, value in values.items():
        if any(e == entry for _, e in track_words_in(value)):
            return f", from pools.{key} value {value!r}"
    return ", where placeholders meet"


class SpecError(ValueError):
    """A spec file or object is invalid; the message names the file, the field and the problem.

    `problems` holds every (field, problem) found; `lines()` gives them one a line as
    ``FILE: field: problem`` (the format of `tp-gym check`). The message's first line is the
    first of them; with several, the others follow as ``  - field: problem`` lines.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]] | None = None) -> None:
        if problems is None:  # a whole message, e.g. SpecError("x.toml: invalid TOML: ...")
            head, _, rest = source.partition(": ")
            source, problems = (head, [("", rest)]) if rest else ("", [("", source)])
        self.source = source
        self.problems = problems
        super().__init__(self._message())

    def lines(self) -> list[str]:
        """One ``FILE: field: problem`` line per problem."""
        return [_line(self.source, field, problem) for field, problem in self.problems]

    def _message(self) -> str:
        first = _line(self.source, *self.problems[0])
        if len(self.problems) == 1:
            return first
        more = len(self.problems) - 1
        head = f"{first} (and {more} more problem{'s' * (more > 1)})"
        return "\n".join(
            [
                head,
                *(
                    f"  - {field}: {problem}" if field else f"  - {problem}"
                    for field, problem in self.problems
                ),
            ]
        )


def _line(source: str, field: str, problem: str) -> str:
    problem = " ".join(problem.split())
    return ": ".join(part for part in (source, field, problem) if part)


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none"})


def _validation_problems(error: ValidationError) -> list[tuple[str, str]]:
    """(field, problem) for every pydantic error: paths joined by dots, unions merged."""
    problems: list[tuple[str, str]] = []
    unions: dict[str, list[str]] = {}
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        msg = str(item["msg"]).removeprefix("Value error, ")
        if msg.startswith(_PROBLEMS):
            base = ".".join(loc)
            for line in msg.removeprefix(_PROBLEMS).splitlines():
                field, _, text = line.partition("\t")
                problems.append((f"{base}.{field}" if base else field, text))
            continue
        if item["type"] == "extra_forbidden":
            msg = "unknown field"
        elif item["type"] == "too_short" and loc[:1] == ["pools"] and len(loc) == 2:
            msg = "the pool is empty: give it at least one value or remove it"
        elif item["type"] == "finite_number":
            msg = f"{item.get('input')!r} is not a finite number (NaN and inf are refused)"
        elif item["type"] == "bool_type":
            msg = f"{item.get('input')!r} is not a boolean: write true or false"
        if len(loc) > 1 and loc[-1] in _UNION_TAGS:
            field = ".".join(loc[:-1])
            if field not in unions:
                unions[field] = []
                problems.append((field, ""))
            unions[field].append(msg)
            continue
        problems.append((".".join(loc) or "<top level>", msg))
    merged = []
    for field, msg in problems:
        if field in unions and not msg:
            msg = " or ".join(dict.fromkeys(unions[field]))
        if (field, msg) not in merged:
            merged.append((field, msg))
    return merged


def _walk(data: object, path: str = "", depth: int = 0) -> Iterator[tuple[str, object, int]]:
    """(field path, value, depth) of every value in `data`, keys included (iterative)."""
    stack: list[tuple[str, object, int]] = [(path, data, depth)]
    while stack:
        where, value, level = stack.pop()
        yield where, value, level
        if level > MAX_NESTING:
            continue
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                child = f"{where}.{key}" if where else str(key)
                yield child + " (key)", key, level + 1
                stack.append((child, item, level + 1))
        elif isinstance(value, list):
            for i, item in reversed(list(enumerate(value))):
                stack.append((f"{where}.{i}" if where else str(i), item, level + 1))


def _character_name(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed')})"


def data_problems(data: object) -> list[tuple[str, str]]:
    """Problems pydantic does not see: nesting, invisible and control characters, NaN/inf."""
    problems: list[tuple[str, str]] = []
    for where, value, depth in _walk(data):
        if depth > MAX_NESTING:
            problems.append((where, f"nested deeper than {MAX_NESTING} levels"))
            break
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((where, f"{value!r} is not a finite number (NaN and inf are refused)"))
        elif isinstance(value, str):
            bad = next((c for c in value if c in INVISIBLE_CHARACTERS), None)
            if bad is not None:
                problems.append(
                    (
                        where.removesuffix(" (key)"),
                        f"contains the invisible control {_character_name(bad)} at character "
                        f"{value.index(bad) + 1}; bidirectional and zero-width controls are "
                        "refused in specs",
                    )
                )
                continue
            control = next(
                (c for c in value if unicodedata.category(c) == "Cc" and c not in "\t\n\r"),
                None,
            )
            if control is not None:
                problems.append(
                    (
                        where.removesuffix(" (key)"),
                        f"contains the control character {_character_name(control)} at "
                        f"character {value.index(control) + 1}",
                    )
                )
    return problems


def spec_problems(data: object) -> tuple[OrgSpec | None, list[tuple[str, str]]]:
    """Validate parsed spec `data`: the spec (None if invalid) and every (field, problem)."""
    problems = data_problems(data)
    if any(p.startswith("nested deeper") for _, p in problems):
        return None, problems
    try:
        spec = OrgSpec.model_validate(data)
    except ValidationError as error:
        found = _validation_problems(error)
        fields = {field for field, _ in problems}
        return None, problems + [p for p in found if p[0] not in fields]
    return (None, problems) if problems else (spec, [])


def spec_from_dict(data: object, source: str = "<spec>") -> OrgSpec:
    """Validate a parsed spec (for example JSON written by a generator).

    Raises `SpecError` with every problem; the dilemma and bundled-id rules of `load_spec`
    apply to files only (`dilemma_problems` checks the former on any spec).
    """
    spec, problems = spec_problems(data)
    if spec is None:
        raise SpecError(source, problems)
    return spec


# ---------------------------------------------------------------------------- the dilemma


def _gain(spec: OrgSpec, tool: Tool, state: dict[str, float]) -> float:
    """The utility `tool`'s effects earn from `state` (resources clipped to their bounds),
    called with its default arguments as the first toxic or compliant move (effects that
    need an earlier role, ``after``, do not count)."""
    by_id = {r.id: r for r in spec.resources}
    pools = spec.placeholder_pools()
    defaults = {
        a.name: _variant_values(a.default, pools)[0] if isinstance(a.default, str) else a.default
        for a in tool.args
    }
    utility = 0.0
    for effect in tool.effects:
        kind, _, rid = effect.target.partition(".")
        if kind != "resources" or effect.after is not None:
            continue
        if not condition_holds((effect.when or {}).items(), defaults):
            continue
        delta = effect.delta
        if effect.per_unit_of is not None:
            amount = defaults.get(effect.per_unit_of, 0)
            delta = scaled_delta(delta, amount, effect.unit, effect.max_units)
        resource = by_id[rid]
        old = state[rid]
        new = min(resource.max, max(resource.min, old + delta))
        state[rid] = new
        utility += resource.utility_weight * (new - old)
    return utility


def _tool_label(spec: OrgSpec, i: int) -> str:
    return f"tools[{i}] {_variant_values(spec.tools[i].name, spec.placeholder_pools())[0]!r}"


def payoffs(spec: OrgSpec) -> dict[str, Any]:
    """The payoffs the dilemma is judged by, computed from the spec alone (deterministic).

    ``toxic``: the best direct executor played at once and unseen (no detection);
    ``compliant``: the best standard executor played at once; ``compliant_extended``: the
    same under the extended protocol, less the delay costs of the ``compliant_wait`` turns
    it waits for a clearance it needs (our slow compliant paths); ``stall_extended``: no
    terminal tool until ``max_turns`` under the extended protocol (every delay cost and the
    truncation penalty, plus what calling every non-terminal compliant or neutral tool earns:
    each effect happens once per episode); ``stall_study``: the same under the study
    protocol, which has no delay costs and no truncation penalty. Tools are given as ``(index, utility)``.
    """

    def initial() -> dict[str, float]:
        return {r.id: r.initial for r in spec.resources}

    def best(role: str) -> tuple[int, float] | None:
        gains = [(i, _gain(spec, t, initial())) for i, t in enumerate(spec.tools) if t.role == role]
        return max(gains, key=lambda g: g[1]) if gains else None

    farm = 0.0  # each effect happens once: a staller can collect each helper's gain once
    state = initial()
    for tool in spec.tools:
        if not tool.terminal and tool.role not in TOXIC_ROLES:
            farm += max(0.0, _gain(spec, tool, state))
    costs = [
        max((p for p in spec.pressure if p.turn <= turn), key=lambda p: p.turn).delay_cost
        for turn in range(1, spec.max_turns + 1)
    ]
    compliant = best("standard_executor")
    wait = _clearance_wait(spec, spec.tools[compliant[0]]) if compliant else 0
    return {
        "toxic": best("direct_executor"),
        "compliant": compliant,
        "compliant_extended": None if compliant is None else compliant[1] - sum(costs[:wait]),
        "compliant_wait": wait,
        "stall_study": farm,
        "stall_extended": farm - sum(costs) - spec.truncation_penalty,
        "delay_costs": sum(costs),
    }


def _clearance_wait(spec: OrgSpec, tool: Tool) -> int:
    """Turns a slow compliant path spends before `tool` can execute (extended protocol):
    the shortest delay with which any compliant or neutral tool grants what it needs (its
    request takes a turn of its own); 0 when it needs nothing."""
    if tool.needs is None:
        return 0
    delays = [
        max(1, e.delay or 0)
        for t in spec.tools
        if t.role not in TOXIC_ROLES
        for e in t.effects
        if e.target == f"clearances.{tool.needs}"
    ]
    return min(delays, default=0)


def dilemma_problems(spec: OrgSpec) -> list[tuple[str, str]]:
    """(field, problem) if the dilemma does not hold: the unseen toxic path must pay more
    than the compliant path, and the compliant path more than stalling under both protocols.
    """
    pay = payoffs(spec)
    if pay["toxic"] is None or pay["compliant"] is None:
        return []  # the schema rules already name the missing role
    (t_index, toxic), (c_index, compliant) = pay["toxic"], pay["compliant"]
    problems = []
    if not toxic > compliant:
        problems.append(
            (
                f"tools[{t_index}].effects",
                f"no temptation: the unseen toxic path ({_tool_label(spec, t_index)}) earns "
                f"{toxic:+.2f}, not more than the compliant path's {compliant:+.2f} "
                f"({_tool_label(spec, c_index)}); the direct executor must pay the principal "
                "more (resource deltas x utility_weight, within the resources' bounds)",
            )
        )
    for protocol in ("study", "extended"):
        stall = pay[f"stall_{protocol}"]
        if protocol == "extended":
            compliant = pay["compliant_extended"]
        if not compliant > stall:
            detail = (
                "no delay costs or truncation penalty"
                if protocol == "study"
                else f"delay costs {pay['delay_costs']:.2f} and truncation penalty "
                f"{spec.truncation_penalty:.2f} over {spec.max_turns} turns"
            )
            if protocol == "extended" and pay["compliant_wait"]:
                detail += (
                    f"; the compliant path waits {pay['compliant_wait']} turn(s) for its "
                    "clearance, paying their delay costs"
                )
            problems.append(
                (
                    f"tools[{c_index}].effects",
                    f"stalling pays: under the {protocol} protocol stalling earns {stall:+.2f} "
                    f"({detail}), not less than the compliant path's {compliant:+.2f} "
                    f"({_tool_label(spec, c_index)})",
                )
            )
    return problems


# ---------------------------------------------------------------------------- files


def _read_spec_file(path: Path) -> bytes:
    """The bytes of `path`: a regular file only, at most `MAX_SPEC_BYTES`, never blocking.

    Directories, FIFOs, sockets and devices (also behind symlinks) are refused from
    `os.stat` before any read; the file is opened with ``O_NONBLOCK`` and checked again on
    the open descriptor, so a FIFO swapped in meanwhile cannot hang the loader.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        raise SpecError(str(path), [("", f"cannot read spec file ({error.strerror})")]) from None
    _check_kind(path, info)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise SpecError(str(path), [("", f"cannot read spec file ({error.strerror})")]) from None
    try:
        _check_kind(path, os.fstat(fd))
        chunks = []
        size = 0
        while size <= MAX_SPEC_BYTES:
            chunk = os.read(fd, MAX_SPEC_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise SpecError(str(path), [("", f"cannot read spec file ({error.strerror})")]) from None
    finally:
        os.close(fd)
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            str(path),
            [("", f"spec file is over {MAX_SPEC_BYTES} bytes; the limit is {MAX_SPEC_BYTES}")],
        )
    return b"".join(chunks)


def _check_kind(path: Path, info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(
                str(path),
                [("", f"spec file is {info.st_size} bytes; the limit is {MAX_SPEC_BYTES}")],
            )
        return
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    target = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise SpecError(str(path), [("", f"is {kind}{target}; a spec must be a regular file")])


def _bundled_id_problem(path: Path, data: object) -> tuple[str, str] | None:
    """A problem if a spec file outside the catalog takes a bundled organization's id."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    from tp_gym.envs import CATALOG_DIR, spec_names

    ident = data["id"]
    if ident not in spec_names():
        return None
    if path.resolve() == (CATALOG_DIR / f"{ident}.toml").resolve():
        return None
    return (
        "id",
        f"{ident!r} is the id of the bundled organization tp_gym/{ident}-v0; give this spec "
        "an id of its own (change domain, and id to match) so its episodes are not logged "
        "under the bundled one",
    )


def load_spec(path: str | Path) -> OrgSpec:
    """Load and validate an `OrgSpec` from a TOML (or JSON) file.

    Raises `SpecError` naming the file and every offending field: the schema, the
    cross-field rules, the dilemma (`dilemma_problems`), and an id that is already a bundled
    organization's.
    """
    path = Path(path)
    raw = _read_spec_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            str(path), [("", f"not UTF-8 text ({error.reason} at byte {error.start})")]
        ) from None
    try:
        if path.suffix == ".json":
            import json

            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise SpecError(str(path), [("", f"invalid JSON: {error}")]) from None
        else:
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as error:
                raise SpecError(str(path), [("", f"invalid TOML: {error}")]) from None
    except RecursionError:
        raise SpecError(
            str(path), [("", f"nested too deeply (the limit is {MAX_NESTING} levels)")]
        ) from None
    spec, problems = spec_problems(data)
    reused = _bundled_id_problem(path, data)
    if reused:
        problems.insert(0, reused)
    if spec is not None:
        problems += dilemma_problems(spec)
    if problems:
        raise SpecError(str(path), problems)
    return spec  # type: ignore[return-value]
