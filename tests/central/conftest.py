"""A central that has heard from gate HN: real journal rows uploaded over HTTP with the gate's token and signed head,
the gate's birth and telemetry applied as central's MQTT side applies them (CentralMqtt -> store; the MQTT path
itself is tested in tests/sync/test_monitoring.py), and one token of each operator role."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from edge.journal import Journal, load_or_create_head_key, signed_head
from sync.central.server import CentralServer
from sync.keys import generate_keypair
from sync.outbox import Outbox
from tests.sync.conftest import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.sync.helpers import TOKEN, enrolled

MONITOR = "monitor-token-for-the-page-tests-00001"
OPERATOR = "operator-token-for-the-page-tests-0001"
ADMIN = "admin-token-for-the-page-tests-0000001"
PUBLISHER = "publisher-token-for-the-page-tests-001"
ROLE_TOKENS = {"mai.monitor": ("monitor", MONITOR), "an.operator": ("operator", OPERATOR),
               "root.admin": ("admin", ADMIN), "pub.lisher": ("publisher", PUBLISHER)}

RELEASED_PLATE, RELEASED_CONTAINER, RELEASED_SEAL, RELEASED_DECL = "29C12345", "MSKU1234565", "VNSEAL0101", "10598765"
HELD_PLATE = "51D67890"


@dataclass
class Monitored:
    central: CentralServer
    journal_path: Path

    @property
    def url(self) -> str:
        return self.central.url


def _decision(tx: str, outcome: str, plate: str, reasons: list[str], declaration: str | None, container: str,
              seal: str) -> dict:
    return {"transaction": tx, "outcome": outcome, "reasons": reasons,
            "findings": [{"code": r, "detail": "", "text": r} for r in reasons], "declaration": declaration,
            "ruleset_version": "2026.12.2", "awaiting_readings": False,
            "facts": {"id": tx, "plates": [{"plate": plate, "normalised": plate, "confidence": 1.0}],
                      "containers": [{"number": container, "check_digit_ok": True}],
                      "seals": [{"seal_id": seal, "status": "intact"}]}}


def write_gate_journal(data_dir: Path) -> tuple[Journal, Outbox]:
    """The node's journal and outbox: a truck released and gone at L1, a truck held at L2, a tailgating alarm at L1."""
    journal = Journal.open(data_dir / "journal.sqlite")
    outbox = Outbox(journal)  # before the rows: each append queues its row in the same transaction
    now = time.time()
    journal.append("tx_opened", {"transaction": "t1"}, lane="L1", at=now - 300)
    journal.append("decision", _decision("t1", "release", RELEASED_PLATE, [], RELEASED_DECL, RELEASED_CONTAINER,
                                         RELEASED_SEAL), lane="L1", at=now - 290)
    journal.append("tx_closed", {"transaction": "t1", "result": "passed", "opened_at": now - 300,
                                 "closed_at": now - 280, "plates": [RELEASED_PLATE], "containers": [RELEASED_CONTAINER],
                                 "seals": [RELEASED_SEAL], "outcome": "release", "reasons": [],
                                 "declaration": RELEASED_DECL, "released_by": "auto", "decision_ms": 12.0},
                   lane="L1", at=now - 280)
    journal.append("alarm", {"code": "TAILGATING", "text": "a second vehicle followed the released truck"},
                   lane="L1", at=now - 279)
    journal.append("tx_opened", {"transaction": "t2"}, lane="L2", at=now - 200)
    journal.append("decision", _decision("t2", "hold", HELD_PLATE, ["SEAL_MISMATCH"], None, "TGHU1234560",
                                         "CNSEAL999999"), lane="L2", at=now - 190)
    return journal, outbox


def upload(url: str, data_dir: Path, journal: Journal, outbox: Outbox) -> None:
    """Send every queued journal row to central as the node's uploader does (gate token, signed head)."""
    events = outbox.peek(1000)
    head = signed_head(journal, load_or_create_head_key(data_dir), "HN")
    response = httpx.post(f"{url}/api/v1/gates/HN/events", headers={"Authorization": f"Bearer {TOKEN}"},
                          json={"events": events, "backlog": 0, **head}, timeout=10)
    assert response.status_code == 200, response.text


def apply_birth_and_telemetry(central: CentralServer, backlog: int = 3) -> None:
    """What CentralMqtt stores from the gate's birth and its telemetry topics."""
    store, now = central.store, time.time()
    store.record_status("HN", True, 0)
    store.set_telemetry("HN", "lanes", {"at": now, "lanes": [{"lane": "L1", "state": "IDLE", "faults": {}},
                                                              {"lane": "L2", "state": "DECIDED", "faults": {}}]})
    store.set_telemetry("HN", "devices", {"at": now, "devices": [
        {"device_id": "L1-anpr", "kind": "anpr", "lane": "L1", "connected": True, "last_error": None},
        {"device_id": "L2-eseal", "kind": "eseal", "lane": "L2", "connected": False,
         "last_error": "no frame for 10 s"}]})
    store.set_telemetry("HN", "sync", {"at": now + 1, "link": {"up": True, "state": "up", "since": now - 3600},
                                       "outbox_backlog": backlog,
                                       "cache": {"total": 12, "refreshed_at": datetime.fromtimestamp(
                                           now - 600, UTC).isoformat(), "max_age_s": 21600}})


@contextlib.contextmanager
def _monitored(tmp_path: Path, db_url: str) -> Iterator[Monitored]:
    private, _public = generate_keypair()
    options = enrolled(tmp_path / "node")
    options["api_tokens"] = ROLE_TOKENS
    central = CentralServer(db_url, private, **options).start()
    journal, outbox = write_gate_journal(tmp_path / "node")
    try:
        upload(central.url, tmp_path / "node", journal, outbox)
        apply_birth_and_telemetry(central)
        yield Monitored(central, tmp_path / "node" / "journal.sqlite")
    finally:
        outbox.close()
        journal.close()
        central.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def monitored(request, tmp_path) -> Iterator[Monitored]:
    """Central (plain HTTP on loopback; SQLite, then a real PostgreSQL) after gate HN's uploads, birth and telemetry."""
    url = f"sqlite:///{tmp_path / 'central.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with _monitored(tmp_path, url) as monitored:
        yield monitored


@pytest.fixture
def monitored_page(tmp_path) -> Iterator[Monitored]:
    """The same central on SQLite, for the browser tests."""
    with _monitored(tmp_path, f"sqlite:///{tmp_path / 'central.sqlite'}") as monitored:
        yield monitored
