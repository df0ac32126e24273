"""The shipped scenarios for declarations beyond the common truck: consolidated loads, trucks without
seals, identifiers written as customs documents write them. Each runs through `smartgate demo`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.cli import DEFAULT_SCENARIO
from tests.e2e.test_gate_e2e import why_it_failed

SCENARIOS = DEFAULT_SCENARIO.parent


def play(name: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--scenario", str(SCENARIOS / name), "--json"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, why_it_failed(result)
    report = json.loads(result.stdout)
    unmet = [(t["name"], t.get("expect_failures")) for t in report["trucks"] if t.get("expect_met") is False]
    assert not unmet and report["summary"]["journal_ok"]
    for truck in report["trucks"]:
        assert truck["barrier_opened"] == (truck["outcome"] == "release"), truck
    return {t["name"]: t for t in report["trucks"]}


def test_consolidated_loads_pass_together_or_are_held_naming_their_declarations():
    trucks = play("consolidated-loads.yaml")
    released = trucks["two importers' consignments both cleared are released together"]
    assert released["outcome"] == "release" and released["declarations"] == ["105000005011", "105000005012"]
    assert released["result"] == "passed"
    yellow = trucks["one consignment on the yellow channel holds the truck for the document check"]
    assert yellow["reasons"] == ["CHANNEL_YELLOW"] and yellow["declarations"] == ["105000005021", "105000005022"]
    assert all(t["outcome"] == "hold" for name, t in trucks.items() if t is not released)


def test_trucks_without_seals_pass_when_their_declaration_declares_none():
    trucks = play("empty-and-bulk.yaml")
    for name in ("empty truck going home is released without a seal", "unsealed empty container going home is released",
                 "bulk coal declared without seals is released"):
        assert trucks[name]["outcome"] == "release" and trucks[name]["result"] == "passed", name
    assert "SEAL_MISSING" in trucks["declared seal not on the container holds the truck"]["reasons"]


@pytest.mark.parametrize("truck", [
    "gate written in lower case", "gate written with spaces and mixed case",
    "trailer plate of a tractor/trailer pair written with a slash",
    "plates one per line and seals separated by a comma",
    "containers separated by an ideographic comma and seals by a slash",
])
def test_identifiers_scenario_releases_each_truck_its_declaration_names(truck, identifiers_report):
    assert identifiers_report[truck]["outcome"] == "release" and identifiers_report[truck]["barrier_opened"]


@pytest.fixture(scope="module")
def identifiers_report() -> dict:
    return play("identifiers.yaml")


def test_identifiers_scenario_still_holds_a_declaration_for_another_gate(identifiers_report):
    assert identifiers_report["declaration for another gate still names it"]["reasons"] == ["WRONG_GATE"]
