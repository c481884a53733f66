"""The character set of text observations, and keeping text inside it."""

from __future__ import annotations

import re
import string

PRINTABLE = frozenset(string.printable) | frozenset("äöüÄÖÜßéèêàâçñóíúÉ€£°±×—–’‘“”…·")
"""Characters a text observation may contain (gymnasium `Text` spaces need a charset)."""

_OUTSIDE_CHARSET = re.compile("[^" + re.escape("".join(sorted(PRINTABLE))) + "]")


def sanitize(text: str, limit: int | None = None) -> str:
    """`text` with characters outside `PRINTABLE` replaced by '?' and cut to `limit` characters."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return _OUTSIDE_CHARSET.sub("?", text)
