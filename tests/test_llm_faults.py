"""Under a 20% fault rate every episode ends, complete or marked error with its cause.

Faults: 429, 500, timeouts (the server holds the connection past the client's timeout),
malformed JSON, calls to unknown tools and empty choices, drawn from a seeded generator.
Nothing may hang, retries must stay within the budget, and no episode may go missing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
from conftest import fast_llm

import tp_gym
from tp_gym.agents.llm import LLMAgent
from tp_gym.runs.episode import EpisodeLog
from tp_gym.runs.runner import arun_episode, run_episode
from tp_gym.testing import FAULTS

ENV_IDS = tp_gym.env_ids()
RETRIES = 1
TIMEOUT = 1.5
"""Seconds per call: long enough that a reply the server did send is not lost to a client
timeout when 100 episodes share one loaded event loop (the counts below assume every
served reply was received), short enough that the timeout faults stay cheap."""
HANG = 3.0
"""How long a timeout fault holds the connection: beyond the client's timeout."""
CAUSES = ("LLMUnavailableError: openai/gpt-4o-mini: gave up after 2 attempt(s); last error: ",)


def check_outcomes(logs: list[EpisodeLog], server, n: int) -> Counter[str]:
    """Every episode complete or errored with a cause; retries within the budget."""
    assert len(logs) == n, "no episode may go missing"
    outcomes: Counter[str] = Counter()
    for log in logs:
        if log.error is None:
            assert log.terminated or log.truncated, log
            outcomes["complete"] += 1
        else:
            assert log.outcome == "error" and log.error.startswith(CAUSES), log.error
            assert any(k in log.error for k in ("HTTP", "Timeout", "EmptyResponse")), log.error
            outcomes["error"] += 1
    calls = sum(log.usage["agent"].calls for log in logs)
    attempts_allowed = (calls + outcomes["error"]) * (RETRIES + 1)
    assert server.stats["requests"] <= attempts_allowed
    # an unknown tool is the model's mistake: an invalid action, never an error
    assert sum(log.invalid_actions for log in logs) == server.stats["unknown_tool"]
    return outcomes


def test_one_hundred_async_episodes_under_twenty_percent_faults(make_server, api_key):
    server = make_server(fault_rate=0.2, seed=1, hang=HANG)
    options = fast_llm(server, timeout=TIMEOUT, max_retries=RETRIES)

    async def play(index: int) -> EpisodeLog:
        env = gym.make(ENV_IDS[index % len(ENV_IDS)])
        return await arun_episode(env, LLMAgent("openai/gpt-4o-mini", **options), seed=index)

    async def play_all() -> list[EpisodeLog]:
        return await asyncio.wait_for(asyncio.gather(*(play(i) for i in range(100))), 90)

    started = time.perf_counter()
    logs = asyncio.run(play_all())
    elapsed = time.perf_counter() - started
    outcomes = check_outcomes(logs, server, 100)
    print(f"\n100 async episodes in {elapsed:.1f}s: {dict(outcomes)}; server {dict(server.stats)}")
    assert all(server.stats[fault] > 0 for fault in FAULTS), server.stats
    assert outcomes["complete"] >= 50 and outcomes["error"] >= 1


def test_threaded_sync_episodes_under_faults(make_server, api_key):
    server = make_server(fault_rate=0.2, seed=2, hang=HANG)
    options = fast_llm(server, timeout=TIMEOUT, max_retries=RETRIES)

    def play(index: int) -> EpisodeLog:
        env = gym.make(ENV_IDS[index % len(ENV_IDS)])
        return run_episode(env, LLMAgent("openai/gpt-4o-mini", **options), seed=index)

    with ThreadPoolExecutor(max_workers=10) as pool:
        logs = list(pool.map(play, range(30), timeout=90))
    outcomes = check_outcomes(logs, server, 30)
    assert outcomes["complete"] >= 15
