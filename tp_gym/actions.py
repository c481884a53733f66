"""Turning whatever an agent sends into one validated tool call, or a reason it is invalid.

`OrgEnv.step` accepts an index into the shown tool list, a `ToolCall`, an OpenAI-style dict
(``{"name": ..., "arguments": {...} or "json string"}``, optionally wrapped in
``{"type": "function", "function": {...}}``), or the raw text an LLM wrote (JSON such as the
study's ``{"reasoning": ..., "tool_choice": {"id": ..., "name": ..., "parameters": {...}}}`` or
the flat ``{"tool_choice": "<name>", "arguments": {...}}``). A numpy integer, or a numpy
integer array of shape ``()`` or ``(1,)``, is an index like an int. Nothing an agent
sends raises: problems come back as `ParsedAction.error`, which the env shows to the agent
and counts as an invalid action.

An action nested more than `MAX_ACTION_DEPTH` levels deep (lists, tuples, sets, dicts,
numpy array dimensions, a `ToolCall`'s arguments; JSON text counted from where it is
decoded) is not read at all, except that a JSON arguments string nested too deep is, like
one that is not valid JSON, a bad argument of the tool it names (still an attempt of its
role). Checking the depth walks the action once and stops at the first
level past the limit, so deep, cyclic or huge actions stay cheap, and every log line
written of an action stays readable (see `tp_gym.runs.recorder.loggable`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tp_gym.text import sanitize

MAX_SCANNED_CHARS = 20_000
"""Raw text beyond this many characters is not searched for a JSON tool call."""
MAX_JSON_STARTS = 32
"""At most this many ``{`` positions are tried when looking for JSON inside prose."""
ECHO_CHARS = 160
MAX_ACTION_DEPTH = 32
"""An action nested deeper than this many levels is invalid and is logged only as a preview.

32 levels is far more than any tool call needs (a call with object arguments is 2 or 3
deep) and far less than the nesting JSON readers accept (pydantic's, which reads the
episode logs, stops near 200 levels)."""
MAX_CALLS = 16
"""At most this many calls of one turn are read (the rest are counted, not resolved)."""
REPLY_HINT = (
    'answer with one JSON object such as {"reasoning": "...", "tool_choice": '
    '{"id": 1, "name": "<tool name>", "parameters": {...}}}'
)

_NAME_KEYS = ("name", "tool_choice", "tool", "tool_name", "function", "action")
_ARG_KEYS = ("arguments", "args", "parameters", "tool_args", "input")


class ToolCall(BaseModel):
    """One call of a tool by name, with JSON-compatible arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """A compiled tool argument: what `validate_arguments` checks."""

    name: str
    type: str
    required: bool
    enum: tuple[str, ...] | None
    max_length: int


@dataclass(slots=True)
class ParsedAction:
    """The outcome of parsing one turn's action.

    `position` is the shown tool the agent called (set even when its arguments are bad:
    naming a tool is an attempt of its role); `error` says why the call cannot execute.
    `named` lists the shown positions of every known tool named this turn, in order (more
    than one when the turn held several calls, which executes nothing). `unreadable` marks
    text from which no tool call at all could be read (the study's format error).
    """

    position: int | None = None
    name: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    use_defaults: bool = False
    named: list[int] = field(default_factory=list)
    unreadable: bool = False


TOO_DEEP = f"nested more than {MAX_ACTION_DEPTH} levels deep"
ECHO_LEVELS = 4
"""`echo` shows this many levels of a nested value (deeper ones as ``...``)."""


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """A short, single-line rendering of something the agent sent, safe to show back."""
    text = value[: limit * 2] if isinstance(value, str) else preview(value, limit, ECHO_LEVELS)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preview(value: object, limit: int = ECHO_CHARS, levels: int = MAX_ACTION_DEPTH) -> str:
    """A repr-like rendering of `value` in at most `limit` characters; never raises.

    Only `levels` levels of nesting are shown and the walk stops once `limit` characters
    are written, so a deep, cyclic or huge value costs little. The text is the same in
    every process: sets are sorted, memory addresses dropped, big ints summarised.
    """
    parts: list[str] = []
    room = limit + 1

    def put(text: str) -> None:
        nonlocal room
        parts.append(text[: max(room, 0)])
        room -= len(text)

    def items(open_: str, members: Any, close: str, level: int, pairs: bool = False) -> None:
        put(open_)
        for i, member in enumerate(members):
            if room <= 0:
                return
            if i:
                put(", ")
            if pairs:
                walk(member[0], level)
                put(": ")
                member = member[1]
            walk(member, level)
        put(close)

    def walk(v: Any, level: int) -> None:
        if room <= 0:
            return
        if isinstance(v, str):
            put(repr(v[:room]))
        elif isinstance(v, bool | float | complex | np.generic) or v is None:
            put(repr(v))
        elif isinstance(v, int):
            put(repr(v) if -(10**40) < v < 10**40 else f"<int of {v.bit_length()} bits>")
        elif isinstance(v, bytes | bytearray):
            put(repr(bytes(v[:room])))
        elif isinstance(v, np.ndarray):
            small = v.dtype != object and v.size <= 64
            put(repr(v) if small else f"array(shape={v.shape}, dtype={v.dtype})")
        elif level >= levels and isinstance(v, dict | list | tuple | set | frozenset | BaseModel):
            put("...")
        elif isinstance(v, dict):
            items("{", v.items(), "}", level + 1, pairs=True)
        elif isinstance(v, list):
            items("[", v, "]", level + 1)
        elif isinstance(v, tuple):
            items("(", v, ",)" if len(v) == 1 else ")", level + 1)
        elif isinstance(v, set | frozenset):
            try:
                members = sorted(v)
            except TypeError:
                put(f"<{type(v).__name__} of {len(v)} items>")
            else:
                items("{", members, "}", level + 1)
        elif isinstance(v, BaseModel):
            items(f"{type(v).__name__}(", v.__dict__.items(), ")", level + 1, pairs=True)
        else:
            try:
                text = repr(v)
            except Exception:  # noqa: BLE001 - an agent's object may fail to render
                text = f"<{type(v).__name__}>"
            put(_ADDRESS.sub("", text))

    walk(value, 0)
    text = "".join(parts)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def nested_too_deep(value: object, limit: int = MAX_ACTION_DEPTH) -> bool:
    """Whether `value` nests more than `limit` levels (a cycle nests without end).

    Levels are those of the JSON the value would log as: each list, tuple, set, dict and
    `ToolCall` is one, a numpy array one per dimension (an object array's members count
    on). Every container is expanded once (shared ones are remembered) and the walk
    stops at the first level past `limit`.
    """
    root = _members(value)
    if root is None:
        return False
    if root[0] > limit:
        return True
    heights: dict[int, int] = {}
    on_path = {id(value)}
    depth = root[0]
    # Each frame: (id, levels it adds, its members still to see, height found below it).
    stack: list[tuple[int, int, Iterator[Any], int]] = [(id(value), root[0], iter(root[1]), 0)]
    while stack:
        node, own, members, below = stack[-1]
        for member in members:
            info = _members(member)
            if info is None:
                continue
            key = id(member)
            if key in on_path:
                return True
            height = heights.get(key)
            if height is not None:
                if depth + height > limit:
                    return True
                below = max(below, height)
                continue
            if depth + info[0] > limit:
                return True
            stack[-1] = (node, own, members, below)
            stack.append((key, info[0], iter(info[1]), 0))
            on_path.add(key)
            depth += info[0]
            break
        else:
            stack.pop()
            on_path.discard(node)
            depth -= own
            heights[node] = own + below
            if stack:
                parent, parent_own, parent_members, parent_below = stack[-1]
                stack[-1] = (parent, parent_own, parent_members, max(parent_below, own + below))
    return False


_LEAVES = (str, int, float, bytes, type(None))


def _members(value: object) -> tuple[int, Iterable[Any]] | None:
    """(levels `value` adds, its members that may nest further), or None for a leaf."""
    if isinstance(value, _LEAVES):
        return None
    if isinstance(value, dict):
        return 1, itertools.chain(value.keys(), value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return 1, value
    if isinstance(value, ToolCall):
        return 1, (value.arguments,)
    if isinstance(value, np.ndarray):
        return value.ndim, (value.flat if value.dtype == object else ())
    return None


def parse_action(
    action: object, names: dict[str, int], n_tools: int, *, strict_text: bool = False
) -> ParsedAction:
    """Resolve `action` against the shown tools (`names` maps a tool name to its position).

    With `strict_text` (the study protocol), text must hold a JSON object with both
    ``reasoning`` and ``tool_choice``, as the study required; anything else is unreadable.
    An action nested past `MAX_ACTION_DEPTH` is not read (see the module docstring).
    """
    if nested_too_deep(action):
        return ParsedAction(error=f"the action is {TOO_DEEP}; nothing was read from it")
    try:
        parsed = _parse(action, names, n_tools, strict_text)
    except RecursionError:
        return ParsedAction(error="the action is nested too deeply to read")
    if parsed.position is not None and not parsed.named:
        parsed.named = [parsed.position]
    return parsed


def _parse(action: object, names: dict[str, int], n_tools: int, strict: bool) -> ParsedAction:
    if isinstance(action, bool):
        return ParsedAction(error=f"{action!r} is not a tool call")
    if isinstance(action, np.ndarray):  # what a policy over a Discrete space may emit
        if action.shape not in ((), (1,)) or action.dtype.kind not in "iu":
            return ParsedAction(
                error="a numpy array action must hold exactly one integer (a tool index), "
                f"got shape {action.shape} and dtype {action.dtype}"
            )
        action = action.item()
    if isinstance(action, int | np.integer):
        index = int(action)
        if 0 <= index < n_tools:
            return ParsedAction(position=index, use_defaults=True)
        return ParsedAction(error=f"tool index {echo(index)} is out of range 0..{n_tools - 1}")
    if isinstance(action, ToolCall):
        return _by_name(action.name, action.arguments, names)
    if isinstance(action, dict):
        return _from_mapping(action, names)
    if isinstance(action, str):
        return _from_text(action, names, strict)
    if isinstance(action, list | tuple):
        if len(action) == 1:
            return _parse(action[0], names, n_tools, strict)
        return _several([_parse(a, names, n_tools, strict) for a in action[:MAX_CALLS]], action)
    return ParsedAction(error=f"cannot read a tool call from a {type(action).__name__}")


def _several(parts: list[ParsedAction], calls: Sized) -> ParsedAction:
    """A turn with several calls: nothing executes, but every tool named is on record."""
    named = [p for part in parts for p in (part.named or [part.position]) if p is not None]
    return ParsedAction(
        named=named,
        error=f"expected exactly one tool call per turn, got {len(calls)}; none was executed",
    )


def _from_mapping(data: dict[Any, Any], names: dict[str, int]) -> ParsedAction:
    calls = data.get("tool_calls")
    if isinstance(calls, list):
        if len(calls) == 1 and isinstance(calls[0], dict):
            return _from_mapping(calls[0], names)
        if len(calls) > 1:
            parsed = [
                _from_mapping(c, names) if isinstance(c, dict) else ParsedAction()
                for c in calls[:MAX_CALLS]
            ]
            return _several(parsed, calls)
        return ParsedAction(error="a tool call must be a JSON object", unreadable=True)
    function = data.get("function")
    if isinstance(function, dict):
        return _from_mapping(function, names)
    name = next((data[k] for k in _NAME_KEYS if k in data), None)
    if isinstance(name, dict):  # the study's nested form: tool_choice = {id, name, parameters}
        return _from_mapping(name, names)
    if name is None:
        return ParsedAction(
            error="no tool name given (expected a 'name' or 'tool_choice' field)", unreadable=True
        )
    if not isinstance(name, str):
        return ParsedAction(
            error=f"the tool name must be a string, got {echo(name)}", unreadable=True
        )
    found = _by_name(name, {}, names)
    if found.error is not None:
        return found
    arguments = next((data[k] for k in _ARG_KEYS if k in data), {})
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        if not arguments.strip():
            arguments = {}
        else:
            try:
                arguments = json.loads(arguments[:MAX_SCANNED_CHARS])
            except RecursionError:
                arguments = None
            except ValueError:
                found.error = f"the arguments of {echo(name)} are not valid JSON"
                return found
            if arguments is None or nested_too_deep(arguments):
                found.error = f"the arguments of {echo(name)} are {TOO_DEEP}"
                return found
    if not isinstance(arguments, dict):
        found.error = f"the arguments of {echo(name)} must be a JSON object"
        return found
    found.arguments = dict(arguments)
    return found


def _by_name(name: str, arguments: dict[str, Any], names: dict[str, int]) -> ParsedAction:
    position = names.get(name.strip())
    if position is None:
        shown = ", ".join(names)
        return ParsedAction(name=name, error=f"unknown tool {echo(name)}; available tools: {shown}")
    return ParsedAction(position=position, name=name.strip(), arguments=dict(arguments))


def _from_text(text: str, names: dict[str, int], strict: bool) -> ParsedAction:
    stripped = text.strip()
    if not stripped:
        return ParsedAction(error="the reply was empty; answer with one tool call", unreadable=True)
    if stripped in names and not strict:
        return _by_name(stripped, {}, names)
    found, too_deep = json_objects(stripped[:MAX_SCANNED_CHARS])
    if too_deep or any(nested_too_deep(obj) for obj in found):
        return ParsedAction(
            error=f"the JSON in the reply is {TOO_DEEP}; nothing was read from it",
            unreadable=True,
        )
    calls = [obj for obj in found if _names_a_call(obj)]
    if len(calls) > 1:
        return _several([_from_mapping(obj, names) for obj in calls[:MAX_CALLS]], calls)
    if not calls:
        return ParsedAction(error=f"no tool call found; {REPLY_HINT}", unreadable=True)
    call = calls[0]
    if strict and not ("reasoning" in call and "tool_choice" in call):
        missing = [key for key in ("reasoning", "tool_choice") if key not in call]
        return ParsedAction(
            error=f"the reply lacks {' and '.join(missing)}; {REPLY_HINT}", unreadable=True
        )
    return _from_mapping(call, names)


def _names_a_call(value: dict[str, Any]) -> bool:
    return any(k in value for k in (*_NAME_KEYS, "tool_calls"))


def json_objects(text: str) -> tuple[list[dict[str, Any]], bool]:
    """The top-level JSON objects in `text`, in order (a few dozen starts at most), and
    whether some JSON in it was too deep for the decoder. How the env reads calls in a text
    reply, and the agent's memory reads them for its summaries."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    too_deep = False
    start = text.find("{")
    tries = 0
    while start != -1 and tries < MAX_JSON_STARTS:
        tries += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except RecursionError:
            too_deep = True
            start = text.find("{", start + 1)
            continue
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            objects.append(value)
        start = text.find("{", end)
    return objects, too_deep


def arguments_text(arguments: dict[str, Any]) -> str:
    """Validated arguments as shown back to the agent: short, single-line, in the charset."""
    return sanitize(", ".join(f"{k}={echo(v, 60)}" for k, v in arguments.items()))


def validate_arguments(
    tool_name: str, specs: tuple[ArgSpec, ...], arguments: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """Check and coerce `arguments` against `specs`; return (clean arguments, error or None)."""
    known = {spec.name for spec in specs}
    unknown = [k for k in arguments if k not in known]
    if unknown:
        expected = ", ".join(sorted(known)) or "none"
        shown = ", ".join(k if isinstance(k, str) else echo(k, 40) for k in unknown[:8])
        if len(unknown) > 8:
            shown += f" and {len(unknown) - 8} more"
        return {}, f"{tool_name} got unknown argument(s) {echo(shown)}; expected: {expected}"
    clean: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in arguments:
            if spec.required:
                return {}, f"{tool_name} is missing the required argument '{spec.name}'"
            continue
        value, problem = _coerce(spec, arguments[spec.name])
        if problem:
            return {}, f"{tool_name}: argument '{spec.name}' {problem}"
        clean[spec.name] = value
    return clean, None


def _coerce(spec: ArgSpec, value: Any) -> tuple[Any, str | None]:
    if spec.type == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None, "must be a string"
        try:
            text = str(value)
        except ValueError:  # an int of thousands of digits
            return None, f"is longer than {spec.max_length} characters"
        if len(text) > spec.max_length:
            return None, f"is longer than {spec.max_length} characters"
        if spec.enum is not None and text not in spec.enum:
            return None, f"must be one of: {', '.join(spec.enum)}"
        return text, None
    if spec.type == "boolean":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true", None
        return None, "must be true or false"
    number = _as_number(value)
    if number is None:
        return None, f"must be {'an integer' if spec.type == 'integer' else 'a number'}"
    if spec.type == "integer":
        if not float(number).is_integer():
            return None, "must be an integer"
        return int(number), None
    return float(number), None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value) if isinstance(value, float) else value
    elif isinstance(value, str) and len(value) < 40:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    if isinstance(number, int) and abs(number) > 10**15:
        return None
    return number
