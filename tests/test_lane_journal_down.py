"""The lane machine while the node's journal cannot write (its pseudo-device `journal` is down)."""

from __future__ import annotations

import pytest

from edge.config import JOURNAL_DEVICE
from edge.lane import (
    BoomEvent,
    Decided,
    DeviceFailed,
    DeviceRestored,
    LaneError,
    LaneState,
    LoopEvent,
    OfficerAction,
    OpenFailed,
)
from tests.test_lane import HOLD, RELEASE, arrived_lane, kinds, plate

DOWN = DeviceFailed(JOURNAL_DEVICE, "disk full: the journal cannot write")


def held_truck():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(HOLD), 100.2)
    return lane


def test_officer_cannot_release_or_open_by_hand_while_the_journal_cannot_write():
    lane = held_truck()
    lane.handle(DOWN, 101.0)
    assert "release" not in lane.officer_actions() and "manual_open" not in lane.officer_actions()
    assert "manual_close" in lane.officer_actions()
    for action in ("release", "manual_open"):
        with pytest.raises(LaneError, match="journal cannot write"):
            lane.handle(OfficerAction(action, "sup-1", "wave it through"), 102.0)
    actions = lane.handle(OfficerAction("manual_close", "sup-1", "journal down"), 103.0)
    assert "close_barrier" in kinds(actions)
    lane.handle(DeviceRestored(JOURNAL_DEVICE), 110.0)
    actions = lane.handle(OfficerAction("release", "sup-1", "documents checked"), 111.0)
    assert "open_barrier" in kinds(actions)


def test_no_vehicle_is_let_through_by_hand_at_an_idle_lane_while_the_journal_is_down():
    lane = arrived_lane()
    lane.handle(LoopEvent("arrival", False), 100.5)
    lane.handle(DOWN, 101.0)
    with pytest.raises(LaneError, match="journal cannot write"):
        lane.handle(OfficerAction("manual_open", "sup-1", "ambulance"), 102.0)


def test_a_truck_arriving_while_the_journal_is_down_is_not_released_automatically():
    lane = arrived_lane()
    lane.handle(DOWN, 100.05)
    assert lane.state == LaneState.FAULT
    lane.handle(plate(), 100.1)
    actions = lane.handle(Decided(RELEASE), 100.3)
    assert "open_barrier" not in kinds(actions)


def test_the_boom_open_for_a_released_truck_closes_behind_it_when_the_journal_fails():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    assert "open_barrier" in kinds(lane.handle(Decided(RELEASE), 100.2))
    lane.handle(BoomEvent(True), 100.5)
    lane.handle(DOWN, 100.6)
    assert lane.state == LaneState.PASSING
    lane.handle(LoopEvent("safety", True), 101.0)
    lane.handle(LoopEvent("arrival", False), 101.1)
    actions = lane.handle(LoopEvent("safety", False), 102.0)
    assert "close_barrier" in kinds(actions)
    lane.handle(BoomEvent(False), 103.0)
    assert lane.state == LaneState.FAULT and lane.tx is None


def test_a_release_whose_open_could_not_be_journaled_waits_for_the_journal():
    lane = arrived_lane()
    lane.handle(plate(), 100.1)
    lane.handle(Decided(RELEASE), 100.2)
    lane.handle(DOWN, 100.25)
    tx = lane.tx
    assert tx is not None
    lane.handle(OpenFailed(tx.id, "the journal cannot record the open command"), 100.3)
    actions = lane.handle(DeviceRestored("IMP-1-eseal"), 101.0)  # another device's recovery: not yet
    assert "open_barrier" not in kinds(actions)
    actions = lane.handle(DeviceRestored(JOURNAL_DEVICE), 102.0)
    assert "open_barrier" in kinds(actions)
