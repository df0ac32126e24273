"""The lane state machine, without any I/O: events in, actions out."""

from __future__ import annotations

import pytest

from devices.readings import PlateRead, SealRead, SealStatus
from edge.config import LanePolicy
from edge.lane import (
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
    transition_table_text,
)
from edge.rules import Decision, Finding, Outcome
from edge.transaction import Transaction

POLICY = LanePolicy(pre_arrival_window_s=5, collect_timeout_s=20)
RELEASE = Decision(Outcome.RELEASE, (), "105000000001")
HOLD = Decision(Outcome.HOLD, (Finding("SEAL_MISMATCH", "S9"),), "105000000001")


def plate(text: str = "29C-123.45", at: float = 100.0) -> ReadingEvent:
    return ReadingEvent(PlateRead("cam", text, 0.95, at, at))


def seal(seal_id: str = "S1", at: float = 100.0, status: SealStatus = SealStatus.INTACT) -> ReadingEvent:
    return ReadingEvent(SealRead("rdr", seal_id, status, 90, None, at, at))


def kinds(actions) -> list[str]:
    return [a.kind for a in actions]


def arrived_lane() -> LaneMachine:
    lane = LaneMachine("IMP-1", POLICY)
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
    assert closing.data["result"] == "passed"


def test_held_truck_gets_no_open_command_until_an_officer_releases():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    actions = lane.handle(Decided(HOLD), 100.2)
    assert "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.DECIDED
    actions = lane.handle(OfficerAction("release", "officer-7", "documents checked"), 130.0)
    assert kinds(actions).index("record_officer_action") < kinds(actions).index("open_barrier")
    assert next(a for a in actions if a.kind == "open_barrier").data["released_by"] == "officer-7"


def test_refused_truck_that_backs_away_closes_the_transaction():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(HOLD), 100.2)
    lane.handle(OfficerAction("refuse", "officer-7", "wrong documents"), 110.0)
    actions = lane.handle(LoopEvent("arrival", False), 120.0)
    assert lane.state == LaneState.IDLE
    assert next(a for a in actions if a.kind == "close_transaction").data["result"] == "left_lane"


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
    assert actions[0].kind == "evaluate" and actions[0].data["final"] is True


def test_timeout_of_an_old_transaction_is_ignored():
    lane = arrived_lane()
    assert lane.handle(CollectTimeout("someone-else"), 120.0) == []


def test_second_truck_waiting_starts_the_next_transaction_after_the_boom_closes():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(BoomEvent(opened=True), 101.0)
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
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(BoomEvent(opened=True), 101.0)
    lane.handle(LoopEvent("safety", True), 101.5)
    lane.handle(LoopEvent("safety", False), 102.0)
    actions = lane.handle(LoopEvent("safety", True), 102.2)
    assert any(a.kind == "alarm" and a.data["code"] == "TAILGATING" for a in actions)
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
    assert any(a.data.get("code") == "BOOM_OPEN_WITHOUT_RELEASE" for a in actions)


def test_restart_with_recorded_release_and_closed_boom_holds_for_review():
    lane = LaneMachine("IMP-1", POLICY)
    tx = Transaction("IMP-1", 100.0)
    tx.decision, tx.open_commanded, tx.released_by = RELEASE, True, "auto"
    actions = lane.restore(tx, boom_open=False)
    assert "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.DECIDED
    assert lane.tx.decision.reasons == ["NODE_RESTARTED"]


def test_restart_with_boom_open_waits_to_close_and_never_opens():
    lane = LaneMachine("IMP-1", POLICY)
    tx = Transaction("IMP-1", 100.0)
    tx.decision, tx.open_commanded = RELEASE, True
    actions = lane.restore(tx, boom_open=True)
    assert "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.PASSING


def test_transition_table_prints_as_a_diagram():
    text = transition_table_text()
    assert "IDLE --arrival_on--> ARRIVED|COLLECTING" in text
    assert "PASSING --boom_closed-->" in text


def test_officer_can_release_while_readings_are_still_being_collected():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    actions = lane.handle(OfficerAction("release", "officer-7", "seal checked by hand"), 101.0)
    assert "open_barrier" in kinds(actions) and lane.state == LaneState.DECIDED


def test_send_to_inspection_keeps_the_boom_closed_and_records_who():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(HOLD), 100.2)
    actions = lane.handle(OfficerAction("inspect", "officer-7", "X-ray image unclear"), 101.0)
    assert "open_barrier" not in kinds(actions)
    assert lane.tx.inspection_by == "officer-7" and lane.state == LaneState.DECIDED


def test_manual_open_for_a_vehicle_without_transaction_is_recorded_and_closes_after_it():
    lane = LaneMachine("IMP-1", POLICY)
    actions = lane.handle(OfficerAction("manual_open", "sup-1", "ambulance"), 100.0)
    assert kinds(actions).index("record_officer_action") < kinds(actions).index("open_barrier")
    assert lane.tx.manual and lane.tx.released_by == "sup-1"
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
    assert next(a for a in actions if a.kind == "close_transaction").data["result"] == "closed_before_passage"
    assert lane.state == LaneState.IDLE


def test_truck_waiting_during_a_fault_is_held_with_the_fault_as_reason_at_timeout():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(DeviceFailed("IMP-1-eseal", "read failed"), 100.2)
    actions = lane.handle(CollectTimeout(lane.tx.id), 120.0)
    assert actions[0].kind == "evaluate" and actions[0].data["final"]
    held = Decision(Outcome.HOLD, (Finding("DEVICE_FAULT", "IMP-1-eseal"),), None)
    actions = lane.handle(Decided(held), 120.1)
    assert "record_decision" in kinds(actions) and "open_barrier" not in kinds(actions)
    assert lane.state == LaneState.FAULT and lane.tx.decision == held
    lane.handle(DeviceRestored("IMP-1-eseal"), 130.0)
    assert lane.state == LaneState.DECIDED


def test_device_failing_while_a_truck_passes_blocks_the_next_truck():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(BoomEvent(opened=True), 101.0)
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
    assert any(a.data.get("code") == "BARRIER_OPEN_FAILED" for a in actions)
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
