"""The real node against the simulators: scenarios, officer actions over HTTP, restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict, SealStatus
from edge.cli import DEFAULT_SCENARIO
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.lane import LaneState
from edge.users import UserStore
from simulators.gate import SimulatedGate
from tests.conftest import wait_until
from tests.helpers import started_gate

NOW = datetime.now(UTC)
DECLARATION = Declaration(
    number="105000000777", kind=DeclarationKind.IMPORT, gate="HUUNGHI", plates=("桂F54321",),
    containers=("CSQU3054383",), seals=("SEAL-777",), gross_weight_kg=28000, channel=RiskChannel.GREEN,
    status=DeclarationStatus.CLEARED, valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def why_it_failed(result: subprocess.CompletedProcess) -> str:
    """A scenario run's stderr and the trucks whose expectations were not met, with their reasons."""
    try:
        trucks = json.loads(result.stdout)["trucks"]
    except (ValueError, KeyError, TypeError):
        return result.stderr[-3000:] + result.stdout[-3000:]
    unmet = [{k: t.get(k) for k in ("name", "expect_failures", "reasons", "plates", "outcome")}
             for t in trucks if t.get("expect_met") is False]
    return result.stderr[-3000:] + json.dumps(unmet, ensure_ascii=False, indent=1)


def test_basic_scenario_through_the_cli_meets_every_expectation():
    result = run_cli("demo", "--scenario", str(DEFAULT_SCENARIO), "--json")
    assert result.returncode == 0, why_it_failed(result)
    report = json.loads(result.stdout)
    by_name = {truck["name"]: truck for truck in report["trucks"]}
    green = by_name["cleared green truck passes on its own"]
    assert green["outcome"] == "release" and green["barrier_opened"] and green["result"] == "passed"
    assert green["decision_ms"] is not None
    for name, reason in [("seal on the container is not the declared one", "SEAL_MISMATCH"),
                         ("plate with no declaration", "NO_DECLARATION"),
                         ("red channel needs physical inspection", "CHANNEL_RED")]:
        assert by_name[name]["outcome"] == "hold" and reason in by_name[name]["reasons"]
        assert by_name[name]["barrier_opened"] is False
    assert report["summary"]["expectations_failed"] == 0 and report["summary"]["journal_ok"]


def test_unmet_expectation_makes_the_scenario_exit_non_zero(tmp_path: Path):
    scenario = yaml.safe_load(DEFAULT_SCENARIO.read_text(encoding="utf-8"))
    scenario["site"] = str(DEFAULT_SCENARIO.parent.parent / "sites" / "huu-nghi.yaml")
    scenario["trucks"] = [dict(scenario["trucks"][2], expect={"outcome": "release"})]
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(scenario, allow_unicode=True), encoding="utf-8")
    result = run_cli("demo", "--scenario", str(path), "--json")
    assert result.returncode == 1
    truck = json.loads(result.stdout)["trucks"][0]
    assert truck["expect_met"] is False and "outcome hold != expected release" in truck["expect_failures"][0]


def test_bad_scenario_names_the_key_and_fails(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("site: huu-nghi\ntrucks:\n  - lane: NOPE-9\n    plate: 29C-123.45\n", encoding="utf-8")
    result = run_cli("demo", "--scenario", str(path))
    assert result.returncode == 2
    assert "trucks[0].lane" in result.stderr and "IMP-1" in result.stderr


async def _gate(site, tmp_path: Path) -> SimulatedGate:
    return await started_gate(site, tmp_path, [DECLARATION], kiosk_port=0, boom_travel_s=0.2)


async def _present(gate: SimulatedGate, lane: str, plate: str, seal_id: str, status=SealStatus.INTACT,
                   weight_kg: float = 28100) -> None:
    """A truck rolls up: plate, weighbridge, arrival loop, seals, and (at IMP-1) an X-ray scan."""
    rig = gate.rigs[lane]
    await asyncio.to_thread(rig.camera.publish_plate, plate, 0.95)
    if rig.scale is not None:
        rig.scale.drive_on(weight_kg)
    rig.plc.set_loop("arrival", True)
    rig.eseal.present_seal(seal_id, status, "CSQU3054383")
    if rig.scanner is not None:
        scan_id = rig.scanner.new_scan_id()
        await asyncio.to_thread(rig.scanner.publish, ScanEvent.COMPLETED, scan_id, ["CSQU3054383"], ScanVerdict.CLEAR)


def _kinds(gate: SimulatedGate, lane: str) -> list[str]:
    return [e.kind for e in gate.node.journal.entries(lane=lane)]


def test_officer_release_over_http_opens_the_barrier_after_journaling(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            controller = gate.node.lanes["IMP-1"]
            await _present(gate, "IMP-1", "桂F·54321", "SEAL-WRONG")
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="hold decision")
            assert controller.machine.tx.decision.reasons[0] == "SEAL_MISMATCH"
            assert not gate.rigs["IMP-1"].plc.boom_open
            base = f"http://127.0.0.1:{gate.node.kiosk_port}"
            with UserStore(gate.node.options.data_dir / "users.sqlite") as users:
                users.add_user("officer-12", "officer-12-password", "officer", "HUUNGHI")
                token = users.create_token("officer-12", "e2e test")
            async with httpx.AsyncClient(base_url=base, timeout=5) as anonymous:
                assert (await anonymous.get("/api/lanes")).status_code == 401
            auth = {"authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=base, timeout=5, headers=auth) as client:
                lanes = (await client.get("/api/lanes")).json()
                shown = next(lane for lane in lanes if lane["lane"] == "IMP-1")
                assert shown["state"] == "DECIDED"
                assert shown["transaction"]["decision"]["findings"][0]["code"] == "SEAL_MISMATCH"
                bad = await client.post("/api/lanes/IMP-1/actions", json={"action": "release"})
                assert bad.status_code == 422
                assert not gate.rigs["IMP-1"].plc.boom_open
                ok = await client.post("/api/lanes/IMP-1/actions", json={
                    "action": "release", "reason": "seal replaced, papers seen"})
                assert ok.status_code == 200, ok.text
                await wait_until(lambda: gate.rigs["IMP-1"].plc.boom_open, what="boom open")
                kinds = _kinds(gate, "IMP-1")
                assert kinds.index("officer_action") < kinds.index("barrier_command")
                command = next(e for e in gate.node.journal.entries(lane="IMP-1", kinds=["barrier_command"]))
                assert command.payload["released_by"] == "officer-12"  # the token's user, never a request field
                again = await client.post("/api/lanes/IMP-1/actions", json={
                    "action": "release", "reason": "second click"})
                assert again.status_code == 409
                idle = await client.post("/api/lanes/EXP-1/actions", json={
                    "action": "release", "reason": "no truck here"})
                assert idle.status_code == 409
                assert (await client.get("/healthz")).json()["status"] == "ok"
                page = await client.get("/")
                assert page.status_code == 200 and "/static/board.js" in page.text
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_held_truck_never_gets_the_boom_opened(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            controller = gate.node.lanes["IMP-1"]
            await _present(gate, "IMP-1", "桂F·54321", "SEAL-777", SealStatus.TAMPERED)
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="decision")
            assert controller.machine.tx.decision.outcome.value == "hold"
            assert "SEAL_TAMPERED" in controller.machine.tx.decision.reasons
            gate.rigs["IMP-1"].plc.set_loop("arrival", False)
            await wait_until(lambda: controller.state == LaneState.IDLE, what="truck backed away")
            assert "opening" not in [what for _, what in gate.rigs["IMP-1"].plc.model.history]
            commands = gate.node.journal.entries(lane="IMP-1", kinds=["barrier_command"])
            assert [e.payload["command"] for e in commands if e.payload["command"] == "open"] == []
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_restart_while_truck_is_under_the_boom_never_reopens_it(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        plc = gate.rigs["IMP-1"].plc
        try:
            await _present(gate, "IMP-1", "桂F·54321", "SEAL-777")
            await wait_until(lambda: plc.boom_open, what="released and open")
            plc.set_loop("safety", True)
            plc.set_loop("arrival", False)
            await gate.stop_node()
            openings_before = sum(1 for _, what in plc.model.history if what == "opening")
            await gate.start_node()
            controller = gate.node.lanes["IMP-1"]
            await wait_until(lambda: controller.state == LaneState.PASSING, what="restored as passing")
            plc.set_loop("safety", False)
            await wait_until(lambda: plc.boom_closed, what="boom closed after the truck")
            await wait_until(lambda: controller.state == LaneState.IDLE, what="lane idle")
            assert sum(1 for _, what in plc.model.history if what == "opening") == openings_before
            assert plc.model.closed_on_vehicle == 0
            opens = [e for e in gate.node.journal.entries(lane="IMP-1", kinds=["barrier_command"])
                     if e.payload["command"] == "open"]
            assert len(opens) == 1
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_restart_after_release_with_boom_closed_holds_for_review(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        plc = gate.rigs["IMP-1"].plc
        try:
            await _present(gate, "IMP-1", "桂F·54321", "SEAL-777")
            await wait_until(lambda: plc.boom_open, what="released and open")
            await gate.stop_node()
            plc.model.heartbeat_timeout_s = 0.3  # the PLC closes by itself: the truck never moved
            await wait_until(lambda: plc.boom_closed, what="PLC safe state")
            openings_before = sum(1 for _, what in plc.model.history if what == "opening")
            await gate.start_node()
            controller = gate.node.lanes["IMP-1"]
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="held for review")
            assert controller.machine.tx.decision.reasons == ["NODE_RESTARTED"]
            polls = gate.node.drivers["IMP-1-plc"].health.frames_good
            await wait_until(lambda: gate.node.drivers["IMP-1-plc"].health.frames_good > polls + 10,
                             what="ten more PLC polls: time for a wrong re-open to show")
            assert plc.boom_closed
            assert sum(1 for _, what in plc.model.history if what == "opening") == openings_before
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_dead_eseal_reader_puts_the_lane_in_fault_and_blocks_auto_release(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        rig = gate.rigs["IMP-1"]
        controller = gate.node.lanes["IMP-1"]
        try:
            rig.eseal.stop()
            await wait_until(lambda: controller.state == LaneState.FAULT, what="fault")
            await asyncio.to_thread(rig.camera.publish_plate, "桂F·54321", 0.95)
            rig.scale.drive_on(28100)
            rig.plc.set_loop("arrival", True)
            await asyncio.to_thread(rig.scanner.publish, ScanEvent.COMPLETED, rig.scanner.new_scan_id(),
                                    ["CSQU3054383"], ScanVerdict.CLEAR)
            await wait_until(lambda: controller.machine.tx is not None and controller.machine.tx.plates
                             and controller.machine.tx.weight_kg, what="plate and weight attached")
            assert not rig.plc.boom_open
            rig.eseal.start()
            await wait_until(lambda: controller.state != LaneState.FAULT, timeout_s=5, what="recovery")
            rig.eseal.present_seal("SEAL-777", SealStatus.INTACT, "CSQU3054383")
            await wait_until(lambda: rig.plc.boom_open, what="release after recovery")
            devices = {d["device_id"]: d for d in gate.node.device_health()}
            assert devices["IMP-1-eseal"]["reconnects"] >= 1
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_fault_scenario_degrades_safely_and_every_device_recovers_within_5_s():
    result = run_cli("demo", "--scenario", str(DEFAULT_SCENARIO.parent / "faults.yaml"), "--json", timeout=180)
    report = json.loads(result.stdout)
    unmet = [t["name"] for t in report["trucks"] if t.get("expect_met") is False]
    # A string, not a tuple: pytest would cut a tuple's repr short, and the reasons are what tells why.
    assert result.returncode == 0 and not unmet, why_it_failed(result) + json.dumps(report["device_events"])
    for truck in report["trucks"]:
        if truck["outcome"] != "release":
            assert truck["barrier_opened"] is False
    held = [t for t in report["trucks"] if t["outcome"] == "hold"]
    assert held and all("DEVICE_FAULT" in t["reasons"] for t in held)
    events = report["device_events"]
    for fault in report["faults"]:
        if fault["fault"] not in ("disconnect", "exception_replies", "slow"):
            continue
        device = fault["device"]
        faults = [e for e in events if e["device"] == device and e["event"] == "fault"]
        recoveries = [e for e in events if e["device"] == device and e["event"] == "recovered"
                      and e["at_s"] >= fault["device_back_at_s"]]
        assert faults, f"{device}: the node never saw the {fault['fault']}"
        assert recoveries, f"{device}: no recovery"
        assert recoveries[0]["at_s"] - fault["device_back_at_s"] <= 5.0, f"{device} took too long to reconnect"


def test_reasons_scenario_stops_each_truck_for_its_reason():
    result = run_cli("demo", "--scenario", str(DEFAULT_SCENARIO.parent / "reasons.yaml"), "--json", timeout=180)
    assert result.returncode == 0, why_it_failed(result)
    report = json.loads(result.stdout)
    by_name = {t["name"]: t for t in report["trucks"]}
    expected = {
        "ten percent heavier than declared": "WEIGHT_OUT_OF_TOLERANCE",
        "X-ray image looks suspect": "SCANNER_SUSPECT",
        "seal reports tampering": "SEAL_TAMPERED",
        "seal reports it was opened": "SEAL_OPENED",
        "X-ray analysis never finishes": "SCANNER_PENDING",
        "container number fails its check digit": "CONTAINER_CHECK_DIGIT_INVALID",
        "container C read as M (the check digit cannot tell)": "CONTAINER_PROBABLE_MISREAD",
        "cancelled declaration is refused": "DECLARATION_CANCELLED",
        "import declaration at the export lane is refused": "WRONG_DIRECTION",
    }
    for name, reason in expected.items():
        assert reason in by_name[name]["reasons"] and by_name[name]["barrier_opened"] is False, name
    officer = by_name["yellow channel released by the officer after the document check"]
    assert officer["barrier_opened"] and officer["released_by"] == "officer-12"


def test_device_health_is_published_as_telemetry(site, tmp_path: Path):
    from devices.transports.mqtt import new_client
    from edge.broker_policy import CENTRAL_IDENTITY
    from sync.telemetry import telemetry_topics

    async def scenario():
        gate = SimulatedGate(site, tmp_path, kiosk_port=None, boom_travel_s=0.2)
        await gate.start()
        received: dict[str, dict] = {}
        topics = telemetry_topics(site.site.gate)
        monitor = new_client("test-monitor", gate.broker.credentials(CENTRAL_IDENTITY))  # monitoring is central's
        monitor.on_message = lambda c, u, m: received.__setitem__(
            m.topic, json.loads(m.payload))
        try:
            monitor.connect(gate.broker.host, gate.broker.port)
            monitor.subscribe([("smartgate/+/status", 1), ("smartgate/+/telemetry/#", 1)])
            monitor.loop_start()
            await wait_until(lambda: topics["devices"] in received, what="device telemetry")
            assert received[topics["status"]]["state"] == "online"  # the birth, with its bdSeq
            assert isinstance(received[topics["status"]]["bd_seq"], int)
            devices = {d["device_id"]: d for d in received[topics["devices"]]["devices"]}
            assert set(devices) >= {"IMP-1-plc", "IMP-1-eseal", "IMP-1-anpr", "IMP-1-scale", "IMP-1-xray", "EXP-1-plc"}
            gate.rigs["IMP-1"].eseal.stop()
            await wait_until(lambda: not {d["device_id"]: d for d in received[topics["devices"]]["devices"]}
                             ["IMP-1-eseal"]["connected"], what="the pulled reader in telemetry")
            lanes = {lane["lane"]: lane for lane in received[topics["lanes"]]["lanes"]}
            assert lanes["IMP-1"]["state"] == "FAULT"
        finally:
            monitor.loop_stop()
            await gate.stop()

    asyncio.run(scenario())


def test_officer_sees_a_pulled_weighbridge_cable_and_its_recovery(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        rig = gate.rigs["IMP-1"]
        try:
            with UserStore(gate.node.options.data_dir / "users.sqlite") as users:
                users.add_user("officer-7", "officer-7-password", "officer", "HUUNGHI")
                token = users.create_token("officer-7", "e2e test")
            base = f"http://127.0.0.1:{gate.node.kiosk_port}"
            async with httpx.AsyncClient(base_url=base, timeout=5,
                                         headers={"authorization": f"Bearer {token}"}) as client:
                async def scale() -> dict:
                    devices = (await client.get("/api/devices")).json()
                    return next(d for d in devices if d["device_id"] == "IMP-1-scale")

                async def lane_state() -> str:
                    lanes = (await client.get("/api/lanes")).json()
                    return next(lane for lane in lanes if lane["lane"] == "IMP-1")["state"]

                assert (await scale())["connected"]
                rig.scale.fault_disconnect()
                await wait_until(lambda: gate.node.lanes["IMP-1"].state == LaneState.FAULT, what="lane FAULT")
                shown = await scale()
                assert not shown["connected"] and shown["last_error"]
                assert await lane_state() == "FAULT"
                rig.scale.recover_disconnect()
                await wait_until(lambda: gate.node.lanes["IMP-1"].state == LaneState.IDLE, timeout_s=5,
                                 what="recovery within 5 s")
                shown = await scale()
                assert shown["connected"] and shown["reconnects"] >= 1
                assert await lane_state() == "IDLE"
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_node_syncs_with_central_declarations_in_events_out(site, tmp_path: Path):
    from simulators.broker import PrivateBroker
    from simulators.central_sim import central_client, publish_declarations, start_central, with_central

    async def scenario():
        broker = await asyncio.to_thread(PrivateBroker().start)
        central, section = await asyncio.to_thread(start_central, tmp_path / "central", broker, site.site.gate)
        gate = SimulatedGate(with_central(site, section), tmp_path, kiosk_port=None, boom_travel_s=0.2,
                             broker=broker)
        try:
            await gate.start()
            assert gate.node.cache.get(DECLARATION.number) is None
            assert await publish_declarations(central, [DECLARATION], gate.node), "feed never applied"
            await _present(gate, "IMP-1", "桂F·54321", "SEAL-777")
            plc = gate.rigs["IMP-1"].plc
            await wait_until(lambda: plc.boom_open, what="released on a declaration that came through the feed")
            controller = gate.node.lanes["IMP-1"]
            plc.set_loop("safety", True)
            plc.set_loop("arrival", False)
            await wait_until(lambda: controller.machine.loops["safety"], what="truck under the boom")
            plc.set_loop("safety", False)
            await wait_until(lambda: controller.machine.tx is None, timeout_s=10, what="truck through")
            async with central_client(central, "monitor") as client:
                async def central_kinds() -> list[str]:
                    events = (await client.get("/api/v1/gates/HUUNGHI/events", params={"lane": "IMP-1"})).json()
                    return [e.get("kind") for e in events]

                deadline = asyncio.get_running_loop().time() + 15
                while "tx_closed" not in await central_kinds():
                    assert asyncio.get_running_loop().time() < deadline, "the events never reached central"
                    await asyncio.sleep(0.1)
                kinds = await central_kinds()
                assert kinds.index("decision") < kinds.index("barrier_command") < kinds.index("tx_closed")
                gates = (await client.get("/api/v1/gates")).json()
                assert gates[0]["gate"] == "HUUNGHI" and gates[0]["online"]
            assert gate.node.sync_status()["link"]["up"]
        finally:
            await gate.stop()
            await asyncio.to_thread(central.stop)
            await asyncio.to_thread(broker.stop)

    asyncio.run(scenario())
