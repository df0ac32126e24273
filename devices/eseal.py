"""E-seal reader driver: a serial line in, SealReads out; bad frames logged and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from devices.availability import Availability
from devices.driver import RunsInBackground
from devices.health import DeviceHealth
from devices.profiles import EsealProfile, SerialTransport
from devices.protocols.eseal_ascii import EsealAsciiDecoder, SealFrame, seal_frame_to_read
from devices.protocols.eseal_binary import EsealBinaryDecoder, SealErrorReport
from devices.readings import DeviceEvent
from devices.transports.serial_port import SerialLink

log = logging.getLogger(__name__)


class EsealReaderDriver(RunsInBackground):
    """Owns one e-seal reader on a serial port."""

    def __init__(self, device_id: str, transport: SerialTransport, profile: EsealProfile,
                 sink: Callable[[DeviceEvent], None], retry_s: float = 0.5):
        self.device_id, self.sink = device_id, sink
        self.health = DeviceHealth(device_id, "eseal")
        self.frame_format = profile.frame_format
        self._decoder = self._new_decoder()
        self.reader_errors = 0
        settings = profile.serial
        self.link = SerialLink(
            transport.port,
            baudrate=transport.baudrate or settings.baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            on_bytes=self._on_bytes,
            on_up=self._on_up,
            on_down=self._on_down,
            retry_s=retry_s,
        )
        self.availability = Availability(device_id, self.health, sink)

    def _new_decoder(self) -> EsealAsciiDecoder | EsealBinaryDecoder:
        return EsealBinaryDecoder() if self.frame_format == "eseal-binary" else EsealAsciiDecoder()

    def _on_bytes(self, data: bytes) -> None:
        now = time.time()
        for item in self._decoder.feed(data, datetime.fromtimestamp(now, UTC)):
            if isinstance(item, SealFrame):
                self.health.frames_good += 1
                self.health.last_reading_at = now
                self.sink(seal_frame_to_read(item, self.device_id, now))
            elif isinstance(item, SealErrorReport):
                self.reader_errors += 1
                self.health.last_error = f"reader {item.reader_id} error {item.error_code} on seal {item.seal_id}"
                log.warning("%s: %s", self.device_id, self.health.last_error)
            else:
                self.health.record_bad(f"refused a frame: {item.reason}", now)
                log.warning("%s rejected a frame: %s", self.device_id, item.reason)

    def _on_up(self) -> None:
        self.health.reconnects = self.link.health.reconnects
        self._decoder = self._new_decoder()  # a half frame from before the outage is garbage
        self.availability.up()

    def _on_down(self, error: str) -> None:
        self.availability.down(error)

    async def run(self) -> None:
        """Read until stopped, reopening the port after failures."""
        await self.link.run()

    async def stop(self) -> None:
        """Close the port and end the task `start()` made."""
        await self.link.stop()
        await self._end_run()
