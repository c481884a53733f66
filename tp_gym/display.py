"""Readable text and HTML displays of envs, steps, episodes and runs (for notebooks).

Nothing shown here reveals a tool's hidden role while an episode is live: the env display
shows what the agent sees. Episode logs, read after the fact, show roles.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tp_gym.env import OrgEnv


def env_repr(env: OrgEnv) -> str:
    """One line: organization, protocol, turn and how many tools are shown."""
    turn = getattr(env, "turn", None)  # absent until the first reset
    where = "not reset" if turn is None else f"turn {turn}/{env.max_turns}"
    return f"<OrgEnv {env.org.id} protocol={env.protocol} {where}>"


def env_html(env: OrgEnv) -> str:
    """HTML for Jupyter: for now the one-line summary, escaped."""
    return f"<pre>{html.escape(env_repr(env))}</pre>"
