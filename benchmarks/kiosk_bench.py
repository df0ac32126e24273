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

Login flood (`login_flood` in the figures): a child process sends wrong-password log-ins as fast
as `concurrency` connections allow, from many loopback addresses (127.0.0.x) and names, never
waiting as told; meanwhile a ticker on the node's event loop measures how late it wakes (the
loop's lag: what every lane, driver and stream on that loop would feel), and an officer from an
address of their own logs in, retrying after each Retry-After. Run twice: with the kiosk's
bounded password pool, with a pool as wide as the old one (scrypt in Starlette's 40 threads,
nothing refused), and with GET /healthz instead of log-ins (what serving any HTTP flood on the
node's loop costs) for comparison.
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


# ---------------------------------------------------------------- the login flood (child process)


async def flood_logins(base: str, addresses: list[str], names: list[str], concurrency: int,
                       legit: tuple[str, str, str] | None = None, stop_after_s: float | None = None) -> dict:
    """Wrong-password log-ins from `addresses` until stdin says stop (or `stop_after_s`); counts answers.

    legit = (address, name, password): an officer logging in meanwhile from that (new) address, and
    the same officer at a kiosk terminal (the next address) where they logged in before the
    flood, each waiting as told between tries; the figures give how long until they were in and
    the answers they got. names ==
    ["@healthz"] sends GET /healthz instead (what any HTTP flood costs, for comparison).
    """
    import re
    from collections import Counter

    import httpx

    async def client_for(address: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
        transport = httpx.AsyncHTTPTransport(local_address=address, limits=httpx.Limits(
            max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2))
        client = httpx.AsyncClient(base_url=base, transport=transport, timeout=httpx.Timeout(60))
        page = await client.get("/login")
        token = re.search(r'name="sg-login-csrf" content="([^"]+)"', page.text).group(1)
        return client, {"x-csrf-token": token}

    clients = [await client_for(address) for address in addresses]
    codes: Counter[int] = Counter()
    retry_after: Counter[str] = Counter()
    latencies: list[float] = []
    stop = asyncio.Event()

    async def attacker(index: int) -> None:
        n = index
        while not stop.is_set():
            client, headers = clients[n % len(clients)]
            name = names[(n // len(clients)) % len(names)]
            n += concurrency
            started = time.perf_counter()
            try:
                if name == "@healthz":
                    response = await client.get("/healthz")
                else:
                    response = await client.post("/api/login", headers=headers,
                                                 json={"username": name, "password": f"wrong-{n}"})
            except httpx.HTTPError:
                codes[0] += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            codes[response.status_code] += 1
            if "retry-after" in response.headers:
                retry_after[response.headers["retry-after"]] += 1

    officers: dict[str, dict] = {}

    async def officer(address: str, name: str, password: str, label: str) -> None:
        client, headers = await client_for(address)
        started = time.perf_counter()
        tries = []
        while not stop.is_set():
            response = await client.post("/api/login", headers=headers, json={"username": name, "password": password})
            tries.append(response.status_code)
            if response.status_code == 200:
                break
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        done = bool(tries) and tries[-1] == 200
        officers[label] = {"seconds_to_log_in": round(time.perf_counter() - started, 3) if done else None,
                           "tries": tries}
        await client.aclose()

    if legit is not None:  # the kiosk terminal: someone logged in there before the flood
        address, name, password = legit
        terminal = address.rsplit(".", 1)[0] + "." + str(int(address.rsplit(".", 1)[1]) + 1)
        await officer(terminal, name, password, "warm-up")
        del officers["warm-up"]
    tasks = [asyncio.create_task(attacker(i)) for i in range(concurrency)]
    print("ready", flush=True)
    started = time.perf_counter()
    if legit is not None:
        await asyncio.sleep(0.5)  # the flood is under way
        tasks.append(asyncio.create_task(officer(address, name, password, "officer_new_address")))
        tasks.append(asyncio.create_task(officer(terminal, name, password, "officer_at_kiosk_terminal")))
    if stop_after_s is not None:
        await asyncio.sleep(stop_after_s)
    else:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    stop.set()
    elapsed = time.perf_counter() - started
    await asyncio.wait(tasks, timeout=30)
    for client, _ in clients:
        await client.aclose()
    return {"codes": {str(k): v for k, v in sorted(codes.items())}, "retry_after": dict(retry_after),
            "attempts_per_s": round(sum(codes.values()) / elapsed, 1), "answer_ms": percentiles(latencies),
            **officers}


async def _loop_lag(samples: list[float], interval_s: float = 0.01) -> None:
    """How late the event loop wakes a task asleep for `interval_s` (ms), until cancelled."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        samples.append((time.perf_counter() - started - interval_s) * 1000)


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _child(*args: str, what: str) -> asyncio.subprocess.Process:
    """Start `python -m benchmarks.kiosk_bench ARGS` (load from another process) and wait for its `ready` line."""
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "benchmarks.kiosk_bench", *args,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"{what} did not start: {line!r}")
    except BaseException:
        child.kill()
        await child.wait()
        raise
    return child


async def _child_result(child: asyncio.subprocess.Process) -> dict:
    """Tell the child to stop and read the figures it prints (JSON)."""
    child.stdin.write(b"stop\n")
    await child.stdin.drain()
    out, _ = await asyncio.wait_for(child.communicate(), 120)
    return json.loads(out)


async def _flood_run(concurrency: int, addresses: int, seconds: float, wide_pool: bool = False,
                     healthz: bool = False) -> dict:
    from edge.users import UserStore
    from simulators.gate import SimulatedGate

    with tempfile.TemporaryDirectory(prefix="smartgate-login-flood-") as tmp:
        workdir = Path(tmp)
        with UserStore(workdir / "node" / "users.sqlite") as users:
            users.add_user("super1", "super-pass-1", "supervisor", "*")
        gate = SimulatedGate(_bench_site(2), workdir, kiosk_port=0, boom_travel_s=0.05)
        await gate.start()
        child = None
        lag: list[float] = []
        ticker = asyncio.create_task(_loop_lag(lag))
        try:
            node = gate.node
            guard = node._server.config.app.state.login_guard
            if wide_pool:  # as before: scrypt in Starlette's 40 threads, nothing refused
                from edge.kiosk.auth import HashPool

                guard.pool = HashPool(threads=40, queue=100_000)
            settings = guard.throttle.settings
            await asyncio.sleep(2.0)
            idle = list(lag)
            lag.clear()
            rss_before = _rss_mib()
            base = f"http://127.0.0.1:{node.kiosk_port}"
            flood_addresses = ",".join(f"127.0.{1 + i // 250}.{2 + i % 250}" for i in range(addresses))
            child = await _child("--flood", base, flood_addresses,
                                 "@healthz" if healthz else "officer1,admin,root,operator,guest", str(concurrency),
                                 "127.0.9.9:super1:super-pass-1", what="flood")
            rss_peak = rss_before
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                rss_peak = max(rss_peak, _rss_mib())
            flooded = list(lag)
            result = await _child_result(child)
            child = None
            stats = guard.stats()
            heartbeat_lost = sum(1 for rig in gate.rigs.values() for _, what in rig.plc.model.history
                                 if "heartbeat lost" in what)
        finally:
            ticker.cancel()
            if child is not None:
                child.kill()
                await child.wait()
            await gate.stop()
    return {
        "flood": "GET /healthz" if healthz else "POST /api/login, wrong passwords",
        "pool": "40 threads, unbounded (as before)" if wide_pool else
                f"{settings.hash_threads} thread(s), {settings.hash_queue} waiting at most",
        "loop_lag_idle_ms": percentiles(idle, 2),
        "loop_lag_flood_ms": percentiles(flooded, 2),
        **result,
        "hash_checked": stats["hash_checked"], "hash_peak_pending": stats["hash_peak"],
        "hash_refused": stats["hash_refused"], "throttle_refused": stats["refused"],
        "rss_growth_mib": round(rss_peak - rss_before, 1),
        "plc_heartbeat_lost": heartbeat_lost,
    }


def run_login_flood_bench(concurrency: int = 64, addresses: int = 32, seconds: float = 8.0,
                          compare_wide_pool: bool = True) -> dict:
    """Event-loop lag and an officer's log-in while `concurrency` wrong-password log-ins flood the kiosk."""
    figures = {"bounded": asyncio.run(_flood_run(concurrency, addresses, seconds))}
    if compare_wide_pool:
        figures["wide_pool"] = asyncio.run(_flood_run(concurrency, addresses, seconds, wide_pool=True))
        figures["healthz_flood"] = asyncio.run(_flood_run(concurrency, addresses, seconds, healthz=True))
    figures.update(concurrency=concurrency, addresses=addresses, seconds=seconds)
    return figures


# ---------------------------------------------------------------- the node (this process)


def _bench_site(lanes: int):
    """A site with `lanes` lanes like Huu Nghi's IMP-1: barrier PLC, e-seal reader, plate camera."""
    from edge.config import CONFIG_ROOT, load_site, site_from_mapping

    base = load_site(CONFIG_ROOT / "sites" / "huu-nghi.yaml").site.model_dump()  # the CLI's default site
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
            child = await _child("--clients", base, token, str(streams), str(lanes), what="stream clients")
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
            result = await _child_result(child)
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


def run_kiosk_bench(lanes: int = 4, streams: int = 20, updates: int = 100, seed: int = 11,
                    flood: bool = True) -> dict:
    """Reading → SSE latency with `streams` open event streams; `updates` readings per lane; then the
    login flood (`login_flood`), unless flood=False."""
    figures = asyncio.run(_run(lanes, streams, updates, seed))
    if flood:
        quick = updates < 100
        figures["login_flood"] = run_login_flood_bench(seconds=4.0 if quick else 8.0)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", nargs=4, metavar=("BASE", "TOKEN", "STREAMS", "LANES"),
                        help="(internal) run the stream clients and print what they saw")
    parser.add_argument("--flood", nargs=5, metavar=("BASE", "ADDRESSES", "NAMES", "CONCURRENCY", "LEGIT"),
                        help="(internal) flood the kiosk with wrong passwords until stdin says stop")
    parser.add_argument("--only-flood", action="store_true", help="run only the login flood")
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args(argv)
    if args.clients:
        base, token, streams, lanes = args.clients
        print(json.dumps(asyncio.run(_clients(base, token, int(streams), int(lanes)))), flush=True)
        return 0
    if args.flood:
        base, addresses, names, concurrency, legit = args.flood
        officer = tuple(legit.split(":", 2)) if legit != "-" else None
        print(json.dumps(asyncio.run(flood_logins(base, addresses.split(","), names.split(","), int(concurrency),
                                                  officer))), flush=True)
        return 0
    if args.only_flood:
        print(json.dumps(run_login_flood_bench(), indent=2))
        return 0
    print(json.dumps(run_kiosk_bench(args.lanes, args.streams, args.updates), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
