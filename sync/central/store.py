"""Central's storage: PostgreSQL (psycopg 3) for real use, SQLite as the embedded default for the demo.

One small SQL dialect serves both (`?` placeholders are rewritten to `%s` for psycopg; upserts use
ON CONFLICT, which both speak). SQLite calls are serialised by a lock; PostgreSQL calls run at once, each
thread on a connection of its own, and several central workers (sync/central/workers.py) share the
database: what must not interleave (two uploads of one gate, a gate's birth and death, telemetry
read-modify-write) takes a per-gate advisory lock for its transaction; declaration changes take their
change id from one counter row, whose lock makes them commit in change-id order (a feed cursor never
skips a change committed later under a lower id).

* PostgreSQL: a pool (psycopg_pool, `pool_size` connections) that checks each connection before handing it
  out and reconnects in the background, so a restarted database is used again as soon as it is back. While
  it is unreachable every call raises `DatabaseUnavailable` within `db_timeout_s` (central answers
  503 with Retry-After; nothing half-stored: a batch is one transaction, and the node re-sends).

* events: PRIMARY KEY event_id, INSERT ... ON CONFLICT DO NOTHING: a re-sent event has no second
  effect (the edge's idempotency key). `rid` numbers rows in arrival order; the edge sends in seq
  order one batch at a time and a batch is one transaction, so arrival order is seq order per lane.
* declarations: the current version of each declaration with `change_id`, a global counter bumped
  on every publish, amendment or revocation. A gate's feed is "rows of my gate with change_id >
  cursor, in change_id order", so a cursor is just the last change_id seen.
* event uploads are checked before anything is stored (`UploadRefused`, the whole batch refused):
  each row's hash must match its contents (edge/journal.py's chain), seqs continue the gate's
  chain without a gap and `prev_hash` is the hash of the row central holds before it; a row that
  repeats one central holds must be identical (at-least-once delivery re-sends are fine). Every
  upload carries the node's journal head signed with the node's own Ed25519 key (registered at
  enrolment); a head behind one the node signed before (journal truncated) or with another hash
  at a seq central knows (journal rewritten) is refused. Refusals are stored as alarms.
* credentials: gate tokens (one per gate, with the gate's journal-head key) and role tokens
  (publisher, monitor, admin), all stored as SHA-256 digests only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edge.journal import GENESIS_HASH, entry_hash
from sync.keys import parse_public_key, verify
from sync.tokens import digest_matches, token_digest, token_problem

ROLES = ("publisher", "monitor", "operator", "admin")  # operator: monitor + acknowledge/clear alarms
INT64_MAX = 2**63 - 1
T = TypeVar("T")

_TABLES = {
    "events": "CREATE TABLE IF NOT EXISTS events (rid {serial}, event_id TEXT NOT NULL UNIQUE, gate TEXT NOT NULL, "
              "lane TEXT, seq BIGINT NOT NULL, kind TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, "
              "payload TEXT NOT NULL, hash TEXT, received_at DOUBLE PRECISION NOT NULL)",
    "events_idx": "CREATE INDEX IF NOT EXISTS events_gate_lane ON events (gate, lane, seq)",
    "gates": "CREATE TABLE IF NOT EXISTS gates (gate TEXT PRIMARY KEY, last_contact DOUBLE PRECISION, "
             "backlog BIGINT, last_seq BIGINT, online INTEGER, status_at DOUBLE PRECISION, telemetry TEXT, "
             "link TEXT)",
    "declarations": "CREATE TABLE IF NOT EXISTS declarations (number TEXT PRIMARY KEY, gate TEXT NOT NULL, "
                    "version BIGINT NOT NULL, body TEXT NOT NULL, revoked INTEGER NOT NULL, "
                    "change_id BIGINT NOT NULL)",
    "decl_idx": "CREATE INDEX IF NOT EXISTS declarations_feed ON declarations (gate, change_id)",
    "counters": "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "status_log": "CREATE TABLE IF NOT EXISTS gate_status_log (rid {serial}, gate TEXT NOT NULL, online INTEGER "
                  "NOT NULL, bd_seq BIGINT, at DOUBLE PRECISION NOT NULL)",
    "status_log_idx": "CREATE INDEX IF NOT EXISTS gate_status_log_gate ON gate_status_log (gate, rid)",
    "gate_tokens": "CREATE TABLE IF NOT EXISTS gate_tokens (gate TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, "
                   "issued_at DOUBLE PRECISION NOT NULL)",
    "api_tokens": "CREATE TABLE IF NOT EXISTS api_tokens (name TEXT PRIMARY KEY, role TEXT NOT NULL, "
                  "token_sha256 TEXT NOT NULL UNIQUE, issued_at DOUBLE PRECISION NOT NULL)",
    "alarms": "CREATE TABLE IF NOT EXISTS alarms (rid {serial}, gate TEXT, code TEXT NOT NULL, message TEXT NOT NULL, "
              "at DOUBLE PRECISION NOT NULL)",
    "gate_heads": "CREATE TABLE IF NOT EXISTS gate_heads (gate TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL, "
                  "signature TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, PRIMARY KEY (gate, seq))",
}


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached now (restart, outage): try again later; nothing of the call was stored."""


class VersionConflict(ValueError):
    """A declaration version not newer than the stored one."""


class UploadRefused(ValueError):
    """An event upload central must not store: `code` is machine-readable, `status` the HTTP answer."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message)
        self.code, self.status = code, status


def _event_row(gate: str, event: Any, index: int) -> tuple:
    """One uploaded event as a row to store, its types checked (UploadRefused 422 names what is wrong)."""

    def bad(what: str) -> UploadRefused:
        return UploadRefused("BAD_EVENT", f"event #{index}: {what}", 422)

    if not isinstance(event, dict):
        raise bad("not an object")
    seq, at, payload = event.get("seq"), event.get("at"), event.get("payload")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= INT64_MAX:
        raise bad("seq must be a whole number from 1")
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise bad("at must be a number")
    for key in ("event_id", "kind", "hash", "prev_hash"):
        if not isinstance(event.get(key), str) or not event[key] or len(event[key]) > 200:
            raise bad(f"{key} must be a non-empty text")
    if event.get("lane") is not None and not isinstance(event["lane"], str):
        raise bad("lane must be text or null")
    if isinstance(payload, str):
        text = payload
        try:
            parsed = json.loads(text)
        except ValueError:
            raise bad("payload is not JSON") from None
    elif isinstance(payload, dict):
        parsed, text = payload, json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        raise bad("payload must be a JSON object")
    if not isinstance(parsed, dict):
        raise bad("payload must be a JSON object")
    try:
        computed = entry_hash(event["prev_hash"], seq, event["event_id"], float(at), event.get("lane"),
                              event["kind"], parsed)
    except (TypeError, ValueError):
        raise bad("payload cannot be hashed") from None
    if computed != event["hash"]:
        raise UploadRefused("EVENT_FORGED", f"event seq {seq}: its hash does not match its contents "
                                            "(forged or altered row)", 422)
    return (event["event_id"], gate, event.get("lane"), seq, event["kind"], float(at), text, event["hash"],
            event["prev_hash"])


class _Session:
    """`with store._lock:` — a connection of the store's for the block: on PostgreSQL a checked one from the pool,
    held by this thread alone (calls of several threads run at once, up to the pool's size); on SQLite the one
    connection, under a lock.

    Connection-level failures (database down, connection cut, no connection within `db_timeout_s`)
    leave as DatabaseUnavailable; a broken connection goes back to the pool, which drops it.
    """

    def __init__(self, store: CentralStore, slots: int = 1):
        self._store, self._mutex, self._local = store, threading.Lock(), threading.local()
        # One slot per pooled connection: a busy pool makes a call queue here, as long as it takes; only waiting for
        # a connection the pool cannot make (the database is away) counts against db_timeout_s.
        self._slots = threading.BoundedSemaphore(slots)

    @property
    def conn(self):
        """The connection this thread holds (PostgreSQL) or the one SQLite connection."""
        return getattr(self._local, "conn", None) if self._store._pool is not None else self._store._sqlite

    def __enter__(self) -> None:
        store = self._store
        if store._pool is None:
            self._mutex.acquire()
            return
        start = time.monotonic()
        while not self._slots.acquire(timeout=0.05):
            # While the database is known to be away, waiting for a slot counts in the same budget: calls queued
            # behind ones that wait for a connection answer 503 in time, not one after another.
            if store.db_down and time.monotonic() - start > store.db_timeout_s:
                raise DatabaseUnavailable("database unavailable: still waiting for a connection")
        budget = store.db_timeout_s - (time.monotonic() - start if store.db_down else 0.0)
        try:
            self._local.conn = store._pool.getconn(timeout=max(0.05, budget))
        except store._db_errors as exc:
            store.db_down = True
            self._slots.release()
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc

    def __exit__(self, kind, exc, tb) -> bool:
        store = self._store
        if store._pool is None:
            self._mutex.release()
            return False
        held, self._local.conn = self._local.conn, None
        try:
            with contextlib.suppress(*store._db_errors):
                store._pool.putconn(held)  # a broken connection is discarded, an open transaction rolled back
        finally:
            self._slots.release()
        store.db_down = isinstance(exc, store._db_errors)  # a connection error, a cut or a transient failure
        if store.db_down:
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc
        return False


class CentralStore:
    def __init__(self, url: str, *, db_timeout_s: float = 1.0, pool_size: int = 8):
        """`pool_size`: PostgreSQL connections this store (one central worker) may hold at once."""
        self.url = url
        self.db_timeout_s = db_timeout_s  # longest a call waits for a database connection before 503
        self.db_down = False  # the last call could not reach the database
        self._pool = None
        self._sqlite: sqlite3.Connection | None = None
        self._db_errors: tuple[type[BaseException], ...] = ()
        self._lock = _Session(self, max(1, pool_size - 1))  # one connection spare: ping() never queues behind calls
        # Uploads (the bulk) may hold half the connections at most: a feed pull, a revocation or a token check
        # finds one free even while every gate catches up at once.
        self._upload_slots = threading.BoundedSemaphore(max(1, pool_size // 2))
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg
            from psycopg_pool import ConnectionPool

            self.kind = "postgresql"
            self._db_errors = (psycopg.OperationalError, psycopg.InterfaceError)
            # reconnect_timeout: the pool's retries back off (1 s, 2 s, ...) until it gives up; short, so that
            # during a long outage each request starts a fresh attempt and a returning database is used at once.
            self._pool = ConnectionPool(url, min_size=1, max_size=pool_size,
                                        kwargs={"autocommit": True, "connect_timeout": 2},
                                        check=ConnectionPool.check_connection, reconnect_timeout=3.0,
                                        name="central", open=True)
            serial = "BIGSERIAL PRIMARY KEY"
        elif url.startswith("sqlite:///") or url == "sqlite://":
            self.kind = "sqlite"
            path = url.removeprefix("sqlite:///") or ":memory:"
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._sqlite = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._sqlite.execute("PRAGMA journal_mode = WAL")
            self._sqlite.execute("PRAGMA synchronous = NORMAL")
            serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        else:
            raise ValueError(f"unknown database URL {url!r}: use sqlite:///PATH or postgresql://...")
        def schema() -> None:
            self._lock_gate("schema", "central")  # workers starting at once: IF NOT EXISTS alone races
            for sql in _TABLES.values():
                self._exec(sql.format(serial=serial))
            self._add_column("gates", "bd_seq", "BIGINT")  # databases made before birth/death
            self._add_column("events", "prev_hash", "TEXT")  # databases made before chain checks
            self._add_column("gate_tokens", "head_key", "TEXT")  # the gate's journal-head key (base64)
            self._add_column("gates", "backlog_at", "DOUBLE PRECISION")  # databases made before it was kept
            self._exec("CREATE INDEX IF NOT EXISTS events_gate_seq ON events (gate, seq)")
            self._exec("CREATE INDEX IF NOT EXISTS gate_tokens_digest ON gate_tokens (token_sha256)")
            self._exec("INSERT INTO counters (name, value) VALUES ('change_id', 0) ON CONFLICT (name) DO NOTHING")

        self._tx(schema)

    def ensure_schema(self, *statements: str) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements (central's own modules' tables and indexes) in one transaction
        under a database-wide lock: on PostgreSQL, IF NOT EXISTS is not atomic, and workers starting together on
        one database would otherwise fail on each other's half-made table."""
        def work() -> None:
            self._lock_gate("schema", "central")
            for sql in statements:
                self._exec(sql)

        self._tx(work)

    # ------------------------------------------------------------ plumbing

    @property
    def _conn(self):
        return self._lock.conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    def _exec(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        cur = self._conn.execute(self._sql(sql), params)
        try:
            return cur.fetchall() if cur.description else []
        finally:
            # Reset the statement now: an SQLite statement left open (UPDATE ... RETURNING) pins this
            # connection's read snapshot, and changes made by another process (the CLI) go unseen.
            cur.close()

    def _exec_count(self, sql: str, params: tuple | list = ()) -> int:
        """Run a write statement; return how many rows it changed."""
        return int(self._conn.execute(self._sql(sql), params).rowcount)

    def _add_column(self, table: str, column: str, kind: str) -> None:
        if self.kind == "postgresql":
            self._exec(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        elif column not in {row[1] for row in self._exec(f"PRAGMA table_info({table})")}:
            self._exec(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")

    def _lock_gate(self, what: str, gate: str) -> None:
        """Inside a transaction: hold `what` of `gate` until it ends, across every worker on this database.

        Several central workers share one PostgreSQL; two uploads of one gate (a retry that overtakes
        its first attempt, or a batch sent again) or its birth and death must not interleave their
        read-check-write. PostgreSQL: a transaction-scoped advisory lock on a hash of the pair;
        SQLite: BEGIN IMMEDIATE already holds the whole database.
        """
        if self.kind == "postgresql":
            self._exec("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"{what}:{gate}",))

    def _tx(self, fn):
        with self._lock:
            self._begin()
            try:
                result = fn()
                self._conn.execute("COMMIT")
                return result
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            return
        with self._lock:
            self._sqlite.close()

    def ping(self) -> None:
        """Raise DatabaseUnavailable when the database cannot answer now.

        Outside the store's lock, on a spare pooled connection: a health check (or a node's link probe)
        must not queue behind a long upload.
        """
        if self._pool is None:
            return  # SQLite: a file of this process
        try:
            conn = self._pool.getconn(timeout=self.db_timeout_s)
        except self._db_errors as exc:
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc
        try:
            conn.execute("SELECT 1")
        except self._db_errors as exc:
            raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc
        finally:
            with contextlib.suppress(*self._db_errors):
                self._pool.putconn(conn)

    # ------------------------------------------------------------ for central's other modules (web, metrics)

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Run one statement of the shared dialect (`?` placeholders) under the store's lock; its rows ([] for a
        write). For central's own modules that keep tables of their own (sync/central/web)."""
        with self._lock:
            return self._exec(sql, params)

    def transaction(self, lock: str, work: Callable[[Callable[..., list[tuple]]], T]) -> T:
        """Run `work(execute)` as one transaction holding the database-wide lock named `lock` until it ends (every
        worker's transactions under the same name run one at a time); `execute(sql, params)` is `query` inside it.
        For central's own modules' read-check-write (sync/central/web/login_throttle.py)."""
        def run() -> T:
            self._lock_gate("module", lock)
            return work(self._exec)

        return self._tx(run)

    # ------------------------------------------------------------ events

    def store_events(self, gate: str, events: list[Any], backlog: int | None = None,
                     head: Any = None, head_signature: Any = None) -> list[str]:
        """Check and store a batch in one transaction; return every event id of it (acknowledged).

        Raises UploadRefused (nothing stored) for a forged row, a gap, a broken chain, a re-sent row
        that differs from the one held, or a journal head that is unsigned, badly signed, behind one
        the node signed before or with another hash than central holds for that seq. Repeats of
        rows central holds unchanged are accepted (at-least-once delivery).
        """
        now = time.time()
        if not isinstance(events, list):
            raise UploadRefused("BAD_BATCH", "events must be a list", 422)
        rows = [_event_row(gate, event, i) for i, event in enumerate(events)]
        if backlog is not None and (not isinstance(backlog, int) or isinstance(backlog, bool)
                                    or not 0 <= backlog <= INT64_MAX):
            raise UploadRefused("BAD_BATCH", "backlog must be a whole number from 0", 422)
        claimed = self._checked_head(gate, head, head_signature, rows)

        def work() -> list[str]:
            self._lock_gate("events", gate)
            self._check_head_history(gate, claimed)
            tip = self._exec("SELECT seq, hash FROM events WHERE gate = ? ORDER BY seq DESC LIMIT 1", (gate,))
            tip_seq, tip_hash = (int(tip[0][0]), tip[0][1]) if tip else (None, None)
            lo, hi = min((r[3] for r in rows), default=0), max((r[3] for r in rows), default=0)
            held = {int(seq): (event_id, hash_, prev) for seq, event_id, hash_, prev in self._exec(
                "SELECT seq, event_id, hash, prev_hash FROM events WHERE gate = ? AND seq >= ? AND seq <= ?",
                (gate, lo, hi))}
            signed_at = {int(seq): hash_ for seq, hash_ in self._exec(
                "SELECT seq, hash FROM gate_heads WHERE gate = ? AND seq >= ? AND seq <= ?", (gate, lo, hi))}
            new_ids = [r[0] for r in rows if r[3] not in held]
            taken: set[str] = set()
            for start in range(0, len(new_ids), 500):
                chunk = new_ids[start:start + 500]
                taken.update(r[0] for r in self._exec(
                    f"SELECT event_id FROM events WHERE event_id IN ({','.join('?' * len(chunk))})", chunk))
            fresh = []
            for row in rows:
                event_id, _, _, seq, _, _, _, hash_, prev_hash = row
                if seq in held:
                    had_id, had_hash, had_prev = held[seq]
                    if (had_id, had_hash) != (event_id, hash_) or had_prev not in (None, prev_hash):
                        raise UploadRefused("EVENT_CONFLICT", f"seq {seq} differs from the row central already "
                                                              "holds for it (journal rewritten or forged row)")
                    continue
                if event_id in taken:
                    raise UploadRefused("EVENT_CONFLICT", f"seq {seq}: its event id is held at another seq or gate")
                if tip_seq is None and (seq != 1 or prev_hash != GENESIS_HASH):
                    raise UploadRefused("SEQ_GAP", f"central holds nothing of gate {gate} yet: its chain must start "
                                                   f"at seq 1 from the genesis hash, not at seq {seq}")
                if tip_seq is not None and seq != tip_seq + 1:
                    if seq < tip_seq:
                        raise UploadRefused("EVENT_CONFLICT", f"seq {seq} is new to central but below its last "
                                                              f"seq {tip_seq}")
                    raise UploadRefused("SEQ_GAP", f"seq {seq} does not follow seq {tip_seq} (seq "
                                                   f"{tip_seq + 1}..{seq - 1} missing)")
                if tip_seq is not None and prev_hash != (tip_hash or GENESIS_HASH):
                    raise UploadRefused("CHAIN_BROKEN", f"seq {seq}: prev_hash is not the hash of seq {tip_seq} "
                                                        "central holds (forged or re-chained journal)")
                if seq in signed_at and signed_at[seq] != hash_:
                    raise UploadRefused("JOURNAL_REWRITTEN", f"seq {seq} differs from the head the node signed for "
                                                             "it earlier (journal rewritten)")
                fresh.append(row)
                tip_seq, tip_hash = seq, hash_
            if claimed[0] <= (tip_seq or 0):
                at_head = self._exec("SELECT hash FROM events WHERE gate = ? AND seq = ?", (gate, claimed[0]))
                if at_head and at_head[0][0] != claimed[1]:
                    raise UploadRefused("JOURNAL_REWRITTEN", f"the signed head seq {claimed[0]} has another hash "
                                                             "than the row central holds (journal rewritten)")
            columns = "event_id, gate, lane, seq, kind, at, payload, hash, prev_hash, received_at"
            if fresh and self.kind == "postgresql":
                # COPY: one stream for the batch instead of a statement per row (the insert was a third of an upload)
                with self._conn.cursor().copy(f"COPY events ({columns}) FROM STDIN") as copy:
                    for row in fresh:
                        copy.write_row((*row, now))
            elif fresh:
                self._conn.cursor().executemany(f"INSERT INTO events ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                                [(*r, now) for r in fresh])
            self._exec("INSERT INTO gate_heads (gate, seq, hash, signature, at) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (gate, seq) DO NOTHING", (gate, claimed[0], claimed[1], claimed[2], now))
            self._touch(gate, now, backlog=backlog, last_seq=tip_seq)
            return [r[0] for r in rows]

        with self._upload_slots:
            return self._tx(work)

    def _checked_head(self, gate: str, head: Any, signature: Any, rows: list[tuple]) -> tuple[int, str, str]:
        """(seq, hash, signature) of the upload's signed journal head; UploadRefused when it cannot be believed."""
        key_text = self.head_key(gate)
        if key_text is None:
            raise UploadRefused("HEAD_KEY_NOT_ENROLLED", f"gate {gate} has no journal-head key at central; enrol "
                                                         "it with `smartgate central enrol-gate`", 403)
        if not isinstance(head, dict) or not isinstance(signature, str):
            raise UploadRefused("HEAD_MISSING", "the upload carries no signed journal head", 422)
        seq, hash_ = head.get("seq"), head.get("hash")
        if (head.get("gate") != gate or not isinstance(seq, int) or isinstance(seq, bool)
                or not 0 <= seq <= INT64_MAX or not isinstance(hash_, str) or set(head) != {"gate", "seq", "hash"}):
            raise UploadRefused("HEAD_MALFORMED", "the journal head must be {gate, seq, hash} for this gate", 422)
        if not verify(parse_public_key(key_text), head, signature):
            raise UploadRefused("HEAD_BAD_SIGNATURE", "the journal head's signature does not verify with the gate's "
                                                      "enrolled key (forged head)", 422)
        last = max((r[3] for r in rows), default=0)
        if seq < last:
            raise UploadRefused("HEAD_BEHIND_BATCH", f"the signed head seq {seq} is behind the batch's last seq "
                                                     f"{last}", 422)
        for row in rows:
            if row[3] == seq and row[7] != hash_:
                raise UploadRefused("JOURNAL_REWRITTEN", f"the signed head's hash differs from row seq {seq} "
                                                         "in the same upload", 422)
        return seq, hash_, signature

    def _check_head_history(self, gate: str, claimed: tuple[int, str, str]) -> None:
        """Inside the upload's transaction: the head must not go back or change at a signed seq."""
        seq, hash_, _ = claimed
        top = self._exec("SELECT seq FROM gate_heads WHERE gate = ? ORDER BY seq DESC LIMIT 1", (gate,))
        if top and int(top[0][0]) > seq:
            raise UploadRefused("JOURNAL_TRUNCATED", f"the node's journal head is seq {seq}, behind seq {top[0][0]} "
                                                     "it signed earlier (journal truncated)")
        same = self._exec("SELECT hash FROM gate_heads WHERE gate = ? AND seq = ?", (gate, seq))
        if same and same[0][0] != hash_:
            raise UploadRefused("JOURNAL_REWRITTEN", f"the node signed seq {seq} earlier with another hash "
                                                     "(journal rewritten)")

    def anchor(self, gate: str) -> dict[str, Any]:
        """What central holds of a gate's journal: its newest signed head and its last stored event."""
        with self._lock:
            head = self._exec("SELECT seq, hash, signature, at FROM gate_heads WHERE gate = ? ORDER BY seq DESC "
                              "LIMIT 1", (gate,))
            last = self._exec("SELECT seq, hash FROM events WHERE gate = ? ORDER BY seq DESC LIMIT 1", (gate,))
        return {"gate": gate,
                "head": {"seq": int(head[0][0]), "hash": head[0][1], "signature": head[0][2], "at": head[0][3]}
                if head else None,
                "last_event": {"seq": int(last[0][0]), "hash": last[0][1]} if last else None}

    # ------------------------------------------------------------ alarms

    def raise_alarm(self, gate: str | None, code: str, message: str) -> None:
        """Store an alarm for monitors (its own transaction: it outlives the refused request's)."""
        with self._lock:
            self._exec("INSERT INTO alarms (gate, code, message, at) VALUES (?, ?, ?, ?)",
                       (gate, code, message, time.time()))

    def alarms(self, gate: str | None = None, after_rid: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Stored alarms, oldest first."""
        where, params = "rid > ?", [after_rid]
        if gate is not None:
            where += " AND gate = ?"
            params.append(gate)
        with self._lock:
            rows = self._exec(f"SELECT rid, gate, code, message, at FROM alarms WHERE {where} ORDER BY rid LIMIT ?",
                              [*params, limit])
        return [{"rid": r[0], "gate": r[1], "code": r[2], "message": r[3], "at": r[4]} for r in rows]

    def touch(self, gate: str) -> None:
        """Record contact from a gate (a feed pull)."""
        with self._lock:
            self._touch(gate, time.time())

    def _touch(self, gate: str, now: float, *, backlog: int | None = None, last_seq: int | None = None) -> None:
        # backlog_at: when an upload last reported the backlog (a feed pull is contact, not a newer backlog)
        backlog_at = None if backlog is None else now
        self._exec("INSERT INTO gates (gate, last_contact, backlog, backlog_at, last_seq) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (gate) DO UPDATE SET last_contact = excluded.last_contact, "
                   "backlog = coalesce(excluded.backlog, gates.backlog), "
                   "backlog_at = coalesce(excluded.backlog_at, gates.backlog_at), "
                   "last_seq = coalesce(excluded.last_seq, gates.last_seq)", (gate, now, backlog, backlog_at, last_seq))

    def events(self, gate: str, lane: str | None = None, after_rid: int = 0, limit: int = 1_000_000) -> list[dict]:
        """Stored events of a gate in arrival order."""
        where, params = "gate = ? AND rid > ?", [gate, after_rid]
        if lane is not None:
            where += " AND lane = ?"
            params.append(lane)
        with self._lock:
            rows = self._exec(f"SELECT rid, event_id, lane, seq, kind, at, payload, hash FROM events WHERE {where} "
                              "ORDER BY rid LIMIT ?", [*params, limit])
        return [{"rid": r[0], "event_id": r[1], "lane": r[2], "seq": r[3], "kind": r[4], "at": r[5],
                 "payload": json.loads(r[6]), "hash": r[7]} for r in rows]

    def event_count(self, gate: str | None = None) -> int:
        with self._lock:
            if gate is None:
                return int(self._exec("SELECT count(*) FROM events")[0][0])
            return int(self._exec("SELECT count(*) FROM events WHERE gate = ?", (gate,))[0][0])

    # ------------------------------------------------------------ gate credentials

    def set_gate_token(self, gate: str, token: str) -> None:
        """Make `token` the gate's credential (replacing any earlier one); only its digest is stored."""
        problem = token_problem(token)
        if problem is not None:
            raise ValueError(problem)
        with self._lock:
            self._exec("INSERT INTO gate_tokens (gate, token_sha256, issued_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (gate) DO UPDATE SET token_sha256 = excluded.token_sha256, "
                       "issued_at = excluded.issued_at", (gate, token_digest(token), time.time()))

    def gate_token_ok(self, gate: str, token: str) -> bool:
        """True when `token` is the gate's current credential (a gate without one accepts nothing)."""
        with self._lock:
            rows = self._exec("SELECT token_sha256 FROM gate_tokens WHERE gate = ?", (gate,))
        return bool(rows) and digest_matches(rows[0][0], token)

    def enrol_gate(self, gate: str, token: str, head_key: str | None) -> None:
        """Make `token` the gate's credential and `head_key` (base64 Ed25519) the key its journal heads verify with."""
        if head_key is not None:
            parse_public_key(head_key)  # KeyError_ for a key that is not one
        self.set_gate_token(gate, token)
        if head_key is not None:
            with self._lock:
                self._exec("UPDATE gate_tokens SET head_key = ? WHERE gate = ?", (head_key, gate))

    def head_key(self, gate: str) -> str | None:
        """The gate's enrolled journal-head key (base64), or None."""
        with self._lock:
            rows = self._exec("SELECT head_key FROM gate_tokens WHERE gate = ?", (gate,))
        return rows[0][0] if rows else None

    def revoke_gate(self, gate: str) -> bool:
        """Withdraw the gate's token (it is refused from now on); False when it had none."""
        with self._lock:
            return self._exec_count("DELETE FROM gate_tokens WHERE gate = ?", (gate,)) > 0

    def set_api_token(self, name: str, role: str, token: str) -> None:
        """Make `token` the credential called `name` with `role` (replacing that name's earlier token)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        problem = token_problem(token)
        if problem is not None:
            raise ValueError(problem)
        if not name or len(name) > 100 or not name.isprintable():
            raise ValueError("a token name is 1 to 100 printable characters")
        with self._lock:
            self._exec("INSERT INTO api_tokens (name, role, token_sha256, issued_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET role = excluded.role, token_sha256 = excluded.token_sha256, "
                       "issued_at = excluded.issued_at", (name, role, token_digest(token), time.time()))

    def revoke_api_token(self, name: str) -> bool:
        """Withdraw the credential called `name`; False when there is none."""
        with self._lock:
            return self._exec_count("DELETE FROM api_tokens WHERE name = ?", (name,)) > 0

    def api_tokens(self) -> list[dict[str, Any]]:
        """Issued role credentials (name, role, issued_at), never the tokens."""
        with self._lock:
            rows = self._exec("SELECT name, role, issued_at FROM api_tokens ORDER BY name")
        return [{"name": n, "role": r, "issued_at": at} for n, r, at in rows]

    def identify(self, token: str) -> tuple[str, str] | None:
        """Who presents `token`: ("role", role) or ("gate", gate), or None when it is nobody's."""
        if token_problem(token) is not None:
            return None
        digest = token_digest(token)
        with self._lock:
            role = self._exec("SELECT role, token_sha256 FROM api_tokens WHERE token_sha256 = ?", (digest,))
            gate = self._exec("SELECT gate, token_sha256 FROM gate_tokens WHERE token_sha256 = ?", (digest,))
        if role and digest_matches(role[0][1], token):
            return "role", role[0][0]
        if gate and digest_matches(gate[0][1], token):
            return "gate", gate[0][0]
        return None

    # ------------------------------------------------------------ gates (monitoring)

    def record_status(self, gate: str, online: bool, bd_seq: int | None = None) -> bool:
        """Apply a gate's birth (online) or death (offline); return False when it is ignored.

        Ignored: a death whose bdSeq is not the current birth's (the late will of an earlier
        connection), and a repeat of the current state (a retained message delivered again).
        """
        now = time.time()

        def work() -> bool:
            self._lock_gate("gate", gate)
            row = self._exec("SELECT online, bd_seq FROM gates WHERE gate = ?", (gate,))
            current_online, current_seq = (row[0][0], row[0][1]) if row else (None, None)
            if current_online is not None and bool(current_online) == online and current_seq == bd_seq:
                return False
            if not online and None not in (bd_seq, current_seq) and bd_seq != current_seq:
                return False
            self._exec("INSERT INTO gates (gate, online, bd_seq, status_at) VALUES (?, ?, ?, ?) ON CONFLICT (gate) "
                       "DO UPDATE SET online = excluded.online, bd_seq = excluded.bd_seq, "
                       "status_at = excluded.status_at", (gate, int(online), bd_seq, now))
            self._exec("INSERT INTO gate_status_log (gate, online, bd_seq, at) VALUES (?, ?, ?, ?)",
                       (gate, int(online), bd_seq, now))
            return True

        return self._tx(work)

    def set_status(self, gate: str, online: bool) -> None:
        """Record a status without a bdSeq (older nodes that send plain online / offline)."""
        self.record_status(gate, online, None)

    def status_log(self, gate: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The gate's applied online/offline changes, oldest first."""
        with self._lock:
            rows = self._exec("SELECT online, bd_seq, at FROM gate_status_log WHERE gate = ? ORDER BY rid LIMIT ?",
                              (gate, limit))
        return [{"state": "online" if on else "offline", "bd_seq": seq, "at": at} for on, seq, at in rows]

    def set_telemetry(self, gate: str, part: str, body: Any) -> None:
        """Replace one part of the gate's telemetry (the others stay): one transaction under the gate's lock,
        so two workers storing two parts of one gate at once keep both."""

        def work() -> None:
            self._lock_gate("gate", gate)
            row = self._exec("SELECT telemetry FROM gates WHERE gate = ?", (gate,))
            telemetry = json.loads(row[0][0]) if row and row[0][0] else {}
            telemetry[part] = body
            self._exec("INSERT INTO gates (gate, telemetry) VALUES (?, ?) ON CONFLICT (gate) DO UPDATE "
                       "SET telemetry = excluded.telemetry", (gate, json.dumps(telemetry)))

        self._tx(work)

    def gates(self, silent_after_s: float = 60.0) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            rows = self._exec("SELECT gate, last_contact, backlog, last_seq, online, bd_seq, status_at, telemetry, "
                              "backlog_at FROM gates ORDER BY gate")
        # backlog: what the last upload said (see `upload_backlog` in GET /api/v1/gates); backlog_at: when
        # (last contact for rows stored before backlog_at was kept)
        return [{"gate": g, "last_contact": lc, "backlog": b, "backlog_at": ba if ba is not None or b is None else lc,
                 "last_seq": ls, "online": None if on is None else bool(on), "bd_seq": bd, "status_at": sa,
                 "silent": lc is None or now - lc > silent_after_s,
                 "telemetry": json.loads(t) if t else {}} for g, lc, b, ls, on, bd, sa, t, ba in rows]

    # ------------------------------------------------------------ declaration feed

    def _next_change(self) -> int:
        return int(self._exec("UPDATE counters SET value = value + 1 WHERE name = 'change_id' RETURNING value")[0][0])

    def publish(self, declarations: list[dict[str, Any]]) -> int:
        """Publish new declarations or amendments (a version above the stored one); return the last change id."""

        def work() -> int:
            change = 0
            for body in declarations:
                row = self._exec("SELECT version FROM declarations WHERE number = ?", (body["number"],))
                stored = row[0][0] if row else None
                body = dict(body)
                if body.get("version") in (None, ""):
                    body["version"] = 1 if stored is None else stored + 1
                if stored is not None and int(body["version"]) <= stored:
                    raise VersionConflict(f"{body['number']}: version {body['version']} is not above the stored "
                                          f"version {stored}")
                change = self._next_change()
                self._exec("INSERT INTO declarations (number, gate, version, body, revoked, change_id) "
                           "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (number) DO UPDATE SET gate = excluded.gate, "
                           "version = excluded.version, body = excluded.body, revoked = 0, "
                           "change_id = excluded.change_id",
                           (body["number"], body["gate"], int(body["version"]), json.dumps(body), change))
            return change

        return self._tx(work)

    def revoke(self, number: str, reason: str = "") -> dict[str, Any]:
        """Cancel a declaration centrally: a new version, status cancelled, sent as a revocation."""

        def work() -> dict[str, Any]:
            row = self._exec("SELECT version, body FROM declarations WHERE number = ?", (number,))
            if not row:
                raise KeyError(number)
            version, body = int(row[0][0]) + 1, json.loads(row[0][1])
            body.update(version=version, status="cancelled")
            change = self._next_change()
            self._exec("UPDATE declarations SET version = ?, body = ?, revoked = 1, change_id = ? WHERE number = ?",
                       (version, json.dumps(body), change, number))
            return {"number": number, "version": version, "reason": reason, "change_id": change,
                    "gate": body["gate"]}

        return self._tx(work)

    def feed(self, gate: str, cursor: int, limit: int) -> tuple[list[dict], list[dict], int]:
        """(declarations, revocations, cursor_to) changed for `gate` after `cursor`."""
        with self._lock:
            rows = self._exec("SELECT number, version, body, revoked, change_id FROM declarations "
                              "WHERE gate = ? AND change_id > ? ORDER BY change_id LIMIT ?", (gate, cursor, limit))
        declarations, revocations = [], []
        cursor_to = cursor
        for number, version, body, revoked, change in rows:
            if revoked:
                revocations.append({"number": number, "version": int(version)})
            else:
                declarations.append(json.loads(body))
            cursor_to = int(change)
        return declarations, revocations, cursor_to
