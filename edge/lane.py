"""The lane state machine: one truck at a time from arrival loop to closed boom. No I/O.

Theory of operation. The arrival loop opens a transaction; readings (plates, seals, containers)
are gathered into it, including readings that came a few seconds before the truck reached the
loop. Each new reading asks the controller to evaluate the rules; when the decision no longer
waits for readings, or the collect timer runs out, the controller reports the decision. A RELEASE
(automatic or by an officer) asks for the boom to open; the truck crosses the safety loop; when
the safety loop clears the boom is asked to close; when the boom reports closed the lane is idle
again, and a truck already waiting on the arrival loop starts the next transaction. A device
fault puts the lane in FAULT: nothing is released automatically until the device recovers.
The controller claims the release's declarations for the gate just before it journals the open
(edge/claims.py); a claim held by another truck comes back as ClaimRefused: no open was sent, and
the truck is held as if it had never been released (DECLARATION_ALREADY_USED).

Readings after the decision. Once a truck is decided (by the rules or an officer) its
transaction is what the decision was made on and never changes: a reading that arrives for it is
journaled as late, shown to the officer beside the decision, and raises an alarm when it
contradicts it (another confident plate, another scan verdict). While a released truck is
leaving (boom opening, PASSING) a reading is more likely the next truck's: it is also held for the
pre-arrival window, like a reading at an idle lane, and attaches to the next transaction.

Readings of the truck that has just gone. A camera may report a truck after it has gone: a video
camera's reading waits for frames to agree, and a slow read lands seconds after its frame. A plate
or container number of the last truck (the one leaving, or the one whose transaction closed last,
through the boom or backing away), observed while that truck was still on the arrival loop, is that
truck's: it is never held for, nor merged into, the next truck's transaction (where it would
conflict with the next truck's own plate), only counted (`departed_truck_readings`). The same
plate observed after the truck left is kept: the truck came back, or another carries its plate,
and the rules must see it (a declaration already used, a conflict).

Re-decision. One exception: a truck that only the rules hold (no officer has acted, no release,
not a restart's hold) and that still waits on the arrival loop, within the lane's
`redecide_window_s` of the hold. A reading that arrives for it then (an X-ray verdict that took
longer than the collect timeout, a seal read at last) joins its transaction and the rules run
again (`Redecided`); so do they when the controller says the declarations may have changed
(`Reevaluate`, after a feed update). A new decision is journaled as a re-decision; a release
then takes the normal release path (decision row, then the open command), a worse result
updates the hold, a refusal ends the re-deciding. After the window, once an officer acted, or
once the truck left the loop, readings are only late.

Boom tamper. A boom that opens with no journaled release (the PLC's open coil written by someone
else over Modbus) is an attack: the lane latches BOOM_OPEN_WITHOUT_RELEASE until a supervisor
acknowledges it, commands the boom closed at once, or as soon as the safety loop is clear (never
onto a vehicle), and again every time it opens. A vehicle that goes under the unreleased boom is
journaled as an unauthorised passage; a held truck that drives through closes its transaction as
`unauthorised_passage`, never `left_lane`. None of this is a release: the truck stays held.

How the machine moves. Everything that affects states and transitions lives in this file, and as
much as possible in the table TRANSITIONS: {state: {event key: rows}}. An event first updates what
the lane senses (loops, boom, faulty devices); then the first row whose guards all hold is taken:
a `Go` row names exactly one next state and the effects that produce the actions, a `Refuse` row
says why the event is refused now (LaneError). An event a state does not list is a LaneError too.
The machine moves to the row's state before its effects run, so an effect sees where it is going;
effects never choose the state. What the machine knows about the truck's way through the boom
(released, open commanded, under the boom...) is its Passage, one per transaction; the
Transaction holds the readings and the decision. The machine returns typed actions; the
controller (edge/lane_control.py) journals and carries them out, and feeds results back as events.
`transition_table_text()` prints the table.

Invariants the rows rely on (and leave out rows that could never be taken): IDLE has no
transaction; ARRIVED and COLLECTING have an unreleased truck and no device down (a fault moves
them to FAULT); DECIDED and PASSING have a truck, PASSING's is released; FAULT has a device down
(the last recovery leaves FAULT). So a transaction that ends goes to IDLE from ARRIVED and
COLLECTING, stays in FAULT, and from DECIDED or PASSING goes to FAULT only while a device that
failed meanwhile is still down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from devices.protocols.iso6346 import normalise_container
from devices.protocols.plates import normalise_plate
from devices.readings import ContainerRead, PlateRead, Reading
from edge.config import JOURNAL_DEVICE, LanePolicy
from edge.records import TAMPER_TEXT, AlarmCode, TxResult
from edge.rules import Decision, Outcome, decision_for_restart
from edge.transaction import Transaction, reading_said


class LaneState(StrEnum):
    """Where the lane is with the current truck."""

    IDLE = "IDLE"
    ARRIVED = "ARRIVED"
    COLLECTING = "COLLECTING"
    DECIDED = "DECIDED"
    PASSING = "PASSING"
    FAULT = "FAULT"


class LaneError(Exception):
    """An event arrived that the lane's current state does not accept."""


# ---------------------------------------------------------------- events (inputs)


@dataclass(frozen=True)
class LoopEvent:
    """A loop changed. key: arrival_on/off, safety_on/off, exit_on/off."""

    loop: str
    occupied: bool

    @property
    def key(self) -> str:
        return f"{self.loop}_{'on' if self.occupied else 'off'}"


@dataclass(frozen=True)
class BoomEvent:
    """The boom reached its open or closed limit switch."""

    opened: bool

    @property
    def key(self) -> str:
        return "boom_open" if self.opened else "boom_closed"


@dataclass(frozen=True)
class ReadingEvent:
    """A device reading (plate, seal, container, weight, scan)."""

    reading: Reading
    key: str = "reading"


@dataclass(frozen=True)
class CollectTimeout:
    """The collect timer of a transaction ran out."""

    transaction_id: str
    key: str = "timeout"


@dataclass(frozen=True)
class Decided:
    """The controller evaluated the rules and the decision is final."""

    decision: Decision

    @property
    def key(self) -> str:
        return f"decided_{self.decision.outcome.value}"


@dataclass(frozen=True)
class Reevaluate:
    """What a held truck was decided on may have changed outside the lane (a declaration amended or revoked)."""

    why: str
    key: str = "reevaluate"


@dataclass(frozen=True)
class Redecided:
    """The rules decided again on a truck they hold, because of `changed` (a late reading, a Reevaluate)."""

    decision: Decision
    changed: str

    @property
    def key(self) -> str:
        return f"redecided_{self.decision.outcome.value}"


OFFICER_ACTIONS = ("release", "refuse", "inspect", "manual_open", "manual_close", "acknowledge_alarm")


@dataclass(frozen=True)
class OfficerAction:
    """An officer's decision on the current truck, or a supervisor driving the barrier by hand.

    release / refuse / inspect act on the truck at the lane; manual_open opens the boom (for the
    truck, or for a vehicle with no transaction such as an ambulance) and is journaled as a release
    by that officer; manual_close closes it (still refused while the safety loop is occupied);
    acknowledge_alarm clears a latched alarm (the officer has seen it and dealt with it).
    """

    action: str  # one of OFFICER_ACTIONS
    officer: str
    reason: str
    role: str | None = None  # the officer's role, when the caller knows it (the kiosk does)

    @property
    def key(self) -> str:
        return f"officer_{self.action}"


@dataclass(frozen=True)
class DeviceFailed:
    """A device of the lane failed (is_barrier: the PLC itself)."""

    device_id: str
    error: str
    is_barrier: bool = False

    @property
    def key(self) -> str:
        return "barrier_fault" if self.is_barrier else "fault"


@dataclass(frozen=True)
class OpenFailed:
    """The open command for a recorded release did not reach the PLC."""

    transaction_id: str
    error: str
    key: str = "open_failed"


@dataclass(frozen=True)
class ClaimRefused:
    """The released truck's declarations are claimed at this gate by another transaction: no open was sent.

    decision: the hold (or refusal) that stands instead, DECLARATION_ALREADY_USED naming the claim.
    """

    transaction_id: str
    decision: Decision
    key: str = "claim_refused"


@dataclass(frozen=True)
class DeviceRestored:
    """A failed device answers again."""

    device_id: str
    key: str = "recovered"


LaneEvent = (
    LoopEvent | BoomEvent | ReadingEvent | CollectTimeout | Decided | OfficerAction | DeviceFailed
    | DeviceRestored | OpenFailed | Reevaluate | Redecided | ClaimRefused
)

# ---------------------------------------------------------------- actions (outputs)
# What the controller must do, in order. `kind` names each for the table text and for logs.


@dataclass(frozen=True)
class OpenTransaction:
    """Journal tx_opened for a new transaction (manual: a vehicle let through by hand)."""

    kind: ClassVar[str] = "open_transaction"
    transaction: str
    manual: bool = False


@dataclass(frozen=True)
class AttachEarlyReading:
    """Journal that a reading held from before the arrival loop joined the transaction."""

    kind: ClassVar[str] = "attach_early_reading"
    transaction: str
    reading: Reading


@dataclass(frozen=True)
class AttachLateReading:
    """Journal that a reading for a truck the rules hold joined its transaction (the rules run again on it)."""

    kind: ClassVar[str] = "attach_late_reading"
    transaction: str
    reading: Reading


@dataclass(frozen=True)
class StartTimer:
    """Feed CollectTimeout(transaction) back after `seconds`."""

    kind: ClassVar[str] = "start_timer"
    transaction: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    """Cancel the transaction's collect timer."""

    kind: ClassVar[str] = "cancel_timer"
    transaction: str


@dataclass(frozen=True)
class Evaluate:
    """Run the rules on the transaction; feed back Decided when final or no longer waiting for readings."""

    kind: ClassVar[str] = "evaluate"
    transaction: str
    final: bool


@dataclass(frozen=True)
class EvaluateAgain:
    """Run the rules again on a held truck's transaction; feed back Redecided (always)."""

    kind: ClassVar[str] = "evaluate_again"
    transaction: str
    changed: str  # what made it worth asking again, for the re-decision row


@dataclass(frozen=True)
class RecordDecision:
    """Journal the decision with the facts it was made on (a re-decision also says what changed)."""

    kind: ClassVar[str] = "record_decision"
    transaction: str
    decision: Decision
    redecision: dict[str, Any] | None = None  # {changed, previous: {outcome, reasons}}


@dataclass(frozen=True)
class RecordOfficerAction:
    """Journal an officer's action (an acknowledgement also names the alarm it clears)."""

    kind: ClassVar[str] = "record_officer_action"
    transaction: str | None
    action: str
    officer: str
    reason: str
    alarm: dict[str, Any] | None = None  # the acknowledged alarm: {code, openings, since}
    role: str | None = None  # the officer's role, when known

    def payload(self) -> dict[str, Any]:
        """The officer_action row."""
        body: dict[str, Any] = {"transaction": self.transaction, "action": self.action, "officer": self.officer,
                                "reason": self.reason}
        if self.role is not None:
            body["role"] = self.role
        if self.alarm is not None:
            body.update(alarm=str(self.alarm["code"]), openings=self.alarm["openings"], alarm_since=self.alarm["since"])
        return body


@dataclass(frozen=True)
class OpenBarrier:
    """Open the boom for a journaled release (the command row is committed first)."""

    kind: ClassVar[str] = "open_barrier"
    transaction: str
    released_by: str


@dataclass(frozen=True)
class CloseBarrier:
    """Close the boom (refused by the barrier while the safety loop is occupied: an alarm then)."""

    kind: ClassVar[str] = "close_barrier"
    transaction: str | None
    why: str


@dataclass(frozen=True)
class CloseTransaction:
    """Journal the summary of a finished transaction."""

    kind: ClassVar[str] = "close_transaction"
    tx: Transaction
    result: TxResult
    released_by: str | None
    vehicle_entered: bool = False  # a vehicle went onto the safety loop under its released boom
    passage_unknown: bool = False  # closed after the released truck left unseen: it may have gone through

    @property
    def transaction(self) -> str:
        """The id of the transaction that ends."""
        return self.tx.id


@dataclass(frozen=True)
class RaiseAlarm:
    """Journal and show an alarm: {code, **details, text}."""

    kind: ClassVar[str] = "alarm"
    code: AlarmCode
    text: str
    details: dict[str, Any] = field(default_factory=dict)  # transaction, detail, openings... as the code needs

    def payload(self) -> dict[str, Any]:
        """The alarm row."""
        return {"code": self.code.value, **self.details, "text": self.text}


@dataclass(frozen=True)
class RecordLateReading:
    """Journal a reading that came after the decision (not used by it)."""

    kind: ClassVar[str] = "late_reading"
    transaction: str
    reading: Reading


@dataclass(frozen=True)
class RecordUnauthorisedPassage:
    """Journal that a vehicle went under a boom opened with no release (transaction: the held truck, if any)."""

    kind: ClassVar[str] = "unauthorised_passage"
    transaction: str | None
    text: str = "A vehicle went under a boom that was opened with no release"


@dataclass(frozen=True)
class RecordState:
    """Journal that the lane moved from one state to another."""

    kind: ClassVar[str] = "state"
    before: LaneState
    after: LaneState


Action = (
    OpenTransaction | AttachEarlyReading | AttachLateReading | StartTimer | CancelTimer | Evaluate | EvaluateAgain
    | RecordDecision | RecordOfficerAction | OpenBarrier | CloseBarrier | CloseTransaction | RaiseAlarm
    | RecordLateReading | RecordUnauthorisedPassage | RecordState
)


# ---------------------------------------------------------------- the passage


def _identifier(reading: Reading) -> tuple[str, str] | None:
    """("plate" | "container", matching form) of a camera reading; None for other readings."""
    if isinstance(reading, PlateRead):
        return "plate", normalise_plate(reading.plate)
    if isinstance(reading, ContainerRead):
        return "container", normalise_container(reading.container)
    return None


@dataclass(frozen=True)
class DepartedTruck:
    """The plates and container numbers of the last truck, and when it left the arrival loop (None: not yet)."""

    names: frozenset[tuple[str, str]]
    left_at: float | None

    @classmethod
    def of(cls, tx: Transaction, left_at: float | None) -> DepartedTruck:
        """What identifies the truck of `tx`, which left the arrival loop at `left_at`."""
        return cls(frozenset({("plate", p) for p in tx.plates} | {("container", c) for c in tx.containers}), left_at)

    def saw(self, reading: Reading) -> bool:
        """The reading names this truck and was observed before it left (or it has not left yet)."""
        name = _identifier(reading)
        return (name is not None and name in self.names
                and (self.left_at is None or reading.observed_at < self.left_at))


@dataclass
class Passage:
    """How far the current truck got towards and under the boom; a new one with each transaction."""

    released_by: str | None = None  # "auto" or the officer who released it
    open_commanded: bool = False  # the open command was journaled and sent
    open_pending: bool = False  # released, but the open command has not reached the PLC yet
    vehicle_entered: bool = False  # a vehicle went onto the safety loop under the released boom
    closing: bool = False  # the boom was asked to close behind it (or by hand)
    manual: bool = False  # a vehicle let through by hand, with no truck transaction before it
    inspection_by: str | None = None  # the officer who sent it to inspection
    entered_without_release: bool = False  # a vehicle went under a boom that was opened with no release
    left_arrival: bool = False  # left the arrival loop while the boom stood open unreleased: went where?
    released_left_at: float | None = None  # a released truck left the arrival loop, not (yet) under the boom
    departed_unseen: bool = False  # the boom closed behind a released truck no loop saw go under it
    arrival_cleared_at: float | None = None  # when the arrival loop last cleared under this truck

    def view(self) -> dict[str, Any]:
        """The part of the passage shown with the transaction (kiosk, decision facts)."""
        return {"released_by": self.released_by, "barrier_open_commanded": self.open_commanded,
                "manual": self.manual, "inspection_by": self.inspection_by}


# ---------------------------------------------------------------- the machine

Guard = Callable[["LaneMachine", float], bool]
Effect = Callable[["LaneMachine", Any, float], list[Action]]


@dataclass(frozen=True)
class Go:
    """A table row: when every guard holds, move to `to` and run the effects in order."""

    to: LaneState
    do: tuple[Effect, ...] = ()
    when: tuple[Guard, ...] = ()


@dataclass(frozen=True)
class Refuse:
    """A table row: when every guard holds, the event is refused now (LaneError, nothing changes)."""

    why: str  # may name the officer's action as {action}
    when: tuple[Guard, ...] = ()


Row = Go | Refuse


@dataclass
class LaneMachine:
    """State of one lane and the rules for moving between states."""

    lane_id: str
    policy: LanePolicy
    state: LaneState = LaneState.IDLE
    tx: Transaction | None = None
    passage: Passage = field(default_factory=Passage)
    buffered: list[Reading] = field(default_factory=list)
    departed: DepartedTruck | None = None  # the last truck whose transaction closed
    departed_truck_readings: int = 0  # readings of the last truck reported after it went, set aside
    loops: dict[str, bool] = field(
        default_factory=lambda: {"arrival": False, "safety": False, "exit": False}
    )
    boom_open: bool = False
    faulty: dict[str, str] = field(default_factory=dict)
    alarm: dict[str, Any] | None = None  # latched until acknowledged: {code, text, since, openings}
    reclose_pending: bool = False  # the boom opened with no release: close it once the safety loop is clear
    intruder: bool = False  # a vehicle is under a boom that was opened with no release
    intruder_tx: str | None = None  # the transaction of the held truck that drove through, if it was one

    # ------------------------------------------------------------ entry points

    def handle(self, event: LaneEvent, now: float) -> list[Action]:
        """Apply one event; return the actions the controller must carry out, in order."""
        rows = TRANSITIONS[self.state].get(event.key)
        if rows is None:
            raise LaneError(f"lane {self.lane_id}: {event.key} is not expected in state {self.state}")
        self._sense(event, now)
        row = self._row(rows, now)
        if isinstance(row, Refuse):
            raise LaneError(f"lane {self.lane_id}: " + row.why.format(action=getattr(event, "action", event.key)))
        before, self.state = self.state, row.to
        actions: list[Action] = []
        for effect in row.do:
            actions += effect(self, event, now)
        if self.state != before:
            actions.append(RecordState(before, self.state))
        return actions

    def officer_actions(self) -> list[str]:
        """The officer actions the lane accepts now, in OFFICER_ACTIONS order (roles are checked apart)."""
        allowed = []
        for action in OFFICER_ACTIONS:
            rows = TRANSITIONS[self.state].get(f"officer_{action}")
            if rows is not None and isinstance(self._row(rows, 0.0), Go):
                allowed.append(action)
        return allowed

    def restore(self, tx: Transaction, boom_open: bool, released_by: str | None = None) -> list[Action]:
        """Resume after a restart with the transaction that was open; never re-open the barrier.

        released_by: the journaled release of that transaction, if its open command was recorded.
        A truck whose release was acted on keeps PASSING if the boom is still open (it will close
        once the safety loop is clear); anything else is held for an officer to review.
        """
        self.tx = tx
        self.boom_open = boom_open
        if released_by is not None and boom_open:
            # unknown whether a vehicle is there: assume one may be, close only when clear
            self.passage = Passage(released_by=released_by, open_commanded=True, vehicle_entered=True)
            self.state = S.PASSING
            return [CloseBarrier(tx.id, "restart, lane clear")]
        self.passage = Passage()
        decision = decision_for_restart(tx.decision.declarations if tx.decision else None)
        tx.decision = decision
        self.state = S.DECIDED
        return [RecordDecision(tx.id, decision)]

    def transaction_view(self) -> dict[str, Any] | None:
        """The current transaction as the kiosk and the decision row show it, with its passage."""
        return self.tx.to_dict(self.passage.view()) if self.tx else None

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly view of the lane for the kiosk."""
        return {
            "lane": self.lane_id,
            "state": self.state.value,
            "transaction": self.transaction_view(),
            "loops": dict(self.loops),
            "boom_open": self.boom_open,
            "faults": dict(self.faulty),
            "buffered_readings": len(self.buffered),
            "departed_truck_readings": self.departed_truck_readings,
            "alarm": dict(self.alarm) if self.alarm else None,
            "closing_unreleased_boom": self.reclose_pending,
        }

    def _sense(self, event: LaneEvent, now: float) -> None:
        """What the event says about the lane itself, before a row is chosen."""
        match event:
            case LoopEvent(loop=loop, occupied=occupied):
                self.loops[loop] = occupied
                if loop == "arrival" and not occupied and self.tx is not None:
                    self.passage.arrival_cleared_at = now
            case BoomEvent(opened=opened):
                self.boom_open = opened
                if not opened:
                    self.reclose_pending = False
            case DeviceRestored(device_id=device_id):
                self.faulty.pop(device_id, None)

    def _row(self, rows: tuple[Row, ...], now: float) -> Row:
        for row in rows:
            if all(guard(self, now) for guard in row.when):
                return row
        raise AssertionError(f"lane {self.lane_id}: no row for state {self.state}")  # every list ends unguarded

    # ------------------------------------------------------------ guards (named in the table)

    def device_down(self, now: float) -> bool:
        """A device is faulty: a lane that closes its transaction goes to FAULT, not IDLE."""
        return bool(self.faulty)

    def journal_down(self, now: float) -> bool:
        """The journal cannot write (the node's pseudo-device `journal` is down): nothing may be released."""
        return JOURNAL_DEVICE in self.faulty

    def no_transaction(self, now: float) -> bool:
        """No truck's transaction is open at the lane."""
        return self.tx is None

    def truck_released(self, now: float) -> bool:
        """The current truck's open command was journaled and sent."""
        return self.tx is not None and self.passage.open_commanded

    def truck_unreleased(self, now: float) -> bool:
        """A truck is at the lane and its open command was not sent."""
        return self.tx is not None and not self.passage.open_commanded

    def release_recorded(self, now: float) -> bool:
        """The truck was released, whether or not the open command reached the PLC."""
        return self.tx is not None and (self.passage.open_commanded or self.passage.open_pending)

    def release_waiting(self, now: float) -> bool:
        """A journaled release whose open command never reached the PLC, and no device is down now."""
        return self.tx is not None and self.passage.open_pending and not self.faulty

    def decided(self, now: float) -> bool:
        """The truck at the lane has a decision (the rules', or a hold recorded during a fault)."""
        return self.tx is not None and self.tx.decision is not None

    def boom_up(self, now: float) -> bool:
        """The boom stands open (a release needs no open event to let the truck go)."""
        return self.boom_open

    def boom_up_unreleased(self, now: float) -> bool:
        """A truck is at the lane, the boom stands open and nobody released it."""
        return self.tx is not None and self._open_without_release()

    def drove_through(self, now: float) -> bool:
        """The truck at the lane, never released, went under a boom opened with no release."""
        return self.truck_unreleased(now) and self.state != S.PASSING and self.passage.entered_without_release

    def intruder_drove_through(self, now: float) -> bool:
        """The vehicle under the unreleased boom left the safety loop, and it was the held truck."""
        return (self.intruder and self.drove_through(now) and not self.loops["arrival"])

    def backed_away(self, now: float) -> bool:
        """The unreleased truck left the arrival loop under an open boom, and the boom closed with nobody under it."""
        return self.truck_unreleased(now) and self.passage.left_arrival and not self.loops["arrival"]

    def closed_by_hand(self, now: float) -> bool:
        """The released truck's boom was closed (by hand) before it went."""
        return self.truck_released(now) and self.passage.closing

    def vehicle_entered(self, now: float) -> bool:
        """A vehicle went onto the safety loop under the released boom."""
        return self.passage.vehicle_entered

    def no_vehicle_entered(self, now: float) -> bool:
        """Nothing went onto the safety loop under the released boom."""
        return not self.passage.vehicle_entered

    def released_not_entered(self, now: float) -> bool:
        """Released and the boom open, but nothing has gone onto the safety loop yet."""
        return (self.tx is not None and self.passage.open_commanded and not self.passage.vehicle_entered
                and not self.passage.closing and not self.loops["safety"])

    def released_truck_departed(self, now: float) -> bool:
        """The released truck left the arrival loop `departed_close_s` ago and never went under the open boom:
        both loops are clear (the boom may close on nobody)."""
        left = self.passage.released_left_at
        return (left is not None and self.released_not_entered(now) and self.boom_open
                and not self.loops["arrival"] and now - left >= self.policy.departed_close_s - 0.1)

    def passed_unseen(self, now: float) -> bool:
        """The released truck is on the exit loop beyond the open boom, but its safety-loop pulse was missed
        (shorter than one PLC poll): the arrival and safety loops are clear, so it went through."""
        return (self.tx is not None and self.passage.open_commanded and not self.passage.vehicle_entered
                and not self.passage.closing and self.boom_open and not self.loops["arrival"]
                and not self.loops["safety"])

    def next_truck_waiting(self, now: float) -> bool:
        """The arrival loop is occupied: the next truck is already there."""
        return self.loops["arrival"]

    def early_readings_held(self, now: float) -> bool:
        """Readings held from before the arrival loop, within the pre-arrival window."""
        return bool(self._early(now))

    def no_alarm(self, now: float) -> bool:
        """No alarm is latched."""
        return self.alarm is None

    def held_by_rules(self, now: float) -> bool:
        """The truck waits on the arrival loop, held by the rules alone: no officer acted, no release, no restart."""
        tx = self.tx
        return (tx is not None and tx.decision is not None and tx.decision.outcome == Outcome.HOLD
                and tx.decided_at is not None and not tx.officer_actions
                and not (self.passage.released_by or self.passage.open_commanded or self.passage.open_pending)
                and self.loops["arrival"] and not self.passage.left_arrival)

    def within_redecide_window(self, now: float) -> bool:
        """The hold is no older than the lane's redecide_window_s (0: never re-decide)."""
        window = self.policy.redecide_window_s
        return (window > 0 and self.tx is not None and self.tx.decided_at is not None
                and now - self.tx.decided_at <= window)

    # ------------------------------------------------------------ effects: loops

    def _nothing(self, event: LaneEvent, now: float) -> list[Action]:
        return []

    def _back_on_arrival(self, event: LoopEvent, now: float) -> list[Action]:
        self.passage.left_arrival = False  # it came back (or never went)
        self.passage.released_left_at = None
        return []

    def _watch_released_truck(self, event: LoopEvent, now: float) -> list[Action]:
        """The released truck left the arrival loop with nothing on the safety loop: forward, or backing away?
        Time it; if it never goes under the boom, the boom closes behind nobody (`departed_close_s`)."""
        assert self.tx is not None
        self.passage.released_left_at = now
        return [StartTimer(self.tx.id, self.policy.departed_close_s)]

    def _close_after_departure(self, event: CollectTimeout, now: float) -> list[Action]:
        assert self.tx is not None
        self.passage.closing = True
        # Backed away, or drove through with every loop pulse missed: nobody can tell, so its claims stay.
        self.passage.departed_unseen = True
        return [CloseBarrier(self.tx.id, "the released truck left the lane without passing")]

    def _watch_where_it_goes(self, event: LoopEvent, now: float) -> list[Action]:
        # Backing away or driving through the boom someone opened? The safety loop will tell;
        # if the boom closes with nobody under it, the truck left the lane.
        self.passage.left_arrival = True
        return []

    def _close_left_lane(self, event: LaneEvent, now: float) -> list[Action]:
        return self._close_transaction(TxResult.LEFT_LANE, now)

    def _close_driven_through(self, event: LoopEvent, now: float) -> list[Action]:
        assert self.tx is not None
        self.intruder_tx = self.tx.id
        return self._close_transaction(TxResult.UNAUTHORISED_PASSAGE, now)

    def _vehicle_on_safety_loop(self, event: LoopEvent, now: float) -> list[Action]:
        actions: list[Action] = []
        # DECIDED too: the loop and the boom's limit switch can change within one PLC poll.
        if self.tx and self.passage.open_commanded and self.state in (S.PASSING, S.DECIDED):
            if self.passage.closing:
                actions.append(RaiseAlarm(AlarmCode.TAILGATING, "Safety loop occupied again while closing"))
                self.passage.closing = False
            self.passage.vehicle_entered = True
        if self._open_without_release():
            self.intruder = True
            if self.tx is not None:
                self.passage.entered_without_release = True
        return actions

    def _close_behind_vehicle(self, event: LoopEvent, now: float) -> list[Action]:
        assert self.tx is not None
        self.passage.closing = True
        return [CloseBarrier(self.tx.id, "vehicle passed")]

    def _close_behind_unseen_vehicle(self, event: LoopEvent, now: float) -> list[Action]:
        """Close behind a released truck seen only on the exit loop (a boom left open would let the next one in)."""
        assert self.tx is not None
        self.passage.vehicle_entered = True
        self.passage.closing = True
        return [CloseBarrier(self.tx.id, "vehicle passed (seen on the exit loop; its safety-loop pulse was missed)")]

    def _intruder_left(self, event: LoopEvent, now: float) -> list[Action]:
        """The safety loop cleared: report a vehicle that went under the unreleased boom, then close it."""
        actions: list[Action] = []
        if self.intruder:
            self.intruder = False
            actions.append(RecordUnauthorisedPassage(self.intruder_tx))
            self.intruder_tx = None
        if self.reclose_pending and self.boom_open:
            actions.append(CloseBarrier(self.tx.id if self.tx else None, "boom opened without a release: lane clear"))
        return actions

    # ------------------------------------------------------------ effects: boom

    def _boom_opened(self, event: BoomEvent, now: float) -> list[Action]:
        if self.tx is not None and self.passage.open_pending:
            # The open command whose answer was lost did reach the PLC: it is the journaled release.
            self.passage.open_pending, self.passage.open_commanded = False, True
        if self.state == S.PASSING or (self.tx is not None and self.passage.open_commanded):
            return self._watch_truck_gone_before_open(now)
        return self._tamper(now)

    def _watch_truck_gone_before_open(self, now: float) -> list[Action]:
        """The boom opened for a released truck that had already left the arrival loop (while the boom was still
        rising): time it as if it left now, so the boom closes behind nobody if no loop ever sees it again."""
        if self.loops["arrival"] or not self.released_not_entered(now) or self.passage.released_left_at is not None:
            return []
        assert self.tx is not None
        self.passage.released_left_at = now
        return [StartTimer(self.tx.id, self.policy.departed_close_s)]

    def _tamper(self, now: float) -> list[Action]:
        """The boom opened with no release: latch the alarm and close it, never onto a vehicle."""
        if self.alarm is None:
            self.alarm = {"code": AlarmCode.BOOM_OPEN_WITHOUT_RELEASE.value, "since": now, "openings": 0,
                          "text": TAMPER_TEXT}
        self.alarm["openings"] += 1
        self.alarm["last_at"] = now
        self.reclose_pending = True
        transaction = self.tx.id if self.tx else None
        actions: list[Action] = [RaiseAlarm(AlarmCode.BOOM_OPEN_WITHOUT_RELEASE,
                                            "Boom opened without a recorded release; closing it",
                                            {"transaction": transaction, "openings": self.alarm["openings"]})]
        if self.loops["safety"]:
            self.intruder = True
            if self.tx is not None:
                self.passage.entered_without_release = True
        else:
            actions.append(CloseBarrier(transaction, "boom opened without a release"))
        return actions

    def _close_before_passage(self, event: BoomEvent, now: float) -> list[Action]:
        return self._close_transaction(TxResult.CLOSED_BEFORE_PASSAGE, now)  # closed by hand before it went

    def _boom_down_before_passage(self, event: BoomEvent, now: float) -> list[Action]:
        # Closed before the truck went through (PLC heartbeat safety, manual close).
        return [RaiseAlarm(AlarmCode.BOOM_CLOSED_BEFORE_PASSAGE, "Boom closed before the truck passed"),
                *self._close_transaction(TxResult.CLOSED_BEFORE_PASSAGE, now)]

    def _close_passed(self, event: BoomEvent, now: float) -> list[Action]:
        return self._close_transaction(TxResult.PASSED, now)

    def _open_transaction(self, event: LaneEvent, now: float) -> list[Action]:
        """A truck on the arrival loop: a new transaction, with the readings held for it."""
        self.tx = Transaction(self.lane_id, opened_at=now)
        self.passage = Passage()
        early = self._early(now)
        self.buffered = []
        actions: list[Action] = [OpenTransaction(self.tx.id), StartTimer(self.tx.id, self.policy.collect_timeout_s)]
        changed = False
        for reading in early:
            changed = self.tx.add(reading) or changed
            actions.append(AttachEarlyReading(self.tx.id, reading))
        if changed and self.state == S.COLLECTING:
            actions.append(Evaluate(self.tx.id, final=False))
        return actions

    # ------------------------------------------------------------ effects: readings and decisions

    def _take_reading(self, event: ReadingEvent, now: float) -> list[Action]:
        reading = event.reading
        if self._set_aside_if_departed(reading, now):
            return []
        if self.tx is None or self.state == S.PASSING:
            self._buffer(reading, now)
            return []
        if self.tx.decided or self.passage.open_commanded:
            return self._late_reading(reading, now)
        changed = self.tx.add(reading)
        if self.state == S.COLLECTING and changed:
            return [Evaluate(self.tx.id, final=False)]
        return []

    def _late_reading(self, reading: Reading, now: float) -> list[Action]:
        """A reading for a truck already decided: journaled and shown as late, never merged."""
        tx = self.tx
        assert tx is not None
        if self.passage.open_commanded:
            self._buffer(reading, now)  # the released truck is leaving: it may be the next truck's
        news, conflicts = tx.add_late(reading)
        if not news:
            return []
        actions: list[Action] = [RecordLateReading(tx.id, reading)]
        for conflict in conflicts:
            text = f"scanner verdicts disagree after the decision: {conflict['detail']}"
            actions.append(RaiseAlarm(AlarmCode(conflict["code"]), text,
                                      {"transaction": tx.id, "detail": conflict["detail"]}))
        if (isinstance(reading, PlateRead) and reading.confidence >= self.policy.min_plate_confidence
                and normalise_plate(reading.plate) not in tx.plates and not self.passage.open_commanded):
            detail = f"{reading.plate} ({reading.confidence:.2f}) after the decision on {', '.join(tx.plates) or '-'}"
            tx.late_conflicts.append({"code": AlarmCode.PLATE_CONFLICT.value, "detail": detail})
            actions.append(RaiseAlarm(AlarmCode.PLATE_CONFLICT, f"another plate read for the decided truck: {detail}",
                                      {"transaction": tx.id, "detail": detail}))
        return actions

    def _take_reading_again(self, event: ReadingEvent, now: float) -> list[Action]:
        """A reading for a truck the rules hold (still at the barrier, within the window): it joins the
        transaction and the rules run again; a scan verdict that contradicts the ones seen also alarms."""
        tx, reading = self.tx, event.reading
        assert tx is not None
        conflicts_before = len(tx.scan_conflicts)
        if self._set_aside_if_departed(reading, now) or not tx.add(reading):
            return []
        actions: list[Action] = [AttachLateReading(tx.id, reading)]
        for detail in tx.scan_conflicts[conflicts_before:]:
            actions.append(RaiseAlarm(AlarmCode.SCAN_CONFLICT, f"scanner verdicts disagree after the hold: {detail}",
                                      {"transaction": tx.id, "detail": detail}))
        changed = f"late reading: {type(reading).__name__} {reading.device_id}: {reading_said(reading)}"
        return [*actions, EvaluateAgain(tx.id, changed)]

    def _reevaluate_held(self, event: Reevaluate, now: float) -> list[Action]:
        assert self.tx is not None
        return [EvaluateAgain(self.tx.id, event.why)]

    def _record_redecision(self, event: Redecided, now: float) -> list[Action]:
        """Journal the new decision on the held truck, unless the rules say exactly what they said before."""
        tx = self.tx
        assert tx is not None and tx.decision is not None
        previous = tx.decision
        if event.decision == previous:
            return []
        tx.decision = event.decision
        before = {"outcome": previous.outcome.value, "reasons": previous.reasons}
        tx.redecisions.append({"at": now, "changed": event.changed, "previous": before,
                               "outcome": event.decision.outcome.value, "reasons": event.decision.reasons})
        return [RecordDecision(tx.id, event.decision, redecision={"changed": event.changed, "previous": before})]

    def _collect_timed_out(self, event: CollectTimeout, now: float) -> list[Action]:
        if self.tx is None or event.transaction_id != self.tx.id:
            return []
        if self.state in (S.ARRIVED, S.COLLECTING) or (self.state == S.FAULT and self.tx.decision is None):
            return [Evaluate(self.tx.id, final=True)]
        return []

    def _record_decision(self, event: Decided, now: float) -> list[Action]:
        assert self.tx is not None
        self.tx.decision = event.decision
        self.tx.decided_at = now
        return [CancelTimer(self.tx.id), RecordDecision(self.tx.id, event.decision)]

    def _release_auto(self, event: Decided, now: float) -> list[Action]:
        return self._release("auto")

    def _ignore_release_during_fault(self, event: Decided, now: float) -> list[Action]:
        # Computed just before the fault: never act on a release while a device is down.
        # (A hold during a fault, DEVICE_FAULT, is recorded so the officer sees why the truck waits.)
        return [RaiseAlarm(AlarmCode.DECISION_DURING_FAULT, "Release arrived while the lane is in FAULT; not acted on")]

    def _open_manual_transaction(self, event: OfficerAction, now: float) -> list[Action]:
        # A vehicle with no transaction (ambulance, maintenance): a transaction of its own.
        self.tx = Transaction(self.lane_id, opened_at=now)
        self.passage = Passage(manual=True)
        return [OpenTransaction(self.tx.id, manual=True)]

    def _officer_decides(self, event: OfficerAction, now: float) -> list[Action]:
        assert self.tx is not None
        actions: list[Action] = [CancelTimer(self.tx.id),
                                 RecordOfficerAction(self.tx.id, event.action, event.officer, event.reason,
                                                     role=event.role)]
        self.tx.officer_actions.append({"action": event.action, "officer": event.officer, "role": event.role,
                                        "reason": event.reason, "at": now})
        if event.action in ("release", "manual_open"):
            actions += self._release(event.officer)
        elif event.action == "inspect":
            self.passage.inspection_by = event.officer
        return actions

    def _manual_close(self, event: OfficerAction, now: float) -> list[Action]:
        transaction = self.tx.id if self.tx else None
        if self.tx is not None and self.passage.open_commanded:
            self.passage.closing = True
        return [RecordOfficerAction(transaction, event.action, event.officer, event.reason),
                CloseBarrier(transaction, f"manual close by {event.officer}")]

    def _acknowledge_alarm(self, event: OfficerAction, now: float) -> list[Action]:
        assert self.alarm is not None
        alarm, self.alarm = self.alarm, None
        return [RecordOfficerAction(self.tx.id if self.tx else None, event.action, event.officer, event.reason,
                                    alarm={"code": alarm["code"], "openings": alarm["openings"],
                                           "since": alarm["since"]})]

    def _release(self, by: str) -> list[Action]:
        assert self.tx is not None
        self.passage.released_by = by
        self.passage.open_commanded = True
        self.reclose_pending = False  # the boom is now open on purpose (an alarm stays latched)
        self.intruder = False
        if self.boom_open:
            # Already up (opened with no release, not yet closed again): no boom_open will come, the
            # truck may go now (the row moved the lane to PASSING); the boom closes behind it.
            self.passage.vehicle_entered = self.loops["safety"]
        return [OpenBarrier(self.tx.id, by)]

    # ------------------------------------------------------------ effects: faults

    def _device_failed(self, event: DeviceFailed, now: float) -> list[Action]:
        new = event.device_id not in self.faulty
        self.faulty[event.device_id] = event.error
        return [RaiseAlarm(AlarmCode.DEVICE_FAULT, f"{event.device_id}: {event.error}")] if new else []

    def _open_failed(self, event: OpenFailed, now: float) -> list[Action]:
        if self.tx is None or self.tx.id != event.transaction_id:
            return []
        # The release stands (it is journaled); the open is retried when the barrier answers again,
        # as long as the truck is still there. An officer may also release again.
        self.passage.open_commanded = False
        self.passage.open_pending = True
        return [RaiseAlarm(AlarmCode.BARRIER_OPEN_FAILED,
                           f"open command did not reach the PLC ({event.error}); retried on recovery")]

    def _claim_refused(self, event: ClaimRefused, now: float) -> list[Action]:
        tx = self.tx
        if tx is None or tx.id != event.transaction_id:
            return []
        # The open was never sent: the truck is not released; an officer's release that asked for it
        # did not take effect (its row stays in the journal, followed by this decision).
        self.passage = Passage(inspection_by=self.passage.inspection_by)
        if tx.officer_actions and tx.officer_actions[-1]["action"] in ("release", "manual_open"):
            tx.officer_actions.pop()
        tx.decision, tx.decided_at = event.decision, now
        actions: list[Action] = [RecordDecision(tx.id, event.decision)]
        if self.boom_open:  # it stood open with no release when the release came (see _release)
            self.reclose_pending = True
            if not self.loops["safety"]:
                actions.append(CloseBarrier(tx.id, "declaration claimed elsewhere: boom closed again"))
        return actions

    def _resend_open(self, event: DeviceRestored, now: float) -> list[Action]:
        self.passage.open_pending = False
        return self._release(self.passage.released_by or "auto")

    def _reclose_unreleased_boom(self, event: DeviceRestored, now: float) -> list[Action]:
        if self.reclose_pending and self.boom_open and not self.loops["safety"]:
            # The PLC answers again and the boom someone opened is still up: close it now.
            return [CloseBarrier(self.tx.id if self.tx else None, "boom opened without a release: PLC answers again")]
        return []

    def _evaluate_again(self, event: DeviceRestored, now: float) -> list[Action]:
        assert self.tx is not None
        return [Evaluate(self.tx.id, final=False)]

    # ------------------------------------------------------------ helpers

    def _open_without_release(self) -> bool:
        """The boom stands open (or is still coming down) and no release was journaled for it."""
        return self.boom_open and self.state != S.PASSING and not (self.tx is not None and self.passage.open_commanded)

    def _set_aside_if_departed(self, reading: Reading, now: float) -> bool:
        """True (and counted) when the reading names the released truck that is leaving, or the last truck,
        and was observed while that truck was still on the arrival loop: it is that truck's, reported late."""
        leaving = self.tx is not None and self.passage.open_commanded
        if ((leaving and DepartedTruck.of(self.tx, self.passage.arrival_cleared_at).saw(reading))
                or (self.departed is not None and self.departed.saw(reading))):
            self.departed_truck_readings += 1
            return True
        return False

    def _early(self, now: float) -> list[Reading]:
        horizon = now - self.policy.pre_arrival_window_s
        return [r for r in self.buffered if (r.received_at or r.observed_at) >= horizon]

    def _buffer(self, reading: Reading, now: float) -> None:
        self.buffered = self._early(now)
        self.buffered.append(reading)

    def _close_transaction(self, result: TxResult, now: float) -> list[Action]:
        """End the transaction (the row chose IDLE, or FAULT while a device that failed meanwhile is down)."""
        assert self.tx is not None
        tx, released_by, entered = self.tx, self.passage.released_by, self.passage.vehicle_entered
        self.departed = DepartedTruck.of(tx, self.passage.arrival_cleared_at or now)
        unknown = self.passage.departed_unseen
        self.tx, self.passage = None, Passage()
        return [CancelTimer(tx.id),
                CloseTransaction(tx, result, released_by, vehicle_entered=entered, passage_unknown=unknown)]


# ---------------------------------------------------------------- the table

S = LaneState
M = LaneMachine


def _go(to: LaneState, *do: Effect, when: Guard | tuple[Guard, ...] = ()) -> Go:
    return Go(to, do, when if isinstance(when, tuple) else (when,))


def _closing(*do: Effect, when: Guard | tuple[Guard, ...] = ()) -> tuple[Go, Go]:
    """The transaction ends: FAULT while a device that failed meanwhile is down, IDLE otherwise."""
    when = when if isinstance(when, tuple) else (when,)
    return _go(S.FAULT, *do, when=(*when, M.device_down)), _go(S.IDLE, *do, when=when)


_WAITING = (S.ARRIVED, S.COLLECTING)


def _ends(state: LaneState, *do: Effect, when: Guard | tuple[Guard, ...] = ()) -> tuple[Go, ...]:
    """The transaction ends from `state` (see the invariants: where a device may be down, FAULT is a choice)."""
    if state in _WAITING:
        return (_go(S.IDLE, *do, when=when),)
    if state == S.FAULT:
        return (_go(S.FAULT, *do, when=when),)
    return _closing(*do, when=when)


_NO_TRUCK = Refuse("no truck to {action}", (M.no_transaction,))
_RELEASED = Refuse("the truck is already released", (M.truck_released,))
_NO_ALARM = Refuse("no alarm to acknowledge", (M.no_alarm,))
# Persist before acting: a release that cannot be journaled is no release (the lane still closes, by hand too).
_NO_JOURNAL = Refuse("the journal cannot write: no {action} until it writes again", (M.journal_down,))
# Officers decide on what the rules decided: a release while the truck is still being read would pass over
# readings still to come (an X-ray verdict, a seal), so the kiosk offers no decision until then.
_BEING_READ = Refuse("the truck is still being read: decide once the lane has decided")
# A re-decision follows its late reading (or Reevaluate) within one event: nothing can decide the truck in between.
_NOT_HELD = Refuse("re-decision for a truck the rules no longer hold at the barrier")
_MAY_REDECIDE = (M.held_by_rules, M.within_redecide_window)


def _officer_rows(state: LaneState) -> dict[str, tuple[Row, ...]]:
    """An officer decides on the truck at the lane (ARRIVED, COLLECTING, DECIDED, FAULT)."""
    refusals: tuple[Refuse, ...] = () if state in _WAITING else (_RELEASED,)
    release = (_NO_JOURNAL, *refusals, _go(S.PASSING, M._officer_decides, when=M.boom_up),
               _go(S.DECIDED, M._officer_decides))
    manual_open = release
    if state == S.FAULT:  # the lane may have no truck; a vehicle may still be let through by hand
        new_vehicle = (M._open_manual_transaction, M._officer_decides)
        manual_open = (_NO_JOURNAL, _go(S.PASSING, *new_vehicle, when=(M.no_transaction, M.boom_up)),
                       _go(S.DECIDED, *new_vehicle, when=M.no_transaction), *manual_open)
        refusals = (_NO_TRUCK, *refusals)
        release = (_NO_TRUCK, *release)
    return {
        "officer_release": release,
        "officer_refuse": (*refusals, _go(S.DECIDED, M._officer_decides)),
        "officer_inspect": (*refusals, _go(S.DECIDED, M._officer_decides)),
        "officer_manual_open": manual_open,
    }


def _everywhere(state: LaneState) -> dict[str, tuple[Row, ...]]:
    """Events every state accepts; a state's own rows below replace these where it differs."""
    same = _go(state, M._nothing)
    return {
        "safety_on": (_go(state, M._vehicle_on_safety_loop),),
        "safety_off": (*_ends(state, M._close_driven_through, M._intruder_left, when=M.intruder_drove_through),
                       _go(state, M._intruder_left)),
        "exit_on": (same,),
        "exit_off": (same,),
        "officer_manual_close": (_go(state, M._manual_close),),
        "officer_acknowledge_alarm": (_NO_ALARM, _go(state, M._acknowledge_alarm)),
        "boom_open": (_go(state, M._boom_opened),),
        "boom_closed": (*_ends(state, M._close_left_lane, when=M.backed_away), same),
        "reading": (_go(state, M._take_reading),),
        "timeout": (_go(state, M._collect_timed_out),),
        "fault": (_go(state, M._device_failed),),
        "barrier_fault": (_go(S.FAULT, M._device_failed),),
        "recovered": (_go(state, M._reclose_unreleased_boom),),
        "reevaluate": (same,),
        "claim_refused": (_go(state, M._claim_refused),),
    }


def _truck_leaves_arrival(state: LaneState) -> tuple[Row, ...]:
    """The arrival loop cleared while a truck waits unreleased: it drove through, may be driving, or left."""
    rows = (*_ends(state, M._close_driven_through, when=M.drove_through),
            _go(state, M._watch_where_it_goes, when=M.boom_up_unreleased))
    if state in _WAITING:
        return (*rows, *_ends(state, M._close_left_lane))
    return (*rows, *_ends(state, M._close_left_lane, when=M.truck_unreleased), _go(state, M._nothing))


def _waiting(state: LaneState) -> dict[str, tuple[Row, ...]]:
    """ARRIVED and COLLECTING: a truck on the arrival loop, readings coming in, no decision yet."""
    return {
        **_everywhere(state),
        **_officer_rows(state),
        "officer_release": (_BEING_READ,),
        "officer_refuse": (_BEING_READ,),
        "officer_inspect": (_BEING_READ,),
        "reading": (_go(S.COLLECTING, M._take_reading),),
        "decided_release": (_go(S.PASSING, M._record_decision, M._release_auto, when=M.boom_up),
                            _go(S.DECIDED, M._record_decision, M._release_auto)),
        "decided_hold": (_go(S.DECIDED, M._record_decision),),
        "decided_refuse": (_go(S.DECIDED, M._record_decision),),
        "arrival_on": (_go(state, M._back_on_arrival),),
        "arrival_off": _truck_leaves_arrival(state),
        "fault": (_go(S.FAULT, M._device_failed),),
    }


TRANSITIONS: dict[LaneState, dict[str, tuple[Row, ...]]] = {
    S.IDLE: {
        **_everywhere(S.IDLE),
        "officer_manual_open": (_NO_JOURNAL,
                                _go(S.PASSING, M._open_manual_transaction, M._officer_decides, when=M.boom_up),
                                _go(S.DECIDED, M._open_manual_transaction, M._officer_decides)),
        "arrival_on": (_go(S.COLLECTING, M._open_transaction, when=M.early_readings_held),
                       _go(S.ARRIVED, M._open_transaction)),
        "safety_off": (_go(S.IDLE, M._intruder_left),),
        "arrival_off": (_go(S.IDLE, M._nothing),),
        "boom_closed": (_go(S.IDLE, M._nothing),),
        "fault": (_go(S.FAULT, M._device_failed),),
    },
    S.ARRIVED: _waiting(S.ARRIVED),
    S.COLLECTING: _waiting(S.COLLECTING),
    S.DECIDED: {
        **_everywhere(S.DECIDED),
        **_officer_rows(S.DECIDED),
        "open_failed": (_go(S.DECIDED, M._open_failed),),
        "claim_refused": (_go(S.DECIDED, M._claim_refused),),
        "boom_open": (_go(S.PASSING, M._boom_opened, when=M.release_recorded), _go(S.DECIDED, M._boom_opened)),
        "boom_closed": (*_closing(M._close_left_lane, when=M.backed_away),
                        *_closing(M._close_before_passage, when=M.closed_by_hand),
                        _go(S.DECIDED, M._nothing)),
        "arrival_on": (_go(S.DECIDED, M._back_on_arrival),),
        "arrival_off": _truck_leaves_arrival(S.DECIDED),
        "reading": (_go(S.DECIDED, M._take_reading_again, when=_MAY_REDECIDE), _go(S.DECIDED, M._take_reading)),
        "reevaluate": (_go(S.DECIDED, M._reevaluate_held, when=_MAY_REDECIDE), _go(S.DECIDED, M._nothing)),
        "redecided_release": (
            _go(S.PASSING, M._record_redecision, M._release_auto, when=(M.held_by_rules, M.boom_up)),
            _go(S.DECIDED, M._record_redecision, M._release_auto, when=M.held_by_rules), _NOT_HELD),
        "redecided_hold": (_go(S.DECIDED, M._record_redecision, when=M.held_by_rules), _NOT_HELD),
        "redecided_refuse": (_go(S.DECIDED, M._record_redecision, when=M.held_by_rules), _NOT_HELD),
        "recovered": (_go(S.PASSING, M._resend_open, when=(M.release_waiting, M.boom_up)),
                      _go(S.DECIDED, M._resend_open, when=M.release_waiting),
                      _go(S.DECIDED, M._reclose_unreleased_boom)),
    },
    S.PASSING: {
        **_everywhere(S.PASSING),
        "safety_off": (_go(S.PASSING, M._close_behind_vehicle, when=M.vehicle_entered),
                       _go(S.PASSING, M._intruder_left)),
        "arrival_on": (_go(S.PASSING, M._back_on_arrival),),
        "arrival_off": (_go(S.PASSING, M._watch_released_truck, when=M.released_not_entered),
                        _go(S.PASSING, M._nothing)),
        "timeout": (_go(S.PASSING, M._close_after_departure, when=M.released_truck_departed),
                    _go(S.PASSING, M._collect_timed_out)),
        "exit_on": (_go(S.PASSING, M._close_behind_unseen_vehicle, when=M.passed_unseen), _go(S.PASSING, M._nothing)),
        "claim_refused": (_go(S.DECIDED, M._claim_refused),),
        "boom_closed": (
            _go(S.FAULT, M._boom_down_before_passage, when=(M.no_vehicle_entered, M.device_down)),
            _go(S.IDLE, M._boom_down_before_passage, when=M.no_vehicle_entered),
            _go(S.FAULT, M._close_passed, M._open_transaction, when=(M.next_truck_waiting, M.device_down)),
            _go(S.COLLECTING, M._close_passed, M._open_transaction, when=(M.next_truck_waiting, M.early_readings_held)),
            _go(S.ARRIVED, M._close_passed, M._open_transaction, when=M.next_truck_waiting),
            *_closing(M._close_passed),
        ),
    },
    S.FAULT: {
        **_everywhere(S.FAULT),
        **_officer_rows(S.FAULT),
        "decided_release": (_go(S.FAULT, M._ignore_release_during_fault),),
        "decided_hold": (_go(S.FAULT, M._record_decision),),
        "decided_refuse": (_go(S.FAULT, M._record_decision),),
        "open_failed": (_go(S.FAULT, M._open_failed),),
        "arrival_on": (_go(S.FAULT, M._back_on_arrival, M._open_transaction, when=M.no_transaction),
                       _go(S.FAULT, M._back_on_arrival)),
        "arrival_off": _truck_leaves_arrival(S.FAULT),
        "recovered": (
            _go(S.PASSING, M._resend_open, when=(M.release_waiting, M.boom_up)),
            _go(S.DECIDED, M._resend_open, when=M.release_waiting),
            _go(S.FAULT, M._reclose_unreleased_boom, when=M.device_down),
            _go(S.IDLE, M._reclose_unreleased_boom, when=M.no_transaction),
            _go(S.PASSING, M._reclose_unreleased_boom, when=(M.truck_released, M.boom_up)),
            _go(S.DECIDED, M._reclose_unreleased_boom, when=M.truck_released),
            _go(S.DECIDED, M._reclose_unreleased_boom, when=M.decided),
            _go(S.COLLECTING, M._reclose_unreleased_boom, M._evaluate_again),
        ),
    },
}


def _name(function: Callable[..., Any]) -> str:
    return function.__name__.lstrip("_")


def transition_table_text() -> str:
    """The transition table as text: `STATE --event--> NEXT|NEXT` per event, then one line per row."""
    lines = []
    for state, events in TRANSITIONS.items():
        for key, rows in sorted(events.items()):
            targets = sorted({row.to for row in rows if isinstance(row, Go)}, key=list(LaneState).index)
            lines.append(f"{state.value} --{key}--> {'|'.join(t.value for t in targets) or 'error'}")
            if len(rows) == 1 and isinstance(rows[0], Go) and not rows[0].when:
                continue
            for row in rows:
                guards = " and ".join(_name(g) for g in row.when) or "otherwise"
                then = (f"{row.to.value}: {', '.join(_name(d) for d in row.do)}" if isinstance(row, Go)
                        else f"error: {row.why.format(action='<action>')}")
                lines.append(f"    [{guards}] {then}")
    return "\n".join(lines)
