"""The durable outbox: every journal row queued for central in the journal's own transaction.

Design (and why):

* The outbox is a table in the journal's SQLite file, filled by a hook the journal runs inside the
  transaction of EVERY append (`Journal.set_append_hook`). So a row is queued if and only if its
  journal row is committed, whoever appended it; no listener or second database can miss one.
  A row holds only (seq, event_id, lane, bytes): the event itself is read from the journal by seq
  when it is sent, so an event is stored once and enqueueing costs one small insert.
* Rows are sent in seq order, one batch at a time, each with its `prev_hash` and `hash` (central
  checks that they continue the chain it holds), and deleted only after central acknowledged
  their event ids. Central stores events keyed by event_id (ON CONFLICT DO NOTHING), so a batch
  re-sent after a lost answer or a restart has no second effect: at-least-once transport with
  idempotency keys gives an exactly-once effect, and central's arrival order follows seq order,
  hence per-lane order.
* Bounded disk: at `warn_fraction` of `max_rows` / `max_bytes` the outbox warns (log and
  `status()['warning']`). At the bound the node keeps deciding — the hook never raises and never
  blocks the barrier path — but rows are no longer queued: the outbox enters *overflow*, records
  the first seq it skipped (durably, in the same transaction) and raises an alarm. It keeps
  skipping until `backfill()` (called by the uploader once central has taken rows) has re-queued
  every skipped row from the append-only journal, in seq order, so nothing is lost and order holds;
  what overflow costs is delay, not events.
* An acknowledgement also records, in the same transaction, the newest seq it took off the queue
  (`outbox_meta.acked_through`); `acked_through()` caps it below anything still queued or skipped,
  and `smartgate journal archive` never moves a row past it.
* A journal that already has rows when its outbox is first made (a node that ran before central
  was configured) starts in that same backfill from its first row: central accepts a gate's chain
  only from seq 1, without gaps.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from edge.journal import Journal, JournalEntry, canonical_json

log = logging.getLogger(__name__)

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, lane TEXT, "
    "bytes INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value)",
]


class Outbox:
    """The queue of journal events not yet acknowledged by central."""

    def __init__(self, journal: Journal, *, max_rows: int = 2_000_000, max_bytes: int = 1 << 30,
                 warn_fraction: float = 0.8, on_alarm: Callable[[str, str], None] | None = None):
        self.journal = journal
        self.max_rows, self.max_bytes, self.warn_fraction = max_rows, max_bytes, warn_fraction
        self.on_alarm = on_alarm
        self._conn = sqlite3.connect(str(journal.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA synchronous = FULL")
        fresh = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone() \
            is None
        for statement in _SCHEMA:
            self._conn.execute(statement)
        if fresh:
            # A journal that grew before this node synced (central configured later): its rows were never
            # queued. Central takes a gate's chain only from seq 1, so they are backfilled first, in order.
            first = self._conn.execute("SELECT min(seq) FROM journal").fetchone()[0]
            if first is not None:
                self._conn.execute("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES ('overflow_from', ?)",
                                   (first,))
        self._lock = threading.Lock()  # guards self._conn (never taken inside the journal's transaction)
        rows, size = self._conn.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM outbox").fetchone()
        self.rows, self.bytes = int(rows), int(size)
        row = self._conn.execute("SELECT value FROM outbox_meta WHERE key = 'overflow_from'").fetchone()
        self.overflow_from: int | None = None if row is None or row[0] is None else int(row[0])
        self.skipped = 0  # rows not queued (during overflow) since start
        self.acked = 0
        self._warned = False
        self._alarm_pending: str | None = None
        journal.set_append_hook(self._enqueue)
        journal.add_listener(self._after_commit)

    def close(self) -> None:
        self.journal.set_append_hook(None)
        self.journal.remove_listener(self._after_commit)
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------ inside the journal's transaction

    def _enqueue(self, conn: sqlite3.Connection, entry: JournalEntry) -> None:
        """The append hook: queue the row, or skip it (overflow). Never raises for a full outbox."""
        # No Python lock here: this runs under the journal's SQLite write lock, and every other
        # writer of these counters (ack, backfill) holds that same lock (BEGIN IMMEDIATE), so they
        # are serialised by SQLite; taking our own lock here could deadlock against them.
        size = _size(entry)
        if self.overflow_from is None and (self.rows + 1 > self.max_rows or self.bytes + size > self.max_bytes):
            self.overflow_from = entry.seq
            conn.execute("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES ('overflow_from', ?)",
                         (entry.seq,))
            self._alarm_pending = (f"outbox full ({self.rows} rows, {self.bytes} bytes): events from seq "
                                   f"{entry.seq} wait in the journal until central takes the backlog")
        if self.overflow_from is not None:
            self.skipped += 1
            return
        conn.execute("INSERT INTO outbox (seq, event_id, lane, bytes) VALUES (?, ?, ?, ?)",
                     (entry.seq, entry.event_id, entry.lane, size))
        self.rows += 1
        self.bytes += size

    def _after_commit(self, entry: JournalEntry) -> None:
        # Counters were bumped inside the transaction; a rolled-back append leaves them high by one
        # until refresh() (called by the uploader) recounts: harmless, it only warns earlier.
        message, self._alarm_pending = self._alarm_pending, None
        if message is not None:
            log.error("%s", message)
            if self.on_alarm is not None:
                self.on_alarm("OUTBOX_FULL", message)
        warning = self.warning()
        if warning and not self._warned:
            self._warned = True
            log.warning("%s", warning)
        elif not warning:
            self._warned = False

    # ------------------------------------------------------------ the uploader's side

    def refresh(self) -> None:
        """Recount rows and bytes from the table."""
        with self._lock:
            self.refresh_locked()

    def refresh_locked(self) -> None:
        rows, size = self._conn.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM outbox").fetchone()
        self.rows, self.bytes = int(rows), int(size)

    def peek(self, limit: int) -> list[dict[str, Any]]:
        """The oldest `limit` queued events, in seq order, as central receives them."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT j.seq, j.event_id, j.at, j.lane, j.kind, j.payload, j.prev_hash, j.hash FROM outbox o "
                "JOIN journal j ON j.seq = o.seq ORDER BY o.seq LIMIT ?", (limit,)).fetchall()
        return [{"seq": seq, "event_id": event_id, "at": at, "lane": lane, "kind": kind, "payload": payload,
                 "prev_hash": prev_hash, "hash": hash_}
                for seq, event_id, at, lane, kind, payload, prev_hash, hash_ in rows]

    def ack(self, event_ids: list[str]) -> int:
        """Delete the rows central acknowledged; return how many were deleted."""
        if not event_ids:
            return 0
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                newest = 0
                for start in range(0, len(event_ids), 500):
                    chunk = event_ids[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    size, top = conn.execute(f"SELECT coalesce(sum(bytes), 0), coalesce(max(seq), 0) FROM outbox "
                                             f"WHERE event_id IN ({marks})", chunk).fetchone()
                    deleted += conn.execute(f"DELETE FROM outbox WHERE event_id IN ({marks})", chunk).rowcount
                    self.bytes -= int(size)
                    newest = max(newest, int(top))
                if newest:
                    # What `smartgate journal archive` may take: rows central confirmed (see acked_through).
                    conn.execute("INSERT INTO outbox_meta (key, value) VALUES ('acked_through', ?) ON CONFLICT (key) "
                                 "DO UPDATE SET value = max(value, excluded.value)", (newest,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.rows -= deleted
            self.acked += deleted
        return deleted

    def backfill(self) -> int:
        """After an overflow: re-queue skipped journal rows (seq order) while there is room.

        Runs in one write transaction on the journal file, so no append interleaves: when the
        backfill reaches the journal's last row the overflow ends inside the same transaction and the
        next append is queued normally, after every skipped one.
        """
        if self.overflow_from is None:
            return 0
        with self._lock:
            room = min(int(self.max_rows * self.warn_fraction) - self.rows,
                       self.max_rows - self.rows)
            if room <= 0:
                return 0
            conn = self._conn
            previous = self.overflow_from
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute("SELECT seq, event_id, lane, payload FROM journal WHERE seq >= ? ORDER BY seq "
                                    "LIMIT ?", (self.overflow_from, room)).fetchall()
                added = 0
                for seq, event_id, lane, payload in rows:
                    size = len(payload) + 200
                    if self.bytes + size > self.max_bytes * self.warn_fraction:
                        break
                    conn.execute("INSERT OR IGNORE INTO outbox (seq, event_id, lane, bytes) VALUES (?, ?, ?, ?)",
                                 (seq, event_id, lane, size))
                    self.bytes += size
                    self.rows += 1
                    added += 1
                last = conn.execute("SELECT max(seq) FROM journal").fetchone()[0] or 0
                next_from = rows[added - 1][0] + 1 if added else previous
                if next_from > last:
                    conn.execute("DELETE FROM outbox_meta WHERE key = 'overflow_from'")
                    self.overflow_from = None
                else:
                    conn.execute("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES ('overflow_from', ?)",
                                 (next_from,))
                    self.overflow_from = next_from
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self.overflow_from = previous
                self.refresh_locked()
                raise
        if self.overflow_from is None:
            log.warning("outbox overflow over: every skipped event is queued again")
        return added

    # ------------------------------------------------------------ views

    def warning(self) -> str | None:
        if self.overflow_from is not None:
            return f"outbox full: events from seq {self.overflow_from} wait in the journal"
        if self.rows >= self.max_rows * self.warn_fraction or self.bytes >= self.max_bytes * self.warn_fraction:
            return (f"outbox at {max(self.rows / self.max_rows, self.bytes / self.max_bytes):.0%} of its bound "
                    f"({self.rows} events, {self.bytes} bytes)")
        return None

    def backlog(self) -> int:
        """Events not yet acknowledged by central (queued plus skipped during an overflow)."""
        if self.overflow_from is None:
            return self.rows
        head = self.journal.head()
        return self.rows + (0 if head is None else max(0, head.seq - self.overflow_from + 1))

    def status(self) -> dict[str, Any]:
        return {"rows": self.rows, "bytes": self.bytes, "max_rows": self.max_rows, "max_bytes": self.max_bytes,
                "backlog": self.backlog(), "overflow_from": self.overflow_from, "acked": self.acked,
                "warning": self.warning()}


def acked_through(conn: sqlite3.Connection) -> int:
    """The newest seq such that central acknowledged it and every row before it (0: none known).

    Read from the journal file itself: the newest seq an acknowledgement deleted from the outbox
    (`outbox_meta.acked_through`, written with the deletion), capped below the oldest row still
    queued and below the first row skipped by an overflow. A journal without an outbox (no central
    configured) has nothing acknowledged.
    """
    try:
        meta = dict(conn.execute("SELECT key, value FROM outbox_meta").fetchall())
        oldest_queued = conn.execute("SELECT min(seq) FROM outbox").fetchone()[0]
    except sqlite3.OperationalError:  # no outbox tables: this journal was never synced
        return 0
    through = int(meta.get("acked_through") or 0)
    if oldest_queued is not None:
        through = min(through, int(oldest_queued) - 1)
    if meta.get("overflow_from") is not None:
        through = min(through, int(meta["overflow_from"]) - 1)
    return max(through, 0)


def _size(entry: JournalEntry) -> int:
    """Bytes an event takes on disk, roughly: its payload text plus the row's fixed fields."""
    return len(entry.text or canonical_json(entry.payload)) + 200
