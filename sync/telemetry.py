"""Publishes the node's device health and lane states to MQTT for central monitoring.

Topics (QoS 1, retained, so a monitor that connects later sees the latest state at once):
  smartgate/<gate>/telemetry/devices   JSON list of device health (see devices/health.py)
  smartgate/<gate>/telemetry/lanes     JSON list of {lane, state, faults}
  smartgate/<gate>/telemetry/sync      link to central, outbox backlog, feed cursor, cache age
  smartgate/<gate>/status              "online" / "offline" (the MQTT last will)
Published every `period_s`, and at once when a device fails or recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.app import GateNode


def telemetry_topics(gate: str) -> dict[str, str]:
    """The topic of each telemetry message for a gate."""
    base = f"smartgate/{gate}"
    return {"devices": f"{base}/telemetry/devices", "lanes": f"{base}/telemetry/lanes", "status": f"{base}/status",
            "sync": f"{base}/telemetry/sync"}


class TelemetryPublisher:
    """Publishes device health and lane states periodically and on every fault change."""

    def __init__(self, node: GateNode, period_s: float = 5.0):
        self.node, self.period_s = node, period_s
        self.topics = telemetry_topics(node.site.gate)
        self.published = 0
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def prepare(self) -> None:
        """Set the last will (before the bus connects) and listen for fault changes."""
        self.node.bus.set_will(self.topics["status"], "offline", qos=1, retain=True)
        self.node.bus.on_state(lambda up, _error: self._wake.set() if up else None)
        for controller in self.node.lanes.values():
            controller.listeners.append(self._on_lane_event)

    def _on_lane_event(self, lane_id: str, kind: str, payload: dict[str, Any]) -> None:
        if kind == "alarm" and payload.get("code") == "DEVICE_FAULT" or kind == "device":
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.node.bus.health.connected:
            self.node.bus.publish(self.topics["status"], "offline", qos=1, retain=True)

    def publish_now(self) -> None:
        """Publish the current state once."""
        now = time.time()
        bus = self.node.bus
        bus.publish(self.topics["status"], "online", qos=1, retain=True)
        bus.publish(self.topics["devices"], json.dumps({"at": now, "devices": self.node.device_health()}),
                    qos=1, retain=True)
        lanes = [{"lane": c.lane.id, "state": c.state.value, "faults": dict(c.machine.faulty)}
                 for c in self.node.lanes.values()]
        bus.publish(self.topics["lanes"], json.dumps({"at": now, "lanes": lanes}), qos=1, retain=True)
        provider = getattr(self.node, "sync_status", None)
        if callable(provider):
            cache = self.node.cache
            body = {"at": now, **provider(), "cache": {"total": cache.count(), "refreshed_at": (
                None if cache.refreshed_at() is None else cache.refreshed_at().isoformat())}}
            bus.publish(self.topics["sync"], json.dumps(body, default=str), qos=1, retain=True)
        self.published += 1

    async def _run(self) -> None:
        while True:
            if self.node.bus.health.connected:
                self.publish_now()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.period_s)
