"""SIGKILL the syncing node at 10 random moments: central still ends with every event exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.journal import Journal
from sync.central.server import CentralServer
from sync.keys import public_b64
from tests.sync.helpers import TOKENS, assert_exactly_once_in_order

WORKER = Path(__file__).with_name("node_worker.py")


@pytest.mark.timeout(180)
def test_sigkill_ten_times_then_exactly_once(tmp_path, pg_url, keypair):
    central = CentralServer(pg_url, keypair[0], tokens=TOKENS).start()
    rng = random.Random(5)
    args = [sys.executable, str(WORKER), str(tmp_path), central.url, public_b64(keypair[1]), "1500"]
    try:
        for _ in range(10):
            worker = subprocess.Popen(args)
            time.sleep(rng.uniform(0.5, 2.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        assert subprocess.run(args, timeout=120).returncode == 0
        with Journal.open(tmp_path / "journal.sqlite") as journal:
            assert journal.verify().ok
            entries = journal.entries()
            seen_release: set[int] = set()
            for entry in entries:  # no barrier opened without a recorded release before it
                if entry.kind == "decision":
                    seen_release.add(entry.payload["tx"])
                elif entry.kind == "barrier":
                    assert entry.payload["tx"] in seen_release
            opens = [e.payload["tx"] for e in entries if e.kind == "barrier"]
            assert len(opens) == len(set(opens)) == 1500
            assert_exactly_once_in_order(central.store.events("HN"), entries)
    finally:
        central.stop()
