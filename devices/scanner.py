"""Container scanner (NII) driver: scan messages over MQTT in, ScanReads out.

The scanner publishes `scan_started` and `scan_completed` on its topic and "online"/"offline"
(its MQTT last will) on `<topic>/status`; either the broker or the scanner going away is a fault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from devices.availability import MqttDeviceDriver
from devices.protocols.scanner_json import ScanMessage, decode_scanner_message, scan_message_to_read
from devices.readings import DeviceEvent
from devices.transports.mqtt import MqttBus
from edge.config import MqttTransport, ScannerProfile

log = logging.getLogger(__name__)


class ScannerDriver(MqttDeviceDriver):
    """Subscribes to one scanner's topics."""

    kind, what = "scanner", "scanner"

    def __init__(self, device_id: str, transport: MqttTransport, profile: ScannerProfile, bus: MqttBus,
                 sink: Callable[[DeviceEvent], None]):
        super().__init__(device_id, transport.topic, bus, sink)
        self.profile = profile

    def _on_message(self, topic: str, payload: bytes) -> None:
        now = time.time()
        message = decode_scanner_message(payload)
        if not isinstance(message, ScanMessage):
            self.health.frames_bad += 1
            log.warning("%s rejected a message: %s", self.device_id, message.reason)
            return
        self.health.frames_good += 1
        self.health.last_reading_at = now
        self.sink(scan_message_to_read(message, self.device_id, now))
