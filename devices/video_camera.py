"""Video camera driver: newest frame → plate / container-code reader (in a worker thread) →
votes across frames → one PlateRead or ContainerRead per vehicle, like the MQTT cameras emit.

A text is reported once while it stays in view: it is reported again only after no frame has read it
for `repeat_s` (the truck left, or came back). A truck held in front of the camera for minutes is
one reading, not one every few seconds; a report every few seconds would let the last one land after
the truck left, where the lane would take it for the next truck's. Each reading's `observed_at` is
the time of the first frame that read it, `received_at` when the frames agreed.

The reader comes from `models/` (`models.load_plate_reader()`). Without one the driver still
watches the stream and reports its health, and says in its health detail that it cannot read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from devices.availability import Availability
from devices.driver import RunsInBackground
from devices.health import DeviceHealth
from devices.readings import ContainerRead, DeviceEvent, PlateRead
from devices.transports.video import LatestFrameSource
from models.vision.voting import FrameVoter, Vote

log = logging.getLogger(__name__)


class ReadingLike(Protocol):
    """What the driver needs of one reading (models.vision.reader.Reading fits)."""

    text: str
    confidence: float
    kind: str


class FrameReader(Protocol):
    """Reads plates and container numbers in a BGR frame."""

    def read_plates(self, frame: np.ndarray) -> list[ReadingLike]: ...

    def read_container_codes(self, frame: np.ndarray) -> list[ReadingLike]: ...


class VideoCameraDriver(RunsInBackground):
    """Owns one video stream and turns what the reader sees, agreed over frames, into readings."""

    def __init__(self, device_id: str, source: LatestFrameSource, sink: Callable[[DeviceEvent], None], *,
                 reader: FrameReader | None, reads: Iterable[str] = ("plates",), interval_s: float = 0.2,
                 min_confidence: float = 0.0, repeat_s: float = 5.0, vote_frames: int = 2,
                 vote_window_s: float = 2.0):
        self.device_id, self.source, self.sink = device_id, source, sink
        self.reader, self.reads, self.interval_s = reader, frozenset(reads), interval_s
        self.min_confidence, self.repeat_s = min_confidence, repeat_s
        self.voter = FrameVoter(min_votes=vote_frames, window_s=vote_window_s)
        self.health = DeviceHealth(device_id, "camera")
        if reader is None:
            self.health.detail = "no recognition models installed in models/: the stream is watched, nothing is read"
        self.availability = Availability(device_id, self.health, sink)
        self.frames_recognised = 0
        self.frames_skipped = 0
        self.read_errors = 0
        self._last_seq = 0
        self._last_seen: dict[str, float] = {}  # text -> time of the last frame that read it
        self._reported: set[str] = set()  # texts reported during their current stay in view

    async def run(self) -> None:
        """Start the reader thread and read the newest frame every interval, until stopped."""
        self.source.start()
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                self._follow_source_health()
                frame = self.source.latest()
                if frame is None or frame.seq == self._last_seq:
                    self._decide(self.voter.add([], time.time()))
                    continue
                self.frames_skipped += max(0, frame.seq - self._last_seq - 1)
                self._last_seq = frame.seq
                self.health.frames_good += 1
                self.health.last_reading_at = frame.at
                if self.reader is not None:
                    readings = await asyncio.to_thread(self._read, frame.image)
                    self.frames_recognised += 1
                    self._note_seen([text for _, text, _ in readings], frame.at)
                    self._decide(self.voter.add(readings, frame.at))
        finally:
            await asyncio.to_thread(self.source.stop)

    def _read(self, image: np.ndarray) -> list[tuple[str, str, float]]:
        """(category, text, confidence) of everything read in one frame; never raises."""
        out: list[tuple[str, str, float]] = []
        try:
            if "plates" in self.reads:
                out += [("plate", r.text, r.confidence) for r in self.reader.read_plates(image)]
            if "containers" in self.reads:
                out += [("container", r.text, r.confidence) for r in self.reader.read_container_codes(image)]
        except Exception:
            self.read_errors += 1
            log.exception("%s: reading a frame failed", self.device_id)
        return out

    def _follow_source_health(self) -> None:
        link = self.source.health
        self.health.reconnects = link.reconnects
        if link.connected:
            self.availability.up()
        elif link.last_error:
            self.availability.down(link.last_error)

    def _note_seen(self, texts: list[str], at: float) -> None:
        """A frame taken at `at` read these texts: a text unseen for `repeat_s` before it begins a new stay."""
        for text in texts:
            if at - self._last_seen.get(text, -1e18) >= self.repeat_s:
                self._reported.discard(text)
            self._last_seen[text] = at
        gone = [text for text, seen in self._last_seen.items() if at - seen >= self.repeat_s]
        for text in gone:  # left the view: forget it (a text read again later is a new stay)
            del self._last_seen[text]
            self._reported.discard(text)

    def _decide(self, votes: list[Vote]) -> None:
        now = time.time()
        for vote in votes:
            if vote.confidence < self.min_confidence:
                log.info("%s: %s %s agreed by %d frames but only %.2f confident: not reported",
                         self.device_id, vote.kind, vote.text, vote.frames, vote.confidence)
                continue
            if vote.text in self._reported:
                continue  # the same truck, still in view since it was reported
            self._reported.add(vote.text)
            # Observed when its first frame was taken (the lane times readings by their arrival: `now`).
            seen = vote.seen_at or now
            if vote.kind == "container":
                self.sink(ContainerRead(self.device_id, vote.text, vote.confidence, seen, now))
            else:
                self.sink(PlateRead(self.device_id, vote.text, vote.confidence, seen, now))

    async def stop(self) -> None:
        """Stop the reader thread and end the task `start()` made."""
        await asyncio.to_thread(self.source.stop)
        await self._end_run()
