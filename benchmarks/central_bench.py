"""Central at scale (`smartgate bench central`): N simulated gates upload events, send telemetry and pull the feed.

Each gate has its own journal-head key (enrolled at central as `smartgate central enrol-gate` does) and
token, and uploads what a node's outbox sends (sync/client.py): journal rows in seq order, hash-chained
(edge/journal.py), `upload_batch` rows a request, one request at a time, each with the journal head signed
by the node's key. Meanwhile every gate publishes telemetry over MQTT (central takes it with a shared
subscription when it has several workers) and pulls its signed feed every `feed_poll_s` and at once on
central's feed notification. Mid-load one declaration of every gate is revoked at central; the figure is
how long until each gate's feed pull (signature checked) carries it.

Central runs as `smartgate central serve --workers N` does (sync/central/workers.py), over HTTPS, on PostgreSQL: a
fresh database per run on `SMARTGATE_BENCH_PG` (default the machine's postgresql://postgres@127.0.0.1:5432).
The load generator shares the machine's CPUs with central and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from benchmarks.stats import percentiles
from edge.journal import GENESIS_HASH, canonical_json, entry_hash, head_public_b64
from sync.central.store import CentralStore
from sync.central.workers import CentralWorkers, WorkerOptions
from sync.keys import verify, write_keypair
from sync.tokens import new_token

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"


@dataclass
class SimGate:
    """One simulated gate: its token, precomputed upload bodies, and what it saw."""

    name: str
    token: str
    bodies: list[bytes]
    events: int
    declaration: str
    upload_s: list[float] = field(default_factory=list)
    pull_now: asyncio.Event | None = None
    cursor: int = 0
    revoked_at: float | None = None  # monotonic time its feed pull carried the revocation
    pulls: int = 0


def _gate_uploads(name: str, lanes: int, events: int, batch: int) -> tuple[list[bytes], object]:
    """The gate's upload bodies (its whole journal, hash-chained, in batches) and its journal-head key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    prev, now, rows = GENESIS_HASH, time.time(), []
    for seq in range(1, events + 1):
        lane = f"L{seq % lanes + 1}"
        payload = {"plate": f"29C{seq % 100000:05d}", "container": "MSKU1234565", "seal": f"ES{seq:08d}",
                   "outcome": "release", "reasons": ["OK"], "weight_kg": 30000 + seq % 997, "lane": lane}
        event_id, at = uuid.uuid4().hex, round(now + seq * 0.001, 6)
        digest = entry_hash(prev, seq, event_id, at, lane, "decision", payload)
        rows.append({"seq": seq, "event_id": event_id, "at": at, "lane": lane, "kind": "decision",
                     "payload": canonical_json(payload), "prev_hash": prev, "hash": digest})
        prev = digest
    bodies = []
    for start in range(0, events, batch):
        chunk = rows[start:start + batch]
        head = {"gate": name, "seq": chunk[-1]["seq"], "hash": chunk[-1]["hash"]}
        signature = base64.b64encode(key.sign(canonical_json(head).encode())).decode()
        bodies.append(json.dumps({"events": chunk, "backlog": events - start - len(chunk), "head": head,
                                  "head_signature": signature}).encode())
    return bodies, key


def _declaration(number: str, gate: str) -> dict:
    now = datetime.now(UTC)
    return {"number": number, "kind": "import", "gate": gate, "plates": ["29C12345"], "containers": [], "seals": [],
            "channel": "green", "status": "cleared", "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=1)).isoformat(), "version": 1}


def _fresh_database(base: str) -> str:
    import psycopg

    name = f"sg_bench_central_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise SystemExit(f"central bench: cannot make a database on {base} ({type(exc).__name__}: {exc}); start "
                         "PostgreSQL (scripts/setup.sh installs it) or set "
                         "SMARTGATE_BENCH_PG=postgresql://USER@HOST:PORT to a server where USER may create "
                         "databases") from exc
    return name


def _drop_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _Telemetry:
    """Every gate's telemetry over MQTT (lanes, devices, sync) every period, and central's feed notifications in."""

    def __init__(self, host: str, port: int, gates: list[SimGate], period_s: float, loop: asyncio.AbstractEventLoop):
        from devices.transports.mqtt import new_client

        self.gates, self.period_s, self.loop = {g.name: g for g in gates}, period_s, loop
        self.published, self.notified = 0, 0
        self.client = new_client(f"bench-gates-{uuid.uuid4().hex[:6]}", None)
        self.client.on_connect = lambda c, *_: c.subscribe("smartgate/+/feed/notify", qos=1)
        self.client.on_message = self._on_notify
        self.client.connect(host, port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-telemetry", daemon=True)

    def _on_notify(self, _client, _userdata, message) -> None:
        gate = self.gates.get(message.topic.split("/")[1])
        if gate is not None and gate.pull_now is not None:
            self.notified += 1
            self.loop.call_soon_threadsafe(gate.pull_now.set)

    def _run(self) -> None:
        while True:
            for name in self.gates:
                lanes = [{"lane": f"L{i}", "state": "IDLE", "faults": []} for i in range(1, 5)]
                self.client.publish(f"smartgate/{name}/telemetry/lanes", json.dumps(lanes), qos=1)
                self.client.publish(f"smartgate/{name}/telemetry/sync", json.dumps({"backlog": 0, "link": "up"}),
                                    qos=1)
                self.published += 2
            if self._stop.wait(self.period_s):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def _gates_with_telemetry(db_url: str) -> int:
    store = CentralStore(db_url)
    try:
        return sum(1 for g in store.gates() if (g.get("telemetry") or {}).get("lanes"))
    finally:
        store.close()


async def _upload_all(gate: SimGate, client: httpx.AsyncClient) -> None:
    for body in gate.bodies:
        started = time.perf_counter()
        response = await client.post(f"/api/v1/gates/{gate.name}/events", content=body,
                                     headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"central bench: gate {gate.name}'s upload answered {response.status_code}: "
                               f"{response.text[:300]}")
        gate.upload_s.append(time.perf_counter() - started)


async def _pull_loop(gate: SimGate, client: httpx.AsyncClient, public, poll_s: float, stop: asyncio.Event) -> None:
    assert gate.pull_now is not None
    while not stop.is_set():
        response = await client.get(f"/api/v1/gates/{gate.name}/feed",
                                    params={"cursor": gate.cursor, "nonce": uuid.uuid4().hex})
        response.raise_for_status()
        message = response.json()
        if not verify(public, message["batch"], message["signature"]):
            raise RuntimeError(f"central bench: gate {gate.name}'s feed batch does not verify")
        gate.pulls += 1
        batch = message["batch"]
        gate.cursor = batch["cursor_to"]
        if gate.revoked_at is None and any(r["number"] == gate.declaration for r in batch["revocations"]):
            gate.revoked_at = time.monotonic()
        gate.pull_now.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gate.pull_now.wait(), poll_s)


def _tls(tmp: Path) -> tuple[str, str, ssl.SSLContext]:
    """Central's HTTPS certificate from a throwaway CA (as `smartgate central tls` makes), and the gates' trust."""
    from edge.pki import issue, make_ca

    if not (tmp / "ca" / "ca.crt").exists():
        make_ca(tmp / "ca", "smartgate bench central CA")
    issued = issue(tmp / "ca", tmp / "tls", "central", server=True, hosts=("127.0.0.1", "localhost"))
    return str(issued.cert), str(issued.key), ssl.create_default_context(cafile=str(tmp / "ca" / "ca.crt"))


async def _one_run(base: str, tmp: Path, workers: int, gates: int, lanes: int, events: int, batch: int,
                   feed_poll_s: float, broker, tls: bool) -> dict:
    name = _fresh_database(base)
    db_url = f"{base}/{name}"
    try:
        key_file = tmp / "central.key"
        public = write_keypair(key_file, tmp / "central.pub.pem")
        store = CentralStore(db_url)
        sims, publisher = [], new_token()
        store.set_api_token("bench-publisher", "publisher", publisher)
        declarations = []
        for index in range(gates):
            gate = f"G{index:03d}"
            bodies, head_key = await asyncio.to_thread(_gate_uploads, gate, lanes, events, batch)
            token = new_token()
            store.enrol_gate(gate, token, head_public_b64(head_key))
            sims.append(SimGate(gate, token, bodies, events, f"D{gate}"))
            declarations.append(_declaration(f"D{gate}", gate))
        store.publish(declarations)
        store.close()
        cert, key, verify_tls = _tls(tmp) if tls else (None, None, False)
        options = WorkerOptions(db_url, str(key_file), cert, key, mqtt=f"{broker.host}:{broker.port}")
        central = await asyncio.to_thread(CentralWorkers(options, workers=workers).start)
        loop = asyncio.get_running_loop()
        for sim in sims:
            sim.pull_now = asyncio.Event()
        telemetry = _Telemetry(broker.host, broker.port, sims, 1.0, loop)
        clients = [httpx.AsyncClient(base_url=central.url, timeout=60.0, verify=verify_tls,
                                     headers={"Authorization": f"Bearer {sim.token}"}) for sim in sims]
        stop = asyncio.Event()
        try:
            telemetry.start()
            pullers = [asyncio.create_task(_pull_loop(s, c, public, feed_poll_s, stop))
                       for s, c in zip(sims, clients, strict=True)]
            started = time.perf_counter()
            uploads = [asyncio.create_task(_upload_all(s, c)) for s, c in zip(sims, clients, strict=True)]
            await asyncio.sleep(min(1.0, 0.2 * len(sims[0].bodies)))  # under load: revoke every gate's declaration
            async with httpx.AsyncClient(base_url=central.url, timeout=60.0, verify=verify_tls,
                                         headers={"Authorization": f"Bearer {publisher}"}) as admin:
                revoked = time.monotonic()
                answers = await asyncio.gather(*(admin.post(f"/api/v1/declarations/{s.declaration}/revoke",
                                                            json={"reason": "bench"}) for s in sims))
                for answer in answers:
                    answer.raise_for_status()
                published = time.monotonic() - revoked
            await asyncio.gather(*uploads)
            ingest_s = time.perf_counter() - started
            deadline = time.monotonic() + 60
            while any(s.revoked_at is None for s in sims) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            while _gates_with_telemetry(db_url) < gates and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the first telemetry of every gate stored, by whichever worker took it
            stop.set()
            for sim in sims:
                sim.pull_now.set()
            await asyncio.gather(*pullers)
        finally:
            telemetry.stop()
            for client in clients:
                await client.aclose()
            await asyncio.to_thread(central.stop)
        check = CentralStore(db_url)
        stored = check.event_count()
        check.close()
        seen = _gates_with_telemetry(db_url)
        late = [s.name for s in sims if s.revoked_at is None]
        if late:
            raise RuntimeError(f"central bench: the revocation never reached gates {late[:5]}")
        reach = [s.revoked_at - revoked for s in sims]  # type: ignore[operator]
        total = gates * events
        if stored != total:
            raise RuntimeError(f"central bench: central holds {stored} events, the gates sent {total}")
        return {"events": total, "ingest_s": round(ingest_s, 3), "ingest_events_per_s": round(total / ingest_s),
                "upload_ms": percentiles([x * 1000 for s in sims for x in s.upload_s], 1),
                "revocation_all_gates_s": round(max(reach), 3), "revocation_p50_s": round(statistics.median(reach), 3),
                "revocations_published_s": round(published, 3), "feed_pulls": sum(s.pulls for s in sims),
                "feed_notifications": telemetry.notified, "telemetry_published": telemetry.published,
                "telemetry_gates_seen": seen}
    finally:
        _drop_database(base, name)


def run_central_bench(gates: int = 50, lanes: int = 4, events: int = 2000, batch: int = 500, runs: int = 3,
                      workers: tuple[int, ...] = (1, 2), feed_poll_s: float = 1.0, pg: str | None = None,
                      tls: bool = True) -> dict:
    """Figures per worker count: the median run by ingest rate, and every run's figures."""
    from simulators.broker import PrivateBroker

    base = (pg or os.environ.get("SMARTGATE_BENCH_PG") or PG_DEFAULT).rstrip("/")
    result: dict = {"gates": gates, "lanes_per_gate": lanes, "events_per_gate": events, "upload_batch": batch,
                    "runs": runs, "feed_poll_s": feed_poll_s, "db": "postgresql", "https": tls,
                    "load_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="sg-central-bench-") as name, PrivateBroker(secure=False) as broker:
        for count in workers:
            figures = [asyncio.run(_one_run(base, Path(name), count, gates, lanes, events, batch, feed_poll_s, broker,
                                            tls)) for _ in range(runs)]
            by_rate = sorted(figures, key=lambda f: f["ingest_events_per_s"])
            result[f"workers_{count}"] = {
                "ingest_events_per_s_median": by_rate[len(by_rate) // 2]["ingest_events_per_s"],
                "revocation_all_gates_s_median": statistics.median(f["revocation_all_gates_s"] for f in figures),
                "upload_ms_p50_median": statistics.median(f["upload_ms"]["p50"] for f in figures),
                "upload_ms_p99_median": statistics.median(f["upload_ms"]["p99"] for f in figures),
                "runs": figures}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = {"ingest_events_per_s": 5000, "revocation_all_gates_s": 5.0}
    return result
