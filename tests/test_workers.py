"""Several processes sharing one evaluation: jobs claimed once, slots never overdrawn."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing

from tp_gym.runs.evaluation import Grid, evaluate, load_run, tuned_collector
from tp_gym.runs.workers import JobClaims, SlotGate, lane_shares
from tp_gym.testing import FakeOpenAIServer


def test_processes_claiming_from_one_counter_split_the_jobs_exactly():
    jobs = Grid.build("scripted:compliant", envs="tp_gym/*", seeds=range(3)).jobs()
    counter = multiprocessing.get_context("spawn").Value("q", 0)
    first, second = JobClaims(jobs, counter), JobClaims(jobs, counter)
    claimed = []
    for one, other in zip(first, second):  # alternating, as two processes would
        claimed += [one, other]
    claimed += list(first) + list(second)
    assert sorted(claimed, key=jobs.index) == jobs


def test_lane_shares_spread_the_concurrency_evenly():
    assert lane_shares(16, 2) == [8, 8]
    assert lane_shares(5, 3) == [2, 2, 1]
    assert sum(lane_shares(64, 7)) == 64


def test_slot_gate_never_lets_more_than_the_limit_in_and_retires_lanes():
    in_flight = multiprocessing.get_context("spawn").Value("q", 0)
    gate, other = SlotGate(in_flight, 2, lanes=4), SlotGate(in_flight, 2, lanes=4)

    async def scenario() -> None:
        assert await gate.enter(0) and await other.enter(0)
        waiting = asyncio.create_task(gate.enter(1))
        await asyncio.sleep(0.1)
        assert not waiting.done(), "a third episode waits while two slots are taken"
        other.leave()
        assert await asyncio.wait_for(waiting, 1.0)
        gate.retire(3)
        assert not await gate.enter(1), "lane 1 of a process down to one lane is retired"
        gate.leave()
        gate.leave()

    asyncio.run(scenario())
    assert in_flight.value == 0


def test_workers_stay_within_the_concurrency_and_play_each_episode_once(tmp_path):
    grid = Grid.build("llm:openai/gpt-4o-mini", envs="tp_gym/*", seeds=range(3))
    with FakeOpenAIServer(latency=0.02) as server:
        result = evaluate(
            grid,
            tmp_path,
            concurrency=3,
            workers=2,
            llm_options={"api_base": server.base_url, "api_key": "sk-test-key"},
        )
    logs = load_run(tmp_path)
    assert result.completed == len(grid) == len(logs) and not result.interrupted
    assert not [log.error for log in logs if log.error]
    assert 1 <= server.most_in_flight <= 3


def test_a_run_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with tuned_collector():
        assert gc.get_threshold()[0] > threshold[0] and gc.get_freeze_count() > frozen
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
    evaluate(Grid.build("scripted:compliant", envs="tp_gym/Coding-*", seeds=[0]), tmp_path)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
