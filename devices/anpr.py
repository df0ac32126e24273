"""ANPR camera driver: plate results over MQTT in, PlateReads out; bad messages logged and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from devices.availability import MqttDeviceDriver
from devices.protocols.anpr_json import AnprFields, AnprResult, decode_anpr_message
from devices.readings import DeviceEvent, PlateRead
from devices.transports.mqtt import MqttBus
from edge.config import AnprProfile, MqttTransport

log = logging.getLogger(__name__)


class AnprCameraDriver(MqttDeviceDriver):
    """Subscribes to one camera's result topic."""

    kind, what = "anpr", "camera"

    def __init__(self, device_id: str, transport: MqttTransport, profile: AnprProfile,
                 bus: MqttBus, sink: Callable[[DeviceEvent], None]):
        super().__init__(device_id, transport.topic, bus, sink)
        self.profile = profile
        self.fields = AnprFields(**profile.fields.model_dump())
        self.ignored_low_confidence = 0

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
