"""The real node (`smartgate run`) SIGKILLed while a released truck drives under the boom, then restarted:
the same truck shown again is never released a second time on the same declaration, and the claim says
that its passage is unknown (the officer's view and the journal name it).

The simulators live in the test process; the node is its own process (tests/sync/node_process.py), started
from the shipped Huu Nghi site bound to the simulators (without its video camera), its cache filled and
marked fresh before it starts, as `smartgate cache import` would.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict
from edge.cache import DeclarationCache
from edge.cli import DEFAULT_SITE
from edge.config import load_site
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.journal import Journal
from simulators.gate import SimulatedGate
from simulators.traffic import BlindTruck, drive_blind
from tests.sync.node_process import NodeProcess, write_site

LANE = "IMP-1"
TRUCK = BlindTruck(plate="29C88888", seal="CN-SEAL-088888", container="CSQU3054383", weight_kg=28_000)
NUMBER = "105000088888"


def _declaration() -> Declaration:
    now = datetime.now(UTC)
    return Declaration(number=NUMBER, kind=DeclarationKind.IMPORT, gate="HUUNGHI", plates=(TRUCK.plate,),
                       containers=(TRUCK.container,), seals=(TRUCK.seal,), gross_weight_kg=TRUCK.weight_kg,
                       channel=RiskChannel.GREEN, status=DeclarationStatus.CLEARED,
                       valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=1))


async def _until(predicate, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}; see {log}"
        await asyncio.sleep(0.05)


def _claims(path: Path) -> list[tuple]:
    with sqlite3.connect(path, timeout=10) as conn:
        sql = "SELECT number, lane, transaction_id, released_by, passage FROM declaration_claims"
        return conn.execute(sql).fetchall()


@pytest.mark.timeout(180)
def test_truck_released_before_a_sigkill_is_not_released_again_after_restart(tmp_path):
    asyncio.run(_run(tmp_path))


async def _run(tmp_path: Path) -> None:
    gate = SimulatedGate(load_site(DEFAULT_SITE), tmp_path / "gate", kiosk_port=None, boom_travel_s=0.2)
    await gate.start(node=False)
    data = gate.site.site.model_dump(mode="json", exclude_none=True)
    for lane in data["lanes"]:
        lane["devices"] = [d for d in lane["devices"] if d["kind"] != "camera"]
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    with DeclarationCache.open(node_dir / "declarations.sqlite") as cache:
        cache.upsert_many([_declaration()])
        cache.mark_refreshed(datetime.now(UTC))
    node = NodeProcess(write_site(data, tmp_path / "site.yaml"), node_dir, tmp_path / "node.log")
    rig = gate.rigs[LANE]
    plc = rig.plc
    try:
        node.start()
        await _until(node.running.is_set, 60, "the node to run", node.log_path)
        # The truck is released and drives under the boom ...
        await asyncio.to_thread(rig.camera.publish_plate, TRUCK.plate)
        rig.scale.drive_on(TRUCK.weight_kg)
        plc.set_loop("arrival", True)
        await asyncio.sleep(0.1)  # it stops on the loop before the reader sees its seal
        rig.eseal.present_seal(TRUCK.seal, "intact", TRUCK.container)
        scan_id = rig.scanner.new_scan_id()
        await asyncio.to_thread(rig.scanner.publish, ScanEvent.COMPLETED, scan_id, [TRUCK.container],
                                ScanVerdict.CLEAR, f"nii://{scan_id}.png")
        await _until(lambda: plc.boom_open, 15, "the boom to open for the truck", node.log_path)
        plc.set_loop("safety", True)
        plc.set_loop("arrival", False)
        rig.scale.drive_off()
        # ... and the node dies under it. The truck drives on; the PLC's watchdog brings the boom down.
        node.kill()
        plc.set_loop("safety", False)
        plc.set_loop("exit", True)
        plc.set_loop("exit", False)
        await _until(lambda: plc.boom_closed, 15, "the PLC's watchdog to close the boom", node.log_path)
        claimed = _claims(node_dir / "declarations.sqlite")
        assert [(n, lane, by, passage) for n, lane, _, by, passage in claimed] == [
            (NUMBER, LANE, "auto", "commanded")]
        released_tx = claimed[0][2]

        node.start()
        await _until(node.running.is_set, 60, "the restarted node to run", node.log_path)
        # The same truck is shown again, twice (the first time it is taken for the interrupted truck coming back).
        again = [await drive_blind(rig, TRUCK, open_timeout_s=4.0) for _ in range(2)]
        assert again == [False, False]
        assert node.stop() == 0
    finally:
        node.kill()
        await gate.stop()

    assert [what for _, what in plc.model.history].count("opening") == 1  # the PLC opened once, for the release
    assert _claims(node_dir / "declarations.sqlite") == [(NUMBER, LANE, released_tx, "auto", "unknown")]
    with Journal.open(node_dir / "journal.sqlite") as journal:
        assert journal.verify().ok
        entries = journal.entries(lane=LANE)
    opens = [e.payload for e in entries if e.kind == "barrier_command" and e.payload["command"] == "open"]
    assert opens == [{"command": "open", "transaction": released_tx, "released_by": "auto", "declarations": [NUMBER]}]
    restarted = [e.payload["text"] for e in entries if e.kind == "alarm" and e.payload["code"] == "NODE_RESTARTED"]
    assert restarted == [f"transaction {released_tx} was open at restart; declaration {NUMBER} claimed by tx "
                         f"{released_tx} at lane {LANE}, passage unknown"]
    held = [f["detail"] for e in entries if e.kind == "decision" and e.payload["transaction"] != released_tx
            for f in e.payload["findings"] if f["code"] == "DECLARATION_ALREADY_USED"]
    assert held and all(d == f"{NUMBER} claimed by tx {released_tx} at lane {LANE}, passage unknown" for d in held)
