"""The lane's I/O: an event queue, journal appends, barrier calls and timers around the lane machine.

One controller per lane. Events (device readings, loop changes, officer actions, timeouts) are
queued and handled one at a time, so the lane machine never sees two events at once. Every
reading, decision, officer action and barrier command is journaled before anything acts on it:
`await journal.append_async(...)` returns only once the row is committed (in one transaction with
whatever other lanes appended meanwhile: group commit), and the fsync does not block the loop.

An event's consequences come after it. The machine returns typed actions (edge/lane.py); the
controller carries them out in order. An action can have a consequence for the machine (the rules
decided: `Decided`); it is handled once the event's own actions are all done, never in the middle
of them, so the journal rows follow the order of events (the lane moved IDLE→COLLECTING before
COLLECTING→DECIDED). A failed open command is fed back through the queue like a device event.

Record kinds and alarm codes are edge/records.py's; so is `replay`, which rebuilds the lane from
its journal at start-up (the open transaction, a latched alarm).

Declarations are claimed per gate (edge/claims.py, in the cache's database) just before an open
command is journaled: the claim of every declaration the release uses is one atomic write, all or
none. A claim held by another transaction (another lane, the other direction, a truck released
before a restart) means no open: the release becomes a hold, DECLARATION_ALREADY_USED naming the
claim, and an officer's release that asked for it is refused. When the transaction ends, its claims
learn the passage: passed; released again when the boom came down with no vehicle under it (the
truck never went, and the node saw it); unknown otherwise. After a restart a claim whose truck was
on its way is `unknown` and stays claimed until a supervisor releases it (`release_claim`, journaled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devices.barrier import BarrierDriver, SafetyInterlock
from devices.readings import (
    BoomChanged,
    BoomPosition,
    DeviceEvent,
    DeviceFault,
    DeviceRecovered,
    LoopChanged,
    Reading,
)
from devices.tasks import cancel_and_wait
from devices.transports.modbus import ModbusIOError
from edge.cache import DeclarationCache
from edge.claims import Claim, ClaimError, ClaimPassage
from edge.config import LaneConfig
from edge.journal import Journal
from edge.journal_guard import JournalGuard
from edge.lane import (
    Action,
    AttachEarlyReading,
    AttachLateReading,
    BoomEvent,
    CancelTimer,
    ClaimRefused,
    CloseBarrier,
    CloseTransaction,
    CollectTimeout,
    Decided,
    DeviceFailed,
    DeviceRestored,
    Evaluate,
    EvaluateAgain,
    LaneError,
    LaneEvent,
    LaneMachine,
    LaneState,
    LoopEvent,
    OfficerAction,
    OpenBarrier,
    OpenFailed,
    OpenTransaction,
    RaiseAlarm,
    ReadingEvent,
    RecordDecision,
    RecordLateReading,
    RecordOfficerAction,
    RecordState,
    RecordUnauthorisedPassage,
    Redecided,
    Reevaluate,
    StartTimer,
)
from edge.records import (
    AlarmCode,
    JournalKind,
    LaneReplay,
    Notice,
    TxResult,
    reading_payload,
    replay,
)
from edge.rules import Decision, DecisionContext, Finding, Outcome, decide
from edge.transaction import Transaction

log = logging.getLogger(__name__)

Listener = Callable[[str, str, dict[str, Any]], None]

CLAIM_NOT_PASSED = "the boom came down before the truck went under it (no vehicle on the safety loop)"
CLAIM_NEVER_OPENED = "the node restarted before the open command was journaled: the barrier was not opened"


def claimed_numbers(decision: Decision | None) -> list[str]:
    """The declarations a release on this decision uses, all claimed together for the opening."""
    if decision is None:
        return []
    return list(decision.declarations) or ([decision.declaration] if decision.declaration else [])


def _with_claim_conflicts(decision: Decision, conflicts: list[Claim], *extra: Finding) -> Decision:
    """The decision that stands when the claims refused: DECLARATION_ALREADY_USED naming each claim."""
    findings = [f for f in decision.findings if f.code != "DECLARATION_ALREADY_USED"]
    findings += [Finding("DECLARATION_ALREADY_USED", f"{c.number} {c.words()}", c.number) for c in conflicts]
    findings += extra
    outcome = Outcome.REFUSE if any(f.info.outcome == Outcome.REFUSE for f in findings) else Outcome.HOLD
    return Decision(outcome, tuple(findings), decision.declaration, decision.ruleset_version,
                    declarations=decision.declarations)


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
        guard: JournalGuard | None = None,
    ):
        self.lane = lane
        # Rows go through the guard when there is one: a journal that cannot write degrades the lane (the
        # row is held in memory, `_append` returns None) instead of dropping the event.
        self.guard = guard
        self.gate = gate
        self.journal = journal
        self.cache = cache
        self.barrier = barrier
        self.device_kinds = device_kinds
        self.clock = clock
        self.machine = LaneMachine(lane.id, lane.policy)
        self.listeners: list[Listener] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=200)
        self.decision_latencies_ms: deque[float] = deque(maxlen=5000)
        self.anomalies = 0
        self._queue: asyncio.Queue[tuple[LaneEvent | DeviceEvent, asyncio.Future | None]] = (
            asyncio.Queue()
        )
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._task: asyncio.Task | None = None
        self.busy_since: float | None = None  # monotonic time the event being handled was taken up

    # ------------------------------------------------------------ lifecycle

    async def start(self, restore: bool = True) -> None:
        """Rebuild state from the journal (after the first barrier poll) and start handling events."""
        history = self._history_from_journal()
        await self._settle_claims_after_restart(history)
        self.machine.alarm = history.latched_alarm
        if restore:
            try:
                async with asyncio.timeout(3.0):
                    await self.barrier.first_poll.wait()
            except TimeoutError:
                log.warning("lane %s: barrier did not answer at start-up", self.lane.id)
            await self._restore(history)
        self._task = asyncio.create_task(self._run(), name=f"lane-{self.lane.id}")

    async def stop(self) -> None:
        """Cancel the timers and stop handling events."""
        for handle in self._timers.values():
            handle.cancel()
        if self._task:
            await cancel_and_wait(self._task)

    def submit(self, event: LaneEvent | DeviceEvent) -> None:
        """Queue an event from a driver or a timer (thread: the event loop)."""
        self._queue.put_nowait((event, None))

    def reevaluate(self, why: str) -> None:
        """Ask the lane to run the rules again on a truck they hold (the declarations changed: `why`)."""
        self.submit(Reevaluate(why))

    async def officer_action(self, action: str, officer: str, reason: str, role: str | None = None) -> dict[str, Any]:
        """Release or refuse the current truck for an officer; LaneError if not possible now (also when the
        release's declaration is claimed at the gate by another truck: the boom stays closed)."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((OfficerAction(action, officer, reason, role), future))
        await future
        return self.machine.snapshot()

    async def _run(self) -> None:
        while True:
            event, future = await self._queue.get()
            self.busy_since = time.monotonic()
            try:
                await self._handle(event)
            except LaneError as exc:
                if future is not None:
                    future.set_exception(exc)
                    continue
                self.anomalies += 1
                log.warning("%s", exc)
                await self._append(JournalKind.ALARM, {"code": AlarmCode.UNEXPECTED_EVENT.value, "text": str(exc)})
            except Exception as exc:  # keep the lane alive; the failure is journaled as an alarm
                log.exception("lane %s failed handling %r", self.lane.id, event)
                self.anomalies += 1
                with contextlib.suppress(Exception):  # without a guard the journal may be what failed
                    await self._append(JournalKind.ALARM, {"code": AlarmCode.UNEXPECTED_EVENT.value,
                                                           "text": f"failed handling {type(event).__name__}: {exc}"})
                if future is not None and not future.done():
                    future.set_exception(exc)
                    continue
            finally:
                self.busy_since = None
            if future is not None and not future.done():
                future.set_result(None)

    # ------------------------------------------------------------ events

    async def _handle(self, event: LaneEvent | DeviceEvent) -> None:
        """Journal the event, let the machine move, carry out its actions, then their consequences."""
        now = self.clock()
        lane_event = await self._to_lane_event(event, now)
        if lane_event is None:
            return
        consequences: deque[LaneEvent] = deque()
        refused: ClaimRefused | None = None
        while True:
            for action in self.machine.handle(lane_event, now):
                consequence = await self._carry_out(action)
                if consequence is not None:
                    consequences.append(consequence)
            if not consequences:
                break
            lane_event, now = consequences.popleft(), self.clock()
            if isinstance(lane_event, ClaimRefused):
                refused = lane_event
        self._notify(Notice.LANE, self.machine.snapshot())
        if refused is not None and isinstance(event, OfficerAction):
            claims = "; ".join(f.detail for f in refused.decision.findings if f.code == "DECLARATION_ALREADY_USED")
            raise LaneError(f"lane {self.lane.id}: not released, the declaration is already used: {claims}")

    async def _to_lane_event(self, event: LaneEvent | DeviceEvent, now: float) -> LaneEvent | None:
        if isinstance(event, Reading):
            payload = reading_payload(event)
            entry = await self._append(JournalKind.READING, payload, at=now)
            self._notify(Notice.READING, {"seq": entry.seq if entry is not None else None, **payload})
            return ReadingEvent(event)
        if isinstance(event, LoopChanged):
            await self._append(JournalKind.LOOP, {"loop": event.loop.value, "occupied": event.occupied}, at=now)
            return LoopEvent(event.loop.value, event.occupied)
        if isinstance(event, BoomChanged):
            if event.position in (BoomPosition.OPEN, BoomPosition.CLOSED):
                await self._append(JournalKind.BOOM, {"position": event.position.value}, at=now)
                return BoomEvent(event.position == BoomPosition.OPEN)
            return None
        if isinstance(event, DeviceFault):
            await self._append(JournalKind.DEVICE_FAULT, {"device": event.device_id, "error": event.error}, at=now)
            self._notify(Notice.DEVICE, {"device": event.device_id, "connected": False, "error": event.error})
            return DeviceFailed(event.device_id, event.error,
                                is_barrier=self.device_kinds.get(event.device_id) == "barrier")
        if isinstance(event, DeviceRecovered):
            await self._append(JournalKind.DEVICE_RECOVERED, {"device": event.device_id}, at=now)
            self._notify(Notice.DEVICE, {"device": event.device_id, "connected": True})
            return DeviceRestored(event.device_id)
        return event

    # ------------------------------------------------------------ actions

    async def _carry_out(self, action: Action) -> LaneEvent | None:
        """Do what one action says; return the event it leads to for the machine, if any."""
        match action:
            case OpenTransaction(transaction=tx_id):
                await self._append(JournalKind.TX_OPENED, {"transaction": tx_id})
            case AttachEarlyReading(transaction=tx_id, reading=reading) | AttachLateReading(
                    transaction=tx_id, reading=reading):
                await self._append(JournalKind.READING_ATTACHED, {"transaction": tx_id, **reading_payload(reading)})
            case StartTimer(transaction=tx_id, seconds=seconds):
                loop = asyncio.get_running_loop()
                self._timers[tx_id] = loop.call_later(seconds, self.submit, CollectTimeout(tx_id))
            case CancelTimer(transaction=tx_id):
                handle = self._timers.pop(tx_id, None)
                if handle:
                    handle.cancel()
            case Evaluate(transaction=tx_id, final=final):
                return self._evaluated(tx_id, final)
            case EvaluateAgain(transaction=tx_id, changed=changed):
                tx = self.machine.tx
                return Redecided(self.evaluate(tx), changed) if tx is not None and tx.id == tx_id else None
            case RecordDecision():
                await self._record_decision(action)
            case RecordOfficerAction():
                payload = action.payload()
                await self._append(JournalKind.OFFICER_ACTION, payload)
                self._notify(Notice.OFFICER_ACTION, dict(payload))
            case OpenBarrier():
                return await self._open_barrier(action)
            case CloseBarrier():
                await self._close_barrier(action)
            case CloseTransaction():
                await self._close_transaction(action)
            case RaiseAlarm():
                payload = action.payload()
                await self._append(JournalKind.ALARM, payload)
                self._notify(Notice.ALARM, dict(payload))
            case RecordLateReading(transaction=tx_id, reading=reading):
                payload = {"transaction": tx_id, **reading_payload(reading)}
                await self._append(JournalKind.LATE_READING, payload)
                self._notify(Notice.LATE_READING, payload)
            case RecordUnauthorisedPassage():
                await self._unauthorised_passage(action)
            case RecordState(before=before, after=after):
                await self._append(JournalKind.LANE_STATE, {"from": before.value, "to": after.value})
        return None

    def _evaluated(self, tx_id: str, final: bool) -> Decided | None:
        """The rules' decision for the transaction, when it is final or waits for no reading."""
        tx = self.machine.tx
        if tx is None or tx.id != tx_id:
            return None
        decision = self.evaluate(tx)
        if final or not decision.awaiting_readings:
            return Decided(decision)
        return None

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
        claims = self.cache.claims(candidates)
        context = DecisionContext(
            gate=self.gate,
            lane_direction=self.lane.direction,
            now=now,
            cache_age_s=self.cache.age_seconds(now),
            faulty_devices=tuple(sorted(self.machine.faulty)),
            used_declarations={number: claim.words() for number, claim in claims.items()
                               if claim.transaction != tx.id},
        )
        return decide(tx.facts(), list(candidates.values()), self.lane.policy, context)

    async def _record_decision(self, action: RecordDecision) -> None:
        tx = self.machine.tx
        payload = {"transaction": action.transaction, **action.decision.to_dict()}
        if action.redecision is not None:
            payload.update(redecision=True, **action.redecision)
        if tx is not None:
            payload["facts"] = self.machine.transaction_view()
        await self._append(JournalKind.DECISION, payload)
        if tx is not None and action.decision.outcome != Outcome.RELEASE:
            self._record_latency(tx)
        self._notify(Notice.DECISION, payload)

    async def _open_barrier(self, action: OpenBarrier) -> ClaimRefused | None:
        tx = self.machine.tx
        data: dict[str, Any] = {"transaction": action.transaction, "released_by": action.released_by}
        if tx is not None and tx.id == action.transaction:
            decision = tx.decision if tx.decision is not None else self.evaluate(tx)  # released before any decision
            numbers = claimed_numbers(decision)
            if numbers:
                # Claimed (synced to disk) before the open is journaled; all of them or none.
                try:
                    conflicts = await asyncio.to_thread(
                        self.cache.claim, numbers, gate=self.gate, lane=self.lane.id, transaction=tx.id,
                        at=self.clock(), released_by=action.released_by)
                except sqlite3.Error as exc:  # not claimed, so not opened: held, and the officer is told why
                    text = f"declaration claim not recorded ({exc}): the barrier was not opened; release again"
                    await self._append(JournalKind.ALARM, {"code": AlarmCode.BARRIER_OPEN_FAILED.value,
                                                           "transaction": tx.id, "text": text})
                    finding = Finding("DECLARATION_ALREADY_USED", f"{', '.join(numbers)}: {text}")
                    return ClaimRefused(tx.id, _with_claim_conflicts(decision, [], finding))
                if conflicts:
                    return ClaimRefused(tx.id, _with_claim_conflicts(decision, conflicts))
                data["declarations"] = numbers
        # The journal row is committed (fsync) before the PLC is told anything.
        if await self._append(JournalKind.BARRIER_COMMAND, {"command": "open", **data}) is None:
            # Held in memory, not on disk (the journal cannot write): no open; retried once it writes again.
            self.submit(OpenFailed(action.transaction, "the journal cannot record the open command"))
            return None
        try:
            await self.barrier.open()
        except ModbusIOError as exc:
            self.submit(OpenFailed(action.transaction, str(exc)))
            return None
        if tx is not None and action.released_by == "auto":
            self._record_latency(tx)
        self._notify(Notice.BARRIER, {"command": "open", **data})
        try:
            await self.barrier.set_lights(green=True)
        except ModbusIOError as exc:
            await self._append(JournalKind.ALARM, {"code": AlarmCode.BARRIER_COMMAND_FAILED.value,
                                                   "text": f"lights: {exc}"})
        return None

    async def _close_barrier(self, action: CloseBarrier) -> None:
        await self._append(JournalKind.BARRIER_COMMAND,
                           {"command": "close", "transaction": action.transaction, "why": action.why})
        try:
            await self.barrier.close()
        except SafetyInterlock:
            await self._append(JournalKind.ALARM, {"code": AlarmCode.CLOSE_REFUSED_SAFETY_LOOP.value,
                                                   "text": "close refused: safety loop occupied"})
        except ModbusIOError as exc:
            await self._append(JournalKind.ALARM, {"code": AlarmCode.BARRIER_COMMAND_FAILED.value,
                                                   "text": f"close: {exc}"})

    async def _close_transaction(self, action: CloseTransaction) -> None:
        summary = action.tx.closing_summary(action.result, self.clock(), action.released_by)
        if action.passage_unknown:
            summary["passage"] = "unknown"  # the boom closed behind a released truck no loop saw go
        await self._append(JournalKind.TX_CLOSED, summary)
        await self._settle_claims(action)
        self.recent.appendleft(summary)
        self._notify(Notice.TX_CLOSED, summary)

    async def _unauthorised_passage(self, action: RecordUnauthorisedPassage) -> None:
        payload: dict[str, Any] = {"transaction": action.transaction,
                                   "alarm": AlarmCode.BOOM_OPEN_WITHOUT_RELEASE.value, "text": action.text}
        closed = next((r for r in self.recent if r["transaction"] == action.transaction), None)
        if closed is not None:  # the held truck that drove through: say who it was
            payload.update(plates=closed["plates"], outcome=closed["outcome"], reasons=closed["reasons"],
                           declaration=closed["declaration"], declarations=closed["declarations"])
        await self._append(JournalKind.UNAUTHORISED_PASSAGE, payload)
        self._notify(Notice.UNAUTHORISED_PASSAGE, payload)

    # ------------------------------------------------------------ declaration claims

    async def _settle_claims(self, action: CloseTransaction) -> None:
        """What the ended transaction's claims learn: passed, released (the truck never went) or unknown."""
        try:
            claims = await asyncio.to_thread(self.cache.claims_of, action.transaction)
            if not claims:
                return
            if action.released_by and action.result == TxResult.PASSED:
                await asyncio.to_thread(self.cache.set_claim_passage, action.transaction, ClaimPassage.PASSED)
            elif (action.released_by and action.result == TxResult.CLOSED_BEFORE_PASSAGE and not action.vehicle_entered
                  and not action.passage_unknown):
                for claim in claims:
                    await self._release_claim(claim, "node", None, CLAIM_NOT_PASSED)
            else:
                await asyncio.to_thread(self.cache.set_claim_passage, action.transaction, ClaimPassage.UNKNOWN)
        except sqlite3.Error as exc:
            # A full disk: the claim stays as it was (the declaration stays used: fail secure) and says so; a
            # supervisor releases it by hand if the truck never went.
            log.warning("lane %s: the claims of %s could not be settled (%s); they stay claimed",
                        self.lane.id, action.transaction, exc)
            await self._append(JournalKind.ALARM, {
                "code": AlarmCode.CLAIM_NOT_SETTLED.value, "transaction": action.transaction,
                "text": f"declaration claim not updated ({exc}): it stays claimed until a supervisor releases it"})

    async def _settle_claims_after_restart(self, history: LaneReplay) -> None:
        """This lane's claims whose truck was on its way when the node stopped: what the journal says of them."""
        pending = self.cache.claim_list(lane=self.lane.id, passage=ClaimPassage.COMMANDED, limit=10_000)
        if not pending:
            return
        last = self.journal.latest(self.lane.id, kinds=[JournalKind.TX_CLOSED], limit=1)
        closed = last[0].payload if last else {}
        interrupted = history.open_transaction
        for claim in pending:
            if closed.get("transaction") == claim.transaction and closed.get("result") == TxResult.PASSED:
                passage = ClaimPassage.PASSED  # it ended before its claims heard of it
            elif interrupted is not None and interrupted.id == claim.transaction and not interrupted.open_commanded:
                await self._release_claim(claim, "node", None, CLAIM_NEVER_OPENED)
                continue
            else:
                passage = ClaimPassage.UNKNOWN
            self.cache.set_claim_passage(claim.transaction, passage)

    async def release_claim(self, number: str, officer: str, role: str | None, reason: str) -> Claim:
        """An officer gives up the gate's claim on a declaration (journaled with officer, role and reason first).

        ClaimError when nothing claims it, or when its truck is on its way under the boom right now.
        """
        claim = self.cache.claims([number]).get(number)
        if claim is None:
            raise ClaimError(f"declaration {number} is not claimed at this gate")
        tx = self.machine.tx
        if tx is not None and tx.id == claim.transaction and self.machine.passage.open_commanded:
            raise ClaimError(f"declaration {number}: its truck is passing at lane {self.lane.id} now; "
                             "release the claim once its transaction has ended")
        try:
            await self._release_claim(claim, officer, role, reason)
        except sqlite3.Error as exc:
            raise ClaimError(f"declaration {number}: the claim could not be released ({exc}); it stays "
                             "claimed, try again once the node's disk can be written") from exc
        return claim

    async def _release_claim(self, claim: Claim, by: str, role: str | None, reason: str) -> None:
        payload: dict[str, Any] = {"declaration": claim.number, "transaction": claim.transaction,
                                   "claim_lane": claim.lane, "claimed_at": claim.claimed_at,
                                   "released_by": claim.released_by, "passage": claim.passage.value,
                                   "by": by, "role": role, "reason": reason}
        await self._append(JournalKind.CLAIM_RELEASED, payload)
        await asyncio.to_thread(self.cache.release_claim, claim.number, claim.transaction)
        self._notify(Notice.CLAIM_RELEASED, payload)

    # ------------------------------------------------------------ helpers

    async def _append(self, kind: JournalKind, payload: dict[str, Any], *, at: float | None = None) -> Any:
        """The committed entry, or None when the guard holds the row in memory (never act on it as persisted)."""
        if self.guard is not None:
            return await self.guard.append(kind.value, payload, lane=self.lane.id, at=at)
        return await self.journal.append_async(kind.value, payload, lane=self.lane.id, at=at)

    def _record_latency(self, tx: Transaction) -> None:
        if tx.last_reading_at is None:
            return
        latency_ms = max(0.0, (self.clock() - tx.last_reading_at) * 1000)
        tx.decision_ms = latency_ms
        self.decision_latencies_ms.append(latency_ms)

    def _notify(self, kind: Notice, payload: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(self.lane.id, kind.value, payload)
            except Exception:
                log.exception("listener failed")

    # ------------------------------------------------------------ restart

    def _history_from_journal(self) -> LaneReplay:
        """Replay the rows a restart needs: every tx_closed, the latest alarms and acknowledgements,
        and everything since the last transaction was opened if it was never closed."""
        lane = self.lane.id
        watched = (JournalKind.ALARM, JournalKind.OFFICER_ACTION)
        rows = {e.seq: e for e in self.journal.entries(lane=lane, kinds=[JournalKind.TX_CLOSED])}
        rows.update((e.seq, e) for e in self.journal.latest(lane, kinds=watched, limit=1000))
        last = self.journal.latest(lane, kinds=[JournalKind.TX_OPENED, JournalKind.TX_CLOSED], limit=1)
        if last and last[0].kind == JournalKind.TX_OPENED:
            rows.update((e.seq, e) for e in self.journal.entries(lane=lane, after_seq=last[0].seq - 1)
                        if e.kind not in watched)
        return replay(rows[seq] for seq in sorted(rows))

    async def _restore(self, history: LaneReplay) -> None:
        """Resume the transaction a restart interrupted, held for an officer unless its truck was passing."""
        interrupted = history.open_transaction
        if interrupted is None:
            return
        tx = Transaction(self.lane.id, opened_at=interrupted.opened_at, id=interrupted.id)
        for reading in interrupted.readings:
            tx.add(reading)
        tx.decision = interrupted.decision
        inputs = self.barrier.inputs
        boom_open = bool(inputs and inputs.boom_opened)
        if inputs is not None:
            self.machine.loops.update(arrival=inputs.arrival, safety=inputs.safety, exit=inputs.exit)
        claims = "".join(f"; declaration {c.number} {c.words()}" for c in self.cache.claims_of(tx.id))
        await self._append(JournalKind.ALARM, {"code": AlarmCode.NODE_RESTARTED.value,
                                               "text": f"transaction {tx.id} was open at restart{claims}"})
        released_by = interrupted.released_by if interrupted.open_commanded else None
        for action in self.machine.restore(tx, boom_open, released_by=released_by):
            await self._carry_out(action)
        await self._append(JournalKind.LANE_STATE, {"from": "RESTART", "to": self.machine.state.value})

    @property
    def state(self) -> LaneState:
        """The lane machine's state."""
        return self.machine.state
