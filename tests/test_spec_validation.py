"""Broken specs are refused naming file, field and problem, through the loader and the CLI;
non-files are refused before reading; text in any script reaches the agent intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tp_gym.cli import EXIT_USAGE
from tp_gym.cli import main as cli_main
from tp_gym.envs import spec_names, spec_path
from tp_gym.spec import SpecError, load_spec, spec_from_dict

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

BASE_TOML = (Path(__file__).parent / "data" / "finance_loyalty_fixture.toml").read_text(
    encoding="utf-8"
)
"""A frozen copy of a bundled spec (id Finance-Loyalty); every broken spec is an edited copy
of it under an id of its own."""

# tool indexes in Finance-Loyalty: 0 validator, 1 registrar, 2 standard executor,
# 3 inhibitor, 4 modifier, 5 direct executor, 6 inspect, 7 message


def base() -> dict[str, Any]:
    data = tomllib.loads(BASE_TOML)
    data["id"], data["domain"] = "Brokerage-Loyalty", "Brokerage"
    return data


def own_toml() -> str:
    """The bundled TOML under its own id (for edits JSON cannot express)."""
    return BASE_TOML.replace('id = "Finance-Loyalty"', 'id = "Brokerage-Loyalty"', 1).replace(
        'domain = "Finance"', 'domain = "Brokerage"', 1
    )


def edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        data = base()
        change(data)
        return data

    return build


def toml(old: str, new: str) -> Callable[[], str]:
    def build() -> str:
        text = own_toml()
        assert old in text, old
        return text.replace(old, new, 1)

    return build


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def setitem(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """Set the dotted `path` (list indexes as numbers) of the data to `value`."""

    def change(data: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node: Any = data
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return change


def both(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        for one in changes:
            one(data)

    return change


NAN, INF = float("nan"), float("inf")

# (name, builder of the spec data or TOML text, field named, fragment of the problem)
CASES: list[tuple[str, Callable[[], object], str, str]] = [
    # non-finite numbers anywhere
    (
        "nan weight",
        edit(setitem("resources.0.utility_weight", NAN)),
        "resources.0.utility_weight",
        "finite",
    ),
    (
        "inf weight",
        edit(setitem("resources.0.utility_weight", INF)),
        "resources.0.utility_weight",
        "finite",
    ),
    ("-inf initial", edit(setitem("resources.0.initial", -INF)), "resources.0.initial", "finite"),
    (
        "nan delta",
        edit(setitem("tools.2.effects.0.delta", NAN)),
        "tools.2.effects.0.delta",
        "finite",
    ),
    (
        "nan penalty",
        edit(setitem("oversight.detection_penalty", NAN)),
        "oversight.detection_penalty",
        "finite",
    ),
    ("inf delay", edit(setitem("pressure.0.delay_cost", INF)), "pressure.0.delay_cost", "finite"),
    (
        "nan severity",
        edit(setitem("tools.5.violations.0.severity", NAN)),
        "tools.5.violations.0.severity",
        "finite",
    ),
    (
        "nan default",
        edit(setitem("tools.3.args.0.default", NAN)),
        "tools.3.args.0.default",
        "finite",
    ),
    (
        "toml nan literal",
        toml("utility_weight = 1.0", "utility_weight = nan"),
        "resources.0.utility_weight",
        "finite",
    ),
    ("toml inf literal", toml("residual = 0.3", "residual = inf"), "oversight.residual", "finite"),
    (
        "huge initial",
        edit(setitem("resources.0.initial", 1e300)),
        "resources.0.initial",
        "less than or equal",
    ),
    # negative weights, severities, penalties
    (
        "negative weight",
        edit(setitem("resources.0.utility_weight", -1.0)),
        "resources.0.utility_weight",
        "greater than or equal to 0",
    ),
    (
        "negative severity",
        edit(setitem("tools.5.violations.0.severity", -6)),
        "tools.5.violations.0.severity",
        "greater than 0",
    ),
    (
        "negative detection penalty",
        edit(setitem("oversight.detection_penalty", -6.0)),
        "oversight.detection_penalty",
        "greater than or equal to 0",
    ),
    (
        "negative replacement penalty",
        edit(setitem("oversight.replacement_penalty", -1.0)),
        "oversight.replacement_penalty",
        "greater than or equal to 0",
    ),
    (
        "negative truncation penalty",
        edit(setitem("truncation_penalty", -5.0)),
        "truncation_penalty",
        "greater than or equal to 0",
    ),
    (
        "negative delay cost",
        edit(setitem("pressure.1.delay_cost", -0.6)),
        "pressure.1.delay_cost",
        "greater than or equal to 0",
    ),
    (
        "negative safeguard weight",
        edit(setitem("oversight.safeguards.0.weight", -1.0)),
        "oversight.safeguards.0.weight",
        "greater than 0",
    ),
    # placeholders that are not a plain known name
    (
        "wrong case",
        edit(setitem("title", "{Client} and {bank}")),
        "title",
        "{Client} is not a placeholder",
    ),
    (
        "format spec",
        edit(setitem("task", "Order {ticket}: {client:>9}")),
        "task",
        "{client:>9} is not a placeholder",
    ),
    ("attribute", edit(setitem("description", "{client.__class__}")), "description", "attribute"),
    ("conversion", edit(setitem("goal", "Serve {desk_head!r}.")), "goal", "{desk_head!r}"),
    ("positional", edit(setitem("own_stake", "You lose {0}.")), "own_stake", "positional"),
    (
        "empty braces",
        edit(setitem("pressure.0.message", "Hurry {}.")),
        "pressure[0].message",
        "{} is not a placeholder",
    ),
    (
        "unbalanced open",
        edit(setitem("order", "Sell {ticker first.")),
        "order",
        "unbalanced opening brace",
    ),
    (
        "unbalanced close",
        edit(setitem("stakes.high", "A poor fill} hurts.")),
        "stakes.high",
        "unbalanced closing brace",
    ),
    (
        "index access",
        edit(setitem("tools.2.result", "Done: {client[0]}.")),
        "tools[2].result",
        "index access",
    ),
    (
        "unknown pool",
        edit(setitem("tools.0.description", "Checks {nobody}.")),
        "tools[0].description",
        "{nobody} has no entry in [pools]",
    ),
    (
        "wrong case in a label",
        edit(setitem("resources.1.label", "Score of {CLIENT}")),
        "resources[1].label",
        "lower-case",
    ),
    # pressure stages past max_turns
    (
        "stage past max_turns",
        edit(setitem("pressure.3.turn", 25)),
        "pressure[3].turn",
        "after max_turns = 20",
    ),
    (
        "max_turns below a stage",
        edit(setitem("max_turns", 10)),
        "pressure[3].turn",
        "after max_turns = 10",
    ),
    # non-boolean flags are refused, not coerced
    (
        "terminal yes",
        toml("terminal = true", 'terminal = "yes"'),
        "tools.2.terminal",
        "not a boolean",
    ),
    ("terminal 1", edit(setitem("tools.2.terminal", 1)), "tools.2.terminal", "not a boolean"),
    (
        "rollback no",
        edit(setitem("oversight.rollback", "no")),
        "oversight.rollback",
        "not a boolean",
    ),
    (
        "required 0",
        edit(setitem("tools.0.args.0.required", 0)),
        "tools.0.args.0.required",
        "not a boolean",
    ),
    (
        "enable false string",
        edit(setitem("tools.3.effects.0.enable", "false")),
        "tools.3.effects.0.enable",
        "not a boolean",
    ),
    ("max_turns as text", edit(setitem("max_turns", "20")), "max_turns", "valid integer"),
    # a file reusing a bundled id
    (
        "bundled id",
        lambda: tomllib.loads(BASE_TOML),
        "id",
        "bundled organization tp_gym/Finance-Loyalty-v0",
    ),
    # the dilemma does not hold
    (
        "no temptation",
        edit(setitem("tools.5.effects.0.delta", 3)),
        "tools[5].effects",
        "no temptation",
    ),
    (
        "toxic pays less",
        edit(setitem("tools.5.effects.0.delta", 1)),
        "tools[5].effects",
        "earns +1.00, not more than the compliant path's +3.00",
    ),
    (
        "compliant pays nothing",
        edit(setitem("tools.2.effects.0.delta", 0)),
        "tools[2].effects",
        "stalling pays: under the study protocol",
    ),
    (
        "stalling pays by collecting the helpers' gains",
        edit(setitem("tools.0.effects", [{"target": "resources.desk_revenue", "delta": 4}])),
        "tools[2].effects",
        "stalling earns +4.00",
    ),
    (
        "no delay costs",
        edit(
            both(
                *(setitem(f"pressure.{i}.delay_cost", 0.0) for i in range(4)),
                setitem("truncation_penalty", 0.0),
                setitem("tools.0.effects", [{"target": "resources.desk_revenue", "delta": 3.0}]),
            )
        ),
        "tools[2].effects",
        "under the extended protocol",
    ),
    # pools
    ("empty unused pool", edit(setitem("pools.unused", [])), "pools.unused", "the pool is empty"),
    ("empty used pool", edit(setitem("pools.bank", [])), "pools.bank", "the pool is empty"),
    # invisible and control characters
    (
        "bidi override in a name",
        edit(setitem("stakeholders.1.name", "\u202e{client}")),
        "stakeholders.1.name",
        "U+202E",
    ),
    (
        "bidi isolate in a pool",
        edit(setitem("pools.client", ["A\u2066B"])),
        "pools.client.0",
        "U+2066",
    ),
    (
        "zero-width space",
        edit(setitem("tools.0.description", "Run the pre\u200btrade checks.")),
        "tools.0.description",
        "U+200B",
    ),
    ("word joiner", edit(setitem("dilemma", "a\u2060b")), "dilemma", "U+2060"),
    ("byte order mark", edit(setitem("pools.bank.0", "\ufeffHarrow")), "pools.bank.0", "U+FEFF"),
    ("left-to-right mark", edit(setitem("agent_role", "You\u200e trade.")), "agent_role", "U+200E"),
    ("arabic letter mark", edit(setitem("goal", "x\u061c")), "goal", "U+061C"),
    ("control character", edit(setitem("title", "bell\x07")), "title", "U+0007"),
    # shape
    ("nesting", edit(setitem("pools.deep", nested(40))), "pools.deep", "nested deeper than 32"),
    ("unknown field", edit(setitem("tools.0.bonus", 5)), "tools.0.bonus", "unknown field"),
    (
        "string weight",
        edit(setitem("resources.0.utility_weight", "heavy")),
        "resources.0.utility_weight",
        "valid number",
    ),
]


def write_case(tmp_path: Path, built: object) -> Path:
    if isinstance(built, str):
        path = tmp_path / "org.toml"
        path.write_text(built, encoding="utf-8")
    else:
        path = tmp_path / "org.json"
        path.write_text(json.dumps(built), encoding="utf-8")  # NaN and Infinity as Python writes
    return path


def test_the_matrix_is_large_and_the_base_is_valid(tmp_path):
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)
    assert load_spec(write_case(tmp_path, base())).id == "Brokerage-Loyalty"
    assert load_spec(write_case(tmp_path, own_toml())).id == "Brokerage-Loyalty"


@pytest.mark.parametrize(
    ("build", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_spec_is_refused_naming_file_field_and_problem(build, field, fragment, tmp_path):
    path = write_case(tmp_path, build())
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    lines = caught.value.lines()
    matching = [line for line in lines if line.startswith(f"{path}: {field}")]
    assert matching, lines
    assert any(fragment in line for line in matching), lines
    first = str(caught.value).splitlines()[0]
    assert first.startswith(lines[0]), "the message's first line is the first problem"
    assert all(line.startswith(f"{path}: ") and "\n" not in line for line in lines)


@pytest.mark.parametrize(
    ("build", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_spec_exits_2_from_run_and_check_with_a_line_per_problem(
    build, field, fragment, tmp_path, capsys
):
    path = write_case(tmp_path, build())
    for argv in (["run", "--env", str(path)], ["check", str(path), "--seeds", "0"]):
        code = cli_main(argv)
        out, err = capsys.readouterr()
        assert code == EXIT_USAGE, (argv, out, err)
        assert "Traceback" not in out + err
        shown = [line.removeprefix("tp-gym run: error: ") for line in (out + err).splitlines()]
        assert any(line.startswith(f"{path}: {field}") and fragment in line for line in shown), (
            shown
        )
        if argv[0] == "run":
            assert len(err.splitlines()) == 1, "one error line; the other problems on stdout"


def test_every_problem_is_listed_not_only_the_first(tmp_path):
    data = base()
    data["resources"][0]["utility_weight"] = NAN
    data["tools"][2]["terminal"] = "yes"
    data["pools"]["unused"] = []
    data["stakeholders"][1]["name"] = "\u202eX"
    path = write_case(tmp_path, data)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    fields = [line.split(": ")[1] for line in caught.value.lines()]
    assert fields == [
        "resources.0.utility_weight",
        "stakeholders.1.name",
        "pools.unused",
        "tools.2.terminal",
    ]
    assert str(caught.value).splitlines()[0].endswith("(and 3 more problems)")


def test_literal_braces_take_the_double_brace_escape():
    from tp_gym.env import OrgEnv

    data = base()
    data["task"] = data["task"].replace("Could you", "Our ref is {{batch-7}}; could you")
    spec = spec_from_dict(data)
    obs, _ = OrgEnv(spec).reset(seed=0)
    assert "Our ref is {batch-7}; could you" in obs["text"]


# ------------------------------------------------------------------- files that are not files

LOAD = (
    "import sys, time\n"
    "from tp_gym.spec import SpecError, load_spec\n"
    "start = time.monotonic()\n"
    "try:\n"
    "    load_spec(sys.argv[1])\n"
    "except SpecError as error:\n"
    "    print(f'{time.monotonic() - start:.3f}', error)\n"
)


def non_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    device = tmp_path / "zero.toml"
    device.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    return {
        "directory": (directory, "is a directory"),
        "device": (device, "is a character device (a link to /dev/zero)"),
        "fifo": (fifo, "is a FIFO (named pipe)"),
    }


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("kind", ["directory", "device", "fifo"])
def test_non_files_are_refused_before_reading_within_a_second(kind, tmp_path):
    path, fragment = non_files(tmp_path)[kind]
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, timeout=10
    )
    seconds, _, message = done.stdout.strip().partition(" ")
    assert message == f"{path}: {fragment}; a spec must be a regular file", done
    assert float(seconds) < 1.0, "a hang guard, not a benchmark"
    for argv in (["run", "--env", str(path)], ["check", str(path)]):
        cli = subprocess.run(
            [sys.executable, "-m", "tp_gym.cli", *argv], capture_output=True, text=True, timeout=10
        )
        assert cli.returncode == EXIT_USAGE, cli
        assert fragment in cli.stdout + cli.stderr and "Traceback" not in cli.stderr


def test_oversized_and_missing_files(tmp_path):
    from tp_gym.spec import MAX_SPEC_BYTES

    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_SPEC_BYTES + 1))
    with pytest.raises(SpecError, match=f"big.toml: spec file is {MAX_SPEC_BYTES + 1} bytes"):
        load_spec(big)
    with pytest.raises(SpecError, match="missing.toml: cannot read spec file"):
        load_spec(tmp_path / "missing.toml")


def test_deep_toml_is_refused_not_a_crash(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SpecError, match="deep.toml: .*nest"):
        load_spec(path)


def test_bundled_specs_still_load():
    for name in spec_names():
        assert load_spec(spec_path(name)).id == name


# ------------------------------------------------------------------- text in any script

NAMES = {
    "client": "张伟养老基金",
    "desk_head": "Дарья Смирнова",
    "cco": "مهر\u200cانگیز حداد",  # Persian, written with a zero-width non-joiner
    "bank": "Harbour 🏦 👩\u200d💻 Securities",  # an emoji sequence joined by U+200D
}


def test_names_in_any_script_round_trip_into_observations():
    from tp_gym.env import OrgEnv
    from tp_gym.text import UnicodeText

    data = base()
    for key, value in NAMES.items():
        data["pools"][key] = [value]
    env = OrgEnv(spec_from_dict(data), protocol="extended")
    obs, _ = env.reset(seed=0)
    seen = [obs["text"]]
    for position in range(env.action_space.n):
        obs, *_, terminated, truncated, _ = env.step(position)
        seen.append(obs["text"])
        if terminated or truncated:
            env.reset(seed=0)
    text = "\n".join(seen)
    for value in NAMES.values():
        assert value in text, value
    assert "?" * 3 not in text
    assert UnicodeText(10_000).contains(obs["text"])


def test_invisible_controls_are_removed_from_agent_text_and_others_replaced():
    from tp_gym.text import is_agent_text, sanitize

    assert sanitize("Дарья\u202e \u200bСмирнова\ufeff") == "Дарья Смирнова"
    assert sanitize("a\x07b\u2028c") == "a?b c"
    assert sanitize("张伟 🏦\nnext line") == "张伟 🏦\nnext line"
    assert is_agent_text("ليلى حداد") and not is_agent_text("x\u2066")
