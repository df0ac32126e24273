"""Barrier PLC round trip: one Modbus request from the node's hub to the PLC simulator and back.

Measured for Modbus TCP on loopback and Modbus RTU through a simulated serial cable (pty pair;
a pty has no baud-rate delay, so RTU figures here are the software path, not the line time:
at 19200 baud an 8-byte request plus a 6-byte reply adds about 7 ms on a real RS-485 line).

`modbus_rtu_noise` is the barrier driver's poll cycle (read the loops, read the fault register)
over RTU with line noise: the PLC simulator sends every `noise_every`-th reply with a wrong CRC.
It compares the hub with the profile's retries and with none, giving the cycle time and how many
cycles failed to the caller (each such failure is a lane FAULT); the request timeout there is
short (0.1 s) so the run stays short: a lost reply costs one timeout.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from benchmarks.stats import percentiles
from devices.transports.modbus import ModbusHub, ModbusIOError, rtu_hub, tcp_hub
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
        noise = {}
        for retries in (0, load_profile("generic-barrier-plc").modbus.retries):
            noise[f"retries_{retries}"] = await _noisy_cycles(regmap, tmp, min(n, 500), retries, noise_every=20)
    return {"modbus_tcp": tcp, "modbus_rtu_pty": rtu, "requests_each": n, "modbus_rtu_noise": noise}


async def _noisy_cycles(regmap, tmp: str, cycles: int, retries: int, noise_every: int) -> dict:
    """Poll cycles through a line that corrupts every `noise_every`-th reply."""
    wire = SerialWire(Path(tmp) / f"noisy-node-{retries}", Path(tmp) / f"noisy-plc-{retries}")
    wire.start()
    plc = BarrierPlcRtuSimulator(regmap, str(wire.device_link), travel_s=0)
    await plc.start()
    plc.corrupt_every = noise_every
    hub = rtu_hub(str(wire.node_link), timeout_s=0.1, retries=retries)
    cycle_ms: list[float] = []
    failed = 0
    for _ in range(cycles):
        started = time.perf_counter()
        try:
            await hub.request("read_discrete_inputs", 0, count=5)
            await hub.request("read_holding_registers", regmap.holding_registers.fault_code, count=1)
        except ModbusIOError:
            failed += 1
            continue
        cycle_ms.append((time.perf_counter() - started) * 1000)
    await hub.close()
    await plc.stop()
    wire.stop()
    return {"cycles": cycles, "noise": f"1 reply in {noise_every} corrupted", "retries": retries,
            "cycles_failed": failed, "retries_sent": hub.health.retries, "cycle_ms": percentiles(cycle_ms)}


def run_modbus_bench(n: int = 2000) -> dict:
    """Round-trip p50/p99 for reading the loops and writing a coil, TCP and RTU; the RTU poll cycle under noise."""
    return asyncio.run(_run(n))


if __name__ == "__main__":
    print(json.dumps(run_modbus_bench(), indent=2))
