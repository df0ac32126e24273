"""The node's local SQLite cache of declarations: versioned bulk upserts and lookups by plate or container.

Everything the cache stores and returns is in matching form (`devices.protocols.identifiers`):
plates, containers and seals are folded on the way in (NFKC, no separators, upper case), whoever
built the `Declaration`, so `２９Ｃ－１２３．４５` finds and matches the declaration of `29C-123.45`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # the C encoder for one JSON string
from pathlib import Path
from typing import Any
from unicodedata import is_normalized

from sqlite_utils import Database

from devices.protocols.identifiers import D_WITH_STROKE, fold_identifier, normalise_container, normalise_plate
from edge import claims as claims_table
from edge.claims import Claim, ClaimPassage
from edge.declarations import (
    Declaration,
    DeclarationKind,
    DeclarationStatus,
    RiskChannel,
    as_utc,
)

BATCH_SIZE = 10_000
"""Declarations prepared and written per executemany round inside one upsert_many transaction."""

_IN_CHUNK = 500  # numbers per `WHERE number IN (...)`: far below every SQLite build's variable limit

_COLUMNS = ("number", "kind", "gate", "plates", "containers", "seals", "gross_weight_kg", "channel", "status",
            "valid_from", "valid_until", "version")
_SELECT = "SELECT " + ", ".join(f"d.{column}" for column in _COLUMNS) + " FROM declarations d"
# New declarations are plainly inserted; stored ones (known from the version check) are updated in
# place, keeping their rowid so the number index is not touched (INSERT OR REPLACE would delete and
# re-insert both, and ON CONFLICT on every row costs the initial load about 6%).
_INSERT = f"INSERT INTO declarations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_UPDATE = f"UPDATE declarations SET {', '.join(f'{c} = ?' for c in _COLUMNS[1:])} WHERE number = ?"
_BY_PLATE = f"{_SELECT} JOIN declaration_plates p ON p.number = d.number WHERE p.plate = ? ORDER BY p.number"
_BY_CONTAINER = (f"{_SELECT} JOIN declaration_containers c ON c.number = d.number WHERE c.container = ? "
                 "ORDER BY c.number")
_GET = f"{_SELECT} WHERE d.number = ?"

_KINDS = {member.value: member for member in DeclarationKind}
_CHANNELS = {member.value: member for member in RiskChannel}
_STATUSES = {member.value: member for member in DeclarationStatus}
_REFRESHED_AT = "refreshed_at"
_GENERATION = "generation"  # bumped by every write of declarations or cache_meta (by any process): stats' key
_BUMP_GENERATION = ("INSERT INTO cache_meta (key, value) VALUES ('generation', 1) "
                    "ON CONFLICT (key) DO UPDATE SET value = value + 1")
_IDENTIFIER_FORM = "identifier_form"
IDENTIFIER_FORM = "nfkc-upper-no-separators-d-stroke-2"
"""The matching form stored identifiers are in (cache_meta `identifier_form`); another value is refolded on open.

2: Đ (and its look-alikes) folded to D; a cache marked `nfkc-upper-no-separators-1` may hold `29MĐ112345`."""
_STROKE = frozenset(D_WITH_STROKE)


def _iso(moment: datetime) -> str:
    return as_utc(moment).isoformat()


def _is_folded(text: str) -> bool:
    """True for text surely in matching form already (the usual case: ASCII upper case and digits).

    Upper-case NFKC text holding a D with stroke (`29MĐ112345`) is not: matching form has `D` there.
    """
    return (text.isalnum() and (text.isupper() or text.isdigit())
            and (text.isascii() or (is_normalized("NFKC", text) and _STROKE.isdisjoint(text))))


def _folded(items: tuple[str, ...]) -> tuple[str, ...]:
    """`items` in matching form, duplicates after folding dropped; already-folded tuples are returned as they are."""
    joined = "".join(items)  # one check for the whole list (_is_folded inline): it runs for every list imported
    if (joined.isalnum() and (joined.isupper() or joined.isdigit())
            and (joined.isascii() or (is_normalized("NFKC", joined) and _STROKE.isdisjoint(joined)))) or not items:
        return items
    return tuple(dict.fromkeys(map(fold_identifier, items)))


def _plate_key(plate: str) -> str:
    """The plate as the index holds it; already-normal plates (the usual case) skip the regex."""
    return plate if _is_folded(plate) else normalise_plate(plate)


def _container_key(container: str) -> str:
    """The container number as the index holds it; already-normal ones skip the regex."""
    return container if _is_folded(container) else normalise_container(container)


def _declaration(row: tuple[Any, ...]) -> Declaration:
    (number, kind, gate, plates, containers, seals, weight, channel, status, valid_from, valid_until,
     version) = row
    return Declaration(
        number=number, kind=_KINDS[kind], gate=gate, plates=tuple(json.loads(plates)),
        containers=tuple(json.loads(containers)), seals=tuple(json.loads(seals)), gross_weight_kg=weight,
        channel=_CHANNELS[channel], status=_STATUSES[status], valid_from=datetime.fromisoformat(valid_from),
        valid_until=datetime.fromisoformat(valid_until), version=version,
    )


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT on `conn`, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _batches(items: Iterable[Declaration], size: int) -> Iterator[list[Declaration]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class _ClaimConflict(Exception):
    """Raised inside a claim's write transaction to roll it back; carries the claims held by others."""

    def __init__(self, conflicts: list[Claim]):
        super().__init__(f"{len(conflicts)} declaration(s) claimed by another transaction")
        self.conflicts = conflicts


class DeclarationCache:
    """Cleared declarations held on the edge node, answering the lane's lookups while the WAN is down.

    One SQLite connection (WAL mode). It may be handed between threads (check_same_thread=False) and
    a lock serialises calls, but it is meant to be used by one thread at a time. A bulk import that
    must not hold up lane lookups belongs on its own DeclarationCache (own connection): WAL lets
    that writer and this reader work side by side.
    """

    def __init__(self, db: Database) -> None:
        """Wrap an opened sqlite-utils Database; use DeclarationCache.open() rather than this."""
        self._db = db
        self._conn: sqlite3.Connection = db.conn
        self._lock = threading.RLock()
        self._writes = 0  # bumped by our own declaration commits (with the generation in cache_meta)
        self._stats_key: tuple[Any, int] | None = None
        self._stats: dict[str, Any] | None = None
        # Claims are written on a connection of their own (synchronous=FULL) under a lock of their own: a
        # claim waiting for the write lock (an import by another process) never holds up the lanes' look-ups.
        self._claims_conn, self._claims_lock = self._conn, self._lock

    @classmethod
    def open(cls, path: str | Path) -> DeclarationCache:
        """Open (creating tables and indexes if needed) the cache at `path`; ":memory:" gives a private one."""
        conn = sqlite3.connect(str(path), check_same_thread=False)
        db = Database(conn)
        db.enable_wal()
        # The cache is a copy that can always be fetched again from central, so it trades the last
        # transactions' durability on power loss for speed: in WAL mode synchronous=NORMAL keeps the
        # database consistent but may lose the latest commits (not a choice for the node's journal).
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache (default 2 MiB) for 1M-row indexes
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA journal_size_limit=67108864")  # truncate the WAL back to 64 MiB after a big import
        cache = cls(db)
        cache._create_schema()
        if str(path) != ":memory:":
            claims_conn = sqlite3.connect(str(path), check_same_thread=False)
            claims_conn.execute("PRAGMA synchronous=FULL")  # claims are the node's own record, not a copy
            cache._claims_conn, cache._claims_lock = claims_conn, threading.Lock()
        return cache

    def _create_schema(self) -> None:
        db = self._db
        db["declarations"].create(
            {"number": str, "kind": str, "gate": str, "plates": str, "containers": str, "seals": str,
             "gross_weight_kg": float, "channel": str, "status": str, "valid_from": str, "valid_until": str,
             "version": int},
            pk="number",
            not_null={"kind", "gate", "plates", "containers", "seals", "channel", "status", "valid_from",
                      "valid_until", "version"},
            if_not_exists=True,
        )
        # One row per (plate, declaration), keyed (plate, number) in a WITHOUT ROWID table: the table is
        # its own index on plate, so a lookup reads one b-tree and then the declaration by primary key,
        # and an import writes one b-tree per row instead of two (about 25% faster at 1M declarations).
        # sqlite-utils cannot declare WITHOUT ROWID, hence the plain DDL.
        for table, key in (("declaration_plates", "plate"), ("declaration_containers", "container")):
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({key} TEXT NOT NULL, number TEXT NOT NULL, "
                       f"PRIMARY KEY ({key}, number)) WITHOUT ROWID")
        db["cache_meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
        claims_table.create(self._conn)
        self._refold_identifiers()

    def _refold_identifiers(self) -> None:
        """Bring a cache written before identifiers were folded (NFKC, seals too) to matching form, once.

        Rows whose plates, containers or seals are not in matching form are rewritten and their
        index rows rebuilt; a cache already marked with IDENTIFIER_FORM is left alone (no scan).
        """
        if self.meta(_IDENTIFIER_FORM).get(_IDENTIFIER_FORM) == IDENTIFIER_FORM:
            return
        with self._lock, self._write_transaction():
            conn = self._conn
            rows = conn.execute("SELECT number, plates, containers, seals FROM declarations").fetchall()
            for number, plates, containers, seals in rows:
                lists = [tuple(json.loads(text)) for text in (plates, containers, seals)]
                folded = [_folded(items) for items in lists]
                if folded == lists:
                    continue
                conn.execute("UPDATE declarations SET plates = ?, containers = ?, seals = ? WHERE number = ?",
                             (*(json.dumps(list(items), ensure_ascii=False) for items in folded), number))
                conn.execute("DELETE FROM declaration_plates WHERE number = ?", (number,))
                conn.execute("DELETE FROM declaration_containers WHERE number = ?", (number,))
                conn.executemany("INSERT OR IGNORE INTO declaration_plates (plate, number) VALUES (?, ?)",
                                 [(plate, number) for plate in folded[0]])
                conn.executemany("INSERT OR IGNORE INTO declaration_containers (container, number) VALUES (?, ?)",
                                 [(container, number) for container in folded[1]])
            conn.execute("INSERT OR REPLACE INTO cache_meta (key, value) VALUES (?, ?)",
                         (_IDENTIFIER_FORM, IDENTIFIER_FORM))

    def close(self) -> None:
        """Close the connection (after letting SQLite refresh its planner statistics)."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # optimize is advisory; closing matters more
                self._conn.execute("PRAGMA optimize")
            if self._claims_conn is not self._conn:
                with self._claims_lock:
                    self._claims_conn.close()
            self._db.close()

    def __enter__(self) -> DeclarationCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def upsert_many(self, declarations: Iterable[Declaration]) -> int:
        """Store declarations in one transaction; return how many were applied.

        An incoming declaration replaces the stored one with the same number only when its version
        is >= the stored version (equal versions re-apply, so a re-delivered feed is harmless); its
        plate and container index rows are replaced with it. Several declarations with one number in
        the same call are applied in order under the same rule, and each that would have been
        applied counts. Anything raised (also by the iterable) rolls the whole call back. Plates,
        containers and seals are stored folded (matching form): declaration_from_mapping already folds
        them, others pay for the folding here.
        """
        applied = 0
        with self._lock, self._write_transaction():
            for batch in _batches(declarations, BATCH_SIZE):
                applied += self._upsert_batch(batch)
        return applied

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

        IMMEDIATE takes the write lock before the version check reads anything, so another connection
        (the CLI importing into the node's file) cannot slip a commit in between the check and the
        write; a writer that finds the lock taken waits up to sqlite3's busy timeout (5 s).
        """
        try:
            with _immediate(self._conn):
                yield
                self._conn.execute(_BUMP_GENERATION)
        finally:
            self._writes += 1

    def _upsert_batch(self, batch: list[Declaration]) -> int:
        latest: dict[str, Declaration] = {}
        repeats: dict[str, list[int]] = {}  # number -> versions in arrival order, only for numbers seen twice
        for declaration in batch:
            number = declaration.number
            held = latest.get(number)
            if held is None:
                latest[number] = declaration
                continue
            repeats.setdefault(number, [held.version]).append(declaration.version)
            if declaration.version >= held.version:
                latest[number] = declaration
        stored = self._stored(list(latest))

        rows: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        plate_rows: list[tuple[str, str]] = []
        container_rows: list[tuple[str, str]] = []
        old_plate_rows: list[tuple[str, str]] = []
        old_container_rows: list[tuple[str, str]] = []
        applied = 0
        # The hot loop of every import (about 1M rounds for a full load): the row is built inline with
        # helpers bound to locals on purpose. Lists are stored as JSON arrays built with the C string
        # encoder (several times faster than json.dumps); the enums are StrEnums, which sqlite3 binds as
        # their text; plates, containers and seals arrive folded (declaration_from_mapping's contract) and
        # only those that do not look it pay for the folding.
        add_new, add_plate, add_container = rows.append, plate_rows.append, container_rows.append
        encode = encode_basestring
        for number, declaration in latest.items():
            old = stored.get(number)
            if repeats and number in repeats:
                current = -1 if old is None else old[0]
                for version in repeats[number]:
                    if version >= current:
                        applied += 1
                        current = version
            elif old is None or declaration.version >= old[0]:
                applied += 1
            if old is not None:
                if declaration.version < old[0]:
                    continue
                old_plate_rows.extend((_plate_key(plate), number) for plate in json.loads(old[1]))
                old_container_rows.extend((_container_key(container), number) for container in json.loads(old[2]))
                add_row = updates.append
            else:
                add_row = add_new
            plates = _folded(declaration.plates)
            containers = _folded(declaration.containers)
            seals = _folded(declaration.seals)
            valid_from, valid_until = declaration.valid_from, declaration.valid_until
            add_row((
                number, declaration.kind, declaration.gate,
                "[" + ",".join(map(encode, plates)) + "]" if plates else "[]",
                "[" + ",".join(map(encode, containers)) + "]" if containers else "[]",
                "[" + ",".join(map(encode, seals)) + "]" if seals else "[]",
                declaration.gross_weight_kg, declaration.channel, declaration.status,
                valid_from.isoformat() if valid_from.tzinfo is UTC else _iso(valid_from),
                valid_until.isoformat() if valid_until.tzinfo is UTC else _iso(valid_until),
                declaration.version,
            ))
            for plate in plates:  # folded above
                add_plate((plate, number))
            for container in containers:
                add_container((container, number))

        execute = self._conn.executemany
        if old_plate_rows:
            execute("DELETE FROM declaration_plates WHERE plate = ? AND number = ?", old_plate_rows)
        if old_container_rows:
            execute("DELETE FROM declaration_containers WHERE container = ? AND number = ?", old_container_rows)
        if updates:
            execute(_UPDATE, [row[1:] + row[:1] for row in updates])
        execute(_INSERT, rows)
        execute("INSERT OR IGNORE INTO declaration_plates (plate, number) VALUES (?, ?)", plate_rows)
        execute("INSERT OR IGNORE INTO declaration_containers (container, number) VALUES (?, ?)", container_rows)
        return applied

    def _stored(self, numbers: list[str]) -> dict[str, tuple[int, str, str]]:
        """Version, plates JSON and containers JSON of those numbers already stored."""
        found: dict[str, tuple[int, str, str]] = {}
        full_sql = ("SELECT number, version, plates, containers FROM declarations WHERE number IN ("
                    + ",".join("?" * _IN_CHUNK) + ")")
        for start in range(0, len(numbers), _IN_CHUNK):
            chunk = numbers[start:start + _IN_CHUNK]
            sql = full_sql if len(chunk) == _IN_CHUNK else (
                "SELECT number, version, plates, containers FROM declarations WHERE number IN ("
                + ",".join("?" * len(chunk)) + ")")
            for number, version, plates, containers in self._conn.execute(sql, chunk):
                found[number] = (version, plates, containers)
        return found

    def apply_feed(self, declarations: list[Declaration], revocations: Iterable[tuple[str, int]],
                   meta: dict[str, str], refreshed_at: datetime) -> int:
        """Apply one batch of central's feed in ONE transaction; return how many changes were applied.

        `declarations` are stored as `upsert_many` does (new, or amended at a version >= the stored
        one); each revocation `(number, version)` re-stores the declaration (from this batch, or as
        held) as cancelled at that version, so the rules refuse it; numbers never held are skipped.
        `meta` (the feed cursor and the like) and `refreshed_at` are written in the same transaction,
        so a crash can never leave the cursor past changes that were not stored, and a lane never sees
        half a batch.
        """
        with self._lock, self._write_transaction():
            applied = self._upsert_batch(list(declarations)) if declarations else 0
            in_batch = {d.number: d for d in declarations}
            cancelled = []
            for number, version in revocations:
                current = in_batch.get(number) or self.get(number)
                if current is not None:
                    cancelled.append(dataclasses.replace(current, status=DeclarationStatus.CANCELLED, version=version))
            if cancelled:
                applied += self._upsert_batch(cancelled)
            rows = [*meta.items(), (_REFRESHED_AT, _iso(refreshed_at))]
            self._conn.executemany("INSERT OR REPLACE INTO cache_meta (key, value) VALUES (?, ?)", rows)
        return applied

    def meta(self, *keys: str) -> dict[str, str]:
        """The stored values of these cache_meta keys (absent keys are left out)."""
        if not keys:
            return {}
        with self._lock:
            rows = self._conn.execute(f"SELECT key, value FROM cache_meta WHERE key IN ({','.join('?' * len(keys))})",
                                      keys).fetchall()
        return dict(rows)

    def mark_refreshed(self, at: datetime) -> None:
        """Record that the cache was brought up to date from the authority at `at` (naive means UTC)."""
        with self._lock, self._write_transaction():
            self._conn.execute("INSERT OR REPLACE INTO cache_meta (key, value) VALUES (?, ?)",
                               (_REFRESHED_AT, _iso(at)))

    # -- declaration claims (edge/claims.py) ----------------------------------------------------

    def claim(self, numbers: Sequence[str], *, gate: str, lane: str, transaction: str, at: float,
              released_by: str) -> list[Claim]:
        """Claim these declarations for one opening, all or none, durably; return the conflicting claims.

        An empty result means every number is now claimed by `transaction` (already held by it counts).
        Otherwise nothing was written and the result names who holds the others. The commit is synced
        to disk (synchronous=FULL for this write) before it returns: the barrier is commanded only after.
        """
        if not numbers:
            return []
        try:
            with self._durable_write() as conn:
                conflicts = claims_table.claim(conn, numbers, gate=gate, lane=lane, transaction=transaction,
                                               at=at, released_by=released_by)
                if conflicts:
                    raise _ClaimConflict(conflicts)  # rolls the inserts back: all or none
        except _ClaimConflict as refused:
            return refused.conflicts
        return []

    def claims(self, numbers: Iterable[str]) -> dict[str, Claim]:
        """The claims on these declaration numbers, by number (unclaimed ones are absent)."""
        with self._lock:
            return claims_table.lookup(self._conn, numbers)

    def claims_of(self, transaction: str) -> list[Claim]:
        """The claims one transaction holds."""
        with self._lock:
            return claims_table.of_transaction(self._conn, transaction)

    def claim_list(self, *, lane: str | None = None, passage: ClaimPassage | None = None,
                   limit: int = 100) -> list[Claim]:
        """Claims, newest first (optionally one lane's, or those in one passage state)."""
        with self._lock:
            return claims_table.listing(self._conn, lane=lane, passage=passage, limit=limit)

    def set_claim_passage(self, transaction: str, passage: ClaimPassage) -> int:
        """Record what is known of a transaction's passage on its claims; return how many changed."""
        with self._durable_write() as conn:
            return claims_table.set_passage(conn, transaction, passage)

    def release_claim(self, number: str, transaction: str) -> bool:
        """Delete the claim on `number` held by `transaction` (journal the why first); True when deleted."""
        with self._durable_write() as conn:
            return claims_table.release(conn, number, transaction)

    @contextlib.contextmanager
    def _durable_write(self) -> Iterator[sqlite3.Connection]:
        """A claims write transaction synced to disk (claims are no copy of central's, unlike the declarations)."""
        with self._claims_lock:
            conn = self._claims_conn
            shared = conn is self._conn  # ":memory:": the one connection, switched to FULL for this write
            if shared:
                conn.execute("PRAGMA synchronous=FULL")
            try:
                with _immediate(conn):
                    yield conn
            finally:
                if shared:
                    conn.execute("PRAGMA synchronous=NORMAL")

    # -- reading ---------------------------------------------------------------------------------

    def by_plate(self, plate: str) -> list[Declaration]:
        """All stored declarations naming this plate (any status or validity), by number.

        The plate is normalised first: `29C-123.45`, `29C12345` and `29c 123 45` are one plate.
        """
        with self._lock:
            rows = self._conn.execute(_BY_PLATE, (normalise_plate(plate),)).fetchall()
        return [_declaration(row) for row in rows]

    def by_plate_end(self, end: str, limit: int = 50) -> list[Declaration]:
        """Declarations naming a plate that ends with `end` (normalised first: `123.45` finds `29C12345`).

        For an officer's look-up with part of a plate; it reads the whole plate table (no index helps
        a suffix), about 10 ms per 100k plates, so callers keep it off the event loop.
        """
        folded = normalise_plate(end)
        if not folded:
            return []
        pattern = "%" + folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self._conn.execute(
                f"{_SELECT} WHERE d.number IN (SELECT number FROM declaration_plates WHERE plate LIKE ? ESCAPE '\\' "
                "LIMIT ?) ORDER BY d.number", (pattern, limit)).fetchall()
        return [_declaration(row) for row in rows]

    def by_container(self, container: str) -> list[Declaration]:
        """All stored declarations naming this container number (normalised first), by number."""
        with self._lock:
            rows = self._conn.execute(_BY_CONTAINER, (normalise_container(container),)).fetchall()
        return [_declaration(row) for row in rows]

    def get(self, number: str) -> Declaration | None:
        """The stored declaration with this number, or None."""
        with self._lock:
            row = self._conn.execute(_GET, (number,)).fetchone()
        return None if row is None else _declaration(row)

    def count(self) -> int:
        """Number of stored declarations."""
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM declarations").fetchone()[0]

    def refreshed_at(self) -> datetime | None:
        """When the cache was last brought up to date from the authority (aware UTC), or None if never."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM cache_meta WHERE key = ?", (_REFRESHED_AT,)).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def age_seconds(self, now: datetime) -> float | None:
        """Seconds from the last refresh to `now` (naive means UTC); None if never refreshed.

        Not clamped: a negative age means the clock went back since the refresh.
        """
        refreshed = self.refreshed_at()
        return None if refreshed is None else (as_utc(now) - refreshed).total_seconds()

    def stats(self) -> dict[str, Any]:
        """Totals for the kiosk and the CLI: total, by_status, by_channel, by_kind, refreshed_at (ISO or None).

        The counts take a scan of the table, so they are kept until declarations are written again (by any
        connection: the generation in cache_meta moves); claims do not count.
        """
        with self._lock:
            # The declarations' generation, not PRAGMA data_version: claims commit on a connection of their
            # own at every release, and must not cost a scan of the declarations each time.
            row = self._conn.execute("SELECT value FROM cache_meta WHERE key = ?", (_GENERATION,)).fetchone()
            key = (row[0] if row else None, self._writes)
            if self._stats is None or self._stats_key != key:
                self._stats = self._compute_stats()
                self._stats_key = key
            return {name: dict(value) if isinstance(value, dict) else value for name, value in self._stats.items()}

    def _compute_stats(self) -> dict[str, Any]:
        by_status = dict.fromkeys(_STATUSES, 0)
        by_channel = dict.fromkeys(_CHANNELS, 0)
        by_kind = dict.fromkeys(_KINDS, 0)
        total = 0
        sql = "SELECT status, channel, kind, count(*) FROM declarations GROUP BY status, channel, kind"
        for status, channel, kind, n in self._conn.execute(sql):
            total += n
            by_status[status] = by_status.get(status, 0) + n
            by_channel[channel] = by_channel.get(channel, 0) + n
            by_kind[kind] = by_kind.get(kind, 0) + n
        refreshed = self._conn.execute("SELECT value FROM cache_meta WHERE key = ?", (_REFRESHED_AT,)).fetchone()
        return {"total": total, "by_status": by_status, "by_channel": by_channel, "by_kind": by_kind,
                "refreshed_at": None if refreshed is None else refreshed[0]}
