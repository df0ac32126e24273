"""The real node (`smartgate run`) when its data disk fills: a lane fault handled in memory.

The node's data dir is a small tmpfs. Two trucks are released (one per lane) and their booms stand
open; then the disk is filled to the last byte. The node must then:

* release nothing more (trucks keep coming and are not let through; an officer's release is refused),
  yet close the import lane's boom behind its truck as soon as the safety loop clears;
* answer `/healthz` with 503 and the reason, and let a supervisor log in (no disk write needed) and
  close the export lane's boom by hand;
* send the JOURNAL_FAILED alarm, recorded in the space of the freed reserve, to central while the
  disk is still full;
* once space returns, write every row it held in memory in order after the JOURNAL_FAILED row, then
  JOURNAL_RECOVERED; `smartgate journal verify` passes and central holds every row exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict
from edge.cache import DeclarationCache
from edge.cli import DEFAULT_SITE
from edge.config import load_site
from edge.declarations import declaration_from_mapping
from edge.journal import Journal
from edge.users import UserStore
from simulators.gate import LaneRig, SimulatedGate
from simulators.node_process import ROOT, NodeProcess, write_site
from simulators.traffic import BlindTruck, blind_fleet, drive_blind
from sync.central.server import CentralServer
from sync.keys import public_b64
from sync.tokens import new_token
from tests.sync.helpers import assert_exactly_once_in_order, enrolled

SUPERVISOR = ("sup", "supervisor-password-1")


@contextlib.contextmanager
def small_tmpfs(path: Path, size_mib: int):
    """Mount a tmpfs of `size_mib` at `path` (root only), unmounted afterwards; skip when mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root or CAP_SYS_ADMIN): "
                    f"{done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(filler: Path) -> int:
    """Write `filler` until the file system says ENOSPC, down to the last page; return the bytes written."""
    written = 0
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return written


async def until(predicate, timeout_s: float, what: str, log: Path) -> None:
    """Wait until `predicate()` (a plain or an async function) is true."""
    deadline = time.monotonic() + timeout_s
    while not await _value(predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}; see {log}"
        await asyncio.sleep(0.1)


async def present(rig: LaneRig, truck: BlindTruck) -> None:
    """The truck shows itself to the lane's devices and stops on the arrival loop (drive_blind's first half)."""
    if rig.camera is not None:
        await asyncio.to_thread(rig.camera.publish_plate, truck.plate)
        await asyncio.sleep(0.1)
    if rig.scale is not None:
        rig.scale.drive_on(truck.weight_kg)
    rig.plc.set_loop("arrival", True)
    await asyncio.sleep(0.1)
    if rig.eseal is not None:
        rig.eseal.present_seal(truck.seal, "intact", truck.container)
    if rig.scanner is not None:
        scan_id = rig.scanner.new_scan_id()
        await asyncio.to_thread(rig.scanner.publish, ScanEvent.STARTED, scan_id, [truck.container], ScanVerdict.PENDING)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(rig.scanner.publish, ScanEvent.COMPLETED, scan_id, [truck.container],
                                ScanVerdict.CLEAR, f"nii://{scan_id}.png")


def kiosk_url(log: Path) -> str:
    found = re.findall(r"kiosk on (http://[\d.]+:\d+)", log.read_text(encoding="utf-8"))
    assert found, f"the node did not say where its kiosk is; see {log}"
    return found[-1]


async def log_in(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Log in like the page does; return the session's CSRF token."""
    page = await client.get("/login")
    token = re.search(r'name="sg-login-csrf" content="([^"]+)"', page.text).group(1)
    response = await client.post("/api/login", json={"username": username, "password": password},
                           headers={"x-csrf-token": token})
    assert response.status_code == 200, response.text
    return response.json()["csrf"]


def opened_since(rig: LaneRig, since_monotonic: float) -> list[float]:
    return [at for at, what in rig.plc.model.history if what == "opening" and at >= since_monotonic]


@pytest.mark.timeout(240)
def test_full_disk_degrades_the_lanes_and_the_journal_catches_up(tmp_path, pg_url, keypair):
    asyncio.run(_run(tmp_path, pg_url, keypair))


async def _run(tmp_path: Path, pg_url: str, keypair) -> None:
    with small_tmpfs(tmp_path / "node", 24) as node_dir:
        token = new_token()
        central = await asyncio.to_thread(
            CentralServer(pg_url, keypair[0], **enrolled(node_dir, "HUUNGHI", token)).start)
        try:
            await _scenario(tmp_path, node_dir, central, {
                "url": central.url, "public_key": public_b64(keypair[1]), "token": token, "insecure_http": True,
                "backoff_initial_s": 0.2, "backoff_max_s": 1.0, "feed_poll_s": 2.0})
        finally:
            await asyncio.to_thread(central.stop)


async def _scenario(tmp_path: Path, node_dir: Path, central: CentralServer, link: dict) -> None:
    gate = SimulatedGate(load_site(DEFAULT_SITE), tmp_path / "gate", kiosk_port=None, boom_travel_s=0.2)
    await gate.start(node=False)
    data = gate.site.site.model_dump(mode="json", exclude_none=True)
    for lane in data["lanes"]:
        lane["devices"] = [d for d in lane["devices"] if d["kind"] != "camera"]
    data["journal"] = {"reserve_mib": 2, "retry_s": 0.3}
    data["central"] = link
    fleets, declarations = {}, []
    for lane in data["lanes"]:
        fleets[lane["id"]], rows = blind_fleet(lane["direction"], 4, "HUUNGHI")
        declarations += rows
    with DeclarationCache.open(node_dir / "declarations.sqlite") as cache:
        cache.upsert_many(declaration_from_mapping(row) for row in declarations)
        cache.mark_refreshed(datetime.now(UTC))
    with UserStore(node_dir / "users.sqlite") as users:
        users.add_user(*SUPERVISOR, "supervisor", "HUUNGHI")
    log = tmp_path / "node.log"
    node = NodeProcess(write_site(data, tmp_path / "site.yaml"), node_dir, log)
    imp, exp = gate.rigs["IMP-1"], gate.rigs["EXP-1"]
    filler = node_dir / "filler.bin"
    try:
        node.start()
        await until(node.running.is_set, 60, "the node to run", log)
        assert (node_dir / "journal-reserve.bin").stat().st_size == 2 << 20
        http = httpx.AsyncClient(base_url=kiosk_url(log), timeout=10)
        assert (await http.get("/healthz")).status_code == 200

        # A released truck in each lane, the booms open.
        await asyncio.gather(present(imp, fleets["IMP-1"][0]), present(exp, fleets["EXP-1"][0]))
        await until(lambda: imp.plc.boom_open and exp.plc.boom_open, 30, "both booms to open", log)

        filled_at = time.monotonic()
        with sqlite3.connect(node_dir / "users.sqlite") as users_db:  # so that a log-in must grow the file
            users_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await asyncio.to_thread(fill_disk, filler)
        # The next journal write fails: the import truck drives on and off the safety loop.
        imp.plc.set_loop("safety", True)
        imp.plc.set_loop("arrival", False)
        imp.scale.drive_off()
        await until(lambda: _is(http, "/healthz", 503), 15, "/healthz to say 503", log)
        health = (await http.get("/healthz")).json()
        assert health["status"] == "degraded" and "disk full" in health["reason"], health
        await asyncio.sleep(0.3)
        imp.plc.set_loop("safety", False)
        imp.plc.set_loop("exit", True)
        await until(lambda: imp.plc.boom_closed, 10, "the import boom to close behind its truck", log)
        imp.plc.set_loop("exit", False)

        # The freed reserve let the journal record the fault; whatever filled the disk takes the rest.
        failed_sql = "SELECT count(*) FROM journal WHERE json_extract(payload, '$.code') = 'JOURNAL_FAILED'"
        await until(lambda: _count(node_dir / "journal.sqlite", failed_sql) == 1, 10, "the fault on record", log)
        await asyncio.to_thread(fill_disk, filler)
        # The alarm reaches central while the disk is still full (the link allows).
        await until(lambda: any(e["kind"] == "alarm" and e["payload"].get("code") == "JOURNAL_FAILED"
                                for e in central.store.events("HUUNGHI")), 20, "the alarm at central", log)

        # A supervisor logs in on the full disk and closes the export boom by hand.
        csrf = await log_in(http, *SUPERVISOR)
        headers = {"x-csrf-token": csrf}
        closed = await http.post("/api/lanes/EXP-1/actions", json={"action": "manual_close", "reason": "disk full"},
                           headers=headers)
        assert closed.status_code == 200, closed.text
        await until(lambda: exp.plc.boom_closed, 10, "the export boom to close by hand", log)
        exp.plc.set_loop("arrival", False)
        exp.scale.drive_off()
        status = (await http.get("/api/status", headers=headers)).json()
        assert status["journal"]["ok"] is False and status["journal"]["held_rows"] > 0, status["journal"]

        # Trucks keep coming: none is let through, an officer's release is refused.
        results = await asyncio.gather(drive_blind(imp, fleets["IMP-1"][1], open_timeout_s=3.0),
                                       drive_blind(exp, fleets["EXP-1"][1], open_timeout_s=3.0))
        assert results == [False, False]
        await present(imp, fleets["IMP-1"][2])
        await until(lambda: _tx_open(http, "IMP-1", headers), 10, "the next truck's transaction", log)
        for action in ("release", "manual_open"):
            refused = await http.post("/api/lanes/IMP-1/actions", json={"action": action, "reason": "wave it through"},
                                      headers=headers)
            assert refused.status_code == 409 and "journal cannot write" in refused.text, refused.text
        imp.plc.set_loop("arrival", False)
        imp.scale.drive_off()
        assert opened_since(imp, filled_at) == [] and opened_since(exp, filled_at) == []

        # Space comes back: the held rows are written, the lanes work again.
        filler.unlink()
        await until(lambda: _is(http, "/healthz", 200), 30, "/healthz to say ok again", log)
        assert (node_dir / "journal-reserve.bin").exists()
        assert await drive_blind(imp, fleets["IMP-1"][3], open_timeout_s=15.0), "a truck after recovery is released"
        await http.aclose()
        journal_sql = "SELECT count(*) FROM journal"
        await until(lambda: central.store.event_count("HUUNGHI") == _count(node_dir / "journal.sqlite", journal_sql),
                    30, "central to hold every journal row", log)
        assert await asyncio.to_thread(node.stop) == 0
        central_events = central.store.events("HUUNGHI")
    finally:
        node.kill()
        await gate.stop()

    verify = subprocess.run([sys.executable, "-m", "edge.cli", "journal", "verify", "--data-dir", str(node_dir)],
                            cwd=ROOT, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with Journal.open(node_dir / "journal.sqlite") as journal:
        entries = journal.entries()
    assert_exactly_once_in_order(central_events, entries)
    text = log.read_text(encoding="utf-8")
    assert text.count("journal DEGRADED") == 1 and text.count("journal RECOVERED") == 1, "the log says it once each"
    assert "could not write a new session (kept in memory" in text  # the log-in really met the full disk
    assert "Traceback" not in text
    codes = [(e.seq, e.payload.get("code")) for e in entries if e.kind == "alarm"]
    failed = next(seq for seq, code in codes if code == "JOURNAL_FAILED")
    recovered = next(seq for seq, code in codes if code == "JOURNAL_RECOVERED")
    between = [e for e in entries if failed < e.seq < recovered]
    # What happened while the disk was full is in the journal, in order: the import truck passed and its
    # boom closed, the export boom was closed by hand, the trucks that came were not let through.
    imp_rows = [e for e in between if e.lane == "IMP-1"]
    assert any(e.kind == "tx_closed" and e.payload["result"] == "passed" for e in imp_rows)
    assert any(e.kind == "barrier_command" and e.payload["command"] == "close" for e in imp_rows)
    assert any(e.kind == "officer_action" and e.payload["action"] == "manual_close" for e in between
               if e.lane == "EXP-1")
    assert not any(e.kind == "barrier_command" and e.payload["command"] == "open" for e in between)
    assert [e.at for e in between if e.lane == "IMP-1"] == sorted(e.at for e in between if e.lane == "IMP-1")
    assert entries[-1].seq > recovered  # and the journal goes on after the recovery


async def _value(value):
    return await value if asyncio.iscoroutine(value) else value


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path, timeout=10) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def _tx_open(http: httpx.AsyncClient, lane: str, headers: dict[str, str]) -> bool:
    return (await http.get(f"/api/lanes/{lane}", headers=headers)).json().get("transaction") is not None


async def _is(http: httpx.AsyncClient, path: str, status: int) -> bool:
    return (await http.get(path)).status_code == status
