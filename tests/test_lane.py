"""The lane state machine, without any I/O: events in, actions out."""

from __future__ import annotations

import contextlib
import copy
import random

import pytest

from devices.readings import ContainerRead, PlateRead, ScanRead, ScanVerdict, SealRead, SealStatus
from edge.config import LanePolicy
from edge.lane import (
    OFFICER_ACTIONS,
    TRANSITIONS,
    BoomEvent,
    CollectTimeout,
    Decided,
    DeviceFailed,
    DeviceRestored,
    LaneError,
    LaneMachine,
    LaneState,
    LoopEvent,
    OfficerAction,
    ReadingEvent,
    Redecided,
    Reevaluate,
    Refuse,
    transition_table_text,
)
from edge.rules import Decision, Finding, Outcome
from edge.transaction import Transaction

POLICY = LanePolicy(pre_arrival_window_s=5, collect_timeout_s=20)
LATE_ONLY = LanePolicy(pre_arrival_window_s=5, collect_timeout_s=20, redecide_window_s=0)  # no re-decision
RELEASE = Decision(Outcome.RELEASE, (), "105000000001")
HOLD = Decision(Outcome.HOLD, (Finding("SEAL_MISMATCH", "S9"),), "105000000001")


def plate(text: str = "29C-123.45", at: float = 100.0) -> ReadingEvent:
    return ReadingEvent(PlateRead("cam", text, 0.95, at, at))


def seal(seal_id: str = "S1", at: float = 100.0, status: SealStatus = SealStatus.INTACT) -> ReadingEvent:
    return ReadingEvent(SealRead("rdr", seal_id, status, 90, None, at, at))


def kinds(actions) -> list[str]:
    return [a.kind for a in actions]


def arrived_lane(policy: LanePolicy = POLICY) -> LaneMachine:
    lane = LaneMachine("IMP-1", policy)
    lane.handle(LoopEvent("arrival", True), 100.0)
    return lane


def test_cleared_truck_goes_from_arrival_to_closed_boom():
    lane = arrived_lane()
    assert lane.state == LaneState.ARRIVED
    assert "evaluate" in kinds(lane.handle(plate(), 100.1))
    assert lane.state == LaneState.COLLECTING
    actions = lane.handle(Decided(RELEASE), 100.2)
    assert lane.state == LaneState.DECIDED
    assert kinds(actions).index("record_decision") < kinds(actions).index("open_barrier")
    lane.handle(BoomEvent(opened=True), 101.0)
    assert lane.state == LaneState.PASSING
    lane.handle(LoopEvent("safety", True), 101.5)
    lane.handle(LoopEvent("arrival", False), 101.6)
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 102.0))
    actions = lane.handle(BoomEvent(opened=False), 103.0)
    assert lane.state == LaneState.IDLE
    closing = next(a for a in actions if a.kind == "close_transaction")
    assert closing.result == "passed"


def _released_and_open() -> tuple[LaneMachine, str]:
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(BoomEvent(opened=True), 101.0)
    return lane, lane.tx.id


def test_released_truck_seen_only_on_the_exit_loop_passed_and_the_boom_closes_behind_it():
    # The safety loop's pulse was shorter than one PLC poll: the node saw the truck leave the arrival loop, then
    # on the exit loop beyond the boom. Left open, the boom would wait for a safety loop that never comes.
    lane, _ = _released_and_open()
    lane.handle(LoopEvent("arrival", False), 101.6)
    actions = lane.handle(LoopEvent("exit", True), 102.0)
    assert "close_barrier" in kinds(actions)
    closing = next(a for a in lane.handle(BoomEvent(opened=False), 103.0) if a.kind == "close_transaction")
    assert closing.result == "passed"


def test_released_truck_that_backs_away_gets_the_boom_closed_behind_nobody():
    lane, tx_id = _released_and_open()
    actions = lane.handle(LoopEvent("arrival", False), 102.0)  # forward or back? the safety loop will tell
    [timer] = [a for a in actions if a.kind == "start_timer"]
    assert timer.seconds == POLICY.departed_close_s and "close_barrier" not in kinds(actions)
    assert "close_barrier" in kinds(lane.handle(CollectTimeout(tx_id), 102.0 + POLICY.departed_close_s))
    closing = next(a for a in lane.handle(BoomEvent(opened=False), 140.0) if a.kind == "close_transaction")
    assert closing.result == "closed_before_passage"


def test_released_truck_closed_behind_unseen_leaves_its_passage_unknown():
    # Backed away, or drove through with every loop pulse missed: the node cannot tell, so its claims stay.
    lane, tx_id = _released_and_open()
    lane.handle(LoopEvent("arrival", False), 102.0)
    lane.handle(CollectTimeout(tx_id), 102.0 + POLICY.departed_close_s)
    closing = next(a for a in lane.handle(BoomEvent(opened=False), 140.0) if a.kind == "close_transaction")
    assert closing.result == "closed_before_passage" and closing.passage_unknown


def test_boom_closed_by_hand_before_a_waiting_truck_went_is_a_known_non_passage():
    lane, tx_id = _released_and_open()
    lane.handle(OfficerAction("manual_close", "sup-1", "wrong truck"), 101.5)
    closing = next(a for a in lane.handle(BoomEvent(opened=False), 102.0) if a.kind == "close_transaction")
    assert closing.result == "closed_before_passage" and not closing.passage_unknown


def test_truck_that_left_the_arrival_loop_while_the_boom_was_rising_gets_the_boom_closed_behind_nobody():
    # Found by a 50-minute soak: the truck left the arrival loop before the boom's open limit switch, its
    # safety and exit pulses were missed, and the boom stood open for minutes.
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    assert lane.state == LaneState.DECIDED
    lane.handle(LoopEvent("arrival", False), 100.5)
    actions = lane.handle(BoomEvent(opened=True), 101.0)
    assert lane.state == LaneState.PASSING
    [timer] = [a for a in actions if a.kind == "start_timer"]
    assert timer.seconds == POLICY.departed_close_s
    assert "close_barrier" in kinds(lane.handle(CollectTimeout(lane.tx.id), 101.0 + POLICY.departed_close_s))


def test_boom_opening_for_a_truck_still_on_the_arrival_loop_starts_no_departure_timer():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    actions = lane.handle(BoomEvent(opened=True), 101.0)
    assert not [a for a in actions if a.kind == "start_timer"]


def test_released_truck_between_the_loops_is_not_closed_on():
    lane, tx_id = _released_and_open()
    lane.handle(LoopEvent("arrival", False), 102.0)
    lane.handle(LoopEvent("safety", True), 103.0)  # it was driving forward after all
    assert "close_barrier" not in kinds(lane.handle(CollectTimeout(tx_id), 102.0 + POLICY.departed_close_s))
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 140.0))


def test_released_truck_that_comes_back_onto_the_arrival_loop_keeps_its_open_boom():
    lane, tx_id = _released_and_open()
    lane.handle(LoopEvent("arrival", False), 102.0)
    lane.handle(LoopEvent("arrival", True), 104.0)  # it only rolled back a little
    assert "close_barrier" not in kinds(lane.handle(CollectTimeout(tx_id), 102.0 + POLICY.departed_close_s))
    assert lane.state == LaneState.PASSING


def test_exit_loop_does_not_close_the_boom_in_front_of_a_released_truck_still_waiting():
    lane, _ = _released_and_open()
    assert "close_barrier" not in kinds(lane.handle(LoopEvent("exit", True), 101.5))  # the truck ahead, lingering
    lane.handle(LoopEvent("safety", True), 102.0)
    assert "close_barrier" not in kinds(lane.handle(LoopEvent("exit", True), 102.1))  # never onto a vehicle
    lane.handle(LoopEvent("arrival", False), 102.2)
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 103.0))


def test_held_truck_gets_no_open_command_until_an_officer_releases():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    actions = lane.handle(Decided(HOLD), 100.2)
    assert "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.DECIDED
    actions = lane.handle(OfficerAction("release", "officer-7", "documents checked"), 130.0)
    assert kinds(actions).index("record_officer_action") < kinds(actions).index("open_barrier")
    assert next(a for a in actions if a.kind == "open_barrier").released_by == "officer-7"


def test_refused_truck_that_backs_away_closes_the_transaction():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(HOLD), 100.2)
    lane.handle(OfficerAction("refuse", "officer-7", "wrong documents"), 110.0)
    actions = lane.handle(LoopEvent("arrival", False), 120.0)
    assert lane.state == LaneState.IDLE
    assert next(a for a in actions if a.kind == "close_transaction").result == "left_lane"


def test_plate_read_just_before_the_arrival_loop_belongs_to_the_truck():
    lane = LaneMachine("IMP-1", POLICY)
    lane.handle(plate(at=98.0), 98.0)
    actions = lane.handle(LoopEvent("arrival", True), 100.0)
    assert lane.state == LaneState.COLLECTING
    assert "29C12345" in lane.tx.plates
    assert "evaluate" in kinds(actions)


def test_reading_long_before_arrival_is_not_attached():
    lane = LaneMachine("IMP-1", POLICY)
    lane.handle(plate(at=80.0), 80.0)
    lane.handle(LoopEvent("arrival", True), 100.0)
    assert lane.state == LaneState.ARRIVED
    assert not lane.tx.plates


def test_duplicate_reading_does_not_ask_for_a_new_evaluation():
    lane = arrived_lane()
    lane.handle(seal("S1"), 100.1)
    assert lane.handle(seal("S1"), 100.2) == []
    assert lane.tx.duplicates == 1


def test_worse_seal_status_replaces_an_intact_one():
    lane = arrived_lane()
    lane.handle(seal("S1"), 100.1)
    assert "evaluate" in kinds(lane.handle(seal("S1", status=SealStatus.TAMPERED), 100.2))
    assert lane.tx.seals["S1"].status == SealStatus.TAMPERED


def test_collect_timeout_asks_for_a_final_decision():
    lane = arrived_lane()
    actions = lane.handle(CollectTimeout(lane.tx.id), 120.0)
    assert actions[0].kind == "evaluate" and actions[0].final is True


def test_timeout_of_an_old_transaction_is_ignored():
    lane = arrived_lane()
    assert lane.handle(CollectTimeout("someone-else"), 120.0) == []


def test_second_truck_waiting_starts_the_next_transaction_after_the_boom_closes():
    lane, _ = _released_and_open()
    first = lane.tx.id
    lane.handle(LoopEvent("safety", True), 101.5)
    lane.handle(LoopEvent("arrival", False), 101.6)
    lane.handle(LoopEvent("arrival", True), 101.9)  # next truck rolls up
    lane.handle(plate("51D-678.90", at=102.0), 102.0)  # its plate, read while the first passes
    lane.handle(LoopEvent("safety", False), 102.1)
    actions = lane.handle(BoomEvent(opened=False), 103.0)
    assert lane.tx is not None and lane.tx.id != first
    assert "51D67890" in lane.tx.plates
    assert "29C12345" not in lane.tx.plates
    assert kinds(actions).count("open_transaction") == 1


def test_vehicle_under_the_boom_while_closing_raises_tailgating_alarm():
    lane, _ = _released_and_open()
    lane.handle(LoopEvent("safety", True), 101.5)
    lane.handle(LoopEvent("safety", False), 102.0)
    actions = lane.handle(LoopEvent("safety", True), 102.2)
    assert any(a.kind == "alarm" and a.code == "TAILGATING" for a in actions)
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 103.0))


def test_device_fault_blocks_automatic_release():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(DeviceFailed("IMP-1-eseal", "read failed"), 100.2)
    assert lane.state == LaneState.FAULT
    actions = lane.handle(Decided(RELEASE), 100.3)
    assert "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.FAULT


def test_recovery_resumes_collecting_and_re_evaluates():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(DeviceFailed("IMP-1-eseal", "read failed"), 100.2)
    actions = lane.handle(DeviceRestored("IMP-1-eseal"), 105.0)
    assert lane.state == LaneState.COLLECTING
    assert "evaluate" in kinds(actions)


def test_officer_may_release_during_a_fault_and_it_is_recorded():
    lane = arrived_lane()
    lane.handle(DeviceFailed("IMP-1-anpr", "broker down"), 100.2)
    actions = lane.handle(OfficerAction("release", "sup-1", "plate checked by eye"), 101.0)
    assert "open_barrier" in kinds(actions)


def test_officer_action_without_a_truck_is_an_error():
    lane = LaneMachine("IMP-1", POLICY)
    with pytest.raises(LaneError):
        lane.handle(OfficerAction("release", "officer-7", "why not"), 100.0)


def test_decision_for_an_idle_lane_is_an_error():
    lane = LaneMachine("IMP-1", POLICY)
    with pytest.raises(LaneError):
        lane.handle(Decided(RELEASE), 100.0)


def test_boom_opening_without_release_raises_an_alarm():
    lane = arrived_lane()
    actions = lane.handle(BoomEvent(opened=True), 100.5)
    assert any(getattr(a, "code", None) == "BOOM_OPEN_WITHOUT_RELEASE" for a in actions)


def test_restart_with_recorded_release_and_closed_boom_holds_for_review():
    lane = LaneMachine("IMP-1", POLICY)
    tx = Transaction("IMP-1", 100.0)
    tx.decision = RELEASE
    actions = lane.restore(tx, boom_open=False, released_by="auto")
    assert "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.DECIDED
    assert lane.tx.decision.reasons == ["NODE_RESTARTED"]


def test_restart_with_boom_open_waits_to_close_and_never_opens():
    lane = LaneMachine("IMP-1", POLICY)
    tx = Transaction("IMP-1", 100.0)
    tx.decision = RELEASE
    actions = lane.restore(tx, boom_open=True, released_by="auto")
    assert "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.PASSING


def test_transition_table_prints_as_a_diagram():
    text = transition_table_text()
    assert "IDLE --arrival_on--> ARRIVED|COLLECTING" in text
    assert "PASSING --boom_closed-->" in text


def test_officers_decide_only_once_the_truck_has_been_read():
    """Release, refuse and inspect wait for the lane's decision: a release while the truck is still being read
    would pass over an X-ray verdict or a seal still to come (the kiosk offers no button until then)."""
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    assert not {"release", "refuse", "inspect"} & set(lane.officer_actions())
    for action in ("release", "refuse", "inspect"):
        with pytest.raises(LaneError, match="still being read"):
            lane.handle(OfficerAction(action, "officer-7", "seal checked by hand"), 101.0)
    assert lane.state == LaneState.COLLECTING and lane.passage.released_by is None
    lane.handle(Decided(HOLD), 101.5)
    assert "open_barrier" in kinds(lane.handle(OfficerAction("release", "officer-7", "seal checked by hand"), 102.0))


def test_send_to_inspection_keeps_the_boom_closed_and_records_who():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(HOLD), 100.2)
    actions = lane.handle(OfficerAction("inspect", "officer-7", "X-ray image unclear"), 101.0)
    assert "open_barrier" not in kinds(actions)
    assert lane.passage.inspection_by == "officer-7" and lane.state == LaneState.DECIDED


def test_manual_open_for_a_vehicle_without_transaction_is_recorded_and_closes_after_it():
    lane = LaneMachine("IMP-1", POLICY)
    actions = lane.handle(OfficerAction("manual_open", "sup-1", "ambulance"), 100.0)
    assert kinds(actions).index("record_officer_action") < kinds(actions).index("open_barrier")
    assert lane.passage.manual and lane.passage.released_by == "sup-1"
    lane.handle(BoomEvent(opened=True), 101.0)
    lane.handle(LoopEvent("safety", True), 101.5)
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 102.0))
    lane.handle(BoomEvent(opened=False), 103.0)
    assert lane.state == LaneState.IDLE


def test_manual_close_before_the_truck_moves_ends_the_transaction():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    actions = lane.handle(OfficerAction("manual_close", "sup-1", "truck stalled"), 100.5)
    assert "close_barrier" in kinds(actions)
    actions = lane.handle(BoomEvent(opened=False), 101.0)
    assert next(a for a in actions if a.kind == "close_transaction").result == "closed_before_passage"
    assert lane.state == LaneState.IDLE


def test_truck_waiting_during_a_fault_is_held_with_the_fault_as_reason_at_timeout():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(DeviceFailed("IMP-1-eseal", "read failed"), 100.2)
    actions = lane.handle(CollectTimeout(lane.tx.id), 120.0)
    assert actions[0].kind == "evaluate" and actions[0].final
    held = Decision(Outcome.HOLD, (Finding("DEVICE_FAULT", "IMP-1-eseal"),), None)
    actions = lane.handle(Decided(held), 120.1)
    assert "record_decision" in kinds(actions) and "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.FAULT and lane.tx.decision == held
    lane.handle(DeviceRestored("IMP-1-eseal"), 130.0)
    assert lane.state == LaneState.DECIDED


def test_device_failing_while_a_truck_passes_blocks_the_next_truck():
    lane, _ = _released_and_open()
    lane.handle(DeviceFailed("IMP-1-scale", "cable pulled"), 101.2)
    assert lane.state == LaneState.PASSING  # the released truck still goes through
    lane.handle(LoopEvent("safety", True), 101.5)
    lane.handle(LoopEvent("arrival", False), 101.6)
    lane.handle(LoopEvent("arrival", True), 101.9)  # the next truck is already waiting
    lane.handle(LoopEvent("safety", False), 102.0)
    lane.handle(BoomEvent(opened=False), 103.0)
    assert lane.state == LaneState.FAULT and lane.tx is not None
    actions = lane.handle(Decided(RELEASE), 103.5)
    assert "open_barrier" not in kinds(actions)


def test_open_command_lost_to_a_silent_plc_is_retried_when_it_answers_again():
    from edge.lane import OpenFailed

    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    actions = lane.handle(OpenFailed(lane.tx.id, "no response"), 100.3)
    assert any(getattr(a, "code", None) == "BARRIER_OPEN_FAILED" for a in actions)
    lane.handle(DeviceFailed("IMP-1-plc", "no response", is_barrier=True), 100.4)
    assert lane.state == LaneState.FAULT
    actions = lane.handle(DeviceRestored("IMP-1-plc"), 102.0)
    assert "open_barrier" in kinds(actions) and lane.state == LaneState.DECIDED


def test_truck_that_left_after_a_failed_open_is_not_opened_for():
    from edge.lane import OpenFailed

    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(OpenFailed(lane.tx.id, "no response"), 100.3)
    lane.handle(LoopEvent("arrival", False), 101.0)
    assert lane.tx is None
    assert lane.handle(DeviceRestored("IMP-1-plc"), 102.0) == []


def test_truck_seen_under_the_boom_before_the_open_limit_switch_still_gets_the_boom_closed_after_it():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(LoopEvent("safety", True), 101.0)  # same PLC poll as the open limit switch
    lane.handle(BoomEvent(opened=True), 101.0)
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 102.0))


# ---------------------------------------------------------------- scanner verdicts never improve

def scan(verdict: ScanVerdict, scan_id: str = "X1", completed: bool = True, at: float = 100.0) -> ReadingEvent:
    return ReadingEvent(ScanRead("xray", scan_id, verdict, ("CSQU3054383",), None, completed, at, at))


def test_forged_clear_after_suspect_keeps_the_suspect_and_shows_a_conflict():
    tx = Transaction("IMP-1", 100.0)
    tx.add(scan(ScanVerdict.SUSPECT).reading)
    assert tx.add(scan(ScanVerdict.CLEAR).reading)  # changed: a conflict to judge
    facts = tx.facts()
    assert facts.scan_verdict == "suspect" and "clear after suspect" in facts.scan_conflict
    shown = tx.to_dict()["scan"]
    assert shown["verdict"] == "suspect" and shown["conflicts"]


def test_clear_for_another_scan_while_the_real_scan_runs_is_a_conflict_not_a_clear():
    tx = Transaction("IMP-1", 100.0)
    tx.add(scan(ScanVerdict.PENDING, "REAL-1", completed=False).reading)
    tx.add(scan(ScanVerdict.CLEAR, "FORGED-9").reading)
    facts = tx.facts()
    assert facts.scan_verdict == "pending"  # the real scan is still being analysed
    assert "FORGED-9" in facts.scan_conflict and "REAL-1" in facts.scan_conflict


def test_scan_started_then_its_own_verdict_is_no_conflict():
    tx = Transaction("IMP-1", 100.0)
    tx.add(scan(ScanVerdict.PENDING, "REAL-1", completed=False).reading)
    tx.add(scan(ScanVerdict.PENDING, "REAL-1", completed=True).reading)  # scanned, not analysed yet
    tx.add(scan(ScanVerdict.CLEAR, "REAL-1").reading)
    assert tx.facts().scan_verdict == "clear" and tx.facts().scan_conflict is None
    assert not tx.add(scan(ScanVerdict.CLEAR, "REAL-1").reading)  # the same verdict again changes nothing


# ---------------------------------------------------------------- readings after the decision

def held_lane(policy: LanePolicy = POLICY) -> LaneMachine:
    lane = arrived_lane(policy)
    lane.handle(plate(), 100.1)
    lane.handle(Decided(HOLD), 100.2)
    return lane


def test_reading_after_the_decision_is_journaled_late_and_not_merged():
    lane = held_lane(LATE_ONLY)
    facts = lane.tx.facts()
    actions = lane.handle(seal("S7", at=101.0), 101.0)
    assert kinds(actions) == ["late_reading"]
    assert lane.tx.facts() == facts and "S7" not in lane.tx.seals
    assert lane.tx.to_dict()["late_readings"][0]["said"] == "S7 intact"
    assert lane.handle(seal("S7", at=101.5), 101.5) == []  # the same late reading again is not news
    assert lane.state == LaneState.DECIDED and "evaluate" not in kinds(actions)


def test_forged_clear_after_the_suspect_decision_alarms_and_the_officer_still_sees_suspect():
    lane = arrived_lane(LATE_ONLY)
    lane.handle(plate(), 100.1)
    lane.handle(scan(ScanVerdict.SUSPECT), 100.2)
    lane.handle(Decided(Decision(Outcome.HOLD, (Finding("SCANNER_SUSPECT"),), None)), 100.3)
    actions = lane.handle(scan(ScanVerdict.CLEAR), 101.0)
    assert kinds(actions) == ["late_reading", "alarm"] and actions[1].code == "SCAN_CONFLICT"
    shown = lane.snapshot()["transaction"]["scan"]
    assert shown["verdict"] == "suspect" and shown["conflicts"]
    assert lane.tx.facts().scan_verdict == "suspect"


def test_late_suspect_for_a_truck_decided_on_a_pending_scan_is_shown_as_the_worst_verdict():
    lane = arrived_lane(LATE_ONLY)
    lane.handle(plate(), 100.1)
    lane.handle(scan(ScanVerdict.PENDING, completed=False), 100.2)
    lane.handle(Decided(HOLD), 100.3)
    lane.handle(scan(ScanVerdict.SUSPECT), 101.0)
    shown = lane.snapshot()["transaction"]["scan"]
    assert shown["verdict"] == "suspect" and shown["decided_verdict"] == "pending" and shown["late"]


def test_another_confident_plate_after_the_decision_raises_a_plate_conflict_alarm():
    lane = held_lane(LATE_ONLY)
    actions = lane.handle(plate("51D-678.90", at=101.0), 101.0)
    assert [getattr(a, "code", None) for a in actions if a.kind == "alarm"] == ["PLATE_CONFLICT"]
    assert list(lane.tx.plates) == ["29C12345"]


def test_reading_while_a_released_truck_leaves_may_belong_to_the_next_truck():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(plate("51D-678.90", at=100.5), 100.5)  # boom still opening
    assert "51D67890" not in lane.tx.plates
    lane.handle(BoomEvent(opened=True), 101.0)
    lane.handle(LoopEvent("safety", True), 101.2)
    lane.handle(LoopEvent("arrival", False), 101.3)
    lane.handle(LoopEvent("arrival", True), 101.5)
    lane.handle(LoopEvent("safety", False), 101.8)
    lane.handle(BoomEvent(opened=False), 102.5)
    assert list(lane.tx.plates) == ["51D67890"]


def _passed(lane: LaneMachine, at: float) -> None:
    """The released truck whose boom is open leaves the arrival loop at `at` - 0.9, goes under the boom and
    the boom closes behind it at `at`."""
    lane.handle(LoopEvent("safety", True), at - 1.0)
    lane.handle(LoopEvent("arrival", False), at - 0.9)
    lane.handle(LoopEvent("safety", False), at - 0.5)
    lane.handle(BoomEvent(opened=False), at)


def seen(text: str, observed_at: float, received_at: float) -> ReadingEvent:
    """A plate seen in a frame at `observed_at` and reported at `received_at` (a video camera's vote)."""
    return ReadingEvent(PlateRead("cam", text, 0.95, observed_at, received_at))


def test_a_late_reading_of_the_truck_that_went_through_is_not_the_next_trucks():
    # A video camera's reading of the last truck lands after it went (its frames had to agree, its read was
    # slow): the next truck must not get that plate beside its own (PLATE_CONFLICT, a hold for nothing).
    lane, _ = _released_and_open()
    lane.handle(plate("29C-123.45", at=101.5), 101.5)  # while it leaves: its own plate again
    _passed(lane, 103.0)  # it left the arrival loop at 102.1
    lane.handle(seen("29C-123.45", 101.9, 104.0), 104.0)  # seen before it left, reported after it went
    lane.handle(plate("51D-678.90", at=104.5), 104.5)  # the next truck's camera read, before its loop
    lane.handle(LoopEvent("arrival", True), 105.0)
    lane.handle(seen("29C-123.45", 102.0, 105.5), 105.5)  # and once more while the next truck is collecting
    assert list(lane.tx.plates) == ["51D67890"]
    assert lane.snapshot()["departed_truck_readings"] == 3


def test_the_same_plate_seen_after_the_last_truck_left_is_read_as_a_new_truck():
    # The truck came round again, or another truck carries its plate: the rules must see that plate (a
    # declaration already used, a conflict), never a truck without one.
    lane, _ = _released_and_open()
    _passed(lane, 103.0)
    lane.handle(plate("29C-123.45", at=104.0), 104.0)  # seen after it left the arrival loop at 102.1
    lane.handle(LoopEvent("arrival", True), 104.5)
    assert list(lane.tx.plates) == ["29C12345"]
    # This truck backs away (no release): a reading of it from before it left is its own, set aside; its
    # plate read again when it comes straight back is kept.
    lane.handle(LoopEvent("arrival", False), 110.0)
    assert lane.state == LaneState.IDLE
    lane.handle(seen("29C-123.45", 109.5, 110.2), 110.2)
    lane.handle(plate("29C-123.45", at=110.5), 110.5)
    lane.handle(LoopEvent("arrival", True), 111.0)
    assert list(lane.tx.plates) == ["29C12345"] and lane.tx.plates["29C12345"].observed_at == 110.5
    assert lane.snapshot()["departed_truck_readings"] == 1


def test_a_late_container_number_of_the_truck_that_went_through_is_set_aside_too():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(ReadingEvent(ContainerRead("ccam", "MSCU 123456-5", 0.9, 100.2, 100.2)), 100.2)
    lane.handle(Decided(RELEASE), 100.3)
    lane.handle(BoomEvent(opened=True), 101.0)
    _passed(lane, 103.0)
    lane.handle(LoopEvent("arrival", True), 104.0)
    lane.handle(ReadingEvent(ContainerRead("ccam", "MSCU1234565", 0.9, 101.5, 104.2)), 104.2)
    lane.handle(ReadingEvent(ContainerRead("ccam", "TGHU7654320", 0.9, 104.3, 104.3)), 104.3)
    assert list(lane.tx.containers) == ["TGHU7654320"]


# ---------------------------------------------------------------- late results re-decide a held truck

PENDING_HOLD = Decision(Outcome.HOLD, (Finding("SCANNER_PENDING"),), "105000000001", awaiting_readings=True)


def held_on_pending_scan(policy: LanePolicy = POLICY) -> LaneMachine:
    """A truck held at the collect timeout because its X-ray analysis is still running."""
    lane = arrived_lane(policy)
    lane.handle(plate(), 100.1)
    lane.handle(scan(ScanVerdict.PENDING, completed=False), 100.2)
    lane.handle(CollectTimeout(lane.tx.id), 120.0)
    lane.handle(Decided(PENDING_HOLD), 120.0)
    return lane


def test_x_ray_clear_after_the_collect_timeout_releases_the_held_truck_as_a_redecision():
    lane = held_on_pending_scan()
    actions = lane.handle(scan(ScanVerdict.CLEAR, at=240.0), 240.0)
    assert kinds(actions) == ["attach_late_reading", "evaluate_again"]
    assert lane.tx.facts().scan_verdict == "clear"  # the verdict joined what the truck is decided on
    changed = actions[-1].changed
    assert "X1 clear" in changed
    actions = lane.handle(Redecided(RELEASE, changed), 240.1)
    assert kinds(actions) == ["record_decision", "open_barrier"]  # the release is recorded before the open
    record, opening = actions
    assert record.decision == RELEASE
    assert record.redecision == {"changed": changed, "previous": {"outcome": "hold", "reasons": ["SCANNER_PENDING"]}}
    assert opening.released_by == "auto"
    assert lane.snapshot()["transaction"]["redecisions"][0]["outcome"] == "release"
    lane.handle(BoomEvent(opened=True), 241.0)
    assert lane.state == LaneState.PASSING


def test_x_ray_suspect_after_the_hold_updates_the_reasons_and_never_opens():
    lane = held_on_pending_scan()
    actions = lane.handle(scan(ScanVerdict.SUSPECT, at=240.0), 240.0)
    suspect = Decision(Outcome.HOLD, (Finding("SCANNER_SUSPECT"),), "105000000001")
    actions = lane.handle(Redecided(suspect, actions[-1].changed), 240.1)
    assert kinds(actions) == ["record_decision"]
    assert lane.tx.decision.reasons == ["SCANNER_SUSPECT"] and lane.state == LaneState.DECIDED
    # A "clear" for the same scan afterwards cannot undo it: a conflict, with an alarm, and still held.
    actions = lane.handle(scan(ScanVerdict.CLEAR, at=250.0), 250.0)
    assert kinds(actions) == ["attach_late_reading", "alarm", "evaluate_again"] and actions[1].code == "SCAN_CONFLICT"
    assert lane.tx.facts().scan_verdict == "suspect" and lane.tx.facts().scan_conflict


def test_tampered_seal_after_the_hold_updates_the_hold():
    lane = held_lane()
    actions = lane.handle(seal("S9", at=130.0, status=SealStatus.TAMPERED), 130.0)
    assert kinds(actions) == ["attach_late_reading", "evaluate_again"]
    tampered = Decision(Outcome.HOLD, (Finding("SEAL_TAMPERED", "S9"),), "105000000001")
    actions = lane.handle(Redecided(tampered, actions[-1].changed), 130.1)
    assert kinds(actions) == ["record_decision"] and actions[0].redecision["previous"]["reasons"] == ["SEAL_MISMATCH"]
    assert "open_barrier" not in kinds(actions)


def test_the_same_decision_again_records_nothing():
    lane = held_lane()
    actions = lane.handle(seal("S7", at=101.0), 101.0)
    assert lane.handle(Redecided(HOLD, actions[-1].changed), 101.1) == []
    assert lane.tx.redecisions == [] and lane.tx.decision == HOLD


def test_reading_after_the_redecide_window_is_only_recorded():
    lane = held_on_pending_scan(LanePolicy(pre_arrival_window_s=5, collect_timeout_s=20, redecide_window_s=300))
    assert kinds(lane.handle(scan(ScanVerdict.CLEAR, at=421.0), 421.0)) == ["late_reading"]  # 301 s after the hold
    assert lane.tx.facts().scan_verdict == "pending"


@pytest.mark.parametrize("action", ["refuse", "inspect"])
def test_truck_an_officer_decided_is_never_redecided(action):
    lane = held_on_pending_scan()
    lane.handle(OfficerAction(action, "officer-7", "looked at it"), 130.0)
    assert kinds(lane.handle(scan(ScanVerdict.CLEAR, at=140.0), 140.0)) == ["late_reading"]
    assert kinds(lane.handle(Reevaluate("declaration amended"), 141.0)) == []
    with pytest.raises(LaneError):  # nothing may re-decide it, even an evaluation already under way
        lane.handle(Redecided(RELEASE, "late reading"), 141.0)


def test_truck_the_rules_refused_is_never_redecided():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(Decision(Outcome.REFUSE, (Finding("WRONG_DIRECTION"),), "105000000001")), 100.2)
    assert kinds(lane.handle(seal("S1", at=110.0), 110.0)) == ["late_reading"]


def test_truck_that_left_the_arrival_loop_is_never_redecided():
    lane = held_lane()
    lane.handle(BoomEvent(opened=True), 110.0)  # opened with no release...
    lane.handle(LoopEvent("arrival", False), 110.5)  # ...and the held truck moves off the loop: where to?
    assert lane.tx is not None and lane.state == LaneState.DECIDED
    assert kinds(lane.handle(seal("S1", at=111.0), 111.0)) == ["late_reading"]


def test_truck_held_by_a_restart_is_never_redecided():
    lane = LaneMachine("IMP-1", POLICY)
    lane.loops["arrival"] = True
    tx = Transaction("IMP-1", 100.0)
    tx.decision = PENDING_HOLD
    lane.restore(tx, boom_open=False)
    assert lane.tx.decision.reasons == ["NODE_RESTARTED"]
    assert kinds(lane.handle(scan(ScanVerdict.CLEAR, at=110.0), 110.0)) == ["late_reading"]


def test_declaration_update_reevaluates_a_held_truck_within_the_window_only():
    lane = held_lane()
    actions = lane.handle(Reevaluate("declaration 105000000001 amended"), 150.0)
    assert kinds(actions) == ["evaluate_again"] and actions[0].changed == "declaration 105000000001 amended"
    assert lane.handle(Reevaluate("declaration 105000000001 amended"), 701.0) == []  # 600 s after the hold
    assert LaneMachine("IMP-1", POLICY).handle(Reevaluate("feed"), 100.0) == []  # no truck: nothing to do


def test_bad_redecide_window_is_refused_at_start_up_naming_file_key_and_fix(tmp_path):
    from edge.cli import DEFAULT_SITE
    from edge.config import ConfigError, load_site

    text = DEFAULT_SITE.read_text(encoding="utf-8")
    assert "redecide_window_s: 600" in text  # the shipped site shows the key
    bad = tmp_path / "site.yaml"
    bad.write_text(text.replace("redecide_window_s: 600", "redecide_window_s: -5", 1), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_site(bad)
    message = str(error.value)
    assert f"{bad}:" in message and "lanes[0].policy.redecide_window_s" in message
    assert "Fix:" in message and "0 turns it off" in message


def test_transition_table_shows_the_redecision_rows():
    text = transition_table_text()
    assert "DECIDED --redecided_release--> DECIDED|PASSING" in text
    assert "[held_by_rules and within_redecide_window] DECIDED: take_reading_again" in text


# ---------------------------------------------------------------- boom opened with no release

def test_boom_opened_without_release_is_closed_at_once_and_the_alarm_latches():
    lane = held_lane()
    actions = lane.handle(BoomEvent(opened=True), 110.0)
    assert kinds(actions) == ["alarm", "close_barrier"]
    assert lane.alarm["code"] == "BOOM_OPEN_WITHOUT_RELEASE" and lane.state == LaneState.DECIDED
    lane.handle(BoomEvent(opened=False), 111.0)
    assert lane.alarm is not None and lane.tx.decision == HOLD and not lane.passage.open_commanded
    assert "close_barrier" in kinds(lane.handle(BoomEvent(opened=True), 120.0))  # opened again: closed again
    assert lane.alarm["openings"] == 2


def test_boom_opened_over_a_vehicle_is_closed_only_once_the_safety_loop_is_clear():
    lane = held_lane()
    lane.handle(LoopEvent("safety", True), 109.0)
    assert "close_barrier" not in kinds(lane.handle(BoomEvent(opened=True), 110.0))
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 112.0))


def test_held_truck_driving_through_an_unreleased_boom_is_an_unauthorised_passage_not_left_lane():
    lane = held_lane()
    held = lane.tx.id
    lane.handle(BoomEvent(opened=True), 110.0)
    lane.handle(LoopEvent("safety", True), 110.5)
    closing = lane.handle(LoopEvent("arrival", False), 110.6)
    assert next(a for a in closing if a.kind == "close_transaction").result == "unauthorised_passage"
    actions = lane.handle(LoopEvent("safety", False), 111.0)
    passage = next(a for a in actions if a.kind == "unauthorised_passage")
    assert passage.transaction == held
    assert "close_barrier" in kinds(actions) and "open_barrier" not in kinds(closing + actions)
    assert lane.alarm is not None


def test_truck_leaving_the_arrival_loop_first_is_judged_by_the_safety_loop():
    lane = held_lane()
    lane.handle(BoomEvent(opened=True), 110.0)
    assert lane.handle(LoopEvent("arrival", False), 110.2) == []  # forward or back? not known yet
    lane.handle(LoopEvent("safety", True), 110.4)
    actions = lane.handle(LoopEvent("safety", False), 111.0)
    assert next(a for a in actions if a.kind == "close_transaction").result == "unauthorised_passage"


def test_truck_backing_away_from_an_unreleased_boom_left_the_lane():
    lane = held_lane()
    lane.handle(BoomEvent(opened=True), 110.0)
    lane.handle(LoopEvent("arrival", False), 110.2)
    actions = lane.handle(BoomEvent(opened=False), 111.0)
    assert next(a for a in actions if a.kind == "close_transaction").result == "left_lane"


def test_supervisor_acknowledges_the_latched_alarm_with_their_name():
    lane = held_lane()
    lane.handle(BoomEvent(opened=True), 110.0)
    actions = lane.handle(OfficerAction("acknowledge_alarm", "sup-1", "PLC port locked"), 120.0)
    recorded = next(a for a in actions if a.kind == "record_officer_action").payload()
    assert recorded["officer"] == "sup-1" and recorded["alarm"] == "BOOM_OPEN_WITHOUT_RELEASE"
    assert lane.alarm is None and lane.state == LaneState.DECIDED
    with pytest.raises(LaneError):
        lane.handle(OfficerAction("acknowledge_alarm", "sup-1", "again"), 121.0)


def test_a_released_boom_that_opens_is_no_tamper():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    assert "alarm" not in kinds(lane.handle(BoomEvent(opened=True), 101.0))
    assert lane.alarm is None and lane.state == LaneState.PASSING


def test_officer_releasing_a_truck_under_a_boom_someone_opened_lets_it_pass_and_closes_behind_it():
    lane = held_lane()
    lane.handle(LoopEvent("safety", True), 109.0)  # the truck's nose under the boom
    lane.handle(BoomEvent(opened=True), 110.0)
    actions = lane.handle(OfficerAction("release", "officer-7", "documents checked at the window"), 111.0)
    assert "open_barrier" in kinds(actions) and lane.state == LaneState.PASSING
    lane.handle(LoopEvent("arrival", False), 111.5)
    assert "close_barrier" in kinds(lane.handle(LoopEvent("safety", False), 112.0))
    actions = lane.handle(BoomEvent(opened=False), 113.0)
    assert next(a for a in actions if a.kind == "close_transaction").result == "passed"
    assert lane.alarm is not None  # released or not, the opening itself still needs acknowledging


def test_boom_someone_opened_while_the_plc_was_unreachable_is_closed_when_it_answers_again():
    lane = held_lane()
    lane.handle(BoomEvent(opened=True), 110.0)
    lane.handle(DeviceFailed("IMP-1-plc", "no response", is_barrier=True), 110.1)  # the close was lost
    actions = lane.handle(DeviceRestored("IMP-1-plc"), 115.0)
    assert "close_barrier" in kinds(actions) and "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.DECIDED


def test_the_same_forged_clear_repeated_is_no_news():
    tx = Transaction("IMP-1", 100.0)
    tx.add(scan(ScanVerdict.SUSPECT).reading)
    assert tx.add(scan(ScanVerdict.CLEAR).reading)
    assert not tx.add(scan(ScanVerdict.CLEAR).reading)
    assert len(tx.scan_conflicts) == 1 and tx.facts().scan_verdict == "suspect"


def test_every_transition_row_names_one_next_state_and_the_last_row_always_applies():
    for state, events in TRANSITIONS.items():
        for key, rows in events.items():
            # the last row always applies (a Go, or a refusal that says why, e.g. "still being read")
            assert rows and not rows[-1].when, (state, key)
            assert all(row.when for row in rows[:-1]), (state, key)  # every earlier row says when it applies
            assert all(isinstance(row, Refuse) or isinstance(row.to, LaneState) for row in rows), (state, key)


def test_kiosk_offers_exactly_the_officer_actions_the_lane_accepts():
    rng = random.Random(25)
    pool = [LoopEvent("arrival", True), LoopEvent("arrival", False), LoopEvent("safety", True),
            LoopEvent("safety", False), BoomEvent(opened=True), BoomEvent(opened=False), plate(),
            Decided(RELEASE), Decided(HOLD), DeviceFailed("IMP-1-eseal", "gone"), DeviceRestored("IMP-1-eseal"),
            *(OfficerAction(action, "sup-1", "checked") for action in OFFICER_ACTIONS)]
    lane, now, seen = LaneMachine("IMP-1", POLICY), 100.0, set()
    for _ in range(600):
        now += 0.5
        event = rng.choice(pool)
        if isinstance(event, Decided) and lane.tx is None:
            continue  # the rules are only asked about a truck
        with contextlib.suppress(LaneError):  # an event the lane does not expect now changes nothing
            lane.handle(event, now)
        offered = lane.officer_actions()
        seen.add((lane.state, tuple(offered)))
        for action in OFFICER_ACTIONS:
            trial = copy.deepcopy(lane)
            try:
                trial.handle(OfficerAction(action, "sup-1", "checked"), now)
                accepted = True
            except LaneError:
                accepted = False
            assert accepted == (action in offered), (lane.state, action, offered)
    assert len({state for state, _ in seen}) == len(LaneState)  # every state was visited
