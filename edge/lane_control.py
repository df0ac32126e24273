"""Carries out the lane machine's actions: journal first, then the barrier; rules; timers.

One controller per lane. Events (device readings, loop changes, officer actions, timeouts) are
queued and handled one at a time, so the lane machine never sees two events at once. Every
reading, decision, officer action and barrier command is journaled before anything acts on it:
`await journal.append_async(...)` returns only once the row is committed (in one transaction with
whatever other lanes appended meanwhile: group commit), and the fsync does not block the loop.

Journal kinds written here besides readings and decisions: `late_reading` (a reading for a truck
already decided, not used by its decision), `unauthorised_passage` (a vehicle went under a boom
opened with no release) and the `alarm` rows, among them the latched BOOM_OPEN_WITHOUT_RELEASE
that a supervisor's `acknowledge_alarm` (an `officer_action` row with the user's name) clears.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from devices.barrier import BarrierDriver, SafetyInterlock
from devices.readings import (
    BoomChanged,
    BoomPosition,
    ContainerRead,
    DeviceEvent,
    DeviceFault,
    DeviceRecovered,
    LoopChanged,
    PlateRead,
    Reading,
    ScanRead,
    ScanVerdict,
    SealRead,
    SealStatus,
    WeightRead,
)
from devices.transports.modbus import ModbusIOError
from edge.cache import DeclarationCache
from edge.config import LaneConfig
from edge.journal import Journal
from edge.lane import (
    TAMPER_ALARM,
    Action,
    BoomEvent,
    CollectTimeout,
    Decided,
    DeviceFailed,
    DeviceRestored,
    LaneError,
    LaneEvent,
    LaneMachine,
    LaneState,
    LoopEvent,
    OfficerAction,
    OpenFailed,
    ReadingEvent,
)
from edge.rules import Decision, DecisionContext, Finding, Outcome, decide
from edge.transaction import Transaction

log = logging.getLogger(__name__)

Listener = Callable[[str, str, dict[str, Any]], None]


_READING_TYPES = {cls.__name__: cls for cls in (PlateRead, SealRead, ContainerRead, WeightRead, ScanRead)}


def reading_payload(reading: Reading) -> dict[str, Any]:
    """JSON-friendly form of a reading, with its type."""
    data = asdict(reading)
    if isinstance(reading, SealRead):
        data["status"] = reading.status.value
    elif isinstance(reading, ScanRead):
        data["verdict"] = reading.verdict.value
        data["containers"] = list(reading.containers)
    data["type"] = type(reading).__name__
    return data


def reading_from_payload(data: dict[str, Any]) -> Reading:
    """Inverse of reading_payload (for rebuilding a transaction from the journal)."""
    data = dict(data)
    kind = data.pop("type")
    data.pop("transaction", None)
    if kind == "SealRead":
        data["status"] = SealStatus(data["status"])
    elif kind == "ScanRead":
        data["verdict"] = ScanVerdict(data["verdict"])
        data["containers"] = tuple(data["containers"])
    return _READING_TYPES[kind](**data)


def decision_from_dict(data: dict[str, Any]) -> Decision:
    """Rebuild a Decision from its journaled form."""
    return Decision(
        outcome=Outcome(data["outcome"]),
        findings=tuple(Finding(f["code"], f.get("detail", "")) for f in data.get("findings", [])),
        declaration=data.get("declaration"),
        ruleset_version=data.get("ruleset_version", ""),
        awaiting_readings=data.get("awaiting_readings", False),
    )


class LaneController:
    """The I/O façade of one lane."""

    def __init__(
        self,
        lane: LaneConfig,
        *,
        gate: str,
        journal: Journal,
        cache: DeclarationCache,
        barrier: BarrierDriver,
        device_kinds: dict[str, str],
        clock: Callable[[], float] = time.time,
    ):
        self.lane = lane
        self.gate = gate
        self.journal = journal
        self.cache = cache
        self.barrier = barrier
        self.device_kinds = device_kinds
        self.clock = clock
        self.machine = LaneMachine(lane.id, lane.policy)
        self.used_declarations: set[str] = set()
        self.listeners: list[Listener] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=200)
        self.decision_latencies_ms: deque[float] = deque(maxlen=5000)
        self.anomalies = 0
        self._queue: asyncio.Queue[tuple[LaneEvent | DeviceEvent, asyncio.Future | None]] = (
            asyncio.Queue()
        )
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self, restore: bool = True) -> None:
        """Rebuild state from the journal (after the first barrier poll) and start handling events."""
        self.used_declarations = self._used_declarations_from_journal()
        self.machine.alarm = self._latched_alarm_from_journal()
        if restore:
            try:
                async with asyncio.timeout(3.0):
                    await self.barrier.first_poll.wait()
            except TimeoutError:
                log.warning("lane %s: barrier did not answer at start-up", self.lane.id)
            await self._restore_from_journal()
        self._task = asyncio.create_task(self._run(), name=f"lane-{self.lane.id}")

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, event: LaneEvent | DeviceEvent) -> None:
        """Queue an event from a driver or a timer (thread: the event loop)."""
        self._queue.put_nowait((event, None))

    async def officer_action(self, action: str, officer: str, reason: str) -> dict[str, Any]:
        """Release or refuse the current truck for an officer; LaneError if not possible now."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((OfficerAction(action, officer, reason), future))
        await future
        return self.machine.snapshot()

    async def _run(self) -> None:
        while True:
            event, future = await self._queue.get()
            try:
                await self._handle(event)
            except LaneError as exc:
                if future is not None:
                    future.set_exception(exc)
                    continue
                self.anomalies += 1
                log.warning("%s", exc)
                await self.journal.append_async("alarm", {"code": "UNEXPECTED_EVENT", "text": str(exc)},
                                    lane=self.lane.id)
            except Exception as exc:  # keep the lane alive; the event is journaled as an anomaly
                log.exception("lane %s failed handling %r", self.lane.id, event)
                self.anomalies += 1
                if future is not None and not future.done():
                    future.set_exception(exc)
                    continue
            if future is not None and not future.done():
                future.set_result(None)

    # ------------------------------------------------------------ events

    async def _handle(self, event: LaneEvent | DeviceEvent) -> None:
        now = self.clock()
        lane_event = await self._to_lane_event(event, now)
        if lane_event is None:
            return
        actions = self.machine.handle(lane_event, now)
        await self._carry_out(actions)
        self._notify("lane", self.machine.snapshot())

    async def _to_lane_event(self, event: LaneEvent | DeviceEvent, now: float) -> LaneEvent | None:
        if isinstance(event, Reading):
            entry = await self.journal.append_async("reading", reading_payload(event), lane=self.lane.id, at=now)
            self._notify("reading", {"seq": entry.seq, **reading_payload(event)})
            return ReadingEvent(event)
        if isinstance(event, LoopChanged):
            await self.journal.append_async("loop", {"loop": event.loop.value, "occupied": event.occupied},
                                lane=self.lane.id, at=now)
            return LoopEvent(event.loop.value, event.occupied)
        if isinstance(event, BoomChanged):
            if event.position in (BoomPosition.OPEN, BoomPosition.CLOSED):
                await self.journal.append_async("boom", {"position": event.position.value}, lane=self.lane.id, at=now)
                return BoomEvent(event.position == BoomPosition.OPEN)
            return None
        if isinstance(event, DeviceFault):
            await self.journal.append_async("device_fault", {"device": event.device_id, "error": event.error},
                                lane=self.lane.id, at=now)
            self._notify("device", {"device": event.device_id, "connected": False, "error": event.error})
            return DeviceFailed(event.device_id, event.error,
                                is_barrier=self.device_kinds.get(event.device_id) == "barrier")
        if isinstance(event, DeviceRecovered):
            await self.journal.append_async("device_recovered", {"device": event.device_id}, lane=self.lane.id, at=now)
            self._notify("device", {"device": event.device_id, "connected": True})
            return DeviceRestored(event.device_id)
        return event

    async def _carry_out(self, actions: Iterable[Action]) -> None:
        for action in actions:
            await getattr(self, f"_do_{action.kind}")(action.data)

    # ------------------------------------------------------------ actions

    async def _do_open_transaction(self, data: dict[str, Any]) -> None:
        await self.journal.append_async("tx_opened", {"transaction": data["transaction"]}, lane=self.lane.id)

    async def _do_attach_early_reading(self, data: dict[str, Any]) -> None:
        await self.journal.append_async("reading_attached",
                            {"transaction": data["transaction"], **reading_payload(data["reading"])},
                            lane=self.lane.id)

    async def _do_start_timer(self, data: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        tx_id = data["transaction"]
        self._timers[tx_id] = loop.call_later(data["seconds"], self.submit, CollectTimeout(tx_id))

    async def _do_cancel_timer(self, data: dict[str, Any]) -> None:
        handle = self._timers.pop(data["transaction"], None)
        if handle:
            handle.cancel()

    async def _do_evaluate(self, data: dict[str, Any]) -> None:
        tx = self.machine.tx
        if tx is None or tx.id != data["transaction"]:
            return
        decision = self.evaluate(tx)
        if data["final"] or not decision.awaiting_readings:
            actions = self.machine.handle(Decided(decision), self.clock())
            await self._carry_out(actions)

    def evaluate(self, tx: Transaction) -> Decision:
        """Run the rules on a transaction with the cache's candidates (pure apart from lookups)."""
        candidates: dict[str, Any] = {}
        for plate in tx.plates:
            for declaration in self.cache.by_plate(plate):
                candidates[declaration.number] = declaration
        for container in tx.container_numbers():
            for declaration in self.cache.by_container(container):
                candidates[declaration.number] = declaration
        now = datetime.fromtimestamp(self.clock(), UTC)
        context = DecisionContext(
            gate=self.gate,
            lane_direction=self.lane.direction,
            now=now,
            cache_age_s=self.cache.age_seconds(now),
            faulty_devices=tuple(sorted(self.machine.faulty)),
            used_declarations=frozenset(self.used_declarations),
        )
        return decide(tx.facts(), list(candidates.values()), self.lane.policy, context)

    async def _do_record_decision(self, data: dict[str, Any]) -> None:
        decision: Decision = data["decision"]
        tx = self.machine.tx
        payload = {"transaction": data["transaction"], **decision.to_dict()}
        if tx is not None:
            payload["facts"] = tx.to_dict()
        await self.journal.append_async("decision", payload, lane=self.lane.id)
        if tx is not None and decision.outcome != Outcome.RELEASE:
            self._record_latency(tx)
        self._notify("decision", payload)

    async def _do_record_officer_action(self, data: dict[str, Any]) -> None:
        await self.journal.append_async("officer_action", dict(data), lane=self.lane.id)
        self._notify("officer_action", dict(data))

    async def _do_open_barrier(self, data: dict[str, Any]) -> None:
        # The journal row is committed (fsync) before the PLC is told anything.
        await self.journal.append_async("barrier_command", {"command": "open", **data}, lane=self.lane.id)
        try:
            await self.barrier.open()
        except ModbusIOError as exc:
            self.submit(OpenFailed(data["transaction"], str(exc)))
            return
        tx = self.machine.tx
        if tx is not None and tx.released_by == "auto":
            self._record_latency(tx)
        self._notify("barrier", {"command": "open", **data})
        try:
            await self.barrier.set_lights(green=True)
        except ModbusIOError as exc:
            await self.journal.append_async("alarm", {"code": "BARRIER_COMMAND_FAILED", "text": f"lights: {exc}"},
                                lane=self.lane.id)

    async def _do_close_barrier(self, data: dict[str, Any]) -> None:
        await self.journal.append_async("barrier_command", {"command": "close", **data}, lane=self.lane.id)
        try:
            await self.barrier.close()
        except SafetyInterlock:
            await self.journal.append_async("alarm", {"code": "CLOSE_REFUSED_SAFETY_LOOP",
                                          "text": "close refused: safety loop occupied"},
                                lane=self.lane.id)
        except ModbusIOError as exc:
            await self.journal.append_async("alarm", {"code": "BARRIER_COMMAND_FAILED", "text": f"close: {exc}"},
                                lane=self.lane.id)

    async def _do_close_transaction(self, data: dict[str, Any]) -> None:
        tx: Transaction = data["tx"]
        summary = {
            "transaction": tx.id,
            "result": data["result"],
            "opened_at": tx.opened_at,
            "closed_at": self.clock(),
            "plates": list(tx.plates),
            "containers": tx.container_numbers(),
            "seals": list(tx.seals),
            "outcome": tx.decision.outcome.value if tx.decision else None,
            "reasons": tx.decision.reasons if tx.decision else [],
            "declaration": tx.decision.declaration if tx.decision else None,
            "released_by": tx.released_by,
            "decision_ms": tx.decision_ms,
        }
        await self.journal.append_async("tx_closed", summary, lane=self.lane.id)
        if data["result"] == "passed" and summary["declaration"]:
            self.used_declarations.add(summary["declaration"])
        self.recent.appendleft(summary)
        self._notify("tx_closed", summary)

    async def _do_late_reading(self, data: dict[str, Any]) -> None:
        payload = {"transaction": data["transaction"], **reading_payload(data["reading"])}
        await self.journal.append_async("late_reading", payload, lane=self.lane.id)
        self._notify("late_reading", payload)

    async def _do_unauthorised_passage(self, data: dict[str, Any]) -> None:
        payload = dict(data)
        closed = next((r for r in self.recent if r["transaction"] == data.get("transaction")), None)
        if closed is not None:  # the held truck that drove through: say who it was
            payload.update(plates=closed["plates"], outcome=closed["outcome"], reasons=closed["reasons"],
                           declaration=closed["declaration"])
        await self.journal.append_async("unauthorised_passage", payload, lane=self.lane.id)
        self._notify("unauthorised_passage", payload)

    async def _do_alarm(self, data: dict[str, Any]) -> None:
        await self.journal.append_async("alarm", dict(data), lane=self.lane.id)
        self._notify("alarm", dict(data))

    async def _do_state(self, data: dict[str, Any]) -> None:
        await self.journal.append_async("lane_state", dict(data), lane=self.lane.id)

    # ------------------------------------------------------------ helpers

    def _record_latency(self, tx: Transaction) -> None:
        if tx.last_reading_at is None:
            return
        latency_ms = max(0.0, (self.clock() - tx.last_reading_at) * 1000)
        tx.decision_ms = latency_ms
        self.decision_latencies_ms.append(latency_ms)

    def _notify(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(self.lane.id, kind, payload)
            except Exception:
                log.exception("listener failed")

    def _latched_alarm_from_journal(self) -> dict[str, Any] | None:
        """The boom-tamper alarm if it was raised and no supervisor acknowledged it (it survives restarts)."""
        openings, latched = 0, None
        for entry in self.journal.latest(self.lane.id, kinds=["alarm", "officer_action"], limit=1000):
            if entry.kind == "officer_action" and entry.payload.get("action") == "acknowledge_alarm":
                break
            if entry.kind == "alarm" and entry.payload.get("code") == TAMPER_ALARM:
                openings += 1
                latched = {"code": TAMPER_ALARM, "since": entry.at, "openings": openings,
                           "text": "Boom opened without a recorded release: closed by the node"}
        return latched

    def _used_declarations_from_journal(self) -> set[str]:
        return {
            e.payload["declaration"]
            for e in self.journal.entries(lane=self.lane.id, kinds=["tx_closed"])
            if e.payload.get("result") == "passed" and e.payload.get("declaration")
        }

    async def _restore_from_journal(self) -> None:
        entries = self.journal.latest(self.lane.id, kinds=["tx_opened", "tx_closed"], limit=1)
        if not entries or entries[0].kind != "tx_opened":
            return
        opened = entries[0]
        tx = Transaction(self.lane.id, opened_at=opened.at, id=opened.payload["transaction"])
        for entry in self.journal.entries(lane=self.lane.id, after_seq=opened.seq - 1):
            if entry.kind in ("reading", "reading_attached") and not tx.decided:
                tx.add(reading_from_payload(entry.payload))
            elif entry.kind == "decision" and entry.payload.get("transaction") == tx.id:
                tx.decision = decision_from_dict(entry.payload)
            elif (entry.kind == "barrier_command" and entry.payload.get("transaction") == tx.id
                  and entry.payload.get("command") == "open"):
                tx.open_commanded = True
                tx.released_by = entry.payload.get("released_by")
        inputs = self.barrier.inputs
        boom_open = bool(inputs and inputs.boom_opened)
        if inputs is not None:
            self.machine.loops.update(arrival=inputs.arrival, safety=inputs.safety, exit=inputs.exit)
        await self.journal.append_async("alarm", {"code": "NODE_RESTARTED",
                                      "text": f"transaction {tx.id} was open at restart"},
                            lane=self.lane.id)
        actions = self.machine.restore(tx, boom_open)
        await self._carry_out(actions)
        await self.journal.append_async("lane_state", {"from": "RESTART", "to": self.machine.state.value},
                            lane=self.lane.id)

    @property
    def state(self) -> LaneState:
        return self.machine.state
