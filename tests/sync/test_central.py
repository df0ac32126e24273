"""Central service on SQLite and on a real PostgreSQL: idempotent events, incremental signed feed, monitoring."""

from __future__ import annotations

import time

import httpx
import pytest

from edge.journal import Journal, load_or_create_head_key, signed_head
from sync.central.server import CentralServer
from sync.keys import verify
from sync.outbox import Outbox
from tests.sync.helpers import AS_MONITOR, AS_PUBLISHER, TOKEN, enrolled
from tests.sync.test_outbox_feed import _decl

NONCE = "a-fresh-nonce-for-this-pull"


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path, keypair):
    url = f"sqlite:///{tmp_path / 'central.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server = CentralServer(url, keypair[0], **enrolled(tmp_path / "node")).start()
    yield server
    server.stop()


def _journal_upload(data_dir, rows: int) -> tuple[list[dict], dict]:
    """`rows` real journal rows as the outbox sends them, and the node's signed head."""
    journal = Journal.open(data_dir / "journal.sqlite")
    outbox = Outbox(journal)
    for i in range(rows):
        journal.append("reading", {"i": i}, lane="L1")
    events = outbox.peek(rows)
    head = signed_head(journal, load_or_create_head_key(data_dir), "HN")
    outbox.close()
    journal.close()
    return events, head


def test_events_are_idempotent_and_feed_is_incremental_and_signed(central, keypair, tmp_path):
    gate = httpx.Client(base_url=central.url, headers={"Authorization": f"Bearer {TOKEN}"})
    publisher = httpx.Client(base_url=central.url, headers=AS_PUBLISHER)
    monitor = httpx.Client(base_url=central.url, headers=AS_MONITOR)
    events, head = _journal_upload(tmp_path / "node", 5)
    ids = [e["event_id"] for e in events]
    assert gate.post("/api/v1/gates/HN/events", json={"events": events[:3], "backlog": 5, **head}).json()["acked"] \
        == ids[:3]
    assert gate.post("/api/v1/gates/HN/events", json={"events": events, "backlog": 0, **head}).status_code == 200
    stored = monitor.get("/api/v1/gates/HN/events").json()
    assert [e["event_id"] for e in stored] == ids

    assert publisher.post("/api/v1/declarations", json={"declarations": [_decl("D1"), _decl("D2"),
                                                                           _decl("X1", gate="LB")]}).status_code == 200
    answer = gate.get("/api/v1/gates/HN/feed", params={"cursor": 0, "nonce": NONCE}).json()
    assert verify(keypair[1], answer["batch"], answer["signature"])
    batch = answer["batch"]
    assert [d["number"] for d in batch["declarations"]] == ["D1", "D2"] and batch["cursor_from"] == 0
    assert batch["nonce"] == NONCE
    cursor = batch["cursor_to"]
    revocation = publisher.post("/api/v1/declarations/D1/revoke", json={"reason": "cancelled by customs"}).json()
    assert revocation["version"] == 2
    amended = _decl("D2", version=5)
    assert publisher.post("/api/v1/declarations", json={"declarations": [amended]}).status_code == 200
    assert publisher.post("/api/v1/declarations", json={"declarations": [_decl("D2", version=3)]}).status_code == 409
    batch = gate.get("/api/v1/gates/HN/feed", params={"cursor": cursor, "nonce": NONCE}).json()["batch"]
    assert batch["revocations"] == [{"number": "D1", "version": 2}]
    assert [(d["number"], d["version"]) for d in batch["declarations"]] == [("D2", 5)]
    empty = gate.get("/api/v1/gates/HN/feed", params={"cursor": batch["cursor_to"], "nonce": NONCE}).json()["batch"]
    assert empty["cursor_to"] == empty["cursor_from"] and not empty["declarations"]
    gates = {g["gate"]: g for g in monitor.get("/api/v1/gates").json()}
    assert gates["HN"]["backlog"] == 0 and gates["HN"]["last_seq"] == 5 and not gates["HN"]["silent"]


def test_a_gate_request_without_the_gates_token_is_refused_and_stored_nowhere(central, tmp_path):
    events, head = _journal_upload(tmp_path / "node", 1)
    other_gate = "lb-gate-token-for-the-sync-tests-0002"
    central.store.set_gate_token("LB", other_gate)
    attempts = {
        "no token": ({}, 401),
        "wrong token": ({"Authorization": "Bearer " + "x" * 40}, 401),
        "not a bearer token": ({"Authorization": f"Basic {TOKEN}"}, 401),
        "another gate's token": ({"Authorization": f"Bearer {other_gate}"}, 403),
        "a monitor's token": (AS_MONITOR, 403),
    }
    body = {"events": events, "backlog": 7, **head}
    with httpx.Client(base_url=central.url) as client:
        for what, (headers, status) in attempts.items():
            upload = client.post("/api/v1/gates/HN/events", json=body, headers=headers)
            assert upload.status_code == status, what
            assert upload.json()["detail"]["code"] == ("UNAUTHORIZED" if status == 401 else "FORBIDDEN")
            if status == 401:
                assert upload.headers["WWW-Authenticate"].startswith("Bearer")
            pull = client.get("/api/v1/gates/HN/feed", params={"cursor": 0, "nonce": NONCE}, headers=headers)
            assert pull.status_code == status, what
        assert client.get("/api/v1/gates/HN/events", headers=AS_MONITOR).json() == []  # no event stored
        assert "HN" not in {g["gate"] for g in client.get("/api/v1/gates", headers=AS_MONITOR).json()}  # no contact
        # a gate with no token issued accepts nothing: HN's token is not XX's
        assert client.post("/api/v1/gates/XX/events", json=body,
                           headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403
        good = client.post("/api/v1/gates/HN/events", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200 and good.json()["acked"] == [events[0]["event_id"]]
        # a re-issued token replaces the old one
        central.store.set_gate_token("HN", "hn-gate-token-reissued-000000000003")
        assert client.get("/api/v1/gates/HN/feed", params={"cursor": 0, "nonce": NONCE},
                          headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_a_refused_upload_is_stored_as_an_alarm_and_the_signed_head_is_anchored(central, tmp_path):
    events, head = _journal_upload(tmp_path / "node", 4)
    gate = httpx.Client(base_url=central.url, headers={"Authorization": f"Bearer {TOKEN}"})
    monitor = httpx.Client(base_url=central.url, headers=AS_MONITOR)
    not_from_the_start = gate.post("/api/v1/gates/HN/events", json={"events": events[1:], **head})
    assert not_from_the_start.status_code == 409 and not_from_the_start.json()["detail"]["code"] == "SEQ_GAP"
    assert gate.post("/api/v1/gates/HN/events", json={"events": events[:1], **head}).status_code == 200
    gap = gate.post("/api/v1/gates/HN/events", json={"events": events[2:], **head})
    assert gap.status_code == 409 and gap.json()["detail"]["code"] == "SEQ_GAP"
    assert gate.post("/api/v1/gates/HN/events", json={"events": events, **head}).status_code == 200
    alarms = monitor.get("/api/v1/alarms", params={"gate": "HN"}).json()
    assert [a["code"] for a in alarms] == ["SEQ_GAP", "SEQ_GAP"]
    assert "seq 1" in alarms[0]["message"] and "seq 2..2 missing" in alarms[1]["message"]
    anchor = gate.get("/api/v1/gates/HN/anchor").json()
    assert anchor["head"]["seq"] == anchor["last_event"]["seq"] == 4
    assert anchor["head"]["hash"] == events[-1]["hash"] == anchor["last_event"]["hash"]


def test_a_declaration_no_gate_can_match_is_refused_at_publication(central):
    """A publisher's declaration with a container number that fails ISO 6346, or with no plate and no container,
    is refused with 422 (nothing stored, nothing in any gate's feed) instead of waiting for a truck it cannot meet."""
    publisher = httpx.Client(base_url=central.url, headers=AS_PUBLISHER)
    wrong_digit = {**_decl("B1"), "containers": ["CSQU3054384"]}
    nothing = {**_decl("B2"), "plates": [], "containers": []}
    for bad in (wrong_digit, nothing):
        reply = publisher.post("/api/v1/declarations", json={"declarations": [_decl("G1"), bad]})
        assert reply.status_code == 422 and reply.json()["detail"]["code"] == "BAD_DECLARATION"
    assert publisher.post("/api/v1/declarations", json={"declarations": [_decl("G1")]}).status_code == 200
    assert central.store.feed("HN", 0, 100)[0][0]["number"] == "G1" and len(central.store.feed("HN", 0, 100)[0]) == 1


def test_a_declaration_published_with_a_lower_case_gate_and_a_text_plate_list_reaches_its_gate(central):
    """Central keeps gate codes in one form (trimmed, upper case) and splits a written list, so a publisher
    who writes `hn` and `29C-890.12/29R-034.56` still feeds gate HN a declaration with two plates."""
    publisher = httpx.Client(base_url=central.url, headers=AS_PUBLISHER)
    written = {**_decl("T1"), "gate": " hn ", "plates": "29C-890.12/29R-034.56", "seals": "SEAL-1; SEAL-2"}
    assert publisher.post("/api/v1/declarations", json={"declarations": [written]}).status_code == 200
    fed = central.store.feed("HN", 0, 100)[0]
    assert [(d["number"], d["gate"], d["plates"], d["seals"]) for d in fed] == [
        ("T1", "HN", ["29C89012", "29R03456"], ["SEAL1", "SEAL2"])]


def test_gates_name_their_two_backlogs_and_a_feed_pull_is_no_newer_backlog(central, tmp_path):
    """GET /api/v1/gates: `upload_backlog` is what the last upload said (the node counts the batch it sends),
    `outbox_backlog` the latest report of any source, as the page shows it; `backlog` keeps its old meaning. A feed
    pull after the telemetry must not make the upload's older count the latest."""
    gate = httpx.Client(base_url=central.url, headers={"Authorization": f"Bearer {TOKEN}"})
    monitor = httpx.Client(base_url=central.url, headers=AS_MONITOR)
    events, head = _journal_upload(tmp_path / "node", 4)
    assert gate.post("/api/v1/gates/HN/events", json={"events": events, "backlog": 4, **head}).status_code == 200
    [uploaded] = monitor.get("/api/v1/gates").json()
    assert uploaded["backlog"] == 4 and uploaded["upload_backlog"]["value"] == 4
    assert uploaded["outbox_backlog"]["value"] == 4 and uploaded["outbox_backlog"]["source"] == "upload"
    reported = time.time()  # the node's telemetry after the upload: its outbox is empty now
    central.store.set_telemetry("HN", "sync", {"at": reported, "outbox_backlog": 0})
    assert gate.get("/api/v1/gates/HN/feed", params={"cursor": 0, "nonce": NONCE}).status_code == 200
    [row] = monitor.get("/api/v1/gates").json()
    assert row["last_contact"] >= reported
    assert row["backlog"] == 4 and row["upload_backlog"] == uploaded["upload_backlog"]
    assert row["outbox_backlog"] == {"value": 0, "at": reported, "source": "telemetry"}
    overview = monitor.get("/api/v1/monitor/overview").json()["gates"][0]
    assert overview["backlog"]["value"] == 0
