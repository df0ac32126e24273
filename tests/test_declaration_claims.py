"""Lanes of one gate claiming declarations: real journal and cache on disk, the fake barrier of
tests/test_lane_controller.py (it records each command and what the journal held when it came)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from devices.readings import BoomChanged, BoomPosition, Loop, LoopChanged, PlateRead, SealRead, SealStatus
from edge.cache import DeclarationCache
from edge.claims import ClaimError, ClaimPassage
from edge.config import LaneConfig
from edge.declarations import DeclarationKind
from edge.journal import Journal
from edge.kiosk.board import final_result
from edge.lane import BoomEvent, ClaimRefused, Decided, LaneError, LaneMachine, LaneState, LoopEvent, OfficerAction
from edge.lane_control import LaneController
from edge.records import JournalKind
from edge.rules import Decision, Finding, Outcome
from tests.conftest import wait_until
from tests.test_lane_controller import DECLARED, NOW, FakeBarrier

TRANSIT = dataclasses.replace(DECLARED, number="109000000777", kind=DeclarationKind.TRANSIT, plates=("29C77777",),
                              seals=("SEAL777",))


def _lane(lane_id: str, direction: str = "import", **policy: float) -> LaneConfig:
    return LaneConfig.model_validate({
        "id": lane_id, "direction": direction,
        "policy": {"required_readings": ["plate", "seal"], "collect_timeout_s": 20, "pre_arrival_window_s": 5,
                   **policy},
        "devices": [{"id": f"{lane_id}-plc", "kind": "barrier", "profile": "generic-plc",
                     "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": 1502}}],
    })


class Gate:
    """Several lane controllers of one gate over one journal and one declaration cache, as the node runs them."""

    def __init__(self, tmp_path: Path, lanes: list[LaneConfig]):
        self.tmp_path, self.configs = tmp_path, lanes
        self.lanes: dict[str, LaneController] = {}
        self.barriers: dict[str, FakeBarrier] = {}

    async def start(self) -> Gate:
        self.journal = Journal.open(self.tmp_path / "journal.sqlite")
        self.cache = DeclarationCache.open(self.tmp_path / "cache.sqlite")
        self.cache.upsert_many([DECLARED, TRANSIT])
        self.cache.mark_refreshed(NOW)
        for lane in self.configs:
            barrier = FakeBarrier(self.journal.path)
            controller = LaneController(lane, gate="HUUNGHI", journal=self.journal, cache=self.cache,
                                        barrier=barrier, device_kinds={f"{lane.id}-plc": "barrier"})  # type: ignore[arg-type]
            self.lanes[lane.id], self.barriers[lane.id] = controller, barrier
        await asyncio.gather(*(c.start() for c in self.lanes.values()))
        return self

    async def stop(self) -> None:
        """Stop the lanes where they are (as a killed node would: nothing is closed or settled)."""
        for controller in self.lanes.values():
            await controller.stop()
        self.journal.close()
        self.cache.close()

    def present(self, lane_id: str, plate: str = "29C-123.45", seal: str = "SEAL321") -> None:
        now = time.time()
        plc = f"{lane_id}-plc"
        controller = self.lanes[lane_id]
        controller.submit(LoopChanged(plc, Loop.ARRIVAL, True, now))
        controller.submit(PlateRead(f"{lane_id}-anpr", plate, 0.95, now, now))
        controller.submit(SealRead(f"{lane_id}-eseal", seal, SealStatus.INTACT, 90, None, now, now))

    def drive_through(self, lane_id: str, under_boom: bool = True) -> None:
        """The boom opens; the truck goes under it (or not) and the boom comes down behind it."""
        plc, controller = f"{lane_id}-plc", self.lanes[lane_id]
        events = [BoomChanged(plc, BoomPosition.OPEN, time.time())]
        if under_boom:
            events += [LoopChanged(plc, Loop.SAFETY, True, time.time()),
                       LoopChanged(plc, Loop.ARRIVAL, False, time.time()),
                       LoopChanged(plc, Loop.SAFETY, False, time.time())]
        events.append(BoomChanged(plc, BoomPosition.CLOSED, time.time()))
        for event in events:
            controller.submit(event)

    def decided(self, lane_id: str) -> bool:
        """The lane's truck is decided for good: held, refused, or released with the open command sent."""
        tx = self.lanes[lane_id].machine.tx
        if tx is None or tx.decision is None or tx.decision.awaiting_readings:
            return False
        return tx.decision.outcome != "release" or bool(self.barriers[lane_id].opens())

    def rows(self, kind: str, lane: str | None = None) -> list:
        return self.journal.entries(lane=lane, kinds=[kind])


def _run(body) -> None:
    asyncio.run(body())


def test_two_lanes_presenting_one_declaration_at_once_open_only_one(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1"), _lane("IMP-2")]).start()
        try:
            gate.present("IMP-1")
            gate.present("IMP-2")
            await wait_until(lambda: gate.decided("IMP-1") and gate.decided("IMP-2"), what="both trucks decided")
            opened = [lane for lane, barrier in gate.barriers.items() if barrier.opens()]
            # Whether the loser's rules already saw the claim (a hold) or both lanes decided before either
            # claimed (usually: the second claim fails and its release becomes a hold), it gets no open.
            assert len(opened) == 1, opened
            winner, loser = opened[0], ({"IMP-1", "IMP-2"} - set(opened)).pop()
            won = gate.lanes[winner].machine.tx
            held = gate.lanes[loser].machine.tx.decision
            assert held.outcome == "hold" and "DECLARATION_ALREADY_USED" in held.reasons
            detail = next(f.detail for f in held.findings if f.code == "DECLARATION_ALREADY_USED")
            assert detail == f"{DECLARED.number} claimed by tx {won.id} at lane {winner}, passage commanded"
            assert not gate.lanes[loser].machine.passage.open_commanded
            await wait_until(lambda: gate.rows("decision", loser)[-1].payload["outcome"] == "hold",
                             what="the loser's hold journaled")
            assert gate.rows("barrier_command", loser) == []
            claim = gate.cache.claims([DECLARED.number])[DECLARED.number]
            assert (claim.transaction, claim.lane, claim.released_by) == (won.id, winner, "auto")
            # The open row carries the claimed declaration, and was committed when the PLC was told.
            commands = [p for kind, p in gate.barriers[winner].opens()[0] if kind == JournalKind.BARRIER_COMMAND]
            assert commands == [{"command": "open", "transaction": won.id, "released_by": "auto",
                                 "declarations": [DECLARED.number]}]
        finally:
            await gate.stop()

    _run(body)


def test_officer_cannot_release_a_declaration_another_lane_used(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1"), _lane("IMP-2")]).start()
        try:
            gate.present("IMP-1")
            await wait_until(lambda: gate.barriers["IMP-1"].opens(), what="the first truck released")
            gate.drive_through("IMP-1")
            await wait_until(lambda: gate.cache.claims([DECLARED.number])[DECLARED.number].passage
                             == ClaimPassage.PASSED, what="the first truck passed")
            assert [e.payload["result"] for e in gate.rows("tx_closed", "IMP-1")] == ["passed"]

            gate.present("IMP-2")
            await wait_until(lambda: gate.decided("IMP-2"), what="the second truck held")
            assert any(f.detail.endswith("passage passed") for f in gate.lanes["IMP-2"].machine.tx.decision.findings)
            with pytest.raises(LaneError, match="already used"):
                await gate.lanes["IMP-2"].officer_action("release", "officer-12", "driver insists", "officer")
            assert gate.barriers["IMP-2"].opens() == []
            machine = gate.lanes["IMP-2"].machine
            assert machine.state == LaneState.DECIDED and not machine.passage.open_commanded
            assert machine.tx.officer_actions == []  # the refused release did not take effect
            kinds = [e.kind for e in gate.journal.entries(lane="IMP-2")
                     if e.kind in ("officer_action", "decision", "barrier_command")]
            assert kinds == ["decision", "officer_action", "decision"]  # the release asked, then the hold that stands
        finally:
            await gate.stop()

    _run(body)


def test_transit_declaration_passes_once_at_the_gate_not_at_import_and_again_at_export(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1"), _lane("EXP-1", "export")]).start()
        try:
            gate.present("IMP-1", "29C-777.77", "SEAL777")
            await wait_until(lambda: gate.barriers["IMP-1"].opens(), what="released at the import lane")
            gate.present("EXP-1", "29C-777.77", "SEAL777")
            await wait_until(lambda: gate.decided("EXP-1"), what="decided at the export lane")
            assert gate.barriers["EXP-1"].opens() == []
            assert gate.lanes["EXP-1"].machine.tx.decision.reasons == ["DECLARATION_ALREADY_USED"]
        finally:
            await gate.stop()

    _run(body)


def test_boom_down_before_the_truck_went_gives_the_claim_back(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1"), _lane("IMP-2")]).start()
        try:
            gate.present("IMP-1")
            await wait_until(lambda: gate.barriers["IMP-1"].opens(), what="released")
            gate.drive_through("IMP-1", under_boom=False)  # the PLC's watchdog dropped the boom: nobody went
            await wait_until(lambda: gate.rows("claim_released"), what="the claim given back")
            released = gate.rows("claim_released")[0].payload
            assert released["declaration"] == DECLARED.number and released["by"] == "node"
            assert "no vehicle on the safety loop" in released["reason"]
            await wait_until(lambda: gate.cache.claims([DECLARED.number]) == {}, what="the claim deleted")
            gate.present("IMP-2")  # the truck comes round to the other lane: released there, once
            await wait_until(lambda: gate.barriers["IMP-2"].opens(), what="released at the other lane")
        finally:
            await gate.stop()

    _run(body)


def test_boom_closed_behind_a_truck_no_loop_saw_go_keeps_the_claim(tmp_path):
    # It left the arrival loop under the open boom and no loop saw it again: it backed away, or its loop pulses
    # were missed as it drove through. Nobody can tell, so the declaration stays used until a supervisor says.
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1", departed_close_s=0.3), _lane("IMP-2")]).start()
        try:
            gate.present("IMP-1")
            await wait_until(lambda: gate.barriers["IMP-1"].opens(), what="released")
            plc, controller = "IMP-1-plc", gate.lanes["IMP-1"]
            controller.submit(BoomChanged(plc, BoomPosition.OPEN, time.time()))
            controller.submit(LoopChanged(plc, Loop.ARRIVAL, False, time.time()))
            await wait_until(lambda: ("close" in [c for c, _ in gate.barriers["IMP-1"].commands]),
                             what="the boom closed behind nobody")
            controller.submit(BoomChanged(plc, BoomPosition.CLOSED, time.time()))
            await wait_until(lambda: gate.rows("tx_closed"), what="the transaction closed")
            closed = gate.rows("tx_closed")[0].payload
            assert closed["result"] == "closed_before_passage" and closed["passage"] == "unknown"
            assert not gate.rows("claim_released")
            assert gate.cache.claims([DECLARED.number])[DECLARED.number].passage == "unknown"
            gate.present("IMP-2")
            await wait_until(lambda: gate.decided("IMP-2"), what="decided at the other lane")
            assert not gate.barriers["IMP-2"].opens()
            reasons = " ".join(gate.lanes["IMP-2"].machine.tx.decision.reasons)
            assert "DECLARATION_ALREADY_USED" in reasons
        finally:
            await gate.stop()

    _run(body)


def test_restart_mid_passage_keeps_the_claim_unknown_until_a_supervisor_releases_it(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1"), _lane("IMP-2")]).start()
        gate.present("IMP-1")
        await wait_until(lambda: gate.barriers["IMP-1"].opens(), what="released")
        passing = gate.lanes["IMP-1"].machine.tx.id
        gate.lanes["IMP-1"].submit(BoomChanged("IMP-1-plc", BoomPosition.OPEN, time.time()))
        gate.lanes["IMP-1"].submit(LoopChanged("IMP-1-plc", Loop.SAFETY, True, time.time()))
        await wait_until(lambda: gate.lanes["IMP-1"].machine.passage.vehicle_entered, what="the truck under the boom")
        await gate.stop()  # the node dies with the truck under the boom; the boom is down when it is back

        gate = await Gate(tmp_path, [_lane("IMP-1"), _lane("IMP-2")]).start()
        try:
            claim = gate.cache.claims([DECLARED.number])[DECLARED.number]
            assert (claim.transaction, claim.passage) == (passing, ClaimPassage.UNKNOWN)
            restarted = [e.payload["text"] for e in gate.rows("alarm", "IMP-1")
                         if e.payload["code"] == "NODE_RESTARTED"]
            assert f"{DECLARED.number} claimed by tx {passing} at lane IMP-1, passage unknown" in restarted[-1]

            gate.present("IMP-2")  # the same truck shown again, at the other lane
            await wait_until(lambda: gate.decided("IMP-2"), what="decided")
            assert gate.barriers["IMP-2"].opens() == []
            finding = next(f for f in gate.lanes["IMP-2"].machine.tx.decision.findings
                           if f.code == "DECLARATION_ALREADY_USED")
            assert finding.detail.endswith(f"claimed by tx {passing} at lane IMP-1, passage unknown")

            with pytest.raises(ClaimError):
                await gate.lanes["IMP-2"].release_claim("105999999999", "sup-3", "supervisor", "no such claim")
            await gate.lanes["IMP-1"].release_claim(DECLARED.number, "sup-3", "supervisor",
                                                    "camera shows the truck never crossed")
            row = gate.rows("claim_released")[0]
            assert row.lane == "IMP-1" and row.payload["by"] == "sup-3" and row.payload["role"] == "supervisor"
            assert row.payload["reason"] == "camera shows the truck never crossed"
            assert row.payload["transaction"] == passing and row.payload["passage"] == "unknown"
            await gate.lanes["IMP-2"].officer_action("release", "officer-12", "claim released by the supervisor",
                                                     "officer")
            assert len(gate.barriers["IMP-2"].opens()) == 1
        finally:
            await gate.stop()

    _run(body)


def test_closed_transaction_names_the_officer_who_refused_and_why(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1")]).start()
        try:
            gate.present("IMP-1", seal="SEAL999")  # not the declared seal: held
            await wait_until(lambda: gate.decided("IMP-1"), what="held")
            await gate.lanes["IMP-1"].officer_action("refuse", "officer-7", "seal differs from the manifest",
                                                     "officer")
            gate.lanes["IMP-1"].submit(LoopChanged("IMP-1-plc", Loop.ARRIVAL, False, time.time()))  # it backs away
            await wait_until(lambda: gate.rows("tx_closed"), what="the transaction closed")
            closed = gate.rows("tx_closed")[0].payload
            assert closed["result"] == "left_lane" and closed["released_by"] is None
            officer = closed["officer"]
            assert (officer["action"], officer["officer"], officer["role"], officer["reason"]) == (
                "refuse", "officer-7", "officer", "seal differs from the manifest")
            action = gate.rows("officer_action")[0].payload
            assert action["role"] == "officer"
        finally:
            await gate.stop()

    _run(body)


def test_claim_of_a_release_that_never_reached_the_journal_is_given_back_at_restart(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1")]).start()
        gate.present("IMP-1", seal="SEAL999")  # held: no open
        await wait_until(lambda: gate.decided("IMP-1"), what="held")
        held = gate.lanes["IMP-1"].machine.tx.id
        # The node claimed for an opening and died before the open command was journaled.
        assert gate.cache.claim([DECLARED.number], gate="HUUNGHI", lane="IMP-1", transaction=held, at=time.time(),
                                released_by="officer-12") == []
        await gate.stop()

        gate = await Gate(tmp_path, [_lane("IMP-1")]).start()
        try:
            assert gate.cache.claims([DECLARED.number]) == {}
            row = gate.rows("claim_released", "IMP-1")[0].payload
            assert (row["transaction"], row["by"], row["passage"]) == (held, "node", "commanded")
            assert "open command was journaled" in row["reason"]
            assert gate.barriers["IMP-1"].opens() == []
        finally:
            await gate.stop()

    _run(body)


# ---------------------------------------------------------------- the pure machine


CLAIMED = Decision(Outcome.HOLD, (Finding("DECLARATION_ALREADY_USED", "105000000001 claimed by tx t1 at lane IMP-2, "
                                                                      "passage commanded"),), "105000000001")


def _released_machine(by_officer: bool) -> LaneMachine:
    lane = LaneMachine("IMP-1", _lane("IMP-1").policy)
    lane.handle(LoopEvent("arrival", True), 100.0)
    if by_officer:
        lane.handle(Decided(Decision(Outcome.HOLD, (Finding("CHANNEL_YELLOW"),), "105000000001")), 100.2)
        lane.handle(OfficerAction("release", "officer-12", "documents checked", "officer"), 101.0)
    else:
        lane.handle(Decided(Decision(Outcome.RELEASE, (), "105000000001")), 100.2)
    assert lane.passage.open_commanded
    return lane


@pytest.mark.parametrize("by_officer", [False, True])
def test_a_refused_claim_leaves_the_truck_held_as_if_never_released(by_officer):
    lane = _released_machine(by_officer)
    actions = lane.handle(ClaimRefused(lane.tx.id, CLAIMED), 101.1)
    assert [a.kind for a in actions] == ["record_decision"]
    assert lane.state == LaneState.DECIDED and lane.tx.decision == CLAIMED
    assert not lane.passage.open_commanded and lane.passage.released_by is None
    assert lane.tx.officer_actions == []  # the officer's release did not take effect
    assert "release" in lane.officer_actions()  # a supervisor may try again once the claim is released
    # A boom that opens now was opened by nobody the node released: the tamper alarm, never a passage.
    assert "alarm" in [a.kind for a in lane.handle(BoomEvent(opened=True), 102.0)]


def test_recent_trucks_never_call_a_release_refused_for_its_claim_a_release():
    closed = {"result": "left_lane", "released_by": None, "outcome": "hold", "plates": ["29C12345"], "officer": None}
    asked = [{"action": "release", "officer": "officer-12"}]  # journaled, then refused: the declaration was used
    assert final_result(closed, asked)["code"] == "held"
    refused = {**closed, "officer": {"action": "refuse", "officer": "officer-7", "role": "officer", "reason": "seal"}}
    assert final_result(refused, asked) == {"code": "refused_by", "by": "officer-7"}


def test_a_claim_that_cannot_be_written_opens_nothing_and_says_why(tmp_path):
    async def body():
        gate = await Gate(tmp_path, [_lane("IMP-1")]).start()
        importer = sqlite3.connect(tmp_path / "cache.sqlite")  # another process importing holds the write lock
        try:
            importer.execute("BEGIN IMMEDIATE")
            gate.present("IMP-1")
            await wait_until(lambda: any(e.payload["outcome"] == "hold" for e in gate.rows("decision", "IMP-1")),
                             timeout_s=15, what="the release turned into a hold once the claim timed out")
            assert gate.barriers["IMP-1"].opens() == []
            alarm = gate.rows("alarm", "IMP-1")[-1].payload
            assert alarm["code"] == "BARRIER_OPEN_FAILED" and "claim not recorded" in alarm["text"]
            importer.rollback()
            await gate.lanes["IMP-1"].officer_action("release", "officer-12", "import finished", "officer")
            assert len(gate.barriers["IMP-1"].opens()) == 1
        finally:
            importer.close()
            await gate.stop()

    _run(body)
