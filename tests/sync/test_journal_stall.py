"""The real node whose journal write hangs (another process holds the write lock): the PLC takes over.

A lane stuck on one journal write cannot close its boom behind a truck. With `lane_stall_s` passed,
the node withholds that lane's PLC heartbeat, the PLC's own watchdog takes the boom to its safe
state (closed once the safety loop is clear), and the heartbeat comes back when the write goes
through. The journal still verifies afterwards.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from edge.cache import DeclarationCache
from edge.cli import DEFAULT_SITE
from edge.config import load_site
from edge.declarations import declaration_from_mapping
from simulators.gate import SimulatedGate
from simulators.node_process import ROOT, NodeProcess, write_site
from simulators.traffic import blind_fleet
from tests.sync.test_disk_full import kiosk_url, present, until


@pytest.mark.timeout(180)
def test_a_lane_stuck_on_a_locked_journal_hands_its_boom_to_the_plc_watchdog(tmp_path):
    asyncio.run(_run(tmp_path))


async def _run(tmp_path: Path) -> None:
    gate = SimulatedGate(load_site(DEFAULT_SITE), tmp_path / "gate", kiosk_port=None, boom_travel_s=0.2)
    await gate.start(node=False)
    data = gate.site.site.model_dump(mode="json", exclude_none=True)
    data["lanes"] = [lane for lane in data["lanes"] if lane["id"] == "IMP-1"]
    for lane in data["lanes"]:
        lane["devices"] = [d for d in lane["devices"] if d["kind"] != "camera"]
    data["journal"] = {"write_timeout_s": 30, "lane_stall_s": 1, "reserve_mib": 0}
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    fleet, declarations = blind_fleet("import", 2, "HUUNGHI")
    with DeclarationCache.open(node_dir / "declarations.sqlite") as cache:
        cache.upsert_many(declaration_from_mapping(row) for row in declarations)
        cache.mark_refreshed(datetime.now(UTC))
    log = tmp_path / "node.log"
    node = NodeProcess(write_site(data, tmp_path / "site.yaml"), node_dir, log)
    rig = gate.rigs["IMP-1"]
    plc = rig.plc
    locker: sqlite3.Connection | None = None
    try:
        node.start()
        await until(node.running.is_set, 60, "the node to run", log)
        await present(rig, fleet[0])
        await until(lambda: plc.boom_open, 30, "the boom to open for the released truck", log)

        locker = sqlite3.connect(node_dir / "journal.sqlite", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # held like a `sqlite3` shell left in a transaction
        locked_at = time.monotonic()
        plc.set_loop("safety", True)  # the truck drives under the boom: the lane's next write hangs
        plc.set_loop("arrival", False)
        rig.scale.drive_off()
        await until(lambda: any(what == "heartbeat lost: safe state" for _, what in plc.model.history), 10,
                    "the PLC's watchdog to trip", log)
        assert plc.boom_open, "never closed on the truck under it"
        plc.set_loop("safety", False)  # the truck is through: the PLC closes by itself, the node cannot
        await until(lambda: plc.boom_closed, 10, "the PLC to close the boom", log)
        assert time.monotonic() - locked_at < 9, "before SQLite's busy timeout ended the write"
        locker.execute("COMMIT")
        await until(lambda: any(what == "heartbeat back" for _, what in plc.model.history), 10,
                    "the heartbeat to come back", log)
        async with httpx.AsyncClient(base_url=kiosk_url(log), timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
        assert await asyncio.to_thread(node.stop) == 0
    finally:
        if locker is not None:
            locker.close()
        node.kill()
        await gate.stop()

    text = log.read_text(encoding="utf-8")
    assert text.count("heartbeat withheld (lane IMP-1 stuck") == 1 and text.count("heartbeat sent again") == 1
    verify = subprocess.run([sys.executable, "-m", "edge.cli", "journal", "verify", "--data-dir", str(node_dir)],
                            cwd=ROOT, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
