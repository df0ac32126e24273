"""Container scanner (NII) driver: scan messages over MQTT in, ScanReads out.

The scanner publishes `scan_started` and `scan_completed` on its topic and "online"/"offline"
(its MQTT last will) on `<topic>/status`; either the broker or the scanner going away is a fault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from devices.availability import MqttAvailability
from devices.health import DeviceHealth
from devices.protocols.scanner_json import ScanMessage, decode_scanner_message, scan_message_to_read
from devices.readings import DeviceEvent
from devices.transports.mqtt import MqttBus
from edge.config import MqttTransport, ScannerProfile

log = logging.getLogger(__name__)


class ScannerDriver:
    """Subscribes to one scanner's topics."""

    def __init__(self, device_id: str, transport: MqttTransport, profile: ScannerProfile, bus: MqttBus,
                 sink: Callable[[DeviceEvent], None]):
        self.device_id, self.sink, self.bus, self.profile = device_id, sink, bus, profile
        self.topic = transport.topic
        self.health = DeviceHealth(device_id, "scanner")
        self.availability = MqttAvailability(device_id, self.health, sink, "scanner")

    def start(self) -> None:
        """Subscribe to results and status; the broker's state is the scanner's too."""
        self.bus.subscribe(self.topic, self._on_message)
        self.bus.subscribe(f"{self.topic}/status", self.availability.on_status)
        self.bus.on_state(self._on_broker_state)

    def _on_broker_state(self, up: bool, error: str | None) -> None:
        self.health.reconnects = self.bus.health.reconnects
        self.availability.on_broker(up, error)

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
