"""Central as several worker processes on one PostgreSQL: no worker holds what another needs (uploads, tokens,
declarations and revocations are the database's), concurrent uploads of one batch store it once, MQTT telemetry is
split between workers by a shared subscription while birth/death stays with worker 1, and `smartgate bench central`
reports its figures (a smoke run: nothing timed is asserted)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from devices.transports.mqtt import new_client
from edge.broker_policy import PolicyError, acl_text, central_identities, enrol_identity, init_site_pki
from edge.config import site_from_mapping
from sync.central.app import CentralMqtt
from sync.central.store import CentralStore
from sync.central.workers import SHARE_GROUP, CentralWorkers, WorkerOptions
from sync.keys import write_keypair
from tests.sync.helpers import AS_MONITOR, AS_PUBLISHER, TOKEN, node_key
from tests.sync.node_process import small_site
from tests.sync.test_central import NONCE, _journal_upload
from tests.sync.test_outbox_feed import _decl

ADMIN = "admin-token-for-the-worker-tests-0001"
AS_GATE = {"Authorization": f"Bearer {TOKEN}"}


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _enrol(db_url: str, tmp_path) -> None:
    """What `smartgate central enrol-gate` and `central token` leave in the database: gate HN and three operators."""
    store = CentralStore(db_url)
    try:
        store.enrol_gate("HN", TOKEN, node_key(tmp_path / "node"))
        store.set_api_token("test-publisher", "publisher", AS_PUBLISHER["Authorization"].split()[1])
        store.set_api_token("test-monitor", "monitor", AS_MONITOR["Authorization"].split()[1])
        store.set_api_token("test-admin", "admin", ADMIN)
    finally:
        store.close()


@pytest.fixture
def two_workers(pg_url, tmp_path, keypair):
    """Two central worker processes on the same database, each on a port of its own (so a test picks the worker)."""
    key = tmp_path / "central.key"
    write_keypair(key, tmp_path / "central.pub.pem")
    _enrol(pg_url, tmp_path)
    started = []
    try:
        for _ in range(2):
            started.append(CentralWorkers(WorkerOptions(pg_url, str(key)), workers=1).start())
        yield started
    finally:
        for workers in started:
            workers.stop()


def _pull(url: str, cursor: int = 0) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/gates/HN/feed", params={"cursor": cursor, "nonce": NONCE}, headers=AS_GATE)


def test_an_upload_on_one_worker_is_seen_by_the_other_and_a_revocation_via_one_is_enforced_by_the_other(
        two_workers, tmp_path):
    a, b = (w.url for w in two_workers)
    assert httpx.get(f"{a}/healthz").json()["worker"] != httpx.get(f"{b}/healthz").json()["worker"]
    events, head = _journal_upload(tmp_path / "node", 5)
    answer = httpx.post(f"{a}/api/v1/gates/HN/events", json={"events": events, "backlog": 0, **head}, headers=AS_GATE)
    assert answer.status_code == 200 and len(answer.json()["acked"]) == 5
    seen = httpx.get(f"{b}/api/v1/gates/HN/events", headers=AS_MONITOR).json()
    assert [e["event_id"] for e in seen] == [e["event_id"] for e in events]
    assert httpx.get(f"{b}/api/v1/gates/HN/anchor", headers=AS_MONITOR).json()["head"]["seq"] == 5

    # a declaration published via A is in the feed B serves; its revocation via B is in the feed A serves
    httpx.post(f"{a}/api/v1/declarations", json={"declarations": [_decl("D1")]},
               headers=AS_PUBLISHER).raise_for_status()
    first = _pull(b).json()["batch"]
    assert [d["number"] for d in first["declarations"]] == ["D1"]
    httpx.post(f"{b}/api/v1/declarations/D1/revoke", json={"reason": "fraud"}, headers=AS_PUBLISHER).raise_for_status()
    assert _pull(a, first["cursor_to"]).json()["batch"]["revocations"] == [{"number": "D1", "version": 2}]

    # a token issued via B opens A; the gate's token withdrawn via A is refused by B at once
    issued = httpx.post(f"{b}/api/v1/tokens", json={"name": "night-monitor", "role": "monitor"},
                        headers={"Authorization": f"Bearer {ADMIN}"}).json()["token"]
    assert httpx.get(f"{a}/api/v1/gates", headers={"Authorization": f"Bearer {issued}"}).status_code == 200
    assert _pull(b).status_code == 200
    httpx.delete(f"{a}/api/v1/gates/HN/token", headers={"Authorization": f"Bearer {ADMIN}"}).raise_for_status()
    assert _pull(b).status_code == 401
    assert httpx.post(f"{b}/api/v1/gates/HN/events", json={"events": [], **head}, headers=AS_GATE).status_code == 401


def test_two_workers_taking_the_same_batch_at_once_store_it_once(two_workers, tmp_path):
    """A node's retry can reach another worker while the first attempt is still being stored: both succeed, once."""
    urls = [w.url for w in two_workers]
    events, _ = _journal_upload(tmp_path / "node", 60)
    from edge.journal import Journal, load_or_create_head_key, signed_head

    journal = Journal.open(tmp_path / "node" / "journal.sqlite")
    head = signed_head(journal, load_or_create_head_key(tmp_path / "node"), "HN")
    journal.close()
    for start in range(0, 60, 10):  # six batches, each sent to both workers at the same moment
        body = {"events": events[:start + 10], "backlog": 0, **head}
        gate = threading.Barrier(2)
        answers: list[httpx.Response] = []

        def send(url: str, body=body, gate=gate, answers=answers) -> None:
            with httpx.Client(headers=AS_GATE, timeout=30) as client:
                gate.wait()
                answers.append(client.post(f"{url}/api/v1/gates/HN/events", json=body))

        threads = [threading.Thread(target=send, args=(url,)) for url in urls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [r.status_code for r in answers] == [200, 200], [r.text[:200] for r in answers]
        assert all(len(r.json()["acked"]) == start + 10 for r in answers)
    stored = httpx.get(f"{urls[1]}/api/v1/gates/HN/events", headers=AS_MONITOR).json()
    assert [e["seq"] for e in stored] == list(range(1, 61))  # each once, in seq order
    assert httpx.get(f"{urls[0]}/api/v1/alarms", headers=AS_MONITOR).json() == []


def test_central_serve_with_two_workers_answers_from_both_replaces_a_dead_one_and_stops_them_all(pg_url, tmp_path):
    key = tmp_path / "central.key"
    write_keypair(key, tmp_path / "central.pub.pem")
    _enrol(pg_url, tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "central", "serve", "--db", pg_url, "--key", str(key),
                                "--port", "0", "--insecure-http", "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"on (http://\S+) \(2 workers, pids (\d+) (\d+)", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        url, pids = match.group(1), {int(match.group(2)), int(match.group(3))}
        answered: set[int] = set()

        def both_answered() -> bool:  # a new connection each time: the kernel gives it to a listening worker
            with contextlib.suppress(httpx.HTTPError):
                answered.add(httpx.get(f"{url}/healthz", timeout=2).json()["worker"])
            return answered == pids

        _wait(both_answered, 60, "an answer from each worker (the second may still be starting)")
        events, head = _journal_upload(tmp_path / "node", 3)
        answer = httpx.post(f"{url}/api/v1/gates/HN/events", json={"events": events, **head}, headers=AS_GATE)
        assert answer.status_code == 200 and len(answer.json()["acked"]) == 3
        crashed = pids.pop()
        os.kill(crashed, signal.SIGKILL)  # a worker dies: the supervisor starts another in its place

        def replaced() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                answered.add(httpx.get(f"{url}/healthz", timeout=2).json()["worker"])
            return bool(answered - pids - {crashed})

        _wait(replaced, 20, "a new worker in place of the killed one")
        pids |= answered - {crashed}
    finally:
        process.terminate()
        process.wait(20)
    for pid in pids:  # no worker outlives its supervisor
        _wait(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 10, f"worker {pid} to stop")


def test_sqlite_cannot_be_shared_by_workers(tmp_path):
    with pytest.raises(ValueError, match="PostgreSQL"):
        CentralWorkers(WorkerOptions(f"sqlite:///{tmp_path / 'c.sqlite'}", str(tmp_path / "k")), workers=2)


def test_workers_split_the_telemetry_and_only_worker_one_applies_birth_and_death(pg_url, own_broker):
    broker = own_broker
    identities = central_identities(2)
    tls = [broker.allow(identities[0], subscribe=("smartgate/+/telemetry/#", "smartgate/+/status")),
           broker.allow(identities[1], subscribe=("smartgate/+/telemetry/#",))]
    gates_tls = broker.allow("test-gates", publish=("smartgate/+/telemetry/#", "smartgate/+/status"))
    stores = [CentralStore(pg_url), CentralStore(pg_url)]
    workers = [CentralMqtt(stores[i], broker.host, broker.port, identities[i], tls[i], shared_group=SHARE_GROUP,
                           state_host=i == 0) for i in range(2)]
    publisher = new_client("test-gates", gates_tls)
    try:
        for worker in workers:
            worker.start()
        assert workers[1].subscriptions() == [f"$share/{SHARE_GROUP}/smartgate/+/telemetry/#"]
        _wait(lambda: all(w.subscribed.is_set() for w in workers), 10, "both workers subscribed")
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        for i in range(40):
            publisher.publish(f"smartgate/G{i:02d}/telemetry/lanes", json.dumps([{"lane": "L1", "state": "IDLE"}]),
                              qos=1).wait_for_publish(5)
        publisher.publish("smartgate/G00/status", json.dumps({"state": "online", "bd_seq": 3}), qos=1)

        def lanes_stored() -> int:
            return sum(1 for g in stores[0].gates() if g["telemetry"].get("lanes"))

        _wait(lambda: lanes_stored() == 40 and workers[0].events, 15, "every gate's telemetry and the birth")
        assert sum(w.telemetry_taken for w in workers) == 40  # each message taken by one worker only
        assert all(w.telemetry_taken > 0 for w in workers), [w.telemetry_taken for w in workers]
        assert [e[1:] for e in workers[0].events] == [("G00", "online")] and workers[1].events == []
    finally:
        publisher.loop_stop()
        for worker in workers:
            worker.stop()
        for store in stores:
            store.close()


def test_the_brokers_acl_lets_central_workers_take_telemetry_but_not_birth_death(tmp_path):
    site = site_from_mapping(small_site("HN", 8883)).site
    text = acl_text(site)
    block = text.split("user smartgate-central-2\n", 1)[1].split("\nuser ", 1)[0]
    assert block.strip().splitlines() == ["topic read smartgate/+/telemetry/#", "topic write smartgate/+/feed/notify"]
    assert "user smartgate-central-8\n" in text and "user smartgate-central-9\n" not in text
    init_site_pki(site, tmp_path / "pki")
    assert enrol_identity(site, tmp_path / "pki", "smartgate-central-2").cert.exists()
    with pytest.raises(PolicyError):
        enrol_identity(site, tmp_path / "pki", "smartgate-central-9")


@pytest.mark.timeout(300)
def test_quick_central_bench_reports_every_figure(pg_server):
    result = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "central", "--quick", "--gates", "3"],
                            capture_output=True, text=True, timeout=280,
                            env={**os.environ, "SMARTGATE_BENCH_PG": pg_server})
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)["central"]
    assert figures["gates"] == 3 and figures["https"] is True
    for workers in ("workers_1", "workers_2"):
        run = figures[workers]["runs"][0]
        assert run["events"] == figures["gates"] * figures["events_per_gate"]  # every event stored once
        assert run["ingest_events_per_s"] > 0 and run["upload_ms"]["n"] > 0
        assert run["revocation_all_gates_s"] >= 0  # reached every gate (the bench fails otherwise)
        assert run["telemetry_gates_seen"] == figures["gates"]
    assert figures["load_before"] and figures["targets"]["ingest_events_per_s"] == 5000


def test_a_worker_without_its_mqtt_certificate_is_named_at_start(pg_url, tmp_path):
    site = site_from_mapping(small_site("HN", 8883)).site
    init_site_pki(site, tmp_path / "pki")  # central's own certificate, none for a second worker
    write_keypair(tmp_path / "central.key", tmp_path / "central.pub.pem")
    result = subprocess.run([sys.executable, "-m", "edge.cli", "central", "serve", "--db", pg_url, "--key",
                             str(tmp_path / "central.key"), "--insecure-http", "--port", "0", "--workers", "2",
                             "--mqtt", "127.0.0.1:8883", "--mqtt-tls-dir", str(tmp_path / "pki")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "smartgate pki enrol smartgate-central-2" in result.stderr and "worker 2" in result.stderr


def test_two_worker_processes_on_a_tls_broker_store_every_gates_telemetry_and_birth(pg_url, own_broker, tmp_path):
    broker = own_broker
    first, second = central_identities(2)
    broker.allow(first, subscribe=("smartgate/+/telemetry/#", "smartgate/+/status", "spBv1.0/smartgate/#"))
    broker.allow(second, subscribe=("smartgate/+/telemetry/#",))
    gates_tls = broker.allow("test-gates", publish=("smartgate/+/telemetry/#", "smartgate/+/status"))
    write_keypair(tmp_path / "central.key", tmp_path / "central.pub.pem")
    options = WorkerOptions(pg_url, str(tmp_path / "central.key"), mqtt=f"{broker.host}:{broker.port}",
                            mqtt_tls_dir=str(broker.pki.dir))
    workers = CentralWorkers(options, workers=2).start()
    store = CentralStore(pg_url)
    publisher = new_client("test-gates", gates_tls)
    try:
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()

        def gates() -> dict:
            return {g["gate"]: g for g in store.gates()}

        def all_stored() -> bool:
            return (sum(1 for g in gates().values() if g["telemetry"].get("sync")) == 20
                    and gates().get("G00", {}).get("online") is True)

        deadline = time.monotonic() + 20
        while not all_stored():  # as gates do: telemetry every period (the workers may still be subscribing)
            assert time.monotonic() < deadline, "timed out waiting for every gate's telemetry and G00's birth"
            for i in range(20):
                publisher.publish(f"smartgate/G{i:02d}/telemetry/sync", json.dumps({"backlog": i}), qos=1)
            publisher.publish("smartgate/G00/status", json.dumps({"state": "online", "bd_seq": 1}), qos=1, retain=True)
            time.sleep(0.5)
        assert gates()["G07"]["telemetry"]["sync"] == {"backlog": 7}
    finally:
        publisher.loop_stop()
        store.close()
        workers.stop()
