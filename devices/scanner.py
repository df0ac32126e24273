"""Container scanner (NII) driver: scan messages over MQTT in, ScanReads out.

The scanner publishes `scan_started` and `scan_completed` on its topic and "online"/"offline"
(its MQTT last will) on `<topic>/status`; either the broker or the scanner going away is a fault.

A scan is believed only from this scanner for this lane: it must arrive on the scanner's own topic
and its `lane` must be the lane the site file puts the scanner in. A message naming another lane
is refused, counted in `frames_refused`, and its reason kept as the device's `last_error`, as is
the reason for every message the codec refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from devices.availability import MqttDeviceDriver
from devices.profiles import MqttTransport, ScannerProfile
from devices.protocols.scanner_json import ScanMessage, decode_scanner_message, scan_message_to_read
from devices.readings import DeviceEvent
from devices.transports.mqtt import MqttBus

log = logging.getLogger(__name__)


class ScannerDriver(MqttDeviceDriver):
    """Subscribes to one scanner's topics; `lane` is the id of the lane the site file puts it in."""

    kind, what = "scanner", "scanner"

    def __init__(self, device_id: str, transport: MqttTransport, profile: ScannerProfile, bus: MqttBus,
                 sink: Callable[[DeviceEvent], None], *, lane: str):
        super().__init__(device_id, transport.topic, bus, sink)
        self.profile = profile
        self.lane = lane
        self.zone = ZoneInfo(profile.timezone) if profile.timezone else None  # for ISO times sent without one

    def foreign_reason(self, topic: str, message: ScanMessage) -> str | None:
        """Why this well-formed message is not this scanner's reading for its lane, or None when it is."""
        if topic != self.topic:
            return f"message on topic {topic[:80]!r}, not this scanner's topic {self.topic!r}"
        if message.lane != self.lane:
            return (f"payload names lane {message.lane[:64]!r}, but scanner {self.device_id!r} "
                    f"(topic {self.topic!r}) serves lane {self.lane!r}")
        return None

    def _on_message(self, topic: str, payload: bytes) -> None:
        now = time.time()
        message = decode_scanner_message(payload, self.zone)
        if not isinstance(message, ScanMessage):
            self.health.record_bad(f"refused a message: {message.reason}", now)
            log.warning("%s rejected a message: %s", self.device_id, message.reason)
            return
        foreign = self.foreign_reason(topic, message)
        if foreign is not None:
            self.health.record_refused(f"refused a reading: {foreign}", now)
            log.warning("%s refused a reading: %s", self.device_id, foreign)
            return
        self.health.frames_good += 1
        self.health.last_reading_at = now
        self.sink(scan_message_to_read(message, self.device_id, now))
