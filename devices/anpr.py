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
        self.bus.on_state(self._on_broker_state)

    def _on_broker_state(self, up: bool, error: str | None) -> None:
        self.health.connected = up
        self.health.reconnects = self.bus.health.reconnects
        if up:
            self.health.last_error = None
            if self._faulty:
                self._faulty = False
                self.sink(DeviceRecovered(self.device_id, time.time()))
        else:
            self.health.last_error = f"MQTT broker: {error}"
            if not self._faulty:
                self._faulty = True
                self.sink(DeviceFault(self.device_id, self.health.last_error, time.time()))

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
