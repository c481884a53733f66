"""Text the agent reads: any printable Unicode character, no invisible controls.

Names and text in specs and observations keep every printable character of every script
(Chinese, Cyrillic, Arabic, emoji). `sanitize` removes bidirectional and zero-width
controls (`INVISIBLE_CHARACTERS`), turns other line and space separators into a space and
other non-printable characters (controls, unassigned code points) into ``?``. It costs one
`str.isprintable` scan on the common path.
"""

from __future__ import annotations

import string

from gymnasium import spaces

from tp_gym.spec import INVISIBLE_CHARACTERS

PRINTABLE = frozenset(string.printable) | frozenset("äöüÄÖÜßéèêàâçñóíúÉ€£°±×—–’‘“”…·")
"""The characters the observation space *samples* from (gymnasium `Text` needs a charset).

Observations may hold any printable Unicode character besides these: `is_agent_text`
says which strings are valid and `UnicodeText` is a `Text` space that accepts them all.
"""

_KEPT_WHITESPACE = frozenset("\t\n\r\x0b\x0c")
JOINERS = frozenset("\u200c\u200d")
"""Zero-width non-joiner and joiner: not printable to Python, but part of Persian and Indic
words and of emoji sequences, so kept."""


def _replacement(char: str) -> str:
    if char in INVISIBLE_CHARACTERS:
        return ""
    if char in _KEPT_WHITESPACE or char in JOINERS or char.isprintable():
        return char
    return " " if char.isspace() else "?"


def sanitize(text: str, limit: int | None = None) -> str:
    """`text` for the agent, cut to `limit` characters: invisible controls removed, other
    separators made spaces, other non-printable characters made '?'."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    if text.isprintable():
        return text
    return "".join(map(_replacement, text))


_WHITESPACE_TO_SPACE = str.maketrans(
    {**dict.fromkeys(_KEPT_WHITESPACE, " "), **dict.fromkeys(JOINERS, "")}
)


def is_agent_text(text: str) -> bool:
    """Whether `text` is as `sanitize` leaves it: printable, tabs, line breaks and joiners
    allowed."""
    return text.isprintable() or text.translate(_WHITESPACE_TO_SPACE).isprintable()


class UnicodeText(spaces.Text):
    """A `Text` space of agent text: `PRINTABLE` to sample, any `is_agent_text` contained."""

    def __init__(self, max_length: int, *, min_length: int = 0) -> None:
        super().__init__(max_length, min_length=min_length, charset="".join(sorted(PRINTABLE)))

    def contains(self, x: object) -> bool:
        return (
            isinstance(x, str) and self.min_length <= len(x) <= self.max_length and is_agent_text(x)
        )
