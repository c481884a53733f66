"""Running episodes and keeping their logs: the run machinery of tp_gym.

- `runner`: one episode of one agent in one env, as an `EpisodeLog`;
- `episode`: the episode log (one JSON line per episode) and its judge;
- `grid`: what a run plays (agents x environments x variable settings x seeds);
- `jsonl`: append-only JSON Lines that survive a crash (torn lines kept in a side file);
- `rundir`: the run directory (its log, manifest, lock and rules);
- `play`: playing one job (settings, env reuse, what a finished episode reports);
- `evaluation`: `evaluate`, which plays a grid through a backend and alone writes the log;
- `backends`: the backend interface and this process's event loop;
- `workers`: the worker-process backend; `ray_backend`: Ray tasks on a cluster.

The public names stay importable from `tp_gym` itself (`tp_gym.evaluate`,
`tp_gym.run_episode`, `tp_gym.EpisodeLog`, ...).
"""
