"""Declaration claims: a declaration is used once per gate, claimed when the barrier is commanded open for it.

A claim is one row of `declaration_claims` in the declaration cache's own SQLite database (the cache
opens it through `DeclarationCache.claim`, `claims`, ...; this module holds the table and the SQL).
The node keeps one cache per gate, so the table is the gate's: every lane and both directions claim
in the same table, keyed by declaration number. A transit declaration therefore passes once at its
entry gate and once at its exit gate (two nodes, two tables), never twice at one gate.

Several declarations (a consolidated load) are claimed for one opening in one transaction: all of
them or none. A claim by the same transaction again (an open command retried) is no conflict.

What a claim knows of the truck's passage (`ClaimPassage`):
  commanded  the barrier was commanded open for it and the truck is on its way;
  passed     the truck went under the boom and the boom closed behind it;
  unknown    the node restarted while the truck was on its way, or its transaction ended without
             the node seeing where it went: it stays claimed until an officer releases it.
A claim is deleted only by an officer's audited action, or when the node saw the boom come down
with nobody under it (the released truck never went): both are journaled by the lane controller.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS declaration_claims ("
    " number TEXT PRIMARY KEY,"
    " gate TEXT NOT NULL,"
    " lane TEXT NOT NULL,"
    " transaction_id TEXT NOT NULL,"
    " claimed_at REAL NOT NULL,"
    " released_by TEXT NOT NULL,"
    " passage TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS declaration_claims_tx ON declaration_claims (transaction_id)",
)
_COLUMNS = "number, gate, lane, transaction_id, claimed_at, released_by, passage"


class ClaimError(LookupError):
    """A declaration claim cannot be released (none held, or its truck is passing now)."""


class ClaimPassage(StrEnum):
    """What a claim knows of its truck's way under the boom."""

    COMMANDED = "commanded"
    PASSED = "passed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Claim:
    """One declaration claimed at the gate: by which lane's transaction, when, released by whom."""

    number: str
    gate: str
    lane: str
    transaction: str
    claimed_at: float
    released_by: str  # "auto" or the officer who released the truck
    passage: ClaimPassage

    def words(self) -> str:
        """The claim as an officer reads it: `claimed by tx T at lane L, passage unknown`."""
        return f"claimed by tx {self.transaction} at lane {self.lane}, passage {self.passage.value}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (kiosk, journal), with the words."""
        return {**asdict(self), "passage": self.passage.value, "text": f"declaration {self.number} {self.words()}"}


def _claim(row: tuple[Any, ...]) -> Claim:
    number, gate, lane, transaction, claimed_at, released_by, passage = row
    return Claim(number, gate, lane, transaction, claimed_at, released_by, ClaimPassage(passage))


def create(conn: sqlite3.Connection) -> None:
    """Create the claims table (idempotent)."""
    for statement in SCHEMA:
        conn.execute(statement)


def claim(conn: sqlite3.Connection, numbers: Sequence[str], *, gate: str, lane: str, transaction: str,
          at: float, released_by: str) -> list[Claim]:
    """Claim every number for `transaction` inside the caller's write transaction; return the conflicts.

    Each number is inserted unless it is claimed already (by this transaction: its passage is
    `commanded` again, an officer releasing the truck a restart left unknown); then any number held by
    another transaction is a conflict. The caller rolls back when conflicts are returned (all or none)
    and commits otherwise.
    """
    conn.executemany(
        f"INSERT INTO declaration_claims ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (number) "
        "DO UPDATE SET passage = excluded.passage WHERE transaction_id = excluded.transaction_id",
        [(number, gate, lane, transaction, at, released_by, ClaimPassage.COMMANDED.value) for number in numbers])
    held = lookup(conn, numbers)
    return [held[number] for number in numbers if number in held and held[number].transaction != transaction]


def lookup(conn: sqlite3.Connection, numbers: Iterable[str]) -> dict[str, Claim]:
    """The claims on these numbers, by number (unclaimed numbers are absent)."""
    wanted = list(dict.fromkeys(numbers))
    if not wanted:
        return {}
    rows = conn.execute(f"SELECT {_COLUMNS} FROM declaration_claims WHERE number IN ({','.join('?' * len(wanted))})",
                        wanted).fetchall()
    return {row[0]: _claim(row) for row in rows}


def of_transaction(conn: sqlite3.Connection, transaction: str) -> list[Claim]:
    """The claims a transaction holds, by number."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM declaration_claims WHERE transaction_id = ? ORDER BY number",
                        (transaction,)).fetchall()
    return [_claim(row) for row in rows]


def listing(conn: sqlite3.Connection, *, lane: str | None = None, passage: ClaimPassage | None = None,
            limit: int = 100) -> list[Claim]:
    """Claims, newest first, optionally one lane's or in one passage state."""
    where, params = [], []
    if lane is not None:
        where.append("lane = ?")
        params.append(lane)
    if passage is not None:
        where.append("passage = ?")
        params.append(passage.value)
    sql = f"SELECT {_COLUMNS} FROM declaration_claims"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = conn.execute(sql + " ORDER BY claimed_at DESC LIMIT ?", [*params, limit]).fetchall()
    return [_claim(row) for row in rows]


def set_passage(conn: sqlite3.Connection, transaction: str, passage: ClaimPassage) -> int:
    """Record what is known of a transaction's passage on its claims; return how many changed."""
    return conn.execute("UPDATE declaration_claims SET passage = ? WHERE transaction_id = ? AND passage != ?",
                        (passage.value, transaction, passage.value)).rowcount


def release(conn: sqlite3.Connection, number: str, transaction: str) -> bool:
    """Delete the claim on `number` if `transaction` still holds it; True when one was deleted."""
    return conn.execute("DELETE FROM declaration_claims WHERE number = ? AND transaction_id = ?",
                        (number, transaction)).rowcount > 0
