"""A running gate reads its lanes through one channel: each lane controller has the node's fan-out as its only
listener, the kiosk, telemetry and metrics are subscribers of it, and a truck's notices reach a new reader once."""

from __future__ import annotations

from typing import Any

from edge.kiosk.views import status_view
from edge.node_view import NodeView
from tests.conftest import wait_until
from tests.kiosk.conftest import GateThread


def test_the_kiosk_telemetry_and_metrics_hear_the_lanes_through_the_one_fan_out(gate: GateThread):
    node = gate.gate.node
    assert isinstance(node, NodeView)
    assert all(controller.listeners == [node.notices.publish] for controller in node.lanes.values())
    # The kiosk's live hub, telemetry and metrics (and Sparkplug's wake-up when the site has it).
    expected = 3 + (node.sparkplug is not None)
    assert node.notices.subscribers == expected

    heard: list[tuple[str, str, dict[str, Any]]] = []
    unsubscribe = gate.run(node.subscribe, lambda lane, kind, payload: heard.append((lane, kind, payload)))
    gate.present("IMP-1", "29C-123.45", "SEAL-888")
    gate.call(wait_until(lambda: any(kind == "decision" for _, kind, _ in heard), 15, "a decision notice"))
    decisions = [payload for lane, kind, payload in heard if kind == "decision"]
    assert len(decisions) == 1 and decisions[0]["outcome"] == "release"
    # Another lane may publish its own state meanwhile (its devices coming up); nothing of this truck is its.
    truck = [(lane, kind) for lane, kind, _ in heard if kind != "lane"]
    assert truck and all(lane == "IMP-1" for lane, _ in truck), truck
    assert node.metrics is not None
    counted = node.metrics.registry.get_sample_value("smartgate_decisions_total",
                                                     {"lane": "IMP-1", "outcome": "release"})
    assert counted == 1  # the same notice, counted once by metrics
    status = gate.run(status_view, node)  # the kiosk's status strip, read through the view
    assert set(status["lanes"]) == set(node.lane_ids()) and status["gate"] == node.site.gate

    gate.run(unsubscribe)
    assert node.notices.subscribers == expected
