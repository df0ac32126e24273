"""Video camera driver: newest frame → plate recogniser (in a worker thread) → PlateReads.

The recogniser comes from `models/` (the vision work). Without one the driver still watches the
stream and reports its health, and says in its health detail that it cannot read plates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from devices.availability import Availability
from devices.health import DeviceHealth
from devices.readings import DeviceEvent, PlateRead
from devices.transports.video import LatestFrameSource

log = logging.getLogger(__name__)

# A recogniser takes a BGR frame and returns (plate text, confidence) pairs.
Recogniser = Callable[[np.ndarray], list[tuple[str, float]]]


class VideoCameraDriver:
    """Owns one video stream and turns what the recogniser reads into plate readings."""

    def __init__(self, device_id: str, source: LatestFrameSource, sink: Callable[[DeviceEvent], None], *,
                 recogniser: Recogniser | None, interval_s: float = 0.2, min_confidence: float = 0.0,
                 repeat_s: float = 5.0):
        self.device_id, self.source, self.sink = device_id, source, sink
        self.recogniser, self.interval_s = recogniser, interval_s
        self.min_confidence, self.repeat_s = min_confidence, repeat_s
        self.health = DeviceHealth(device_id, "camera")
        if recogniser is None:
            self.health.detail = "no plate recogniser installed in models/: the stream is watched, plates are not read"
        self.availability = Availability(device_id, self.health, sink)
        self.frames_recognised = 0
        self.frames_skipped = 0
        self._last_seq = 0
        self._last_emitted: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def run(self) -> None:
        """Start the reader thread and recognise the newest frame every interval, until stopped."""
        self.source.start()
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                self._follow_source_health()
                frame = self.source.latest()
                if frame is None or frame.seq == self._last_seq:
                    continue
                self.frames_skipped += max(0, frame.seq - self._last_seq - 1)
                self._last_seq = frame.seq
                self.health.frames_good += 1
                self.health.last_reading_at = frame.at
                if self.recogniser is not None:
                    reads = await asyncio.to_thread(self.recogniser, frame.image)
                    self.frames_recognised += 1
                    self._emit(reads, frame.at)
        finally:
            await asyncio.to_thread(self.source.stop)

    def _follow_source_health(self) -> None:
        link = self.source.health
        self.health.reconnects = link.reconnects
        if link.connected:
            self.availability.up()
        elif link.last_error:
            self.availability.down(link.last_error)

    def _emit(self, reads: list[tuple[str, float]], captured_at: float) -> None:
        now = time.time()
        for text, confidence in reads:
            if confidence < self.min_confidence:
                continue
            if now - self._last_emitted.get(text, -1e9) < self.repeat_s:
                continue  # the same truck in the next frames
            self._last_emitted[text] = now
            self.sink(PlateRead(self.device_id, text, confidence, captured_at, now))

    async def stop(self) -> None:
        await asyncio.to_thread(self.source.stop)
