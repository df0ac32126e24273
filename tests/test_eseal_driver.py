"""The e-seal reader driver against its simulator over a real pty pair."""

from __future__ import annotations

import asyncio

from devices.eseal import EsealReaderDriver
from devices.protocols.eseal_ascii import encode_raw_line
from devices.readings import DeviceFault, DeviceRecovered, SealRead, SealStatus
from edge.config import SerialTransport
from simulators.eseal_reader import EsealReaderSimulator
from tests.conftest import wait_until


def seals(events):
    return [e for e in events if isinstance(e, SealRead)]


async def start(site, tmp_path):
    sim = EsealReaderSimulator(tmp_path / "tty" / "eseal", reader_id="R1")
    sim.start()
    events: list = []
    driver = EsealReaderDriver("IMP-1-eseal", SerialTransport(type="serial", port=str(sim.link_path)),
                               site.profiles["ascii-eseal-reader"], events.append, retry_s=0.1)
    task = asyncio.create_task(driver.run())
    await wait_until(lambda: driver.health.connected, what="port open")
    return sim, driver, events, task


def test_seal_frames_become_seal_readings(site, tmp_path):
    async def scenario():
        sim, driver, events, task = await start(site, tmp_path)
        try:
            sim.present_seal("cn-seal-000101", SealStatus.INTACT, "CSQU3054383", 77)  # lower case, dashes
            sim.present_seal("CN-SEAL-000102", SealStatus.TAMPERED, None, 12)
            await wait_until(lambda: len(seals(events)) == 2, what="two seal readings")
            first, second = seals(events)
            assert (first.seal_id, first.status, first.container, first.battery_pct) == \
                ("CNSEAL000101", SealStatus.INTACT, "CSQU3054383", 77)  # matching form, like the declaration's
            assert second.status == SealStatus.TAMPERED and second.container is None
            assert driver.health.frames_good == 2
        finally:
            await driver.stop()
            task.cancel()
            sim.stop()

    asyncio.run(scenario())


def test_garbage_and_bad_checksums_are_counted_and_reading_goes_on(site, tmp_path):
    async def scenario():
        sim, driver, events, task = await start(site, tmp_path)
        try:
            sim.write_raw(b"\x00\xff garbage \x13\r\n")
            sim.write_raw(encode_raw_line("ESEAL,R1,FORGED,S,90,,20261123080000", checksum="00"))
            sim.present_seal("CN-SEAL-000103")
            await wait_until(lambda: len(seals(events)) == 1, what="the good frame")
            assert seals(events)[0].seal_id == "CNSEAL000103"
            assert driver.health.frames_bad >= 2
            assert "checksum mismatch" in driver.health.to_dict()["last_error"]
            assert not any(e.seal_id == "FORGED" for e in seals(events))
        finally:
            await driver.stop()
            task.cancel()
            sim.stop()

    asyncio.run(scenario())


def test_pulled_cable_is_a_fault_and_reading_resumes_after_reconnect(site, tmp_path):
    async def scenario():
        sim, driver, events, task = await start(site, tmp_path)
        try:
            sim.stop()
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            assert not driver.health.connected
            sim.start()  # a new pty behind the same link, like a USB adapter plugged back in
            await wait_until(lambda: any(isinstance(e, DeviceRecovered) for e in events), timeout_s=5,
                             what="reconnect within 5 s")
            sim.present_seal("CN-SEAL-000104")
            await wait_until(lambda: any(s.seal_id == "CNSEAL000104" for s in seals(events)),
                             what="reading after reconnect")
            assert driver.health.reconnects >= 1
        finally:
            await driver.stop()
            task.cancel()
            sim.stop()

    asyncio.run(scenario())
