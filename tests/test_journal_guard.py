"""The journal guard: rows held in memory while the journal cannot write, written back in order after.

Real failures only: a full tmpfs (root mounts it; skipped with the reason otherwise) and a write
lock held by another connection, as `sqlite3` in a shell would hold it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from edge.journal import Journal
from edge.journal_guard import RESERVE_FILE, JournalGuard
from tests.sync.test_disk_full import fill_disk, small_tmpfs


async def _until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _codes(journal: Journal) -> list[str]:
    return [e.payload.get("code") or e.payload.get("n") for e in journal.entries()]


def test_full_disk_rows_are_held_then_written_back_in_order(tmp_path: Path):
    with small_tmpfs(tmp_path / "disk", 4) as disk:
        asyncio.run(_full_disk(disk))


async def _full_disk(disk: Path) -> None:
    journal = Journal.open(disk / "journal.sqlite")
    guard = JournalGuard(journal, disk / RESERVE_FILE, reserve_bytes=1 << 20, retry_s=0.05)
    changes: list[bool] = []
    guard.listeners.append(lambda ok, reason: changes.append(ok))
    guard.start()
    try:
        assert (disk / RESERVE_FILE).stat().st_size == 1 << 20
        assert (await guard.append("test", {"n": 0}, lane="L1")) is not None
        fill_disk(disk / "filler")
        held = []
        for n in range(1, 40):
            entry = await guard.append("test", {"n": n, "pad": "x" * 2000}, lane="L1")
            if entry is None:
                held.append(n)
        assert held and not guard.ok and "disk full" in (guard.reason or "")
        assert held == list(range(held[0], 40)), "once one row is held, every later row is held too"
        assert changes == [False]
        # The freed reserve lets the journal record the fault itself, then rows wait in memory.
        await _until(lambda: "JOURNAL_FAILED" in _codes(journal))
        assert not (disk / RESERVE_FILE).exists() and not guard.ok
        for n in range(40, 45):
            assert await guard.append("test", {"n": n}, lane="L1") is None
        assert guard.status().held_rows == 5

        (disk / "filler").unlink()  # space comes back
        await _until(lambda: guard.ok)
        assert changes == [False, True] and (disk / RESERVE_FILE).exists()
        report = journal.verify()
        assert report.ok, report.problems
        rows = [e.payload.get("n", e.payload.get("code")) for e in journal.entries()]
        numbers = [r for r in rows if isinstance(r, int)]
        assert numbers == list(range(45)), "every row is in the journal once, in the order it came"
        assert rows.index("JOURNAL_FAILED") == rows.index(held[0]) + 1  # right after the row that failed
        assert rows[-1] == "JOURNAL_RECOVERED"
        assert (await guard.append("test", {"n": 45}, lane="L1")) is not None
    finally:
        await guard.stop()
        journal.close()


def test_lock_held_past_the_bound_degrades_and_drops_beyond_the_buffer_counted(tmp_path: Path):
    asyncio.run(_locked(tmp_path))


async def _locked(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite")
    guard = JournalGuard(journal, None, buffer_rows=10, write_timeout_s=0.2, retry_s=0.05)
    guard.start()
    other = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
    try:
        await guard.append("test", {"n": 0})
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock (busy timeout: 10 s)
        assert await guard.append("test", {"n": 1}) is None  # past write_timeout_s: held, still in flight
        assert not guard.ok and "longer than 0.2 s" in (guard.reason or "")
        for n in range(2, 30):
            assert await guard.append("test", {"n": n}) is None
        status = guard.status()
        # 10 rows fit: n=1, the JOURNAL_FAILED row, n=2..9; 20 were dropped and counted.
        assert status.held_rows == 10 and status.dropped_rows == 20
        await asyncio.sleep(0.3)
        assert not guard.ok  # still locked
        other.execute("COMMIT")
        await _until(lambda: guard.ok)
        assert journal.verify().ok
        rows = [e.payload for e in journal.entries()]
        numbers = [r["n"] for r in rows if "n" in r]
        assert numbers == list(range(10)), "the write in flight committed once, not twice"
        dropped = next(r for r in rows if r.get("code") == "JOURNAL_ROWS_DROPPED")
        assert dropped["dropped"] == 20 and dropped["kinds"] == {"test": 20}
        assert rows[-1]["code"] == "JOURNAL_RECOVERED" and rows[-1]["dropped"] == 20
    finally:
        other.close()
        await guard.stop()
        journal.close()


def test_a_row_the_journal_would_refuse_is_refused_at_once_not_held(tmp_path: Path):
    async def run() -> None:
        journal = Journal.open(tmp_path / "journal.sqlite")
        guard = JournalGuard(journal, None)
        try:
            with pytest.raises(ValueError):
                await guard.append("test", {"bad": float("nan")})
            assert guard.ok and guard.status().held_rows == 0
        finally:
            journal.close()
    asyncio.run(run())


def test_no_room_for_the_reserve_at_start_is_degraded(tmp_path: Path):
    with small_tmpfs(tmp_path / "disk", 2) as disk:
        async def run() -> None:
            journal = Journal.open(disk / "journal.sqlite")
            guard = JournalGuard(journal, disk / RESERVE_FILE, reserve_bytes=4 << 20, retry_s=0.05)
            guard.start()
            try:
                assert not guard.ok and "space reserve" in (guard.reason or "")
                assert not list(disk.glob(RESERVE_FILE + "*")), "no partial reserve left behind"
            finally:
                await guard.stop()
                journal.close()
        asyncio.run(run())


def test_a_stop_while_a_write_hangs_never_writes_its_row_twice(tmp_path: Path):
    async def run() -> None:
        journal = Journal.open(tmp_path / "journal.sqlite")
        guard = JournalGuard(journal, None, write_timeout_s=0.2, retry_s=0.05)
        guard.start()
        other = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            assert await guard.append("test", {"n": 1}) is None  # in flight, waiting on the lock
            await guard.stop()  # waits write_timeout_s for it, then leaves it alone
            other.execute("COMMIT")
            await _until(lambda: journal.count() >= 1)
            await asyncio.sleep(0.2)
            assert [e.payload for e in journal.entries()] == [{"n": 1}]
            assert journal.verify().ok
        finally:
            other.close()
            journal.close()
    asyncio.run(run())
