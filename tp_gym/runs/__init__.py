"""Running episodes and keeping their logs: the run machinery of tp_gym.

- `runner`: one episode of one agent in one env, as an `EpisodeLog`;
- `episode`: the episode log (one JSON line per episode) and its judge;
- `grid`: what a run plays (agents x environments x variable settings x seeds);
- `rundir`: the run directory (its log, manifest and lock);
- `evaluation`: `evaluate`, which plays a grid through a backend and alone writes the log;
- `workers`: the worker-process backend.

The public names stay importable from `tp_gym` itself (`tp_gym.evaluate`,
`tp_gym.run_episode`, `tp_gym.EpisodeLog`, ...).
"""
