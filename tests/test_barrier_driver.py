"""The barrier driver against the PLC simulator over real Modbus TCP."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from devices.barrier import BarrierDriver, SafetyInterlock
from devices.protocols.barrier_map import FAULT_HEARTBEAT_LOST
from devices.readings import BoomChanged, BoomPosition, DeviceFault, DeviceRecovered, Loop, LoopChanged
from devices.transports.modbus import ModbusIOError, tcp_hub
from simulators.barrier_plc import BarrierPlcSimulator
from simulators.broker import free_port
from tests.conftest import wait_until


def regmap(site):
    return site.profiles["generic-barrier-plc"].modbus


async def rig(site, travel_s=0.2, **map_changes):
    modbus = regmap(site).model_copy(update=map_changes) if map_changes else regmap(site)
    port = free_port()
    plc = BarrierPlcSimulator(modbus, port=port, travel_s=travel_s)
    await plc.start()
    events: list = []
    driver = BarrierDriver("IMP-1-plc", tcp_hub("127.0.0.1", port, modbus.device_id, 0.5), modbus,
                           events.append)
    await driver.start()
    await asyncio.wait_for(driver.first_poll.wait(), 5)
    return plc, driver, events


def test_loops_and_boom_reach_the_driver_as_events(site):
    async def scenario():
        plc, driver, events = await rig(site)
        try:
            assert BoomChanged("IMP-1-plc", BoomPosition.CLOSED, events[-1].at) in events
            plc.set_loop("arrival", True)
            await wait_until(lambda: any(isinstance(e, LoopChanged) and e.loop == Loop.ARRIVAL and e.occupied
                                         for e in events), what="arrival loop event")
            await driver.open()
            await wait_until(lambda: any(isinstance(e, BoomChanged) and e.position == BoomPosition.OPEN
                                         for e in events), what="boom open")
            await driver.set_lights(green=True)
            assert plc.model.green and not plc.model.red
        finally:
            await driver.stop()
            await plc.stop()

    asyncio.run(scenario())


def test_close_is_refused_while_the_safety_loop_is_occupied(site):
    async def scenario():
        plc, driver, events = await rig(site, travel_s=0.05)
        try:
            await driver.open()
            await wait_until(lambda: plc.boom_open, what="boom open")
            plc.set_loop("safety", True)
            with pytest.raises(SafetyInterlock):
                await driver.close()
            # Even a raw close coil written behind the driver's back is refused by the PLC, with an
            # exception reply (04), never with a reply that is not an echo.
            with pytest.raises(ModbusIOError, match="exception reply 4"):
                await driver.hub.request("write_coil", regmap(site).coils.close, True)
            assert plc.boom_open and plc.model.close_refusals == 1
            plc.set_loop("safety", False)
            await driver.close()
            await wait_until(lambda: plc.boom_closed, what="boom closed")
            assert plc.model.closed_on_vehicle == 0
        finally:
            await driver.stop()
            await plc.stop()

    asyncio.run(scenario())


def test_boom_closing_reverses_when_a_vehicle_enters_the_safety_loop(site):
    async def scenario():
        plc, driver, events = await rig(site, travel_s=1.0)
        try:
            await driver.open()
            await wait_until(lambda: plc.boom_open, what="boom open")
            await driver.close()
            await wait_until(lambda: plc.model.motion == -1, what="closing")
            plc.set_loop("safety", True)
            await wait_until(lambda: plc.boom_open, what="boom reopened")
            assert plc.model.closed_on_vehicle == 0
        finally:
            await driver.stop()
            await plc.stop()

    asyncio.run(scenario())


def test_plc_goes_safe_when_the_node_stops_its_heartbeat(site):
    async def scenario():
        plc, driver, events = await rig(site, travel_s=0.05, heartbeat_period_s=0.1, heartbeat_timeout_s=0.5)
        plc.model.heartbeat_timeout_s = 0.5
        try:
            await driver.open()
            await wait_until(lambda: plc.boom_open, what="boom open")
            plc.set_loop("safety", True)  # a truck under the boom when the node dies
        finally:
            await driver.stop()
        await wait_until(lambda: plc.model.fault_code == FAULT_HEARTBEAT_LOST, what="heartbeat watchdog")
        assert plc.boom_open and plc.model.red, "must not close on the truck"
        plc.set_loop("safety", False)
        await wait_until(lambda: plc.boom_closed, what="safe close once the loop is clear")
        assert plc.model.closed_on_vehicle == 0
        await plc.stop()

    asyncio.run(scenario())


def test_dead_plc_is_a_fault_and_the_driver_reconnects_when_it_returns(site):
    async def scenario():
        plc, driver, events = await rig(site)
        try:
            await plc.stop()
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            assert not driver.health.connected
            await plc.start()
            await wait_until(lambda: any(isinstance(e, DeviceRecovered) for e in events), timeout_s=5,
                             what="recovery within 5 s")
            assert driver.health.connected and driver.health.reconnects >= 1
        finally:
            await driver.stop()
            await plc.stop()

    asyncio.run(scenario())


@asynccontextmanager
async def rtu_rig(site, tmp_path, **hub_options):
    """A PLC on Modbus RTU at one end of a pty pair and a started driver at the other; yields (wire, plc, driver, hub,
    events) and stops driver, PLC and wire."""
    from devices.transports.modbus import rtu_hub
    from simulators.barrier_plc import BarrierPlcRtuSimulator
    from simulators.serial_wire import SerialWire

    wire = SerialWire(tmp_path / "node", tmp_path / "plc")
    wire.start()
    plc = BarrierPlcRtuSimulator(regmap(site), str(wire.device_link), travel_s=0.05)
    await plc.start()
    events: list = []
    hub = rtu_hub(str(wire.node_link), **hub_options)
    driver = BarrierDriver("EXP-1-plc", hub, regmap(site), events.append)
    await driver.start()
    try:
        yield wire, plc, driver, hub, events
    finally:
        await driver.stop()
        await plc.stop()
        wire.stop()


def test_plc_on_modbus_rtu_through_a_pulled_and_replugged_cable(site, tmp_path):
    async def scenario():
        async with rtu_rig(site, tmp_path, timeout_s=0.3) as (wire, plc, driver, _hub, events):
            await asyncio.wait_for(driver.first_poll.wait(), 5)
            plc.set_loop("arrival", True)
            await wait_until(lambda: driver.inputs.arrival, what="arrival over RTU")
            wire.cut()
            await plc.fault_disconnect()
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            wire.reconnect()
            await plc.recover_disconnect()
            await wait_until(lambda: any(isinstance(e, DeviceRecovered) for e in events), timeout_s=5,
                             what="recovery within 5 s")
            await driver.open()
            await wait_until(lambda: plc.boom_open, what="boom open after reconnect")

    asyncio.run(scenario())


def coils_now(plc) -> tuple[bool, bool]:
    return plc.model.open_coil, plc.model.close_coil


def test_pulse_mode_makes_a_fresh_rising_edge_for_every_open_on_an_edge_triggered_plc(site):
    async def scenario():
        plc, driver, events = await rig(site, travel_s=0.05, pulse_ms=60)
        seen: set[tuple[bool, bool]] = set()
        watcher = asyncio.create_task(_watch_coils(plc, seen))
        try:
            for _ in range(3):
                await driver.open()
                assert coils_now(plc) == (True, False), "open() returns with the coil set"
                await wait_until(lambda: coils_now(plc) == (False, False), what="the pulse ends with the coil released")
                await wait_until(lambda: plc.boom_open, what="boom open")
                await driver.close()
                await wait_until(lambda: plc.boom_closed, what="boom closed")
            openings = [what for _, what in plc.model.history if what == "opening"]
            assert len(openings) == 3, "each open() is a rising edge the PLC acts on"
            assert (True, True) not in seen and plc.model.conflicting_commands == 0
        finally:
            watcher.cancel()
            await driver.stop()
            await plc.stop()

    asyncio.run(scenario())


async def _watch_coils(plc, seen: set) -> None:
    while True:
        seen.add(coils_now(plc))
        await asyncio.sleep(0.002)


def test_close_cuts_an_open_pulse_short_and_never_sets_both_coils(site):
    async def scenario():
        plc, driver, events = await rig(site, travel_s=0.5, pulse_ms=5000)
        seen: set[tuple[bool, bool]] = set()
        watcher = asyncio.create_task(_watch_coils(plc, seen))
        try:
            started = asyncio.get_running_loop().time()
            await driver.open()
            assert coils_now(plc) == (True, False)
            await driver.close()  # a tamper alarm: now, not after the 5 s pulse
            assert asyncio.get_running_loop().time() - started < 2
            assert coils_now(plc) == (False, True)
            assert plc.model.motion == -1 or plc.boom_closed
        finally:
            await driver.stop()  # the close pulse still running is released before the link goes
            watcher.cancel()
            await plc.stop()
        assert coils_now(plc) == (False, False)
        assert (True, True) not in seen and plc.model.conflicting_commands == 0

    asyncio.run(scenario())


def test_level_mode_holds_the_coil_and_releases_it_before_the_other_command(site):
    async def scenario():
        plc, driver, events = await rig(site, travel_s=0.05, command_mode="level")
        seen: set[tuple[bool, bool]] = set()
        watcher = asyncio.create_task(_watch_coils(plc, seen))
        try:
            await driver.open()
            assert coils_now(plc) == (True, False)
            await wait_until(lambda: plc.boom_open, what="boom open")
            await driver.open()  # again: released and set, a new rising edge
            assert coils_now(plc) == (True, False)
            await driver.close()
            assert coils_now(plc) == (False, True)
            await wait_until(lambda: plc.boom_closed, what="boom closed")
            await driver.open()
            await wait_until(lambda: plc.boom_open, what="boom open again")
            assert (True, True) not in seen and plc.model.conflicting_commands == 0
        finally:
            watcher.cancel()
            await driver.stop()
            await plc.stop()

    asyncio.run(scenario())


def test_plc_watchdog_is_armed_from_power_up_so_a_silent_master_leaves_the_boom_closed(site):
    async def scenario():
        modbus = regmap(site).model_copy(update={"heartbeat_period_s": 0.1, "heartbeat_timeout_s": 0.4})
        port = free_port()
        plc = BarrierPlcSimulator(modbus, port=port, travel_s=0.05)
        await plc.start()
        hub = tcp_hub("127.0.0.1", port, timeout_s=0.5)
        try:
            # A master that opens the boom but never writes a heartbeat.
            await hub.request("write_coil", modbus.coils.open, True)
            await wait_until(lambda: plc.model.fault_code == FAULT_HEARTBEAT_LOST, what="watchdog from power-up")
            await wait_until(lambda: plc.boom_closed, what="boom closed-safe")
            assert plc.model.red and not plc.model.green
            await hub.request("write_coil", modbus.coils.open, False)
            await hub.request("write_coil", modbus.coils.open, True)
            await asyncio.sleep(0.2)
            assert plc.boom_closed, "no opening while the heartbeat is lost"
        finally:
            await hub.close()
            await plc.stop()

    asyncio.run(scenario())


def test_noise_hits_on_rs485_are_retried_and_the_lane_does_not_fault(site, tmp_path):
    async def scenario():
        async with rtu_rig(site, tmp_path, timeout_s=0.2, retries=2) as (_wire, plc, driver, hub, events):
            await asyncio.wait_for(driver.first_poll.wait(), 5)
            for _ in range(5):
                plc.fault_bad_checksum()  # one reply lost to noise, five times
                await wait_until(lambda: plc.corrupt_replies == 0, what="noisy reply sent")
                await asyncio.sleep(0.3)
            await driver.open()
            await wait_until(lambda: plc.boom_open, what="boom open through the noise")
            assert hub.health.retries >= 5
            assert not any(isinstance(e, DeviceFault) for e in events), "a noise hit is not a lane FAULT"

    asyncio.run(scenario())


def test_a_restarted_node_s_first_heartbeat_is_a_change_the_plc_sees(site):
    async def scenario():
        modbus = regmap(site).model_copy(update={"heartbeat_period_s": 5.0, "heartbeat_timeout_s": 10.0})
        port = free_port()
        plc = BarrierPlcSimulator(modbus, port=port, travel_s=0.05)
        plc.model.write_heartbeat(1, plc.clock())  # what the node wrote before it restarted
        changed_at = plc.model.heartbeat_changed_at
        await plc.start()
        driver = BarrierDriver("IMP-1-plc", tcp_hub("127.0.0.1", port, modbus.device_id, 0.5), modbus, lambda e: None)
        await driver.start()
        try:
            await wait_until(lambda: plc.model.heartbeat_changed_at != changed_at, what="a changed heartbeat")
            assert plc.model.heartbeat == 2
        finally:
            await driver.stop()
            await plc.stop()

    asyncio.run(scenario())
