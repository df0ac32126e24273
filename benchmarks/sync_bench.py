"""Sync figures: durable outbox enqueue rate, backlog drain time, feed apply rate, link-up → revocation applied."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from edge.cache import DeclarationCache
from edge.config import CentralConfig
from edge.declarations import DeclarationStatus
from edge.journal import Journal, head_public_b64, load_or_create_head_key
from simulators.link_proxy import LinkProxy
from sync.central.server import CentralServer
from sync.client import SyncService
from sync.feed import apply_batch
from sync.keys import generate_keypair, public_b64
from sync.outbox import Outbox
from sync.tokens import new_token

TOKEN = new_token()  # the bench gate's credential at central
PUBLISHER = new_token()  # the bench's publisher at central


def _enrolled(data_dir: Path) -> dict:
    """CentralServer arguments: gate HN with its token and the bench node's journal-head key, and a publisher."""
    return {"tokens": {"HN": TOKEN}, "head_keys": {"HN": head_public_b64(load_or_create_head_key(data_dir))},
            "api_tokens": {"bench-publisher": ("publisher", PUBLISHER)}}


def _decl(number: str, gate: str = "HN", version: int = 1) -> dict:
    now = datetime.now(UTC)
    return {"number": number, "kind": "import", "gate": gate, "plates": [f"29C{number[-5:]}"],
            "containers": [], "seals": [], "channel": "green", "status": "cleared",
            "valid_from": (now - timedelta(days=1)).isoformat(), "valid_until": (now + timedelta(days=1)).isoformat(),
            "version": version}


def _config(url: str, public, **kw) -> CentralConfig:
    values = dict(url=url, public_key=public_b64(public), token=TOKEN, upload_batch=2000, backoff_initial_s=0.05,
                  backoff_max_s=0.5, request_timeout_s=2.0, down_after_s=3.0, feed_poll_s=30.0, insecure_http=True)
    values.update(kw)
    return CentralConfig(**values)


def bench_enqueue(tmp: Path, n: int) -> dict:
    journal = Journal.open(tmp / "enqueue.sqlite")
    outbox = Outbox(journal)
    payload = {"plate": "29C12345", "outcome": "release", "reasons": ["OK"]}
    started = time.perf_counter()
    for i in range(n):
        journal.append("decision", {**payload, "i": i}, lane="IMP-1")
    single = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, n * 10, 100):
        journal.append_many([("reading", {**payload, "i": i}, "IMP-1", None) for i in range(start, start + 100)])
    batched = n * 10 / (time.perf_counter() - started)
    lanes, commits_before = 4, journal.commits
    started = time.perf_counter()
    asyncio.run(_lanes_appending(journal, payload, lanes, n))
    grouped = lanes * n / (time.perf_counter() - started)
    commits = journal.commits - commits_before
    assert outbox.rows == n * 11 + lanes * n
    outbox.close()
    journal.close()
    return {"enqueue_events_per_s_one_commit_each": round(single),
            "enqueue_events_per_s_100_per_commit": round(batched),
            "enqueue_events_per_s_4_lanes_group_commit": round(grouped),
            "enqueue_4_lanes_events_per_commit": round(lanes * n / commits, 2)}


async def _lanes_appending(journal: Journal, payload: dict, lanes: int, per_lane: int) -> None:
    """Lanes as the node runs them: each awaits its row's commit (append_async) before the next."""

    async def lane(name: str) -> None:
        for i in range(per_lane):
            await journal.append_async("decision", {**payload, "i": i}, lane=name)

    await asyncio.gather(*(lane(f"L{k}") for k in range(lanes)))


async def _until(condition, timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    """Wait for `condition`; a phase that never ends fails the bench naming what it waited for."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"sync bench: waited {timeout_s:.0f} s for {what}")
        await asyncio.sleep(poll_s)


async def _within(step, timeout_s: float, what: str) -> None:
    """Await `step`, failing the bench naming it when it takes longer than `timeout_s`."""
    try:
        await asyncio.wait_for(step, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"sync bench: waited {timeout_s:.0f} s for {what}") from None


async def bench_drain(tmp: Path, n: int, db_url: str) -> dict:
    private, public = generate_keypair()
    central = await asyncio.to_thread(CentralServer(db_url, private, **_enrolled(tmp)).start)
    journal = Journal.open(tmp / "drain.sqlite")
    cache = DeclarationCache.open(tmp / "drain-cache.sqlite")
    sync = SyncService("HN", _config(central.url, public), journal, cache, public_key=public)
    for start in range(0, n, 1000):
        journal.append_many([("reading", {"plate": "29C12345", "i": i}, f"L{i % 4}", None)
                             for i in range(start, start + 1000)])
    started = time.perf_counter()
    sync.start()
    await _until(lambda: not sync.outbox.backlog(), 600, "the outbox to drain to central", poll_s=0.05)
    drain = time.perf_counter() - started
    count = central.store.event_count("HN")
    await _within(sync.stop(), 30, "the sync service to stop")
    journal.close()
    cache.close()
    await _within(asyncio.to_thread(central.stop), 30, "the central server to stop")
    return {"drain_events": n, "drain_s": round(drain, 2), "drain_events_per_s": round(n / drain),
            "central_events": count, "central_db": db_url.split(":")[0]}


def bench_apply(tmp: Path, n: int) -> dict:
    cache = DeclarationCache.open(tmp / "apply.sqlite")
    batch = {"gate": "HN", "cursor_from": 0, "cursor_to": n, "issued_at": time.time(), "nonce": "bench-nonce",
             "declarations": [_decl(f"D{i:07d}") for i in range(n)], "revocations": []}
    started = time.perf_counter()
    apply_batch(cache, batch, "HN")
    first = n / (time.perf_counter() - started)
    batch2 = {**batch, "cursor_from": n, "cursor_to": 2 * n,
              "declarations": [_decl(f"D{i:07d}", version=2) for i in range(n)],
              "revocations": [{"number": f"D{i:07d}", "version": 3} for i in range(0, n, 10)]}
    started = time.perf_counter()
    apply_batch(cache, batch2, "HN")
    amend = n / (time.perf_counter() - started)
    cache.close()
    return {"apply_declarations_per_s_new": round(first), "apply_declarations_per_s_amend_and_revoke": round(amend)}


async def bench_revocation(tmp: Path, runs: int) -> dict:
    private, public = generate_keypair()
    central = await asyncio.to_thread(CentralServer(f"sqlite:///{tmp / 'rev.sqlite'}", private,
                                                    **_enrolled(tmp)).start)
    proxy = await LinkProxy("127.0.0.1", central.port).start()
    journal = Journal.open(tmp / "rev-journal.sqlite")
    cache = DeclarationCache.open(tmp / "rev-cache.sqlite")
    sync = SyncService("HN", _config(f"http://127.0.0.1:{proxy.port}", public, backoff_max_s=2.0,
                                     request_timeout_s=1.0, feed_poll_s=1.0), journal, cache, public_key=public)
    admin = httpx.Client(base_url=central.url, headers={"Authorization": f"Bearer {PUBLISHER}"})
    sync.start()
    times = []
    for run in range(runs):
        number = f"R{run:04d}"
        admin.post("/api/v1/declarations", json={"declarations": [_decl(number)]}).raise_for_status()
        await _until(lambda number=number: cache.get(number) is not None, 60,
                     f"declaration {number} to reach the cache")
        proxy.set_mode("blackhole")
        await asyncio.sleep(3.0)
        admin.post(f"/api/v1/declarations/{number}/revoke", json={}).raise_for_status()
        proxy.set_mode("pass")
        up = time.perf_counter()
        await _until(lambda number=number: cache.get(number).status == DeclarationStatus.CANCELLED, 60,
                     f"the revocation of {number} to reach the cache after the link came back", poll_s=0.01)
        times.append(time.perf_counter() - up)
    await _within(sync.stop(), 30, "the sync service to stop")
    await _within(proxy.stop(), 30, "the link proxy to stop")
    journal.close()
    cache.close()
    await _within(asyncio.to_thread(central.stop), 30, "the central server to stop")
    times.sort()
    return {"link_up_to_revocation_s_median": round(times[len(times) // 2], 2), "link_up_to_revocation_s_max":
            round(times[-1], 2), "revocation_runs": runs}


def run_sync_bench(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="sg-sync-bench-") as name:
        tmp = Path(name)
        figures = bench_enqueue(tmp, 500 if quick else 3000)
        db_url = os.environ.get("SMARTGATE_BENCH_CENTRAL_DB") or f"sqlite:///{tmp / 'central.sqlite'}"
        figures.update(asyncio.run(bench_drain(tmp, 10_000 if quick else 100_000, db_url)))
        figures.update(bench_apply(tmp, 5_000 if quick else 50_000))
        figures.update(asyncio.run(bench_revocation(tmp, 1 if quick else 5)))
    figures["targets"] = {"enqueue_events_per_s": 5000, "drain_100k_s": 60, "apply_declarations_per_s": 20000}
    return figures
