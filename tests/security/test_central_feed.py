"""Red team against the declaration feed: a captured signed batch played back must not pass for fresh.

The attacker here is as strong as it gets on the WAN: it holds a copy of a genuine signed (empty)
batch and answers the node's pulls from a server whose certificate the node trusts (a compromised
TLS-terminating proxy). The node must refuse the batch (its nonce is not this pull's), count it,
keep the cache age running from the last genuine batch, and take the revocation as soon as it
reaches the real central again. Everything is real: central over HTTPS, the node's sync client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from fastapi import FastAPI

from edge.declarations import DeclarationStatus
from edge.pki import issue
from simulators.link_proxy import LinkProxy
from sync.feed import feed_position
from tests.conftest import wait_until
from tests.security.central_helpers import GATE, Node, running_central


@pytest.fixture
def central(tmp_path):
    with running_central(tmp_path) as running:
        yield running


def _decl(number: str) -> dict:
    now = datetime.now(UTC)
    return {"number": number, "kind": "import", "gate": GATE, "plates": ["29C12345"], "containers": [], "seals": [],
            "channel": "green", "status": "cleared", "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=1)).isoformat()}


class Replayer:
    """An HTTPS server the node trusts (a certificate from the same CA) that answers every pull with one message."""

    def __init__(self, message: dict, cert, key):
        app = FastAPI()
        self.pulls = 0

        @app.get("/api/v1/gates/{gate}/feed")
        def feed(gate: str) -> dict:
            self.pulls += 1
            return message

        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                     lifespan="off", ssl_certfile=str(cert), ssl_keyfile=str(key)))
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "replayer did not start"
            time.sleep(0.02)
        return f"https://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@pytest.mark.timeout(90)
def test_a_replayed_signed_batch_is_refused_leaves_the_cache_ageing_and_hides_no_revocation(central, tmp_path):
    asyncio.run(_replay(central, tmp_path))


async def _replay(central, tmp_path):
    with central.client("publisher") as publisher:
        publisher.post("/api/v1/declarations", json={"declarations": [_decl("D-1")]}).raise_for_status()
    node = Node(central.node_dir, central.config())
    node.sync.start()
    try:
        await wait_until(lambda: node.cache.get("D-1") is not None, 15, "the declaration through the feed")
    finally:
        await node.stop()
    node = Node(central.node_dir, central.config())
    cursor, genuine_issued = feed_position(node.cache)
    refreshed = node.cache.refreshed_at()
    assert refreshed == datetime.fromtimestamp(genuine_issued, UTC)  # the signed time, not the receive time
    # The attacker's copy of a genuine, signed, empty batch at the node's cursor.
    with central.client("gate") as gate:
        captured = gate.get(f"/api/v1/gates/{GATE}/feed",
                            params={"cursor": cursor, "nonce": "captured-by-the-attacker"}).json()
    assert captured["batch"]["cursor_from"] == captured["batch"]["cursor_to"] == cursor
    with central.client("publisher") as publisher:
        publisher.post("/api/v1/declarations/D-1/revoke", json={"reason": "fraud"}).raise_for_status()

    attacker_cert = issue(tmp_path / "central" / "ca", tmp_path / "attacker", "attacker", server=True,
                          hosts=("127.0.0.1",))
    replayer = Replayer(captured, attacker_cert.cert, attacker_cert.key)
    url = await asyncio.to_thread(replayer.start)
    await node.stop()
    node = Node(central.node_dir, central.config(url=url))
    node.sync.start()
    try:
        await wait_until(lambda: node.sync.feed_replays >= 3, 15, "three replayed batches at the node")
        status = node.sync.status()["feed"]
        assert status["replays"] >= 3 and status["last_error"].startswith("FEED_REPLAY")
        assert status["applied_batches"] == 0
        assert node.cache.refreshed_at() == refreshed  # not made "fresh" by the replay
        age = node.cache.age_seconds(datetime.now(UTC))
        assert age >= time.time() - genuine_issued - 0.5
        alarms = [e.payload["code"] for e in node.journal.entries(kinds=["alarm"])]
        assert "FEED_REPLAY" in alarms
    finally:
        await node.stop()
        await asyncio.to_thread(replayer.stop)
    # Back on the real central, the revocation the replay was meant to hide applies at once.
    node = Node(central.node_dir, central.config())
    node.sync.start()
    try:
        await wait_until(lambda: node.cache.get("D-1").status == DeclarationStatus.CANCELLED, 15,
                         "the revocation from the real central")
        assert node.cache.refreshed_at() > refreshed
    finally:
        await node.stop()


@pytest.mark.timeout(60)
def test_cache_age_counts_from_the_time_central_signed_not_from_when_the_batch_arrived(central):
    asyncio.run(_slow_link(central))


async def _slow_link(central):
    proxy = await LinkProxy("127.0.0.1", central.server.port).start()
    proxy.set_mode("delay", delay_ms=1500)  # each chunk, each way: the answer arrives well after central signed it
    node = Node(central.node_dir, central.config(url=f"https://127.0.0.1:{proxy.port}", request_timeout_s=20.0))
    node.sync.start()
    try:
        await wait_until(lambda: node.sync.feed_applied_batches >= 1, 30, "a batch over the slow link")
        applied_at = datetime.now(UTC)
        _, issued = feed_position(node.cache)
        assert node.cache.refreshed_at() == datetime.fromtimestamp(issued, UTC)
        assert (applied_at - node.cache.refreshed_at()).total_seconds() >= 1.0
    finally:
        await node.stop()
        await proxy.stop()
