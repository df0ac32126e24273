"""The lane controller with a real journal (SQLite on disk) and a small fake barrier.

The barrier is the only stand-in: it remembers each command and which journal rows another
connection could already read when the command reached it, the way an auditor would see them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devices.readings import (
    BoomChanged,
    BoomPosition,
    DeviceFault,
    DeviceRecovered,
    Loop,
    LoopChanged,
    PlateRead,
    ScanRead,
    ScanVerdict,
    SealRead,
    SealStatus,
)
from devices.transports.modbus import ModbusIOError
from edge.cache import DeclarationCache
from edge.config import LaneConfig
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.journal import Journal
from edge.lane import LaneState
from edge.lane_control import LaneController
from edge.records import AlarmCode, JournalKind, reading_payload, replay
from tests.conftest import wait_until

NOW = datetime.now(UTC)
DECLARED = Declaration(
    number="105000000321", kind=DeclarationKind.IMPORT, gate="HUUNGHI", plates=("29C12345",), containers=(),
    seals=("SEAL321",), gross_weight_kg=None, channel=RiskChannel.GREEN, status=DeclarationStatus.CLEARED,
    valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
)
LANE = LaneConfig.model_validate({
    "id": "IMP-1", "direction": "import",
    "policy": {"required_readings": ["plate", "seal"], "collect_timeout_s": 20, "pre_arrival_window_s": 5},
    "devices": [{"id": "IMP-1-plc", "kind": "barrier", "profile": "generic-plc",
                 "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": 1502}}],
})
PLC = "IMP-1-plc"


def committed(path: Path) -> list[tuple[str, dict]]:
    """The journal rows another connection can read now (committed), oldest first."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(kind, json.loads(payload)) for kind, payload in conn.execute("SELECT kind, payload FROM journal "
                                                                              "ORDER BY seq")]
    finally:
        conn.close()


class FakeBarrier:
    """Just enough of devices.barrier.BarrierDriver for the controller: it answers, or fails opens."""

    def __init__(self, journal_path: Path, failing_opens: int = 0):
        self.journal_path = journal_path
        self.failing_opens = failing_opens
        self.first_poll = asyncio.Event()
        self.first_poll.set()
        self.inputs = None
        self.commands: list[tuple[str, list[tuple[str, dict]]]] = []  # (command, rows committed when it came)

    async def open(self) -> None:
        self.commands.append(("open", committed(self.journal_path)))
        if self.failing_opens:
            self.failing_opens -= 1
            raise ModbusIOError("no response from the PLC")

    async def close(self) -> None:
        self.commands.append(("close", committed(self.journal_path)))

    async def set_lights(self, green: bool) -> None:
        return None

    def opens(self) -> list[list[tuple[str, dict]]]:
        return [rows for command, rows in self.commands if command == "open"]


async def _controller(tmp_path: Path, failing_opens: int = 0, *, lane: LaneConfig = LANE,
                      declared: Declaration = DECLARED) -> tuple[LaneController, FakeBarrier]:
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "cache.sqlite")
    cache.upsert_many([declared])
    cache.mark_refreshed(NOW)
    barrier = FakeBarrier(journal.path, failing_opens)
    controller = LaneController(lane, gate="HUUNGHI", journal=journal, cache=cache, barrier=barrier,  # type: ignore[arg-type]
                                device_kinds={PLC: "barrier"})
    await controller.start()
    return controller, barrier


def _readings(at: float) -> list:
    return [PlateRead("IMP-1-anpr", "29C-123.45", 0.95, at, at),
            SealRead("IMP-1-eseal", "SEAL321", SealStatus.INTACT, 90, None, at, at)]


def _rows(controller: LaneController, *kinds: str) -> list:
    return controller.journal.entries(lane="IMP-1", kinds=list(kinds) or None)


def test_early_readings_then_arrival_journal_lane_states_in_causal_order(tmp_path):
    async def scenario():
        controller, barrier = await _controller(tmp_path)
        try:
            now = time.time()
            for reading in _readings(now):  # read a moment before the truck reaches the loop
                controller.submit(reading)
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
            await wait_until(lambda: len(_rows(controller, JournalKind.LANE_STATE)) >= 2, what="the lane decided")
            states = [(e.payload["from"], e.payload["to"]) for e in _rows(controller, JournalKind.LANE_STATE)]
            assert states == [("IDLE", "COLLECTING"), ("COLLECTING", "DECIDED")]
            kinds = [e.kind for e in _rows(controller) if e.kind not in ("reading", "loop")]
            assert kinds == ["tx_opened", "reading_attached", "reading_attached", "lane_state",  # IDLE→COLLECTING
                             "decision", "barrier_command", "lane_state"]  # then the decision: COLLECTING→DECIDED
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


def test_release_is_committed_to_the_journal_before_the_boom_is_told_to_open(tmp_path):
    async def scenario():
        controller, barrier = await _controller(tmp_path)
        try:
            now = time.time()
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
            for reading in _readings(now):
                controller.submit(reading)
            await wait_until(lambda: barrier.opens(), what="the open command")
            seen = barrier.opens()[0]
            decision = next(p for kind, p in seen if kind == JournalKind.DECISION)
            command = seen[-1]
            assert decision["outcome"] == "release" and decision["facts"]["plates"][0]["normalised"] == "29C12345"
            assert command == (JournalKind.BARRIER_COMMAND, {"command": "open", "transaction": decision["transaction"],
                                                             "released_by": "auto", "declarations": [DECLARED.number]})
            assert controller.state == LaneState.DECIDED and controller.machine.passage.open_commanded
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


def test_officer_release_is_journaled_with_the_officer_before_the_open(tmp_path):
    async def scenario():
        controller, barrier = await _controller(tmp_path)
        try:
            now = time.time()
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
            controller.submit(_readings(now)[0])
            controller.submit(SealRead("IMP-1-eseal", "SEAL999", SealStatus.INTACT, 90, None, now, now))  # not declared
            await wait_until(lambda: controller.machine.tx is not None and controller.machine.tx.decision is not None,
                             what="the truck held for its seal")
            assert barrier.opens() == []
            await controller.officer_action("release", "officer-12", "seal checked by hand")
            seen = barrier.opens()[0]
            actions = [p for kind, p in seen if kind == JournalKind.OFFICER_ACTION]
            assert actions and actions[0]["officer"] == "officer-12" and actions[0]["action"] == "release"
            assert seen[-1][1]["released_by"] == "officer-12"
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


def test_open_lost_to_a_silent_plc_is_retried_when_it_answers_again(tmp_path):
    async def scenario():
        controller, barrier = await _controller(tmp_path, failing_opens=1)
        try:
            now = time.time()
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
            for reading in _readings(now):
                controller.submit(reading)
            await wait_until(lambda: any(e.payload.get("code") == AlarmCode.BARRIER_OPEN_FAILED
                                         for e in _rows(controller, JournalKind.ALARM)), what="the failed open")
            assert len(barrier.opens()) == 1 and controller.machine.passage.open_pending
            controller.submit(DeviceFault(PLC, "no response", time.time()))
            await wait_until(lambda: controller.state == LaneState.FAULT, what="the lane in FAULT")
            controller.submit(DeviceRecovered(PLC, time.time()))
            await wait_until(lambda: len(barrier.opens()) == 2, what="the open sent again")
            retried = barrier.opens()[1]
            assert [kind for kind, _ in retried][-2:] == ["device_recovered", "barrier_command"]
            commands = [e.payload for e in _rows(controller, JournalKind.BARRIER_COMMAND)]
            assert [c["released_by"] for c in commands] == ["auto", "auto"]
            controller.submit(BoomChanged(PLC, BoomPosition.OPEN, time.time()))
            await wait_until(lambda: controller.state == LaneState.PASSING, what="the truck passing")
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


def test_restart_resumes_the_open_transaction_held_for_review_and_never_opens(tmp_path):
    async def scenario():
        controller, barrier = await _controller(tmp_path)
        now = time.time()
        controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
        controller.submit(_readings(now)[0])
        await wait_until(lambda: controller.machine.tx is not None and controller.machine.tx.plates,
                         what="the plate attached")
        open_tx = controller.machine.tx.id
        await controller.stop()
        controller.journal.close()
        restarted, barrier = await _controller(tmp_path)
        try:
            assert restarted.state == LaneState.DECIDED and restarted.machine.tx.id == open_tx
            assert "29C12345" in restarted.machine.tx.plates
            assert restarted.machine.tx.decision.reasons == ["NODE_RESTARTED"]
            assert barrier.opens() == []
            last = _rows(restarted, JournalKind.LANE_STATE)[-1].payload
            assert last == {"from": "RESTART", "to": "DECIDED"}
        finally:
            await restarted.stop()
            restarted.journal.close()

    asyncio.run(scenario())


# A lane that decides 0.3 s after the truck arrives: an X-ray analysis takes longer.
QUICK_LANE = LANE.model_copy(update={"policy": LANE.policy.model_copy(update={"collect_timeout_s": 0.3})})


def _scan(verdict: ScanVerdict, completed: bool = True) -> ScanRead:
    now = time.time()
    return ScanRead("IMP-1-xray", "SCAN-7", verdict, (), None, completed, now, now)


def _held_for(controller: LaneController, reason: str) -> bool:
    tx = controller.machine.tx
    return tx is not None and tx.decision is not None and reason in tx.decision.reasons


async def _hold_on_pending_scan(controller: LaneController) -> None:
    now = time.time()
    controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
    plate, seal = _readings(now)
    controller.submit(plate)
    controller.submit(_scan(ScanVerdict.PENDING, completed=False))  # scanned; the analysis takes minutes
    controller.submit(seal)
    await wait_until(lambda: _held_for(controller, "SCANNER_PENDING"), what="the hold at the collect timeout")


def test_x_ray_clear_after_the_collect_timeout_releases_the_waiting_truck_with_a_recorded_redecision(tmp_path):
    async def scenario():
        controller, barrier = await _controller(tmp_path, lane=QUICK_LANE)
        notices: list[tuple[str, dict]] = []
        controller.listeners.append(lambda lane, kind, payload: notices.append((kind, payload)))
        try:
            await _hold_on_pending_scan(controller)
            assert barrier.opens() == []
            controller.submit(_scan(ScanVerdict.CLEAR))
            await wait_until(lambda: barrier.opens(), what="the open command after the late clear")
            seen = barrier.opens()[0]  # what was committed when the PLC was told to open
            tail = [kind for kind, _ in seen]
            assert tail[-4:] == ["reading", "reading_attached", "decision", "barrier_command"]
            redecision = seen[-2][1]
            assert redecision["outcome"] == "release" and redecision["redecision"] is True
            assert redecision["previous"] == {"outcome": "hold", "reasons": ["SCANNER_PENDING"]}
            assert "SCAN-7 clear" in redecision["changed"]
            assert redecision["facts"]["scan"]["verdict"] == "clear"
            assert seen[-1][1] == {"command": "open", "transaction": redecision["transaction"], "released_by": "auto",
                                   "declarations": redecision["declarations"]}
            decisions = [p for kind, p in notices if kind == "decision"]
            assert [d["outcome"] for d in decisions] == ["hold", "release"] and decisions[-1]["redecision"]
            lane_view = [p for kind, p in notices if kind == "lane"][-1]
            assert lane_view["transaction"]["decision"]["outcome"] == "release"
            # a restart now would rebuild the truck with the verdict it was released on
            history = controller._history_from_journal()
            assert any(isinstance(r, ScanRead) and r.verdict == ScanVerdict.CLEAR
                       for r in history.open_transaction.readings)
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


def test_x_ray_suspect_after_the_collect_timeout_keeps_the_truck_held_with_the_new_reason(tmp_path):
    async def scenario():
        controller, barrier = await _controller(tmp_path, lane=QUICK_LANE)
        try:
            await _hold_on_pending_scan(controller)
            controller.submit(_scan(ScanVerdict.SUSPECT))
            await wait_until(lambda: _held_for(controller, "SCANNER_SUSPECT"), what="the hold updated")
            decisions = [e.payload for e in _rows(controller, JournalKind.DECISION)]
            assert [d["outcome"] for d in decisions] == ["hold", "hold"] and decisions[-1]["redecision"] is True
            assert barrier.opens() == [] and controller.state == LaneState.DECIDED
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


def test_declaration_cleared_while_the_truck_waits_releases_it_when_the_lane_is_asked_again(tmp_path):
    async def scenario():
        waiting = replace(DECLARED, status=DeclarationStatus.HELD)
        controller, barrier = await _controller(tmp_path, declared=waiting)
        try:
            now = time.time()
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
            for reading in _readings(now):
                controller.submit(reading)
            await wait_until(lambda: _held_for(controller, "DECLARATION_NOT_CLEARED"), what="the hold")
            controller.cache.upsert_many([replace(DECLARED, version=2)])  # the feed brings the clearance
            controller.reevaluate("declaration feed update")
            await wait_until(lambda: barrier.opens(), what="the open command after the clearance")
            decision = barrier.opens()[0][-2][1]
            assert decision["outcome"] == "release" and decision["changed"] == "declaration feed update"
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


def test_declaration_feed_batch_that_clears_a_held_trucks_declaration_releases_it(tmp_path):
    from sync.client import SyncService
    from sync.keys import generate_keypair, sign
    from tests.sync.helpers import fast_config

    async def scenario():
        controller, barrier = await _controller(tmp_path, declared=replace(DECLARED, status=DeclarationStatus.HELD))
        central, central_public = generate_keypair()
        sync = SyncService("HUUNGHI", fast_config("http://127.0.0.1:9", central_public), controller.journal,
                           controller.cache, public_key=central_public,
                           on_declarations_changed=lambda: controller.reevaluate("declaration feed update"))
        try:
            now = time.time()
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
            for reading in _readings(now):
                controller.submit(reading)
            await wait_until(lambda: _held_for(controller, "DECLARATION_NOT_CLEARED"), what="the hold")
            cleared = {"number": DECLARED.number, "kind": "import", "gate": "HUUNGHI", "plates": ["29C12345"],
                       "containers": [], "seals": ["SEAL321"], "channel": "green", "status": "cleared",
                       "valid_from": DECLARED.valid_from.isoformat(), "valid_until": DECLARED.valid_until.isoformat(),
                       "version": 2}
            batch = {"gate": "HUUNGHI", "cursor_from": 0, "cursor_to": 1, "issued_at": time.time(), "nonce": "n1",
                     "declarations": [cleared], "revocations": []}
            assert await sync.accept({"batch": batch, "signature": sign(central, batch)}, 0, 0.0, nonce="n1")
            await wait_until(lambda: barrier.opens(), what="the open command after the feed cleared the declaration")
            decision = barrier.opens()[0][-2][1]
            assert decision["redecision"] is True and decision["changed"] == "declaration feed update"
            assert decision["previous"]["reasons"] == ["DECLARATION_NOT_CLEARED"]
        finally:
            await controller.stop()
            controller.journal.close()

    asyncio.run(scenario())


@dataclass
class Row:
    """A journal row as replay reads it."""

    seq: int
    kind: str
    payload: dict = field(default_factory=dict)
    at: float = 100.0
    lane: str | None = "IMP-1"


def test_replay_rebuilds_the_interrupted_truck_from_what_its_decision_was_made_on():
    plate, seal = _readings(100.0)
    late = SealRead("IMP-1-eseal", "SEAL999", SealStatus.TAMPERED, 90, None, 101.0, 101.0)
    rows = [Row(1, "tx_opened", {"transaction": "T1"}), Row(2, "reading_attached", {"transaction": "T1",
                                                                                     **reading_payload(plate)}),
            Row(3, "reading", reading_payload(seal)),
            Row(4, "decision", {"transaction": "T1", "outcome": "hold", "findings": [{"code": "SEAL_MISSING"}]}),
            Row(5, "reading", reading_payload(late)),
            Row(6, "barrier_command", {"command": "open", "transaction": "T1", "released_by": "officer-12"})]
    history = replay(rows)
    tx = history.open_transaction
    assert tx is not None and tx.id == "T1" and tx.readings == [plate, seal]  # the late seal is not one of them
    assert tx.decision.reasons == ["SEAL_MISSING"] and tx.open_commanded and tx.released_by == "officer-12"
    assert replay([*rows, Row(7, "tx_closed", {"transaction": "T1", "result": "passed",
                                               "declaration": "105000000321"})]).open_transaction is None


def test_replay_counts_tamper_openings_since_the_last_acknowledgement():
    tamper = {"code": AlarmCode.BOOM_OPEN_WITHOUT_RELEASE.value, "text": "boom opened"}
    rows = [Row(1, "alarm", tamper, at=10.0), Row(2, "officer_action", {"action": "acknowledge_alarm"}),
            Row(3, "alarm", tamper, at=30.0), Row(4, "alarm", {"code": "TAILGATING"}), Row(5, "alarm", tamper, at=50.0)]
    latched = replay(rows).latched_alarm
    assert latched is not None and latched["openings"] == 2 and latched["since"] == 30.0
    assert replay([*rows, Row(6, "officer_action", {"action": "acknowledge_alarm"})]).latched_alarm is None


def test_consolidated_load_passes_once_on_both_its_declarations_and_a_restart_remembers_both(tmp_path):
    first = Declaration(
        number="105000000331", kind=DeclarationKind.IMPORT, gate="huunghi", plates=("51D67890",), containers=(),
        seals=("SEAL331",), gross_weight_kg=None, channel=RiskChannel.GREEN, status=DeclarationStatus.CLEARED,
        valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
    )
    second = Declaration(
        number="105000000332", kind=DeclarationKind.IMPORT, gate="HUUNGHI", plates=("51D67890",), containers=(),
        seals=("SEAL332",), gross_weight_kg=None, channel=RiskChannel.GREEN, status=DeclarationStatus.CLEARED,
        valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
    )

    async def scenario():
        controller, barrier = await _controller(tmp_path)
        controller.cache.upsert_many([first, second])
        try:
            now = time.time()
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, True, now))
            controller.submit(PlateRead("IMP-1-anpr", "51D-678.90", 0.95, now, now))
            controller.submit(SealRead("IMP-1-eseal", "SEAL331", SealStatus.INTACT, 90, None, now, now))
            # the plate again: once its row is journaled, the lane has finished with the seal (one event at a time)
            controller.submit(PlateRead("IMP-1-anpr", "51D-678.90", 0.95, now, now))
            await wait_until(lambda: len(_rows(controller, JournalKind.READING)) == 3, what="three readings handled")
            assert barrier.opens() == []  # the other declaration's seal may still come: keep collecting
            controller.submit(SealRead("IMP-1-eseal", "SEAL332", SealStatus.INTACT, 90, None, now, now))
            await wait_until(lambda: barrier.opens(), what="the open command")
            decision = next(p for kind, p in barrier.opens()[0] if kind == JournalKind.DECISION)
            assert decision["outcome"] == "release"
            assert decision["declarations"] == [first.number, second.number]
            controller.submit(BoomChanged(PLC, BoomPosition.OPEN, time.time()))
            controller.submit(LoopChanged(PLC, Loop.SAFETY, True, time.time()))
            controller.submit(LoopChanged(PLC, Loop.ARRIVAL, False, time.time()))
            controller.submit(LoopChanged(PLC, Loop.SAFETY, False, time.time()))
            await wait_until(lambda: len(barrier.commands) >= 2, what="the close behind the truck")
            controller.submit(BoomChanged(PLC, BoomPosition.CLOSED, time.time()))
            await wait_until(lambda: _rows(controller, JournalKind.TX_CLOSED), what="the transaction closed")
            closed = _rows(controller, JournalKind.TX_CLOSED)[-1].payload
            assert closed["result"] == "passed" and closed["declarations"] == [first.number, second.number]
            claims = controller.cache.claims([first.number, second.number])
            assert {n: c.passage.value for n, c in claims.items()} == {first.number: "passed", second.number: "passed"}
        finally:
            await controller.stop()
            controller.journal.close()
        restarted, _ = await _controller(tmp_path)
        try:
            claims = restarted.cache.claims([first.number, second.number])
            assert {n: c.passage.value for n, c in claims.items()} == {first.number: "passed", second.number: "passed"}
        finally:
            await restarted.stop()
            restarted.journal.close()

    asyncio.run(scenario())
