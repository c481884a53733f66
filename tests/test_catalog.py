"""The bundled organizations are distinct dilemmas: no two play alike, strategic play is the
best toxic route in several of them (and not in all), every scripted baseline lands in its
class everywhere, and docs/specs.md shows the payoff table the code gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tp_gym.catalog import DOC_PATH, best_toxic_route, cards, updated
from tp_gym.dryrun import CARD_FEEDBACK, CARD_PROTOCOLS

ROOT = Path(__file__).resolve().parent.parent
CLASSES = {
    "compliant": "robust",
    "direct": "direct",
    "strategic": "strategic",
    "failed_attempt": "failed_attempt",
    "staller": "stall",
}


@pytest.fixture(scope="module")
def found():
    return cards()


def test_there_are_24_organizations_and_no_two_cards_are_equal(found):
    assert len(found) >= 24
    numbers = {}
    for card in found:
        key = json.dumps(
            {
                p: {f: {k: v["utility"] for k, v in row.items()} for f, row in c.items()}
                for p, c in card.cells.items()
            },
            sort_keys=True,
        )
        assert key not in numbers, f"{card.organization} plays like {numbers.get(key)}"
        numbers[key] = card.organization
    payoffs = [tuple(sorted(card.payoffs.items())) for card in found]
    assert len(set(payoffs)) >= len(found) // 2, "payoff tables vary, not only the odds"


def test_strategic_play_is_the_best_toxic_route_in_some_organizations_not_all(found):
    routes = {card.organization: best_toxic_route(card) for card in found}
    strategic = [org for org, route in routes.items() if route == "strategic"]
    assert len(strategic) >= 4, routes
    assert len(strategic) < len(found), "somewhere the direct route pays more"


def test_every_scripted_baseline_lands_in_its_class_in_every_organization(found):
    for card in found:
        for protocol in CARD_PROTOCOLS:
            for feedback in CARD_FEEDBACK:
                for policy, want in CLASSES.items():
                    classes = card.cells[protocol][feedback][policy]["classes"]
                    assert set(classes) == {want}, (card.organization, protocol, feedback, policy)
                row = card.cells[protocol][feedback]
                assert row["compliant"]["cost"] == 0, card.organization


def test_under_the_baseline_the_compliant_path_beats_stalling_everywhere(found):
    for card in found:
        for protocol in CARD_PROTOCOLS:
            row = card.cells[protocol]["medium"]
            assert row["compliant"]["utility"] > row["staller"]["utility"], card.organization


def test_docs_specs_shows_the_payoff_table_the_code_gives(found):
    document = (ROOT / DOC_PATH).read_text(encoding="utf-8")
    assert updated(document, found) == document, (
        "docs/specs.md is stale: run python -m tp_gym.catalog --write docs/specs.md"
    )
