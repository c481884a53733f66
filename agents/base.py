"""The agent interface the runner drives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tp_gym.env import Oracle


@runtime_checkable
class Agent(Protocol):
    """What `tp_gym.run_episode` needs from an agent.

    `name` identifies the agent in logs and reports (e.g. ``scripted:compliant``).
    `needs_oracle` asks the runner for the hidden tool roles; only scripted baselines and
    test agents may set it. `reset` starts an episode with the first observation and the
    OpenAI tool schemas and the env's protocol (``study`` or ``extended``, so an agent can
    follow the matching reply format); `act` returns one action for `env.step`.
    """

    name: str
    needs_oracle: bool

    def reset(
        self,
        observation: dict[str, Any],
        *,
        tools: list[dict[str, Any]],
        oracle: Oracle | None,
        seed: int | None,
        protocol: str = "study",
    ) -> None: ...

    def act(self, observation: dict[str, Any]) -> Any: ...
