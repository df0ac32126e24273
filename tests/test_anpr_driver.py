"""The ANPR camera driver against its simulator through a real Mosquitto broker (TLS, a certificate each, ACL)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

from devices.anpr import AnprCameraDriver
from devices.protocols.anpr_json import AnprFields, AnprResult, encode_anpr_message
from devices.readings import DeviceFault, DeviceRecovered, PlateRead
from devices.transports.mqtt import MqttBus
from edge.config import MqttTransport
from simulators.anpr_camera import AnprCameraSimulator
from simulators.broker import PrivateBroker
from tests.conftest import wait_until
from tests.helpers import grant_device_topic


async def start(broker, site, topic="gate/T/IMP-1/anpr"):
    events: list = []
    node_tls, node, camera_tls = await asyncio.to_thread(grant_device_topic, broker, topic, "IMP-1-anpr")
    bus = MqttBus(broker.host, broker.port, node, tls=node_tls)
    driver = AnprCameraDriver("IMP-1-anpr", MqttTransport(type="mqtt", topic=topic),
                              site.profiles["generic-anpr-camera"], bus, events.append)
    driver.start()
    await bus.start()
    await asyncio.wait_for(bus.connected.wait(), 10)
    # names itself as the site does
    camera = AnprCameraSimulator(broker.host, broker.port, topic, "IMP-1-anpr", tls=camera_tls)
    await asyncio.to_thread(camera.start)
    return bus, driver, camera, events


def plates(events):
    return [e for e in events if isinstance(e, PlateRead)]


def test_plate_results_become_plate_readings(broker, site):
    async def scenario():
        bus, driver, camera, events = await start(broker, site, "gate/T/a/anpr")
        try:
            await asyncio.to_thread(camera.publish_plate, "桂F·12345", 0.93)
            await wait_until(lambda: plates(events), what="plate reading")
            read = plates(events)[0]
            assert (read.plate, read.device_id) == ("桂F·12345", "IMP-1-anpr")
            assert abs(read.confidence - 0.93) < 1e-9
        finally:
            await asyncio.to_thread(camera.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_malformed_messages_are_counted_and_the_driver_keeps_going(broker, site):
    async def scenario():
        bus, driver, camera, events = await start(broker, site, "gate/T/b/anpr")
        try:
            for payload in (b"{not json", b"[]", json.dumps({"plate": ""}).encode(), b"\xff\xfe"):
                await asyncio.to_thread(camera.publish_raw, payload)
            await asyncio.to_thread(camera.publish_plate, "29C-123.45", 0.2)  # below the profile's floor
            await asyncio.to_thread(camera.publish_plate, "29C-123.45", 0.9)
            await wait_until(lambda: plates(events), what="the good message")
            assert [p.plate for p in plates(events)] == ["29C-123.45"]
            assert driver.health.frames_bad == 4
            assert driver.ignored_low_confidence == 1
            assert "not UTF-8" in driver.health.to_dict()["last_error"]  # why the latest one was refused
        finally:
            await asyncio.to_thread(camera.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_plates_with_nul_or_bidi_override_are_refused_and_shown_as_last_error(broker, site):
    async def scenario():
        bus, driver, camera, events = await start(broker, site, "gate/T/g/anpr")
        try:
            for forged in ("29C\x00123.45", "29C-\u202e54.321"):  # NUL, and U+202E showing `29C-123.45`
                await asyncio.to_thread(camera.publish_plate, forged, 0.95)
            await asyncio.to_thread(camera.publish_plate, "29C-123.45", 0.9)
            await wait_until(lambda: plates(events), what="the good plate")
            assert [p.plate for p in plates(events)] == ["29C-123.45"]
            assert driver.health.frames_bad == 2
            assert "bidirectional control character U+202E" in driver.health.to_dict()["last_error"]
        finally:
            await asyncio.to_thread(camera.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_a_plate_naming_another_camera_is_refused_counted_and_shown(broker, site):
    async def scenario():
        bus, driver, camera, events = await start(broker, site, "gate/T/e/anpr")
        intruder_tls = await asyncio.to_thread(broker.allow, "EXP-1-anpr", publish=("gate/T/e/anpr",))
        intruder = AnprCameraSimulator(broker.host, broker.port, "gate/T/e/anpr", "EXP-1-anpr", tls=intruder_tls)
        await asyncio.to_thread(intruder.start)
        try:
            await asyncio.to_thread(intruder.publish_plate, "51D-678.90", 0.99)  # the plate of a cleared truck
            await wait_until(lambda: driver.health.frames_refused == 1, what="the foreign reading refused")
            await asyncio.to_thread(camera.publish_plate, "29C-123.45", 0.9)
            await wait_until(lambda: plates(events), what="the camera's own plate")
            assert [p.plate for p in plates(events)] == ["29C-123.45"]
            health = driver.health.to_dict()
            assert (health["frames_refused"], health["frames_bad"], health["frames_good"]) == (1, 0, 1)
            assert "names camera 'EXP-1-anpr'" in health["last_error"] and "IMP-1-anpr" in health["last_error"]
            assert health["last_error_at"] is not None
        finally:
            await asyncio.to_thread(intruder.stop)
            await asyncio.to_thread(camera.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_mosquitto_pub_as_a_third_party_camera_is_read(broker, site):
    """Mosquitto's own client, not our simulator, sends the README's plate message (QoS 1, not retained)."""
    async def scenario():
        bus, driver, camera, events = await start(broker, site, "gate/T/f/anpr")
        third = await asyncio.to_thread(broker.allow, "third-party-camera", publish=("gate/T/f/anpr",))
        payload = json.dumps({"plate": "29C-123.45", "confidence": 0.93, "timestamp": "2026-11-23T08:15:42Z",
                              "camera_id": "IMP-1-anpr"})
        try:
            await asyncio.to_thread(subprocess.run, [
                shutil.which("mosquitto_pub") or "mosquitto_pub", "-h", broker.host, "-p", str(broker.port),
                "--cafile", str(third.ca), "--cert", str(third.cert), "--key", str(third.key),
                "-i", "third-party-camera", "-q", "1", "-t", "gate/T/f/anpr", "-m", payload], check=True, timeout=10)
            await wait_until(lambda: plates(events), what="the plate from mosquitto_pub")
            read = plates(events)[0]
            assert (read.plate, read.device_id, read.confidence) == ("29C-123.45", "IMP-1-anpr", 0.93)
            assert read.observed_at == 1795421742.0  # the camera's own time, not the receive time
        finally:
            await asyncio.to_thread(camera.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_broker_restart_is_a_fault_then_readings_flow_again(site):
    async def scenario():
        own = PrivateBroker().start()
        bus, driver, camera, events = await start(own, site, "gate/T/c/anpr")
        try:
            await asyncio.to_thread(own.stop)
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            await asyncio.to_thread(own.start)  # the same broker (its CA, its ACL) on the same port
            await wait_until(lambda: any(isinstance(e, DeviceRecovered) for e in events), timeout_s=8,
                             what="reconnect")
            await wait_until(lambda: camera._client.is_connected(), timeout_s=8, what="camera reconnect")
            await asyncio.to_thread(camera.publish_plate, "51D-678.90", 0.9)
            await wait_until(lambda: plates(events), what="reading after the restart")
        finally:
            await asyncio.to_thread(camera.stop)
            await bus.stop()
            own.stop()

    asyncio.run(scenario())


def test_a_retained_plate_is_never_taken_as_a_reading(broker, site):
    """A plate read left retained at the broker (a misconfigured camera, or one replayed) is re-delivered on
    every (re)subscription: the device bus drops it, counts it, and takes only fresh readings."""
    async def scenario():
        topic = "gate/T/d/anpr"
        node_tls, node, camera_tls = await asyncio.to_thread(grant_device_topic, broker, topic, "IMP-1-anpr")
        camera = AnprCameraSimulator(broker.host, broker.port, topic, "IMP-1-anpr", tls=camera_tls)
        await asyncio.to_thread(camera.start)
        stale = encode_anpr_message(AnprResult("29C-111.11", 0.99, 1.0, "IMP-1-anpr"), AnprFields())
        await asyncio.to_thread(lambda: camera._client.publish(topic, stale, qos=1, retain=True).wait_for_publish(5))
        events: list = []
        bus = MqttBus(broker.host, broker.port, node, tls=node_tls)
        driver = AnprCameraDriver("IMP-1-anpr", MqttTransport(type="mqtt", topic=topic),
                                  site.profiles["generic-anpr-camera"], bus, events.append)
        driver.start()
        await bus.start()
        try:
            await wait_until(lambda: bus.retained_dropped == 1, what="the retained plate to be dropped")
            await asyncio.to_thread(camera.publish_plate, "51D-678.90", 0.9)
            await wait_until(lambda: plates(events), what="the fresh reading")
            assert [p.plate for p in plates(events)] == ["51D-678.90"]
            assert driver.health.connected  # the retained "online" status is still believed
        finally:
            await asyncio.to_thread(lambda: camera._client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5))
            await asyncio.to_thread(camera.stop)
            await bus.stop()

    asyncio.run(scenario())
