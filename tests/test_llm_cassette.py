"""Cassettes: an episode recorded once replays offline to the same log, misses are clear."""

from __future__ import annotations

import json
import threading

import gymnasium as gym
import pytest
from conftest import fast_llm

from tp_gym.agents.llm import LLMAgent
from tp_gym.llm.cassette import Cassette, request_key
from tp_gym.llm.client import LLMClient
from tp_gym.llm.completion import Completion
from tp_gym.llm.errors import CassetteMissError
from tp_gym.llm.narrator import NarratorWrapper
from tp_gym.llm.redact import Redactor
from tp_gym.runs.episode import to_json_line
from tp_gym.runs.jsonl import TornLineWarning
from tp_gym.runs.runner import run_episode

ENV_ID = "tp_gym/Healthcare-Loyalty-v0"
DEAD_BASE = "http://127.0.0.1:9/v1"
"""Nothing listens on the discard port: any call that reaches the network fails."""


def narrated_env(base: str, cassette, mode: str) -> gym.Env:
    return NarratorWrapper(
        gym.make(ENV_ID),
        "openai/narrator-model",
        api_base=base,
        timeout=1,
        max_retries=0,
        cassette=cassette,
        cassette_mode=mode,
    )


@pytest.mark.parametrize("reply_format", ["tools", "json"])
def test_a_recorded_episode_replays_offline_to_the_same_log(
    server, api_key, tmp_path, reply_format
):
    cassette = tmp_path / "episode.jsonl"
    options = fast_llm(server, cassette=cassette, cassette_mode="record", reply_format=reply_format)
    recorded = run_episode(
        narrated_env(server.base_url, cassette, "record"),
        LLMAgent("openai/gpt-4o-mini", temperature=0.7, **options),
        seed=11,
    )
    assert recorded.error is None and recorded.usage["narrator"].calls >= 1
    calls = server.stats["requests"]
    server.stop()
    options = {**options, "api_base": DEAD_BASE, "cassette_mode": "replay", "max_retries": 0}
    replayed = run_episode(
        narrated_env(DEAD_BASE, cassette, "replay"),
        LLMAgent("openai/gpt-4o-mini", temperature=0.7, **options),
        seed=11,
    )
    assert to_json_line(replayed) == to_json_line(recorded)
    assert server.stats["requests"] == calls
    lines = cassette.read_text().splitlines()
    assert len(lines) == calls


def test_strict_replay_fails_clearly_on_a_request_it_does_not_hold(server, api_key, tmp_path):
    cassette = tmp_path / "c.jsonl"
    agent = LLMAgent("openai/gpt-4o-mini", **fast_llm(server, cassette=cassette))
    run_episode(gym.make(ENV_ID), agent, seed=0)
    replay = LLMAgent(
        "openai/gpt-4o-mini", **fast_llm(server, cassette=cassette, cassette_mode="replay")
    )
    before = server.stats["requests"]
    log = run_episode(gym.make(ENV_ID), replay, seed=1)
    assert log.outcome == "error" and log.error.startswith("CassetteMissError")
    assert str(cassette) in log.error and "strict replay never calls the model" in log.error
    assert server.stats["requests"] == before


def test_replay_needs_an_existing_cassette(tmp_path):
    with pytest.raises(CassetteMissError, match="does not exist"):
        LLMAgent("openai/x", cassette=tmp_path / "none.jsonl", cassette_mode="replay")


def test_auto_mode_records_once_then_replays(server, api_key, tmp_path):
    cassette = tmp_path / "auto.jsonl"
    first = run_episode(
        gym.make(ENV_ID), LLMAgent("openai/m", **fast_llm(server, cassette=cassette)), seed=5
    )
    calls = server.stats["requests"]
    second = run_episode(
        gym.make(ENV_ID), LLMAgent("openai/m", **fast_llm(server, cassette=cassette)), seed=5
    )
    assert server.stats["requests"] == calls, "the second run came from the cassette"
    assert to_json_line(first) == to_json_line(second)


def test_the_key_ignores_transport_and_the_file_holds_no_key(server, api_key, tmp_path):
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.5}
    transport = {"api_base": "http://a", "api_key": "sk-secret-value-123", "timeout": 3}
    assert request_key(base) == request_key({**base, **transport})
    assert request_key(base) != request_key({**base, "temperature": 0.6})
    cassette = tmp_path / "k.jsonl"
    client = LLMClient(
        "openai/gpt-4o-mini",
        api_base=server.base_url,
        api_key="sk-explicit-KEY-abc123",
        timeout=2,
        cassette=cassette,
    )
    client.complete([{"role": "user", "content": "my key is sk-explicit-KEY-abc123"}])
    text = cassette.read_text()
    assert "sk-explicit-KEY-abc123" not in text and api_key not in text
    entry = json.loads(text)
    assert entry["v"] == 1 and entry["key"] == request_key(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "my key is sk-explicit-KEY-abc123"}],
        }
    )
    assert entry["response"]["prompt_tokens"] > 0 and "cost_usd" in entry["response"]


def test_torn_last_line_is_skipped_but_a_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    good = {
        "v": 1,
        "key": "k1",
        "request": {},
        "response": Completion(content="hi").to_record(),
    }
    path.write_text(json.dumps(good) + "\n" + '{"v": 1, "key": "k2", "resp')
    with pytest.warns(TornLineWarning, match=r"t.jsonl:2: incomplete last line"):
        assert len(Cassette(path, "replay")) == 1
    bad = tmp_path / "b.jsonl"
    bad.write_text("not json\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match=r"b.jsonl:1: not a cassette entry"):
        Cassette(bad, "auto")


def test_concurrent_recording_into_one_cassette_keeps_every_line(server, tmp_path):
    path = tmp_path / "shared.jsonl"
    redactor = Redactor()

    def record(worker: int) -> None:
        cassette = Cassette(path, "record")
        for i in range(50):
            request = {"model": "m", "messages": [{"role": "user", "content": f"{worker}-{i}"}]}
            cassette.record(request, Completion(content="x" * 500), redactor)

    threads = [threading.Thread(target=record, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["response"]["content"] for line in lines)
    assert len(Cassette(path, "replay")) == 400
