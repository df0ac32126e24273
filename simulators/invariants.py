"""What must hold after a node has been hurt (SIGKILLs, restarts, full disk): each check returns its problems.

An empty list means the invariant held; otherwise each entry is one piece of evidence in words (a
sequence number, a transaction, a time). The soak (`smartgate soak`) reports them in its JSON; the
tests assert that they are empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge.journal import JournalEntry

MAX_EVIDENCE = 20  # a broken invariant says this many instances at most, and how many there were


def count_rows(path: Path, sql: str) -> int:
    """A count from a database file a running node has open (a read of a WAL snapshot); -1 when not there yet."""
    if not path.exists():
        return -1
    with sqlite3.connect(path, timeout=10) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # the node has not created the table yet
            return -1


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_EVIDENCE:
        return problems
    return [*problems[:MAX_EVIDENCE], f"... and {len(problems) - MAX_EVIDENCE} more"]


def exactly_once_in_order(central_events: list[dict[str, Any]], journal_entries: Iterable[JournalEntry]) -> list[str]:
    """Central holds every journal event once and nothing else, and per lane in arrival order == seq order."""
    problems = []
    ids = [e["event_id"] for e in central_events]
    seen: set[str] = set()
    duplicates = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    if duplicates:
        problems.append(f"{len(duplicates)} duplicate events at central, e.g. {duplicates[0]}")
    expected = {e.event_id: e.seq for e in journal_entries}
    missing = sorted(expected[i] for i in set(expected) - seen)
    if missing:
        problems.append(f"{len(missing)} journal events never reached central, seqs {missing[:10]}")
    extra = seen - set(expected)
    if extra:
        problems.append(f"{len(extra)} events at central that the journal does not hold")
    by_lane: dict[str | None, list[int]] = {}
    for event in central_events:  # arrival order
        by_lane.setdefault(event["lane"], []).append(event["seq"])
    for lane, seqs in by_lane.items():
        bad = [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b < a]
        if bad:
            problems.append(f"lane {lane}: events arrived out of order, e.g. seq {bad[0][1]} after {bad[0][0]}")
    return problems


def releases(entries: Iterable[JournalEntry]) -> set[str]:
    """Transactions with a recorded RELEASE (the rules' decision or an officer's)."""
    return {e.payload.get("transaction") for e in entries
            if (e.kind == "decision" and e.payload.get("outcome") == "release")
            or (e.kind == "officer_action" and e.payload.get("action") == "release")}


def opens_without_release(entries: list[JournalEntry], opens: dict[str, list[float]]) -> tuple[list[str], int]:
    """Persist-before-acting, against what the PLCs saw; returns (problems, PLC opens checked).

    Every journaled open command follows a recorded RELEASE of its transaction, and every time a PLC
    started opening (`opens`: lane → wall-clock times), the lane's last journaled barrier command
    before that moment was an open."""
    problems = []
    released: set[str] = set()
    commands: dict[str, list[tuple[float, str, str]]] = {}  # lane -> (at, command, transaction)
    for entry in entries:
        tx = entry.payload.get("transaction")
        if tx in releases([entry]):
            released.add(tx)
        elif entry.kind == "barrier_command":
            if entry.payload["command"] == "open" and tx not in released:
                problems.append(f"seq {entry.seq}: barrier open for {tx} without a recorded RELEASE before it")
            commands.setdefault(entry.lane, []).append((entry.at, entry.payload["command"], tx))
    checked = 0
    for lane, times in opens.items():
        for opened_at in times:
            before = [c for c in commands.get(lane, []) if c[0] < opened_at]
            if not before or before[-1][1] != "open":
                problems.append(f"lane {lane}: the PLC was told to open at {opened_at:.3f} but the journal's last "
                                f"barrier command before that is {before[-1] if before else None}")
            checked += 1
    return _capped(problems), checked


def declarations_released_twice(entries: Iterable[JournalEntry]) -> list[str]:
    """A declaration released for more than one transaction (a truck's clearance used twice at the gate)."""
    by_declaration: dict[str, list[tuple[int, str]]] = {}
    for entry in entries:
        if entry.kind == "decision" and entry.payload.get("outcome") == "release" and entry.payload.get("declaration"):
            by_declaration.setdefault(entry.payload["declaration"], []).append(
                (entry.seq, entry.payload.get("transaction")))
    problems = []
    for number, rows in by_declaration.items():
        transactions = {tx for _, tx in rows}
        if len(transactions) > 1:
            problems.append(f"declaration {number} released for {len(transactions)} transactions "
                            f"(journal seqs {[seq for seq, _ in rows]})")
    return _capped(problems)
