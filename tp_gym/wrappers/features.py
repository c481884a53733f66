"""`FeatureObservation`: what a policy needs to tell the shown tools apart, as numbers.

The env's own `features` say how often each shown position was used, but not what the tool
there does; the tool order is shuffled per seed, so a policy on features alone cannot learn.
This wrapper adds, for each shown tool, a fixed hashed encoding of the text the agent is
shown about it (name, typed arguments, description, argument descriptions and enum values):
character trigrams and words, hashed into `dim` signed buckets (CRC32, so the same on every
machine and Python version), L2-normalised. No model is downloaded; no hidden role, label or
severity enters the encoding.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tp_gym.env import MAX_TOOLS, N_FEATURES

WORD = re.compile(r"[a-z0-9]+")
CACHE_LIMIT = 20_000


class ToolEncoder:
    """Hashed character-trigram and word encoding of tool texts into `dim` dimensions."""

    def __init__(self, dim: int = 64) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or not 8 <= dim <= 4096:
            raise ValueError(f"dim must be an int in 8..4096, got {dim!r}")
        self.dim = dim
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, text: str) -> np.ndarray:
        """The unit-length float32 vector of `text` (cached)."""
        found = self._cache.get(text)
        if found is not None:
            return found
        vector = np.zeros(self.dim, dtype=np.float64)
        lowered = " ".join(text.lower().replace("_", " ").split())
        words = WORD.findall(lowered)
        grams = [f"w:{w}" for w in words]
        for word in words:
            padded = f" {word} "
            grams += [padded[i : i + 3] for i in range(len(padded) - 2)]
        for gram in grams:
            code = zlib.crc32(gram.encode("utf-8"))
            vector[code % self.dim] += 1.0 if (code >> 31) & 1 else -1.0
        norm = np.linalg.norm(vector)
        if norm > 0:
            vector /= norm
        found = vector.astype(np.float32)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[text] = found
        return found


class FeatureObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observations ``Dict(features, tools, action_mask)`` and ``Discrete(MAX_TOOLS)`` actions.

    - ``features``: the env's `Box(0, 1, (26,))` (`tp_gym.env.FEATURE_NAMES`);
    - ``tools``: `Box(-1, 1, (MAX_TOOLS, dim))`, row ``i`` the encoding of the ``i``-th shown
      tool, zeros past the shown count;
    - ``action_mask``: `MultiBinary(MAX_TOOLS)`, 1 for shown tools.

    The action space is `Discrete(MAX_TOOLS)` (12) for every organization, so one policy
    serves all of them; an index past the shown tools is an invalid action (the turn passes,
    `info["invalid_actions"]` counts it). `action_masks()` serves sb3-contrib's MaskablePPO.
    With ``flatten=True`` the observation is one `Box` (features, then the tool rows, then
    the mask) for MLP policies. Unless it has a render mode, the wrapped env stops rendering
    its text observation (which this observation does not hold); rewards, costs and info
    are unchanged.
    """

    def __init__(self, env: gym.Env, dim: int = 64, flatten: bool = False) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, dim=dim, flatten=flatten)
        gym.ObservationWrapper.__init__(self, env)
        from tp_gym.env import OrgEnv

        if not isinstance(env.unwrapped, OrgEnv):
            raise TypeError(f"FeatureObservation wraps a tp_gym env, got {env.unwrapped!r}")
        if env.unwrapped.render_mode is None:  # the text is not part of this observation
            env.unwrapped.text_observations = False
        self.encoder = ToolEncoder(dim)
        self.flatten = bool(flatten)
        self.action_space = spaces.Discrete(MAX_TOOLS)
        features = spaces.Box(0.0, 1.0, shape=(N_FEATURES,), dtype=np.float32)
        tools = spaces.Box(-1.0, 1.0, shape=(MAX_TOOLS, dim), dtype=np.float32)
        mask = spaces.MultiBinary(MAX_TOOLS)
        if self.flatten:
            size = N_FEATURES + MAX_TOOLS * dim + MAX_TOOLS
            self.observation_space = spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32)
        else:
            self.observation_space = spaces.Dict(
                {"features": features, "tools": tools, "action_mask": mask}
            )
        self._tools = np.zeros((MAX_TOOLS, dim), dtype=np.float32)
        self._mask = np.zeros(MAX_TOOLS, dtype=np.int8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        texts = self.env.unwrapped.shown_tool_texts()  # type: ignore[attr-defined]
        tools = np.zeros_like(self._tools)
        for i, text in enumerate(texts):
            tools[i] = self.encoder.encode(text)
        self._tools = tools
        self._mask = _mask_of(len(texts))
        return self.observation(observation), info

    def observation(self, observation: dict[str, Any]) -> Any:
        features = observation["features"]
        if self.flatten:
            return np.concatenate(
                [features, self._tools.ravel(), self._mask.astype(np.float32)]
            ).astype(np.float32)
        # Copies: Gymnasium's contract is new observation data at every call.
        return {"features": features, "tools": self._tools.copy(), "action_mask": self._mask.copy()}

    def action_masks(self) -> np.ndarray:
        """Which actions name a shown tool (for sb3-contrib's MaskablePPO)."""
        return self._mask.astype(bool)


@functools.cache
def _mask_of(shown: int) -> np.ndarray:
    """The (read-only, shared) action mask with the first `shown` actions allowed."""
    mask = np.zeros(MAX_TOOLS, dtype=np.int8)
    mask[:shown] = 1
    mask.flags.writeable = False
    return mask
