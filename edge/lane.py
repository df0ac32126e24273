"""The lane state machine: one truck at a time from arrival loop to closed boom. No I/O.

Theory of operation. The arrival loop opens a transaction; readings (plates, seals, containers)
are gathered into it, including readings that came a few seconds before the truck reached the
loop. Each new reading asks the controller to evaluate the rules; when the decision no longer
waits for readings, or the collect timer runs out, the controller reports the decision. A RELEASE
(automatic or by an officer) asks for the boom to open; the truck crosses the safety loop; when
the safety loop clears the boom is asked to close; when the boom reports closed the lane is idle
again, and a truck already waiting on the arrival loop starts the next transaction. A device
fault puts the lane in FAULT: nothing is released automatically until the device recovers.

Readings after the decision. Once a truck is decided (by the rules or an officer) its
transaction is what the decision was made on and never changes: a reading that arrives for it is
journaled as late, shown to the officer beside the decision, and raises an alarm when it
contradicts it (another confident plate, another scan verdict). While a released truck is
leaving (boom opening, PASSING) a reading is more likely the next truck's: it is also held for the
pre-arrival window, like a reading at an idle lane, and attaches to the next transaction.

Boom tamper. A boom that opens with no journaled release (the PLC's open coil written by someone
else over Modbus) is an attack: the lane latches BOOM_OPEN_WITHOUT_RELEASE until a supervisor
acknowledges it, commands the boom closed at once, or as soon as the safety loop is clear (never
onto a vehicle), and again every time it opens. A vehicle that goes under the unreleased boom is
journaled as an unauthorised passage; a held truck that drives through closes its transaction as
`unauthorised_passage`, never `left_lane`. None of this is a release: the truck stays held.

Everything that affects states and transitions lives in this file. TRANSITIONS lists, for each
state, the events it accepts and the states they may lead to; an event a state does not list is a
LaneError. The machine returns Actions; the controller (edge/lane_control.py) journals and carries
them out, and feeds the results back as events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from devices.protocols.plates import normalise_plate
from devices.readings import PlateRead, Reading
from edge.config import LanePolicy
from edge.rules import Decision, Outcome, decision_for_restart
from edge.transaction import Transaction


class LaneState(StrEnum):
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
    opened: bool

    @property
    def key(self) -> str:
        return "boom_open" if self.opened else "boom_closed"


@dataclass(frozen=True)
class ReadingEvent:
    reading: Reading
    key: str = "reading"


@dataclass(frozen=True)
class CollectTimeout:
    transaction_id: str
    key: str = "timeout"


@dataclass(frozen=True)
class Decided:
    """The controller evaluated the rules and the decision is final."""

    decision: Decision

    @property
    def key(self) -> str:
        return f"decided_{self.decision.outcome.value}"


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

    @property
    def key(self) -> str:
        return f"officer_{self.action}"


@dataclass(frozen=True)
class DeviceFailed:
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
class DeviceRestored:
    device_id: str
    key: str = "recovered"


LaneEvent = (
    LoopEvent | BoomEvent | ReadingEvent | CollectTimeout | Decided | OfficerAction | DeviceFailed
    | DeviceRestored | OpenFailed
)

# ---------------------------------------------------------------- actions (outputs)


@dataclass(frozen=True)
class Action:
    """Something the controller must do. kind names it; data carries the specifics."""

    kind: str  # open_transaction, evaluate, start_timer, cancel_timer, open_barrier,
    # close_barrier, record_decision, record_officer_action, close_transaction, alarm, state,
    # attach_early_reading, late_reading, unauthorised_passage
    data: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- the table

S = LaneState
_ALWAYS = {"safety_on", "safety_off", "exit_on", "exit_off", "officer_acknowledge_alarm"}
TAMPER_ALARM = "BOOM_OPEN_WITHOUT_RELEASE"

TRANSITIONS: dict[LaneState, dict[str, tuple[LaneState, ...]]] = {
    S.IDLE: {
        "officer_manual_open": (S.DECIDED, S.PASSING),
        "officer_manual_close": (),
        "arrival_on": (S.ARRIVED, S.COLLECTING),
        "arrival_off": (S.IDLE,),
        "reading": (S.IDLE,),
        "boom_open": (S.IDLE,),
        "boom_closed": (S.IDLE,),
        "timeout": (S.IDLE,),
        "fault": (S.FAULT,),
        "barrier_fault": (S.FAULT,),
        "recovered": (S.IDLE,),
    },
    S.ARRIVED: {
        "officer_release": (S.DECIDED, S.PASSING),
        "officer_refuse": (S.DECIDED,),
        "officer_inspect": (S.DECIDED,),
        "officer_manual_open": (S.DECIDED, S.PASSING),
        "officer_manual_close": (),
        "reading": (S.COLLECTING,),
        "timeout": (S.ARRIVED,),
        "decided_release": (S.DECIDED, S.PASSING),
        "decided_hold": (S.DECIDED,),
        "decided_refuse": (S.DECIDED,),
        "arrival_on": (S.ARRIVED,),
        "arrival_off": (S.ARRIVED, S.IDLE, S.FAULT),
        "boom_open": (S.ARRIVED,),
        "boom_closed": (S.ARRIVED, S.IDLE, S.FAULT),
        "fault": (S.FAULT,),
        "barrier_fault": (S.FAULT,),
        "recovered": (S.ARRIVED,),
    },
    S.COLLECTING: {
        "officer_release": (S.DECIDED, S.PASSING),
        "officer_refuse": (S.DECIDED,),
        "officer_inspect": (S.DECIDED,),
        "officer_manual_open": (S.DECIDED, S.PASSING),
        "officer_manual_close": (),
        "reading": (S.COLLECTING,),
        "timeout": (S.COLLECTING,),
        "decided_release": (S.DECIDED, S.PASSING),
        "decided_hold": (S.DECIDED,),
        "decided_refuse": (S.DECIDED,),
        "arrival_on": (S.COLLECTING,),
        "arrival_off": (S.COLLECTING, S.IDLE, S.FAULT),
        "boom_open": (S.COLLECTING,),
        "boom_closed": (S.COLLECTING, S.IDLE, S.FAULT),
        "fault": (S.FAULT,),
        "barrier_fault": (S.FAULT,),
        "recovered": (S.COLLECTING,),
    },
    S.DECIDED: {
        "reading": (S.DECIDED,),
        "timeout": (S.DECIDED,),
        "officer_release": (S.DECIDED, S.PASSING),
        "officer_refuse": (S.DECIDED,),
        "officer_inspect": (S.DECIDED,),
        "officer_manual_open": (S.DECIDED, S.PASSING),
        "officer_manual_close": (),
        "open_failed": (S.DECIDED,),
        "boom_open": (S.DECIDED, S.PASSING),
        "boom_closed": (S.DECIDED, S.IDLE, S.FAULT),
        "arrival_on": (S.DECIDED,),
        "arrival_off": (S.DECIDED, S.IDLE, S.FAULT),
        "fault": (S.DECIDED,),
        "barrier_fault": (S.FAULT,),
        "recovered": (S.DECIDED, S.PASSING),
    },
    S.PASSING: {
        "officer_manual_close": (),
        "reading": (S.PASSING,),
        "timeout": (S.PASSING,),
        "arrival_on": (S.PASSING,),
        "arrival_off": (S.PASSING,),
        "boom_open": (S.PASSING,),
        "boom_closed": (S.PASSING, S.IDLE, S.ARRIVED, S.COLLECTING, S.FAULT),
        "fault": (S.PASSING,),
        "barrier_fault": (S.FAULT,),
        "recovered": (S.PASSING,),
    },
    S.FAULT: {
        "reading": (S.FAULT,),
        "timeout": (S.FAULT,),
        "arrival_on": (S.FAULT,),
        "arrival_off": (S.FAULT, S.IDLE),
        "boom_open": (S.FAULT,),
        "boom_closed": (S.FAULT, S.IDLE),
        "decided_release": (S.FAULT,),
        "decided_hold": (S.FAULT,),
        "decided_refuse": (S.FAULT,),
        "officer_release": (S.DECIDED, S.PASSING),
        "officer_refuse": (S.DECIDED,),
        "officer_inspect": (S.DECIDED,),
        "officer_manual_open": (S.DECIDED, S.PASSING),
        "officer_manual_close": (),
        "open_failed": (S.FAULT,),
        "fault": (S.FAULT,),
        "barrier_fault": (S.FAULT,),
        "recovered": (S.FAULT, S.IDLE, S.COLLECTING, S.DECIDED, S.PASSING),
    },
}
# A vehicle leaving the safety loop under a boom opened with no release may end the held truck's
# transaction (it drove through): an unauthorised passage.
for _state, _targets in {S.IDLE: (S.IDLE,), S.ARRIVED: (S.ARRIVED, S.IDLE, S.FAULT),
                         S.COLLECTING: (S.COLLECTING, S.IDLE, S.FAULT), S.DECIDED: (S.DECIDED, S.IDLE, S.FAULT),
                         S.PASSING: (), S.FAULT: (S.FAULT, S.IDLE)}.items():
    TRANSITIONS[_state]["safety_off"] = _targets
for _state in TRANSITIONS.values():
    for _key in _ALWAYS:
        _state.setdefault(_key, ())  # loops never change the state by themselves (handled below)


@dataclass
class LaneMachine:
    """State of one lane and the rules for moving between states."""

    lane_id: str
    policy: LanePolicy
    state: LaneState = LaneState.IDLE
    tx: Transaction | None = None
    buffered: list[Reading] = field(default_factory=list)
    loops: dict[str, bool] = field(
        default_factory=lambda: {"arrival": False, "safety": False, "exit": False}
    )
    boom_open: bool = False
    faulty: dict[str, str] = field(default_factory=dict)
    state_before_fault: LaneState = LaneState.IDLE
    alarm: dict[str, Any] | None = None  # latched until acknowledged: {code, text, since, openings}
    reclose_pending: bool = False  # the boom opened with no release: close it once the safety loop is clear
    intruder: bool = False  # a vehicle is under a boom that was opened with no release
    intruder_tx: str | None = None  # the transaction of the held truck that drove through, if it was one

    # ------------------------------------------------------------ entry point

    def handle(self, event: LaneEvent, now: float) -> list[Action]:
        """Apply one event; return the actions the controller must carry out, in order."""
        allowed = TRANSITIONS[self.state].get(event.key)
        if allowed is None:
            raise LaneError(f"lane {self.lane_id}: {event.key} is not expected in state {self.state}")
        before = self.state
        actions = getattr(self, f"_on_{event.key}")(event, now)
        if allowed and self.state not in allowed:
            raise AssertionError(f"{before} --{event.key}--> {self.state} is not in the table")
        if not allowed:
            self.state = before
        if self.state != before:
            actions.append(Action("state", {"from": before.value, "to": self.state.value}))
        return actions

    # ------------------------------------------------------------ loops

    def _on_arrival_on(self, event: LoopEvent, now: float) -> list[Action]:
        self.loops["arrival"] = True
        if self.tx is not None:
            self.tx.left_arrival = False  # it came back (or never went)
        if self.state == S.IDLE:
            return self._open_transaction(now)
        if self.state == S.FAULT and self.tx is None:
            return self._open_transaction(now, evaluate=False)
        return []

    def _on_arrival_off(self, event: LoopEvent, now: float) -> list[Action]:
        self.loops["arrival"] = False
        tx = self.tx
        if tx is not None and not tx.open_commanded and self.state != S.PASSING:
            if tx.entered_without_release:
                self.intruder_tx = tx.id
                return self._close_transaction("unauthorised_passage", now)
            if self._open_without_release():
                # Backing away or driving through the boom someone opened? The safety loop will tell;
                # if the boom closes with nobody under it, the truck left the lane.
                tx.left_arrival = True
                return []
        if self.state in (S.ARRIVED, S.COLLECTING) or (
            self.state in (S.DECIDED, S.FAULT) and self.tx and not self.tx.open_commanded
        ):
            return self._close_transaction("left_lane", now)
        return []

    def _on_safety_on(self, event: LoopEvent, now: float) -> list[Action]:
        self.loops["safety"] = True
        actions: list[Action] = []
        # DECIDED too: the loop and the boom's limit switch can change within one PLC poll.
        if self.tx and self.tx.open_commanded and self.state in (S.PASSING, S.DECIDED):
            if self.tx.closing:
                actions.append(Action("alarm", {"code": "TAILGATING",
                                                "text": "Safety loop occupied again while closing"}))
                self.tx.closing = False
            self.tx.vehicle_entered = True
        if self._open_without_release():
            self.intruder = True
            if self.tx is not None:
                self.tx.entered_without_release = True
        return actions

    def _on_safety_off(self, event: LoopEvent, now: float) -> list[Action]:
        self.loops["safety"] = False
        if self.state == S.PASSING and self.tx and self.tx.vehicle_entered:
            self.tx.closing = True
            return [Action("close_barrier", {"transaction": self.tx.id, "why": "vehicle passed"})]
        actions: list[Action] = []
        if self.intruder:
            self.intruder = False
            tx = self.tx
            if tx is not None and tx.entered_without_release and not tx.open_commanded and not self.loops["arrival"]:
                self.intruder_tx = tx.id
                actions += self._close_transaction("unauthorised_passage", now)
            actions.append(Action("unauthorised_passage", {
                "transaction": self.intruder_tx, "alarm": TAMPER_ALARM,
                "text": "A vehicle went under a boom that was opened with no release"}))
            self.intruder_tx = None
        if self.reclose_pending and self.boom_open:
            actions.append(Action("close_barrier", {"transaction": self.tx.id if self.tx else None,
                                                    "why": "boom opened without a release: lane clear"}))
        return actions

    def _on_exit_on(self, event: LoopEvent, now: float) -> list[Action]:
        self.loops["exit"] = True
        return []

    def _on_exit_off(self, event: LoopEvent, now: float) -> list[Action]:
        self.loops["exit"] = False
        return []

    # ------------------------------------------------------------ boom

    def _on_boom_open(self, event: BoomEvent, now: float) -> list[Action]:
        self.boom_open = True
        if self.tx is not None and self.tx.open_pending:
            # The open command whose answer was lost did reach the PLC: it is the journaled release.
            self.tx.open_pending, self.tx.open_commanded = False, True
        if self.state == S.DECIDED and self.tx and self.tx.open_commanded:
            self.state = S.PASSING
            return []
        if self.state == S.PASSING or (self.tx is not None and self.tx.open_commanded):
            return []
        return self._tamper(now)

    def _open_without_release(self) -> bool:
        """The boom stands open (or is still coming down) and no release was journaled for it."""
        return self.boom_open and self.state != S.PASSING and not (self.tx is not None and self.tx.open_commanded)

    def _tamper(self, now: float) -> list[Action]:
        """The boom opened with no release: latch the alarm and close it, never onto a vehicle."""
        if self.alarm is None:
            self.alarm = {"code": TAMPER_ALARM, "since": now, "openings": 0,
                          "text": "Boom opened without a recorded release: closed by the node"}
        self.alarm["openings"] += 1
        self.alarm["last_at"] = now
        self.reclose_pending = True
        transaction = self.tx.id if self.tx else None
        actions = [Action("alarm", {"code": TAMPER_ALARM, "transaction": transaction,
                                    "openings": self.alarm["openings"],
                                    "text": "Boom opened without a recorded release; closing it"})]
        if self.loops["safety"]:
            self.intruder = True
            if self.tx is not None:
                self.tx.entered_without_release = True
        else:
            actions.append(Action("close_barrier", {"transaction": transaction,
                                                    "why": "boom opened without a release"}))
        return actions

    def _on_boom_closed(self, event: BoomEvent, now: float) -> list[Action]:
        self.boom_open = False
        self.reclose_pending = False
        if self.tx is not None and self.tx.left_arrival and not self.loops["arrival"] and not self.tx.open_commanded:
            return self._close_transaction("left_lane", now)  # nobody went under the boom: it backed away
        if self.state == S.DECIDED and self.tx and self.tx.open_commanded and self.tx.closing:
            return self._close_transaction("closed_before_passage", now)  # closed by hand before it went
        if self.state != S.PASSING or self.tx is None:
            return []
        if not self.tx.vehicle_entered:
            # Closed before the truck went through (PLC heartbeat safety, manual close).
            return [Action("alarm", {"code": "BOOM_CLOSED_BEFORE_PASSAGE",
                                     "text": "Boom closed before the truck passed"})] + \
                self._close_transaction("closed_before_passage", now)
        actions = self._close_transaction("passed", now)
        if self.loops["arrival"]:
            actions += self._open_transaction(now)
        return actions

    # ------------------------------------------------------------ readings and decisions

    def _on_reading(self, event: ReadingEvent, now: float) -> list[Action]:
        reading = event.reading
        if self.tx is None or self.state == S.PASSING:
            self._buffer(reading, now)
            return []
        if self.tx.decided:
            return self._late_reading(reading, now)
        changed = self.tx.add(reading)
        if self.state == S.ARRIVED:
            self.state = S.COLLECTING
        if self.state == S.COLLECTING and changed:
            return [Action("evaluate", {"transaction": self.tx.id, "final": False})]
        return []

    def _late_reading(self, reading: Reading, now: float) -> list[Action]:
        """A reading for a truck already decided: journaled and shown as late, never merged."""
        tx = self.tx
        assert tx is not None
        if tx.open_commanded:
            self._buffer(reading, now)  # the released truck is leaving: it may be the next truck's
        news, conflicts = tx.add_late(reading)
        if not news:
            return []
        actions = [Action("late_reading", {"transaction": tx.id, "reading": reading})]
        for conflict in conflicts:
            text = f"scanner verdicts disagree after the decision: {conflict['detail']}"
            actions.append(Action("alarm", {"transaction": tx.id, **conflict, "text": text}))
        if (isinstance(reading, PlateRead) and reading.confidence >= self.policy.min_plate_confidence
                and normalise_plate(reading.plate) not in tx.plates and not tx.open_commanded):
            detail = f"{reading.plate} ({reading.confidence:.2f}) after the decision on {', '.join(tx.plates) or '-'}"
            tx.late_conflicts.append({"code": "PLATE_CONFLICT", "detail": detail})
            actions.append(Action("alarm", {"transaction": tx.id, "code": "PLATE_CONFLICT", "detail": detail,
                                            "text": f"another plate read for the decided truck: {detail}"}))
        return actions

    def _on_timeout(self, event: CollectTimeout, now: float) -> list[Action]:
        if self.tx is None or event.transaction_id != self.tx.id:
            return []
        if self.state in (S.ARRIVED, S.COLLECTING) or (self.state == S.FAULT and self.tx.decision is None):
            return [Action("evaluate", {"transaction": self.tx.id, "final": True})]
        return []

    def _on_decided_release(self, event: Decided, now: float) -> list[Action]:
        return self._decide(event.decision, now)

    _on_decided_hold = _on_decided_release
    _on_decided_refuse = _on_decided_release

    def _decide(self, decision: Decision, now: float) -> list[Action]:
        assert self.tx is not None
        if self.state == S.FAULT:
            if decision.outcome == Outcome.RELEASE:
                # Computed just before the fault: never act on a release while a device is down.
                return [Action("alarm", {"code": "DECISION_DURING_FAULT",
                                         "text": "Release arrived while the lane is in FAULT; not acted on"})]
            # A hold during a fault (DEVICE_FAULT) is recorded so the officer sees why the truck waits.
            self.tx.decision = decision
            self.tx.decided_at = now
            return [Action("cancel_timer", {"transaction": self.tx.id}),
                    Action("record_decision", {"transaction": self.tx.id, "decision": decision})]
        self.tx.decision = decision
        self.tx.decided_at = now
        self.state = S.DECIDED
        actions = [Action("cancel_timer", {"transaction": self.tx.id}),
                   Action("record_decision", {"transaction": self.tx.id, "decision": decision})]
        if decision.outcome == Outcome.RELEASE:
            actions += self._release("auto")
        return actions

    def _on_officer_release(self, event: OfficerAction, now: float) -> list[Action]:
        return self._officer(event, now)

    _on_officer_refuse = _on_officer_release
    _on_officer_inspect = _on_officer_release

    def _on_officer_manual_open(self, event: OfficerAction, now: float) -> list[Action]:
        if self.tx is None:
            # A vehicle with no transaction (ambulance, maintenance): a transaction of its own.
            self.tx = Transaction(self.lane_id, opened_at=now)
            self.tx.manual = True
            opened = [Action("open_transaction", {"transaction": self.tx.id, "manual": True})]
            return opened + self._officer(event, now)
        return self._officer(event, now)

    def _on_officer_manual_close(self, event: OfficerAction, now: float) -> list[Action]:
        transaction = self.tx.id if self.tx else None
        if self.tx is not None and self.tx.open_commanded:
            self.tx.closing = True
        return [Action("record_officer_action", {"transaction": transaction, "action": event.action,
                                                 "officer": event.officer, "reason": event.reason}),
                Action("close_barrier", {"transaction": transaction, "why": f"manual close by {event.officer}"})]

    def _on_officer_acknowledge_alarm(self, event: OfficerAction, now: float) -> list[Action]:
        if self.alarm is None:
            raise LaneError(f"lane {self.lane_id}: no alarm to acknowledge")
        alarm, self.alarm = self.alarm, None
        return [Action("record_officer_action", {
            "transaction": self.tx.id if self.tx else None, "action": event.action, "officer": event.officer,
            "reason": event.reason, "alarm": alarm["code"], "openings": alarm["openings"],
            "alarm_since": alarm["since"]})]

    def _officer(self, event: OfficerAction, now: float) -> list[Action]:
        if self.tx is None:
            raise LaneError(f"lane {self.lane_id}: no truck to {event.action}")
        if self.tx.open_commanded:
            raise LaneError(f"lane {self.lane_id}: the truck is already released")
        self.state = S.DECIDED
        actions = [Action("cancel_timer", {"transaction": self.tx.id}),
                   Action("record_officer_action", {"transaction": self.tx.id, "action": event.action,
                                                    "officer": event.officer, "reason": event.reason})]
        self.tx.officer_actions.append({"action": event.action, "officer": event.officer,
                                        "reason": event.reason, "at": now})
        if event.action in ("release", "manual_open"):
            actions += self._release(event.officer)
        elif event.action == "inspect":
            self.tx.inspection_by = event.officer
        return actions

    def _release(self, by: str) -> list[Action]:
        assert self.tx is not None
        self.tx.released_by = by
        self.tx.open_commanded = True
        self.reclose_pending = False  # the boom is now open on purpose (an alarm stays latched)
        self.intruder = False
        if self.boom_open:
            # Already up (opened with no release, not yet closed again): no boom_open will come, the
            # truck may go now; the boom closes behind it as after any release.
            self.state = S.PASSING
            self.tx.vehicle_entered = self.loops["safety"]
        return [Action("open_barrier", {"transaction": self.tx.id, "released_by": by})]

    # ------------------------------------------------------------ faults

    def _on_fault(self, event: DeviceFailed, now: float) -> list[Action]:
        new = event.device_id not in self.faulty
        self.faulty[event.device_id] = event.error
        if self.state in (S.IDLE, S.ARRIVED, S.COLLECTING):
            self.state_before_fault = self.state
            self.state = S.FAULT
        return [Action("alarm", {"code": "DEVICE_FAULT", "text": f"{event.device_id}: {event.error}"})] if new else []

    def _on_barrier_fault(self, event: DeviceFailed, now: float) -> list[Action]:
        new = event.device_id not in self.faulty
        self.faulty[event.device_id] = event.error
        if self.state != S.FAULT:
            self.state_before_fault = self.state
        self.state = S.FAULT
        return [Action("alarm", {"code": "DEVICE_FAULT", "text": f"{event.device_id}: {event.error}"})] if new else []

    def _on_open_failed(self, event: OpenFailed, now: float) -> list[Action]:
        if self.tx is None or self.tx.id != event.transaction_id:
            return []
        # The release stands (it is journaled); the open is retried when the barrier answers again,
        # as long as the truck is still there. An officer may also release again.
        self.tx.open_commanded = False
        self.tx.open_pending = True
        return [Action("alarm", {"code": "BARRIER_OPEN_FAILED",
                                 "text": f"open command did not reach the PLC ({event.error}); retried on recovery"})]

    def _on_recovered(self, event: DeviceRestored, now: float) -> list[Action]:
        self.faulty.pop(event.device_id, None)
        actions = self._on_recovered_state(now)
        if self.reclose_pending and self.boom_open and not self.loops["safety"]:
            # The PLC answers again and the boom someone opened is still up: close it now.
            actions.insert(0, Action("close_barrier", {"transaction": self.tx.id if self.tx else None,
                                                       "why": "boom opened without a release: PLC answers again"}))
        return actions

    def _on_recovered_state(self, now: float) -> list[Action]:
        if self.tx is not None and self.tx.open_pending and not self.faulty and self.state in (S.DECIDED, S.FAULT):
            self.state = S.DECIDED
            self.tx.open_pending = False
            return self._release(self.tx.released_by or "auto")
        if self.state != S.FAULT or self.faulty:
            return []
        if self.tx is None:
            self.state = S.IDLE
            return []
        if self.tx.open_commanded:
            self.state = S.PASSING if self.boom_open else S.DECIDED
            return []
        if self.tx.decision is not None:
            self.state = S.DECIDED
            return []
        self.state = S.COLLECTING
        return [Action("evaluate", {"transaction": self.tx.id, "final": False})]

    # ------------------------------------------------------------ helpers

    def _buffer(self, reading: Reading, now: float) -> None:
        horizon = now - self.policy.pre_arrival_window_s
        self.buffered = [r for r in self.buffered if (r.received_at or r.observed_at) >= horizon]
        self.buffered.append(reading)

    def _open_transaction(self, now: float, evaluate: bool = True) -> list[Action]:
        self.tx = Transaction(self.lane_id, opened_at=now)
        if self.state == S.IDLE or self.state == S.PASSING:
            self.state = S.ARRIVED
        horizon = now - self.policy.pre_arrival_window_s
        early = [r for r in self.buffered if (r.received_at or r.observed_at) >= horizon]
        self.buffered = []
        actions = [Action("open_transaction", {"transaction": self.tx.id}),
                   Action("start_timer", {"transaction": self.tx.id,
                                          "seconds": self.policy.collect_timeout_s})]
        changed = False
        for reading in early:
            changed = self.tx.add(reading) or changed
            actions.append(Action("attach_early_reading", {"transaction": self.tx.id, "reading": reading}))
        if early and self.state == S.ARRIVED:
            self.state = S.COLLECTING
        if changed and evaluate and self.state == S.COLLECTING:
            actions.append(Action("evaluate", {"transaction": self.tx.id, "final": False}))
        return actions

    def _close_transaction(self, result: str, now: float) -> list[Action]:
        assert self.tx is not None
        tx = self.tx
        self.tx = None
        # A device that failed while this truck was being served still blocks the next one.
        self.state = S.FAULT if self.faulty else S.IDLE
        return [Action("cancel_timer", {"transaction": tx.id}),
                Action("close_transaction", {"transaction": tx.id, "result": result, "tx": tx})]

    # ------------------------------------------------------------ restart

    def restore(self, tx: Transaction, boom_open: bool) -> list[Action]:
        """Resume after a restart with the transaction that was open; never re-open the barrier.

        A truck whose release was acted on keeps PASSING if the boom is still open (it will close
        once the safety loop is clear); anything else is held for an officer to review.
        """
        self.tx = tx
        self.boom_open = boom_open
        if tx.open_commanded and boom_open:
            tx.vehicle_entered = True  # unknown: assume a vehicle may be there, close only when clear
            self.state = S.PASSING
            return [Action("close_barrier", {"transaction": tx.id, "why": "restart, lane clear"})]
        tx.open_commanded = False
        tx.released_by = None
        decision = decision_for_restart(tx.decision.declaration if tx.decision else None)
        tx.decision = decision
        self.state = S.DECIDED
        return [Action("record_decision", {"transaction": tx.id, "decision": decision})]

    def snapshot(self) -> dict[str, Any]:
        """JSON-friendly view of the lane for the kiosk."""
        return {
            "lane": self.lane_id,
            "state": self.state.value,
            "transaction": self.tx.to_dict() if self.tx else None,
            "loops": dict(self.loops),
            "boom_open": self.boom_open,
            "faults": dict(self.faulty),
            "buffered_readings": len(self.buffered),
            "alarm": dict(self.alarm) if self.alarm else None,
            "closing_unreleased_boom": self.reclose_pending,
        }


def transition_table_text() -> str:
    """The transition table as text, one `STATE --event--> NEXT` per line (for docs/diagrams)."""
    lines = []
    for state, events in TRANSITIONS.items():
        for key, targets in sorted(events.items()):
            lines.append(f"{state.value} --{key}--> {'|'.join(t.value for t in targets) or state.value}")
    return "\n".join(lines)
