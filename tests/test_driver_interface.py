"""Every device driver offers the node one interface (devices/driver.py): await start(), await stop(), health."""

from __future__ import annotations

import asyncio

from devices.anpr import AnprCameraDriver
from devices.barrier import BarrierDriver
from devices.driver import Driver
from devices.eseal import EsealReaderDriver
from devices.profiles import MqttTransport, SerialTransport
from devices.readings import PlateRead, SealRead, SealStatus
from devices.scanner import ScannerDriver
from devices.transports.modbus import tcp_hub
from devices.transports.mqtt import MqttBus
from devices.transports.video import LatestFrameSource
from devices.video_camera import VideoCameraDriver
from devices.weighbridge import WeighbridgeDriver
from simulators.anpr_camera import AnprCameraSimulator
from simulators.eseal_reader import EsealReaderSimulator
from tests.conftest import wait_until


def test_every_kind_of_driver_the_node_builds_is_a_driver(site, tmp_path):
    profiles, sink = site.profiles, [].append
    serial = SerialTransport(type="serial", port=str(tmp_path / "no-such-tty"))
    bus = MqttBus("127.0.0.1", 1, "interface-test")
    drivers = [
        BarrierDriver("b", tcp_hub("127.0.0.1", 1), profiles["generic-barrier-plc"].modbus, sink),
        EsealReaderDriver("e", serial, profiles["ascii-eseal-reader"], sink),
        WeighbridgeDriver("w", serial, next(p for p in profiles.values() if p.kind == "weighbridge"), sink),
        AnprCameraDriver("a", MqttTransport(type="mqtt", topic="t/a"), profiles["generic-anpr-camera"], bus, sink),
        ScannerDriver("s", MqttTransport(type="mqtt", topic="t/s"), next(p for p in profiles.values()
                                                                        if p.kind == "scanner"), bus, sink, lane="L"),
        VideoCameraDriver("v", LatestFrameSource(str(tmp_path / "no-such.mp4")), sink, reader=None),
    ]
    for driver in drivers:
        assert isinstance(driver, Driver), type(driver).__name__
        assert driver.health.device_id == driver.device_id


def test_a_serial_reader_started_through_the_interface_reads_until_stopped(site, tmp_path):
    async def scenario():
        sim = EsealReaderSimulator(tmp_path / "tty" / "eseal", reader_id="R1")
        sim.start()
        events: list = []
        driver = EsealReaderDriver("IMP-1-eseal", SerialTransport(type="serial", port=str(sim.link_path)),
                                   site.profiles["ascii-eseal-reader"], events.append, retry_s=0.1)
        try:
            await driver.start()
            await wait_until(lambda: driver.health.connected, what="port open")
            sim.present_seal("CN-SEAL-000101", SealStatus.INTACT, None, 77)
            await wait_until(lambda: any(isinstance(e, SealRead) for e in events), what="seal reading")
        finally:
            await driver.stop()
            sim.stop()
        assert not [task for task in asyncio.all_tasks() if task.get_name() == "IMP-1-eseal"]

    asyncio.run(scenario())


def test_a_stopped_camera_passes_no_more_readings_to_its_lane(broker, site):
    async def scenario():
        topic, events, seen = "gate/T/iface/anpr", [], []
        node_tls = await asyncio.to_thread(broker.allow, "test-iface", subscribe=(topic, f"{topic}/status"))
        # an identity of its own: another test's camera holding IMP-1-anpr on the shared broker would be kicked
        camera_tls = await asyncio.to_thread(broker.allow, "iface-camera", publish=(topic, f"{topic}/status"))
        bus = MqttBus(broker.host, broker.port, "test-iface", tls=node_tls)
        driver = AnprCameraDriver("IMP-1-anpr", MqttTransport(type="mqtt", topic=topic),
                                  site.profiles["generic-anpr-camera"], bus, events.append)
        await driver.start()
        bus.subscribe(topic, lambda _topic, payload: seen.append(payload))  # a witness on the same bus
        await bus.start()
        camera = AnprCameraSimulator(broker.host, broker.port, topic, "IMP-1-anpr", tls=camera_tls)
        await asyncio.to_thread(camera.start)
        try:
            await asyncio.to_thread(camera.publish_plate, "29C12345")
            await wait_until(lambda: any(isinstance(e, PlateRead) for e in events), what="plate reading")
            await driver.stop()
            await asyncio.to_thread(camera.publish_plate, "29C67890")
            await wait_until(lambda: len(seen) == 2, what="the second result on the bus")
            assert [e.plate for e in events if isinstance(e, PlateRead)] == ["29C12345"]
        finally:
            await asyncio.to_thread(camera.stop)
            await bus.stop()

    asyncio.run(scenario())
