"""Outbox (atomic with the journal, bounded, resumable) and the signed feed (what is refused, what applies)."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta

import pytest

from edge.cache import DeclarationCache
from edge.declarations import DeclarationStatus
from edge.journal import Journal
from sync.feed import FeedRejected, apply_batch, check_batch, feed_position
from sync.keys import generate_keypair, parse_public_key, public_b64, public_pem, sign, verify
from sync.link import Backoff, LinkState
from sync.outbox import Outbox


def _decl(number: str, version: int = 1, gate: str = "HN", status: str = "cleared") -> dict:
    now = datetime.now(UTC)
    return {"number": number, "kind": "import", "gate": gate, "plates": ["29C12345"], "containers": [],
            "seals": [], "channel": "green", "status": status, "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=1)).isoformat(), "version": version}


def _signed(key, batch: dict) -> dict:
    return {"batch": batch, "signature": sign(key, batch)}


def test_every_append_is_queued_in_the_same_transaction(tmp_path):
    journal = Journal.open(tmp_path / "j.sqlite")
    outbox = Outbox(journal)
    for i in range(5):
        journal.append("reading", {"i": i}, lane="L1")

    def boom(conn, entry):
        raise RuntimeError("fail inside the transaction")

    with pytest.raises(RuntimeError):
        journal.append("reading", {"i": 99}, lane="L1", extra_statements=boom)
    outbox.refresh()
    rows = outbox.peek(100)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]  # the failed append left neither row
    assert outbox.ack([rows[0]["event_id"], rows[1]["event_id"]]) == 2
    outbox.close()
    journal.close()
    # restart: the rest is still queued
    journal = Journal.open(tmp_path / "j.sqlite")
    outbox = Outbox(journal)
    assert [r["seq"] for r in outbox.peek(100)] == [3, 4, 5]
    assert outbox.backlog() == 3
    outbox.close()
    journal.close()


def test_bound_warns_then_overflows_without_blocking_and_backfills_in_order(tmp_path):
    journal = Journal.open(tmp_path / "j.sqlite")
    alarms = []
    outbox = Outbox(journal, max_rows=10, on_alarm=lambda code, text: alarms.append(code))
    for i in range(8):
        journal.append("reading", {"i": i}, lane="L1")
    assert outbox.warning() and "80%" in outbox.warning()
    for i in range(8, 15):
        journal.append("reading", {"i": i}, lane="L1")  # never raises: the node keeps deciding
    assert alarms == ["OUTBOX_FULL"]
    assert outbox.overflow_from == 11
    assert outbox.backlog() == 15  # 10 queued + seq 11..15 waiting in the journal
    seen = []
    while True:
        outbox.backfill()
        rows = outbox.peek(3)
        if not rows:
            break
        seen += [r["seq"] for r in rows]
        outbox.ack([r["event_id"] for r in rows])
    assert seen == list(range(1, journal.head().seq + 1))
    assert outbox.overflow_from is None
    journal.append("reading", {"i": 100}, lane="L1")
    assert [r["seq"] for r in outbox.peek(10)] == [journal.head().seq]
    outbox.close()
    journal.close()


def test_a_journal_older_than_its_outbox_is_queued_from_its_first_row(tmp_path):
    """A node that journaled before central was configured: central takes a chain only from seq 1."""
    journal = Journal.open(tmp_path / "j.sqlite")
    for i in range(5):
        journal.append("reading", {"i": i}, lane="L1")
    outbox = Outbox(journal)
    journal.append("reading", {"i": 5}, lane="L1")
    assert outbox.backlog() == 6
    seen = []
    while True:
        outbox.backfill()
        rows = outbox.peek(4)
        if not rows:
            break
        seen += [r["seq"] for r in rows]
        outbox.ack([r["event_id"] for r in rows])
    assert seen == [1, 2, 3, 4, 5, 6]
    outbox.close()
    outbox = Outbox(journal)  # an outbox that exists already does not queue anything again
    assert outbox.backlog() == 0 and outbox.peek(10) == []
    outbox.close()
    journal.close()


def test_keys_round_trip_pem_and_base64():
    private, public = generate_keypair()
    for text in (public_pem(public), public_b64(public)):
        key = parse_public_key(text)
        assert verify(key, {"a": 1}, sign(private, {"a": 1}))
    assert not verify(public, {"a": 2}, sign(private, {"a": 1}))


@pytest.fixture
def cache(tmp_path):
    with DeclarationCache.open(tmp_path / "c.sqlite") as opened:
        yield opened


def test_forged_tampered_replayed_out_of_order_and_wrong_gate_are_refused(cache):
    central, central_pub = generate_keypair()
    forger, _ = generate_keypair()
    first = {"gate": "HN", "cursor_from": 0, "cursor_to": 1, "issued_at": time.time(), "nonce": "n1",
             "declarations": [_decl("D1")], "revocations": []}
    good = _signed(central, first)
    apply_batch(cache, check_batch(good, "HN", central_pub, 0, 0.0, nonce="n1"), "HN")
    assert feed_position(cache)[0] == 1
    cursor, issued = feed_position(cache)
    second = {"gate": "HN", "cursor_from": 1, "cursor_to": 2, "issued_at": time.time() + 1, "nonce": "n2",
              "declarations": [_decl("D2")], "revocations": [{"number": "D1", "version": 2}]}
    tampered = copy.deepcopy(_signed(central, second))
    tampered["batch"]["declarations"][0]["status"] = "cleared"
    tampered["batch"]["declarations"][0]["channel"] = "red"
    cases = {
        "FEED_UNSIGNED": {"batch": second},
        "FEED_BAD_SIGNATURE": _signed(forger, second),
        "FEED_REPLAY": good,  # replay of the first batch: not this pull's nonce
        "FEED_OUT_OF_ORDER": _signed(central, {**first, "nonce": "n2"}),
        "FEED_WRONG_GATE": _signed(central, {**second, "gate": "LB"}),
        "FEED_REPLAYED": _signed(central, {**second, "issued_at": issued - 10}),
    }
    for code, message in [*cases.items(), ("FEED_BAD_SIGNATURE", tampered)]:
        with pytest.raises(FeedRejected) as info:
            check_batch(message, "HN", central_pub, cursor, issued, nonce="n2")
        assert info.value.code == code
    assert cache.get("D2") is None and cache.get("D1").status == DeclarationStatus.CLEARED
    # the genuine second batch: the revocation and the new declaration apply together
    apply_batch(cache, check_batch(_signed(central, second), "HN", central_pub, cursor, issued, nonce="n2"), "HN")
    assert cache.get("D1").status == DeclarationStatus.CANCELLED and cache.get("D1").version == 2
    assert cache.get("D2") is not None and feed_position(cache)[0] == 2


def test_a_bad_row_applies_nothing(cache):
    central, pub = generate_keypair()
    batch = {"gate": "HN", "cursor_from": 0, "cursor_to": 5, "issued_at": time.time(), "nonce": "n1",
             "declarations": [_decl("D1"), {"number": "BROKEN"}], "revocations": []}
    with pytest.raises(FeedRejected):
        apply_batch(cache, check_batch(_signed(central, batch), "HN", pub, 0, 0.0, nonce="n1"), "HN")
    assert cache.get("D1") is None and feed_position(cache)[0] == 0


def test_link_state_and_backoff():
    now = [1000.0]
    link = LinkState(down_after_s=30, slow_s=2, clock=lambda: now[0])
    assert link.state == "down"
    link.record_ok(0.1)
    assert link.state == "up" and link.since == 1000.0
    now[0] += 5
    link.record_error("timeout")
    assert link.state == "degraded"
    now[0] += 31
    assert link.state == "down" and link.since == now[0]
    link.record_ok(3.0)
    assert link.state == "degraded"  # slow
    backoff = Backoff(0.5, 8)
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0.125 <= d <= 8 for d in delays)
