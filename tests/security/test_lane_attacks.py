"""Red team at the lane: forged readings and a stray Modbus master against the real node and simulators.

Each attack is played the way an intruder on the gate LAN would: a Modbus client of its own
writing the PLC's open coil, a second plate or a scanner verdict published with a device's
credentials (through the gate's own simulators, which carry them). The node must keep the
barrier closed, keep the truck held, raise the alarm and lose nothing from the journal.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict, SealStatus
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.lane import LaneState
from edge.users import UserStore
from simulators.gate import SimulatedGate
from tests.conftest import wait_until
from tests.helpers import started_gate, write_open_coil

NOW = datetime.now(UTC)
CLEARED = Declaration(
    number="105000000777", kind=DeclarationKind.IMPORT, gate="HUUNGHI", plates=("桂F54321",),
    containers=("CSQU3054383",), seals=("SEAL-777",), gross_weight_kg=28000, channel=RiskChannel.GREEN,
    status=DeclarationStatus.CLEARED, valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
)
LANE = "IMP-1"


async def _gate(site, tmp_path: Path, boom_travel_s: float = 0.3) -> SimulatedGate:
    return await started_gate(site, tmp_path, [CLEARED], kiosk_port=0, boom_travel_s=boom_travel_s)


async def _truck(gate: SimulatedGate, plates: list[str], seal_id: str = "SEAL-777", scan: bool = True) -> None:
    """A truck rolls up: its plate(s), the weighbridge, the arrival loop, its seal and (unless told) a clear scan."""
    rig = gate.rigs[LANE]
    for plate in plates:
        await asyncio.to_thread(rig.camera.publish_plate, plate, 0.95)
    rig.scale.drive_on(28100)
    rig.plc.set_loop("arrival", True)
    rig.eseal.present_seal(seal_id, SealStatus.INTACT, "CSQU3054383")
    if scan:
        await asyncio.to_thread(rig.scanner.publish, ScanEvent.COMPLETED, rig.scanner.new_scan_id(),
                                ["CSQU3054383"], ScanVerdict.CLEAR)


def _journal(gate: SimulatedGate, *kinds: str) -> list:
    return gate.node.journal.entries(lane=LANE, kinds=list(kinds))


def _opens(gate: SimulatedGate) -> list:
    return [e for e in _journal(gate, "barrier_command") if e.payload["command"] == "open"]


def _write_open_coil(gate: SimulatedGate) -> None:
    """Another Modbus master on the PLC's segment sets the open coil (FC5), as any client can."""
    write_open_coil(gate.rigs[LANE].plc)


def _tokens(gate: SimulatedGate) -> dict[str, str]:
    with UserStore(gate.node.options.data_dir / "users.sqlite") as users:
        users.add_user("officer-5", "officer-5-password", "officer", "HUUNGHI")
        users.add_user("sup-3", "supervisor-3-password", "supervisor", "HUUNGHI")
        return {"officer": users.create_token("officer-5", "red team"), "sup": users.create_token("sup-3", "red team")}


def test_stray_modbus_master_opening_the_boom_over_a_held_truck_is_closed_alarmed_and_journaled(site, tmp_path):
    async def attack():
        gate = await _gate(site, tmp_path)
        plc = gate.rigs[LANE].plc
        controller = gate.node.lanes[LANE]
        try:
            await _truck(gate, ["桂F·54321"], seal_id="SEAL-WRONG")
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="the truck held")
            held = controller.machine.tx
            assert held.decision.outcome.value == "hold"

            # 1. The boom is opened behind the node's back: it is closed again, the truck stays held.
            await asyncio.to_thread(_write_open_coil, gate)
            await wait_until(lambda: controller.machine.alarm is not None, what="the tamper alarm")
            await wait_until(lambda: plc.boom_closed and not controller.machine.boom_open, what="boom closed again")
            assert controller.state == LaneState.DECIDED and controller.machine.tx is held
            assert not controller.machine.passage.open_commanded and _opens(gate) == []
            closes = [e.payload for e in _journal(gate, "barrier_command") if e.payload["command"] == "close"]
            assert any("without a release" in c["why"] for c in closes)

            # 2. Opened again, and the held truck drives through while it is up: never onto the truck,
            #    journaled as an unauthorised passage, never as left_lane.
            await asyncio.to_thread(_write_open_coil, gate)
            plc.set_loop("safety", True)  # the truck noses under the rising boom
            await wait_until(lambda: controller.machine.alarm["openings"] >= 2 and controller.machine.boom_open,
                             what="the second opening seen")
            plc.set_loop("arrival", False)
            await wait_until(lambda: not controller.machine.loops["arrival"], what="truck off the arrival loop")
            plc.set_loop("safety", False)
            plc.set_loop("exit", True)
            await wait_until(lambda: bool(_journal(gate, "unauthorised_passage")), what="the passage journaled")
            await wait_until(lambda: plc.boom_closed, timeout_s=5, what="boom closed behind the truck")
            plc.set_loop("exit", False)
            passage = _journal(gate, "unauthorised_passage")[0].payload
            assert passage["transaction"] == held.id and passage["plates"] == ["桂F54321"]
            results = [e.payload["result"] for e in _journal(gate, "tx_closed")]
            assert results == ["unauthorised_passage"]
            assert _opens(gate) == [] and plc.model.closed_on_vehicle == 0
            assert gate.node.cache.claims([CLEARED.number]) == {}  # never released: never claimed

            # 3. The alarm stays until a supervisor acknowledges it through the kiosk, with their name.
            tokens = _tokens(gate)
            base = f"http://127.0.0.1:{gate.node.kiosk_port}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                shown = (await client.get(f"/api/lanes/{LANE}",
                                          headers={"authorization": f"Bearer {tokens['officer']}"})).json()
                assert shown["alarm"]["code"] == "BOOM_OPEN_WITHOUT_RELEASE"
                assert "acknowledge_alarm" in shown["available_actions"]
                body = {"action": "acknowledge_alarm", "reason": "PLC port locked, police called"}
                refused = await client.post(f"/api/lanes/{LANE}/actions", json=body,
                                            headers={"authorization": f"Bearer {tokens['officer']}"})
                assert refused.status_code == 403 and controller.machine.alarm is not None
                done = await client.post(f"/api/lanes/{LANE}/actions", json=body,
                                         headers={"authorization": f"Bearer {tokens['sup']}"})
                assert done.status_code == 200, done.text
                assert done.json()["lane"]["alarm"] is None
                assert "acknowledge_alarm" not in done.json()["lane"]["available_actions"]
            ack = [e.payload for e in _journal(gate, "officer_action") if e.payload["action"] == "acknowledge_alarm"]
            assert ack[0]["officer"] == "sup-3" and ack[0]["alarm"] == "BOOM_OPEN_WITHOUT_RELEASE"
            assert gate.node.journal.verify().ok  # nothing lost, nothing rewritten
        finally:
            await gate.stop()

    asyncio.run(attack())


def test_forged_second_plate_of_a_cleared_declaration_holds_the_undeclared_truck(site, tmp_path):
    async def attack():
        gate = await _gate(site, tmp_path)
        controller = gate.node.lanes[LANE]
        try:
            # The undeclared truck's own plate, then the plate of a cleared declaration, forged.
            await _truck(gate, ["29C-999.99", "桂F·54321"])
            await wait_until(lambda: controller.state == LaneState.DECIDED, timeout_s=10, what="a decision")
            decision = controller.machine.tx.decision
            assert decision.outcome.value == "hold" and "PLATE_CONFLICT" in decision.reasons
            assert decision.declaration is None
            assert not gate.rigs[LANE].plc.boom_open and _opens(gate) == []
        finally:
            await gate.stop()

    asyncio.run(attack())


def test_forged_clear_after_the_real_suspect_keeps_the_truck_held_and_shows_the_conflict(site, tmp_path):
    async def attack():
        gate = await _gate(site, tmp_path)
        controller = gate.node.lanes[LANE]
        scanner = gate.rigs[LANE].scanner
        try:
            await _truck(gate, ["桂F·54321"], scan=False)
            scan_id = scanner.new_scan_id()
            await asyncio.to_thread(scanner.publish, ScanEvent.STARTED, scan_id, ["CSQU3054383"], ScanVerdict.PENDING)
            await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, scan_id, ["CSQU3054383"],
                                    ScanVerdict.SUSPECT)
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="held for the suspect scan")
            assert "SCANNER_SUSPECT" in controller.machine.tx.decision.reasons
            await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, scan_id, ["CSQU3054383"], ScanVerdict.CLEAR)
            await wait_until(lambda: "SCAN_CONFLICT" in [e.payload["code"] for e in _journal(gate, "alarm")],
                             what="the conflict alarm")
            # The truck still waits held by the rules: the forged clear joins it and re-decides it, held for both.
            await wait_until(lambda: "SCAN_CONFLICT" in controller.machine.tx.decision.reasons, what="the re-decision")
            attached = [e.payload for e in _journal(gate, "reading_attached") if e.payload.get("type") == "ScanRead"]
            assert (attached[-1]["verdict"], attached[-1]["transaction"]) == ("clear", controller.machine.tx.id)
            assert "SCANNER_SUSPECT" in controller.machine.tx.decision.reasons
            tokens = _tokens(gate)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gate.node.kiosk_port}", timeout=5,
                                         headers={"authorization": f"Bearer {tokens['officer']}"}) as client:
                lane = (await client.get(f"/api/lanes/{LANE}")).json()
            assert lane["transaction"]["scan"]["verdict"] == "suspect"
            assert lane["transaction"]["scan"]["conflicts"]
            assert lane["transaction"]["decision"]["outcome"] == "hold"
            assert not gate.rigs[LANE].plc.boom_open and _opens(gate) == []
        finally:
            await gate.stop()

    asyncio.run(attack())


def test_forged_clear_while_the_real_scan_runs_never_releases_the_truck(site, tmp_path):
    async def attack():
        gate = await _gate(site, tmp_path)
        controller = gate.node.lanes[LANE]
        scanner = gate.rigs[LANE].scanner
        try:
            await _truck(gate, ["桂F·54321"], scan=False)
            real = scanner.new_scan_id()
            await asyncio.to_thread(scanner.publish, ScanEvent.STARTED, real, ["CSQU3054383"], ScanVerdict.PENDING)
            await wait_until(lambda: controller.machine.tx is not None and controller.machine.tx.scan is not None,
                             what="the real scan started")
            await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, "FORGED-0001", ["CSQU3054383"],
                                    ScanVerdict.CLEAR)
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="a decision")
            assert "SCAN_CONFLICT" in controller.machine.tx.decision.reasons
            await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, real, ["CSQU3054383"], ScanVerdict.SUSPECT)
            await wait_until(lambda: controller.machine.tx.to_dict()["scan"]["verdict"] == "suspect",
                             what="the real suspect shown")
            assert controller.machine.tx.decision.outcome.value == "hold"
            assert not gate.rigs[LANE].plc.boom_open and _opens(gate) == []
        finally:
            await gate.stop()

    asyncio.run(attack())


def test_declared_seal_shown_after_a_wrong_seal_hold_never_releases_the_truck(site, tmp_path):
    """The held truck still waits, so the declared seal read late re-decides it: the wrong seal stays in what
    the truck is decided on (readings are only ever added), so it stays held."""
    async def attack():
        gate = await _gate(site, tmp_path)
        controller = gate.node.lanes[LANE]
        try:
            await _truck(gate, ["桂F·54321"], seal_id="SEAL-WRONG")
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="held for the wrong seal")
            tx = controller.machine.tx
            gate.rigs[LANE].eseal.present_seal("SEAL-777", SealStatus.INTACT, "CSQU3054383")  # the declared seal
            await wait_until(lambda: any(e.payload.get("seal_id") == "SEAL777"  # seal ids are folded
                                         for e in _journal(gate, "reading_attached")), what="the late seal attached")
            await wait_until(lambda: tx.redecisions or tx.decision.reasons == ["SEAL_MISMATCH"], what="re-decided")
            assert "SEALWRONG" in tx.seals and "SEAL777" in tx.seals
            assert tx.decision.reasons[0] == "SEAL_MISMATCH" and tx.decision.outcome.value == "hold"
            assert not gate.rigs[LANE].plc.boom_open and _opens(gate) == []
        finally:
            await gate.stop()

    asyncio.run(attack())


def test_tamper_alarm_survives_a_node_restart_until_acknowledged(site, tmp_path):
    async def attack():
        gate = await _gate(site, tmp_path)
        plc = gate.rigs[LANE].plc
        try:
            await asyncio.to_thread(_write_open_coil, gate)  # nobody at the lane
            await wait_until(lambda: gate.node.lanes[LANE].machine.alarm is not None, what="the tamper alarm")
            await wait_until(lambda: plc.boom_closed and not gate.node.lanes[LANE].machine.boom_open,
                             what="boom closed again")
            await gate.stop_node()
            await gate.start_node()
            alarm = gate.node.lanes[LANE].machine.alarm
            assert alarm is not None and alarm["code"] == "BOOM_OPEN_WITHOUT_RELEASE"
            await gate.node.lanes[LANE].officer_action("acknowledge_alarm", "sup-3", "seen on camera: maintenance")
            assert gate.node.lanes[LANE].machine.alarm is None
            assert plc.boom_closed and _opens(gate) == []
        finally:
            await gate.stop()

    asyncio.run(attack())
