"""Central and the node when our own parts fail: a PostgreSQL restart under a running central, a blackholed link.

* Central's database restarts while the real node sync client uploads: every request in the
  outage answers 503 with Retry-After and the house error shape (never 500), the node backs off,
  and afterwards central holds every journal event exactly once, in order.
* A blackholed link comes back: the uploader, stuck on a connection the proxy swallows, is sending
  again within about a second of the link's return, not after `request_timeout_s`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from edge.cache import DeclarationCache
from edge.journal import Journal
from simulators.link_proxy import LinkProxy
from sync.central.server import CentralServer
from tests.conftest import wait_until
from tests.sync.helpers import AS_MONITOR, assert_exactly_once_in_order, enrolled, fast_config
from tests.sync.test_sparkplug import _snapshot


def _produce(journal: Journal, rows: int, every_s: float, stop: threading.Event) -> None:
    """Append `rows` journal rows, one every `every_s`, from a worker thread (the lanes keep deciding)."""
    for i in range(rows):
        if stop.is_set():
            return
        journal.append("reading", {"i": i, "plate": f"29C{i:05d}"}, lane=("IMP-1", "EXP-1")[i % 2])
        time.sleep(every_s)


@pytest.mark.timeout(120)
def test_database_restart_answers_503_and_the_node_catches_up_exactly_once(tmp_path, keypair, own_postgres):
    asyncio.run(_database_restart(tmp_path, keypair, own_postgres))


async def _database_restart(tmp_path, keypair, pg):
    from sync.client import SyncService

    central = await asyncio.to_thread(CentralServer(f"{pg.url}/central", keypair[0], **enrolled(tmp_path)).start)
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    sync = SyncService("HN", fast_config(central.url, keypair[1]), journal, cache, public_key=keypair[1])
    answers: list[tuple[int, str | None]] = []  # what the node's uploads and pulls got: (status, Retry-After)

    async def seen(response: httpx.Response) -> None:
        answers.append((response.status_code, response.headers.get("Retry-After")))

    stop = threading.Event()
    producer = None
    monitor = httpx.AsyncClient(base_url=central.url, headers=AS_MONITOR, timeout=10)
    sync.start()
    sync._client.event_hooks["response"].append(seen)
    try:
        producer = asyncio.ensure_future(asyncio.to_thread(_produce, journal, 300, 0.02, stop))
        await wait_until(lambda: sync.uploaded >= 20, 10, "first uploads")
        await asyncio.to_thread(pg.stop)  # as a crash would: every connection of central's pool is cut
        down_at = time.monotonic()

        answer = await monitor.get("/api/v1/gates")
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["detail"]["code"] == "DATABASE_UNAVAILABLE"
        assert answer.json()["detail"]["message"]
        assert (await monitor.get("/healthz")).status_code == 503
        await wait_until(lambda: sync.central_unavailable >= 2, 15, "the node to meet central's 503s")
        assert sync.outbox.backlog() > 0  # the journal kept growing; the outbox holds it
        await asyncio.sleep(max(0.0, down_at + 3.0 - time.monotonic()))  # a 3 s outage
        await asyncio.to_thread(pg.start)
        back_at = time.monotonic()

        await producer
        await wait_until(lambda: sync.outbox.backlog() == 0, 30, "the backlog to drain after the restart")
        caught_up_s = time.monotonic() - back_at
        assert caught_up_s < 15, caught_up_s
        assert (await monitor.get("/healthz")).status_code == 200
        assert journal.count() == 300
        assert_exactly_once_in_order(central.store.events("HN"), journal.entries())
        statuses = [status for status, _ in answers]
        assert 503 in statuses and 500 not in statuses, sorted(set(statuses))
        assert all(retry == "1" for status, retry in answers if status == 503)
        assert sync.status()["central_unavailable"] == sync.central_unavailable
    finally:
        stop.set()
        if producer is not None:
            await asyncio.gather(producer, return_exceptions=True)
        await sync.stop()
        await monitor.aclose()
        journal.close()
        cache.close()
        await asyncio.to_thread(central.stop)


@pytest.mark.timeout(60)
def test_store_answers_unavailable_in_time_and_uses_the_restarted_database(own_postgres):
    """No connection kept from before: a call in the outage fails fast, the first after it finds the data."""
    from sync.central.store import CentralStore, DatabaseUnavailable

    store = CentralStore(f"{own_postgres.url}/central")
    try:
        store.set_api_token("ops", "monitor", "monitor-token-for-the-restart-test-01")
        own_postgres.stop()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            store.api_tokens()
        assert time.monotonic() - started < 3.0  # db_timeout_s 1 s, plus the failed check
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            store.identify("monitor-token-for-the-restart-test-01")
        assert time.monotonic() - started < 3.0
        own_postgres.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert [t["name"] for t in store.api_tokens()] == ["ops"]
                break
            except DatabaseUnavailable:
                assert time.monotonic() < deadline, "the restarted database was never used again"
                time.sleep(0.1)
        assert time.monotonic() - started < 10
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_central_on_sqlite_still_answers_healthz_with_its_kind(tmp_path, keypair):
    central = CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], **enrolled(tmp_path)).start()
    try:
        body = httpx.get(f"{central.url}/healthz").json()
        assert (body["status"], body["db"]) == ("ok", "sqlite") and body["worker"] > 0  # the answering process
    finally:
        central.stop()


async def time_to_first_upload_after_blackhole(tmp_path, keypair, *, blackhole_s: float,
                                               cut_first: bool) -> tuple[float, dict]:
    """Blackhole the link while rows wait, restore it: (seconds until central holds the first of them, sync status).

    `cut_first`: open connections are cut as the link goes (the uploader's next attempt opens a new
    connection into the black hole, which stays dead after the link returns); otherwise they stall
    and, if the black hole outlasts `request_timeout_s`, the retry lands in the black hole the same way.
    """
    from sync.client import SyncService

    central = await asyncio.to_thread(
        CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], **enrolled(tmp_path)).start)
    proxy = await LinkProxy("127.0.0.1", central.port).start()
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    # The defaults a site runs with: 10 s request timeout; the uploader's backoff up to 30 s.
    config = fast_config(f"http://127.0.0.1:{proxy.port}", keypair[1], request_timeout_s=10.0,
                         backoff_initial_s=0.5, backoff_max_s=30.0, down_after_s=30.0, feed_poll_s=30.0)
    sync = SyncService("HN", config, journal, cache, public_key=keypair[1])
    sync.start()
    try:
        await wait_until(lambda: sync.link.state == "up", 10, "the link to come up")
        journal.append("reading", {"i": 0}, lane="L1")
        await wait_until(lambda: central.store.event_count("HN") == 1, 10, "the first upload")
        if cut_first:
            proxy.set_mode("drop")
        proxy.set_mode("blackhole")
        for i in range(1, 21):
            journal.append("reading", {"i": i}, lane="L1")  # the uploader sends into the black hole
        await asyncio.sleep(blackhole_s)
        proxy.set_mode("pass")
        restored = time.monotonic()
        await wait_until(lambda: central.store.event_count("HN") > 1, 15, "an upload after the link returned")
        elapsed = time.monotonic() - restored
        await wait_until(lambda: sync.outbox.backlog() == 0, 15, "the backlog to drain")
        assert_exactly_once_in_order(central.store.events("HN"), journal.entries())
        return elapsed, sync.status()
    finally:
        await sync.stop()
        await proxy.stop()
        journal.close()
        cache.close()
        await asyncio.to_thread(central.stop)


@pytest.mark.timeout(60)
def test_a_returning_link_is_used_within_about_a_second(tmp_path, keypair):
    """Without the watch the upload waits out its 10 s read timeout on a connection the black hole swallowed."""
    elapsed, status = asyncio.run(time_to_first_upload_after_blackhole(tmp_path, keypair, blackhole_s=3.1,
                                                                       cut_first=True))
    assert elapsed < 2.0, f"first upload {elapsed:.2f} s after the link returned"
    assert status["abandoned"] >= 1  # the stuck request was given up, not waited out


@pytest.mark.timeout(90)
def test_central_still_hears_the_gates_after_a_sparkplug_message_during_a_database_restart(tmp_path, keypair,
                                                                                           own_postgres):
    """Found by `smartgate soak`: a Sparkplug birth that central could not store (its database restarting)
    escaped the MQTT callback; paho re-raised it in its network thread, which ended, so central never heard
    a gate's status again until it was restarted."""
    asyncio.run(_sparkplug_during_restart(tmp_path, keypair, own_postgres))


async def _sparkplug_during_restart(tmp_path, keypair, pg):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from simulators.broker import PrivateBroker
    from sync.sparkplug import SparkplugEncoder

    broker = await asyncio.to_thread(PrivateBroker(secure=False).start)
    central = await asyncio.to_thread(CentralServer(f"{pg.url}/central", keypair[0], mqtt=(broker.host, broker.port),
                                                    **enrolled(tmp_path)).start)
    gate = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-HN-node")
    gate.connect(broker.host, broker.port)
    gate.loop_start()
    try:
        def status(state: str) -> None:
            gate.publish("smartgate/HN/status", json.dumps({"state": state, "bd_seq": 1}), qos=1).wait_for_publish(5)

        status("online")  # again until central's subscription is in place
        await wait_until(lambda: central.mqtt.events or status("online"), 10, "central to hear the gate")
        await asyncio.to_thread(pg.stop)
        (topic, payload), *_ = SparkplugEncoder("HN").births(_snapshot(), bd_seq=1)
        gate.publish(topic, payload, qos=1).wait_for_publish(5)
        # The birth's store call found the database away (db_down) before the database comes back.
        await wait_until(lambda: "HN" in central.mqtt.sparkplug.nodes and central.store.db_down, 10,
                         "central to read the birth and meet the outage")
        await asyncio.to_thread(pg.start)
        status("offline")
        await wait_until(lambda: ("HN", "offline") in [(g, s) for _, g, s in central.mqtt.events], 10,
                         "central to hear the gate go offline after the database came back")
        assert central.mqtt.unstored >= 1  # the birth met the outage, and was not stored
    finally:
        gate.loop_stop()
        gate.disconnect()
        await asyncio.to_thread(central.stop)
        await asyncio.to_thread(broker.stop)
