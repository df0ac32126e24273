"""Archiving the journal: old rows central acknowledged go to a gzip'd JSON-lines file; the chain stays verifiable.

Theory of operation (`smartgate journal archive`, safe while the node runs):

1. **Plan, in a read snapshot** (WAL: the node's appends go on meanwhile). The rows to archive are
   the oldest live rows up to the first one at or after the cut-off time, and never past
   `sync.outbox.acked_through` (central confirmed them and everything before), nor into the rows
   a lane's restart replays (`restart_floor`: an open transaction, an unacknowledged tamper
   alarm). They are checked as a chain continuing from the previous archive anchor (a journal that
   does not verify is refused) and written to `<archive dir>/journal-<first>-<last>.jsonl.gz.part`,
   fsynced.
2. **Anchor, one short write transaction**: a row in `journal_archive` (range, the hash the first
   archived row chains from, the hash of the last, the file's name and SHA-256). The file is then
   renamed to its final name (and a `.sha256` beside it for `sha256sum -c`).
3. **Delete, in short transactions** of `chunk` rows each, so no lane waits on the journal's write
   lock for long (the journal guard degrades a lane whose write waits past its `write_timeout_s`).
   The journal's delete trigger allows only rows at or below the newest anchor to go.
4. **Give the space back**: a journal made with `auto_vacuum = INCREMENTAL` (every journal made since
   this module exists) frees pages `chunk` at a time with passive checkpoints between, then tries a
   TRUNCATE checkpoint with a short busy timeout. An older journal keeps its freed pages for later
   rows until `--vacuum` rewrites it (a full VACUUM, which holds the write lock throughout: run it with
   the node stopped); that also switches it to incremental vacuum.

Every step can be interrupted: the next run finishes an anchored archive (renames the `.part` file
whose SHA-256 the anchor holds, deletes rows still at or below the anchor) before planning a new one,
and a second run with nothing new to archive changes nothing.

The archive file is gzip'd JSON lines: a header line (`format`, the range, `prev_hash`, `last_hash`,
how a row's hash is made) and one row per line with the journal's columns, `payload` as an object.
`zcat FILE | jq` reads it; `verify_archive` re-checks it alone, `check_against_journal` with the live
journal's anchors.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.journal import (
    GENESIS_HASH,
    SCHEMA_VERSION,
    ArchiveAnchor,
    Journal,
    canonical_json,
    entry_hash,
    read_archive_anchors,
)
from edge.records import LATCHED_ALARMS, JournalKind
from sync.outbox import acked_through

ARCHIVE_DIR = "archive"
FORMAT = "smartgate-journal-archive"
VERSION = 1
DELETE_CHUNK = 2000  # rows per delete transaction (and pages per incremental-vacuum step)
HASH_RULE = "hash = sha256(prev_hash + canonical_json([seq, event_id, at, lane, kind, payload])), genesis prev_hash " \
            "64 zeros; canonical_json: sorted keys, separators (',', ':'), UTF-8, no NaN"
_FIELDS = ("seq", "event_id", "at", "lane", "kind", "payload", "prev_hash", "hash")


class ArchiveError(RuntimeError):
    """Archiving was refused or could not finish; nothing that was not archived was deleted."""


@dataclass
class ArchiveResult:
    """What one `archive_journal` run did (figures for the operator)."""

    first_seq: int = 0
    last_seq: int = 0
    rows: int = 0
    file: Path | None = None
    acked_through: int = 0
    deleted: int = 0
    resumed: str | None = None  # what an interrupted earlier run left and this one finished
    bytes_before: int = 0
    bytes_after: int = 0
    file_bytes: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"first_seq": self.first_seq, "last_seq": self.last_seq, "rows": self.rows,
                "file": None if self.file is None else str(self.file), "file_bytes": self.file_bytes,
                "acked_through": self.acked_through, "deleted": self.deleted, "resumed": self.resumed,
                "journal_bytes_before": self.bytes_before, "journal_bytes_after": self.bytes_after,
                "freed_bytes": self.bytes_before - self.bytes_after, "note": self.note}


def journal_bytes(path: Path) -> int:
    """Bytes the journal takes on disk: the database file and its WAL."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def archive_name(first_seq: int, last_seq: int) -> str:
    """The archive file's name for rows first_seq..last_seq (sorts in seq order)."""
    return f"journal-{first_seq:010d}-{last_seq:010d}.jsonl.gz"


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=busy_timeout_s)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_of(anchor: ArchiveAnchor, journal_path: Path) -> Path:
    """Where an anchor's file lives: its recorded path, relative to the journal's folder unless absolute."""
    path = Path(anchor.file)
    return path if path.is_absolute() else journal_path.parent / path


def archive_journal(journal_path: str | Path, before: float, *, out_dir: str | Path | None = None,
                    chunk: int = DELETE_CHUNK, dry_run: bool = False, vacuum: bool = False,
                    busy_timeout_s: float = 10.0, clock=time.time) -> ArchiveResult:
    """Archive the journal's rows older than `before` (epoch seconds) that central acknowledged.

    `out_dir`: where archive files go (default `<journal folder>/archive`). `dry_run`: say what would
    be archived, change nothing. `vacuum`: end with a full VACUUM (holds the write lock throughout).
    Raises ArchiveError when refused (the journal does not verify, an anchored file is missing).
    """
    path = Path(journal_path)
    if not path.exists():
        raise ArchiveError(f"no journal at {path}")
    out = Path(out_dir) if out_dir is not None else path.parent / ARCHIVE_DIR
    result = ArchiveResult(bytes_before=journal_bytes(path))
    conn = _connect(path, busy_timeout_s)
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
            Journal.open(path).close()  # the schema (archive anchors, the delete trigger) made current
        if not dry_run:
            result.resumed, result.deleted = _finish_previous(conn, path, chunk)
        _plan_and_write(conn, path, out, before, result, dry_run=dry_run, clock=clock)
        if dry_run:
            return result
        if result.file is not None:
            result.deleted += _delete_archived(conn, chunk)
        if (result.deleted or vacuum) and not _give_space_back(conn, chunk, vacuum):
            result.note = ("the freed pages stay in the journal file for new rows (a journal made before "
                           "archiving existed); `--vacuum` with the node stopped gives them back once")
    finally:
        conn.close()
    result.bytes_after = journal_bytes(path)
    return result


def _finish_previous(conn: sqlite3.Connection, path: Path, chunk: int) -> tuple[str | None, int]:
    """Finish what an interrupted run left: the newest anchor's file in place, its rows deleted."""
    anchors = read_archive_anchors(conn)
    if not anchors:
        return None, 0
    anchor = anchors[-1]
    pending = conn.execute("SELECT count(*) FROM journal WHERE seq <= ?", (anchor.last_seq,)).fetchone()[0]
    if not pending:
        return None, 0
    final = _file_of(anchor, path)
    part = final.with_name(final.name + ".part")
    resumed = f"deleted rows already archived in {final.name}"
    if final.exists() and _sha256(final) == anchor.sha256:
        pass
    elif not final.exists() and part.exists() and _sha256(part) == anchor.sha256:
        _publish(part, final, anchor.sha256)
        resumed = f"renamed {part.name} and deleted its rows (anchored by an interrupted run)"
    else:
        raise ArchiveError(f"archive file {final} (seq {anchor.first_seq}..{anchor.last_seq}) is missing or not the "
                           f"one anchored (SHA-256) and {pending} of its rows are still in the journal: put the "
                           "file back; nothing deleted")
    return resumed, _delete_archived(conn, chunk)


def _plan_and_write(conn: sqlite3.Connection, path: Path, out: Path, before: float, result: ArchiveResult, *,
                    dry_run: bool, clock) -> None:
    """Choose the rows, check them, write the file and anchor it (fills `result`)."""
    conn.execute("BEGIN")  # one read snapshot for the plan and the rows
    try:
        anchors = read_archive_anchors(conn)
        start_seq, start_hash = (anchors[-1].last_seq, anchors[-1].last_hash) if anchors else (0, GENESIS_HASH)
        acked = acked_through(conn)
        result.acked_through = acked
        newer = conn.execute("SELECT min(seq) FROM journal WHERE seq > ? AND at >= ?",
                             (start_seq, before)).fetchone()[0]
        newest = conn.execute("SELECT max(seq) FROM journal").fetchone()[0] or start_seq
        last = min(acked, newest if newer is None else newer - 1)
        floor = restart_floor(conn)
        if floor is not None and floor <= last:
            last = floor - 1
            result.note = f"kept from seq {floor}: a lane's restart still needs it (an open transaction or an " \
                          "unacknowledged tamper alarm)"
        if last <= start_seq:
            why = ("central has acknowledged no row after it" if acked <= start_seq else
                   "a lane's restart needs the rows after it" if floor is not None and floor <= start_seq + 1 else
                   "no row after it is older than the cut-off")
            result.note = f"nothing to archive: the live journal starts after seq {start_seq} and {why}"
            return
        result.first_seq, result.last_seq, result.rows = start_seq + 1, last, last - start_seq
        if dry_run:
            result.note = "dry run: nothing written"
            return
        out.mkdir(parents=True, exist_ok=True)
        final = out / archive_name(start_seq + 1, last)
        part = final.with_name(final.name + ".part")
        try:
            last_hash = _write_rows(conn, part, start_seq, start_hash, last, clock)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
    finally:
        conn.execute("COMMIT")
    sha = _sha256(part)
    recorded = os.path.relpath(final, path.parent) if final.resolve().is_relative_to(path.parent.resolve()) \
        else str(final.resolve())
    try:
        conn.execute("BEGIN IMMEDIATE")
        now = read_archive_anchors(conn)
        if (now[-1].last_seq if now else 0) != start_seq:
            raise ArchiveError("another archive run anchored rows meanwhile; nothing done by this one")
        conn.execute("INSERT INTO journal_archive (first_seq, last_seq, prev_hash, last_hash, rows, file, sha256, "
                     "archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (start_seq + 1, last, start_hash, last_hash, last - start_seq, recorded, sha, clock()))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    _publish(part, final, sha)
    result.file, result.file_bytes = final, final.stat().st_size


def restart_floor(conn: sqlite3.Connection) -> int | None:
    """The oldest row a lane's restart replays beyond its closed transactions (edge/records.py `replay`), if any.

    Per lane: the TX_OPENED row of a transaction never closed (the restart resumes it from its rows),
    and the first tamper alarm (LATCHED_ALARMS) since the last acknowledgement (it stays latched).
    """
    floor: int | None = None
    lanes = [row[0] for row in conn.execute("SELECT DISTINCT lane FROM journal WHERE lane IS NOT NULL")]
    latched = sorted(code.value for code in LATCHED_ALARMS)
    for lane in lanes:
        row = conn.execute("SELECT seq, kind FROM journal WHERE lane = ? AND kind IN (?, ?) ORDER BY seq DESC "
                           "LIMIT 1", (lane, JournalKind.TX_OPENED.value, JournalKind.TX_CLOSED.value)).fetchone()
        candidates = [row[0]] if row is not None and row[1] == JournalKind.TX_OPENED.value else []
        acked = conn.execute("SELECT coalesce(max(seq), 0) FROM journal WHERE lane = ? AND kind = ? AND "
                             "json_extract(payload, '$.action') = 'acknowledge_alarm'",
                             (lane, JournalKind.OFFICER_ACTION.value)).fetchone()[0]
        marks = ", ".join("?" * len(latched))
        alarm = conn.execute(f"SELECT min(seq) FROM journal WHERE lane = ? AND kind = ? AND seq > ? AND "
                             f"json_extract(payload, '$.code') IN ({marks})",
                             (lane, JournalKind.ALARM.value, acked, *latched)).fetchone()[0]
        candidates += [alarm] if alarm is not None else []
        for seq in candidates:
            floor = seq if floor is None else min(floor, seq)
    return floor


def _write_rows(conn: sqlite3.Connection, part: Path, start_seq: int, start_hash: str, last: int, clock) -> str:
    """Check rows start_seq+1..last as a chain from start_hash and write them to `part`; return the last hash."""
    header = {"format": FORMAT, "version": VERSION, "first_seq": start_seq + 1, "last_seq": last,
              "rows": last - start_seq, "prev_hash": start_hash, "last_hash": None, "created_at": clock(),
              "hash_rule": HASH_RULE, "fields": list(_FIELDS)}
    # The header names the last hash, known only after the rows: read it first (the snapshot holds still).
    row = conn.execute("SELECT hash FROM journal WHERE seq = ?", (last,)).fetchone()
    header["last_hash"] = None if row is None else row[0]
    expected_seq, prev = start_seq + 1, start_hash
    with gzip.open(part, "wt", encoding="utf-8", compresslevel=6) as f:
        f.write(canonical_json(header) + "\n")
        cursor = conn.execute("SELECT seq, event_id, at, lane, kind, payload, prev_hash, hash FROM journal "
                              "WHERE seq > ? AND seq <= ? ORDER BY seq", (start_seq, last))
        for seq, event_id, at, lane, kind, payload_text, stored_prev, stored_hash in cursor:
            payload = json.loads(payload_text)
            if seq != expected_seq or stored_prev != prev or \
                    entry_hash(stored_prev, seq, event_id, at, lane, kind, payload) != stored_hash:
                raise ArchiveError(f"the journal does not verify at seq {seq} (expected seq {expected_seq} chained "
                                   "from the row before): archive refused; run `smartgate journal verify`")
            f.write(canonical_json(dict(zip(_FIELDS, (seq, event_id, at, lane, kind, payload, stored_prev,
                                                      stored_hash), strict=True))) + "\n")
            expected_seq, prev = seq + 1, stored_hash
    if expected_seq != last + 1:
        raise ArchiveError(f"the journal does not verify: rows end at seq {expected_seq - 1}, expected {last}")
    with part.open("rb") as f:
        os.fsync(f.fileno())
    return prev


def _publish(part: Path, final: Path, sha: str) -> None:
    """Give the archive its final name (and a `sha256sum -c` file beside it), durably."""
    os.replace(part, final)
    final.with_name(final.name + ".sha256").write_text(f"{sha}  {final.name}\n", encoding="utf-8")
    _fsync_dir(final.parent)


def _delete_archived(conn: sqlite3.Connection, chunk: int) -> int:
    """Delete live rows at or below the newest anchor, `chunk` per transaction; return how many."""
    deleted = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute("DELETE FROM journal WHERE seq IN (SELECT seq FROM journal WHERE seq <= "
                             "(SELECT coalesce(max(last_seq), 0) FROM journal_archive) ORDER BY seq LIMIT ?)",
                             (chunk,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        deleted += n
        if n < chunk:
            return deleted


def _give_space_back(conn: sqlite3.Connection, chunk: int, vacuum: bool) -> bool:
    """Return freed pages to the file system (incremental vacuum, or a full VACUUM) and shrink the WAL.

    False when the pages could not be given back (a journal without incremental vacuum, no `vacuum`).
    """
    incremental = int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2
    if vacuum:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect with the VACUUM
        conn.execute("VACUUM")
        incremental = True
    elif incremental:
        while int(conn.execute("PRAGMA freelist_count").fetchone()[0]) > 0:
            # executescript steps the pragma to its end (execute() frees one page per call).
            conn.executescript(f"PRAGMA incremental_vacuum({int(chunk)});")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # the WAL is reused, not grown
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    # TRUNCATE blocks new writers while it waits for readers: only briefly, and it is fine to fail.
    conn.execute("PRAGMA busy_timeout = 200")
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return incremental


# ---------------------------------------------------------------------- verifying archive files


@dataclass
class ArchiveReport:
    """Result of `verify_archive`: the file's range and chain ends, and its problems."""

    path: Path
    first_seq: int = 0
    last_seq: int = 0
    prev_hash: str = ""
    last_hash: str = ""
    rows: int = 0
    sha256: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def verify_archive(path: str | Path) -> ArchiveReport:
    """Re-check an archive file alone: its header, every row's hash, the chain inside it, its range."""
    path = Path(path)
    report = ArchiveReport(path)
    try:
        report.sha256 = _sha256(path)
        with gzip.open(path, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                report.problems.append(f"{path.name}: not a smartgate journal archive (no header)")
                return report
            report.first_seq, report.last_seq = int(header["first_seq"]), int(header["last_seq"])
            report.prev_hash, report.last_hash = str(header["prev_hash"]), str(header["last_hash"])
            expected, prev = report.first_seq, report.prev_hash
            for line in f:
                report.rows += 1
                row = _check_line(line, expected, prev, report.problems)
                expected, prev = int(row["seq"]) + 1, str(row["hash"])
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        report.problems.append(f"{path.name}: unreadable at row {report.rows}: {type(exc).__name__}: {exc}")
        return report
    if expected != report.last_seq + 1:
        report.problems.append(f"{path.name}: rows end at seq {expected - 1}, the header says {report.last_seq}")
    elif prev != report.last_hash:
        report.problems.append(f"{path.name}: the last row's hash is not the header's last_hash")
    if report.rows != int(header.get("rows", -1)):
        report.problems.append(f"{path.name}: {report.rows} rows, the header says {header.get('rows')}")
    return report


def _check_line(line: str, expected: int, prev: str, problems: list[str]) -> dict[str, Any]:
    """Check one archived row against the one before it; return it."""
    row = json.loads(line)
    seq = int(row["seq"])
    if seq != expected:
        problems.append(f"seq {expected}..{seq - 1} missing" if seq > expected else f"seq {seq} out of order")
    computed = entry_hash(row["prev_hash"], seq, row["event_id"], row["at"], row["lane"], row["kind"], row["payload"])
    if computed != row["hash"]:
        problems.append(f"seq {seq}: hash does not match its contents (row edited)")
    if row["prev_hash"] != prev and seq == expected:
        problems.append(f"chain broken at seq {seq}: prev_hash does not match the hash of seq {seq - 1}")
    return row


def check_against_journal(reports: Sequence[ArchiveReport], anchors: Sequence[ArchiveAnchor]) -> list[str]:
    """Problems between archive files and the live journal's anchors (call after `verify_archive` of each).

    Each file must be the one an anchor recorded (same range, same chain ends, same SHA-256), and the
    files given must chain one into the next; the live journal's own check starts from the newest anchor.
    """
    problems: list[str] = []
    by_range = {(a.first_seq, a.last_seq): a for a in anchors}
    for report in sorted(reports, key=lambda r: r.first_seq):
        anchor = by_range.get((report.first_seq, report.last_seq))
        name = report.path.name
        if anchor is None:
            problems.append(f"{name}: seq {report.first_seq}..{report.last_seq} is not an archive this journal "
                            "recorded")
            continue
        if (report.prev_hash, report.last_hash) != (anchor.prev_hash, anchor.last_hash):
            problems.append(f"{name}: its chain ends are not the ones the journal's anchor recorded")
        if report.sha256 != anchor.sha256:
            problems.append(f"{name}: SHA-256 differs from the one recorded when it was archived (file changed)")
    return problems


def not_given(reports: Sequence[ArchiveReport], anchors: Sequence[ArchiveAnchor]) -> list[ArchiveAnchor]:
    """The anchored archives for which no file was given (so not checked)."""
    given = {(r.first_seq, r.last_seq) for r in reports}
    return [a for a in anchors if (a.first_seq, a.last_seq) not in given]
