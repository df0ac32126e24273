"""Barrier PLC simulator: a Modbus slave (TCP, or RTU on a pty) in front of a model of boom, loops and lights.

The model behaves like the PLC of the generic profile:
- command coils are edge-triggered: the boom starts up on a rising edge (0 → 1) of the open coil and
  down on a rising edge of the close coil; a coil that stays set does nothing more. Open and close
  set together is an interlock: neither acts (`conflicting_commands` counts it);
- a close while the safety loop is occupied is refused with Modbus exception 04 (the coil is not
  written, the fault code says why), and a closing boom reverses if the safety loop becomes occupied;
- the heartbeat watchdog is armed from power-up: when the heartbeat register has not changed for
  heartbeat_timeout_s (counted from power-up until the first heartbeat) the PLC goes to its safe
  state: red light, boom closed if (and only when) the safety loop is clear, opening refused until
  the heartbeat changes again. A master that never sends a heartbeat leaves the boom closed-safe.

The slave follows the Modbus application protocol: every write (FC5, FC6, FC15, FC16) is answered
by an exact echo (FC5/FC6) or the standard FC15/FC16 reply, or by an exception: 01 unknown function,
02 an address outside the map or a write to a read-only register (fault_code, cycle_counter,
inputs), 03 a bad value or quantity (FC5 accepts only 0xFF00 and 0x0000), 04 a command the PLC
refuses. On RTU it answers only frames with its own slave id; a broadcast (id 0) is applied and
never answered; a frame with a bad CRC is dropped unanswered. The protocol core (`ModbusSlaveCore`)
does no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.protocols.barrier_map import (
    FAULT_CLOSE_REFUSED_SAFETY,
    FAULT_HEARTBEAT_LOST,
    FAULT_NONE,
    BarrierInputs,
    encode_inputs,
)
from edge.config import BarrierModbusMap

# Modbus exception codes (Modbus Application Protocol V1.1b3, section 7).
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
SERVER_DEVICE_FAILURE = 0x04


class ModbusExceptionReply(Exception):
    """A request the slave answers with a Modbus exception code."""

    def __init__(self, code: int, why: str = ""):
        super().__init__(why or f"exception {code:02X}")
        self.code = code


@dataclass
class PlcModel:
    """The PLC's logic. position: 0.0 closed … 1.0 open. No I/O; time is passed in."""

    regmap: BarrierModbusMap
    travel_s: float = 1.0
    heartbeat_timeout_s: float | None = None
    position: float = 0.0
    motion: int = 0  # +1 opening, -1 closing, 0 still
    loops: dict[str, bool] = field(default_factory=lambda: {"arrival": False, "safety": False,
                                                            "exit": False})
    green: bool = False
    red: bool = True
    open_coil: bool = False
    close_coil: bool = False
    heartbeat: int = 0
    heartbeat_changed_at: float | None = None  # power-up, until the first heartbeat
    fault_code: int = FAULT_NONE
    cycles: int = 0
    close_refusals: int = 0
    closed_on_vehicle: int = 0
    conflicting_commands: int = 0  # writes that left open and close set together
    history: list[tuple[float, str]] = field(default_factory=list)
    _last_tick: float | None = None

    def __post_init__(self) -> None:
        if self.heartbeat_timeout_s is None:
            self.heartbeat_timeout_s = self.regmap.heartbeat_timeout_s

    def power_up(self, now: float) -> None:
        """Arm the heartbeat watchdog: the node has heartbeat_timeout_s from now to send one."""
        self.heartbeat_changed_at = now
        self._last_tick = now

    # -- inputs the PLC serves
    def inputs(self) -> BarrierInputs:
        return BarrierInputs(
            arrival=self.loops["arrival"], safety=self.loops["safety"], exit=self.loops["exit"],
            boom_opened=self.position >= 1.0, boom_closed=self.position <= 0.0,
        )

    # -- command coils (edge-triggered)
    def write_command_coils(self, open_coil: bool, close_coil: bool, now: float) -> None:
        """New values of both command coils; acts on a rising edge. Raises for a refused close (04)."""
        rising_open = open_coil and not self.open_coil
        rising_close = close_coil and not self.close_coil
        if rising_close and self.loops["safety"]:
            self.fault_code = FAULT_CLOSE_REFUSED_SAFETY
            self.close_refusals += 1
            self.history.append((now, "close refused: safety loop occupied"))
            raise ModbusExceptionReply(SERVER_DEVICE_FAILURE, "close refused: safety loop occupied")
        self.open_coil, self.close_coil = open_coil, close_coil
        if open_coil and close_coil:
            if rising_open or rising_close:
                self.conflicting_commands += 1
                self.history.append((now, "open and close set together: ignored"))
            return
        if rising_open:
            self.command_open(now)
        elif rising_close:
            self.command_close(now)

    def command_open(self, now: float) -> None:
        if self.fault_code == FAULT_HEARTBEAT_LOST:
            self.history.append((now, "open refused: heartbeat lost"))
            return
        if self.position < 1.0:
            self.motion = 1
            self.history.append((now, "opening"))

    def command_close(self, now: float) -> None:
        if self.position > 0.0:
            self.motion = -1
            self.history.append((now, "closing"))
        if self.fault_code == FAULT_CLOSE_REFUSED_SAFETY:
            self.fault_code = FAULT_NONE

    def write_heartbeat(self, value: int, now: float) -> None:
        if value != self.heartbeat:
            self.heartbeat = value
            self.heartbeat_changed_at = now
            if self.fault_code == FAULT_HEARTBEAT_LOST:
                self.fault_code = FAULT_NONE
                self.history.append((now, "heartbeat back"))

    def set_loop(self, loop: str, occupied: bool, now: float) -> None:
        if loop not in self.loops:
            raise ValueError(f"no loop {loop!r}: the loops are {', '.join(self.loops)}")
        self.loops[loop] = occupied
        if loop == "safety" and occupied and self.motion == -1:
            self.motion = 1  # reverse: never close onto a vehicle
            self.history.append((now, "reversing: safety loop occupied while closing"))

    # -- time
    def tick(self, now: float) -> None:
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        if self.heartbeat_changed_at is None:
            self.heartbeat_changed_at = now  # powered up on the first tick
        if (self.heartbeat_timeout_s and now - self.heartbeat_changed_at > self.heartbeat_timeout_s
                and self.fault_code != FAULT_HEARTBEAT_LOST):
            self.fault_code = FAULT_HEARTBEAT_LOST
            self.green, self.red = False, True
            self.history.append((now, "heartbeat lost: safe state"))
            if not self.loops["safety"] and self.position > 0.0:
                self.motion = -1
        if self.fault_code == FAULT_HEARTBEAT_LOST and self.motion >= 0 and self.position > 0.0 \
                and not self.loops["safety"]:
            self.motion = -1  # the vehicle has gone: now it is safe to close
        if self.motion == -1 and self.loops["safety"]:
            self.motion = 1
        if self.motion and self.travel_s > 0:
            self.position = min(1.0, max(0.0, self.position + self.motion * dt / self.travel_s))
        elif self.motion:
            self.position = 1.0 if self.motion > 0 else 0.0
        if self.motion == 1 and self.position >= 1.0:
            self.motion = 0
            self.history.append((now, "open"))
        if self.motion == -1 and self.position <= 0.0:
            self.motion = 0
            self.cycles += 1
            if self.loops["safety"]:
                self.closed_on_vehicle += 1
            self.history.append((now, "closed"))


def _bits(values: list[bool]) -> bytes:
    out = bytearray((len(values) + 7) // 8)
    for i, value in enumerate(values):
        if value:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unbits(data: bytes, count: int) -> list[bool]:
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


class ModbusSlaveCore:
    """The PLC's Modbus application layer: request PDU in, response PDU out. No I/O."""

    def __init__(self, model: PlcModel, clock: Callable[[], float]):
        self.model, self.clock = model, clock
        regmap = model.regmap
        self.coils, self.regs = regmap.coils, regmap.holding_registers
        self.coil_count = max(regmap.coils.model_dump().values()) + 1
        self.input_count = max(regmap.discrete_inputs.model_dump().values()) + 1
        self.register_count = max(regmap.holding_registers.model_dump().values()) + 1
        self.exceptions_sent = 0

    def response_to(self, pdu: bytes) -> bytes:
        """The response PDU for one request PDU (an exception response when it is refused)."""
        function = pdu[0] if pdu else 0
        try:
            now = self.clock()
            self.model.tick(now)
            return self._dispatch(function, pdu[1:], now)
        except ModbusExceptionReply as exc:
            self.exceptions_sent += 1
            return bytes([(function | 0x80) & 0xFF, exc.code])

    @staticmethod
    def _check_span(address: int, count: int, limit: int, size: int) -> None:
        if not 1 <= count <= limit:
            raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, f"quantity {count} outside 1..{limit}")
        if address + count > size:
            raise ModbusExceptionReply(ILLEGAL_DATA_ADDRESS, f"{address}+{count} beyond {size}")

    def _dispatch(self, function: int, data: bytes, now: float) -> bytes:
        if function in (1, 2, 3, 5, 6) and len(data) != 4:
            raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, "request length")
        if function in (1, 2):
            address, count = struct.unpack(">HH", data)
            self._check_span(address, count, 2000, self.coil_count if function == 1 else self.input_count)
            table = self._coil_table() if function == 1 else self._input_table()
            payload = _bits(table[address:address + count])
            return bytes([function, len(payload)]) + payload
        if function == 3:
            address, count = struct.unpack(">HH", data)
            self._check_span(address, count, 125, self.register_count)
            table = self._register_table()
            return bytes([3, 2 * count]) + struct.pack(f">{count}H", *table[address:address + count])
        if function == 5:
            address, value = struct.unpack(">HH", data)
            if value not in (0xFF00, 0x0000):
                raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, f"FC5 value {value:#06x}")
            self._check_span(address, 1, 1, self.coil_count)
            self._write_coils(address, [value == 0xFF00], now)
            return bytes([5]) + data
        if function == 6:
            address, value = struct.unpack(">HH", data)
            self._check_span(address, 1, 1, self.register_count)
            self._write_registers(address, [value], now)
            return bytes([6]) + data
        if function == 15:
            if len(data) < 5:
                raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, "request length")
            address, count, byte_count = struct.unpack(">HHB", data[:5])
            if not 1 <= count <= 0x7B0 or byte_count != (count + 7) // 8 or len(data) != 5 + byte_count:
                raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, "FC15 quantity or byte count")
            self._check_span(address, count, 0x7B0, self.coil_count)
            self._write_coils(address, _unbits(data[5:], count), now)
            return bytes([15]) + data[:4]
        if function == 16:
            if len(data) < 5:
                raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, "request length")
            address, count, byte_count = struct.unpack(">HHB", data[:5])
            if not 1 <= count <= 123 or byte_count != 2 * count or len(data) != 5 + byte_count:
                raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, "FC16 quantity or byte count")
            self._check_span(address, count, 123, self.register_count)
            self._write_registers(address, list(struct.unpack(f">{count}H", data[5:])), now)
            return bytes([16]) + data[:4]
        raise ModbusExceptionReply(ILLEGAL_FUNCTION, f"function {function}")

    def _coil_table(self) -> list[bool]:
        table = [False] * self.coil_count
        table[self.coils.open] = self.model.open_coil
        table[self.coils.close] = self.model.close_coil
        table[self.coils.green_light] = self.model.green
        table[self.coils.red_light] = self.model.red
        return table

    def _input_table(self) -> list[bool]:
        table = [False] * self.input_count
        for address, value in encode_inputs(self.model.regmap, self.model.inputs()).items():
            table[address] = value
        return table

    def _register_table(self) -> list[int]:
        table = [0] * self.register_count
        table[self.regs.heartbeat] = self.model.heartbeat
        table[self.regs.fault_code] = self.model.fault_code
        table[self.regs.cycle_counter] = self.model.cycles & 0xFFFF
        return table

    def _write_coils(self, address: int, values: list[bool], now: float) -> None:
        written = dict(zip(range(address, address + len(values)), values, strict=True))
        known = {self.coils.open, self.coils.close, self.coils.green_light, self.coils.red_light}
        if not set(written) <= known:
            raise ModbusExceptionReply(ILLEGAL_DATA_ADDRESS, "no such coil")
        model = self.model
        if self.coils.open in written or self.coils.close in written:
            model.write_command_coils(written.get(self.coils.open, model.open_coil),
                                      written.get(self.coils.close, model.close_coil), now)
        if self.coils.green_light in written:
            model.green = written[self.coils.green_light]
        if self.coils.red_light in written:
            model.red = written[self.coils.red_light]

    def _write_registers(self, address: int, values: list[int], now: float) -> None:
        for offset in range(len(values)):
            if address + offset != self.regs.heartbeat:
                raise ModbusExceptionReply(ILLEGAL_DATA_ADDRESS, "read-only register")
        self.model.write_heartbeat(values[-1], now)


def crc16_modbus(frame: bytes) -> int:
    """The Modbus RTU CRC (polynomial 0xA001 reflected, initial 0xFFFF), sent low byte first."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_request_length(buffer: bytes) -> int | None:
    """Length of the RTU request frame at the start of buffer, or None while it is incomplete."""
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (15, 16):
        return None if len(buffer) < 7 else 9 + buffer[6]
    return 8  # FC1-6 and anything unknown: id, fc, 4 data bytes, CRC (unknown ones get exception 01)


class BarrierPlcSimulator:
    """Serves a PlcModel over Modbus TCP at host:port with the profile's register map."""

    def __init__(self, regmap: BarrierModbusMap, host: str = "127.0.0.1", port: int = 5020,
                 travel_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.regmap, self.host, self.port, self.clock = regmap, host, port, clock
        self.model = PlcModel(regmap, travel_s=travel_s)
        self.model.power_up(clock())
        self.core = ModbusSlaveCore(self.model, clock)
        self.requests = 0
        self.exception_replies = False  # fault injection: answer every request with an exception
        self.response_delay_s = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: list[asyncio.Task] = []

    async def answer(self, pdu: bytes) -> bytes:
        """The response PDU to one request PDU, with the faults a tester injected."""
        self.requests += 1
        if self.response_delay_s:
            await asyncio.sleep(self.response_delay_s)
        if self.exception_replies:
            return bytes([(pdu[0] | 0x80) & 0xFF if pdu else 0x80, SERVER_DEVICE_FAILURE])
        return self.core.response_to(pdu)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(7)
                transaction, protocol, length, unit = struct.unpack(">HHHB", header)
                if protocol != 0 or not 2 <= length <= 254:
                    break  # not Modbus TCP: drop the connection, as devices do
                pdu = await reader.readexactly(length - 1)
                response = await self.answer(pdu)
                writer.write(struct.pack(">HHHB", transaction, 0, len(response) + 1, unit) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve_client, self.host, self.port, reuse_address=True)

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def start(self) -> None:
        """Listen on host:port and run the PLC's scan cycle."""
        await self._listen()
        self._tasks.append(asyncio.create_task(self._scan_forever(), name=f"plc-scan-{self.port}"))

    async def _scan_forever(self) -> None:
        while True:
            self.model.tick(self.clock())
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (the node sees the PLC disappear)."""
        await self._unlisten()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- faults (see simulators/faults.py)
    async def fault_disconnect(self) -> None:
        """The PLC drops off the network (the boom keeps its position)."""
        await self._unlisten()

    async def recover_disconnect(self) -> None:
        if self._server is None:
            await self._listen()

    def fault_slow(self) -> None:
        """Answer every request later than the node's timeout."""
        self.response_delay_s = 2.5

    def recover_slow(self) -> None:
        self.response_delay_s = 0.0

    def fault_exception_replies(self) -> None:
        """Answer every request with a Modbus exception (device failure)."""
        self.exception_replies = True

    def recover_exception_replies(self) -> None:
        self.exception_replies = False

    def set_loop(self, loop: str, occupied: bool) -> None:
        """What a truck does to the loops (the scenario runner and the CLI drive this)."""
        self.model.set_loop(loop, occupied, self.clock())

    @property
    def boom_open(self) -> bool:
        return self.model.position >= 1.0

    @property
    def boom_closed(self) -> bool:
        return self.model.position <= 0.0


class BarrierPlcRtuSimulator(BarrierPlcSimulator):
    """The same PLC on Modbus RTU: it opens the device end of a SerialWire (or any pty/tty path)."""

    def __init__(self, regmap: BarrierModbusMap, device_port: str, baudrate: int = 19200,
                 travel_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(regmap, host="", port=0, travel_s=travel_s, clock=clock)
        self.device_port, self.baudrate = device_port, baudrate
        self.slave_id = regmap.device_id
        self.frames_for_others = 0  # frames on the line for another slave id: heard, never answered
        self.broadcasts = 0  # id 0: applied, never answered
        self.bad_crc_frames = 0
        self.corrupt_replies = 0  # fault injection: the next N replies go out with a wrong CRC
        self.corrupt_every = 0  # fault injection: every Nth reply goes out with a wrong CRC (line noise)
        self.replies = 0
        self._fd: int | None = None
        self._buffer = bytearray()
        self._last_byte_at = 0.0
        self._reopen: asyncio.Task | None = None

    async def _listen(self) -> None:
        fd = os.open(self.device_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        with contextlib.suppress(termios.error):
            tty.setraw(fd)
        self._fd = fd
        self._buffer.clear()
        asyncio.get_running_loop().add_reader(fd, self._readable)

    async def _unlisten(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    async def _reopen_when_back(self) -> None:
        while self._fd is None:
            await asyncio.sleep(0.2)
            with contextlib.suppress(OSError):
                await self._listen()

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 512) if self._fd is not None else b""
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the cable was pulled: try the port again, as a serial server does
            self._close_fd()
            self._reopen = asyncio.get_running_loop().create_task(self._reopen_when_back())
            return
        now = time.monotonic()
        # A gap longer than any inter-character time ends a frame (RTU's 3.5 character silence).
        if self._buffer and now - self._last_byte_at > 0.05:
            self._buffer.clear()
        self._last_byte_at = now
        self._buffer += data
        while (length := rtu_request_length(self._buffer)) is not None and len(self._buffer) >= length:
            frame = bytes(self._buffer[:length])
            if crc16_modbus(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
                self.bad_crc_frames += 1
                self._buffer.clear()  # resynchronise on the next silence
                return
            del self._buffer[:length]
            asyncio.get_running_loop().create_task(self._answer_frame(frame))

    async def _answer_frame(self, frame: bytes) -> None:
        slave, pdu = frame[0], frame[1:-2]
        if slave == 0:
            self.broadcasts += 1
            await self.answer(pdu)  # applied, never answered
            return
        if slave != self.slave_id:
            self.frames_for_others += 1  # another PLC on the same RS-485 line: stay silent
            return
        response = await self.answer(pdu)
        reply = bytes([slave]) + response
        crc = crc16_modbus(reply)
        self.replies += 1
        if self.corrupt_replies or (self.corrupt_every and self.replies % self.corrupt_every == 0):
            self.corrupt_replies = max(0, self.corrupt_replies - 1)
            crc ^= 0x5A5A  # noise on the line: the master must drop it and ask again
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, reply + crc.to_bytes(2, "little"))

    def fault_bad_checksum(self) -> None:
        """The next reply reaches the node with a wrong CRC (one noise hit on RS-485)."""
        self.corrupt_replies += 1

    async def recover_disconnect(self) -> None:
        await self.reopen_port()

    async def reopen_port(self) -> None:
        """Open the serial port again after the cable was re-plugged (the model keeps its state)."""
        await self._unlisten()
        await self._listen()
