"""Central service on SQLite and on a real PostgreSQL: idempotent events, incremental signed feed, monitoring."""

from __future__ import annotations

import httpx
import pytest

from sync.central.server import CentralServer
from sync.keys import verify
from tests.sync.helpers import TOKEN, TOKENS
from tests.sync.test_outbox_feed import _decl


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path, keypair):
    url = f"sqlite:///{tmp_path / 'central.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    server = CentralServer(url, keypair[0], tokens=TOKENS).start()
    yield server
    server.stop()


def test_events_are_idempotent_and_feed_is_incremental_and_signed(central, keypair):
    client = httpx.Client(base_url=central.url, headers={"Authorization": f"Bearer {TOKEN}"})
    events = [{"event_id": f"e{i}", "seq": i, "lane": "L1", "kind": "reading", "at": 1.0, "payload": "{}"}
              for i in range(1, 6)]
    assert client.post("/api/v1/gates/HN/events", json={"events": events[:3], "backlog": 5}).json()["acked"] == \
        ["e1", "e2", "e3"]
    assert client.post("/api/v1/gates/HN/events", json={"events": events, "backlog": 0}).status_code == 200
    stored = client.get("/api/v1/gates/HN/events").json()
    assert [e["event_id"] for e in stored] == ["e1", "e2", "e3", "e4", "e5"]

    assert client.post("/api/v1/declarations", json={"declarations": [_decl("D1"), _decl("D2"),
                                                                        _decl("X1", gate="LB")]}).status_code == 200
    answer = client.get("/api/v1/gates/HN/feed", params={"cursor": 0}).json()
    assert verify(keypair[1], answer["batch"], answer["signature"])
    batch = answer["batch"]
    assert [d["number"] for d in batch["declarations"]] == ["D1", "D2"] and batch["cursor_from"] == 0
    cursor = batch["cursor_to"]
    revocation = client.post("/api/v1/declarations/D1/revoke", json={"reason": "cancelled by customs"}).json()
    assert revocation["version"] == 2
    amended = _decl("D2", version=5)
    assert client.post("/api/v1/declarations", json={"declarations": [amended]}).status_code == 200
    assert client.post("/api/v1/declarations", json={"declarations": [_decl("D2", version=3)]}).status_code == 409
    batch = client.get("/api/v1/gates/HN/feed", params={"cursor": cursor}).json()["batch"]
    assert batch["revocations"] == [{"number": "D1", "version": 2}]
    assert [(d["number"], d["version"]) for d in batch["declarations"]] == [("D2", 5)]
    empty = client.get("/api/v1/gates/HN/feed", params={"cursor": batch["cursor_to"]}).json()["batch"]
    assert empty["cursor_to"] == empty["cursor_from"] and not empty["declarations"]
    gates = {g["gate"]: g for g in client.get("/api/v1/gates").json()}
    assert gates["HN"]["backlog"] == 0 and gates["HN"]["last_seq"] == 5 and not gates["HN"]["silent"]


def test_a_gate_request_without_the_gates_token_gets_401_and_is_stored_nowhere(central):
    events = [{"event_id": "forged-1", "seq": 1, "lane": "L1", "kind": "decision", "at": 1.0,
               "payload": '{"outcome":"release"}'}]
    other_gate = "lb-gate-token-for-the-sync-tests-0002"
    central.store.set_gate_token("LB", other_gate)
    attempts = {
        "no token": {},
        "wrong token": {"Authorization": "Bearer " + "x" * 40},
        "another gate's token": {"Authorization": f"Bearer {other_gate}"},
        "not a bearer token": {"Authorization": f"Basic {TOKEN}"},
    }
    with httpx.Client(base_url=central.url) as client:
        for what, headers in attempts.items():
            upload = client.post("/api/v1/gates/HN/events", json={"events": events, "backlog": 7}, headers=headers)
            assert upload.status_code == 401, what
            assert upload.headers["WWW-Authenticate"].startswith("Bearer") and upload.json()["detail"]["code"] == \
                "UNAUTHORIZED"
            assert client.get("/api/v1/gates/HN/feed", params={"cursor": 0}, headers=headers).status_code == 401, what
        assert client.get("/api/v1/gates/HN/events").json() == []  # no event stored
        assert "HN" not in {g["gate"] for g in client.get("/api/v1/gates").json()}  # not even a contact
        # a gate with no token issued accepts nothing either
        assert client.post("/api/v1/gates/XX/events", json={"events": events},
                           headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
        good = client.post("/api/v1/gates/HN/events", json={"events": events, "backlog": 0},
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200 and good.json()["acked"] == ["forged-1"]
        # a re-issued token replaces the old one
        central.store.set_gate_token("HN", "hn-gate-token-reissued-000000000003")
        assert client.get("/api/v1/gates/HN/feed", params={"cursor": 0},
                          headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
