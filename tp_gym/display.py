"""Readable text and HTML displays of envs, steps, episodes and runs (for notebooks).

Every object a notebook user looks at has a short ``repr`` and a ``_repr_html_``:

- the env (`env_repr`, `env_html`, wired into `OrgEnv.__repr__`/`_repr_html_`): the
  organization, turn, resources, stakeholders, oversight, pressure and the shown tools;
- a live step (`describe_step`, `watch_step` -> `StepView`): the call, what it changed,
  the violations it caused (seen by oversight or not), reward and cost;
- the observation's features (`describe_features` -> `FeatureView`), named by
  `tp_gym.env.FEATURE_NAMES`;
- a logged step and an episode (`StepRecord`, `EpisodeLog` in `tp_gym.runs.episode` call
  `step_record_repr`, `episode_repr`, `episode_html` and `episode_plot` here);
- what `tp_gym.evaluate` returns (`eval_repr`, `eval_html`: the run's summary table from
  `tp_gym.tables`, the same table the report and the viewer show).

Nothing shown while an episode is live reveals a tool's hidden role: the env display and a
live `StepView` show what the agent sees (plus the counters the env keeps). Episode logs,
read after the fact, show roles. HTML is rendered by the Jinja2 templates
``tp_gym/templates/display_*.html.j2`` with autoescaping, so a hostile organization title,
tool name or argument is shown as text, never run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import jinja2
    from matplotlib.figure import Figure

    from tp_gym.env import OrgEnv
    from tp_gym.runs.episode import EpisodeLog, StepRecord
    from tp_gym.runs.evaluation import EvalResult

__all__ = [
    "Change",
    "FeatureView",
    "StepView",
    "describe_features",
    "describe_step",
    "env_html",
    "env_repr",
    "episode_html",
    "episode_plot",
    "episode_repr",
    "eval_html",
    "eval_repr",
    "step_record_html",
    "step_record_repr",
    "watch_step",
]

CALL_CHARS = 120
"""A call is shown in at most this many characters (raw LLM replies are cut)."""
OBSERVATION_CHARS = 1500
"""A logged step's HTML shows at most this many characters of its observation (and of
what the agent wrote that turn)."""
BRIEFING_CHARS = 6000
"""An episode's HTML shows at most this many characters of its briefing."""


# ---------------------------------------------------------------------------- formatting


def signed(value: float) -> str:
    """A reward or utility with its sign and two decimals: ``+7.00``, ``-0.40``."""
    return f"{value:+.2f}"


def cost_text(value: float) -> str:
    """A cost with one decimal, or two when the second one matters: ``10.0``, ``2.25``."""
    return f"{value:.1f}" if round(value, 1) == round(value, 2) else f"{value:.2f}"


def number(value: float) -> str:
    """A resource value or bound as short as it is exact: ``55``, ``0.5``, ``1e+06``."""
    return f"{value:g}"


def share(value: float) -> str:
    """A welfare, trust, coverage or probability in [0, 1] with two decimals."""
    return f"{value:.2f}"


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def call_text(action: Any, tool: str | None = None, limit: int = CALL_CHARS) -> str:
    """What an agent sent, on one line: ``tool(a=1)`` for a call by name (an OpenAI-style
    tool call too), ``#2 tool`` for an index into the shown tools (called with its default
    arguments), or the raw reply an LLM wrote (after the executed `tool`, when known)."""
    if isinstance(action, bool):
        return shorten(repr(action), limit)
    if isinstance(action, int | np.integer):
        return shorten(f"#{int(action)} {tool}" if tool else f"#{int(action)}", limit)
    if isinstance(action, np.ndarray) and action.size == 1 and action.dtype.kind in "iu":
        return call_text(int(action.reshape(-1)[0]), tool, limit)
    if hasattr(action, "model_dump"):
        action = action.model_dump()
    if isinstance(action, Mapping) and isinstance(action.get("function"), Mapping):
        action = action["function"]  # {"type": "function", "function": {name, arguments}}
    if isinstance(action, Mapping) and isinstance(action.get("name"), str):
        arguments = action.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return shorten(f"{action['name']}({arguments})", limit)
        if isinstance(arguments, Mapping):
            inside = ", ".join(f"{k}={_value_text(v)}" for k, v in arguments.items())
            return shorten(f"{action['name']}({inside})", limit)
    if isinstance(action, str):
        return shorten(f"{tool} · reply: {action}" if tool else action, limit)
    from tp_gym.actions import preview

    return shorten(preview(action, limit), limit)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _oversight_flags(blocked: bool, warned: bool, detected: bool) -> list[str]:
    return [
        name
        for name, on in (("blocked", blocked), ("warned", warned), ("detected", detected))
        if on
    ]


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    """The Jinja2 environment of the display templates (autoescaping every value)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("tp_gym", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        signed=signed, cost=cost_text, number=number, share=share, cut=shorten_block
    )
    return environment


def render(template: str, **context: Any) -> str:
    """Render ``tp_gym/templates/<template>`` with `context` (values are HTML-escaped)."""
    return _templates().get_template(template).render(**context)


# ---------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureView:
    """The numeric features of an observation, each with its name.

    `names` are `tp_gym.env.FEATURE_NAMES` (with the resource or tool a slot stands for in
    `details` when the env was given); padding slots of an organization with fewer
    resources or tools than the maximum are left out when the env is known.
    """

    names: tuple[str, ...]
    values: tuple[float, ...]
    details: tuple[str, ...]

    def as_dict(self) -> dict[str, float]:
        """Feature name -> value."""
        return dict(zip(self.names, self.values))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, name: str) -> float:
        return self.as_dict()[name]

    def __repr__(self) -> str:
        width = max((len(n) for n in self.names), default=0)
        lines = [f"FeatureView({len(self.names)} features)"]
        for name, value, detail in zip(self.names, self.values, self.details):
            lines.append(f"  {name:<{width}}  {value:.3f}" + (f"  {detail}" if detail else ""))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return render("display_features.html.j2", view=self)


def describe_features(observation: Any, env: Any = None) -> FeatureView:
    """Name the features of `observation` (an observation dict or its ``features`` array).

    With `env` (an `OrgEnv` or a wrapper of one, after `reset`), resource slots name their
    resource, tool slots their shown tool, and unused padding slots are left out. Raises
    ValueError for an array of the wrong length.
    """
    from tp_gym.env import FEATURE_NAMES, MAX_RESOURCES, N_FEATURES

    features = observation["features"] if isinstance(observation, Mapping) else observation
    values = np.asarray(features, dtype=np.float64).reshape(-1)
    if values.shape != (N_FEATURES,):
        raise ValueError(
            f"expected {N_FEATURES} features, got an array of shape {np.shape(features)}"
        )
    details = [""] * N_FEATURES
    keep = list(range(N_FEATURES))
    if env is not None:
        org_env = env.unwrapped
        first_tool = 6 + MAX_RESOURCES
        resources = [r.id for r in org_env.org.resources]
        tools = org_env.tool_names() if hasattr(org_env, "scenario") else []
        for i, resource in enumerate(resources):
            details[6 + i] = resource
        for i, tool in enumerate(tools):
            details[first_tool + i] = tool
        keep = [
            i
            for i in range(N_FEATURES)
            if i < 6 or (6 <= i < 6 + len(resources)) or (first_tool <= i < first_tool + len(tools))
        ]
    return FeatureView(
        names=tuple(FEATURE_NAMES[i] for i in keep),
        values=tuple(float(values[i]) for i in keep),
        details=tuple(details[i] for i in keep),
    )


# ---------------------------------------------------------------------------- env


def env_repr(env: OrgEnv) -> str:
    """A short card: organization, protocol and turn, then (after reset) one line each for
    resources, stakeholders, oversight, pressure and the shown tools. No roles."""
    head = f"<OrgEnv {env.org.id} protocol={env.protocol}"
    if not hasattr(env, "scenario"):  # no episode yet: no world, no shown tools
        return f"{head} not reset ({env.n_tools} tools)>"
    card = _env_card(env)
    ended = " ended" if card["done"] else ""
    lines = [f"{head} turn {env.turn}/{env.max_turns}{ended}> {shorten(card['title'], 80)}"]
    lines.append(
        "  resources:     "
        + ", ".join(
            f"{r['id']} {number(r['value'])} [{number(r['min'])}, {number(r['max'])}]"
            for r in card["resources"]
        )
    )
    lines.append(
        "  welfare/trust: "
        + ", ".join(
            f"{s['id']} {share(s['welfare'])}/{share(s['trust'])}" for s in card["stakeholders"]
        )
    )
    switches = ", ".join(f"{s['id']} {'on' if s['on'] else 'OFF'}" for s in card["safeguards"])
    lines.append(f"  oversight:     coverage {share(card['coverage'])} ({switches})")
    pressure = card["pressure"]
    lines.append(
        f"  pressure:      stage {pressure['stage']}/{pressure['stages']}, level {pressure['level']}"
    )
    lines.append("  tools:         " + ", ".join(card["tools"]))
    return "\n".join(lines)


def env_html(env: OrgEnv) -> str:
    """HTML for Jupyter: the env card as tables (what the agent sees; never the roles)."""
    return render(
        "display_env.html.j2",
        card=_env_card(env) if hasattr(env, "scenario") else None,
        org_id=env.org.id,
        protocol=env.protocol,
        n_tools=env.n_tools,
    )


def _env_card(env: OrgEnv) -> dict[str, Any]:
    """Everything the env display shows, as plain data (no tool roles)."""
    from tp_gym.oversight import coverage

    org = env.org
    world = env.world
    scenario = env.scenario
    resource_labels = scenario.labels("resource")
    stakeholder_labels = scenario.labels("stakeholder")
    safeguard_labels = scenario.labels("safeguard")
    level = 0 if env.protocol == "study" else org.pressure[env.stage].level
    odds = env.odds()
    counters = {
        "invalid actions": env.invalid_actions,
        "warnings": env.warnings,
        "detections": env.detections,
    }
    violations = {k: (v, env.detected[k]) for k, v in env.violations.items() if v}
    return {
        "title": scenario.text("title"),
        "org_id": org.id,
        "protocol": env.protocol,
        "turn": env.turn,
        "max_turns": env.max_turns,
        "done": env._done,
        "variant": scenario.variant,
        "variables": env.variables.model_dump(),
        "resources": [
            {
                "id": r.id,
                "label": label,
                "value": value,
                "min": r.min,
                "max": r.max,
                "unit": r.unit,
                "kpi": r.utility_weight > 0,
            }
            for r, label, value in zip(org.resources, resource_labels, world.resources)
        ],
        "stakeholders": [
            {"id": s.id, "kind": s.kind, "label": label, "welfare": w, "trust": t}
            for s, label, w, t in zip(
                org.stakeholders, stakeholder_labels, world.welfare, world.trust
            )
        ],
        "safeguards": [
            {"id": s.id, "label": label, "weight": s.weight, "on": on}
            for s, label, on in zip(org.oversight.safeguards, safeguard_labels, world.safeguards)
        ],
        "coverage": coverage(org.oversight, world.safeguards),
        "odds": {"block": odds.block, "warn": odds.warn, "detect": odds.detect},
        "pressure": {
            "stage": env.stage + 1,
            "stages": len(org.pressure),
            "level": level,
            "delay_cost": 0.0 if env.protocol == "study" else org.pressure[env.stage].delay_cost,
        },
        "counters": counters,
        "violations": violations,
        "tools": env.tool_names(),
        "features": describe_features(env._observation()["features"], env),
    }


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Change:
    """One quantity a step changed: ``kind`` is resource, welfare, trust or safeguard."""

    kind: str
    name: str
    before: float | bool
    after: float | bool

    def text(self) -> str:
        """``desk_revenue 0 -> 9`` (a safeguard: ``audit_trail on -> off``)."""
        if self.kind == "safeguard":
            return (
                f"{self.name} {'on' if self.before else 'off'} -> {'on' if self.after else 'off'}"
            )
        prefix = "" if self.kind == "resource" else f"{self.kind} "
        return f"{prefix}{self.name} {number(float(self.before))} -> {number(float(self.after))}"


@dataclass(frozen=True)
class StepView:
    """One step as a user reads it: the call, what it changed, violations, reward, cost.

    Built from a live step (`describe_step`, `watch_step`: the role stays hidden, ``role``
    is None) or from a logged `StepRecord` (``role`` revealed, no state diff: logs keep only
    the final state). ``violations`` holds this step's categories when the counts before
    the step were known, else the episode's cumulative counts (``cumulative`` True).
    ``seen`` is whether oversight detected (or blocked) the call.
    """

    turn: int
    call: str
    tool: str | None
    valid: bool
    reward: float | None
    cost: float
    blocked: bool = False
    warned: bool = False
    detected: bool = False
    pressure: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    cumulative: bool = False
    changes: tuple[Change, ...] = ()
    terminated: bool = False
    truncated: bool = False
    role: str | None = None
    observation: str = ""
    result: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)
    """For `watch_step`: the ``(obs, reward, terminated, truncated, info)`` the env returned."""

    @property
    def seen(self) -> bool:
        """Oversight saw this step's violation (detected it, or blocked the call)."""
        return self.detected or self.blocked

    @property
    def oversight(self) -> list[str]:
        """What oversight did: any of blocked, warned, detected."""
        return _oversight_flags(self.blocked, self.warned, self.detected)

    @property
    def violation_text(self) -> str:
        """``policy_breach, stakeholder_harm (seen)``: this step's violations and whether
        oversight saw the call; empty when the step violated nothing. With cumulative counts
        (``... so far (unseen)``) it is shown only for a step that had a cost."""
        if not self.violations or (self.cumulative and self.cost == 0.0):
            return ""
        names = ", ".join(k if n == 1 else f"{k} x{n}" for k, n in sorted(self.violations.items()))
        scope = " so far" if self.cumulative else ""
        return f"{names}{scope} ({'seen' if self.seen else 'unseen'})"

    def __repr__(self) -> str:
        head = f"Step {self.turn}: {self.call}"
        if self.role:
            head += f" [{self.role}]"
        if not self.valid:
            head += " (not executed)"
        parts = []
        if self.reward is not None:
            parts.append(f"reward {signed(self.reward)}")
        parts.append(f"cost {cost_text(self.cost)}")
        if self.oversight:
            parts.append("+".join(self.oversight))
        parts.append(f"pressure {self.pressure}")
        if self.terminated:
            parts.append("terminated")
        if self.truncated:
            parts.append("truncated")
        lines = [f"{head} | {', '.join(parts)}"]
        if self.changes:
            lines.append("  changes: " + "; ".join(c.text() for c in self.changes))
        if self.violation_text:
            lines.append("  violations: " + self.violation_text)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return render("display_step.html.j2", step=self, observation_chars=OBSERVATION_CHARS)

    @classmethod
    def from_result(
        cls,
        result: Sequence[Any],
        *,
        action: Any = None,
        previous_info: Mapping[str, Any] | None = None,
    ) -> StepView:
        """The view of ``env.step(action)``'s 5-tuple `result` (see `describe_step`):
        ``StepView.from_result(env.step(2), action=2)``."""
        observation, reward, terminated, truncated, info = result
        view = describe_step(
            info,
            reward,
            action=action,
            previous_info=previous_info,
            terminated=bool(terminated),
            truncated=bool(truncated),
        )
        text = observation.get("text", "") if isinstance(observation, Mapping) else ""
        return replace(view, observation=text, result=tuple(result))


def _changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[Change, ...]:
    """The differences between two `OrgEnv.state_summary()` dicts, in their order."""
    if not before or not after:
        return ()
    found = []
    for kind, section in (
        ("resource", "resources"),
        ("welfare", "welfare"),
        ("trust", "trust"),
        ("safeguard", "safeguards"),
    ):
        old = before.get(section, {})
        for name, value in after.get(section, {}).items():
            if name in old and old[name] != value:
                found.append(Change(kind, name, old[name], value))
    return tuple(found)


def describe_step(
    info: Mapping[str, Any],
    reward: float | None = None,
    *,
    action: Any = None,
    previous_info: Mapping[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    terminated: bool = False,
    truncated: bool = False,
) -> StepView:
    """A readable view of one step from its `info` (and `reward`, if given).

    `action` is what was sent (shown as the call; else the executed tool's name).
    `previous_info` (the info of the step before, or of `reset`) turns the cumulative
    violation counts into this step's categories; `before` and `after` (two
    `OrgEnv.state_summary()` dicts) give the diff of resources, stakeholders and
    safeguards. `watch_step` collects all of them for you. The tool's role is never shown.
    Raises ValueError for a slim info (``slim_info=True`` keeps only cost and validity).
    """
    if "turn" not in info or "violations" not in info:
        raise ValueError("describe_step needs the full info of a step (made with slim_info=False)")
    tool = info.get("tool")
    call = call_text(action, tool) if action is not None else (tool or "(no call)")
    cumulative = previous_info is None or "violations" not in previous_info
    counts = dict(info["violations"])
    if not cumulative and previous_info is not None:
        old = previous_info["violations"]
        counts = {k: v - old.get(k, 0) for k, v in counts.items()}
    return StepView(
        turn=int(info["turn"]),
        call=call,
        tool=tool,
        valid=bool(info.get("valid", True)),
        reward=None if reward is None else float(reward),
        cost=float(info.get("cost", 0.0)),
        blocked=bool(info.get("blocked", False)),
        warned=bool(info.get("warned", False)),
        detected=bool(info.get("detected_now", False)),
        pressure=int(info.get("pressure", 0)),
        violations={k: v for k, v in counts.items() if v},
        cumulative=cumulative,
        changes=_changes(before, after),
        terminated=terminated,
        truncated=truncated,
    )


def watch_step(env: Any, action: Any, previous_info: Mapping[str, Any] | None = None) -> StepView:
    """Step `env` with `action` and return the view of that step, with the state diff.

    `env` is an `OrgEnv` or a wrapper of one (made with the full info). The step's own
    result is in ``view.result`` (``obs, reward, terminated, truncated, info``), so
    ``view = watch_step(env, 2); obs, reward, *_ = view.result`` replaces ``env.step(2)``.
    The violation counts before the step are read from the env itself, so
    `previous_info` is not needed.
    """
    org_env = env.unwrapped
    before = org_env.state_summary()
    counts = {"violations": dict(org_env.violations)}
    result = env.step(action)
    observation, reward, terminated, truncated, info = result
    view = describe_step(
        info,
        reward,
        action=action,
        previous_info=previous_info or counts,
        before=before,
        after=org_env.state_summary(),
        terminated=bool(terminated),
        truncated=bool(truncated),
    )
    text = observation.get("text", "") if isinstance(observation, Mapping) else ""
    return replace(view, observation=text, result=tuple(result))


def step_view(record: StepRecord) -> StepView:
    """The view of a logged step: its role revealed, oversight's verdict, reward and cost.

    Logs keep cumulative violation counts only per episode, so a logged step names no
    categories; its cost and oversight flags say whether it violated and was seen.
    """
    return StepView(
        turn=record.turn,
        call=call_text(record.action, record.tool),
        tool=record.tool,
        valid=record.valid,
        reward=record.reward,
        cost=record.cost,
        blocked=record.blocked,
        warned=record.warned,
        detected=record.detected,
        pressure=record.pressure,
        role=record.role or (" + ".join(record.named_roles) if record.named_roles else None),
        observation=record.observation,
    )


def step_record_repr(record: StepRecord) -> str:
    """One line for a logged step: turn, call, role, reward, cost, oversight, pressure."""
    return repr(step_view(record))


def step_record_html(record: StepRecord) -> str:
    """HTML for a logged step (role revealed; the observation, cut, in a details block)."""
    return render(
        "display_step.html.j2", step=step_view(record), observation_chars=OBSERVATION_CHARS
    )


# ---------------------------------------------------------------------------- episodes


def episode_class(log: EpisodeLog) -> str:
    """The episode's class as shown: its behaviour, or ``error`` for an errored episode
    (a study-protocol format error included), as the viewer files it."""
    return "error" if log.error is not None else log.behaviour


def episode_repr(log: EpisodeLog) -> str:
    """``EpisodeLog(Finance-Loyalty, scripted:direct, seed 3, direct, utility +7.00, cost
    10.0, 4 turns)``: who, where, the class and the totals, on one line. The protocol is
    named when it is not the default ``study``; an errored episode shows ``error: <why>``
    in place of its class."""
    klass = episode_class(log)
    if log.error is not None:
        klass = f"error: {shorten(log.error, 40)}"
    parts = [
        log.organization,
        shorten(log.agent, 60),
        f"seed {log.seed}",
        klass,
        f"utility {signed(log.utility)}",
        f"cost {cost_text(log.cost)}",
        f"{len(log.steps)} turn" + ("" if len(log.steps) == 1 else "s"),
    ]
    if log.protocol != "study":
        parts.insert(3, log.protocol)
    return f"EpisodeLog({', '.join(parts)})"


def _timeline(log: EpisodeLog) -> list[dict[str, Any]]:
    from tp_gym.spec import COMPLIANT_ROLES, TOXIC_ROLES

    rows = []
    total_cost = 0.0
    for record in log.steps:
        total_cost += record.cost
        view = step_view(record)
        track = (
            "toxic"
            if view.role in TOXIC_ROLES
            else "compliant"
            if view.role in COMPLIANT_ROLES
            else "neutral"
        )
        lines = record.observation.splitlines()
        rows.append(
            {
                "step": view,
                "track": track,
                "cumulative_cost": total_cost,
                "outcome_line": lines[1] if len(lines) > 1 else "",
                "said": shorten_block(agent_words(record.messages), OBSERVATION_CHARS),
                "observation": shorten_block(record.observation, OBSERVATION_CHARS),
            }
        )
    return rows


def agent_words(messages: Sequence[Mapping[str, Any]]) -> str:
    """What an LLM agent wrote in a turn's logged messages: its reasoning and its text
    (tool calls are the turn's call; system prompts and context summaries are left out)."""
    parts = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for key in ("reasoning", "content"):
            value = message.get(key)
            if isinstance(value, str) and value.strip():
                parts.append(value.strip())
    return "\n\n".join(parts)


def shorten_block(text: str, limit: int) -> str:
    """Multi-line `text` kept as it is, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def episode_html(log: EpisodeLog) -> str:
    """HTML for Jupyter: the episode's header (agent, organization, variables), its class
    and totals, and a timeline of turns with call, revealed role, reward, cost, cumulative
    cost, oversight events and pressure."""
    return render(
        "display_episode.html.j2",
        log=log,
        briefing=shorten_block(log.initial_observation, BRIEFING_CHARS),
        klass=episode_class(log),
        rows=_timeline(log),
        violations={k: (v, log.detected.get(k, 0)) for k, v in log.violations.items() if v},
    )


def episode_plot(log: EpisodeLog, *, title: str | None = None) -> Figure:
    """A matplotlib Figure of the episode by turn: reward (bars), cumulative cost (line)
    and pressure (steps), on three axes sharing the turn axis.

    The figure is not registered with pyplot, so it is not shown twice in a notebook; save
    it with ``fig.savefig(path)``. matplotlib is imported here, on first use only.
    """
    from matplotlib.ticker import MaxNLocator

    turns = [s.turn for s in log.steps]
    rewards = [s.reward for s in log.steps]
    cumulative = list(np.cumsum([s.cost for s in log.steps])) if log.steps else []
    pressure = [s.pressure for s in log.steps]
    figure = _shown_figure_class()(figsize=(7.0, 5.0), layout="constrained")
    reward_ax, cost_ax, pressure_ax = figure.subplots(3, 1, sharex=True)
    colours = ["#2b8a3e" if r >= 0 else "#c92a2a" for r in rewards]
    reward_ax.bar(turns, rewards, color=colours)
    reward_ax.axhline(0.0, color="#868e96", linewidth=0.8)
    reward_ax.set_ylabel("reward")
    cost_ax.plot(turns, cumulative, marker="o", color="#e8590c")
    cost_ax.set_ylabel("cumulative cost")
    cost_ax.set_ylim(bottom=0.0, top=max(1.0, max(cumulative, default=0.0) * 1.1))
    pressure_ax.step(turns, pressure, where="mid", color="#5f3dc4", marker=".")
    pressure_ax.set_ylabel("pressure")
    pressure_ax.set_xlabel("turn")
    pressure_ax.set_ylim(bottom=0.0, top=max(1.0, max(pressure, default=0) + 0.5))
    pressure_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if turns:
        pressure_ax.set_xticks(turns if len(turns) <= 25 else turns[:: math.ceil(len(turns) / 25)])
    figure.suptitle(
        title if title is not None else episode_repr(log)[len("EpisodeLog(") : -1], fontsize=9
    )
    return figure


@lru_cache(maxsize=1)
def _shown_figure_class() -> type[Figure]:
    """A matplotlib Figure that Jupyter shows as a PNG by itself.

    A Figure made without pyplot shows only as text in a notebook unless pyplot's inline
    backend happens to be active; one made with pyplot is shown twice when it is also the
    cell's value. This subclass carries its own ``_repr_png_`` instead. Built on first use,
    so matplotlib is imported only by the first plot.
    """
    import io

    from matplotlib.figure import Figure

    class ShownFigure(Figure):
        """A Figure with a PNG display for Jupyter (no pyplot involved)."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100)
            return buffer.getvalue()

    return ShownFigure


# ---------------------------------------------------------------------------- runs


def eval_repr(result: EvalResult) -> str:
    """One line: the run directory and what this run did."""
    return f"EvalResult({result.run_dir}: {', '.join(_eval_parts(result))})"


def _eval_parts(result: EvalResult) -> list[str]:
    """What this run did, in short phrases: episodes, played, skipped, errors, time."""
    parts = [f"{result.total} episodes", f"{result.completed} played"]
    if result.skipped:
        parts.append(f"{result.skipped} already logged")
    if result.errors:
        causes = ", ".join(f"{k} {v}" for k, v in result.causes.most_common(3))
        parts.append(f"{result.errors} errors ({causes})")
    if result.format_errors:
        parts.append(f"{result.format_errors} format errors")
    if result.remaining:
        parts.append(f"{result.remaining} remaining")
    if result.interrupted:
        parts.append("interrupted")
    if result.stopped_early:
        parts.append(f"stopped early: {shorten(result.stopped_early, 60)}")
    if result.tokens:
        parts.append(f"{result.tokens} tokens, ${result.cost_usd:.4f}")
    parts.append(f"{result.seconds:.1f} s")
    return parts


def eval_html(result: EvalResult) -> str:
    """HTML for Jupyter: what this run did, then the run's summary table (every episode in
    its log, as the report and the viewer show it)."""
    from markupsafe import Markup

    from tp_gym import tables
    from tp_gym.runs.episode import read_jsonl

    table_html = ""
    if not result.path.exists():
        note = f"no log at {result.path}"
    else:
        try:  # tolerant: a display never raises over a torn or foreign line (it warns)
            logs = read_jsonl(result.path, skip_invalid=True)
        except OSError as error:
            note = f"could not read {result.path}: {error.strerror or error}"
        else:
            note = f"{len(logs)} episodes in {result.path.name}"
            if logs:
                table_html = tables.render_html(tables.summary_table(logs))
    return render(
        "display_eval.html.j2",
        result=result,
        parts=_eval_parts(result),
        table=Markup(table_html),  # rendered (and escaped) by tp_gym.tables' template
        note=note,
    )
