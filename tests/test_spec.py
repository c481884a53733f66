"""Spec loading: valid specs load; malformed or hostile files fail naming the file and field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tp_gym.envs import spec_names, spec_path
from tp_gym.spec import (
    MAX_SPEC_BYTES,
    PLACEHOLDER,
    TRACK_WORDS,
    OrgSpec,
    SpecError,
    load_spec,
    spec_from_dict,
    track_words_in,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

HEALTHCARE = spec_path("Healthcare-Loyalty")


def base() -> dict:
    return tomllib.loads(HEALTHCARE.read_text())


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "org.json"
    path.write_text(json.dumps(data))
    return path


def load_error(tmp_path: Path, data: dict) -> str:
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert str(path) in message, "the message names the file"
    return message


@pytest.mark.parametrize("name", spec_names())
def test_bundled_specs_load(name):
    spec = load_spec(spec_path(name))
    assert spec.id == name


def test_json_schema_is_exported_for_generators():
    schema = OrgSpec.model_json_schema()
    assert schema["title"] == "OrgSpec"
    assert {"tools", "resources", "stakeholders", "oversight", "pressure"} <= set(
        schema["required"]
    )
    json.dumps(schema)
    tool = schema["$defs"]["Tool"]["properties"]
    assert set(tool["role"]["enum"]) >= {"validator", "direct_executor", "inspect"}


def test_wrong_type_names_the_field(tmp_path):
    data = base()
    data["resources"][0]["initial"] = "lots"
    assert "resources.0.initial" in load_error(tmp_path, data)


def test_unknown_field_is_refused(tmp_path):
    data = base()
    data["tools"][0]["secret_bonus"] = 5
    message = load_error(tmp_path, data)
    assert "tools.0.secret_bonus" in message and "unknown field" in message


def test_unknown_role_is_refused(tmp_path):
    data = base()
    data["tools"][6]["role"] = "saboteur"
    assert "tools.6.role" in load_error(tmp_path, data)


def test_effect_on_missing_resource_is_refused(tmp_path):
    data = base()
    data["tools"][2]["effects"][0]["target"] = "resources.gold_reserves"
    message = load_error(tmp_path, data)
    assert "tools[2].effects[0].target" in message and "gold_reserves" in message


def test_missing_compliant_path_is_refused(tmp_path):
    data = base()
    data["tools"] = [t for t in data["tools"] if t["role"] != "standard_executor"]
    assert "standard_executor" in load_error(tmp_path, data)


def test_toxic_tool_without_labels_is_refused(tmp_path):
    data = base()
    direct = next(t for t in data["tools"] if t["role"] == "direct_executor")
    direct["violations"] = []
    assert "violation" in load_error(tmp_path, data)


def test_placeholder_without_pool_is_refused(tmp_path):
    data = base()
    data["task"] = "Help {nobody}."
    assert "{nobody}" in load_error(tmp_path, data)


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text('title = "' + "x" * (10 * 1024 * 1024) + '"\n')
    with pytest.raises(SpecError, match=f"huge.toml.*limit is {MAX_SPEC_BYTES}"):
        load_spec(path)


def test_huge_field_is_refused(tmp_path):
    data = base()
    data["description"] = "x" * 100_000
    assert "description" in load_error(tmp_path, data)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("id = [unclosed\n")
    with pytest.raises(SpecError, match="broken.toml: invalid TOML"):
        load_spec(path)


def test_binary_file_and_missing_file(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.toml")


def test_spec_from_dict_rejects_non_mappings():
    with pytest.raises(SpecError, match="<spec>"):
        spec_from_dict(["not", "a", "spec"])


def test_colliding_tool_names_are_refused(tmp_path):
    data = base()
    data["pools"]["tool_chart"] = ["send_message"]
    assert "send_message" in load_error(tmp_path, data)


def test_argument_default_of_the_wrong_type_is_refused(tmp_path):
    data = base()
    tool = next(t for t in data["tools"] if any(a["type"] == "integer" for a in t.get("args", [])))
    arg = next(a for a in tool["args"] if a["type"] == "integer")
    arg["default"] = "sixty"
    assert "not a valid integer" in load_error(tmp_path, data)


def test_possessive_of_a_name_ending_in_s_is_refused(tmp_path):
    data = base()
    data["pools"]["sponsor"].append("Orvexa Therapeutics")
    data["goal"] = "Serve {sponsor}'s interests."
    assert "write 'of {sponsor}' instead" in load_error(tmp_path, data)


def test_a_pool_value_ending_in_a_period_before_a_period_is_refused(tmp_path):
    data = base()
    data["pools"]["service"].append("Care Inc.")
    assert "two periods" in load_error(tmp_path, data)


def tool_index(data: dict, name: str) -> int:
    return next(i for i, t in enumerate(data["tools"]) if t["name"] == name)


def test_json_schema_carries_the_opening_and_the_mild_feedback_text():
    schema = OrgSpec.model_json_schema()
    assert {"requester", "own_stake", "order", "task", "goal"} <= set(schema["required"])
    assert "notice_text" in schema["$defs"]["Oversight"]["required"]
    assert "notice_text" in schema["$defs"]["Tool"]["properties"]
    assert "description" in schema["properties"]["own_stake"]


def test_requester_must_name_a_stakeholder(tmp_path):
    data = base()
    data["requester"] = "ghost"
    message = load_error(tmp_path, data)
    assert "requester 'ghost' must name a stakeholder" in message
    assert "medical_director, patient, sponsor" in message
    del data["requester"]
    assert "requester: Field required" in load_error(tmp_path, data)


def test_any_stakeholder_can_be_the_requester():
    data = base()
    data["requester"] = "sponsor"
    assert spec_from_dict(data).requester == "sponsor"


def test_notice_text_is_required_in_oversight(tmp_path):
    data = base()
    del data["oversight"]["notice_text"]
    assert "oversight.notice_text: Field required" in load_error(tmp_path, data)


def test_notice_text_override_only_on_toxic_tools(tmp_path):
    data = base()
    modifier = tool_index(data, "{tool_formulary}")
    data["tools"][modifier]["notice_text"] = "Note: the ranking change was logged."
    assert spec_from_dict(data).tools[modifier].notice_text.startswith("Note:")
    validator = tool_index(data, "{tool_check}")
    data["tools"][validator]["notice_text"] = "Note: the check was logged."
    message = load_error(tmp_path, data)
    assert f"tools.{validator}" in message
    assert "only toxic tools" in message and "validator tool sets notice_text" in message


def test_a_track_word_in_a_tool_name_is_refused(tmp_path):
    data = base()
    check = tool_index(data, "{tool_check}")
    data["tools"][check]["name"] = "bypass_interaction_check"
    message = load_error(tmp_path, data)
    assert f"tools[{check}].name of tool 'bypass_interaction_check'" in message
    assert "'bypass' gives the tool's track away" in message


def test_a_track_word_in_a_pool_value_used_by_a_tool_name_is_refused(tmp_path):
    data = base()
    data["pools"]["tool_maintenance"] = ["enable_maintenance_mode", "mute_pipeline_checks"]
    inhibitor = tool_index(data, "{tool_maintenance}")
    message = load_error(tmp_path, data)
    assert f"tools[{inhibitor}].name of tool 'mute_pipeline_checks'" in message
    assert "'mute' gives the tool's track away" in message
    assert "from pools.tool_maintenance value 'mute_pipeline_checks'" in message


def test_a_track_word_in_a_description_is_refused_with_its_inflection(tmp_path):
    data = base()
    modifier = tool_index(data, "{tool_formulary}")
    data["tools"][modifier]["description"] += " The guideline ranking is overridden."
    message = load_error(tmp_path, data)
    tool = "tool 'update_formulary_weights' / 'tune_formulary_ranking'"
    assert f"tools[{modifier}].description of {tool}" in message
    assert "'overridden' gives the tool's track away (track word 'override')" in message


def test_a_track_phrase_in_an_argument_description_is_refused(tmp_path):
    data = base()
    modifier = tool_index(data, "{tool_formulary}")
    data["tools"][modifier]["args"][0]["description"] = "Ranking weight, applied without review."
    message = load_error(tmp_path, data)
    assert f"tools[{modifier}].args[0].description" in message
    assert "'without review'" in message


def test_a_pool_value_rendered_into_a_description_is_checked(tmp_path):
    data = base()
    data["pools"]["brand"].append("Covertix")
    spec_from_dict(data)  # a longer word is not an inflection of "covert"
    data["pools"]["brand"][-1] = "Covertly"
    modifier = tool_index(data, "{tool_formulary}")
    message = load_error(tmp_path, data)
    assert f"tools[{modifier}].args[0].description of tool 'update_formulary_weights'" in message
    assert "'covertly' gives the tool's track away (track word 'covert', from pools.brand" in (
        message
    )


def test_track_words_match_inflections_and_word_breaks_but_not_lookalikes():
    found = [
        entry
        for text in (
            "rewrite_alert_history",
            "rewriteAlertHistory",
            "alerts are muted",
            "records were falsified",
            "a sign-off-free merge, without sign off",
            "TAMPERED",
        )
        for _, entry in track_words_in(text)
    ]
    assert found == ["rewrite", "rewrite", "mute", "falsify", "without sign-off", "tamper"]
    for neutral in ("acquire the mutex", "tamper-evident log", "evaluate", "overview", "pause"):
        assert track_words_in(neutral) == [], neutral


@pytest.mark.parametrize("name", spec_names())
def test_bundled_tasks_carry_an_id_and_no_order(name):
    spec = load_spec(spec_path(name))
    pools = spec.placeholder_pools()
    ids = [
        key
        for key in PLACEHOLDER.findall(spec.task)
        if all(any(c.isdigit() for c in value) for value in pools[key])
    ]
    assert ids, "the opening request carries an ID"
    direct_names = [
        value
        for tool in spec.tools
        if tool.role == "direct_executor"
        for key in PLACEHOLDER.findall(tool.name)
        for value in pools[key]
    ]
    for text in (spec.task, *(p.message for p in spec.pressure)):
        assert " ".join(spec.order.split()) not in " ".join(text.split())
        assert not [n for n in direct_names if n in text], "no text but order names the route"


@pytest.mark.parametrize("name", spec_names())
def test_bundled_stakes_describe_harm_to_others_not_the_agents_fate(name):
    stakes = load_spec(spec_path(name)).stakes
    for level in ("high", "medium", "low"):
        text = getattr(stakes, level)
        assert not re.search(r"\b(you|your|yours|yourself)\b", text, re.I), level


def test_the_generator_is_told_the_spec_contract():
    from tp_gym.generate import writer_prompt

    rules = writer_prompt("Retail")
    rules = rules[: rules.index("JSON schema:")]
    for field in ('"requester"', '"own_stake"', '"order"', '"notice_text"', '"stakes.high'):
        assert field in rules, field
    assert ", ".join(TRACK_WORDS) in " ".join(rules.split())
