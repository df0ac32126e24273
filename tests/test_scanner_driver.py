"""The container scanner driver against its simulator through a real broker (TLS, a certificate each, ACL)."""

from __future__ import annotations

import asyncio

from devices.protocols.scanner_json import ScanEvent
from devices.readings import DeviceFault, DeviceRecovered, ScanRead, ScanVerdict
from devices.scanner import ScannerDriver
from devices.transports.mqtt import MqttBus
from edge.config import MqttTransport, load_profile
from simulators.scanner import ScannerSimulator
from tests.conftest import wait_until
from tests.helpers import grant_device_topic


def scans(events):
    return [e for e in events if isinstance(e, ScanRead)]


async def start(broker, topic):
    events: list = []
    node_tls, node, scanner_tls = await asyncio.to_thread(grant_device_topic, broker, topic, "xray-1")
    bus = MqttBus(broker.host, broker.port, node, tls=node_tls)
    driver = ScannerDriver("IMP-1-xray", MqttTransport(type="mqtt", topic=topic), load_profile("generic-nii-scanner"),
                           bus, events.append, lane="IMP-1")
    driver.start()
    await bus.start()
    await asyncio.wait_for(bus.connected.wait(), 10)
    scanner = ScannerSimulator(broker.host, broker.port, topic, "IMP-1", "xray-1", tls=scanner_tls)
    await asyncio.to_thread(scanner.start)
    return bus, driver, scanner, events


def test_scan_started_then_completed_with_verdict(broker):
    async def scenario():
        bus, driver, scanner, events = await start(broker, "gate/T/xray/a")
        try:
            scan_id = scanner.new_scan_id()
            await asyncio.to_thread(scanner.publish, ScanEvent.STARTED, scan_id, ["CSQU3054383"], ScanVerdict.PENDING)
            await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, scan_id, ["CSQU3054383"],
                                    ScanVerdict.SUSPECT, "nii://img/1.png")
            await wait_until(lambda: len(scans(events)) == 2, what="two scan messages")
            started, completed = scans(events)
            assert (started.completed, started.verdict) == (False, ScanVerdict.PENDING)
            assert (completed.completed, completed.verdict, completed.image_ref) == (
                True, ScanVerdict.SUSPECT, "nii://img/1.png")
            assert completed.containers == ("CSQU3054383",)
        finally:
            await asyncio.to_thread(scanner.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_malformed_scan_message_is_counted_not_read(broker):
    async def scenario():
        bus, driver, scanner, events = await start(broker, "gate/T/xray/b")
        try:
            await asyncio.to_thread(scanner.fault_garbage)
            await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, "S1", [], ScanVerdict.CLEAR)
            await wait_until(lambda: scans(events), what="the good message")
            assert driver.health.frames_bad == 1 and len(scans(events)) == 1
        finally:
            await asyncio.to_thread(scanner.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_a_scan_naming_another_lane_is_refused_counted_and_shown_as_last_error(broker):
    async def scenario():
        bus, driver, scanner, events = await start(broker, "gate/T/xray/d")
        other_tls = await asyncio.to_thread(broker.allow, "xray-2", publish=("gate/T/xray/d",))
        other_lane = ScannerSimulator(broker.host, broker.port, "gate/T/xray/d", "EXP-1", "xray-2", tls=other_tls)
        await asyncio.to_thread(other_lane.start)
        try:
            await asyncio.to_thread(other_lane.publish, ScanEvent.COMPLETED, "F1", ["CSQU3054383"], ScanVerdict.CLEAR)
            await wait_until(lambda: driver.health.frames_refused == 1, what="the forged clear refused")
            await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, "S1", ["CSQU3054383"], ScanVerdict.SUSPECT)
            await wait_until(lambda: scans(events), what="the lane's own scan")
            assert [(s.scan_id, s.verdict) for s in scans(events)] == [("S1", ScanVerdict.SUSPECT)]
            health = driver.health.to_dict()
            assert (health["frames_refused"], health["frames_bad"], health["frames_good"]) == (1, 0, 1)
            assert "names lane 'EXP-1'" in health["last_error"] and "serves lane 'IMP-1'" in health["last_error"]
        finally:
            await asyncio.to_thread(other_lane.stop)
            await asyncio.to_thread(scanner.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_a_scan_with_a_bidi_override_in_its_lane_is_refused_at_the_codec(broker):
    async def scenario():
        bus, driver, scanner, events = await start(broker, "gate/T/xray/e")
        try:
            await asyncio.to_thread(scanner.publish_raw, (
                '{"event":"scan_completed","scan_id":"S9","lane":"IMP-1\u202e","containers":[],'
                '"verdict":"clear","timestamp":"2026-11-23T08:15:42Z"}').encode())
            await wait_until(lambda: driver.health.frames_bad == 1, what="the refusal")
            assert "lane holds a bidirectional control character U+202E" in driver.health.last_error
            assert not scans(events)
        finally:
            await asyncio.to_thread(scanner.stop)
            await bus.stop()

    asyncio.run(scenario())


def test_scanner_going_offline_is_a_fault_and_it_recovers(broker):
    async def scenario():
        bus, driver, scanner, events = await start(broker, "gate/T/xray/c")
        try:
            await asyncio.to_thread(scanner.fault_disconnect)
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), timeout_s=8,
                             what="offline (last will)")
            await asyncio.to_thread(scanner.recover_disconnect)
            await wait_until(lambda: any(isinstance(e, DeviceRecovered) for e in events), timeout_s=5,
                             what="back online")
        finally:
            await asyncio.to_thread(scanner.stop)
            await bus.stop()

    asyncio.run(scenario())
