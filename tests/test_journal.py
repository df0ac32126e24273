"""The journal: durable, append-only, hash-chained; tampering (even with triggers dropped) is reported by seq."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from edge.journal import (
    GENESIS_HASH,
    Journal,
    JournalEntry,
    VerifyReport,
    canonical_json,
    format_verify_report,
)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def journal(journal_path: Path):
    j = Journal.open(journal_path)
    yield j
    j.close()


def _fill(journal: Journal, n: int, lane: str = "IN-1") -> list[JournalEntry]:
    out = []
    for i in range(n):
        kind = "decision" if i % 3 == 0 else "reading"
        out.append(journal.append(kind, {"i": i, "plate": f"12C{i:05d}", "result": "RELEASE"}, lane=lane,
                                  at=1_700_000_000.0 + i))
    return out


def _tamper(path: Path, *statements: tuple[str, tuple]) -> None:
    """What an attacker with file access does: drop the triggers, then edit rows directly."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER journal_no_update")
    conn.execute("DROP TRIGGER journal_no_delete")
    for sql, params in statements:
        conn.execute(sql, params)
    conn.commit()
    conn.close()


# ---------------------------------------------------------------- writing and reading


def test_append_returns_committed_chained_entry(journal: Journal, journal_path: Path) -> None:
    first = journal.append("reading", {"plate": "12C34567", "confidence": 0.97}, lane="IN-1", at=1000)
    second = journal.append("decision", {"result": "RELEASE"}, lane="IN-1")

    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.at == 1000.0 and isinstance(first.at, float)
    assert len(first.event_id) == 32 and first.event_id != second.event_id
    body = canonical_json([1, first.event_id, 1000.0, "IN-1", "reading", {"confidence": 0.97, "plate": "12C34567"}])
    assert first.hash == hashlib.sha256((GENESIS_HASH + body).encode()).hexdigest()

    # committed: another connection sees it without the journal closing
    other = sqlite3.connect(journal_path)
    assert other.execute("SELECT count(*) FROM journal").fetchone()[0] == 2
    other.close()


def test_database_is_wal_with_full_sync(journal: Journal) -> None:
    conn = journal._db()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_payload_is_normalised_the_same_way_it_is_read_back(journal: Journal) -> None:
    entry = journal.append("reading", {"seals": ("A1", "B2"), 7: "x", "name": "Lạng Sơn 凭祥"}, lane="IN-1")
    assert entry.payload == {"seals": ["A1", "B2"], "7": "x", "name": "Lạng Sơn 凭祥"}
    assert journal.entries()[0] == entry
    assert journal.verify().ok


def test_bad_payloads_are_refused_before_anything_is_written(journal: Journal) -> None:
    with pytest.raises(ValueError):
        journal.append("reading", {"weight": float("nan")})
    with pytest.raises(ValueError):
        journal.append("reading", {"when": object()})
    with pytest.raises(TypeError):
        journal.append("reading", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        journal.append("reading", {}, lane=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        journal.append("", {})
    assert journal.count() == 0
    assert journal.append("reading", {}).seq == 1


def test_entries_filters_and_orders(journal: Journal) -> None:
    journal.append("reading", {"n": 1}, lane="IN-1")
    journal.append("reading", {"n": 2}, lane="OUT-1")
    journal.append("decision", {"n": 3}, lane="IN-1")
    journal.append("alarm", {"n": 4}, lane=None)
    journal.append("barrier_command", {"n": 5}, lane="IN-1")

    assert [e.seq for e in journal.entries()] == [1, 2, 3, 4, 5]
    assert [e.seq for e in journal.entries(lane="IN-1")] == [1, 3, 5]
    assert [e.seq for e in journal.entries(kinds=["reading"])] == [1, 2]
    assert [e.seq for e in journal.entries(lane="IN-1", kinds=("decision", "barrier_command"))] == [3, 5]
    assert [e.seq for e in journal.entries(after_seq=2, limit=2)] == [3, 4]
    assert journal.entries(kinds=[]) == []


def test_latest_is_newest_first(journal: Journal) -> None:
    _fill(journal, 10)
    journal.append("decision", {"other": True}, lane="OUT-1")
    latest = journal.latest("IN-1", limit=3)
    assert [e.seq for e in latest] == [10, 9, 8]
    assert [e.seq for e in journal.latest("IN-1", kinds=["decision"], limit=2)] == [10, 7]
    assert journal.latest("IN-9") == []


def test_head_and_count(journal: Journal) -> None:
    assert journal.head() is None and journal.count() == 0
    entries = _fill(journal, 4)
    assert journal.head() == entries[-1]
    assert journal.count() == 4


def test_append_many_is_one_chained_transaction(journal: Journal) -> None:
    journal.append("reading", {"n": 0}, lane="IN-1")
    batch = journal.append_many([("reading", {"n": 1}, "IN-1", 5.0), ("decision", {"n": 2}, None, None)])
    assert [e.seq for e in batch] == [2, 3]
    assert batch[0].prev_hash == journal.entries()[0].hash and batch[1].prev_hash == batch[0].hash
    assert batch[1].lane is None
    assert journal.append_many([]) == []

    with pytest.raises(ValueError):
        journal.append_many([("reading", {"n": 3}, "IN-1", None), ("reading", {"bad": float("inf")}, "IN-1", None)])
    assert journal.count() == 3
    assert journal.verify().ok


def test_concurrent_appends_from_threads_stay_gapless(journal: Journal) -> None:
    def worker(lane: str) -> None:
        for i in range(25):
            journal.append("reading", {"i": i}, lane=lane)

    threads = [threading.Thread(target=worker, args=(f"IN-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in journal.entries()] == list(range(1, 101))
    assert journal.verify() == VerifyReport(ok=True, checked=100, problems=[])


def test_closed_journal_refuses_calls(journal_path: Path) -> None:
    j = Journal.open(journal_path)
    j.close()
    j.close()
    with pytest.raises(RuntimeError, match="closed"):
        j.append("reading", {})


# ---------------------------------------------------------------- durability across restarts


def test_entries_survive_reopen(journal_path: Path) -> None:
    j = Journal.open(journal_path)
    written = _fill(j, 5)
    j.close()

    reopened = Journal.open(journal_path)
    try:
        assert reopened.entries() == written
        assert reopened.verify().ok
    finally:
        reopened.close()


def test_chain_continues_after_reopen(journal_path: Path) -> None:
    j = Journal.open(journal_path)
    before = _fill(j, 3)
    j.close()

    j = Journal.open(journal_path)
    try:
        after = j.append("barrier_command", {"command": "open"}, lane="IN-1")
        assert after.seq == 4
        assert after.prev_hash == before[-1].hash
        report = j.verify()
        assert report.ok and report.checked == 4
    finally:
        j.close()


# ---------------------------------------------------------------- listeners and the outbox hook


def test_listener_sees_committed_entry(journal: Journal, journal_path: Path) -> None:
    seen: list[tuple[JournalEntry, int]] = []

    def listener(entry: JournalEntry) -> None:
        other = sqlite3.connect(journal_path)  # the row must already be visible to other readers
        visible = other.execute("SELECT count(*) FROM journal WHERE seq = ?", (entry.seq,)).fetchone()[0]
        other.close()
        seen.append((entry, visible))

    journal.add_listener(listener)
    entry = journal.append("officer_action", {"action": "release", "officer": "O-17"}, lane="IN-1")
    batch = journal.append_many([("lane_state", {"to": "OPENING"}, "IN-1", None)])
    assert seen == [(entry, 1), (batch[0], 1)]

    journal.remove_listener(listener)
    journal.append("alarm", {}, lane="IN-1")
    assert len(seen) == 2


def test_failing_listener_does_not_fail_the_append(journal: Journal) -> None:
    def broken(entry: JournalEntry) -> None:
        raise RuntimeError("kiosk gone")

    later: list[int] = []
    journal.add_listener(broken)
    journal.add_listener(lambda e: later.append(e.seq))
    assert journal.append("reading", {}).seq == 1
    assert later == [1]


def test_listener_may_append(journal: Journal) -> None:
    def echo(entry: JournalEntry) -> None:
        if entry.kind == "decision":
            journal.append("alarm", {"for": entry.seq}, lane=entry.lane)

    journal.add_listener(echo)
    journal.append("decision", {}, lane="IN-1")
    assert [e.kind for e in journal.entries()] == ["decision", "alarm"]


def _outbox(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")


def test_extra_statement_commits_with_append(journal: Journal) -> None:
    _outbox(journal._db())

    def enqueue(conn: sqlite3.Connection, entry: JournalEntry) -> None:
        conn.execute("INSERT INTO outbox (seq, body) VALUES (?, ?)", (entry.seq, json.dumps(entry.payload)))

    entry = journal.append("decision", {"result": "RELEASE"}, lane="IN-1", extra_statements=enqueue)
    rows = journal._db().execute("SELECT seq, body FROM outbox").fetchall()
    assert rows == [(entry.seq, '{"result": "RELEASE"}')]


def test_extra_statement_rolls_back_with_append(journal: Journal) -> None:
    _outbox(journal._db())
    journal.append("reading", {"n": 1}, lane="IN-1")
    seen: list[JournalEntry] = []
    journal.add_listener(seen.append)

    def enqueue_then_fail(conn: sqlite3.Connection, entry: JournalEntry) -> None:
        conn.execute("INSERT INTO outbox (seq, body) VALUES (?, ?)", (entry.seq, "x"))
        raise RuntimeError("outbox full")

    with pytest.raises(RuntimeError, match="outbox full"):
        journal.append("decision", {"result": "RELEASE"}, lane="IN-1", extra_statements=enqueue_then_fail)

    assert journal.count() == 1
    assert journal._db().execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert seen == []
    assert journal.append("decision", {"result": "RELEASE"}, lane="IN-1").seq == 2
    assert journal.verify().ok


# ---------------------------------------------------------------- tamper evidence


def test_update_and_delete_are_refused_by_database(journal: Journal, journal_path: Path) -> None:
    _fill(journal, 3)
    conn = sqlite3.connect(journal_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE journal SET payload = '{}' WHERE seq = 2")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM journal WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("DELETE FROM journal_head")
        with pytest.raises(sqlite3.IntegrityError, match="forward"):
            conn.execute("UPDATE journal_head SET seq = 2")
    finally:
        conn.close()
    assert journal.count() == 3
    assert journal.verify().ok


def test_edited_decision_row_is_detected(journal: Journal, journal_path: Path) -> None:
    _fill(journal, 20)
    decision = journal.entries(kinds=["decision"])[5]  # seq 16
    edited = dict(decision.payload, result="REFUSE")
    _tamper(journal_path, ("UPDATE journal SET payload = ? WHERE seq = ?", (json.dumps(edited), decision.seq)))

    report = journal.verify()
    assert not report.ok
    assert report.checked == 20
    assert report.problems == [f"seq {decision.seq}: hash does not match its contents (row edited)"]
    assert f"seq {decision.seq}" in format_verify_report(report)


def test_edited_and_rehashed_row_breaks_the_chain(journal: Journal, journal_path: Path) -> None:
    from edge.journal import entry_hash

    entries = _fill(journal, 5)
    victim = entries[2]
    payload = dict(victim.payload, result="REFUSE")
    forged = entry_hash(victim.prev_hash, victim.seq, victim.event_id, victim.at, victim.lane, victim.kind, payload)
    _tamper(journal_path, ("UPDATE journal SET payload = ?, hash = ? WHERE seq = 3", (canonical_json(payload), forged)))

    assert journal.verify().problems == ["chain broken at seq 4: prev_hash does not match the hash of seq 3"]


def test_deleted_row_is_detected(journal: Journal, journal_path: Path) -> None:
    _fill(journal, 20)
    _tamper(journal_path, ("DELETE FROM journal WHERE seq = ?", (18,)))

    report = journal.verify()
    assert not report.ok
    assert report.checked == 19
    assert report.problems == ["seq 18 missing (row deleted)"]


def test_deleted_run_of_rows_is_one_problem(journal: Journal, journal_path: Path) -> None:
    _fill(journal, 20)
    _tamper(journal_path, ("DELETE FROM journal WHERE seq BETWEEN 5 AND 9", ()))
    assert journal.verify().problems == ["seq 5..9 missing (5 rows deleted)"]


def test_deleted_last_row_is_detected(journal: Journal, journal_path: Path) -> None:
    _fill(journal, 20)
    _tamper(journal_path, ("DELETE FROM journal WHERE seq >= ?", (19,)))

    report = journal.verify()
    assert not report.ok
    assert len(report.problems) == 1
    assert report.problems[0].startswith("head anchor says seq 20 but the last row is seq 18")
    assert "last rows deleted" in report.problems[0]


def test_deleted_last_rows_stay_visible_after_more_appends(journal_path: Path) -> None:
    j = Journal.open(journal_path)
    _fill(j, 5)
    j.close()
    _tamper(journal_path, ("DELETE FROM journal WHERE seq = 5", ()))

    j = Journal.open(journal_path)  # re-creates the triggers, does not "repair" the anchor
    try:
        assert j.append("reading", {}, lane="IN-1").seq == 6
        assert j.verify().problems == ["seq 5 missing (row deleted)"]
    finally:
        j.close()


def test_deleted_first_row_is_detected(journal: Journal, journal_path: Path) -> None:
    _fill(journal, 3)
    _tamper(journal_path, ("DELETE FROM journal WHERE seq = 1", ()))
    assert journal.verify().problems == ["seq 1 missing (row deleted)"]


def test_wiped_journal_is_detected(journal: Journal, journal_path: Path) -> None:
    _fill(journal, 3)
    _tamper(journal_path, ("DELETE FROM journal", ()))
    report = journal.verify()
    assert not report.ok and report.checked == 0
    assert "last rows deleted" in report.problems[0]


def test_format_verify_report() -> None:
    assert format_verify_report(VerifyReport(ok=True, checked=7, problems=[])) == "journal OK: 7 entries, chain intact"
    text = format_verify_report(VerifyReport(ok=False, checked=7, problems=["seq 3 missing (row deleted)"]))
    assert "seq 3 missing (row deleted)" in text
    assert not text.startswith("journal OK")


# ---------------------------------------------------------------------- group commit (append_async)


def _committed(path: Path, seq: int) -> bool:
    """Seen by another connection, i.e. committed (not merely written inside an open transaction)."""
    with sqlite3.connect(path) as other:
        return other.execute("SELECT count(*) FROM journal WHERE seq = ?", (seq,)).fetchone()[0] == 1


def test_lanes_appending_together_share_commits_and_each_row_is_durable_when_its_await_returns(
        journal: Journal, journal_path: Path) -> None:
    import asyncio

    lanes, per_lane = 4, 50
    seen: list[int] = []
    journal.add_listener(lambda entry: seen.append(entry.seq))

    async def lane(name: str) -> list[JournalEntry]:
        entries = []
        for i in range(per_lane):
            entry = await journal.append_async("reading", {"lane": name, "i": i}, lane=name)
            assert _committed(journal_path, entry.seq)  # persist before acting: committed when we resume
            entries.append(entry)
        return entries

    async def main() -> list[list[JournalEntry]]:
        return await asyncio.gather(*(lane(f"L{n}") for n in range(lanes)))

    before = journal.commits
    results = asyncio.run(main())
    seqs = sorted(e.seq for entries in results for e in entries)
    assert seqs == list(range(1, lanes * per_lane + 1))  # one chain, no gaps, no doubles
    for entries in results:  # each lane's rows in its own order
        assert [e.payload["i"] for e in entries] == list(range(per_lane))
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert journal.commits - before < lanes * per_lane  # rows from several lanes shared a commit
    assert sorted(seen) == seqs
    assert journal.verify().ok


def test_a_failing_append_in_a_group_is_undone_alone(journal: Journal) -> None:
    import asyncio

    _outbox(journal._db())

    def enqueue(conn: sqlite3.Connection, entry: JournalEntry) -> None:
        conn.execute("INSERT INTO outbox (seq, body) VALUES (?, ?)", (entry.seq, "x"))

    def enqueue_then_fail(conn: sqlite3.Connection, entry: JournalEntry) -> None:
        enqueue(conn, entry)
        raise RuntimeError("refused")

    async def main():
        journal.append("reading", {"n": 0}, lane="IN-1")  # some history
        return await asyncio.gather(*(
            journal.append_async("reading", {"n": n}, lane="IN-1",
                                 extra_statements=enqueue_then_fail if n == 2 else enqueue)
            for n in range(1, 5)), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[1], RuntimeError) and str(results[1]) == "refused"
    good = [r for r in results if isinstance(r, JournalEntry)]
    assert [e.payload["n"] for e in good] == [1, 3, 4] and [e.seq for e in good] == [2, 3, 4]
    assert [row[0] for row in journal._db().execute("SELECT seq FROM outbox ORDER BY seq")] == [2, 3, 4]
    assert journal.count() == 4 and journal.verify().ok


def test_the_fast_hash_is_the_documented_hash() -> None:
    from edge.journal import _hash_with_text, _prepare, entry_hash

    for payload in ({}, {"b": 1, "a": [1.5, None, True, "é 桂A·12345"]}, {"n": {"z": {"y": []}}, "x": -0.0},
                    {"t": (1, 2)}, {1: "int key", "2": 2.25e-300}):
        kind, normalised, text, lane, at = _prepare("reading", payload, "IN-1", 1_700_000_000.123456)
        assert _hash_with_text("ab" * 32, 7, "e" * 32, at, lane, kind, text) == \
            entry_hash("ab" * 32, 7, "e" * 32, at, lane, kind, normalised)
