"""Central's storage: PostgreSQL (psycopg 3) for real use, SQLite as the embedded default for the demo.

One small SQL dialect serves both (`?` placeholders are rewritten to `%s` for psycopg; upserts use
ON CONFLICT, which both speak). Calls are serialised on one connection by a lock: the reference
service favours obviously-correct over concurrent.

* events: PRIMARY KEY event_id, INSERT ... ON CONFLICT DO NOTHING: a re-sent event has no second
  effect (the edge's idempotency key). `rid` numbers rows in arrival order; the edge sends in seq
  order one batch at a time and a batch is one transaction, so arrival order is seq order per lane.
* declarations: the current version of each declaration with `change_id`, a global counter bumped
  on every publish, amendment or revocation. A gate's feed is "rows of my gate with change_id >
  cursor, in change_id order", so a cursor is just the last change_id seen.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sync.tokens import digest_matches, token_digest, token_problem

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
}


class VersionConflict(ValueError):
    """A declaration version not newer than the stored one."""


class CentralStore:
    def __init__(self, url: str):
        self.url = url
        self._lock = threading.Lock()
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.kind = "postgresql"
            self._conn = psycopg.connect(url, autocommit=True)
            serial = "BIGSERIAL PRIMARY KEY"
        elif url.startswith("sqlite:///") or url == "sqlite://":
            self.kind = "sqlite"
            path = url.removeprefix("sqlite:///") or ":memory:"
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
        else:
            raise ValueError(f"unknown database URL {url!r}: use sqlite:///PATH or postgresql://...")
        for sql in _TABLES.values():
            self._exec(sql.format(serial=serial))
        self._add_column("gates", "bd_seq", "BIGINT")  # databases made before birth/death
        self._exec("INSERT INTO counters (name, value) VALUES ('change_id', 0) ON CONFLICT (name) DO NOTHING")

    # ------------------------------------------------------------ plumbing

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    def _exec(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        cur = self._conn.execute(self._sql(sql), params)
        return cur.fetchall() if cur.description else []

    def _add_column(self, table: str, column: str, kind: str) -> None:
        if self.kind == "postgresql":
            self._exec(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        elif column not in {row[1] for row in self._exec(f"PRAGMA table_info({table})")}:
            self._exec(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")

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
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------ events

    def store_events(self, gate: str, events: list[dict[str, Any]], backlog: int | None = None) -> list[str]:
        """Store a batch in one transaction (duplicates ignored); return every event id of it (acknowledged)."""
        now = time.time()
        rows = [(e["event_id"], gate, e.get("lane"), int(e["seq"]), e["kind"], float(e["at"]),
                 e["payload"] if isinstance(e["payload"], str) else json.dumps(e["payload"]), e.get("hash"), now)
                for e in events]

        def work() -> list[str]:
            if rows:
                cur = self._conn.cursor()
                cur.executemany(self._sql(
                    "INSERT INTO events (event_id, gate, lane, seq, kind, at, payload, hash, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"), rows)
            last_seq = max((r[3] for r in rows), default=None)
            self._touch(gate, now, backlog=backlog, last_seq=last_seq)
            return [r[0] for r in rows]

        return self._tx(work)

    def touch(self, gate: str) -> None:
        """Record contact from a gate (a feed pull)."""
        with self._lock:
            self._touch(gate, time.time())

    def _touch(self, gate: str, now: float, *, backlog: int | None = None, last_seq: int | None = None) -> None:
        self._exec("INSERT INTO gates (gate, last_contact, backlog, last_seq) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (gate) DO UPDATE SET last_contact = excluded.last_contact, "
                   "backlog = coalesce(excluded.backlog, gates.backlog), "
                   "last_seq = coalesce(excluded.last_seq, gates.last_seq)", (gate, now, backlog, last_seq))

    def events(self, gate: str, lane: str | None = None, after_rid: int = 0, limit: int = 1_000_000) -> list[dict]:
        """Stored events of a gate in arrival order."""
        where, params = "gate = ? AND rid > ?", [gate, after_rid]
        if lane is not None:
            where += " AND lane = ?"
            params.append(lane)
        with self._lock:
            rows = self._exec(f"SELECT rid, event_id, lane, seq, kind, at, payload FROM events WHERE {where} "
                              "ORDER BY rid LIMIT ?", [*params, limit])
        return [{"rid": r[0], "event_id": r[1], "lane": r[2], "seq": r[3], "kind": r[4], "at": r[5],
                 "payload": json.loads(r[6])} for r in rows]

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

    # ------------------------------------------------------------ gates (monitoring)

    def record_status(self, gate: str, online: bool, bd_seq: int | None = None) -> bool:
        """Apply a gate's birth (online) or death (offline); return False when it is ignored.

        Ignored: a death whose bdSeq is not the current birth's (the late will of an earlier
        connection), and a repeat of the current state (a retained message delivered again).
        """
        now = time.time()

        def work() -> bool:
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
        with self._lock:
            row = self._exec("SELECT telemetry FROM gates WHERE gate = ?", (gate,))
            telemetry = json.loads(row[0][0]) if row and row[0][0] else {}
            telemetry[part] = body
            self._exec("INSERT INTO gates (gate, telemetry) VALUES (?, ?) ON CONFLICT (gate) DO UPDATE "
                       "SET telemetry = excluded.telemetry", (gate, json.dumps(telemetry)))

    def gates(self, silent_after_s: float = 60.0) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            rows = self._exec("SELECT gate, last_contact, backlog, last_seq, online, bd_seq, status_at, telemetry "
                              "FROM gates ORDER BY gate")
        return [{"gate": g, "last_contact": lc, "backlog": b, "last_seq": ls,
                 "online": None if on is None else bool(on), "bd_seq": bd, "status_at": sa,
                 "silent": lc is None or now - lc > silent_after_s,
                 "telemetry": json.loads(t) if t else {}} for g, lc, b, ls, on, bd, sa, t in rows]

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
