"""The node's one channel of lane notices (edge.node_view.NoticeFanOut): every subscriber gets each notice
once, a subscriber that raises costs the others nothing, and an unsubscribed reader hears no more."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from edge.node_view import NoticeFanOut

Heard = list[tuple[str, str, dict[str, Any]]]


def _recorder(heard: Heard):
    def callback(lane_id: str, kind: str, payload: dict[str, Any]) -> None:
        heard.append((lane_id, kind, payload))
    return callback


def test_every_subscriber_hears_each_lane_notice_exactly_once():
    channel = NoticeFanOut()
    kiosk, telemetry, metrics = [], [], []
    for heard in (kiosk, telemetry, metrics):
        channel.subscribe(_recorder(heard))
    notices = [("IMP-1", "lane", {}), ("IMP-1", "decision", {"outcome": "release"}),
               ("EXP-1", "alarm", {"code": "DEVICE_FAULT"})]
    for notice in notices:
        channel.publish(*notice)
    assert kiosk == telemetry == metrics == notices
    assert channel.delivered == 9 and channel.failures == 0


def test_a_failing_subscriber_does_not_keep_the_notice_from_the_others(caplog: pytest.LogCaptureFixture):
    channel = NoticeFanOut()
    before, after = [], []
    channel.subscribe(_recorder(before))

    def broken(_lane: str, _kind: str, _payload: dict[str, Any]) -> None:
        raise RuntimeError("a reader with a bug")

    channel.subscribe(broken)
    channel.subscribe(_recorder(after))
    with caplog.at_level(logging.ERROR, logger="edge.node_view"):
        channel.publish("IMP-1", "device", {"device_id": "cam-1"})
        channel.publish("IMP-1", "lane", {})
    assert [kind for _, kind, _ in before] == [kind for _, kind, _ in after] == ["device", "lane"]
    assert channel.failures == 2
    assert "a reader with a bug" in caplog.text  # logged with its traceback, not swallowed silently


def test_an_unsubscribed_reader_hears_nothing_more_and_the_others_still_do():
    channel = NoticeFanOut()
    leaving, staying = [], []
    unsubscribe = channel.subscribe(_recorder(leaving))
    channel.subscribe(_recorder(staying))
    channel.publish("IMP-1", "lane", {})
    unsubscribe()
    unsubscribe()  # a second call changes nothing
    channel.publish("IMP-1", "barrier", {"command": "open"})
    assert [kind for _, kind, _ in leaving] == ["lane"]
    assert [kind for _, kind, _ in staying] == ["lane", "barrier"]
    assert channel.subscribers == 1


def test_a_subscriber_may_unsubscribe_while_it_is_being_called():
    channel = NoticeFanOut()
    heard: Heard = []
    later: Heard = []
    unsubscribe = None

    def once(lane_id: str, kind: str, payload: dict[str, Any]) -> None:
        heard.append((lane_id, kind, payload))
        assert unsubscribe is not None
        unsubscribe()

    unsubscribe = channel.subscribe(once)
    channel.subscribe(_recorder(later))
    channel.publish("IMP-1", "lane", {})
    channel.publish("IMP-1", "lane", {})
    assert len(heard) == 1 and len(later) == 2
