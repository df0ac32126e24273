"""`smartgate journal archive`: old rows central acknowledged move to a gzip'd file; the chain stays verifiable.

Acknowledgement is the outbox's own (`Outbox.ack`, what the uploader calls with central's answer);
the tests play central's answer by acknowledging the event ids of the first rows.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.journal import Journal, verify_against_anchor
from sync import journal_archive
from sync.journal_archive import (
    ArchiveError,
    archive_journal,
    check_against_journal,
    journal_bytes,
    verify_archive,
)
from sync.outbox import Outbox

T0 = 1_790_000_000.0  # rows are one minute apart from here
ROOT = Path(__file__).resolve().parents[1]


def _journal(tmp_path: Path, rows: int, *, acked: int, pad: int = 0, legacy: bool = False) -> Path:
    """A journal of `rows` rows (row n at T0 + 60 n) whose first `acked` rows central acknowledged.

    `legacy`: a file made before archiving existed (no incremental vacuum, schema version 1).
    """
    path = tmp_path / "journal.sqlite"
    if legacy:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE legacy (x)")  # the first table fixes auto_vacuum (NONE)
    journal = Journal.open(path)
    outbox = Outbox(journal)
    try:
        entries = journal.append_many([("reading", {"n": n, "pad": "x" * pad}, "IMP-1", T0 + 60 * n)
                                       for n in range(rows)])
        outbox.ack([e.event_id for e in entries[:acked]])
    finally:
        outbox.close()
        journal.close()
    if legacy:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("DROP TABLE journal_archive")
            conn.execute("DROP TRIGGER journal_no_delete")
            conn.execute("CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal BEGIN "
                         "SELECT RAISE(ABORT, 'journal is append-only: DELETE refused'); END")
            conn.execute("PRAGMA user_version = 1")
    return path


def _verify(path: Path):
    with Journal.open(path) as journal:
        return journal.verify(), journal.archive_anchors(), [e.payload["n"] for e in journal.entries()
                                                            if "n" in e.payload]


def smartgate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_archive_moves_acknowledged_old_rows_and_every_check_passes(tmp_path: Path):
    path = _journal(tmp_path, 300, acked=200)
    result = archive_journal(path, before=T0 + 60 * 250)
    assert (result.first_seq, result.last_seq, result.rows) == (1, 200, 200), "capped at what central confirmed"
    assert result.file == tmp_path / "archive" / "journal-0000000001-0000000200.jsonl.gz"

    report, anchors, numbers = _verify(path)
    assert report.ok, report.problems
    assert report.archived_to == 200 and report.checked == 100 and numbers == list(range(200, 300))
    archived = verify_archive(result.file)
    assert archived.ok and archived.rows == 200, archived.problems
    assert check_against_journal([archived], anchors) == []

    # An auditor reads it with standard tools: gzip'd JSON lines, a header first.
    lines = gzip.decompress(result.file.read_bytes()).decode().splitlines()
    header, first = json.loads(lines[0]), json.loads(lines[1])
    assert header["format"] == "smartgate-journal-archive" and header["prev_hash"] == "0" * 64
    assert first["seq"] == 1 and first["payload"]["n"] == 0 and len(lines) == 201
    assert subprocess.run(["sha256sum", "-c", result.file.name + ".sha256"], cwd=result.file.parent,
                          capture_output=True).returncode == 0

    # The node goes on appending after the cut; the chain runs on from the anchor.
    with Journal.open(path) as journal:
        journal.append("reading", {"n": 300}, lane="IMP-1")
    cli = smartgate("journal", "verify", "--db", str(path), "--archive", str(tmp_path / "archive"))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "chain intact from the archive anchor at seq 200" in cli.stdout
    assert "archives match the journal's anchors" in cli.stdout


def test_unacknowledged_rows_are_never_archived(tmp_path: Path):
    path = _journal(tmp_path, 50, acked=0)
    result = archive_journal(path, before=T0 + 10**9)  # every row is old enough
    assert result.rows == 0 and result.file is None and "acknowledged no row" in result.note
    assert _verify(path)[2] == list(range(50))

    with Journal.open(path) as journal:  # central confirms some: only those may go
        outbox = Outbox(journal)
        outbox.ack([e.event_id for e in journal.entries(limit=20)])
        outbox.close()
    assert archive_journal(path, before=T0 + 10**9).last_seq == 20
    assert _verify(path)[2] == list(range(20, 50))


def test_a_journal_never_synced_has_nothing_archived(tmp_path: Path):
    path = tmp_path / "journal.sqlite"
    with Journal.open(path) as journal:
        journal.append_many([("reading", {"n": n}, None, T0) for n in range(10)])
    result = archive_journal(path, before=T0 + 10**9)
    assert result.rows == 0 and _verify(path)[0].checked == 10


def test_running_twice_archives_once(tmp_path: Path):
    path = _journal(tmp_path, 120, acked=120)
    first = archive_journal(path, before=T0 + 60 * 100)
    assert first.rows == 100
    again = archive_journal(path, before=T0 + 60 * 100)
    assert again.rows == 0 and again.deleted == 0 and again.file is None
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [
        "journal-0000000001-0000000100.jsonl.gz", "journal-0000000001-0000000100.jsonl.gz.sha256"]
    report, anchors, numbers = _verify(path)
    assert report.ok and len(anchors) == 1 and numbers == list(range(100, 120))

    # A later cut-off archives on from there, into a second file that continues the first.
    second = archive_journal(path, before=T0 + 60 * 110)
    assert (second.first_seq, second.last_seq) == (101, 110)
    report, anchors, _ = _verify(path)
    reports = [verify_archive(p) for p in sorted((tmp_path / "archive").glob("*.gz"))]
    assert report.ok and all(r.ok for r in reports) and check_against_journal(reports, anchors) == []


def test_tampering_in_the_archive_or_the_live_journal_is_detected(tmp_path: Path):
    path = _journal(tmp_path, 60, acked=60)
    result = archive_journal(path, before=T0 + 60 * 40)
    assert result.file is not None

    # An archived row edited (its hash recomputed so it looks self-consistent): the chain and the
    # SHA-256 the journal recorded both tell.
    lines = gzip.decompress(result.file.read_bytes()).decode().splitlines()
    row = json.loads(lines[10])
    row["payload"]["n"] = 999
    lines[10] = json.dumps(row)
    result.file.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    archived = verify_archive(result.file)
    assert not archived.ok and any(f"seq {row['seq']}: hash does not match" in p for p in archived.problems)
    assert any("SHA-256 differs" in p for p in check_against_journal([archived], _verify(path)[1]))
    cli = smartgate("journal", "verify", "--db", str(path), "--archive", str(result.file))
    assert cli.returncode == 1 and f"seq {row['seq']}" in cli.stdout

    # A live row edited (triggers dropped, as someone with the file would).
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER journal_no_update")
    conn.execute("UPDATE journal SET payload = replace(payload, '\"n\":50', '\"n\":51') WHERE seq = 51")
    conn.commit()
    conn.close()
    report = _verify(path)[0]
    assert not report.ok and any("seq 51" in p for p in report.problems)


def test_live_rows_cut_from_the_anchor_are_detected(tmp_path: Path):
    """Deleting the first live rows after an archive (the trigger allows only archived ones) is still seen."""
    path = _journal(tmp_path, 60, acked=60)
    archive_journal(path, before=T0 + 60 * 40)
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM journal WHERE seq = 41")
    conn.execute("DROP TRIGGER journal_no_delete")
    conn.execute("DELETE FROM journal WHERE seq = 41")
    conn.commit()
    conn.close()
    report = _verify(path)[0]
    assert not report.ok and any("seq 41 missing" in p for p in report.problems)


def test_against_central_still_checks_a_journal_whose_old_rows_are_archived(tmp_path: Path):
    path = _journal(tmp_path, 60, acked=60)
    with Journal.open(path) as journal:
        row40, row55 = journal.entries(after_seq=39, limit=1)[0], journal.entries(after_seq=54, limit=1)[0]
    archive_journal(path, before=T0 + 60 * 40)
    with Journal.open(path) as journal:
        good = {"head": {"seq": 55, "hash": row55.hash}, "last_event": {"seq": 40, "hash": row40.hash}}
        report = verify_against_anchor(journal, good)
        assert report.ok, report.problems
        bad = {"head": {"seq": 55, "hash": row55.hash}, "last_event": {"seq": 40, "hash": "f" * 64}}
        assert any("rewritten" in p for p in verify_against_anchor(journal, bad).problems)
        beyond = {"head": {"seq": 70, "hash": "a" * 64}}
        assert any("truncated" in p for p in verify_against_anchor(journal, beyond).problems)


def test_archiving_gives_the_disk_space_back(tmp_path: Path):
    path = _journal(tmp_path, 4000, acked=4000, pad=2000)
    before_bytes = journal_bytes(path)
    result = archive_journal(path, before=T0 + 60 * 3600)
    assert result.rows == 3600
    assert result.bytes_after < before_bytes * 0.25, result.to_dict()
    print(json.dumps(result.to_dict()))  # the figure, for the report (-s)
    assert _verify(path)[0].ok


def test_archiving_while_the_node_appends_keeps_every_row(tmp_path: Path):
    path = _journal(tmp_path, 3000, acked=3000, pad=500)
    journal = Journal.open(path)
    stop, started = threading.Event(), threading.Event()
    appended: list[int] = []

    def lane() -> None:  # the node's appends, meanwhile, on their own connection
        n = 3000
        while not stop.is_set() or n < 3100:
            journal.append("reading", {"n": n}, lane="IMP-1", at=T0 + 60 * n)
            appended.append(n)
            started.set()
            n += 1

    writer = threading.Thread(target=lane)
    writer.start()
    try:
        assert started.wait(30)
        result = archive_journal(path, before=T0 + 60 * 2500, chunk=200)
    finally:
        stop.set()
        writer.join(timeout=60)
        journal.close()
    assert result.rows == 2500
    report, _anchors, numbers = _verify(path)
    assert report.ok, report.problems
    assert numbers == list(range(2500, 3000)) + appended


def test_a_lock_held_past_the_busy_timeout_is_refused_clearly(tmp_path: Path):
    path = _journal(tmp_path, 30, acked=30)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            archive_journal(path, before=T0 + 10**9, busy_timeout_s=0.2)
    finally:
        other.execute("ROLLBACK")
        other.close()
    report, anchors, numbers = _verify(path)
    assert report.ok and not anchors and numbers == list(range(30)), "nothing half done"
    assert not list(tmp_path.glob("archive/*")), "no file left behind"
    assert archive_journal(path, before=T0 + 10**9).rows == 30  # and it goes through once the lock is gone


def _power_cut(*_args, **_kwargs):
    raise KeyboardInterrupt("power cut after the anchor committed, before the file got its name")


def test_an_interrupted_archive_is_finished_by_the_next_run(tmp_path: Path, monkeypatch):
    path = _journal(tmp_path, 30, acked=30)
    assert archive_journal(path, before=T0 + 60 * 10, dry_run=True).rows == 10
    assert not (tmp_path / "archive").exists(), "a dry run writes nothing"
    with monkeypatch.context() as patch:
        patch.setattr(journal_archive, "_publish", _power_cut)
        with pytest.raises(KeyboardInterrupt):
            archive_journal(path, before=T0 + 60 * 10)
    part = tmp_path / "archive" / "journal-0000000001-0000000010.jsonl.gz.part"
    assert part.exists()
    report, anchors, numbers = _verify(path)
    assert report.ok and len(anchors) == 1 and numbers == list(range(30)), "anchored, nothing deleted yet"

    result = archive_journal(path, before=T0 + 60 * 10)
    assert result.resumed and "renamed" in result.resumed and result.deleted == 10 and not part.exists()
    report, anchors, numbers = _verify(path)
    archived = verify_archive(tmp_path / "archive" / "journal-0000000001-0000000010.jsonl.gz")
    assert report.ok and numbers == list(range(10, 30)) and check_against_journal([archived], anchors) == []


def test_a_missing_anchored_file_stops_the_deletion_of_its_rows(tmp_path: Path, monkeypatch):
    path = _journal(tmp_path, 30, acked=30)
    with monkeypatch.context() as patch:
        patch.setattr(journal_archive, "_publish", _power_cut)
        with pytest.raises(KeyboardInterrupt):
            archive_journal(path, before=T0 + 60 * 10)
    (tmp_path / "archive" / "journal-0000000001-0000000010.jsonl.gz.part").unlink()
    with pytest.raises(ArchiveError, match="missing or not the one anchored"):
        archive_journal(path, before=T0 + 60 * 20)
    assert _verify(path)[2] == list(range(30)), "nothing deleted"


def test_a_journal_made_before_archiving_is_upgraded_and_vacuum_gives_its_space_back(tmp_path: Path):
    path = _journal(tmp_path, 2000, acked=2000, pad=2000, legacy=True)
    before_bytes = journal_bytes(path)
    result = archive_journal(path, before=T0 + 60 * 1800)
    assert result.rows == 1800 and "--vacuum" in result.note
    assert result.bytes_after > before_bytes * 0.9, "freed pages stay in the file"
    assert _verify(path)[0].ok

    vacuumed = archive_journal(path, before=T0 + 60 * 1800, vacuum=True)
    assert vacuumed.rows == 0 and vacuumed.bytes_after < before_bytes * 0.25, vacuumed.to_dict()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2, "incremental from now on"
    report, _anchors, numbers = _verify(path)
    assert report.ok and numbers == list(range(1800, 2000))


def test_the_command_archives_by_date_and_prints_its_figures(tmp_path: Path):
    path = _journal(tmp_path, 100, acked=100)
    cut = datetime.fromtimestamp(T0 + 60 * 30, UTC).isoformat()
    dry = smartgate("journal", "archive", "--db", str(path), "--before", cut, "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["rows"] == 30 and not (tmp_path / "archive").exists()
    done = smartgate("journal", "archive", "--db", str(path), "--before", cut)
    figures = json.loads(done.stdout)
    assert done.returncode == 0 and (figures["first_seq"], figures["last_seq"]) == (1, 30)
    assert figures["file"].endswith("journal-0000000001-0000000030.jsonl.gz")
    negative = smartgate("journal", "archive", "--db", str(path), "--keep-days", "-3")  # a typo, not "everything"
    assert negative.returncode == 2 and "must be 0 or more" in negative.stderr
    assert json.loads(smartgate("journal", "archive", "--db", str(path), "--keep-days", "0").stdout)["rows"] == 70
    bad = smartgate("journal", "archive", "--db", str(path), "--before", "last tuesday")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr


def test_rows_a_lane_restart_replays_stay_in_the_live_journal(tmp_path: Path):
    """An open transaction and an unacknowledged tamper alarm are rebuilt from the journal at restart."""
    path = tmp_path / "journal.sqlite"
    journal = Journal.open(path)
    outbox = Outbox(journal)
    rows = [("tx_opened", {"transaction": "t1"}, "IMP-1", T0), ("tx_closed", {"transaction": "t1"}, "IMP-1", T0 + 1),
            ("alarm", {"code": "BOOM_OPEN_WITHOUT_RELEASE", "text": "x"}, "EXP-1", T0 + 2),  # seq 3, acknowledged
            ("officer_action", {"action": "acknowledge_alarm"}, "EXP-1", T0 + 3),
            ("reading", {"n": 5}, "IMP-1", T0 + 4),
            ("tx_opened", {"transaction": "t2"}, "IMP-1", T0 + 5),  # seq 6, never closed
            ("reading", {"n": 7}, "IMP-1", T0 + 6)]
    entries = journal.append_many(rows)
    outbox.ack([e.event_id for e in entries])
    outbox.close()
    journal.close()
    result = archive_journal(path, before=T0 + 10**6)
    assert result.last_seq == 5 and "restart" in result.note

    with Journal.open(path) as journal:
        outbox = Outbox(journal)
        more = journal.append_many([("tx_closed", {"transaction": "t2"}, "IMP-1", T0 + 7),
                                    ("alarm", {"code": "BOOM_OPEN_WITHOUT_RELEASE", "text": "x"}, "EXP-1", T0 + 8),
                                    ("reading", {"n": 10}, "IMP-1", T0 + 9)])
        outbox.ack([e.event_id for e in more])
        outbox.close()
    assert archive_journal(path, before=T0 + 10**6).last_seq == 8, "the latched alarm (seq 9) stays"
