"""The weighbridge driver against its simulator over a real pty, for each indicator format."""

from __future__ import annotations

import asyncio

import pytest

from devices.readings import DeviceFault, DeviceRecovered, WeightRead
from devices.weighbridge import WeighbridgeDriver
from edge.config import SerialTransport
from simulators.weighbridge import WeighbridgeSimulator
from tests.conftest import wait_until

PROFILES = ["toledo-continuous-indicator", "sma-indicator", "rinstrum-auto-indicator"]


def weights(events):
    return [e.gross_kg for e in events if isinstance(e, WeightRead)]


def run_indicator(tmp_path, profile, settle_s: float = 0.3, variant: str | None = None):
    """The indicator simulator on a pty and our driver running on the other end: (sim, driver, events, task)."""
    sim = WeighbridgeSimulator(tmp_path / "tty" / "scale", profile.frame_format, checksum=profile.checksum,
                               settle_s=settle_s, variant=variant)
    sim.start()
    events: list = []
    driver = WeighbridgeDriver("IMP-1-scale", SerialTransport(type="serial", port=str(sim.link_path)), profile,
                               events.append, retry_s=0.1, silence_s=1.0)
    return sim, driver, events, asyncio.create_task(driver.run())


async def start(site, tmp_path, profile_id):
    from edge.config import load_profile

    profile = site.profiles.get(profile_id) or load_profile(profile_id)
    sim, driver, events, task = run_indicator(tmp_path, profile)
    await wait_until(lambda: driver.health.connected and driver.health.frames_good > 2, what="frames flowing")
    return sim, driver, events, task


async def stop(sim, driver, task):
    await driver.stop()
    task.cancel()
    sim.stop()


@pytest.mark.parametrize("profile_id", PROFILES)
def test_truck_on_the_bridge_gives_one_stable_weight(site, tmp_path, profile_id):
    async def scenario():
        sim, driver, events, task = await start(site, tmp_path, profile_id)
        try:
            sim.drive_on(28_430)
            await wait_until(lambda: weights(events), timeout_s=5, what="stable weight")
            frames = driver.health.frames_good
            await wait_until(lambda: driver.health.frames_good > frames + 10, what="more frames, same truck")
            assert weights(events) == [28_440]  # on the indicator's 20 kg graduation, reported once
            sim.drive_off()
            await wait_until(lambda: driver.last_frame is not None and driver.last_frame.weight_kg == 0,
                             what="empty bridge")
            sim.drive_on(31_000)
            await wait_until(lambda: len(weights(events)) == 2, timeout_s=5, what="the next truck")
            assert weights(events)[1] == 31_000
        finally:
            await stop(sim, driver, task)

    asyncio.run(scenario())


def test_noise_and_bad_checksums_are_counted_and_weighing_goes_on(site, tmp_path):
    async def scenario():
        sim, driver, events, task = await start(site, tmp_path, "toledo-continuous-indicator")
        try:
            sim.fault_garbage()
            sim.fault_bad_checksum()
            sim.fault_torn_frame()
            sim.drive_on(25_000)
            await wait_until(lambda: weights(events), timeout_s=5, what="stable weight")
            assert driver.health.frames_bad >= 2
        finally:
            await stop(sim, driver, task)

    asyncio.run(scenario())


def test_silent_indicator_is_a_fault_even_with_the_port_open(site, tmp_path):
    async def scenario():
        sim, driver, events, task = await start(site, tmp_path, "rinstrum-auto-indicator")
        try:
            sim.fault_slow()
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="silence fault")
            sim.recover_slow()
            await wait_until(lambda: any(isinstance(e, DeviceRecovered) for e in events), what="recovery")
        finally:
            await stop(sim, driver, task)

    asyncio.run(scenario())


def test_pulled_cable_then_reconnect_within_5_s_and_weighing_resumes(site, tmp_path):
    async def scenario():
        sim, driver, events, task = await start(site, tmp_path, "sma-indicator")
        try:
            sim.fault_disconnect()
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            sim.recover_disconnect()
            await wait_until(lambda: any(isinstance(e, DeviceRecovered) for e in events), timeout_s=5,
                             what="reconnect within 5 s")
            sim.drive_on(27_000)
            await wait_until(lambda: weights(events) == [27_000], timeout_s=5, what="weight after reconnect")
        finally:
            await stop(sim, driver, task)

    asyncio.run(scenario())


@pytest.mark.parametrize(("profile_id", "options", "variant"), [
    ("toledo-continuous-indicator", {"blank_tare": True}, "jaguar"),
    ("toledo-continuous-indicator", {"clone_status_bits": True}, "liden"),
    ("toledo-continuous-indicator", {"short_frame": True}, "cardinal-short"),
    ("sma-indicator", {"sma_variant": "cardinal"}, "cardinal"),
])
def test_a_vendor_variant_weighs_a_truck_once_its_profile_option_is_set(tmp_path, profile_id, options, variant):
    from edge.config import WeighbridgeProfile, load_profile

    base = load_profile(profile_id)
    profile = WeighbridgeProfile.model_validate({**base.model_dump(), **options})

    async def scenario():
        sim, driver, events, task = run_indicator(tmp_path, profile, variant=variant)
        try:
            await wait_until(lambda: driver.health.frames_good > 2, what="variant frames decoded")
            sim.drive_on(28_430)
            await wait_until(lambda: weights(events), timeout_s=5, what="stable weight")
            assert weights(events) == [28_440] and driver.health.frames_bad == 0
        finally:
            await stop(sim, driver, task)

    asyncio.run(scenario())


def test_a_vendor_variant_without_its_profile_option_never_gives_a_weight(tmp_path):
    from edge.config import load_profile

    profile = load_profile("toledo-continuous-indicator")

    async def scenario():
        sim, driver, events, task = run_indicator(tmp_path, profile, settle_s=0.1, variant="liden")
        try:
            sim.drive_on(28_430)
            await wait_until(lambda: driver.health.frames_bad > 10, what="clone frames refused")
            assert weights(events) == [] and driver.health.frames_good == 0
        finally:
            await stop(sim, driver, task)

    asyncio.run(scenario())
