"""The real node (`smartgate run`) SIGKILLed at 10 random moments while trucks pass, then restarted.

The simulators and central live in the test process; the node is its own process, started from a
site file that points at them (the shipped Huu Nghi site bound to the simulators, without its
video camera, whose plate reading is tested elsewhere and would only slow 11 start-ups). Trucks
keep arriving in both lanes through every kill. At the end:

* central holds every journal event exactly once, in order per lane (central on a real PostgreSQL);
* every time the barrier PLC simulator saw an open command, the journal already held an open
  barrier command for that lane whose transaction had a recorded RELEASE (decision or officer);
* the journal's hash chain verifies, and trucks did pass (the run exercised the barrier).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest

from edge.cli import DEFAULT_SITE
from edge.config import load_site
from edge.journal import Journal
from simulators.gate import SimulatedGate
from simulators.invariants import count_rows, opens_without_release
from simulators.node_process import NodeProcess, write_site
from simulators.traffic import blind_fleet, drive_blind
from sync.central.server import CentralServer
from sync.keys import public_b64
from sync.tokens import new_token
from tests.sync.helpers import AS_PUBLISHER, assert_exactly_once_in_order, enrolled

KILLS = 10
TRUCKS_PER_LANE = 60  # more than a run uses: traffic stops once the last node runs and 10 trucks passed


@pytest.mark.timeout(300)
def test_real_node_sigkilled_ten_times_while_trucks_pass(tmp_path, pg_url, keypair):
    asyncio.run(_run(tmp_path, pg_url, keypair))


async def _run(tmp_path: Path, pg_url: str, keypair) -> None:
    rng = random.Random(5)
    site = load_site(DEFAULT_SITE)
    token = new_token()
    node_dir = tmp_path / "node"
    central = await asyncio.to_thread(CentralServer(pg_url, keypair[0], **enrolled(node_dir, "HUUNGHI", token)).start)
    gate = SimulatedGate(site, tmp_path / "gate", kiosk_port=None, boom_travel_s=0.2)
    await gate.start(node=False)
    mono_to_wall = time.time() - time.monotonic()  # the PLC simulators stamp their history with monotonic time
    data = gate.site.site.model_dump(mode="json", exclude_none=True)
    for lane in data["lanes"]:
        lane["devices"] = [d for d in lane["devices"] if d["kind"] != "camera"]
    data["central"] = {"url": central.url, "public_key": public_b64(keypair[1]), "token": token, "insecure_http": True,
                       "upload_batch": 100, "backoff_initial_s": 0.2, "backoff_max_s": 1.0, "feed_poll_s": 2.0}
    node = NodeProcess(write_site(data, tmp_path / "site.yaml"), node_dir, tmp_path / "node.log")
    journal_file = node_dir / "journal.sqlite"
    stop_traffic = asyncio.Event()
    results: dict[str, list[bool]] = {lane["id"]: [] for lane in data["lanes"]}
    declarations: list[dict] = []
    fleets = {}
    for lane in data["lanes"]:
        fleets[lane["id"]], rows = blind_fleet(lane["direction"], TRUCKS_PER_LANE, "HUUNGHI")
        declarations += rows

    async def traffic(lane_id: str) -> None:
        for truck in fleets[lane_id]:
            if stop_traffic.is_set():
                return
            results[lane_id].append(await drive_blind(gate.rigs[lane_id], truck, open_timeout_s=4.0))

    async def until(predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}; see {node.log_path}"
            await asyncio.sleep(0.05)

    lanes: list[asyncio.Task] = []
    try:
        async with httpx.AsyncClient(base_url=central.url, timeout=10, headers=AS_PUBLISHER) as admin:
            (await admin.post("/api/v1/declarations", json={"declarations": declarations})).raise_for_status()
        node.start()
        await until(lambda: count_rows(node_dir / "declarations.sqlite", "SELECT count(*) FROM declarations")
                    == len(declarations), 60, "the declarations to arrive through the feed")
        lanes = [asyncio.create_task(traffic(lane_id)) for lane_id in results]
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(1.0, 6.0))  # from just after start-up to well into the run
            node.kill()
            node.start()
        await until(node.running.is_set, 60, "the last node to run")
        # Trucks keep coming until the journal holds 10 passages: a truck under the boom when the node
        # was killed is journaled as having left the lane, not as passed, so counting the drivers' own
        # results alone stopped the traffic one or two passages short now and then.
        passed_sql = ("SELECT count(*) FROM journal WHERE kind = 'tx_closed' "
                      "AND json_extract(payload, '$.result') = 'passed'")
        await until(lambda: sum(results.values(), []).count(True) >= 10 and count_rows(journal_file, passed_sql) >= 10,
                    90, "at least 10 trucks through")
        stop_traffic.set()
        await asyncio.gather(*lanes)
        # The last node drains the backlog of all its lives; its clean stop adds nothing to the journal.
        await until(lambda: count_rows(node_dir / "journal.sqlite", "SELECT count(*) FROM outbox") == 0
                    and central.store.event_count("HUUNGHI")
                    == count_rows(journal_file, "SELECT count(*) FROM journal"),
                    60, "central to hold every journal event")
        assert await asyncio.to_thread(node.stop) == 0
        central_events = central.store.events("HUUNGHI")
    finally:
        stop_traffic.set()
        await asyncio.gather(*lanes, return_exceptions=True)
        node.kill()
        await gate.stop()
        await asyncio.to_thread(central.stop)

    assert node.starts == KILLS + 1
    with Journal.open(journal_file) as journal:
        assert journal.verify().ok
        entries = journal.entries()
    assert_exactly_once_in_order(central_events, entries)
    opens = {lane_id: [at + mono_to_wall for at, what in rig.plc.model.history if what == "opening"]
             for lane_id, rig in gate.rigs.items()}
    problems, checked = opens_without_release(entries, opens)
    assert not problems, problems
    passed = [e for e in entries if e.kind == "tx_closed" and e.payload.get("result") == "passed"]
    assert checked >= 10 and len(passed) >= 10, (checked, len(passed))
