"""The sync service's alarms go through the journal guard, as the lanes' rows do.

An alarm raised while the journal cannot write (a full disk, a lock held past the guard's bound) is
neither raised at the caller nor lost: the guard holds it in memory and writes it, in its place,
when the journal writes again, and the outbox then queues it for central like any other row.
Real failures only: a full tmpfs (root; skipped otherwise) and a write lock held by another connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from edge.cache import DeclarationCache
from edge.journal import Journal
from edge.journal_guard import RESERVE_FILE, JournalGuard
from sync.client import SyncService
from tests.conftest import wait_until
from tests.sync.helpers import fast_config
from tests.sync.test_disk_full import fill_disk, small_tmpfs


def _codes(journal: Journal) -> list[str]:
    return [e.payload["code"] for e in journal.entries(kinds=["alarm"])]


async def _forged_feed_answer(sync: SyncService) -> None:
    """Central's feed answer without a batch: refused, alarmed as FEED_MALFORMED; accept() must not raise."""
    assert await sync.accept({"not": "a batch"}, nonce="n") is False
    await wait_until(lambda: not sync._alarm_tasks, 10.0, "the guarded append returned (written or held)")


def test_a_sync_alarm_on_a_full_disk_is_held_then_written_when_space_returns(tmp_path: Path, keypair):
    with small_tmpfs(tmp_path / "disk", 4) as disk:
        asyncio.run(_full_disk(disk, tmp_path, keypair[1]))


async def _full_disk(disk: Path, tmp_path: Path, public) -> None:
    journal = Journal.open(disk / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "cache.sqlite")  # the cache's disk is fine
    guard = JournalGuard(journal, disk / RESERVE_FILE, reserve_bytes=1 << 20, retry_s=0.05)
    guard.start()
    sync = SyncService("HN", fast_config("http://127.0.0.1:9", public), journal, cache, public_key=public,
                       guard=guard)
    try:
        fill_disk(disk / "filler")
        n = 0
        while await guard.append("reading", {"n": n, "pad": "x" * 2000}, lane="IMP-1") is not None:
            n += 1
        await wait_until(lambda: "JOURNAL_FAILED" in _codes(journal), 10.0,
                         "JOURNAL_FAILED recorded in the freed reserve's space")

        await _forged_feed_answer(sync)
        assert "FEED_MALFORMED" not in _codes(journal) and not guard.ok
        assert guard.status().held_rows >= 1, "the alarm is held in memory, not lost"

        (disk / "filler").unlink()  # space comes back
        await wait_until(lambda: guard.ok, 10.0, "the journal writing again")
        codes = _codes(journal)
        assert codes.index("JOURNAL_FAILED") < codes.index("FEED_MALFORMED") < codes.index("JOURNAL_RECOVERED")
        assert journal.verify().ok
        queued = [row for row in sync.outbox.peek(10_000) if row["kind"] == "alarm"]
        assert any('"FEED_MALFORMED"' in row["payload"] for row in queued), "queued for central as well"
    finally:
        await sync.stop()
        await guard.stop()
        journal.close()
        cache.close()


def test_a_sync_alarm_while_the_journal_is_locked_is_held_then_written_once(tmp_path: Path, keypair):
    asyncio.run(_locked(tmp_path, keypair[1]))


async def _locked(tmp_path: Path, public) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "cache.sqlite")
    guard = JournalGuard(journal, None, write_timeout_s=0.2, retry_s=0.05)
    guard.start()
    sync = SyncService("HN", fast_config("http://127.0.0.1:9", public), journal, cache, public_key=public,
                       guard=guard)
    other = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the guard's bound
        await _forged_feed_answer(sync)
        assert not guard.ok and "FEED_MALFORMED" not in _codes(journal)
        other.execute("COMMIT")
        await wait_until(lambda: guard.ok, 10.0, "the journal writing again")
        assert _codes(journal).count("FEED_MALFORMED") == 1, "written once, not twice"
        assert journal.verify().ok
    finally:
        other.close()
        await sync.stop()
        await guard.stop()
        journal.close()
        cache.close()
