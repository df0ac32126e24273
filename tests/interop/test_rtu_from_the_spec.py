"""Modbus RTU both ways against a slave and a master written here from the specification, over real ptys.

The RTU framing below follows "MODBUS over Serial Line, Specification and Implementation Guide
V1.02" (section 2.5.1: address, function, data, CRC low byte first; section 6.2.2: the CRC
procedure) and the "MODBUS Application Protocol Specification V1.1b3" (function codes 1, 2, 3, 5,
6, 15, 16 and their exception codes); it shares no code with pymodbus nor with our simulator, and
its CRC is checked against crcmod, a third implementation.

- our barrier driver (pymodbus underneath) drives a spec slave that shares its RS-485 line with a
  second slave: that one hears everything and must never be touched; the coils never both set;
- a spec master talks to our RTU PLC simulator: exact echoes, the spec's exception replies, silence
  for other slave ids, broadcasts applied and never answered, frames with a bad CRC dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import struct
import termios
import time
import tty

import crcmod.predefined
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.barrier import BarrierDriver
from devices.readings import DeviceFault
from devices.transports.modbus import rtu_hub
from simulators.barrier_plc import BarrierPlcRtuSimulator, crc16_modbus
from tests.conftest import wait_until

CRCMOD_MODBUS = crcmod.predefined.mkCrcFun("modbus")


def spec_crc(frame: bytes) -> int:
    """CRC-16 as section 6.2.2 of the serial-line spec describes it, step by step."""
    register = 0xFFFF  # 1. load a 16-bit register with FFFF hex
    for byte in frame:
        register ^= byte  # 2. exclusive-OR the byte with the low-order byte of the register
        for _ in range(8):  # 3-5. shift right eight times, XOR A001 hex when the LSB shifted out was 1
            lsb = register & 1
            register >>= 1
            if lsb:
                register ^= 0xA001
    return register


def with_crc(frame: bytes) -> bytes:
    """The frame with its CRC appended, low-order byte first (spec section 6.2.2)."""
    crc = spec_crc(frame)
    return frame + bytes([crc & 0xFF, crc >> 8])


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and spec_crc(frame[:-2]) == frame[-2] | frame[-1] << 8


def test_the_crc_of_the_spec_example_frame():
    # Read 10 holding registers from slave 1, the frame printed in many vendors' manuals: 01 03 00 00 00 0A C5 CD.
    assert with_crc(bytes.fromhex("01030000000A")) == bytes.fromhex("01030000000AC5CD")
    assert CRCMOD_MODBUS(bytes.fromhex("01030000000A")) == 0xCDC5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_our_simulator_crc_agrees_with_the_spec_procedure_and_crcmod(data):
    assert crc16_modbus(data) == spec_crc(data) == CRCMOD_MODBUS(data)


def pty_pair() -> tuple[int, int, str]:
    """A raw pty: (master fd, slave fd, slave path). The slave fd stays open so the master never reads EIO."""
    master, slave = os.openpty()
    for fd in (master, slave):
        tty.setraw(fd)
    attributes = termios.tcgetattr(slave)
    attributes[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    return master, slave, os.ttyname(slave)


def request_length(buffer: bytes) -> int | None:
    """Bytes in the request frame at the head of buffer (serial-line spec: known from the function code)."""
    if len(buffer) < 2:
        return None
    if buffer[1] in (15, 16):
        return None if len(buffer) < 7 else 9 + buffer[6]
    return 8


class SpecSlave:
    """One RTU slave's tables and its application layer (FC 1, 2, 3, 5, 6, 15, 16), from the spec."""

    def __init__(self, slave_id: int, size: int = 16):
        self.slave_id = slave_id
        self.coils = [False] * size
        self.inputs = [False] * size
        self.registers = [0] * size
        self.coil_writes: list[tuple[int, bool]] = []
        self.both_set = 0
        self.frames_heard = 0

    def apply(self, pdu: bytes, watch: tuple[int, int]) -> bytes:
        function, data = pdu[0], pdu[1:]

        def exception(code: int) -> bytes:
            return bytes([function | 0x80, code])

        if function in (1, 2, 3):
            address, count = struct.unpack(">HH", data[:4])
            table = {1: self.coils, 2: self.inputs, 3: self.registers}[function]
            if address + count > len(table):
                return exception(2)
            if function == 3:
                return bytes([3, 2 * count]) + b"".join(struct.pack(">H", v) for v in table[address:address + count])
            packed = bytearray((count + 7) // 8)
            for i, bit in enumerate(table[address:address + count]):
                packed[i // 8] |= bit << (i % 8)
            return bytes([function, len(packed)]) + bytes(packed)
        if function == 5:
            address, value = struct.unpack(">HH", data[:4])
            if value not in (0xFF00, 0x0000):
                return exception(3)
            if address >= len(self.coils):
                return exception(2)
            self._set_coil(address, value == 0xFF00, watch)
            return pdu  # the normal response is an echo of the request
        if function == 6:
            address, value = struct.unpack(">HH", data[:4])
            if address >= len(self.registers):
                return exception(2)
            self.registers[address] = value
            return pdu
        if function == 15:
            address, count, _ = struct.unpack(">HHB", data[:5])
            for i in range(count):
                self._set_coil(address + i, bool(data[5 + i // 8] >> (i % 8) & 1), watch)
            return pdu[:5]
        if function == 16:
            address, count, _ = struct.unpack(">HHB", data[:5])
            self.registers[address:address + count] = list(struct.unpack(f">{count}H", data[5:5 + 2 * count]))
            return pdu[:5]
        return exception(1)

    def _set_coil(self, address: int, value: bool, watch: tuple[int, int]) -> None:
        self.coils[address] = value
        self.coil_writes.append((address, value))
        if self.coils[watch[0]] and self.coils[watch[1]]:
            self.both_set += 1


class SpecRtuLine:
    """The slaves on one RS-485 line (the master end of a pty): each answers only its own id."""

    def __init__(self, fd: int, slaves: list[SpecSlave], watch: tuple[int, int]):
        self.fd, self.watch = fd, watch
        self.slaves = {slave.slave_id: slave for slave in slaves}
        self.buffer = b""
        self.last_byte_at = 0.0

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            data = os.read(self.fd, 256)
            now = time.monotonic()
            if now - self.last_byte_at > 0.05:  # a silence ends any partial frame (t3.5)
                self.buffer = b""
            self.last_byte_at = now
            self.buffer += data
            while (length := request_length(self.buffer)) is not None and len(self.buffer) >= length:
                frame, self.buffer = self.buffer[:length], self.buffer[length:]
                self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        if not crc_ok(frame):
            return  # spec: a frame with a bad CRC is discarded, never answered
        address, pdu = frame[0], frame[1:-2]
        for slave in self.slaves.values():
            slave.frames_heard += 1
        if address == 0:
            for slave in self.slaves.values():
                slave.apply(pdu, self.watch)  # broadcast: every slave acts, none replies
            return
        slave = self.slaves.get(address)
        if slave is not None:
            os.write(self.fd, with_crc(bytes([address]) + slave.apply(pdu, self.watch)))


def test_our_driver_drives_a_spec_rtu_slave_on_a_shared_line_without_touching_the_other(site):
    modbus = site.profiles["generic-barrier-plc"].modbus.model_copy(update={"pulse_ms": 40})
    coils = modbus.coils
    master, slave_fd, path = pty_pair()
    ours, neighbour = SpecSlave(modbus.device_id), SpecSlave(modbus.device_id + 1)
    ours.inputs[modbus.discrete_inputs.boom_closed] = True

    async def scenario():
        line = SpecRtuLine(master, [ours, neighbour], (coils.open, coils.close))
        line.start()
        events: list = []
        driver = BarrierDriver("EXP-1-plc", rtu_hub(path, device_id=modbus.device_id, timeout_s=0.5), modbus,
                               events.append)
        await driver.start()
        try:
            await asyncio.wait_for(driver.first_poll.wait(), 5)
            ours.inputs[modbus.discrete_inputs.arrival_loop] = True
            await wait_until(lambda: driver.inputs.arrival, what="arrival loop read over RTU")
            for _ in range(2):
                await driver.open()
                await driver.open()
                await driver.close()
            await wait_until(lambda: ours.registers[modbus.holding_registers.heartbeat] > 0, what="heartbeat")
        finally:
            await driver.stop()
            line.stop()
        assert ours.both_set == 0
        assert sum(1 for coil, value in ours.coil_writes if coil == coils.open and value) == 4
        assert ours.coils[coils.open] is False and ours.coils[coils.close] is False
        assert neighbour.frames_heard > 0 and neighbour.coil_writes == [] and not any(neighbour.registers)
        assert not any(isinstance(e, DeviceFault) for e in events)

    try:
        asyncio.run(scenario())
    finally:
        os.close(master)
        os.close(slave_fd)


def transact(fd: int, frame: bytes, expect_reply: bool = True, wait_s: float = 0.4) -> bytes:
    """Send one frame as a spec master and collect what comes back within wait_s (nothing, for silence)."""
    os.write(fd, frame)
    reply, deadline = b"", time.monotonic() + wait_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        reply += os.read(fd, 256)
        if expect_reply and len(reply) >= 5 and crc_ok(reply):
            break
    return reply


def test_our_rtu_plc_answers_a_spec_master_by_the_rules(site):
    modbus = site.profiles["generic-barrier-plc"].modbus
    coils, regs, me = modbus.coils, modbus.holding_registers, modbus.device_id
    master, slave_fd, path = pty_pair()

    def frame(slave: int, pdu: bytes) -> bytes:
        return with_crc(bytes([slave]) + pdu)

    async def scenario():
        plc = BarrierPlcRtuSimulator(modbus, path, travel_s=0.05)
        await plc.start()
        try:
            def ask(request: bytes, expect_reply: bool = True) -> bytes:
                return transact(master, request, expect_reply)

            async def call(request: bytes, expect_reply: bool = True) -> bytes:
                return await asyncio.to_thread(ask, request, expect_reply)

            heartbeat = frame(me, struct.pack(">BHH", 6, regs.heartbeat, 41))
            assert await call(heartbeat) == heartbeat, "FC6: an exact echo"
            open_on = frame(me, struct.pack(">BHH", 5, coils.open, 0xFF00))
            assert await call(open_on) == open_on, "FC5: an exact echo"
            assert await call(frame(me, struct.pack(">BHH", 5, coils.open, 0x1234))) == frame(me, bytes([0x85, 3]))
            assert await call(frame(me, struct.pack(">BHH", 6, regs.fault_code, 0))) == frame(me, bytes([0x86, 2]))
            assert await call(frame(me, struct.pack(">BHH", 3, 0, 200))) == frame(me, bytes([0x83, 3])), "quantity"
            assert await call(frame(me, struct.pack(">BHH", 3, 1, 3))) == frame(me, bytes([0x83, 2])), "beyond the map"
            assert await call(frame(me, struct.pack(">BHH", 4, 0, 1))) == frame(me, bytes([0x84, 1]))
            multiple = frame(me, struct.pack(">BHHB", 15, coils.green_light, 2, 1) + b"\x01")
            assert await call(multiple) == frame(me, struct.pack(">BHH", 15, coils.green_light, 2))
            registers = await call(frame(me, struct.pack(">BHH", 3, 0, 3)))
            assert registers[:3] == bytes([me, 3, 6]) and struct.unpack(">H", registers[3:5])[0] == 41
            assert crc_ok(registers)
            # Another slave's frame, a broadcast, a frame with a bad CRC: silence on the line.
            assert await call(frame(me + 1, struct.pack(">BHH", 3, 0, 1)), expect_reply=False) == b""
            assert await call(frame(0, struct.pack(">BHH", 6, regs.heartbeat, 42)), expect_reply=False) == b""
            damaged = bytearray(frame(me, struct.pack(">BHH", 3, 0, 1)))
            damaged[-1] ^= 0xFF
            assert await call(bytes(damaged), expect_reply=False) == b""
            assert plc.frames_for_others == 1 and plc.broadcasts == 1 and plc.bad_crc_frames == 1
            assert plc.model.heartbeat == 42, "the broadcast was applied"
            await wait_until(lambda: plc.boom_open, what="the spec master's rising edge opened the boom")
        finally:
            await plc.stop()

    try:
        asyncio.run(scenario())
    finally:
        os.close(master)
        os.close(slave_fd)
