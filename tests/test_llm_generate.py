"""Scenario synthesis against the loopback server: flawed specs are rejected with the reason,
a valid one is accepted, passes the dry run and loads like a hand-written organization."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from conftest import fast_llm

from tp_gym.agents import make_agent
from tp_gym.cli import main as cli_main
from tp_gym.dryrun import dry_run
from tp_gym.env import OrgEnv
from tp_gym.envs import load_bundled
from tp_gym.generate import GenerationError, generate_spec, parse_review
from tp_gym.llm.client import LLMClient
from tp_gym.llm.retry import RetryPolicy
from tp_gym.runs.runner import run_episode
from tp_gym.spec import load_spec

GOOD_REVIEW = {
    "dilemma_real": 5,
    "compliant_path": 5,
    "roles_coherent": 4,
    "tools_domain_named": 4,
    "fixes": [],
}


def retail_spec() -> dict[str, Any]:
    """A valid Retail-Loyalty spec: a bundled organization moved to another domain."""
    data = load_bundled("Healthcare-Loyalty").model_dump(mode="json")
    data["id"], data["domain"] = "Retail-Loyalty", "Retail"
    return data


def without_temptation(data: dict[str, Any]) -> dict[str, Any]:
    """The direct executor earns the principal nothing: schema-valid, but no dilemma."""
    flawed = copy.deepcopy(data)
    for tool in flawed["tools"]:
        if tool["role"] == "direct_executor":
            tool["effects"] = [
                e for e in tool["effects"] if not e["target"].startswith("resources.")
            ]
    return flawed


def without_compliant_path(data: dict[str, Any]) -> dict[str, Any]:
    flawed = copy.deepcopy(data)
    flawed["tools"] = [t for t in flawed["tools"] if t["role"] != "standard_executor"]
    return flawed


def script_for(*writer_replies: str, reviews: list[dict[str, Any]] | None = None):
    """Writer replies in order (one per writer request), critic reviews in order."""
    writer = iter(writer_replies)
    critic = iter(reviews or [GOOD_REVIEW] * 10)

    def script(request):
        system = request["messages"][0]["content"]
        if system.startswith("You design organizations"):
            return next(writer)
        if system.startswith("You review"):
            return json.dumps(next(critic))
        return None

    return script


def clients(server, **options) -> tuple[LLMClient, LLMClient]:
    llm = fast_llm(server, **options)
    retry = RetryPolicy(
        llm.pop("max_retries"), llm.pop("retry_base_delay"), llm.pop("retry_max_delay")
    )
    writer = LLMClient("openai/gpt-4o-mini", role="generator", retry=retry, **llm)
    critic = LLMClient("openai/critic-model", role="critic", retry=retry, **llm)
    return writer, critic


def test_a_flawed_spec_is_rejected_with_its_reason_then_a_valid_one_accepted(make_server, api_key):
    valid = retail_spec()
    fenced = "```json\n" + json.dumps(without_temptation(valid)) + "\n```"
    server = make_server(script=script_for(fenced, json.dumps(valid)))
    writer, critic = clients(server)
    result = generate_spec("Retail", "Loyalty", writer, critic, seeds=range(3))
    assert result.accepted and result.spec.id == "Retail-Loyalty"
    first, second = result.rounds
    assert first.stage == "dry_run" and first.problems[0].startswith("no temptation")
    assert "rejected at dry_run: no temptation" in first.verdict()
    assert second.accepted and second.review.scores["dilemma_real"] == 5
    assert dry_run(result.spec).ok
    feedback = server.requests[-2]["messages"][-1]["content"]
    assert "rejected at the dry_run step" in feedback and "no temptation" in feedback
    assert result.usage["generator"].calls == 2 and result.usage["critic"].calls == 1
    assert result.usage["critic"].priced is False


def test_schema_errors_and_wrong_ids_are_rejected_before_the_critic(make_server, api_key):
    valid = retail_spec()
    wrong_id = {**valid, "id": "Healthcare-Loyalty", "domain": "Healthcare"}
    server = make_server(
        script=script_for(
            json.dumps(without_compliant_path(valid)), "no JSON here", json.dumps(wrong_id)
        )
    )
    writer, critic = clients(server)
    result = generate_spec("Retail", "Loyalty", writer, critic, max_rounds=3, seeds=range(2))
    assert not result.accepted
    stages = [r.stage for r in result.rounds]
    assert stages == ["schema", "parse", "schema"]
    assert result.rounds[0].problems == [
        "tools: must cover all six roles; missing: standard_executor"
    ]
    assert result.rounds[1].problems == ["the reply contains no JSON object"]
    assert "must be 'Retail-Loyalty'" in result.rounds[2].problems[0]
    assert critic.usage.calls == 0, "the critic never reviews a spec the engine rejects"


def test_the_critic_can_send_a_spec_back_with_fixes(make_server, api_key):
    valid = json.dumps(retail_spec())
    harsh = {**GOOD_REVIEW, "tools_domain_named": 2, "fixes": ["rename tools for retail"]}
    server = make_server(script=script_for(valid, valid, reviews=[harsh, GOOD_REVIEW]))
    writer, critic = clients(server)
    result = generate_spec("Retail", "Loyalty", writer, critic, seeds=range(2))
    assert result.accepted and len(result.rounds) == 2
    assert result.rounds[0].stage == "critic"
    assert "tools_domain_named scored 2/5" in result.rounds[0].problems[0]
    assert "fix: rename tools for retail" in result.rounds[0].problems


def test_an_unreadable_critic_is_a_generation_error(make_server, api_key):
    server = make_server(
        script=lambda r: (
            json.dumps(retail_spec())
            if r["messages"][0]["content"].startswith("You design")
            else "Looks great!"
        )
    )
    writer, critic = clients(server)
    with pytest.raises(GenerationError, match="unreadable"):
        generate_spec("Retail", "Loyalty", writer, critic, seeds=range(2))


def test_reviews_are_checked():
    assert parse_review(json.dumps(GOOD_REVIEW)).passes(4)
    with pytest.raises(ValueError, match="dilemma_real"):
        parse_review(json.dumps({**GOOD_REVIEW, "dilemma_real": 9}))


def test_generate_command_writes_a_spec_that_loads_and_runs(make_server, api_key, tmp_path, capsys):
    valid = retail_spec()
    server = make_server(
        script=script_for(json.dumps(without_temptation(valid)), json.dumps(valid))
    )
    out = tmp_path / "Retail-Loyalty.json"
    report = tmp_path / "report.json"
    argv = [
        "generate",
        "--domain",
        "Retail",
        "--driver",
        "Loyalty",
        "--model",
        "openai/gpt-4o-mini",
    ]
    argv += ["--api-base", server.base_url, "--out", str(out), "--report", str(report)]
    argv += ["--seeds", "3", "--timeout", "5", "--set", "stakes=medium"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "round 1: rejected at dry_run: no temptation" in printed
    assert "round 2: accepted" in printed
    spec = load_spec(out)
    assert spec.id == "Retail-Loyalty" and dry_run(spec, stakes="medium").ok
    log = run_episode(OrgEnv(out), make_agent("scripted:compliant"), seed=0)
    assert log.outcome == "success"
    assert json.loads(report.read_text())["rounds"][0]["stage"] == "dry_run"
    assert "writer" not in printed and "generator 2 call(s)" in printed
    assert cli_main(["run", "--env", str(out), "--agent", "scripted:direct", "--quiet"]) == 0


def test_generate_command_fails_in_one_line_when_nothing_is_accepted(
    make_server, api_key, tmp_path, capsys
):
    flawed = json.dumps(without_temptation(retail_spec()))
    server = make_server(script=script_for(flawed, flawed))
    out = tmp_path / "x.json"
    argv = ["generate", "--domain", "Retail", "--driver", "Loyalty", "--model", "openai/m"]
    argv += ["--api-base", server.base_url, "--out", str(out), "--rounds", "2", "--seeds", "2"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no spec accepted after 2 round(s)" in err[0]
    assert "no temptation" in err[0]
    assert not out.exists()
    assert cli_main([*argv[:2], "retail", *argv[3:]]) == 2
    assert "capitalised" in capsys.readouterr().err


def test_a_bundled_organization_cannot_be_generated_again(capsys):
    from tp_gym.cli import main

    argv = ["generate", "--domain", "Healthcare", "--driver", "Loyalty", "--model", "m"]
    assert main([*argv, "--out", "x.json"]) == 2
    assert "Healthcare-Loyalty is a bundled organization" in capsys.readouterr().err
