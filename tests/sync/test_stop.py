"""A node shutting down must not hang on its sync service.

Python 3.11's asyncio.wait_for swallowed a cancel that landed in the same loop turn as the wake-up
it was waiting for; the sync loop then slept on and SyncService.stop() waited forever (seen as a
sync bench that hung about one run in six). Here the wake-up (a journal append) and the stop are
issued zero to four loop turns apart, which covers the turns where the old code lost the cancel.
"""

from __future__ import annotations

import asyncio

import pytest

from edge.cache import DeclarationCache
from edge.journal import Journal
from simulators.broker import free_port
from sync.client import SyncService
from tests.sync.helpers import fast_config


@pytest.mark.timeout(60)
@pytest.mark.parametrize("turns", range(5))
def test_stop_returns_when_a_journal_append_wakes_the_uploader_at_the_same_moment(tmp_path, keypair, turns):
    _, public = keypair

    async def scenario() -> None:
        journal = Journal.open(tmp_path / "journal.sqlite")
        cache = DeclarationCache.open(tmp_path / "cache.sqlite")
        sync = SyncService("HN", fast_config(f"http://127.0.0.1:{free_port()}", public, feed_poll_s=30.0),
                           journal, cache, public_key=public)
        sync.start()
        for _ in range(20):  # let both loops reach their idle wait (the outbox is empty)
            await asyncio.sleep(0)
        journal.append("reading", {"plate": "29C12345"}, lane="IMP-1")
        for _ in range(turns):
            await asyncio.sleep(0)
        try:
            await asyncio.wait_for(sync.stop(), 10)  # TimeoutError here is the hang
        finally:
            journal.close()
            cache.close()

    asyncio.run(scenario())
