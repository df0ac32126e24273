"""The node's append-only, hash-chained SQLite journal: every reading, decision, officer action and barrier command.

Persist before acting: `Journal.append` returns only once the row is committed with
`synchronous=FULL` in WAL mode, i.e. fsynced to the WAL file and so durable across power loss.
Callers journal first and act second (the RELEASE row is on disk before the PLC is told to open).

Integrity, in three layers:

* every row carries `hash = sha256(prev_hash + canonical_json([seq, event_id, at, lane, kind, payload]))`
  with the genesis `prev_hash` being 64 zeros, so an edited row no longer matches its hash and a
  row re-hashed after editing breaks the link from the row after it;
* triggers make the `journal` table append-only inside SQLite (UPDATE is aborted, and DELETE of a row
  not yet archived);
* a one-row `journal_head` table (seq, hash of the newest row) is updated in the same transaction
  as each append, so deleting the newest rows (which leaves no gap in the chain) is still seen.

`verify` re-checks all of it from the stored rows, so tampering by someone who dropped the
triggers is reported by seq. Someone who rewrites the whole chain and the head anchor consistently
is caught only from outside: the node signs its head (seq, hash) with its own Ed25519 key
(`load_or_create_head_key`, `<data_dir>/journal-head.key`, mode 0600, registered at central at
enrolment) and sends it with every upload; `verify_against_anchor` compares the local journal with
what central holds (`smartgate journal verify --against-central`), so a journal truncated, or
rewritten and re-chained, after central saw it is reported.

Archiving (sync/journal_archive.py, `smartgate journal archive`) moves the oldest rows central has
acknowledged to a gzip'd JSON-lines file and records an anchor in `journal_archive` (the range, the
hash the first archived row chains from, the hash of the last one, the file's SHA-256); only rows at
or below the newest anchor may be deleted (the delete trigger says so), and `verify` checks the live
rows as a chain continuing from that anchor. An anchor is only as good as its file: `verify --archive`
checks the files against the anchors (range, chain ends, SHA-256).

Appends from the outbox feature: `append(..., extra_statements=fn)` runs `fn(conn, entry)` inside
the same transaction before the commit, so an outbox row is enqueued atomically with its journal row.

Group commit: `await append_async(...)` (the lanes' path) hands the row to one writer thread. While
that thread commits (the fsync is most of an append's cost), appends arriving from other lanes wait
in a queue; the next round writes all of them in ONE transaction, each under its own SAVEPOINT (a
failing one is rolled back alone), and one fsync makes them all durable. Every caller still resumes
only after its own row is committed, so persist-before-acting holds row by row, and the event loop
is not blocked by the fsync.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
SCHEMA_VERSION = 2  # 2: journal_archive anchors; rows at or below the newest may be deleted
HEAD_KEY_FILE = "journal-head.key"

ExtraStatements = Callable[[sqlite3.Connection, "JournalEntry"], None]
Listener = Callable[["JournalEntry"], None]
AppendItem = tuple[str, dict[str, Any], "str | None", "float | None"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq       INTEGER PRIMARY KEY,
    event_id  TEXT    NOT NULL UNIQUE,
    at        REAL    NOT NULL,
    lane      TEXT,
    kind      TEXT    NOT NULL,
    payload   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_lane_seq ON journal (lane, seq);
CREATE INDEX IF NOT EXISTS journal_lane_kind_seq ON journal (lane, kind, seq);
CREATE TABLE IF NOT EXISTS journal_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN
    SELECT RAISE(ABORT, 'journal is append-only: UPDATE refused');
END;
CREATE TABLE IF NOT EXISTS journal_archive (
    id             INTEGER PRIMARY KEY,
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,
    prev_hash      TEXT    NOT NULL,
    last_hash      TEXT    NOT NULL,
    rows           INTEGER NOT NULL,
    file           TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    archived_at    REAL    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
WHEN OLD.seq > coalesce((SELECT max(last_seq) FROM journal_archive), 0)
BEGIN
    SELECT RAISE(ABORT, 'journal is append-only: DELETE refused (only rows recorded as archived may go)');
END;
CREATE TRIGGER IF NOT EXISTS journal_archive_no_update BEFORE UPDATE ON journal_archive
BEGIN
    SELECT RAISE(ABORT, 'journal archive anchors are append-only: UPDATE refused');
END;
CREATE TRIGGER IF NOT EXISTS journal_archive_no_delete BEFORE DELETE ON journal_archive
BEGIN
    SELECT RAISE(ABORT, 'journal archive anchors are append-only: DELETE refused');
END;
CREATE TRIGGER IF NOT EXISTS journal_head_no_delete BEFORE DELETE ON journal_head
BEGIN
    SELECT RAISE(ABORT, 'journal head anchor cannot be deleted');
END;
CREATE TRIGGER IF NOT EXISTS journal_head_only_forward BEFORE UPDATE ON journal_head
WHEN NEW.seq <= OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'journal head anchor only moves forward');
END;
"""

_COLUMNS = "seq, event_id, at, lane, kind, payload, prev_hash, hash"
_INSERT = f"INSERT INTO journal ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class JournalEntry:
    """One committed journal row. `payload` is the JSON-normalised form that was hashed and stored."""

    seq: int
    event_id: str
    at: float
    lane: str | None
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    text: str = field(default="", compare=False, repr=False)  # the stored canonical JSON of payload


@dataclass
class VerifyReport:
    """Result of `Journal.verify`: `ok` when no problem was found; each problem names the seq."""

    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    archived_to: int = 0  # rows 1..archived_to were moved to archive files; the chain is checked from there
    archives: int = 0  # archive files recorded in the journal


def canonical_json(value: Any) -> str:
    """The canonical JSON text used for hashing and storage (sorted keys, no spaces, UTF-8, no NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(prev_hash: str, seq: int, event_id: str, at: float, lane: str | None, kind: str,
               payload: dict[str, Any]) -> str:
    """SHA-256 hex of prev_hash + canonical JSON of [seq, event_id, at, lane, kind, payload]."""
    body = canonical_json([seq, event_id, at, lane, kind, payload])
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def _hash_with_text(prev_hash: str, seq: int, event_id: str, at: float, lane: str | None, kind: str,
                    payload_text: str) -> str:
    """entry_hash for a payload already in canonical JSON: the same bytes, without encoding it again.

    The canonical JSON of a list is "[" + its items' canonical JSON joined by "," + "]", so the
    payload's text can be spliced in after the other five fields.
    """
    head = canonical_json([seq, event_id, at, lane, kind])
    return hashlib.sha256(f"{prev_hash}{head[:-1]},{payload_text}]".encode()).hexdigest()


def format_verify_report(report: VerifyReport) -> str:
    """Human-readable verify result for the CLI: one OK line, or a header and one line per problem."""
    if report.ok:
        if report.archived_to:
            return (f"journal OK: {report.checked} entries, chain intact from the archive anchor at seq "
                    f"{report.archived_to} (rows 1..{report.archived_to} in {report.archives} archive file(s); "
                    "check them with --archive)")
        return f"journal OK: {report.checked} entries, chain intact"
    lines = [f"journal NOT OK: {len(report.problems)} problem(s) in {report.checked} entries checked"]
    lines.extend(f"  - {problem}" for problem in report.problems)
    return "\n".join(lines)


def _row_to_entry(row: Sequence[Any]) -> JournalEntry:
    seq, event_id, at, lane, kind, payload, prev_hash, hash_ = row
    return JournalEntry(seq=seq, event_id=event_id, at=at, lane=lane, kind=kind, payload=json.loads(payload),
                        prev_hash=prev_hash, hash=hash_, text=payload)


Prepared = tuple[str, dict[str, Any], str, "str | None", float]


class _Request:
    """One caller's rows for a group commit: filled with entries, or with the error that undid them."""

    __slots__ = ("prepared", "extra", "entries", "error", "future")

    def __init__(self, prepared: list[Prepared], extra: ExtraStatements | None,
                 future: asyncio.Future | None = None) -> None:
        self.prepared, self.extra, self.future = prepared, extra, future
        self.entries: list[JournalEntry] = []
        self.error: BaseException | None = None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class Journal:
    """Append-only, hash-chained journal in one SQLite file. Thread-safe (a lock around each connection).

    Appends go through a connection of their own: a write waiting on a lock someone else holds (up to
    the busy timeout) never stalls a read (the kiosk's history, the alarms, the head), which WAL serves
    from its snapshot meanwhile.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, writer: sqlite3.Connection | None = None) -> None:
        """Use `Journal.open`; this wraps already-configured connections (`writer`: for appends, else `conn`)."""
        self._conn: sqlite3.Connection | None = conn
        self._wconn: sqlite3.Connection | None = writer if writer is not None else conn
        self._path = path
        self._lock = threading.Lock()
        self._wlock = threading.Lock() if writer is not None else self._lock
        self._listeners: list[Listener] = []
        self._append_hook: ExtraStatements | None = None
        # group commit (append_async): requests waiting for the writer, touched on the loop's thread only
        self._pending: list[_Request] = []
        self._writer_busy = False
        self._round_scheduled = False
        self._writer: ThreadPoolExecutor | None = None
        self.commits = 0  # transactions committed (a group commit counts once)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: str | Path) -> Journal:
        """Open (creating if needed) the journal at `path`: WAL, synchronous=FULL, schema and triggers."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(path)
        try:
            # A new file gives pages back to the file system as `smartgate journal archive` frees them
            # (incremental vacuum); it takes effect only before the first table exists.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"journal {path}: could not switch to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE")
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) < 2:
                # Version 1's delete trigger refused every DELETE; version 2's lets archived rows go.
                conn.execute("DROP TRIGGER IF EXISTS journal_no_delete")
            for statement in _split_script(_SCHEMA):
                conn.execute(statement)
            # The anchor is created only with an empty journal: a missing anchor on a journal that
            # has rows is evidence (verify reports it), not something to paper over on open.
            conn.execute("INSERT INTO journal_head (id, seq, hash) SELECT 1, 0, ? "
                         "WHERE NOT EXISTS (SELECT 1 FROM journal) AND NOT EXISTS (SELECT 1 FROM journal_head)",
                         (GENESIS_HASH,))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            writer = _connect(path)
            writer.execute("PRAGMA synchronous = FULL")  # per connection: the appends' fsync
            writer.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            conn.close()
            raise
        return cls(conn, path, writer)

    @property
    def path(self) -> Path:
        """The journal's database file."""
        return self._path

    def close(self) -> None:
        """Close the connection (idempotent). Later calls raise RuntimeError."""
        with self._wlock:
            if self._wconn is not None and self._wconn is not self._conn:
                self._wconn.close()
            self._wconn = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"journal {self._path} is closed")
        return self._conn

    # ------------------------------------------------------------------ listeners

    def add_listener(self, callback: Listener) -> None:
        """Call `callback(entry)` synchronously after each committed append (outside the journal lock)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling `callback`; unknown callbacks are ignored."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _notify(self, entries: Iterable[JournalEntry]) -> None:
        listeners = list(self._listeners)
        if not listeners:
            return
        for entry in entries:
            for listener in listeners:
                try:
                    listener(entry)
                except Exception:  # the row is committed; a listener must not make the append look failed
                    log.exception("journal listener %r failed on seq %d", listener, entry.seq)

    # ------------------------------------------------------------------ writing

    def set_append_hook(self, hook: ExtraStatements | None) -> None:
        """Run `hook(conn, entry)` inside the transaction of EVERY append (before any per-call extra).

        The sync outbox uses it so that each journal row is queued for central atomically with the
        row itself, whoever appends it. If the hook raises, the append fails and nothing is kept, so
        a hook must not raise for reasons the caller cannot fix (the outbox never does: at its bound
        it skips the row and raises an alarm instead). None removes the hook.
        """
        self._append_hook = hook

    def append(self, kind: str, payload: dict[str, Any], *, lane: str | None = None, at: float | None = None,
               extra_statements: ExtraStatements | None = None) -> JournalEntry:
        """Append one entry and commit it durably before returning it.

        `extra_statements(conn, entry)` runs inside the same transaction before the commit; if it
        raises, nothing is kept (no journal row, no extra rows, seq does not advance) and the
        exception propagates. Listeners are called after the commit.
        """
        return self._append_items([(kind, payload, lane, at)], extra_statements)[0]

    def append_many(self, items: Sequence[AppendItem], *,
                    extra_statements: ExtraStatements | None = None) -> list[JournalEntry]:
        """Append several `(kind, payload, lane, at)` entries in one transaction (one fsync); all or none."""
        if not items:
            return []
        return self._append_items(items, extra_statements)

    def _append_items(self, items: Sequence[AppendItem], extra: ExtraStatements | None) -> list[JournalEntry]:
        request = _Request([_prepare(*item) for item in items], extra)  # validate before taking the lock
        self._write([request])
        if request.error is not None:
            raise request.error
        self._notify(request.entries)
        return request.entries

    async def append_async(self, kind: str, payload: dict[str, Any], *, lane: str | None = None,
                           at: float | None = None, extra_statements: ExtraStatements | None = None) -> JournalEntry:
        """`append` for coroutines: returns once the row is committed, sharing the commit with other lanes.

        Same guarantees as `append` (durable before it returns, all or nothing, the exception of a
        failed append raised here); the fsync happens on the journal's writer thread, not the loop.
        """
        entries = await self.append_many_async([(kind, payload, lane, at)], extra_statements=extra_statements)
        return entries[0]

    async def append_many_async(self, items: Sequence[AppendItem], *,
                                extra_statements: ExtraStatements | None = None) -> list[JournalEntry]:
        """`append_many` for coroutines (one caller's items all or none, possibly with others' in one commit)."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        request = _Request([_prepare(*item) for item in items], extra_statements, loop.create_future())
        self._db()  # raise at once if closed
        self._pending.append(request)
        self._schedule_round(loop)
        return await request.future  # cancelled: the rows may still commit, as after a crash

    def _schedule_round(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a writer round soon: after the coroutines runnable now have queued their rows too."""
        if not self._writer_busy and not self._round_scheduled:
            self._round_scheduled = True
            loop.call_soon(self._start_writer, loop)

    def _start_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._round_scheduled = False
        if self._writer_busy or not self._pending:
            return
        batch, self._pending = self._pending, []
        if self._conn is None:  # closed while these waited for their round
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(RuntimeError(f"journal {self._path} is closed"))
            return
        self._writer_busy = True
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        done = self._writer.submit(self._write, batch)

        def back_to_the_loop(future: Future) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
                loop.call_soon_threadsafe(self._writer_done, loop, batch, future)

        done.add_done_callback(back_to_the_loop)

    def _writer_done(self, loop: asyncio.AbstractEventLoop, batch: list[_Request], done: Future) -> None:
        """On the loop: wake each caller with its entries or error, run listeners, start the next round."""
        failure = done.exception()
        entries: list[JournalEntry] = []
        for request in batch:
            error = request.error or failure
            if error is not None:
                if not request.future.done():
                    request.future.set_exception(error)
            else:
                entries.extend(request.entries)
                if not request.future.done():
                    request.future.set_result(request.entries)
        self._notify(entries)
        self._writer_busy = False
        if self._pending:
            # Not at once: the callers just woken append their next rows first and join this round.
            self._schedule_round(loop)

    def _write(self, requests: list[_Request]) -> None:
        """Write requests in one transaction and commit once; each request all or none.

        A request whose statements raise is rolled back alone (SAVEPOINT) and gets the error; the
        others are committed. If the transaction itself fails (BEGIN, COMMIT) every request gets it.
        """
        group = len(requests) > 1
        with self._wlock:
            conn = self._wconn
            if conn is None:
                raise RuntimeError(f"journal {self._path} is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq, prev_hash = self._chain_tip(conn)
                written = False
                for request in requests:
                    if group:
                        conn.execute("SAVEPOINT request")
                    try:
                        entries, seq_after, hash_after = self._insert(conn, request, seq, prev_hash)
                    except Exception as exc:
                        if not group:
                            raise
                        conn.execute("ROLLBACK TO request")
                        conn.execute("RELEASE request")
                        request.error = exc
                        continue
                    if group:
                        conn.execute("RELEASE request")
                    request.entries, seq, prev_hash, written = entries, seq_after, hash_after, True
                if written:
                    conn.execute("INSERT INTO journal_head (id, seq, hash) VALUES (1, ?, ?) "
                                 "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                                 (seq, prev_hash))
                conn.execute("COMMIT")
                self.commits += 1
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                for request in requests:
                    request.entries = []
                    request.error = request.error or exc
                if not group or not isinstance(exc, Exception):
                    raise

    def _insert(self, conn: sqlite3.Connection, request: _Request, seq: int,
                prev_hash: str) -> tuple[list[JournalEntry], int, str]:
        """Insert one request's rows after (seq, prev_hash); return its entries and the new chain tip."""
        entries: list[JournalEntry] = []
        hook, extra = self._append_hook, request.extra
        execute = conn.execute
        for kind, payload, payload_text, lane, at in request.prepared:
            seq += 1
            event_id = uuid.uuid4().hex
            hash_ = _hash_with_text(prev_hash, seq, event_id, at, lane, kind, payload_text)
            execute(_INSERT, (seq, event_id, at, lane, kind, payload_text, prev_hash, hash_))
            entry = JournalEntry(seq, event_id, at, lane, kind, payload, prev_hash, hash_, payload_text)
            if hook is not None:
                hook(conn, entry)
            if extra is not None:
                extra(conn, entry)
            entries.append(entry)
            prev_hash = hash_
        return entries, seq, prev_hash

    @staticmethod
    def _chain_tip(conn: sqlite3.Connection) -> tuple[int, str]:
        """(seq, hash) to chain the next row from: the head anchor, else the newest row, else genesis.

        Chaining from the anchor keeps a deletion of the newest rows visible after later appends
        (it shows up as a gap) instead of silently re-using their seqs.
        """
        row = conn.execute("SELECT seq, hash FROM journal_head WHERE id = 1").fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
        row = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            log.error("journal head anchor is missing; chaining from the newest row (seq %d)", row[0])
            return int(row[0]), str(row[1])
        return 0, GENESIS_HASH

    # ------------------------------------------------------------------ reading

    def entries(self, *, lane: str | None = None, kinds: Iterable[str] | None = None, after_seq: int = 0,
                limit: int | None = None) -> list[JournalEntry]:
        """Entries with seq > after_seq, optionally only one lane's and only some kinds, in seq order."""
        where, params = _filters(lane, kinds)
        if where is None:
            return []
        where.append("seq > ?")
        params.append(after_seq)
        sql = f"SELECT {_COLUMNS} FROM journal WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._db().execute(sql, params).fetchall()
        return [_row_to_entry(row) for row in rows]

    def latest(self, lane: str, kinds: Iterable[str] | None = None, limit: int = 100) -> list[JournalEntry]:
        """The newest `limit` entries of one lane (optionally only some kinds), newest first."""
        where, params = _filters(lane, kinds)
        if where is None:
            return []
        sql = f"SELECT {_COLUMNS} FROM journal WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db().execute(sql, params).fetchall()
        return [_row_to_entry(row) for row in rows]

    def head(self) -> JournalEntry | None:
        """The newest entry, or None for an empty journal."""
        with self._lock:
            row = self._db().execute(f"SELECT {_COLUMNS} FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else _row_to_entry(row)

    def head_anchor(self) -> tuple[int, str]:
        """(seq, hash) of the head anchor: what the next row chains from (genesis for an empty journal)."""
        with self._lock:
            return self._chain_tip(self._db())

    def archive_anchors(self) -> list[ArchiveAnchor]:
        """The archives recorded in this journal (`smartgate journal archive`), oldest first."""
        with self._lock:
            return read_archive_anchors(self._db())

    def count(self) -> int:
        """Number of rows in the journal."""
        with self._lock:
            return int(self._db().execute("SELECT count(*) FROM journal").fetchone()[0])

    # ------------------------------------------------------------------ verifying

    def verify(self) -> VerifyReport:
        """Re-check every row's hash, the chain links, seq continuity and the head anchor.

        Reads through a separate connection in one read transaction (a consistent WAL snapshot), so
        a long verify does not hold the journal lock and stall appends on the decision path.
        """
        self._db()  # raise if closed
        conn = _connect(self._path)
        try:
            conn.execute("BEGIN")
            anchor = conn.execute("SELECT seq, hash FROM journal_head WHERE id = 1").fetchone()
            archives = read_archive_anchors(conn)
            problems = _check_archive_anchors(archives)
            start = (archives[-1].last_seq, archives[-1].last_hash) if archives else (0, GENESIS_HASH)
            cursor = conn.execute(f"SELECT {_COLUMNS} FROM journal ORDER BY seq")
            report = _verify_rows(cursor, anchor, start)
            report.problems[:0] = problems
            report.ok = not report.problems
            report.archived_to, report.archives = start[0], len(archives)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return report


# ---------------------------------------------------------------------- helpers


def _split_script(script: str) -> Iterator[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN ... END)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement:
                yield statement
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def _prepare(kind: str, payload: dict[str, Any], lane: str | None,
             at: float | None) -> tuple[str, dict[str, Any], str, str | None, float]:
    """Validate one item and normalise it to exactly what will be stored and hashed.

    The payload goes through canonical JSON and back, so the entry handed to the caller equals the
    one read back later (tuples become lists, non-str keys become str) and re-hashing matches.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"journal kind must be a non-empty str, got {kind!r}")
    if lane is not None and not isinstance(lane, str):
        raise TypeError(f"journal lane must be a str or None, got {type(lane).__name__}")
    if not isinstance(payload, dict):
        raise TypeError(f"journal payload must be a dict, got {type(payload).__name__}")
    stamp = time.time() if at is None else float(at)  # REAL column: hash the float that is stored
    if not math.isfinite(stamp):
        raise ValueError(f"journal time must be finite, got {at!r}")
    try:
        normalised = json.loads(json.dumps(payload, ensure_ascii=False, allow_nan=False))
        text = canonical_json(normalised)
        text.encode("utf-8")  # lone surrogates cannot be stored; fail before the transaction
    except (TypeError, ValueError) as exc:
        raise ValueError(f"journal payload for {kind!r} is not JSON-serialisable: {exc}") from exc
    return kind, normalised, text, lane, stamp


def check_item(item: AppendItem) -> None:
    """Raise ValueError or TypeError for a `(kind, payload, lane, at)` row that `append` would refuse."""
    _prepare(*item)


def _filters(lane: str | None, kinds: Iterable[str] | None) -> tuple[list[str] | None, list[Any]]:
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if lane is not None:
        where.append("lane = ?")
        params.append(lane)
    if kinds is not None:
        kind_list = [kinds] if isinstance(kinds, str) else list(kinds)
        if not kind_list:
            return None, []
        where.append(f"kind IN ({', '.join('?' * len(kind_list))})")
        params.extend(kind_list)
    return where, params


def _row_matches(seq: int, event_id: str, at: float, lane: str | None, kind: str, payload_text: str,
                 stored_prev: str, stored_hash: str) -> bool:
    """True when a stored row's hash matches its contents."""
    try:
        return entry_hash(stored_prev, seq, event_id, at, lane, kind, json.loads(payload_text)) == stored_hash
    except (TypeError, ValueError):
        return False


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"seq {first} missing (row deleted)"
    return f"seq {first}..{last} missing ({last - first + 1} rows deleted)"


@dataclass(frozen=True)
class ArchiveAnchor:
    """One archive recorded in the journal: rows first_seq..last_seq moved to `file` (its SHA-256 `sha256`).

    `prev_hash` is the hash the archive's first row chains from; `last_hash` the hash of its last row,
    which the first row left in the live journal chains from.
    """

    id: int
    first_seq: int
    last_seq: int
    prev_hash: str
    last_hash: str
    rows: int
    file: str
    sha256: str
    archived_at: float


def read_archive_anchors(conn: sqlite3.Connection) -> list[ArchiveAnchor]:
    """The archive anchors recorded in the journal file of `conn`, oldest first (none for a version-1 file)."""
    try:
        rows = conn.execute("SELECT id, first_seq, last_seq, prev_hash, last_hash, rows, file, sha256, archived_at "
                            "FROM journal_archive ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # opened read-only before the schema was upgraded
        return []
    return [ArchiveAnchor(*row) for row in rows]


def _check_archive_anchors(archives: Sequence[ArchiveAnchor]) -> list[str]:
    """The archives must follow one another: each starts after the one before, chained from its last hash."""
    problems: list[str] = []
    seq, hash_ = 0, GENESIS_HASH
    for archive in archives:
        if archive.first_seq != seq + 1 or archive.prev_hash != hash_:
            problems.append(f"archive anchor {archive.id} ({archive.file}, seq {archive.first_seq}.."
                            f"{archive.last_seq}) does not continue the one before (which ends at seq {seq})")
        if archive.rows != archive.last_seq - archive.first_seq + 1:
            problems.append(f"archive anchor {archive.id} ({archive.file}) says {archive.rows} rows for seq "
                            f"{archive.first_seq}..{archive.last_seq}")
        seq, hash_ = archive.last_seq, archive.last_hash
    return problems


def _verify_rows(rows: Iterable[Sequence[Any]], anchor: Sequence[Any] | None,
                 start: tuple[int, str] = (0, GENESIS_HASH)) -> VerifyReport:
    """Check rows (seq order) as a chain continuing from `start` (the newest archive anchor, else genesis).

    Rows at or below `start` are archived rows whose deletion was interrupted: each must still match
    its hash, and the one at `start` must be the row the anchor names.
    """
    problems: list[str] = []
    checked = 0
    start_seq, start_hash = start
    expected_seq = start_seq + 1
    prev_hash = start_hash
    last: tuple[int, str] | None = None
    archived_prev: tuple[int, str] | None = None
    for seq, event_id, at, lane, kind, payload_text, stored_prev, stored_hash in rows:
        checked += 1
        if seq <= start_seq:
            if not _row_matches(seq, event_id, at, lane, kind, payload_text, stored_prev, stored_hash):
                problems.append(f"seq {seq} (archived, not yet deleted): hash does not match its contents (row edited)")
            if archived_prev is not None and (seq != archived_prev[0] + 1 or stored_prev != archived_prev[1]):
                problems.append(f"chain broken at seq {seq} (archived, not yet deleted)")
            if seq == start_seq and stored_hash != start_hash:
                problems.append(f"seq {seq}: not the row the archive anchor names (another hash)")
            archived_prev = (seq, stored_hash)
            continue
        gap = seq > expected_seq
        if gap:
            problems.append(_missing(expected_seq, seq - 1))
        try:
            payload = json.loads(payload_text)
            computed = entry_hash(stored_prev, seq, event_id, at, lane, kind, payload)
        except (TypeError, ValueError):
            computed = None
        if computed is None:
            problems.append(f"seq {seq}: payload is not valid JSON (row edited)")
        elif computed != stored_hash:
            problems.append(f"seq {seq}: hash does not match its contents (row edited)")
        # After a gap the broken link is explained by the deleted rows; don't report it twice.
        if stored_prev != prev_hash and not gap:
            problems.append(f"chain broken at seq {seq}: prev_hash does not match the hash of seq {seq - 1}")
        expected_seq = seq + 1
        prev_hash = stored_hash
        last = (seq, stored_hash)

    if anchor is None:
        if last is not None:
            problems.append(f"head anchor missing (journal_head row deleted; rows go up to seq {last[0]})")
    else:
        anchor_seq, anchor_hash = int(anchor[0]), str(anchor[1])
        last_seq = start_seq if last is None else last[0]
        last_hash = start_hash if last is None else last[1]
        if anchor_seq > last_seq:
            problems.append(f"head anchor says seq {anchor_seq} but the last row is seq {last_seq} "
                            f"(last rows deleted: {_missing(last_seq + 1, anchor_seq)})")
        elif anchor_seq < last_seq:
            problems.append(f"head anchor says seq {anchor_seq} but rows go up to seq {last_seq} "
                            "(rows added outside the journal)")
        elif anchor_hash != last_hash:
            problems.append(f"head anchor hash does not match seq {last_seq} (last row replaced)")
    return VerifyReport(ok=not problems, checked=checked, problems=problems)


# ---------------------------------------------------------------------- the head, signed and anchored at central


def load_or_create_head_key(data_dir: str | Path, *, create: bool = True):
    """The node's Ed25519 journal-head key at `<data_dir>/journal-head.key`, made (mode 0600) when absent.

    Refuses a key file that others may read (someone could sign heads for this node).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(data_dir) / HEAD_KEY_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path}: no journal-head key; make one with `smartgate central node-key`")
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        finally:
            os.close(fd)
        log.info("made a new journal-head key %s", path)
        return key
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path}: the journal-head key is readable by others; chmod 600 it (or make a new one "
                              "and enrol it again)")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 key")
    return key


def head_public_b64(key) -> str:
    """The public half of a journal-head key as base64 of its 32 raw bytes (what central registers)."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def signed_head(journal: Journal, key, gate: str) -> dict[str, Any]:
    """`{"head": {gate, seq, hash}, "head_signature": base64}`: the journal's newest row, signed by the node.

    The head is read from the `journal_head` anchor (genesis for an empty journal); the signature is
    Ed25519 over the head's canonical JSON, the same bytes central verifies.
    """
    seq, hash_ = journal.head_anchor()
    head = {"gate": gate, "seq": seq, "hash": hash_}
    signature = base64.b64encode(key.sign(canonical_json(head).encode("utf-8"))).decode("ascii")
    return {"head": head, "head_signature": signature}


def verify_against_anchor(journal: Journal, anchor: dict[str, Any]) -> VerifyReport:
    """Check the local journal against what central holds of it (`GET /api/v1/gates/{gate}/anchor`).

    Every point central holds — the newest head the node signed and the last event it stored — must
    be in the local journal with the same hash: a point past the local end means the journal was
    truncated; another hash means it was rewritten (and re-chained). The local chain is checked too.
    """
    report = journal.verify()
    problems = list(report.problems)
    local_head = journal.head()
    archives = journal.archive_anchors()
    archived = archives[-1] if archives else None
    local_last = max(0 if local_head is None else local_head.seq, 0 if archived is None else archived.last_seq)
    points = [("the head this node signed", anchor.get("head")), ("the last event central stored",
                                                                   anchor.get("last_event"))]
    for what, point in points:
        if not isinstance(point, dict):
            continue
        seq, hash_ = int(point["seq"]), str(point["hash"])
        if seq == 0:
            continue
        if seq > local_last:
            problems.append(f"journal truncated: central holds {what} at seq {seq}, the local journal ends at "
                            f"seq {local_last}")
            continue
        if archived is not None and seq <= archived.last_seq:
            # Moved to an archive file (`verify --archive` checks those); the anchor row names the last one.
            if seq == archived.last_seq and hash_ != archived.last_hash:
                problems.append(f"journal rewritten: seq {seq} has another hash in the archive anchor than "
                                f"{what} at central")
            continue
        rows = journal.entries(after_seq=seq - 1, limit=1)
        if not rows or rows[0].seq != seq:
            problems.append(f"journal truncated: seq {seq} ({what} at central) is missing locally")
        elif rows[0].hash != hash_:
            problems.append(f"journal rewritten: seq {seq} has another hash than {what} at central")
    return VerifyReport(ok=not problems, checked=report.checked, problems=problems)
