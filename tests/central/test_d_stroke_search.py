"""Central's truck search finds an `MĐ` plate (issue 29) however it is written and however an event stored it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from edge.journal import Journal
from sync.central.server import CentralServer
from sync.keys import generate_keypair
from sync.outbox import Outbox
from tests.central.conftest import MONITOR, ROLE_TOKENS, _decision, upload
from tests.sync.conftest import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.sync.helpers import enrolled


@pytest.fixture(params=["sqlite", "postgresql"])
def central_db(request, tmp_path) -> str:
    """Central's database: SQLite, then a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.mark.parametrize("query", ["29MĐ1-123.45", "29mđ1 123 45", "29MD1-123.45", "29MD112345", "MĐ1-123"])
def test_an_md_truck_is_found_whether_the_event_holds_d_or_d_with_stroke(tmp_path: Path, central_db: str,
                                                                          query: str) -> None:
    node = tmp_path / "node"
    private, _public = generate_keypair()
    central = CentralServer(central_db, private, **{**enrolled(node), "api_tokens": ROLE_TOKENS}).start()
    journal = Journal.open(node / "journal.sqlite")
    outbox = Outbox(journal)
    try:
        now = time.time()
        # t1 read now (matching form has D); t2 recorded by a node before matching form folded the stroke.
        for tx, plate, at in (("t1", "29MD112345", now - 100), ("t2", "29MĐ112345", now - 200),
                              ("t3", "29C12345", now - 300)):
            journal.append("decision", _decision(tx, "hold", plate, ["SEAL_MISMATCH"], None, "TGHU1234560",
                                                 "CNSEAL999999"), lane="L1", at=at)
        upload(central.url, node, journal, outbox)

        found = httpx.get(f"{central.url}/api/v1/monitor/search", params={"q": query},
                          headers={"Authorization": f"Bearer {MONITOR}"}, timeout=10).json()["trucks"]

        assert sorted(t["transaction"] for t in found) == ["t1", "t2"]
    finally:
        outbox.close()
        journal.close()
        central.stop()
