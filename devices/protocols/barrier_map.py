"""The barrier PLC's register map as data: decode input bits into loop/boom events. No I/O.

Shared by the barrier driver (which reads the bits over Modbus) and the PLC simulator (which
serves them), so both agree on every address through the device profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.profiles import BarrierModbusMap
from devices.readings import BoomChanged, BoomPosition, Loop, LoopChanged

# Values of the PLC's fault_code holding register.
FAULT_NONE = 0
FAULT_HEARTBEAT_LOST = 1
FAULT_CLOSE_REFUSED_SAFETY = 2
FAULT_LIMIT_SWITCHES = 3

FAULT_TEXT = {
    FAULT_NONE: "no fault",
    FAULT_HEARTBEAT_LOST: "heartbeat lost: PLC went to its safe state",
    FAULT_CLOSE_REFUSED_SAFETY: "close refused: safety loop occupied",
    FAULT_LIMIT_SWITCHES: "both limit switches active",
}


@dataclass(frozen=True, slots=True)
class BarrierInputs:
    """One snapshot of the PLC's discrete inputs."""

    arrival: bool
    safety: bool
    exit: bool
    boom_opened: bool
    boom_closed: bool

    @property
    def boom(self) -> BoomPosition:
        if self.boom_opened and self.boom_closed:
            return BoomPosition.UNKNOWN
        if self.boom_opened:
            return BoomPosition.OPEN
        if self.boom_closed:
            return BoomPosition.CLOSED
        return BoomPosition.MOVING


def input_span(regmap: BarrierModbusMap) -> tuple[int, int]:
    """First address and count of discrete inputs to read in one request."""
    addresses = regmap.discrete_inputs.model_dump().values()
    first = min(addresses)
    return first, max(addresses) - first + 1


def decode_inputs(regmap: BarrierModbusMap, first: int, bits: list[bool]) -> BarrierInputs:
    """Turn the bits of one discrete-input read (starting at `first`) into a snapshot."""
    di = regmap.discrete_inputs

    def bit(address: int) -> bool:
        index = address - first
        if not 0 <= index < len(bits):
            raise ValueError(f"input {address} not in the read span")
        return bool(bits[index])

    return BarrierInputs(
        arrival=bit(di.arrival_loop),
        safety=bit(di.safety_loop),
        exit=bit(di.exit_loop),
        boom_opened=bit(di.boom_opened),
        boom_closed=bit(di.boom_closed),
    )


def encode_inputs(regmap: BarrierModbusMap, inputs: BarrierInputs) -> dict[int, bool]:
    """Address → value for each input (what the PLC simulator serves)."""
    di = regmap.discrete_inputs
    return {
        di.arrival_loop: inputs.arrival,
        di.safety_loop: inputs.safety,
        di.exit_loop: inputs.exit,
        di.boom_opened: inputs.boom_opened,
        di.boom_closed: inputs.boom_closed,
    }


def diff_inputs(
    device_id: str, before: BarrierInputs | None, after: BarrierInputs, at: float
) -> list[LoopChanged | BoomChanged]:
    """Events for what changed between two snapshots (everything, for the first snapshot)."""
    events: list[LoopChanged | BoomChanged] = []
    for loop, name in ((Loop.ARRIVAL, "arrival"), (Loop.SAFETY, "safety"), (Loop.EXIT, "exit")):
        value = getattr(after, name)
        if before is None or getattr(before, name) != value:
            events.append(LoopChanged(device_id, loop, value, at))
    if before is None or before.boom != after.boom:
        events.append(BoomChanged(device_id, after.boom, at))
    return events


def next_heartbeat(value: int) -> int:
    """The next heartbeat counter value (wraps within one 16-bit register, never stays equal)."""
    return (value + 1) & 0xFFFF
