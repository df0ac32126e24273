"""Red team against the event chain: forged, gapped or re-sent-different uploads, and a journal doctored on the node.

Central checks every upload against the chain it holds and the journal head the node signs with
its own key; `smartgate journal verify --against-central` compares a local journal with central's
copy. The journals here are doctored the way an intruder with a shell on the node would: triggers
dropped, rows deleted or rewritten and re-chained, the head anchor rewritten to match, so that the
local `journal verify` alone still says OK.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.journal import Journal, entry_hash, load_or_create_head_key, signed_head
from sync.keys import generate_keypair
from sync.outbox import Outbox
from tests.conftest import wait_until
from tests.security.central_helpers import GATE, Node, running_central, site_file


@pytest.fixture
def central(tmp_path):
    with running_central(tmp_path) as running:
        yield running


def _rows(node_dir: Path, count: int, gate: str = GATE, key=None) -> tuple[list[dict], dict]:
    """`count` real journal rows as the outbox uploads them, and the head signed by the node's key (or `key`)."""
    journal = Journal.open(node_dir / "journal.sqlite")
    outbox = Outbox(journal)
    for i in range(count):
        journal.append("decision", {"tx": i, "outcome": "hold"}, lane="IMP-1")
    rows = outbox.peek(count)
    head = signed_head(journal, key or load_or_create_head_key(node_dir), gate)
    outbox.close()
    journal.close()
    return rows, head


def _rehash(row: dict, **changes) -> dict:
    """The row with `changes`, its hash recomputed as a forger who knows the algorithm would."""
    row = {**row, **changes}
    row["hash"] = entry_hash(row["prev_hash"], row["seq"], row["event_id"], row["at"], row["lane"], row["kind"],
                             json.loads(row["payload"]))
    return row


def _alarms(central) -> list[str]:
    with central.client("monitor") as monitor:
        return [a["code"] for a in monitor.get("/api/v1/alarms", params={"gate": GATE}).json()]


def _stored(central) -> list[int]:
    with central.client("monitor") as monitor:
        return [e["seq"] for e in monitor.get(f"/api/v1/gates/{GATE}/events").json()]


def test_an_upload_with_a_seq_gap_is_refused_and_raised_as_an_alarm(central):
    rows, head = _rows(central.node_dir, 6)
    with central.client("gate") as gate:
        assert gate.post(f"/api/v1/gates/{GATE}/events", json={"events": rows[:3], **head}).status_code == 200
        gap = gate.post(f"/api/v1/gates/{GATE}/events", json={"events": rows[4:], **head})
        assert gap.status_code == 409 and gap.json()["detail"]["code"] == "SEQ_GAP"
        assert _stored(central) == [1, 2, 3]
        assert _alarms(central) == ["SEQ_GAP"]
        # the gate's genuine next batch still goes through: a refusal does not wedge it
        assert gate.post(f"/api/v1/gates/{GATE}/events", json={"events": rows[3:], **head}).status_code == 200
    assert _stored(central) == [1, 2, 3, 4, 5, 6]


def test_forged_rows_a_forged_prev_hash_and_a_changed_resend_are_refused_identical_resends_accepted(central):
    rows, head = _rows(central.node_dir, 6)
    forger, _ = generate_keypair()
    forged_head = {**head, "head_signature": base64.b64encode(
        forger.sign(json.dumps(head["head"], sort_keys=True, separators=(",", ":")).encode())).decode()}
    with central.client("gate") as gate:
        def upload(events, signed=head):
            return gate.post(f"/api/v1/gates/{GATE}/events", json={"events": events, **signed})

        assert upload(rows[:3]).status_code == 200
        attempts = {
            "EVENT_FORGED": upload([{**rows[3], "payload": '{"outcome":"release","tx":3}'}]),  # hash left as it was
            "CHAIN_BROKEN": upload([_rehash(rows[3], prev_hash="f" * 64)]),
            "EVENT_CONFLICT": upload([_rehash(rows[1], payload='{"outcome":"release","tx":1}')]),
            "HEAD_BAD_SIGNATURE": upload(rows[3:], forged_head),
        }
        for code, answer in attempts.items():
            assert answer.status_code in (409, 422) and answer.json()["detail"]["code"] == code, (code, answer.text)
        assert _stored(central) == [1, 2, 3]
        assert upload(rows[:3]).json()["acked"] == [r["event_id"] for r in rows[:3]]  # at-least-once re-send
        assert upload(rows).status_code == 200
    assert _stored(central) == [1, 2, 3, 4, 5, 6]
    assert _alarms(central) == list(attempts)


async def _upload_all(central, rows: int) -> None:
    """The real node appends `rows` and uploads them to central (HTTPS, signed heads)."""
    node = Node(central.node_dir, central.config())
    node.sync.start()
    try:
        for i in range(rows):
            node.journal.append("decision", {"tx": i, "outcome": "hold" if i % 3 else "release"}, lane="IMP-1")
        await wait_until(lambda: node.sync.outbox.backlog() == 0 and len(_stored(central)) == rows, 20,
                         "the journal to reach central")
    finally:
        await node.stop()


async def _append_and_try_upload(central, expect_code: str) -> dict:
    """The node, restarted on its doctored journal, appends a row; central must refuse the upload."""
    node = Node(central.node_dir, central.config())
    node.sync.start()
    try:
        node.journal.append("decision", {"tx": 99, "outcome": "release"}, lane="IMP-1")
        await wait_until(lambda: node.sync.upload_refused is not None, 20, "central's refusal")
        assert node.sync.upload_refused == expect_code
        alarms = [e.payload for e in node.journal.entries(kinds=["alarm"])]
        assert any(a["code"] == "CENTRAL_UPLOAD_REFUSED" and expect_code in a["text"] for a in alarms)
        return node.sync.status()
    finally:
        await node.stop()


def _doctor(journal_file: Path, statements) -> None:
    """Edit the journal as an intruder would: triggers dropped first."""
    with contextlib.closing(sqlite3.connect(journal_file, isolation_level=None)) as conn:
        for trigger in ("journal_no_update", "journal_no_delete", "journal_head_only_forward"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        statements(conn)


def _verify(tmp_path: Path, central, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", "journal", "verify", "--site",
                           str(site_file(tmp_path, central)), "--data-dir", str(central.node_dir), *extra],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(90)
def test_a_truncated_journal_with_its_head_rewritten_is_found_against_central(central, tmp_path):
    asyncio.run(_upload_all(central, 10))

    def truncate(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM journal WHERE seq > 7")
        conn.execute("UPDATE journal_head SET seq = 7, hash = (SELECT hash FROM journal WHERE seq = 7)")

    _doctor(central.node_dir / "journal.sqlite", truncate)
    local = _verify(tmp_path, central)
    assert local.returncode == 0, local.stdout + local.stderr  # the doctored journal passes on its own
    anchored = _verify(tmp_path, central, "--against-central")
    assert anchored.returncode == 1, anchored.stdout + anchored.stderr
    assert "journal truncated" in anchored.stdout and "seq 10" in anchored.stdout
    asyncio.run(_append_and_try_upload(central, "JOURNAL_TRUNCATED"))
    assert "JOURNAL_TRUNCATED" in _alarms(central)
    assert _stored(central) == list(range(1, 11))  # central's copy is untouched


@pytest.mark.timeout(90)
def test_a_rewritten_and_rechained_journal_is_found_against_central(central, tmp_path):
    asyncio.run(_upload_all(central, 10))

    def rewrite(conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT seq, event_id, at, lane, kind, payload, prev_hash FROM journal ORDER BY seq")
        prev = None
        for seq, event_id, at, lane, kind, payload, prev_hash in rows.fetchall():
            body = json.loads(payload)
            if seq == 5:
                assert body["outcome"] == "hold"
                body["outcome"] = "release"  # the held truck now reads as released
            prev = prev_hash if prev is None else prev
            new_hash = entry_hash(prev, seq, event_id, at, lane, kind, body)
            conn.execute("UPDATE journal SET payload = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                         (json.dumps(body, sort_keys=True, separators=(",", ":")), prev, new_hash, seq))
            prev = new_hash
        conn.execute("UPDATE journal_head SET hash = ? WHERE id = 1", (prev,))

    _doctor(central.node_dir / "journal.sqlite", rewrite)
    local = _verify(tmp_path, central)
    assert local.returncode == 0, local.stdout + local.stderr  # re-chained: the local check cannot tell
    anchored = _verify(tmp_path, central, "--against-central")
    assert anchored.returncode == 1, anchored.stdout + anchored.stderr
    assert "journal rewritten: seq 10" in anchored.stdout
    asyncio.run(_append_and_try_upload(central, "CHAIN_BROKEN"))
    assert "CHAIN_BROKEN" in _alarms(central)


@pytest.mark.timeout(60)
def test_an_intact_journal_matches_central(central, tmp_path):
    asyncio.run(_upload_all(central, 5))
    anchored = _verify(tmp_path, central, "--against-central")
    assert anchored.returncode == 0, anchored.stdout + anchored.stderr
    assert "matches central: signed head seq 5" in anchored.stdout


@pytest.mark.timeout(90)
def test_enrolment_registers_the_nodes_key_so_only_its_heads_are_believed(central, tmp_path):
    """`central node-key` on the node, `central enrol-gate` on central: the new node uploads, an impostor cannot."""
    new_node = tmp_path / "node-2"
    site = site_file(tmp_path, central)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge.cli", "central", *args], capture_output=True, text=True,
                              timeout=60)

    made = cli("node-key", "--site", str(site), "--data-dir", str(new_node))
    assert made.returncode == 0, made.stderr
    assert (new_node / "journal-head.key").stat().st_mode & 0o077 == 0
    public = made.stdout.strip()
    token_file = tmp_path / "node-2.token"
    db = f"sqlite:///{tmp_path / 'central' / 'central.sqlite'}"
    enrolled = cli("enrol-gate", "--gate", "LB", "--node-key", public, "--db", db, "--out", str(token_file))
    assert enrolled.returncode == 0, enrolled.stderr
    assert central.server.store.head_key("LB") == public
    token = token_file.read_text(encoding="utf-8").strip()
    rows, head = _rows(new_node, 3, "LB")
    _, impostor = _rows(tmp_path / "impostor", 3, "LB", key=generate_keypair()[0])
    with central.client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        refused = client.post("/api/v1/gates/LB/events", json={"events": rows, **impostor}, headers=headers)
        assert refused.status_code == 422 and refused.json()["detail"]["code"] == "HEAD_BAD_SIGNATURE"
        assert client.post("/api/v1/gates/LB/events", json={"events": rows, **head}, headers=headers).status_code == 200
        # the same over the API, by an admin: a re-enrolment replaces the token; withdrawing it shuts the gate out
        again = client.post("/api/v1/gates/LB/enrol", json={"head_key": public}, headers=central.headers("admin"))
        assert again.status_code == 200 and again.json()["token"] != token
        assert client.get("/api/v1/gates/LB/anchor", headers=headers).status_code == 401
        fresh = {"Authorization": f"Bearer {again.json()['token']}"}
        assert client.get("/api/v1/gates/LB/anchor", headers=fresh).json()["head"]["seq"] == 3
        assert client.delete("/api/v1/gates/LB/token", headers=central.headers("admin")).status_code == 200
        assert client.get("/api/v1/gates/LB/anchor", headers=fresh).status_code == 401
