"""Weighbridge indicator driver: serial frames in, one stable gross weight per truck out.

The indicator's format (Toledo continuous, SMA, Rinstrum) comes from the device profile. An SMA
indicator is polled with `W`; the others talk continuously. A continuous indicator that falls
silent (or only sends garbage) for `silence_s` is a fault even while the port stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from devices.availability import Availability
from devices.driver import RunsInBackground
from devices.health import DeviceHealth
from devices.profiles import SerialTransport, WeighbridgeProfile
from devices.protocols.stable_weight import StableWeightDetector, WeightFrame
from devices.protocols.weighbridge_rinstrum import RinstrumDecoder
from devices.protocols.weighbridge_sma import SmaDecoder, encode_sma_command
from devices.protocols.weighbridge_toledo import ToledoDecoder
from devices.readings import DeviceEvent, WeightRead
from devices.transports.serial_port import SerialLink

log = logging.getLogger(__name__)


def weight_decoder(profile: WeighbridgeProfile) -> ToledoDecoder | SmaDecoder | RinstrumDecoder:
    """The frame decoder a profile names."""
    if profile.frame_format == "toledo-continuous":
        return ToledoDecoder(checksum=profile.checksum, blank_tare=profile.blank_tare,
                             clone_status_bits=profile.clone_status_bits, short_frame=profile.short_frame)
    if profile.frame_format == "sma":
        return SmaDecoder(variant=profile.sma_variant)
    return RinstrumDecoder()


class WeighbridgeDriver(RunsInBackground):
    """Owns one weighbridge indicator on a serial port."""

    def __init__(self, device_id: str, transport: SerialTransport, profile: WeighbridgeProfile,
                 sink: Callable[[DeviceEvent], None], retry_s: float = 0.5, silence_s: float = 3.0):
        self.device_id, self.sink, self.profile = device_id, sink, profile
        self.health = DeviceHealth(device_id, "weighbridge")
        self.silence_s = silence_s
        self.last_frame: WeightFrame | None = None
        self._decoder = weight_decoder(profile)
        self._detector = StableWeightDetector(profile.stable_band_kg, profile.stable_hold_s, profile.min_kg)
        settings = profile.serial
        self.link = SerialLink(
            transport.port, baudrate=transport.baudrate or settings.baudrate, bytesize=settings.bytesize,
            parity=settings.parity, stopbits=settings.stopbits, on_bytes=self._on_bytes,
            on_up=self._on_up, on_down=self._on_down, retry_s=retry_s,
        )
        self.availability = Availability(device_id, self.health, sink)
        self._last_good = time.monotonic()
        self._tasks: list[asyncio.Task] = []

    def _on_bytes(self, data: bytes) -> None:
        now = time.time()
        for item in self._decoder.feed(data):
            if not isinstance(item, WeightFrame):
                self.health.frames_bad += 1
                log.warning("%s rejected a frame: %s", self.device_id, item.reason)
                continue
            self.health.frames_good += 1
            self.health.last_reading_at = now
            self.last_frame = item
            self._last_good = time.monotonic()
            self.availability.up()
            stable = self._detector.update(item, now)
            if stable is not None:
                self.sink(WeightRead(self.device_id, stable, now, now))

    def _on_up(self) -> None:
        self.health.reconnects = self.link.health.reconnects
        self._decoder = weight_decoder(self.profile)
        self._detector.reset()
        self._last_good = time.monotonic()
        self.availability.up()

    def _on_down(self, error: str) -> None:
        self.availability.down(error)

    async def _poll_and_watch(self) -> None:
        interval = self.profile.poll_interval_s
        while True:
            await asyncio.sleep(interval or 0.5)
            if interval:
                await self.link.write(encode_sma_command("W"))
            if self.link.health.connected and time.monotonic() - self._last_good > self.silence_s:
                self.availability.down(f"no valid weight frame for {self.silence_s:.0f} s")

    async def run(self) -> None:
        """Read (and poll) until stopped, reopening the port after failures."""
        self._tasks.append(asyncio.create_task(self._poll_and_watch(), name=f"{self.device_id}-watch"))
        await self.link.run()

    async def stop(self) -> None:
        """Stop polling, close the port and end the task `start()` made."""
        for task in self._tasks:
            task.cancel()
        await self.link.stop()
        await self._end_run()
