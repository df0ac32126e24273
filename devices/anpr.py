"""ANPR camera driver: plate results over MQTT in, PlateReads out; bad or foreign messages counted with the reason.

A reading is believed only from its own device: it must arrive on the camera's own topic, and a
payload that names a camera (the profile's `camera` field) must name this device (its id in the
site file). A message naming another camera is refused, counted in `frames_refused`, and its
reason kept as the device's `last_error`, as is the reason for every message the codec refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from devices.availability import MqttDeviceDriver
from devices.profiles import AnprProfile, MqttTransport
from devices.protocols.anpr_json import AnprFields, AnprResult, decode_anpr_message
from devices.readings import DeviceEvent, PlateRead
from devices.transports.mqtt import MqttBus

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
        self.zone = ZoneInfo(profile.timezone) if profile.timezone else None  # for ISO times sent without one

    def foreign_reason(self, topic: str, result: AnprResult) -> str | None:
        """Why this well-formed result is not this camera's own reading, or None when it is."""
        if topic != self.topic:
            return f"message on topic {topic[:80]!r}, not this camera's topic {self.topic!r}"
        if result.camera_id is not None and result.camera_id != self.device_id:
            return (f"payload names camera {result.camera_id[:64]!r} in field {self.fields.camera!r}, "
                    f"but topic {self.topic!r} belongs to {self.device_id!r}")
        return None

    def _on_message(self, topic: str, payload: bytes) -> None:
        now = time.time()
        result = decode_anpr_message(payload, self.fields, self.zone)
        if not isinstance(result, AnprResult):
            self.health.record_bad(f"refused a message: {result.reason}", now)
            log.warning("%s rejected a message on %s: %s", self.device_id, topic, result.reason)
            return
        foreign = self.foreign_reason(topic, result)
        if foreign is not None:
            self.health.record_refused(f"refused a reading: {foreign}", now)
            log.warning("%s refused a reading: %s", self.device_id, foreign)
            return
        self.health.frames_good += 1
        self.health.last_reading_at = now
        if result.confidence < self.profile.min_confidence:
            self.ignored_low_confidence += 1
            return
        self.sink(PlateRead(self.device_id, result.plate, result.confidence,
                            result.timestamp or now, now))
