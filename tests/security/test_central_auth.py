"""Red team against central's door: no credential, the wrong role, huge bodies, echoing 422s, huge integers.

The real central over HTTPS on loopback (as the demo runs it) and, where it matters, the real node
sync client pulling the signed feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from edge.declarations import RiskChannel
from sync.tokens import token_digest
from tests.conftest import wait_until
from tests.security.central_helpers import GATE, Node, running_central

MARKER = "ZZ-ECHO-MARKER-7731"


@pytest.fixture
def central(tmp_path):
    with running_central(tmp_path) as running:
        yield running


def _decl(number: str, channel: str = "green", version: int | None = None) -> dict:
    now = datetime.now(UTC)
    row = {"number": number, "kind": "import", "gate": GATE, "plates": ["29C12345"], "containers": [], "seals": [],
           "channel": channel, "status": "cleared", "valid_from": (now - timedelta(days=1)).isoformat(),
           "valid_until": (now + timedelta(days=1)).isoformat()}
    if version is not None:
        row["version"] = version
    return row


def _attempts(central) -> dict[str, tuple[dict, int]]:
    """Who tries, with what header, and the status they must get for a publisher route."""
    return {
        "no token": ({}, 401),
        "a made-up token": ({"Authorization": "Bearer " + "A" * 43}, 401),
        "a token in the wrong scheme": ({"Authorization": "Basic " + central.server.publisher_token}, 401),
        "a monitor": (central.headers("monitor"), 403),
        "the gate": (central.headers("gate"), 403),
        "an admin": (central.headers("admin"), 403),
    }


def test_unauthenticated_publish_amend_revoke_and_read_are_refused_with_401(central):
    with central.client("publisher") as publisher:
        publisher.post("/api/v1/declarations", json={"declarations": [_decl("D-HELD")]}).raise_for_status()
    calls = [("POST", "/api/v1/declarations", {"declarations": [_decl("D-NEW")]}),
             ("POST", "/api/v1/declarations", {"declarations": [_decl("D-HELD", version=9)]}),
             ("POST", "/api/v1/declarations/D-HELD/revoke", {"reason": "intruder"}),
             ("GET", "/api/v1/gates", None), ("GET", f"/api/v1/gates/{GATE}/events", None),
             ("GET", f"/api/v1/gates/{GATE}/status-log", None), ("GET", "/api/v1/alarms", None),
             ("GET", f"/api/v1/gates/{GATE}/anchor", None), ("GET", "/api/v1/tokens", None),
             ("POST", "/api/v1/tokens", {"name": "me", "role": "admin"}),
             ("POST", f"/api/v1/gates/{GATE}/enrol", {"head_key": "x"}),
             ("GET", "/api/v1/no-such-route", None), ("GET", "/docs", None), ("GET", "/openapi.json", None)]
    with central.client() as anonymous:
        for method, path, body in calls:
            answer = anonymous.request(method, path, json=body)
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert answer.json()["detail"]["code"] == "UNAUTHORIZED"
        assert anonymous.get("/healthz").status_code == 200  # the one open route
    held = central.server.store.feed(GATE, 0, 100)
    assert [d["number"] for d in held[0]] == ["D-HELD"] and held[0][0]["version"] == 1 and not held[1]


def test_a_monitor_or_gate_cannot_publish_and_a_publisher_cannot_read_events(central):
    with central.client() as client:
        for who, (headers, status) in _attempts(central).items():
            answer = client.post("/api/v1/declarations", json={"declarations": [_decl("D-1")]}, headers=headers)
            assert answer.status_code == status, who
        # each role only its own routes
        assert client.get(f"/api/v1/gates/{GATE}/events", headers=central.headers("publisher")).status_code == 403
        assert client.get(f"/api/v1/gates/{GATE}/events", headers=central.headers("gate")).status_code == 403
        assert client.post("/api/v1/tokens", json={"name": "x", "role": "admin"},
                           headers=central.headers("monitor")).status_code == 403
        assert client.get(f"/api/v1/gates/{GATE}/events", headers=central.headers("monitor")).status_code == 200
    assert central.server.store.feed(GATE, 0, 100) == ([], [], 0)


@pytest.mark.timeout(60)
def test_a_red_declaration_cannot_be_amended_to_green_without_the_publisher_role(central):
    asyncio.run(_red_stays_red(central))


async def _red_stays_red(central):
    with central.client("publisher") as publisher:
        publisher.post("/api/v1/declarations", json={"declarations": [_decl("D-RED", "red")]}).raise_for_status()
    with central.client() as client:
        for who, (headers, status) in _attempts(central).items():
            for version in (None, 2, 99):
                answer = client.post("/api/v1/declarations", headers=headers,
                                     json={"declarations": [_decl("D-RED", "green", version)]})
                assert answer.status_code == status, who
    node = Node(central.node_dir, central.config())
    node.sync.start()
    try:
        await wait_until(lambda: node.cache.get("D-RED") is not None, 15, "the declaration through the signed feed")
        held = node.cache.get("D-RED")
        assert held.channel == RiskChannel.RED and held.version == 1
    finally:
        await node.stop()


def _tls_socket(central) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=central.ca_file)
    raw = socket.create_connection(("127.0.0.1", central.server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _answer(sock: ssl.SSLSocket, timeout_s: float) -> tuple[int, str]:
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


@pytest.mark.parametrize("who", ["publisher", "gate", None])
def test_a_100_mib_post_is_refused_quickly_without_being_read(central, who):
    path = "/api/v1/declarations" if who != "gate" else f"/api/v1/gates/{GATE}/events"
    auth = "".join(f"{k}: {v}\r\n" for k, v in (central.headers(who) if who else {}).items())
    with _tls_socket(central) as sock:
        started = time.monotonic()
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: central\r\nContent-Type: application/json\r\n{auth}"
                     f"Content-Length: {100 * 1024 * 1024}\r\n\r\n".encode() + b"[" * 65536)
        status, body = _answer(sock, 5)
        elapsed = time.monotonic() - started
    assert status == (401 if who is None else 413), body
    assert elapsed < 2.0
    # the same body streamed without a length is cut off at the cap, not read to its end
    with _tls_socket(central) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: central\r\nContent-Type: application/json\r\n{auth}"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b" " * (1024 * 1024))
        sent = 0
        sock.settimeout(5)
        with pytest.raises((ssl.SSLError, OSError)):  # central stops reading and closes long before 100 MiB
            for _ in range(100):
                sock.sendall(chunk)
                sent += 1
        cap_mib = 32 if who == "gate" else 1  # event uploads may be larger than declaration batches
        assert sent <= cap_mib + 24  # the cap, plus what the kernel's and TLS buffers held: far from 100
    with central.client("monitor") as monitor:
        assert monitor.get("/healthz").status_code == 200  # central still answers


def test_422s_name_the_problem_but_never_echo_the_input(central):
    with central.client("publisher") as publisher:
        answers = [
            publisher.post("/api/v1/declarations", json={"declarations": [{**_decl("D-1"), "channel": MARKER}]}),
            publisher.post("/api/v1/declarations", json={"declarations": [{**_decl("D-1"), "version": MARKER}]}),
            publisher.post("/api/v1/declarations", json={"declarations": [{**_decl("D-1"), "valid_from": MARKER}]}),
            publisher.post("/api/v1/declarations", content=f'{{"declarations": [{MARKER}',
                           headers={"Content-Type": "application/json"}),
            publisher.post("/api/v1/declarations", json=[MARKER] * 3),
        ]
    with central.client("monitor") as monitor:
        answers.append(monitor.get("/api/v1/alarms", params={"after": MARKER}))
    with central.client("gate") as gate:
        answers.append(gate.get(f"/api/v1/gates/{GATE}/feed", params={"cursor": MARKER, "nonce": "n" * 20}))
        answers.append(gate.get(f"/api/v1/gates/{GATE}/feed", params={"cursor": 0, "nonce": MARKER + "!"}))
        answers.append(gate.post(f"/api/v1/gates/{GATE}/events", json={"events": [{"seq": MARKER}]}))
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert MARKER not in answer.text
        assert answer.json()["detail"]["code"] and answer.json()["detail"]["message"]


def test_integers_beyond_64_bits_are_refused_with_422_not_500(central):
    huge = 2**64
    with central.client("publisher") as publisher:
        answers = [
            publisher.post("/api/v1/declarations", json={"declarations": [_decl("D-1", version=huge)]}),
            publisher.post("/api/v1/declarations", json={"declarations": [{**_decl("D-1"), "version": str(huge)}]}),
            publisher.post("/api/v1/declarations", json={"declarations": [{**_decl("D-1"),
                                                                            "gross_weight_kg": 10**400}]}),
        ]
    with central.client("monitor") as monitor:
        answers.append(monitor.get(f"/api/v1/gates/{GATE}/events", params={"after": huge}))
        answers.append(monitor.get("/api/v1/alarms", params={"after": -huge}))
    with central.client("gate") as gate:
        answers.append(gate.get(f"/api/v1/gates/{GATE}/feed", params={"cursor": huge, "nonce": "n" * 20}))
        body = json.dumps({"events": [{"seq": huge, "event_id": "e", "at": 1.0, "kind": "k", "hash": "h",
                                       "prev_hash": "p", "payload": "{}"}], "backlog": 0})
        answers.append(gate.post(f"/api/v1/gates/{GATE}/events", content=body,
                                 headers={"Content-Type": "application/json"}))
    assert [a.status_code for a in answers] == [422] * len(answers), [a.text for a in answers]
    assert central.server.store.feed(GATE, 0, 10) == ([], [], 0)


def test_role_tokens_are_issued_by_an_admin_stored_as_digests_and_refused_once_revoked(central, tmp_path):
    with central.client("admin") as admin:
        issued = admin.post("/api/v1/tokens", json={"name": "ops-desk", "role": "monitor"}).json()
        assert issued["role"] == "monitor"
        assert [t["name"] for t in admin.get("/api/v1/tokens").json()] == ["demo-monitor", "demo-publisher",
                                                                          "ops-desk", "test-admin"]
        assert issued["token"] not in admin.get("/api/v1/tokens").text
    # Only its digest is kept. (Read through SQLite: reading the file directly from this process would
    # drop the POSIX locks central's connection holds on it.)
    with contextlib.closing(sqlite3.connect(tmp_path / "central" / "central.sqlite")) as db_file:
        dump = "\n".join(db_file.iterdump())
    assert issued["token"] not in dump and token_digest(issued["token"]) in dump
    with central.client() as client:
        headers = {"Authorization": f"Bearer {issued['token']}"}
        assert client.get("/api/v1/gates", headers=headers).status_code == 200
        assert client.delete("/api/v1/tokens/ops-desk", headers=central.headers("admin")).status_code == 200
        assert client.get("/api/v1/gates", headers=headers).status_code == 401
    # the same from the command line, on central's database
    db = f"sqlite:///{tmp_path / 'central' / 'central.sqlite'}"
    made = subprocess.run([sys.executable, "-m", "edge.cli", "central", "token", "--role", "publisher", "--name",
                           "customs-feed", "--db", db], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[0]
    with central.client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post("/api/v1/declarations", json={"declarations": [_decl("D-CLI")]},
                           headers=headers).status_code == 200
        revoked = subprocess.run([sys.executable, "-m", "edge.cli", "central", "revoke", "--name", "customs-feed",
                                  "--db", db], capture_output=True, text=True, timeout=60)
        assert revoked.returncode == 0, revoked.stderr
        assert client.post("/api/v1/declarations", json={"declarations": [_decl("D-CLI2")]},
                           headers=headers).status_code == 401


def test_central_speaks_only_tls_and_the_node_refuses_a_certificate_its_ca_did_not_sign(central, tmp_path):
    with pytest.raises(httpx.HTTPError):
        httpx.get(central.url.replace("https://", "http://") + "/healthz", timeout=5)
    from edge.pki import make_ca

    other = make_ca(tmp_path / "other-ca", "someone else's CA")
    config = central.config(ca_file=str(other.cert))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(central.url + "/healthz", verify=ssl.create_default_context(cafile=str(other.cert)))
    asyncio.run(_node_against_wrong_ca(central, config))


async def _node_against_wrong_ca(central, config):
    node = Node(central.node_dir, config)
    node.sync.start()
    try:
        await wait_until(lambda: node.sync.link.last_error is not None, 15, "the node's first failed request")
        assert "CERTIFICATE_VERIFY_FAILED" in node.sync.link.last_error
        assert node.sync.feed_applied_batches == 0
    finally:
        await node.stop()
