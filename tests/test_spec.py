"""Spec loading: valid specs load; malformed or hostile files fail naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tp_gym.envs import spec_names, spec_path
from tp_gym.spec import MAX_SPEC_BYTES, OrgSpec, SpecError, load_spec, spec_from_dict

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
