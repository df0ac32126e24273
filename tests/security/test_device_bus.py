"""Red team on the device bus: real Mosquitto with TLS, a certificate per device and the site's ACL.

Each test plays what an intruder with a laptop on the gate LAN (or a stolen device certificate)
would try, against the simulated gate the demo runs; Mosquitto's own `mosquitto_pub` is one of the
judges, so the refusals are not only our client's view.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from devices.protocols.anpr_json import AnprFields, AnprResult, encode_anpr_message
from devices.protocols.scanner_json import ScanEvent, ScanMessage, encode_scanner_message
from devices.readings import ScanVerdict, SealStatus
from devices.transports.mqtt import MqttTls, new_client
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.kiosk.views import status_view
from edge.lane import LaneState
from edge.pki import make_ca
from simulators.broker import PrivateBroker
from simulators.gate import SimulatedGate
from tests.conftest import wait_until
from tests.helpers import started_gate

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC)
DECLARATION = Declaration(
    number="105000000999", kind=DeclarationKind.IMPORT, gate="HUUNGHI", plates=("桂F54321",),
    containers=("CSQU3054383",), seals=("SEAL-999",), gross_weight_kg=28000, channel=RiskChannel.GREEN,
    status=DeclarationStatus.CLEARED, valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
)
SCANNER_TOPIC = "gate/HUUNGHI/IMP-1/scanner"
IMP_CAMERA_TOPIC = "gate/HUUNGHI/IMP-1/anpr/front"
NODE_CLIENT_ID = "smartgate-huunghi-edge"


async def _gate(site, tmp_path: Path) -> SimulatedGate:
    return await started_gate(site, tmp_path, [DECLARATION], kiosk_port=None, boom_travel_s=0.2)


def _try_connect(broker: PrivateBroker, tls: MqttTls | None, client_id: str = "laptop",
                 timeout_s: float = 5.0) -> str:
    """'connected', or why the broker would not have this client."""
    outcome: list[str] = []
    done = threading.Event()
    client = new_client(client_id, tls)

    def on_connect(_c, _u, _f, reason_code, _p) -> None:
        outcome.append("connected" if not reason_code.is_failure else f"refused: {reason_code}")
        done.set()

    def on_disconnect(_c, _u, _f, reason_code, _p) -> None:
        outcome.append(f"dropped: {reason_code}")
        done.set()

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    try:
        client.connect(broker.host, broker.port, keepalive=5)
    except OSError as exc:  # ssl.SSLError is an OSError: the handshake itself failed
        return f"handshake failed: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            return "no answer"
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()


def _mosquitto_pub(broker: PrivateBroker, *extra: str, topic: str = SCANNER_TOPIC, message: str = "x",
                   ) -> subprocess.CompletedProcess:
    """Mosquitto's own client (MQTT 5, so a refused publish is reported as such)."""
    return subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", "mqttv5", "-q", "1",
                           "-t", topic, "-m", message, *extra], capture_output=True, text=True, timeout=20)


def _tls_args(tls: MqttTls) -> tuple[str, ...]:
    return "--cafile", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key)


def _scan(event: ScanEvent, verdict: ScanVerdict, scan_id: str = "XR-1") -> bytes:
    return encode_scanner_message(ScanMessage(event=event, scan_id=scan_id, lane="IMP-1", containers=("CSQU3054383",),
                                              verdict=verdict, image_ref=None,
                                              timestamp=datetime.now(UTC).replace(microsecond=0)))


def _publish_as(broker: PrivateBroker, tls: MqttTls, topic: str, payload: bytes, *, client_id: str = "forger",
                retain: bool = False) -> None:
    """Connect with a (stolen) credential, publish one QoS 1 message and wait for the broker's PUBACK."""
    client = new_client(client_id, tls)
    client.connect(broker.host, broker.port, keepalive=5)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


# ---------------------------------------------------------------- who may connect


def test_anonymous_and_plaintext_clients_are_refused(broker):
    """No TLS, or TLS without a client certificate: Mosquitto's own client and ours are both refused."""
    ca = broker.credentials("smartgate-huunghi-edge").ca
    plaintext = _mosquitto_pub(broker)
    assert plaintext.returncode != 0, plaintext
    no_certificate = _mosquitto_pub(broker, "--cafile", str(ca))
    assert no_certificate.returncode != 0, no_certificate
    assert _try_connect(broker, None) != "connected"


def test_a_laptop_with_its_own_ca_cannot_connect_or_publish(broker, tmp_path: Path):
    """A certificate from any other CA, even with a device's name as its common name, is refused."""
    from edge.pki import issue

    make_ca(tmp_path / "rogue", "rogue CA")
    forged = issue(tmp_path / "rogue", tmp_path / "rogue", "IMP-1-xray")
    real_ca = broker.credentials("smartgate-huunghi-edge").ca
    rogue = MqttTls(real_ca, forged.cert, forged.key)
    assert _try_connect(broker, rogue) != "connected"
    refused = _mosquitto_pub(broker, *_tls_args(rogue), message=_scan(ScanEvent.COMPLETED, ScanVerdict.CLEAR).decode())
    assert refused.returncode != 0


def test_a_revoked_camera_certificate_is_refused(tmp_path: Path):
    with PrivateBroker() as own:
        camera = own.allow("LOST-camera", publish=("gate/T/lost",))
        kept = MqttTls(camera.ca, tmp_path / "c.crt", tmp_path / "c.key")
        kept.cert.write_bytes(camera.cert.read_bytes())
        kept.key.write_bytes(camera.key.read_bytes())
        assert _try_connect(own, kept) == "connected"
        own.revoke("LOST-camera")  # the CRL, and the broker restarted to read it
        assert _try_connect(own, kept) != "connected"


# ---------------------------------------------------------------- a stolen device certificate


def test_forged_scanner_clear_from_a_camera_certificate_keeps_the_truck_held(site, tmp_path: Path):
    """The issue's attack: a `clear` published right after the real scan started, then the real `suspect`.
    With another lane's camera certificate the forged clear never reaches the node; the truck stays held."""
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            rig, node = gate.rigs["IMP-1"], gate.node
            thief = gate.broker.credentials("EXP-1-anpr")
            await asyncio.to_thread(gate.rigs["EXP-1"].camera.stop)  # its certificate is in the intruder's hands
            scanner_driver = node.drivers["IMP-1-xray"]
            controller = node.lanes["IMP-1"]
            await asyncio.to_thread(rig.camera.publish_plate, "桂F·54321", 0.95)
            rig.scale.drive_on(28100)
            rig.plc.set_loop("arrival", True)
            rig.eseal.present_seal("SEAL-999", SealStatus.INTACT, "CSQU3054383")
            await asyncio.to_thread(rig.scanner.publish, ScanEvent.STARTED, "XR-1", ["CSQU3054383"],
                                    ScanVerdict.PENDING)
            await wait_until(lambda: scanner_driver.health.frames_good == 1, what="the real scan_started")

            forged = _scan(ScanEvent.COMPLETED, ScanVerdict.CLEAR)
            await asyncio.to_thread(_publish_as, gate.broker, thief, SCANNER_TOPIC, forged)
            judge = await asyncio.to_thread(_mosquitto_pub, gate.broker, *_tls_args(thief), message=forged.decode())
            assert "not authorized" in (judge.stdout + judge.stderr).lower(), judge
            # The real scanner's next message is delivered after anything the broker took before it.
            await asyncio.to_thread(rig.scanner.publish, ScanEvent.STARTED, "XR-1", ["CSQU3054383"],
                                    ScanVerdict.PENDING)
            await wait_until(lambda: scanner_driver.health.frames_good == 2, what="the scanner's own message")
            assert controller.state == LaneState.COLLECTING and not rig.plc.boom_open

            await asyncio.to_thread(rig.scanner.publish, ScanEvent.COMPLETED, "XR-1", ["CSQU3054383"],
                                    ScanVerdict.SUSPECT)
            await wait_until(lambda: controller.state == LaneState.DECIDED, what="the decision")
            decision = controller.machine.tx.decision
            assert decision.outcome.value == "hold" and "SCANNER_SUSPECT" in decision.reasons
            assert scanner_driver.health.frames_good == 3
            assert not rig.plc.boom_open
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_a_camera_certificate_cannot_forge_another_lanes_plate_or_a_device_status(site, tmp_path: Path):
    """EXP-1's camera publishes a cleared truck's plate on IMP-1's camera topic and `offline` for IMP-1's
    X-ray; the node gets neither (IMP-1 stays out of FAULT), and the camera reads nothing of the bus."""
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            rig, node = gate.rigs["IMP-1"], gate.node
            thief = gate.broker.credentials("EXP-1-anpr")
            await asyncio.to_thread(gate.rigs["EXP-1"].camera.stop)
            camera_driver, xray_driver = node.drivers["IMP-1-anpr"], node.drivers["IMP-1-xray"]
            overheard: list[str] = []
            spy = new_client("spy", thief)
            spy.on_message = lambda _c, _u, message: overheard.append(message.topic)
            spy.connect(gate.broker.host, gate.broker.port, keepalive=5)
            spy.subscribe([("gate/#", 1), ("#", 1)])
            spy.loop_start()
            try:
                plate = encode_anpr_message(AnprResult("桂F·54321", 0.99, None, "IMP-1-anpr"), AnprFields())
                await asyncio.to_thread(spy.publish(IMP_CAMERA_TOPIC, plate, qos=1).wait_for_publish, 5)
                await asyncio.to_thread(spy.publish(f"{SCANNER_TOPIC}/status", b"offline", qos=1,
                                                    retain=True).wait_for_publish, 5)
                # The devices' own next messages come after the forged ones.
                await asyncio.to_thread(rig.camera.publish_plate, "29C-123.45", 0.9)
                await asyncio.to_thread(rig.scanner.publish, ScanEvent.STARTED, "XR-2", [], ScanVerdict.PENDING)
                await wait_until(lambda: xray_driver.health.frames_good == 1 and camera_driver.health.frames_good == 1,
                                 what="the devices' own messages")
                assert camera_driver.health.frames_good == 1  # only the real camera's plate
                assert xray_driver.health.connected and node.lanes["IMP-1"].state != LaneState.FAULT
                assert overheard == []  # only the node may read the devices' topics
            finally:
                spy.disconnect()
                spy.loop_stop()
        finally:
            await gate.stop()

    asyncio.run(scenario())


def test_taking_the_nodes_client_id_does_not_knock_the_node_off(site, tmp_path: Path):
    """Without the node's certificate nobody connects as the node; with another certificate the broker
    replaces the client id by that certificate's name, so the node's session is untouched."""
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            node, rig = gate.node, gate.rigs["IMP-1"]
            await asyncio.to_thread(gate.rigs["EXP-1"].camera.stop)
            reconnects = node.bus.health.reconnects
            ca = gate.broker.credentials(NODE_CLIENT_ID).ca
            anonymous = await asyncio.to_thread(_mosquitto_pub, gate.broker, "--cafile", str(ca), "-i", NODE_CLIENT_ID)
            assert anonymous.returncode != 0
            thief = gate.broker.credentials("EXP-1-anpr")
            assert await asyncio.to_thread(_try_connect, gate.broker, thief, NODE_CLIENT_ID) == "connected"
            await asyncio.to_thread(rig.camera.publish_plate, "29C-123.45", 0.9)
            await wait_until(lambda: node.drivers["IMP-1-anpr"].health.frames_good == 1, what="the node still reads")
            assert node.bus.health.connected and node.bus.health.reconnects == reconnects
            log = gate.broker.log_file.read_text()
            assert "as EXP-1-anpr (p2, c1, k5, u'EXP-1-anpr')" in log  # the id it asked for was not used
        finally:
            await gate.stop()

    asyncio.run(scenario())


# ---------------------------------------------------------------- retained messages


def test_a_retained_plate_is_not_taken_after_the_node_resubscribes(site, tmp_path: Path):
    """A plate left retained on the camera's topic (an old reading, or one the camera's stolen certificate
    planted) is re-delivered when the node (re)subscribes: it is dropped, and the next truck does not get it."""
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            rig = gate.rigs["IMP-1"]
            old = encode_anpr_message(AnprResult("桂F·54321", 0.99, None, "IMP-1-anpr"), AnprFields())
            await asyncio.to_thread(rig.camera._client.publish(IMP_CAMERA_TOPIC, old, qos=1, retain=True)
                                    .wait_for_publish, 5)
            await gate.stop_node()
            await gate.start_node()
            node = gate.node
            camera = node.drivers["IMP-1-anpr"]
            await wait_until(lambda: node.bus.retained_dropped >= 1 or camera.health.frames_good >= 1,
                             what="the retained plate to reach the node")
            assert camera.health.frames_good == 0 and node.bus.retained_dropped == 1
            rig.plc.set_loop("arrival", True)  # the next truck, within the pre-arrival window of the old plate
            await wait_until(lambda: node.lanes["IMP-1"].machine.tx is not None, what="the truck's transaction")
            assert node.lanes["IMP-1"].machine.tx.plates == {}
        finally:
            await asyncio.to_thread(lambda: gate.rigs["IMP-1"].camera._client.publish(
                IMP_CAMERA_TOPIC, b"", qos=1, retain=True).wait_for_publish(5))
            await gate.stop()

    asyncio.run(scenario())


# ---------------------------------------------------------------- the node's own configuration


def test_smartgate_run_refuses_a_plaintext_broker_unless_the_site_says_insecure(site, tmp_path: Path):
    data = site.site.model_dump(mode="json", exclude_none=True)
    data["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    refused = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--site", str(path), "--port", "0"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert f"{path}: mqtt.tls.ca: cannot read" in refused.stderr
    assert "smartgate pki init" in refused.stderr and "insecure: true" in refused.stderr
    assert not (tmp_path / "data" / "journal.sqlite").exists()  # refused before anything started


def test_an_explicitly_insecure_lane_runs_and_the_kiosk_says_so(site, tmp_path: Path):
    """The opt-out exists (a plaintext broker the site names `insecure: true`) and is shown to the officers."""
    async def scenario():
        plaintext = await asyncio.to_thread(PrivateBroker(secure=False).start)
        gate = SimulatedGate(site, tmp_path, kiosk_port=None, boom_travel_s=0.2, broker=plaintext)
        try:
            await gate.start()
            assert gate.site.site.mqtt.insecure is True
            assert status_view(gate.node)["mqtt_insecure"] is True
            await asyncio.to_thread(gate.rigs["IMP-1"].camera.publish_plate, "29C-123.45", 0.9)
            await wait_until(lambda: gate.node.drivers["IMP-1-anpr"].health.frames_good == 1, what="a reading")
        finally:
            await gate.stop()
            await asyncio.to_thread(plaintext.stop)

    asyncio.run(scenario())


def test_a_secured_gate_is_not_shown_as_insecure(site, tmp_path: Path):
    async def scenario():
        gate = await _gate(site, tmp_path)
        try:
            assert status_view(gate.node)["mqtt_insecure"] is False
            assert json.loads(json.dumps(status_view(gate.node)))["mqtt_insecure"] is False
        finally:
            await gate.stop()

    asyncio.run(scenario())
