"""Container scanner (NII) simulator: publishes scan_started / scan_completed over a real broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from devices.protocols.scanner_json import ScanEvent, ScanMessage, encode_scanner_message
from devices.readings import ScanVerdict
from devices.transports.mqtt import MqttTls
from simulators.mqtt_device import MqttDeviceSimulator


class ScannerSimulator(MqttDeviceSimulator):
    """One scanner on one lane."""

    def __init__(self, host: str, port: int, topic: str, lane: str, scanner_id: str, tls: MqttTls | None = None):
        super().__init__(host, port, topic, scanner_id, tls)
        self.lane, self.scanner_id = lane, scanner_id
        self._counter = 0

    def publish(self, event: ScanEvent, scan_id: str, containers: list[str], verdict: ScanVerdict,
                image_ref: str | None = None) -> None:
        """Publish one scan message."""
        self.publish_raw(encode_scanner_message(ScanMessage(
            event=event, scan_id=scan_id, lane=self.lane, containers=tuple(containers), verdict=verdict,
            image_ref=image_ref, timestamp=datetime.now(UTC).replace(microsecond=0))))

    def new_scan_id(self) -> str:
        self._counter += 1
        return f"{self.scanner_id}-{int(time.time())}-{self._counter:04d}"

    def fault_garbage(self) -> None:
        self.publish_raw(b'{"event": "scan_completed", "verdict": 7}')
