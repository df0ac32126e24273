"""Barrier PLC simulator: a real pymodbus TCP server in front of a model of boom, loops and lights.

The model behaves like the PLC of the generic profile: an open coil starts the boom up, a close
coil starts it down unless the safety loop is occupied (then it refuses and sets the fault code),
a boom that is closing reverses if the safety loop becomes occupied, and when the node's
heartbeat register stops changing for heartbeat_timeout_s the PLC goes to its safe state: red
light, boom closed if (and only when) the safety loop is clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType, SimUtils

from devices.protocols.barrier_map import (
    FAULT_CLOSE_REFUSED_SAFETY,
    FAULT_HEARTBEAT_LOST,
    FAULT_NONE,
    BarrierInputs,
    encode_inputs,
)
from edge.config import BarrierModbusMap


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
    heartbeat: int = 0
    heartbeat_changed_at: float | None = None
    fault_code: int = FAULT_NONE
    cycles: int = 0
    close_refusals: int = 0
    closed_on_vehicle: int = 0
    history: list[tuple[float, str]] = field(default_factory=list)
    _last_tick: float | None = None

    def __post_init__(self) -> None:
        if self.heartbeat_timeout_s is None:
            self.heartbeat_timeout_s = self.regmap.heartbeat_timeout_s

    # -- inputs the PLC serves
    def inputs(self) -> BarrierInputs:
        return BarrierInputs(
            arrival=self.loops["arrival"], safety=self.loops["safety"], exit=self.loops["exit"],
            boom_opened=self.position >= 1.0, boom_closed=self.position <= 0.0,
        )

    # -- commands from the master
    def command_open(self, now: float) -> None:
        if self.fault_code == FAULT_HEARTBEAT_LOST:
            self.history.append((now, "open refused: heartbeat lost"))
            return
        if self.position < 1.0:
            self.motion = 1
            self.history.append((now, "opening"))

    def command_close(self, now: float) -> bool:
        if self.loops["safety"]:
            self.fault_code = FAULT_CLOSE_REFUSED_SAFETY
            self.close_refusals += 1
            self.history.append((now, "close refused: safety loop occupied"))
            return False
        if self.position > 0.0:
            self.motion = -1
            self.history.append((now, "closing"))
        if self.fault_code == FAULT_CLOSE_REFUSED_SAFETY:
            self.fault_code = FAULT_NONE
        return True

    def write_heartbeat(self, value: int, now: float) -> None:
        if value != self.heartbeat:
            self.heartbeat = value
            self.heartbeat_changed_at = now
            if self.fault_code == FAULT_HEARTBEAT_LOST:
                self.fault_code = FAULT_NONE

    def set_loop(self, loop: str, occupied: bool, now: float) -> None:
        self.loops[loop] = occupied
        if loop == "safety" and occupied and self.position <= 0.0 and self.motion == 0:
            pass  # a vehicle under a closed boom: nothing the PLC can do
        if loop == "safety" and occupied and self.motion == -1:
            self.motion = 1  # reverse: never close onto a vehicle
            self.history.append((now, "reversing: safety loop occupied while closing"))

    # -- time
    def tick(self, now: float) -> None:
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        if (self.heartbeat_changed_at is not None and self.heartbeat_timeout_s
                and now - self.heartbeat_changed_at > self.heartbeat_timeout_s
                and self.fault_code != FAULT_HEARTBEAT_LOST):
            self.fault_code = FAULT_HEARTBEAT_LOST
            self.green, self.red = False, True
            self.history.append((now, "heartbeat lost: safe state"))
            if not self.loops["safety"] and self.position > 0.0:
                self.motion = -1
        if self.fault_code == FAULT_HEARTBEAT_LOST and self.motion == 0 and self.position > 0.0 \
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


class BarrierPlcSimulator:
    """Serves a PlcModel over Modbus TCP at host:port with the profile's register map."""

    def __init__(self, regmap: BarrierModbusMap, host: str = "127.0.0.1", port: int = 5020,
                 travel_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.regmap, self.host, self.port, self.clock = regmap, host, port, clock
        self.model = PlcModel(regmap, travel_s=travel_s)
        self.requests = 0
        self.exception_replies = False  # fault injection: answer every request with an exception
        self.response_delay_s = 0.0
        self._server: ModbusTcpServer | None = None
        self._tasks: list[asyncio.Task] = []
        block = max(
            max(regmap.coils.model_dump().values()), max(regmap.discrete_inputs.model_dump().values())
        ) // 16 + 1
        self._bit_registers = block
        self._reg_count = max(regmap.holding_registers.model_dump().values()) + 1

    def _device(self) -> SimDevice:
        bits = self._bit_registers * 16
        return SimDevice(
            id=self.regmap.device_id,
            simdata=(
                [SimData(0, count=bits, values=False, datatype=DataType.BITS)],
                [SimData(0, count=bits, values=False, datatype=DataType.BITS)],
                [SimData(0, count=self._reg_count, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )

    async def _action(self, func_code: int, start: int, address: int, count: int,
                      registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        """Bridge between pymodbus's register blocks and the model (called for every request)."""
        self.requests += 1
        if self.response_delay_s:
            await asyncio.sleep(self.response_delay_s)
        if self.exception_replies:
            return ExcCodes.DEVICE_FAILURE
        now = self.clock()
        self.model.tick(now)
        if values is not None:
            self._apply_write(func_code, address, list(values), now)
        self._sync(func_code, registers)
        return None

    def _apply_write(self, func_code: int, address: int, values: list, now: float) -> None:
        coils, regs = self.regmap.coils, self.regmap.holding_registers
        if func_code in (5, 15):
            for offset, value in enumerate(values):
                coil = address + offset
                if coil == coils.open and value:
                    self.model.command_open(now)
                elif coil == coils.close and value:
                    self.model.command_close(now)
                elif coil == coils.green_light:
                    self.model.green = bool(value)
                elif coil == coils.red_light:
                    self.model.red = bool(value)
        elif func_code in (6, 16):
            for offset, value in enumerate(values):
                if address + offset == regs.heartbeat:
                    self.model.write_heartbeat(int(value), now)

    def _sync(self, func_code: int, registers: list[int]) -> None:
        """Rewrite the block the request touches from the model's state."""
        if func_code == 2:
            bits = [False] * (len(registers) * 16)
            for addr, value in encode_inputs(self.regmap, self.model.inputs()).items():
                bits[addr] = value
            registers[:] = SimUtils.bitsToRegisters(bits)
        elif func_code in (1, 5, 15):
            bits = [False] * (len(registers) * 16)
            coils = self.regmap.coils
            bits[coils.green_light] = self.model.green
            bits[coils.red_light] = self.model.red
            bits[coils.open] = self.model.motion == 1
            bits[coils.close] = self.model.motion == -1
            registers[:] = SimUtils.bitsToRegisters(bits)
        elif func_code in (3, 6, 16):
            regs = self.regmap.holding_registers
            registers[regs.heartbeat] = self.model.heartbeat
            registers[regs.fault_code] = self.model.fault_code
            registers[regs.cycle_counter] = self.model.cycles & 0xFFFF

    async def start(self) -> None:
        """Listen on host:port and run the PLC's scan cycle."""
        self._server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        self._tasks.append(asyncio.create_task(self._scan_forever(), name=f"plc-scan-{self.port}"))

    async def _scan_forever(self) -> None:
        while True:
            self.model.tick(self.clock())
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (the node sees the PLC disappear)."""
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- faults (see simulators/faults.py)
    async def fault_disconnect(self) -> None:
        """The PLC drops off the network (the boom keeps its position)."""
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None

    async def recover_disconnect(self) -> None:
        if self._server is None:
            self._server = ModbusTcpServer(self._device(), address=(self.host, self.port))
            await self._server.serve_forever(background=True)

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
        """What a truck does to the loops (the scenario runner drives this)."""
        self.model.set_loop(loop, occupied, self.clock())

    @property
    def boom_open(self) -> bool:
        return self.model.position >= 1.0

    @property
    def boom_closed(self) -> bool:
        return self.model.position <= 0.0


class BarrierPlcRtuSimulator(BarrierPlcSimulator):
    """The same PLC on Modbus RTU: the server opens the device end of a SerialWire."""

    def __init__(self, regmap: BarrierModbusMap, device_port: str, baudrate: int = 19200,
                 travel_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(regmap, host="", port=0, travel_s=travel_s, clock=clock)
        self.device_port, self.baudrate = device_port, baudrate

    async def _listen(self) -> None:
        from pymodbus.server import ModbusSerialServer

        self._server = ModbusSerialServer(self._device(), port=self.device_port, baudrate=self.baudrate,
                                          reconnect_delay=0.2)
        await self._server.serve_forever(background=True)

    async def start(self) -> None:
        await self._listen()
        self._tasks.append(asyncio.create_task(self._scan_forever(), name=f"plc-scan-{self.device_port}"))

    async def recover_disconnect(self) -> None:
        await self.reopen_port()

    async def reopen_port(self) -> None:
        """Open the serial port again after the cable was re-plugged (the model keeps its state)."""
        await self.fault_disconnect()
        await self._listen()
