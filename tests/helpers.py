"""Test helpers shared between test files: a simulated gate with its declarations loaded and an intruder's Modbus
write."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from pymodbus.client import ModbusTcpClient

from edge.declarations import Declaration
from simulators.barrier_plc import BarrierPlcSimulator
from simulators.gate import SimulatedGate


async def started_gate(site, tmp_path: Path, declarations: Iterable[Declaration], **options) -> SimulatedGate:
    """Start a SimulatedGate (options go to its constructor) whose cache holds `declarations` and is fresh."""
    gate = SimulatedGate(site, tmp_path, **options)
    await gate.start()
    gate.node.cache.upsert_many(list(declarations))
    gate.node.cache.mark_refreshed(datetime.now(UTC))
    return gate


def write_open_coil(plc: BarrierPlcSimulator) -> None:
    """Another Modbus master on the PLC's segment sets the open coil (FC5), as any client can."""
    client = ModbusTcpClient(plc.host, port=plc.port, timeout=2)
    try:
        assert client.connect(), "the intruder could not reach the PLC"
        reply = client.write_coil(plc.regmap.coils.open, True, device_id=plc.regmap.device_id)
        assert not reply.isError(), reply
    finally:
        client.close()
