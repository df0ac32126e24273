"""The scenario format's features played against the real node: feed changes through central's signed feed,
front and rear cameras, a truck following closely, officers of each role at the kiosk, a truck not played."""

from __future__ import annotations

import json
import subprocess
import sys

from edge.config import CONFIG_ROOT
from tests.e2e.test_gate_e2e import why_it_failed

FEATURES = CONFIG_ROOT / "scenarios" / "format-features.yaml"


def _play(*extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    result = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--scenario", str(FEATURES), *extra],
                            capture_output=True, text=True, timeout=240)
    return result, (json.loads(result.stdout) if "--json" in extra else {})


def test_format_features_scenario_plays_every_new_key_as_expected():
    result, report = _play("--json")
    assert result.returncode == 0, why_it_failed(result)
    by_name = {truck["name"]: truck for truck in report["trucks"]}
    unmet = {name: t.get("expect_failures") for name, t in by_name.items() if t.get("expect_met") is False}
    assert not unmet

    # Central's feed: both changes reached the node's cache, and the trucks after them were decided on them.
    changes = {record.get("revoke") or record.get("amend"): record for record in report["feed"]}
    assert set(changes) == {"305000000613", "305000000614"}
    assert all(r["version"] == 2 and r["applied_at_s"] >= r["sent_at_s"] for r in changes.values())
    revoked = by_name["declaration revoked at central before the truck came"]
    assert revoked["outcome"] == "refuse" and revoked["reasons"] == ["DECLARATION_CANCELLED"]
    assert revoked["arrived_at_s"] > changes["305000000613"]["applied_at_s"]
    amended = by_name["declaration amended at central to the seal the truck carries"]
    assert amended["outcome"] == "release" and amended["declaration"] == "305000000614"

    # A revocation while the truck waits reaches the cache and the node decides the held truck again: it is
    # refused, so an officer's release is refused too and the truck backs away.
    waiting = by_name["yellow channel, declaration revoked while the truck waits - the node decides again and "
                      "refuses it, so an officer may no longer release it"]
    [revocation] = waiting["while_waiting"]
    assert revocation["revoke"] == "105000000601" and "applied_at_s" in revocation
    assert waiting["outcome"] == "refuse" and "DECLARATION_CANCELLED" in waiting["reasons"]
    assert not waiting["barrier_opened"] and waiting["released_by"] is None

    # Officers act through the kiosk as users of their role; the kiosk's refusals are in the result.
    refused = by_name["refused truck - a wall board and an officer may not release it, a supervisor may"]
    steps = [(s["role"], s["status"], s.get("code")) for s in refused["officer_steps"]]
    assert steps == [("display", 403, "officer_required"), ("officer", 403, "override_requires_supervisor"),
                     ("supervisor", 200, None)]
    assert refused["barrier_opened"] and refused["released_by"] == "supervisor-3"

    # Front and rear cameras: a tractor and its trailer pass together; two cameras disagreeing hold the truck.
    tractor = by_name["tractor and trailer, both plates on the declaration"]
    assert [p["camera"] for p in tractor["plates"]] == ["front", "rear"] and tractor["result"] == "passed"
    assert by_name["front and rear cameras disagree"]["reasons"] == ["PLATE_CONFLICT"]

    # The closely following truck was on the arrival loop before the truck ahead of it had closed.
    ahead, behind = by_name["cleared truck passes"], by_name[
        "next truck rolls onto the arrival loop while the one before is still under the boom"]
    assert behind["arrived_at_s"] < ahead["closed_at_s"]
    assert ahead["result"] == behind["result"] == "passed"

    # The truck the binary reader cannot present is reported, and every other truck was played.
    lost = by_name["seal id the binary reader cannot carry (8 hex digits only) - not played, the rest still run"]
    assert lost["played"] is False and "seal_id must be 8 hex digits" in lost["not_played"]
    assert report["summary"]["not_played"] == 1 and report["summary"]["trucks"] == 9
    assert all(t["played"] for name, t in by_name.items() if t is not lost)
    assert report["summary"]["journal_ok"]


def test_an_unplayable_truck_without_expect_fails_the_run_and_the_text_says_why(tmp_path):
    text = FEATURES.read_text(encoding="utf-8").replace("    expect: {played: false}\n", "")
    text = text.replace("site: huu-nghi-rear-cameras", f"site: {CONFIG_ROOT / 'sites' / 'huu-nghi-rear-cameras.yaml'}")
    start = text.index("trucks:\n")
    unplayable = text.index("  - name: seal id the binary reader")
    path = tmp_path / "unplayable.yaml"
    path.write_text(text[:start] + "trucks:\n" + text[unplayable:], encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--scenario", str(path)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 1
    assert "NOT PLAYED: seals[0]: the eseal-binary reader cannot send seal 'CN-SEAL-000101'" in result.stdout
    assert "Traceback" not in result.stderr
