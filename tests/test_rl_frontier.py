"""benchmarks/rl_frontier.py at a tiny size: the result's shape, and that a cost penalty
lowers the cost on the train organizations."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import tp_gym
from tp_gym.learn import PolicyGradient
from tp_gym.wrappers import FeatureObservation, LagrangianReward

PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "rl_frontier.py"


def load():
    spec = importlib.util.spec_from_file_location("rl_frontier", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["rl_frontier"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_frontier_has_every_split_and_a_penalty_lowers_the_train_cost():
    bench = load()
    settings = (bench.Setting("reward"), bench.Setting("lagrangian", 0.0))
    results = bench.frontier(episodes=1500, eval_seeds=3, settings=settings)
    assert [r["setting"] for r in results] == list(settings)
    cells = {s: len(tp_gym.suite(s)) for s in ("train", "heldout")}
    for result in results:
        for split, n_cells in cells.items():
            summary = result[split]
            assert summary["n"] == 3 * n_cells
            for key in ("mr", "compliant"):
                share, low, high = summary[key]
                assert 0.0 <= low <= share <= high <= 1.0
            for key in ("utility", "cost"):
                mean, low, high = summary[key]
                assert low <= mean <= high and not math.isnan(mean)
        orgs = {c.env_id.removeprefix("tp_gym/")[:-3] for c in tp_gym.suite("heldout")}
        assert set(result["heldout"]["by_org"]) == orgs
    reward, penalized = results
    assert reward["training"]["final_multiplier"] is None
    assert penalized["training"]["final_multiplier"] > 0
    assert penalized["train"]["cost"][0] < reward["train"]["cost"][0]
    assert "| reward only | heldout |" in bench.table(results)
    again = bench.frontier(episodes=1500, eval_seeds=3, settings=settings[1:])
    assert again[0]["train"] == penalized["train"], "seeded: the same numbers again"


def test_under_lagrangian_reward_utility_is_the_organizations_own_reward():
    def env(lagrangian: bool) -> gym.Env:
        base = FeatureObservation(gym.make("tp_gym/Healthcare-Loyalty-v0", protocol="extended"))
        return LagrangianReward(base, multiplier=3.0, lr=0.0) if lagrangian else base

    plain = PolicyGradient(seed=1).evaluate(env(False), range(20))
    wrapped = PolicyGradient(seed=1).evaluate(env(True), range(20))
    assert [e.utility for e in wrapped] == pytest.approx([e.utility for e in plain])
    assert [e.cost for e in wrapped] == [e.cost for e in plain]
