"""tp_gym for `verifiers` (prime-rl, the Environments Hub): ``load_environment``.

```python
from openai import AsyncOpenAI
import verifiers as vf
from tp_gym.verifiers import load_environment

env = load_environment(suite="paper", seeds=3, cost_weight=2.0)
client = vf.OpenAIChatCompletionsClient(AsyncOpenAI(base_url=..., api_key=...))
results = await env.evaluate(client, "my-model", rollouts_per_example=1)
```

verifiers' own loader finds it too: ``vf.load_environment("tp_gym.verifiers", suite="all")``
(and so does ``vf-eval tp_gym.verifiers``). Needs ``pip install "tp_gym[verifiers]"``.
The environment itself lives in `tp_gym.integrations.verifiers_env`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tp_gym.integrations.verifiers_env import TpGymEnv

INSTALL_HINT = 'the verifiers environment needs verifiers: pip install "tp_gym[verifiers]"'


def load_environment(
    suite: str = "paper",
    protocol: str | None = None,
    seeds: int | str | Iterable[int] = 1,
    envs: str | Sequence[str] | None = None,
    utility_weight: float = 1.0,
    cost_weight: float = 1.0,
    misaligned_penalty: float = 0.0,
    max_turns: int | None = None,
    **kwargs: Any,
) -> TpGymEnv:
    """A verifiers multi-turn tool environment over a tp_gym suite.

    One dataset row per (organization, variables, seed) of `suite`; each rollout plays
    that episode of `OrgEnv` and is judged as `tp-gym run` judges it. The reward is
    ``utility_weight * utility - cost_weight * cost - misaligned_penalty * misaligned``.

    Args:
        suite: ``paper`` (the study's design, study protocol), ``all``, ``train``,
            ``heldout`` or ``observed`` (extended protocol); see `tp_gym.suites`.
        protocol: ``study`` or ``extended``; None plays each suite under its own.
        seeds: a count (``3`` means seeds 0, 1, 2), a range text (``"0-4,9"``) or a
            list of seeds; each cell of the suite is played once per seed.
        envs: only these organizations of the suite (env ids or globs, e.g.
            ``"tp_gym/Finance-*"``); None keeps them all.
        utility_weight: weight of the utility the principal gets (>= 0).
        cost_weight: weight of the ethical cost (severity of all violations), subtracted
            (>= 0).
        misaligned_penalty: subtracted when the episode's class is ``strategic`` or
            ``direct``, the classes the Misalignment Rate counts (>= 0).
        max_turns: each episode's turn limit (None keeps the organization's, 20 for the
            bundled ones); the env truncates the episode there, as `gymnasium.make(id,
            max_turns=...)` does, so it is judged like any truncated episode.
        **kwargs: passed to `verifiers.MultiTurnEnv` (``sampling_args``,
            ``timeout_seconds``, ``max_seq_len``, ...). Under ``study`` the study's sampling
            settings (temperature 0.7, max_tokens 4096) are the default ``sampling_args``.
            A rollout that verifiers stops early (a failed model call, a timeout, a prompt
            too long) is logged as errored and stays out of the Misalignment Rate.

    Raises:
        ValueError: an unknown suite or protocol, bad seeds or env patterns, a negative
            weight; the message names the argument.
        ImportError: verifiers is not installed.
    """
    try:
        from tp_gym.integrations.verifiers_env import make_environment
    except ImportError as error:
        if (error.name or "").split(".")[0] in ("verifiers", "datasets"):
            raise ImportError(INSTALL_HINT) from error
        raise
    return make_environment(
        suite=suite,
        protocol=protocol,
        seeds=seeds,
        envs=envs,
        utility_weight=utility_weight,
        cost_weight=cost_weight,
        misaligned_penalty=misaligned_penalty,
        max_turns=max_turns,
        **kwargs,
    )


__all__ = ["load_environment"]
