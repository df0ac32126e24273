"""What device-bus security costs: reading-to-decision latency over a plaintext anonymous broker and over the
secured one (TLS, a client certificate per device, the site's ACL, client id bound to identity), in one run.

One lane controller (IMP-1: plate, seal, weight, scan) with the real journal, cache, rules and the barrier
driver on the PLC simulator. For each truck the plate, seal and weight are handed to the controller, and
the last reading, the X-ray scanner's `scan_completed`, comes from the scanner simulator over MQTT through
Mosquitto into the node's ScannerDriver. The figure is the time from the scanner's publish call to the
lane's decision (journaled); `delivery_ms` is the part before the lane: publish call to the reading
handed to the lane controller (TLS, the broker's ACL check, paho's thread, the loop hop). Trucks
alternate between the two brokers, so drift on the machine falls on both alike. `bus_ms` repeats the
delivery alone for `messages` more scans (no lane, no journal fsync: the bus's own cost, with less
noise from the disk). `connect_ms` is one client's connection set-up (the TLS handshake included).
"""

from __future__ import annotations

import asyncio
import json
import time

from benchmarks.decision_bench import lane_rig
from benchmarks.stats import percentiles
from devices.protocols.scanner_json import ScanEvent
from devices.readings import (
    Loop,
    LoopChanged,
    PlateRead,
    ScanVerdict,
    SealRead,
    SealStatus,
    WeightRead,
)
from devices.scanner import ScannerDriver
from devices.transports.mqtt import MqttBus, new_client
from edge.config import CONFIG_ROOT, MqttTransport, load_site
from simulators.broker import PrivateBroker
from simulators.scanner import ScannerSimulator

MODES = ("plaintext", "tls")


def _connect_ms(broker: PrivateBroker, tls, n: int) -> list[float]:
    """Connect (CONNACK received) and disconnect n times."""
    samples = []
    for i in range(n):
        client = new_client(f"bench-connect-{i}", tls)
        started = time.perf_counter()
        client.connect(broker.host, broker.port, keepalive=10)
        while not client.is_connected():
            client.loop(0.01)
        samples.append((time.perf_counter() - started) * 1000)
        client.disconnect()
    return samples


async def _run(trucks: int, connects: int, messages: int) -> dict:
    loaded = load_site(CONFIG_ROOT / "sites" / "huu-nghi.yaml")  # the CLI's default site
    lane = loaded.site.lanes[0]
    barrier_cfg, scanner_cfg = lane.device("barrier"), lane.device("scanner")
    topic = scanner_cfg.transport.topic
    node_id = loaded.site.mqtt.client_id
    brokers = {"plaintext": PrivateBroker(secure=False).start(), "tls": PrivateBroker(site=loaded.site).start()}
    tls = {"plaintext": (None, None),
           "tls": (brokers["tls"].credentials(node_id), brokers["tls"].credentials(scanner_cfg.id))}
    buses: dict[str, MqttBus] = {}
    scanners: dict[str, ScannerSimulator] = {}
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    delivery: dict[str, list[float]] = {mode: [] for mode in MODES}
    delivered: list[float] = []  # when the current truck's scan reached the lane controller
    to_lane = [True]  # False: the bus-only part (readings counted, not handed to the lane)
    arrived = asyncio.Event()
    bus_only: dict[str, list[float]] = {mode: [] for mode in MODES}
    async with lane_rig(loaded, lane, max(trucks, 1000), "smartgate-security-bench-") as rig:
        controller, events = rig.controller, rig.events
        try:
            for mode in MODES:
                broker = brokers[mode]
                node_tls, scanner_tls = tls[mode]
                buses[mode] = MqttBus(broker.host, broker.port, node_id, tls=node_tls)

                def sink(event, _submit=controller.submit) -> None:
                    delivered.append(time.perf_counter())
                    arrived.set()
                    if to_lane[0]:
                        _submit(event)

                ScannerDriver(scanner_cfg.id, MqttTransport(type="mqtt", topic=topic),
                              loaded.profile_for(scanner_cfg), buses[mode], sink, lane=lane.id).start()
                await buses[mode].start()
                await asyncio.wait_for(buses[mode].connected.wait(), 10)
                scanners[mode] = ScannerSimulator(broker.host, broker.port, topic, lane.id, scanner_cfg.id,
                                                  tls=scanner_tls)
                await asyncio.to_thread(scanners[mode].start)
            await controller.start(restore=False)
            for i in range(trucks):
                mode = MODES[i % 2]
                now = time.time()
                controller.submit(LoopChanged(barrier_cfg.id, Loop.ARRIVAL, True, now))
                controller.submit(PlateRead("cam", f"29C-{i // 100:03d}.{i % 100:02d}", 0.97, now, time.time()))
                controller.submit(SealRead("rdr", f"SEAL{i:06d}", SealStatus.INTACT, 90, None, now, time.time()))
                controller.submit(WeightRead("scale", 28_020, now, time.time()))
                sent: list[float] = []
                delivered.clear()

                def publish(sim: ScannerSimulator = scanners[mode], n: int = i, sent: list[float] = sent) -> None:
                    sent.append(time.perf_counter())
                    sim.publish(ScanEvent.COMPLETED, f"S{n}", [], ScanVerdict.CLEAR)

                publishing = asyncio.create_task(asyncio.to_thread(publish))
                while True:
                    kind, payload = await events.get()
                    if kind == "decision":
                        decided = time.perf_counter()
                        break
                await publishing
                if payload["outcome"] != "release":
                    raise RuntimeError(f"bench truck {i} was not released: {payload}")
                samples[mode].append((decided - sent[0]) * 1000)
                delivery[mode].append((delivered[-1] - sent[0]) * 1000)
                await rig.next_of("barrier")
                rig.drive_through(time.time())
                await rig.next_of("tx_closed")
            to_lane[0] = False
            for i in range(messages):
                mode = MODES[i % 2]
                delivered.clear()
                arrived.clear()
                sent_at = time.perf_counter()
                await asyncio.to_thread(scanners[mode].publish, ScanEvent.COMPLETED, f"B{i}", [], ScanVerdict.CLEAR)
                await asyncio.wait_for(arrived.wait(), 10)
                bus_only[mode].append((delivered[-1] - sent_at) * 1000)
            connect = {mode: percentiles(await asyncio.to_thread(_connect_ms, brokers[mode], tls[mode][1], connects))
                       for mode in MODES}
        finally:  # the lane rig stops the controller, the Modbus link and the PLC
            for sim in scanners.values():
                await asyncio.to_thread(sim.stop)
            for bus in buses.values():
                await bus.stop()
            for broker in brokers.values():
                broker.stop()
    plain, secure = percentiles(samples["plaintext"]), percentiles(samples["tls"])
    return {
        "reading_to_decision_ms": {"plaintext": plain, "tls": secure},
        "added_ms": {"p50": round(secure["p50"] - plain["p50"], 3), "p99": round(secure["p99"] - plain["p99"], 3)},
        "delivery_ms": {mode: percentiles(delivery[mode]) for mode in MODES},
        "bus_ms": {mode: percentiles(bus_only[mode]) for mode in MODES},
        "connect_ms": connect,
        "retained_dropped": sum(bus.retained_dropped for bus in buses.values()),
        "trucks": trucks,
        "target": "TLS + ACL add <= 2 ms at p99",
    }


def run_security_bench(trucks: int = 1000, connects: int = 50, messages: int = 2000) -> dict:
    """Reading-to-decision latency with and without device-bus security, `trucks` split over both."""
    return asyncio.run(_run(trucks, connects, messages))


if __name__ == "__main__":
    print(json.dumps(run_security_bench(), indent=2))
