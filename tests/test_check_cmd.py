"""`tp-gym check`: every bundled organization holds and prints its dilemma card; broken
ones are listed one problem a line with exit code 2."""

from __future__ import annotations

import json

import pytest

import tp_gym
from tp_gym.cli import EXIT_OK, EXIT_USAGE
from tp_gym.cli import main as cli_main
from tp_gym.dryrun import CARD_FEEDBACK, CARD_POLICIES, CARD_PROTOCOLS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@pytest.mark.parametrize("env_id", tp_gym.env_ids())
def test_check_passes_on_every_bundled_organization_and_prints_its_card(env_id, capsys):
    assert cli_main(["check", env_id]) == EXIT_OK
    out, err = capsys.readouterr()
    name = env_id.removeprefix("tp_gym/").removesuffix("-v0")
    assert name in out and "pays best" in out
    for label in ("compliant", "direct", "strategic", "failed", "stalling"):
        assert label in out
    for setting in ("study high", "study medium", "study low", "extended high", "extended low"):
        assert setting in out
    assert "Traceback" not in err and "error" not in err


def test_check_json_holds_every_protocol_feedback_and_policy(capsys):
    ids = tp_gym.env_ids()[:2]
    assert cli_main(["check", "--json", "--seeds", "0-2", *ids]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["problems"] == []
    assert [c["organization"] for c in document["cards"]] == [
        i.removeprefix("tp_gym/").removesuffix("-v0") for i in ids
    ]
    for card in document["cards"]:
        assert card["seeds"] == [0, 1, 2]
        assert card["payoffs"]["toxic_unseen"] > card["payoffs"]["compliant"]
        assert card["payoffs"]["compliant"] > card["payoffs"]["stall_study"]
        for protocol in CARD_PROTOCOLS:
            for feedback in CARD_FEEDBACK:
                row = card["cells"][protocol][feedback]
                assert set(row) == set(CARD_POLICIES)
                best = card["best"][protocol][feedback]
                assert row[best]["utility"] == max(r["utility"] for r in row.values())
                assert row["compliant"]["cost"] == 0.0
                assert row["staller"]["classes"] == {"stall": 3}


def test_check_takes_bundled_names_and_spec_files(tmp_path, capsys):
    from tp_gym.envs import spec_path

    data = tomllib.loads(spec_path("Coding-Loyalty").read_text(encoding="utf-8"))
    data["id"], data["domain"] = "Software-Loyalty", "Software"
    path = tmp_path / "software.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert cli_main(["check", "--seeds", "0", "Coding-Loyalty", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Coding-Loyalty:" in out and "Software-Loyalty:" in out and str(path) in out


def test_check_lists_every_problem_of_every_spec_and_exits_2(tmp_path, capsys):
    from tp_gym.envs import spec_path

    data = tomllib.loads(spec_path("Finance-Loyalty").read_text(encoding="utf-8"))
    data["id"], data["domain"] = "Brokerage-Loyalty", "Brokerage"
    data["title"] = "{Client} at {bank}"
    data["pressure"][3]["turn"] = 30
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data), encoding="utf-8")
    copy = tmp_path / "copy.toml"
    copy.write_text(spec_path("Finance-Loyalty").read_text(encoding="utf-8"), encoding="utf-8")
    missing = tmp_path / "missing.toml"
    argv = ["check", "--seeds", "0", "tp_gym/Coding-Loyalty-v0", str(broken), str(copy)]
    assert cli_main([*argv, str(missing)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    problems = [line for line in out.splitlines() if line.startswith(str(tmp_path))]
    assert problems == [
        f"{broken}: pressure[3].turn: the stage starts at turn 30, after max_turns = 20; "
        "no episode reaches it",
        f"{broken}: title: {{Client}} is not a placeholder: a placeholder is a lower-case pool "
        "name; did you mean {client}?; write {{ and }} for literal braces",
        f"{copy}: id: 'Finance-Loyalty' is the id of the bundled organization "
        "tp_gym/Finance-Loyalty-v0; give this spec an id of its own (change domain, and id to "
        "match) so its episodes are not logged under the bundled one",
        f"{missing}: no such spec file or registered organization; see `tp-gym list`",
    ]
    assert "Coding-Loyalty:" in out, "the good one still gets its card"
    assert "Traceback" not in err


def test_check_json_keeps_stdout_json_and_problems_on_stderr(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("id = [", encoding="utf-8")
    assert cli_main(["check", "--json", str(bad)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["cards"] == [] and document["problems"][0].startswith(f"{bad}: invalid TOML")
    assert err.splitlines() == document["problems"]


def test_check_refuses_bad_seeds_in_one_line(capsys):
    assert cli_main(["check", "--seeds", "x", "Coding-Loyalty"]) == EXIT_USAGE
    assert len(capsys.readouterr().err.splitlines()) == 1
