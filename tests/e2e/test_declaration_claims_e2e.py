"""Declarations used once per gate, end to end: the shipped scenario through the CLI, and the kiosk's claim
routes on a simulated gate (an officer sees who holds a claim; only a supervisor gives one up, journaled)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from edge.claims import ClaimPassage
from edge.cli import DEFAULT_SCENARIO
from edge.lane import LaneState
from edge.users import UserStore
from tests.conftest import wait_until
from tests.e2e.test_gate_e2e import DECLARATION, _gate, _present, run_cli, why_it_failed

SCENARIO = DEFAULT_SCENARIO.parent / "declarations-once.yaml"


def test_declarations_once_scenario_meets_every_expectation():
    result = run_cli("demo", "--scenario", str(SCENARIO), "--json", timeout=180)
    assert result.returncode == 0, why_it_failed(result)
    report = json.loads(result.stdout)
    assert report["summary"]["expectations_failed"] == 0 and report["summary"]["journal_ok"], report["summary"]
    by_name = {truck["name"]: truck for truck in report["trucks"]}
    passed = by_name["transit truck passes at the import lane"]
    assert passed["result"] == "passed" and passed["declaration"] == "109000000501"
    again = by_name["the same transit declaration again at the import lane - the officer cannot release it twice"]
    [step] = again["officer_steps"]  # through the kiosk, as the officer would
    assert step["status"] == 409 and "already used" in step["message"] and again["result"] == "left_lane"
    export = by_name["the same transit declaration at the export lane is held"]
    assert export["barrier_opened"] is False and export["result"] == "left_lane"
    refused = by_name["red channel truck refused by the officer backs away"]
    assert refused["result"] == "left_lane" and refused["barrier_opened"] is False  # it backed away, no time-out
    assert refused["officer"]["action"] == "refuse" and refused["officer"]["officer"] == "officer-7"
    assert refused["officer"]["action"] == "refuse" and refused["officer"]["officer"] == "officer-7"
    assert refused["officer"]["reason"] == "seal number differs from the paper manifest"
    assert sum(1 for truck in report["trucks"] if truck["barrier_opened"]) == 1


def test_officer_sees_the_claim_and_only_a_supervisor_releases_it(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            node, controller = gate.node, gate.node.lanes["IMP-1"]
            # A truck on this declaration was released at EXP-1 before a restart: where it went is unknown.
            assert node.cache.claim([DECLARATION.number], gate="HUUNGHI", lane="EXP-1", transaction="tx-before",
                                    at=time.time(), released_by="auto") == []
            node.cache.set_claim_passage("tx-before", ClaimPassage.UNKNOWN)
            await _present(gate, "IMP-1", "桂F·54321", "SEAL-777")
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="the truck held")
            with UserStore(node.options.data_dir / "users.sqlite") as users:
                users.add_user("officer-12", "officer-12-password", "officer", "HUUNGHI")
                users.add_user("sup-3", "supervisor-3-password", "supervisor", "HUUNGHI")
                officer = {"authorization": f"Bearer {users.create_token('officer-12', 'e2e')}"}
                supervisor = {"authorization": f"Bearer {users.create_token('sup-3', 'e2e')}"}
            base = f"http://127.0.0.1:{node.kiosk_port}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                lane = (await client.get("/api/lanes/IMP-1", headers=officer)).json()
                assert lane["transaction"]["decision"]["reasons"] == ["DECLARATION_ALREADY_USED"]
                assert [c["text"] for c in lane["claims"]] == [
                    f"declaration {DECLARATION.number} claimed by tx tx-before at lane EXP-1, passage unknown"]
                listed = (await client.get("/api/claims", params={"passage": "unknown"}, headers=officer)).json()
                assert [c["number"] for c in listed] == [DECLARATION.number]
                # An officer's release on it is refused: the boom stays down.
                refused = await client.post("/api/lanes/IMP-1/actions", headers=officer,
                                            json={"action": "release", "reason": "driver insists"})
                assert refused.status_code == 409 and "already used" in refused.json()["detail"]["message"]
                assert not gate.rigs["IMP-1"].plc.boom_open
                body = {"reason": "EXP-1 camera: that truck never crossed"}
                path = f"/api/claims/{DECLARATION.number}/release"
                assert (await client.post(path, json=body, headers=officer)).status_code == 403
                assert (await client.post(path, json={}, headers=supervisor)).status_code == 422
                missing = await client.post("/api/claims/105999999999/release", json=body, headers=supervisor)
                assert missing.status_code == 404
                done = await client.post(path, json=body, headers=supervisor)
                assert done.status_code == 200, done.text
                assert done.json()["released"]["transaction"] == "tx-before"
                released = node.journal.entries(kinds=["claim_released"])
                assert [(e.lane, e.payload["by"], e.payload["role"], e.payload["reason"]) for e in released] == [
                    ("EXP-1", "sup-3", "supervisor", body["reason"])]
                ok = await client.post("/api/lanes/IMP-1/actions", headers=officer,
                                       json={"action": "release", "reason": "claim released by the supervisor"})
                assert ok.status_code == 200, ok.text
                await wait_until(lambda: gate.rigs["IMP-1"].plc.boom_open, what="the boom open")
                claim = node.cache.claims([DECLARATION.number])[DECLARATION.number]
                assert (claim.transaction, claim.lane, claim.released_by) == (
                    controller.machine.tx.id, "IMP-1", "officer-12")
        finally:
            await gate.stop()

    asyncio.run(scenario())
