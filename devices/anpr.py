"""ANPR camera driver: plate results over MQTT in, PlateReads out; bad messages logged and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from devices.availability import MqttAvailability
from devices.health import DeviceHealth
from devices.protocols.anpr_json import AnprFields, AnprResult, decode_anpr_message
from devices.readings import DeviceEvent, PlateRead
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
        self.availability = MqttAvailability(device_id, self.health, sink, "camera")

    def start(self) -> None:
        """Subscribe to results and status; the broker's state is the camera's too."""
        self.bus.subscribe(self.topic, self._on_message)
        self.bus.subscribe(f"{self.topic}/status", self.availability.on_status)
        self.bus.on_state(self._on_broker_state)

    def _on_broker_state(self, up: bool, error: str | None) -> None:
        self.health.reconnects = self.bus.health.reconnects
        self.availability.on_broker(up, error)

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
