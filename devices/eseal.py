"""E-seal reader driver: a serial line in, SealReads out; bad frames logged and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from devices.health import DeviceHealth
from devices.protocols.eseal_ascii import EsealAsciiDecoder, SealFrame, seal_frame_to_read
from devices.readings import DeviceEvent, DeviceFault, DeviceRecovered
from devices.transports.serial_port import SerialLink
from edge.config import EsealProfile, SerialTransport

log = logging.getLogger(__name__)


class EsealReaderDriver:
    """Owns one e-seal reader on a serial port."""

    def __init__(self, device_id: str, transport: SerialTransport, profile: EsealProfile,
                 sink: Callable[[DeviceEvent], None], retry_s: float = 0.5):
        self.device_id, self.sink = device_id, sink
        self.health = DeviceHealth(device_id, "eseal")
        self._decoder = EsealAsciiDecoder()
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
        self._faulty = False

    def _on_bytes(self, data: bytes) -> None:
        now = time.time()
        for item in self._decoder.feed(data):
            if isinstance(item, SealFrame):
                self.health.frames_good += 1
                self.health.last_reading_at = now
                self.sink(seal_frame_to_read(item, self.device_id, now))
            else:
                self.health.frames_bad += 1
                log.warning("%s rejected a frame: %s", self.device_id, item.reason)

    def _on_up(self) -> None:
        self.health.connected = True
        self.health.reconnects = self.link.health.reconnects
        self.health.last_error = None
        self._decoder = EsealAsciiDecoder()  # a half frame from before the outage is garbage
        if self._faulty:
            self._faulty = False
            self.sink(DeviceRecovered(self.device_id, time.time()))

    def _on_down(self, error: str) -> None:
        self.health.connected = False
        self.health.last_error = error
        if not self._faulty:
            self._faulty = True
            self.sink(DeviceFault(self.device_id, error, time.time()))

    async def run(self) -> None:
        """Read until stopped, reopening the port after failures."""
        await self.link.run()

    async def stop(self) -> None:
        await self.link.stop()
