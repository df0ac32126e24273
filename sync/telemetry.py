"""The node's own MQTT session to central: birth/death (Sparkplug-B style) and telemetry.

Topics (QoS 1, retained, so a monitor that connects later sees the latest state at once):
  smartgate/<gate>/status              birth {"state": "online", "bd_seq": n, ...} published first on
                                       every connection; death {"state": "offline", "bd_seq": n} is that
                                       connection's last will (and is published on a clean stop)
  smartgate/<gate>/telemetry/devices   JSON list of device health (see devices/health.py)
  smartgate/<gate>/telemetry/lanes     JSON list of {lane, state, faults}
  smartgate/<gate>/telemetry/sync      link to central, outbox backlog, feed cursor, cache age and its policy limit
Telemetry is published every `period_s`, at once when a device fails or recovers, and after each
(re)connection.

Birth/death as in Sparkplug B: every connection attempt takes the next bdSeq (0..255, kept in the
node's data folder so a restarted node never reuses the bdSeq of its previous life), sets its will
to the death with that bdSeq, and the first message of the connection is the birth with the same
bdSeq. A monitor applies a death only if its bdSeq is the one of the current birth, so the death of
an earlier connection that the broker delivers late cannot mark a live node offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices.tasks import cancel_and_wait
from edge.node_view import NodeView
from edge.records import AlarmCode, Notice

if TYPE_CHECKING:
    from devices.transports.mqtt import MqttBus

log = logging.getLogger(__name__)

BD_SEQ_MODULO = 256


def telemetry_topics(gate: str) -> dict[str, str]:
    """The topic of each telemetry message for a gate."""
    base = f"smartgate/{gate}"
    return {"devices": f"{base}/telemetry/devices", "lanes": f"{base}/telemetry/lanes", "status": f"{base}/status",
            "sync": f"{base}/telemetry/sync"}


def parse_status(payload: bytes | str) -> tuple[str, int | None]:
    """(state, bd_seq) of a status message; plain `online` / `offline` (older nodes) has no bd_seq."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    text = text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text, None
    if not isinstance(body, dict):
        return str(body), None
    bd_seq = body.get("bd_seq")
    return str(body.get("state", "")), bd_seq if isinstance(bd_seq, int) else None


def next_bd_seq(state_file: Path) -> int:
    """The next birth/death sequence number (0..255), kept in state_file so a restart never reuses one."""
    try:
        last = int(state_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        last = -1
    value = (last + 1) % BD_SEQ_MODULO
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(f"{value}\n", encoding="ascii")
    os.replace(tmp, state_file)
    return value


class BirthDeath:
    """Sets each connection's will to its death and publishes its birth, with one bdSeq per connection."""

    def __init__(self, bus: MqttBus, gate: str, state_file: Path):
        self.bus, self.gate, self.state_file = bus, gate, state_file
        self.topic = telemetry_topics(gate)["status"]
        self.bd_seq: int | None = None  # the current connection's
        self.births = 0
        self._lock = threading.Lock()
        bus.before_each_connect(self._before_connect)
        bus.after_each_connect(self._after_connect)

    def _payload(self, state: str, bd_seq: int) -> str:
        body: dict[str, Any] = {"state": state, "bd_seq": bd_seq, "gate": self.gate, "client_id": self.bus.client_id}
        if state == "online":
            body["at"] = time.time()
        return json.dumps(body, separators=(",", ":"))

    def _before_connect(self) -> None:  # paho's thread
        with self._lock:
            self.bd_seq = next_bd_seq(self.state_file)
            self.bus.set_will(self.topic, self._payload("offline", self.bd_seq), qos=1, retain=True)

    def _after_connect(self) -> None:  # paho's thread, first thing on the new connection
        with self._lock:
            if self.bd_seq is None:
                return
            self.bus.publish(self.topic, self._payload("online", self.bd_seq), qos=1, retain=True)
            self.births += 1
            log.info("birth published on %s (bdSeq %d)", self.topic, self.bd_seq)

    async def publish_death(self, timeout_s: float = 2.0) -> None:
        """On a clean stop: publish the death the will would have (a clean disconnect drops the will)."""
        if self.bd_seq is None or not self.bus.health.connected:
            return
        info = self.bus.publish(self.topic, self._payload("offline", self.bd_seq), qos=1, retain=True)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(info.wait_for_publish, timeout_s)


class TelemetryPublisher:
    """Publishes device health, lane states and sync state periodically and on every fault change."""

    def __init__(self, node: NodeView, bus: MqttBus, state_file: Path, period_s: float = 5.0):
        """Publish `node`'s state on `bus` (the node's uplink); `state_file` keeps the bdSeq across restarts."""
        self.node, self.period_s = node, period_s
        self.bus = bus
        self.topics = telemetry_topics(node.site.gate)
        self.published = 0
        self.session = BirthDeath(self.bus, node.site.gate, state_file)
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def prepare(self) -> None:
        """Listen for (re)connections and fault changes (before the buses connect)."""
        self.bus.on_state(lambda up, _error: self._wake.set() if up else None)
        if self._unsubscribe is None:
            self._unsubscribe = self.node.subscribe(self._on_lane_event)

    def _on_lane_event(self, lane_id: str, kind: str, payload: dict[str, Any]) -> None:
        if kind == Notice.ALARM and payload.get("code") == AlarmCode.DEVICE_FAULT or kind == Notice.DEVICE:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telemetry")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.session.publish_death()

    def publish_now(self) -> None:
        """Publish the current state once."""
        now = time.time()
        bus = self.bus
        bus.publish(self.topics["devices"], json.dumps({"at": now, "devices": self.node.device_health()}),
                    qos=1, retain=True)
        lanes = [{"lane": s.lane, "state": s.state, "faults": dict(s.faults)} for s in self.node.lane_statuses()]
        bus.publish(self.topics["lanes"], json.dumps({"at": now, "lanes": lanes}), qos=1, retain=True)
        provider = getattr(self.node, "sync_status", None)
        if callable(provider):
            cache = self.node.cache
            # The strictest lane's policy: what central's page compares the cache's age with.
            max_age = min((self.node.lane_config(lane).policy.max_cache_age_s for lane in self.node.lane_ids()),
                          default=None)
            body = {"at": now, **provider(), "cache": {"total": cache.count(), "refreshed_at": (
                None if cache.refreshed_at() is None else cache.refreshed_at().isoformat()), "max_age_s": max_age}}
            journal = getattr(self.node, "journal_status", None)
            if callable(journal):  # a journal that cannot write reaches central here even when no row can
                body["journal"] = journal()
            bus.publish(self.topics["sync"], json.dumps(body, default=str), qos=1, retain=True)
        self.published += 1

    async def _run(self) -> None:
        while True:
            if self.bus.health.connected:
                self.publish_now()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.period_s):  # not wait_for: it can swallow a cancel on 3.11
                    await self._wake.wait()
