"""Archiving the journal of a node that syncs with a real central (over HTTP, its own store).

Only rows central acknowledged are archived, whatever the cut-off; the node keeps uploading after
the cut (central's chain continues from rows the node no longer holds); `verify --against-central`
(central's anchor) and `verify --archive` both pass afterwards.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from edge.cache import DeclarationCache
from edge.journal import Journal, verify_against_anchor
from sync.central.server import CentralServer
from sync.client import SyncService, fetch_anchor
from sync.journal_archive import archive_journal
from tests.conftest import wait_until
from tests.sync.helpers import assert_exactly_once_in_order, enrolled, fast_config

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0


def test_archive_takes_only_what_central_holds_and_central_still_matches(tmp_path: Path, keypair):
    asyncio.run(_scenario(tmp_path, keypair))


async def _scenario(tmp_path: Path, keypair) -> None:
    central = await asyncio.to_thread(CentralServer(f"sqlite:///{tmp_path / 'central.sqlite'}", keypair[0],
                                                    **enrolled(tmp_path)).start)
    config = fast_config(central.url, keypair[1], feed_poll_s=60.0)
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    sync = SyncService("HN", config, journal, cache, public_key=keypair[1])
    sync.start()
    try:
        for n in range(100):
            await journal.append_async("reading", {"n": n}, lane="IMP-1", at=T0 + n)
        await wait_until(lambda: sync.outbox.backlog() == 0, 30, "central to take the first 100 rows")
        await asyncio.to_thread(central.stop)  # the link to central is gone: later rows stay queued
        for n in range(100, 130):
            await journal.append_async("reading", {"n": n}, lane="IMP-1", at=T0 + n)

        # Every row is older than the cut-off; only the 100 central holds may go, while the node runs.
        result = await asyncio.to_thread(archive_journal, journal.path, T0 + 10**6)
        assert (result.first_seq, result.last_seq) == (1, 100)
        assert journal.verify().ok and [e.payload["n"] for e in journal.entries()] == list(range(100, 130))

        central = await asyncio.to_thread(CentralServer(f"sqlite:///{tmp_path / 'central.sqlite'}", keypair[0],
                                                        port=int(central.url.rsplit(":", 1)[1]),
                                                        **enrolled(tmp_path)).start)
        await wait_until(lambda: sync.outbox.backlog() == 0, 30, "the queued rows to reach central after the cut")
        held = central.store.events("HN")
        assert [e["seq"] for e in held] == list(range(1, 131))
        assert_exactly_once_in_order(held[100:], journal.entries())

        anchor = await asyncio.to_thread(fetch_anchor, "HN", config)
        report = verify_against_anchor(journal, anchor)
        assert report.ok, report.problems
    finally:
        await sync.stop()
        journal.close()
        cache.close()
        await asyncio.to_thread(central.stop)

    cli = subprocess.run([sys.executable, "-m", "edge.cli", "journal", "verify", "--db",
                          str(tmp_path / "journal.sqlite"), "--archive", str(tmp_path / "archive")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
