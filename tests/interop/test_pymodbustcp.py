"""Modbus TCP against pyModbusTCP, an implementation we did not write, in both roles.

- pyModbusTCP's client against our PLC simulator: it checks every write echo itself (a reply that
  does not match the request is its "server reply does not match the request" error), so a
  simulator that answers a write with anything but an echo or an exception fails here.
- pyModbusTCP's server as the PLC (plain memory, no model of ours) driven by our barrier driver:
  its data bank records every coil change, so we see exactly what a third-party PLC would see.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from contextlib import asynccontextmanager

import pytest
from pyModbusTCP.client import ModbusClient
from pyModbusTCP.constants import (
    EXP_DATA_ADDRESS,
    EXP_DATA_VALUE,
    EXP_ILLEGAL_FUNCTION,
    EXP_SLAVE_DEVICE_FAILURE,
    MB_EXCEPT_ERR,
)
from pyModbusTCP.server import DataBank, ModbusServer

from devices.barrier import BarrierDriver
from devices.readings import DeviceFault
from devices.transports.modbus import tcp_hub
from simulators.barrier_plc import BarrierPlcSimulator
from simulators.broker import free_port
from tests.conftest import wait_until


def regmap(site, **changes):
    modbus = site.profiles["generic-barrier-plc"].modbus
    return modbus.model_copy(update=changes) if changes else modbus


# ------------------------------------------------------------ pyModbusTCP client → our PLC simulator


def test_an_independent_client_gets_exact_echoes_and_the_spec_exceptions_from_our_plc(site):
    modbus = regmap(site)
    coils, regs = modbus.coils, modbus.holding_registers

    def client_session(port: int) -> dict:
        client = ModbusClient(host="127.0.0.1", port=port, unit_id=modbus.device_id, timeout=2.0)
        out: dict = {}
        out["heartbeat_write"] = client.write_single_register(regs.heartbeat, 7)
        out["open_write"] = client.write_single_coil(coils.open, True)  # echo checked by pyModbusTCP
        out["open_release"] = client.write_single_coil(coils.open, False)
        out["lights"] = client.write_multiple_coils(coils.green_light, [True, False])
        out["registers"] = client.read_holding_registers(0, 3)
        # FC5 with a value other than 0xFF00/0x0000: exception 03.
        out["fc5_1234"] = client.custom_request(struct.pack(">BHH", 5, coils.open, 0x1234))
        out["fc5_1234_except"] = client.last_except
        # A write to a read-only register (fault_code): exception 02, never a reply that is not an echo.
        out["fault_code_write"] = client.write_single_register(regs.fault_code, 0)
        out["fault_code_except"] = client.last_except
        out["beyond_map"] = client.read_coils(1000, 1)
        out["beyond_map_except"] = client.last_except
        out["fc4"] = client.read_input_registers(0, 1)
        out["fc4_except"] = client.last_except
        client.close()
        return out

    async def scenario():
        port = free_port()
        plc = BarrierPlcSimulator(modbus, port=port, travel_s=0.05)
        await plc.start()
        try:
            out = await asyncio.to_thread(client_session, port)
            assert out["heartbeat_write"] and out["open_write"] and out["open_release"] and out["lights"]
            assert out["registers"][0] == 7 and plc.model.green and not plc.model.red
            assert out["fc5_1234"] is None and out["fc5_1234_except"] == EXP_DATA_VALUE
            assert out["fault_code_write"] is False and out["fault_code_except"] == EXP_DATA_ADDRESS
            assert out["beyond_map"] is None and out["beyond_map_except"] == EXP_DATA_ADDRESS
            assert out["fc4"] is None and out["fc4_except"] == EXP_ILLEGAL_FUNCTION
            await wait_until(lambda: plc.boom_open, what="the rising edge from an independent client opened it")
        finally:
            await plc.stop()

    asyncio.run(scenario())


def test_a_refused_close_is_an_exception_to_an_independent_client_not_a_different_reply(site):
    modbus = regmap(site)

    def close_on_the_truck(port: int) -> tuple[bool, int, int]:
        client = ModbusClient(host="127.0.0.1", port=port, unit_id=modbus.device_id, timeout=2.0)
        ok = client.write_single_coil(modbus.coils.close, True)
        error, code = client.last_error, client.last_except
        client.close()
        return ok, error, code

    async def scenario():
        port = free_port()
        plc = BarrierPlcSimulator(modbus, port=port, travel_s=0.05)
        await plc.start()
        try:
            plc.model.write_heartbeat(1, plc.clock())
            plc.model.write_command_coils(True, False, plc.clock())
            plc.model.write_command_coils(False, False, plc.clock())
            await wait_until(lambda: plc.boom_open, what="boom open")
            plc.set_loop("safety", True)
            ok, error, code = await asyncio.to_thread(close_on_the_truck, port)
            assert not ok and error == MB_EXCEPT_ERR and code == EXP_SLAVE_DEVICE_FAILURE
            assert plc.boom_open and not plc.model.close_coil and plc.model.close_refusals == 1
        finally:
            await plc.stop()

    asyncio.run(scenario())


# ------------------------------------------------------------ our barrier driver → pyModbusTCP server


class RecordingBank(DataBank):
    """pyModbusTCP's own data bank, recording each coil change as a third-party PLC sees it."""

    def __init__(self, regmap, **sizes):
        super().__init__(**sizes)
        self.regmap = regmap
        self.lock = threading.Lock()
        self.changes: list[tuple[int, bool]] = []
        self.both_set = 0

    def on_coils_change(self, address, from_value, to_value, srv_info):
        with self.lock:
            self.changes.append((address, bool(to_value)))
            coils = self.regmap.coils
            now = self.get_coils(coils.open, 2)
            if now and now[coils.open - coils.open] and now[coils.close - coils.open]:
                self.both_set += 1

    def rising_edges(self, address: int) -> int:
        with self.lock:
            return sum(1 for coil, value in self.changes if coil == address and value)


def start_third_party_plc(bank: DataBank) -> tuple[ModbusServer, int]:
    port = free_port()
    server = ModbusServer(host="127.0.0.1", port=port, no_block=True, data_bank=bank)
    server.start()
    return server, port


@asynccontextmanager
async def our_driver(port: int, modbus):
    """Our barrier driver, started against the PLC at 127.0.0.1:port; yields (driver, its events) and stops it."""
    events: list = []
    driver = BarrierDriver("IMP-1-plc", tcp_hub("127.0.0.1", port, modbus.device_id, 1.0), modbus, events.append)
    await driver.start()
    try:
        yield driver, events
    finally:
        await driver.stop()


@pytest.mark.parametrize("mode", ["pulse", "level"])
def test_our_driver_on_a_plc_we_did_not_write_never_sets_both_coils_and_makes_rising_edges(site, mode):
    modbus = regmap(site, command_mode=mode, pulse_ms=50, heartbeat_period_s=0.2, heartbeat_timeout_s=1.0)
    coils = modbus.coils
    bank = RecordingBank(modbus)
    server, port = start_third_party_plc(bank)

    async def scenario():
        async with our_driver(port, modbus) as (driver, events):
            await asyncio.wait_for(driver.first_poll.wait(), 5)
            for _ in range(3):
                await driver.open()
                await driver.open()  # a repeated open: again a rising edge
                await driver.close()
            await wait_until(lambda: bank.get_holding_registers(modbus.holding_registers.heartbeat)[0] > 0,
                             what="heartbeat written to the third-party PLC")
        assert bank.both_set == 0, "open and close were set together on the PLC"
        assert bank.rising_edges(coils.open) == 6, "every open() is a rising edge the PLC can act on"
        assert bank.rising_edges(coils.close) == 3
        final = bank.get_coils(coils.open, 2)
        if mode == "pulse":
            assert final == [False, False], "pulses end released"
        else:
            assert final == [False, True], "level: close held, open released"
        assert not any(isinstance(e, DeviceFault) for e in events)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_a_third_party_plc_answering_with_an_exception_is_a_named_fault_not_a_crash(site):
    modbus = regmap(site)
    # A PLC whose input table is shorter than the profile says: it answers exception 02 to the poll.
    bank = RecordingBank(modbus, d_inputs_size=max(modbus.discrete_inputs.model_dump().values()))
    server, port = start_third_party_plc(bank)

    async def scenario():
        async with our_driver(port, modbus) as (driver, events):
            await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
            fault = next(e for e in events if isinstance(e, DeviceFault))
            assert "exception reply 2" in fault.error

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
