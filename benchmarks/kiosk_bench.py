"""Kiosk live-update latency: a reading reaching the node → the lane update read from a browser's
event stream, with 20 streams open on a 4-lane gate.

The node is the real one (GateNode with its PLC simulators over Modbus TCP, e-seal readers on pty
pairs, cameras on a private MQTT broker, the kiosk served by uvicorn). Readings are handed to the
lane controllers exactly where the drivers hand them (the controller's submit), so the measured
path is: controller queue → journal (fsync) → rules → lane machine → kiosk view → SSE on every
stream → HTTP over loopback → parsed by the client. The clients run in a separate process (as a
browser would), all 20 streams on one asyncio loop with httpx; a reading counts as delivered on a
stream when that stream first shows a lane view containing it. Both processes use
time.monotonic(), which is one clock for the whole machine on Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.stats import percentiles

STREAM_PATH = "/api/events"


# ---------------------------------------------------------------- the clients (child process)


async def _clients(base: str, token: str, streams: int, lanes: int) -> dict:
    import httpx

    records: list[list[tuple[float, str]]] = [[] for _ in range(streams)]
    ready = [asyncio.Event() for _ in range(streams)]

    async def one(index: int, client: httpx.AsyncClient) -> None:
        seen_lanes = 0
        event = ""
        async with client.stream("GET", STREAM_PATH, headers={"authorization": f"Bearer {token}"}) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "lane":
                    records[index].append((time.monotonic(), line[5:]))
                    seen_lanes += 1
                    if seen_lanes >= lanes:
                        ready[index].set()

    limits = httpx.Limits(max_connections=streams + 2, max_keepalive_connections=streams + 2)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None), limits=limits) as client:
        tasks = [asyncio.create_task(one(i, client)) for i in range(streams)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the parent says stop
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # First time each stream saw each reading (plate or seal of a lane's transaction).
    first_seen: list[dict[str, float]] = []
    for stream in records:
        seen: dict[str, float] = {}
        for at, data in stream:
            view = json.loads(data)
            tx = view.get("transaction")
            if not tx:
                continue
            for plate in tx["plates"]:
                seen.setdefault(f"{view['lane']}|P|{plate['normalised']}", at)
            for seal in tx["seals"]:
                seen.setdefault(f"{view['lane']}|S|{seal['seal_id']}", at)
        first_seen.append(seen)
    return {"first_seen": first_seen, "lane_events": [len(s) for s in records]}


# ---------------------------------------------------------------- the node (this process)


def _bench_site(lanes: int):
    """A site with `lanes` lanes like Huu Nghi's IMP-1: barrier PLC, e-seal reader, plate camera."""
    from edge.cli import DEFAULT_SITE
    from edge.config import load_site, site_from_mapping

    base = load_site(DEFAULT_SITE).site.model_dump()
    template = next(lane for lane in base["lanes"] if lane["id"] == "IMP-1")
    keep = {"barrier": "modbus_tcp", "eseal": "serial", "anpr": "mqtt"}
    built = []
    for n in range(1, lanes + 1):
        lane = copy.deepcopy(template)
        lane_id = f"L{n}"
        lane["id"], lane["name"] = lane_id, f"Bench lane {n}"
        lane["policy"]["required_readings"] = ["plate", "seal"]
        devices = []
        for device in lane["devices"]:
            if keep.get(device["kind"]) != device["transport"]["type"]:
                continue
            device["id"] = f"{lane_id}-{device['kind']}"
            transport = device["transport"]
            if transport["type"] == "mqtt":
                transport["topic"] = f"gate/{base['gate']}/{lane_id}/anpr/front"
            elif transport["type"] == "modbus_tcp":
                transport["port"] = 5020 + n  # re-pointed at a free port by the simulated gate
            else:
                transport["port"] = f"/dev/ttyBENCH{n}"
            devices.append(device)
        lane["devices"] = devices
        built.append(lane)
    base["lanes"] = built
    return site_from_mapping(base, origin="<kiosk bench>")


async def _run(lanes: int, streams: int, updates: int, seed: int) -> dict:
    from devices.readings import Loop, LoopChanged, PlateRead, SealRead, SealStatus
    from edge.users import UserStore
    from simulators.gate import SimulatedGate

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="smartgate-kiosk-bench-") as tmp:
        workdir = Path(tmp)
        with UserStore(workdir / "node" / "users.sqlite") as users:
            users.add_user("bench", "bench-password", "admin", "*")
            token = users.create_token("bench", "kiosk bench")
        gate = SimulatedGate(_bench_site(lanes), workdir, kiosk_port=0, boom_travel_s=0.05)
        await gate.start()
        child = None
        try:
            node = gate.node
            base = f"http://127.0.0.1:{node.kiosk_port}"
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.kiosk_bench", "--clients", base, token, str(streams), str(lanes),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"stream clients did not start: {line!r}")
            sent: dict[str, float] = {}
            started = time.perf_counter()

            async def drive(lane_id: str) -> None:
                controller = node.lanes[lane_id]
                barrier = f"{lane_id}-barrier"
                lane_rng = random.Random(rng.random())

                async def pause() -> None:
                    await asyncio.sleep(lane_rng.uniform(0.02, 0.06))

                for i in range((updates + 1) // 2):
                    now = time.time()
                    controller.submit(LoopChanged(barrier, Loop.ARRIVAL, True, now))
                    await pause()
                    plate = f"29C{lane_id[1:]}{i:05d}"
                    sent[f"{lane_id}|P|{plate}"] = time.monotonic()
                    controller.submit(PlateRead(f"{lane_id}-anpr", plate, 0.97, time.time(), time.time()))
                    await pause()
                    seal = f"SL{lane_id}{i:05d}"
                    sent[f"{lane_id}|S|{seal}"] = time.monotonic()
                    controller.submit(SealRead(f"{lane_id}-eseal", seal, SealStatus.INTACT, 90, None,
                                               time.time(), time.time()))
                    await pause()
                    controller.submit(LoopChanged(barrier, Loop.ARRIVAL, False, time.time()))
                    await pause()

            await asyncio.gather(*(drive(lane_id) for lane_id in node.lanes))
            await asyncio.sleep(1.0)
            elapsed = time.perf_counter() - started
            hub = node._server.config.app.state.hub if node._server else None
            dropped = sum(s.dropped for s in hub.subscribers) if hub else None
            child.stdin.write(b"stop\n")
            await child.stdin.drain()
            out, _ = await asyncio.wait_for(child.communicate(), 120)
            result = json.loads(out)
            child = None
        finally:
            if child is not None:
                child.kill()
                await child.wait()
            await gate.stop()

    latencies: list[float] = []
    missing = 0
    for seen in result["first_seen"]:
        for key, at in sent.items():
            if key in seen:
                latencies.append((seen[key] - at) * 1000)
            else:
                missing += 1
    return {
        "reading_to_stream_ms": percentiles(latencies),
        "lanes": lanes,
        "streams": streams,
        "readings": len(sent),
        "deliveries": len(latencies),
        "missing_deliveries": missing,
        "lane_events_per_stream": round(sum(result["lane_events"]) / max(1, streams)),
        "dropped_by_slow_streams": dropped,
        "readings_per_s": round(len(sent) / elapsed, 1),
        "target": "p99 <= 250 ms",
    }


def run_kiosk_bench(lanes: int = 4, streams: int = 20, updates: int = 100, seed: int = 11) -> dict:
    """Reading → SSE latency with `streams` open event streams; `updates` readings per lane."""
    return asyncio.run(_run(lanes, streams, updates, seed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", nargs=4, metavar=("BASE", "TOKEN", "STREAMS", "LANES"),
                        help="(internal) run the stream clients and print what they saw")
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args(argv)
    if args.clients:
        base, token, streams, lanes = args.clients
        print(json.dumps(asyncio.run(_clients(base, token, int(streams), int(lanes)))), flush=True)
        return 0
    print(json.dumps(run_kiosk_bench(args.lanes, args.streams, args.updates), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
