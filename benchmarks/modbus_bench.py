"""Barrier PLC round trip: one Modbus request from the node's hub to the PLC simulator and back.

Measured for Modbus TCP on loopback and Modbus RTU through a simulated serial cable (pty pair;
a pty has no baud-rate delay, so RTU figures here are the software path, not the line time:
at 19200 baud an 8-byte request plus a 6-byte reply adds about 7 ms on a real RS-485 line).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from benchmarks.stats import percentiles
from devices.transports.modbus import ModbusHub, rtu_hub, tcp_hub
from edge.config import load_profile
from simulators.barrier_plc import BarrierPlcRtuSimulator, BarrierPlcSimulator
from simulators.broker import free_port
from simulators.serial_wire import SerialWire


async def _round_trips(hub: ModbusHub, n: int) -> dict[str, dict]:
    poll_ms, write_ms = [], []
    for i in range(n):
        started = time.perf_counter()
        await hub.request("read_discrete_inputs", 0, count=5)
        poll_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await hub.request("write_coil", 2, bool(i % 2))
        write_ms.append((time.perf_counter() - started) * 1000)
    return {"read_inputs_ms": percentiles(poll_ms), "write_coil_ms": percentiles(write_ms)}


async def _run(n: int) -> dict:
    regmap = load_profile("generic-barrier-plc").modbus
    port = free_port()
    plc = BarrierPlcSimulator(regmap, port=port, travel_s=0)
    await plc.start()
    hub = tcp_hub("127.0.0.1", port)
    tcp = await _round_trips(hub, n)
    await hub.close()
    await plc.stop()
    with tempfile.TemporaryDirectory(prefix="smartgate-bench-") as tmp:
        wire = SerialWire(Path(tmp) / "node", Path(tmp) / "plc")
        wire.start()
        rtu_plc = BarrierPlcRtuSimulator(regmap, str(wire.device_link), travel_s=0)
        await rtu_plc.start()
        hub = rtu_hub(str(wire.node_link))
        rtu = await _round_trips(hub, n)
        await hub.close()
        await rtu_plc.stop()
        wire.stop()
    return {"modbus_tcp": tcp, "modbus_rtu_pty": rtu, "requests_each": n}


def run_modbus_bench(n: int = 2000) -> dict:
    """Round-trip p50/p99 for reading the loops and writing a coil, TCP and RTU."""
    return asyncio.run(_run(n))


if __name__ == "__main__":
    print(json.dumps(run_modbus_bench(), indent=2))
