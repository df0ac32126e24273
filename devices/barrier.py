"""Barrier PLC driver: polls loops and limit switches, writes the heartbeat, opens and closes.

It never decides: the lane asks it to open (only after the RELEASE is journaled) or close. It
refuses to close while the safety loop under the boom is occupied; the PLC refuses too.

Command coils follow the profile's `command_mode`:
- pulse (default): set the coil, hold it `pulse_ms`, release it. Every command is a fresh rising
  edge, which edge-triggered PLCs need. `open()`/`close()` return once the coil is set (the hold
  runs in the background), and the next command ends a running pulse first.
- level: the coil stays set until the other command, which releases it first.
In both modes the other command coil is released before a coil is set, and a coil that may still
be set (a release that failed) is released before it is set again, so open and close are never
set together and a second open() is a new rising edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from devices.availability import Availability
from devices.health import DeviceHealth
from devices.profiles import BarrierModbusMap
from devices.protocols.barrier_map import (
    FAULT_NONE,
    FAULT_TEXT,
    BarrierInputs,
    decode_inputs,
    diff_inputs,
    input_span,
    next_heartbeat,
)
from devices.readings import DeviceEvent
from devices.tasks import cancel_and_wait
from devices.transports.modbus import ModbusHub, ModbusIOError

log = logging.getLogger(__name__)


class SafetyInterlock(Exception):
    """A close was refused because the safety loop is occupied."""


class HeartbeatHeld(ModbusIOError):
    """An open was refused: the node withholds the heartbeat (it cannot keep the lane safe), so the PLC goes safe."""


class BarrierDriver:
    """Owns one barrier PLC over a Modbus hub."""

    def __init__(self, device_id: str, hub: ModbusHub, regmap: BarrierModbusMap,
                 sink: Callable[[DeviceEvent], None]):
        self.device_id, self.hub, self.regmap, self.sink = device_id, hub, regmap, sink
        self.health = DeviceHealth(device_id, "barrier")
        self.inputs: BarrierInputs | None = None
        self.first_poll = asyncio.Event()
        self.fault_code = FAULT_NONE
        self._heartbeat = 0
        self.availability = Availability(device_id, self.health, sink)
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        # What the driver last wrote to each command coil (None: unknown, e.g. the write failed).
        self._coil_state: dict[int, bool | None] = {regmap.coils.open: None, regmap.coils.close: None}
        self._command_lock = asyncio.Lock()
        self._cut_pulse = asyncio.Event()
        self._pulse: asyncio.Task | None = None
        self.heartbeat_held: str | None = None  # why the node withholds the heartbeat, or None

    def hold_heartbeat(self, reason: str | None) -> None:
        """Withhold the heartbeat (reason) or send it again (None).

        Without it the PLC's watchdog trips after heartbeat_timeout_s and puts the boom in its safe
        state: the node's way to hand the lane to the PLC when it cannot keep it safe itself.
        """
        if reason is not None and self.heartbeat_held is None:
            log.error("%s: heartbeat withheld (%s): the PLC's watchdog will put the boom in its safe state",
                      self.device_id, reason)
        elif reason is None and self.heartbeat_held is not None:
            log.warning("%s: heartbeat sent again", self.device_id)
        self.heartbeat_held = reason

    async def start(self) -> None:
        """Start polling and the heartbeat."""
        self._tasks = [asyncio.create_task(self._poll_forever(), name=f"{self.device_id}-poll"),
                       asyncio.create_task(self._heartbeat_forever(), name=f"{self.device_id}-hb")]

    async def stop(self) -> None:
        """Stop polling and heartbeats (the PLC then goes safe by itself) and disconnect."""
        self._stopping = True
        for task in self._tasks:
            await cancel_and_wait(task)
        await self._end_pulse()  # a pulse in progress is released before the link goes
        await self.hub.close()

    async def open(self) -> None:
        """Command the boom open. Call only for a journaled RELEASE; set the lights after."""
        # A heartbeat right before the command, always: a PLC whose watchdog tripped (a slow spell on the
        # link, seen or not yet seen in fault_code) refuses to open until it hears from the node again.
        if self.heartbeat_held is not None:
            raise HeartbeatHeld(f"heartbeat withheld: {self.heartbeat_held}")
        await self._write_heartbeat()
        await self._command(self.regmap.coils.open, self.regmap.coils.close)

    async def set_lights(self, green: bool) -> None:
        """Green for go, red for stop (never both)."""
        coils = self.regmap.coils
        await self.hub.request("write_coil", coils.red_light if green else coils.green_light, False)
        await self.hub.request("write_coil", coils.green_light if green else coils.red_light, True)

    async def close(self) -> None:
        """Command the boom closed and the light red; SafetyInterlock if the safety loop is occupied."""
        inputs = await self.read_inputs()
        if inputs.safety:
            raise SafetyInterlock("safety loop occupied")
        coils = self.regmap.coils
        await self.hub.request("write_coil", coils.red_light, True)
        await self.hub.request("write_coil", coils.green_light, False)
        await self._command(coils.close, coils.open)

    async def _write_command_coil(self, coil: int, value: bool) -> None:
        self._coil_state[coil] = None  # unknown until the PLC echoes the write
        await self.hub.request("write_coil", coil, value)
        self._coil_state[coil] = value

    async def _command(self, coil: int, other: int) -> None:
        """Set one command coil: any pulse ended, the other coil released, then a rising edge.

        Returns once the coil is set (the PLC has the command); in pulse mode a background task
        releases it after pulse_ms, or sooner when the next command comes.
        """
        async with self._command_lock:
            await self._end_pulse()
            # Both coils are released whatever we last wrote: another master on the PLC's segment may
            # have set one (an intruder's open left set would make our close a "both set" no-op).
            await self._write_command_coil(other, False)
            await self._write_command_coil(coil, False)  # so that this command is a rising edge
            await self._write_command_coil(coil, True)
            if self.regmap.command_mode == "pulse":
                self._cut_pulse.clear()
                self._pulse = asyncio.create_task(self._release_after_pulse(coil), name=f"{self.device_id}-pulse")

    async def _release_after_pulse(self, coil: int) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.regmap.pulse_ms / 1000):
                    await self._cut_pulse.wait()
        finally:
            # A failed release leaves the state unknown; the next command releases it again first.
            with contextlib.suppress(ModbusIOError):
                await self._write_command_coil(coil, False)

    async def _end_pulse(self) -> None:
        """Release a coil still held by a pulse now (and wait until it is written)."""
        pulse = self._pulse
        if pulse is not None:
            self._cut_pulse.set()
            await asyncio.wait([pulse])  # a cancel of the caller still propagates; the pulse's own does not
            self._pulse = None
            if not pulse.cancelled() and pulse.exception() is not None:
                log.warning("%s: releasing a command coil failed: %s", self.device_id, pulse.exception())

    async def read_inputs(self) -> BarrierInputs:
        """Read the loops and limit switches now."""
        first, count = input_span(self.regmap)
        response = await self.hub.request("read_discrete_inputs", first, count=count)
        return decode_inputs(self.regmap, first, list(response.bits[:count]))

    async def _poll_once(self) -> None:
        inputs = await self.read_inputs()
        registers = self.regmap.holding_registers
        response = await self.hub.request("read_holding_registers", registers.fault_code, count=1)
        now = time.time()
        self.fault_code = response.registers[0]
        self.health.detail = None if self.fault_code == FAULT_NONE else f"PLC fault: {self.describe_fault()}"
        self.health.frames_good += 1
        self.health.last_reading_at = now
        events = diff_inputs(self.device_id, self.inputs, inputs, now)
        self.inputs = inputs
        self._set_up()
        for event in events:
            self.sink(event)
        self.first_poll.set()

    async def _poll_forever(self) -> None:
        interval = self.regmap.poll_interval_ms / 1000
        while not self._stopping:
            try:
                await self._poll_once()
            except ModbusIOError as exc:
                self._set_down(str(exc))
                await asyncio.sleep(max(interval, 0.2))
                continue
            await asyncio.sleep(interval)

    async def _write_heartbeat(self) -> None:
        self._heartbeat = next_heartbeat(self._heartbeat)
        await self.hub.request("write_register", self.regmap.holding_registers.heartbeat, self._heartbeat)

    async def _heartbeat_forever(self) -> None:
        # Continue from what the PLC holds, so that the first heartbeat after a node restart is a change.
        with contextlib.suppress(ModbusIOError):
            held = await self.hub.request("read_holding_registers", self.regmap.holding_registers.heartbeat, count=1)
            self._heartbeat = held.registers[0]
        while not self._stopping:
            try:
                if self.heartbeat_held is None:
                    await self._write_heartbeat()
            except ModbusIOError as exc:
                self._set_down(str(exc))
            await asyncio.sleep(self.regmap.heartbeat_period_s)

    def _set_up(self) -> None:
        self.health.reconnects = self.hub.health.reconnects
        self.availability.up()

    def _set_down(self, error: str) -> None:
        self.health.frames_bad += 1
        self.availability.down(error)

    def describe_fault(self) -> str:
        """The PLC's own fault register in words."""
        return FAULT_TEXT.get(self.fault_code, f"fault code {self.fault_code}")
