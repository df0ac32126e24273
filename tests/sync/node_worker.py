"""A node-like process for the SIGKILL test: journals trucks (decision before barrier) and syncs them.

Usage: python tests/sync/node_worker.py DATA_DIR CENTRAL_URL PUBLIC_KEY_B64 N_TX
Resumes from the journal after a kill: never re-opens a barrier for a transaction whose open was
already journaled, and opens only after the RELEASE row is committed (persist before acting).
Exits 0 once N_TX transactions are journaled and central has every event.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.cache import DeclarationCache  # noqa: E402
from edge.journal import Journal  # noqa: E402
from sync.client import SyncService  # noqa: E402
from sync.keys import parse_public_key  # noqa: E402
from tests.sync.helpers import fast_config  # noqa: E402


async def main(data: Path, url: str, key: str, n_tx: int) -> int:
    journal = Journal.open(data / "journal.sqlite")
    cache = DeclarationCache.open(data / "declarations.sqlite")
    public = parse_public_key(key)
    sync = SyncService("HN", fast_config(url, public, upload_batch=50), journal, cache, public_key=public)
    sync.start()
    done = {e.payload["tx"] for e in journal.entries(kinds=["tx_closed"])}
    released = {e.payload["tx"] for e in journal.entries(kinds=["decision"])}
    opened = {e.payload["tx"] for e in journal.entries(kinds=["barrier"])}
    for tx in range(n_tx):
        if tx in done:
            continue
        lane = f"L{tx % 3}"
        if tx not in released:
            journal.append("decision", {"tx": tx, "outcome": "release"}, lane=lane)
        if tx not in opened:
            journal.append("barrier", {"tx": tx, "command": "open"}, lane=lane)  # after the RELEASE row
        journal.append("tx_closed", {"tx": tx}, lane=lane)
        await asyncio.sleep(0.002)
    while sync.outbox.backlog():
        await asyncio.sleep(0.05)
    await sync.stop()
    journal.close()
    cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))))
