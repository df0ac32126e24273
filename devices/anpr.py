"""ANPR camera driver: plate results over MQTT in, PlateReads out; bad messages logged and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from devices.health import DeviceHealth
from devices.protocols.anpr_json import AnprFields, AnprResult, decode_anpr_message
from devices.readings import DeviceEvent, DeviceFault, DeviceRecovered, PlateRead
from devices.transports.mqtt import MqttBus
from edge.config import AnprProfile, MqttTransport

log = logging.getLogger(__name__)


class AnprCameraDriver:
    """Subscribes to one camera's result topic."""

    def __init__(self, device_id: str, transport: MqttTransport, profile: AnprProfile,
                 bus: MqttBus, sink: Callable[[DeviceEvent], None]):
        self.device_id, self.sink, self.bus = device_id, sink, bus
        self.topic = transport.topic
        self.profile = profile
        self.fields = AnprFields(**profile.fields.model_dump())
        self.health = DeviceHealth(device_id, "anpr")
        self.ignored_low_confidence = 0
        self._faulty = False

    def start(self) -> None:
        """Subscribe; broker up/down is this camera's connectivity."""
        self.bus.subscribe(self.topic, self._on_message)
        self.bus.subscribe(f"{self.topic}/status", self._on_camera_status)
        self.bus.on_state(self._on_broker_state)
        self._camera_online = True
        self._broker_up = False

    def _on_broker_state(self, up: bool, error: str | None) -> None:
        self._broker_up = up
        self.health.reconnects = self.bus.health.reconnects
        self._update(None if up else f"MQTT broker: {error}")

    def _on_camera_status(self, topic: str, payload: bytes) -> None:
        """The camera's own status topic: "online", or "offline" (its last will)."""
        self._camera_online = payload.strip().lower() != b"offline"
        self._update(None)

    def _update(self, broker_error: str | None) -> None:
        error = broker_error or (None if self._camera_online else "camera offline (its last will)")
        up = error is None and self._broker_up
        self.health.connected = up
        if up:
            self.health.last_error = None
            if self._faulty:
                self._faulty = False
                self.sink(DeviceRecovered(self.device_id, time.time()))
        elif error is not None:
            self.health.last_error = error
            if not self._faulty:
                self._faulty = True
                self.sink(DeviceFault(self.device_id, error, time.time()))

    def _on_message(self, topic: str, payload: bytes) -> None:
        now = time.time()
        result = decode_anpr_message(payload, self.fields)
        if not isinstance(result, AnprResult):
            self.health.frames_bad += 1
            log.warning("%s rejected a message on %s: %s", self.device_id, topic, result.reason)
            return
        self.health.frames_good += 1
        self.health.last_reading_at = now
        if result.confidence < self.profile.min_confidence:
            self.ignored_low_confidence += 1
            return
        self.sink(PlateRead(self.device_id, result.plate, result.confidence,
                            result.timestamp or now, now))
