"""The done-when runs: 1,000 transactions through a 60 s cut and a flapping link; a revocation made
during the cut reaches the cache within 5 s of the link coming back; central on a real PostgreSQL.

A "transaction" here is the journal rows a lane writes for one truck (reading, decision, barrier
command, tx_closed), appended through the real Journal with the outbox hook; the lanes' device
simulators are not in the loop (they would make 1,000 trucks take far longer than the CI budget).
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from edge.cache import DeclarationCache
from edge.declarations import DeclarationStatus
from edge.journal import Journal
from simulators.link_proxy import LinkProxy, ScheduleStep
from sync.central.server import CentralServer
from sync.client import SyncService
from tests.sync.helpers import AS_PUBLISHER, assert_exactly_once_in_order, enrolled, fast_config
from tests.sync.test_outbox_feed import _decl

LANES = ["IMP-1", "IMP-2", "EXP-1", "EXP-2"]


def _produce(journal: Journal, n_tx: int, duration_s: float, stop: threading.Event) -> None:
    """Append n_tx truck transactions evenly over duration_s (4 rows each), from a worker thread."""
    start = time.monotonic()
    for i in range(n_tx):
        if stop.is_set():
            return
        lane = LANES[i % len(LANES)]
        journal.append("reading", {"tx": i, "plate": f"29C{i:05d}"}, lane=lane)
        journal.append("decision", {"tx": i, "outcome": "release"}, lane=lane)
        journal.append("barrier", {"tx": i, "command": "open"}, lane=lane)
        journal.append("tx_closed", {"tx": i}, lane=lane)
        delay = start + (i + 1) * duration_s / n_tx - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@pytest.mark.timeout(240)
def test_thousand_transactions_through_a_60s_cut_and_flapping(tmp_path, pg_url, keypair):
    asyncio.run(_scenario(tmp_path, pg_url, keypair, cut_at=10.0, cut_s=60.0, flap_s=12.0, n_tx=1000))


async def _scenario(tmp_path, pg_url, keypair, *, cut_at, cut_s, flap_s, n_tx):
    central = await asyncio.to_thread(CentralServer(pg_url, keypair[0], **enrolled(tmp_path)).start)
    proxy = await LinkProxy("127.0.0.1", central.port).start()
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    admin = httpx.Client(base_url=central.url, headers=AS_PUBLISHER)
    admin.post("/api/v1/declarations", json={"declarations": [_decl("D-REVOKE")]}).raise_for_status()
    sync = SyncService("HN", fast_config(f"http://127.0.0.1:{proxy.port}", keypair[1]), journal, cache,
                       public_key=keypair[1])
    sync.start()
    stop = threading.Event()
    producer = None
    link_back = cut_at + cut_s
    steps = [ScheduleStep(cut_at, "blackhole", cut_s)]
    t, modes = link_back + 1.0, ["drop", "reset", "delay", "blackhole", "drop", "reset"]
    for mode in modes:  # flapping after the cut
        steps.append(ScheduleStep(t, mode, 1.0, delay_ms=300))
        t += flap_s / len(modes)
    try:
        deadline = time.monotonic() + 10
        while cache.get("D-REVOKE") is None:
            assert time.monotonic() < deadline, "declaration never reached the cache"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        proxy.run_schedule(steps)
        producer = asyncio.create_task(asyncio.to_thread(_produce, journal, n_tx, link_back + flap_s - 2, stop))
        await asyncio.sleep(cut_at + cut_s / 2)
        assert sync.link.state == ("down" if cut_s / 2 > 4.0 else "degraded") and sync.outbox.backlog() > 0
        admin.post("/api/v1/declarations/D-REVOKE/revoke", json={"reason": "test"}).raise_for_status()
        await asyncio.sleep(max(0.0, started + link_back - time.monotonic()))
        while cache.get("D-REVOKE").status != DeclarationStatus.CANCELLED:
            assert time.monotonic() - (started + link_back) < 5.0, "revocation not applied within 5 s of link-up"
            await asyncio.sleep(0.05)
        await producer
        deadline = time.monotonic() + 60
        while sync.outbox.backlog() or central.store.event_count("HN") < journal.count():
            assert time.monotonic() < deadline, f"backlog {sync.outbox.backlog()} not drained"
            await asyncio.sleep(0.1)
        assert journal.count() == 4 * n_tx
        assert_exactly_once_in_order(central.store.events("HN"), journal.entries())
        assert sync.status()["link"]["state"] in ("up", "degraded")
    finally:
        stop.set()
        if producer is not None:
            await asyncio.gather(producer, return_exceptions=True)
        await sync.stop()
        await proxy.stop()
        journal.close()
        cache.close()
        await asyncio.to_thread(central.stop)


@pytest.mark.timeout(60)
def test_short_cut_quick(tmp_path, keypair):
    """The same run, small and on SQLite, for a quick signal."""
    asyncio.run(_scenario(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite'}", keypair, cut_at=1.0, cut_s=5.0,
                          flap_s=3.0, n_tx=100))


@pytest.mark.timeout(60)
def test_uploader_in_a_long_backoff_sends_as_soon_as_the_link_returns(tmp_path, keypair):
    """The feed's next pull sees the link back; the uploader then sends at once, not at the end of its backoff."""
    asyncio.run(_early_wake(tmp_path, keypair))


async def _early_wake(tmp_path, keypair):
    central = await asyncio.to_thread(
        CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], **enrolled(tmp_path)).start)
    proxy = await LinkProxy("127.0.0.1", central.port).start()
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    # Upload backoff: at least 15 s after a failure (initial/4); the feed retries every 2 s at most.
    config = fast_config(f"http://127.0.0.1:{proxy.port}", keypair[1], backoff_initial_s=60.0,
                         backoff_max_s=120.0, request_timeout_s=1.0, down_after_s=2.0)
    sync = SyncService("HN", config, journal, cache, public_key=keypair[1])
    sync.start()
    try:
        deadline = time.monotonic() + 10
        while sync.link.state != "up":
            assert time.monotonic() < deadline, "link never came up"
            await asyncio.sleep(0.05)
        proxy.set_mode("drop")
        for i in range(20):
            journal.append("reading", {"i": i}, lane="L1")
        deadline = time.monotonic() + 10
        while sync.upload_errors == 0:
            assert time.monotonic() < deadline, "the uploader never failed against the dropped link"
            await asyncio.sleep(0.02)
        failed_at = time.monotonic()  # the uploader now backs off for 15 s or more
        proxy.set_mode("pass")
        while central.store.event_count("HN") < 20:
            assert time.monotonic() - failed_at < 10.0, "events waited for the end of the upload backoff"
            await asyncio.sleep(0.05)
        assert_exactly_once_in_order(central.store.events("HN"), journal.entries())
    finally:
        await sync.stop()
        await proxy.stop()
        journal.close()
        cache.close()
        await asyncio.to_thread(central.stop)
