"""A video source (file, RTSP URL or device index) read in a thread, keeping only the newest frame.

Recognition is slower than a camera's frame rate; a queue of old frames would only add latency.
A live stream (RTSP, HTTP MJPEG, a device) is read as fast as it arrives; the reader thread
overwrites one slot at most `max_fps` times a second; the consumer takes whatever is newest and
sees how many frames it skipped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from devices.transports.modbus import LinkHealth


@dataclass(frozen=True)
class Frame:
    """One decoded frame with its sequence number and capture time."""

    image: np.ndarray
    seq: int
    at: float


def parse_source(source: str) -> str | int:
    """A device index ("0") becomes an int; files and URLs stay strings."""
    return int(source) if source.isdigit() else source


class LatestFrameSource:
    """Reads frames in a background thread; `latest()` returns the newest one."""

    def __init__(self, source: str, *, loop_file: bool = False, retry_s: float = 1.0, max_fps: float = 30.0):
        self.source, self.loop_file, self.retry_s = source, loop_file, retry_s
        self.min_interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self.health = LinkHealth()
        self.frames_read = 0
        self._latest: Frame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened_once = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"video-{self.source}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def latest(self) -> Frame | None:
        """The newest frame read so far (None before the first)."""
        with self._lock:
            return self._latest

    def _run(self) -> None:
        while not self._stop.is_set():
            capture = cv2.VideoCapture(parse_source(self.source))
            if not capture.isOpened():
                self.health.connected = False
                self.health.last_error = f"cannot open video source {self.source}"
                capture.release()
                self._stop.wait(self.retry_s)
                continue
            if self._opened_once:
                self.health.reconnects += 1
            self._opened_once = True
            self.health.connected, self.health.last_error = True, None
            self._read_until_end(capture)
            capture.release()
            if not self.loop_file:
                self.health.connected = False
                self.health.last_error = "video source ended"
                self._stop.wait(self.retry_s)

    def _read_until_end(self, capture: cv2.VideoCapture) -> None:
        if self._is_live():
            self._follow_live(capture)
            return
        last = 0.0
        while not self._stop.is_set():
            ok, image = capture.read()
            if not ok or image is None:
                return
            self._keep(image)
            wait = self.min_interval - (time.monotonic() - last)
            if wait > 0:
                self._stop.wait(wait)  # a file plays at the camera's rate, not as fast as it decodes
            last = time.monotonic()

    def _follow_live(self, capture: cv2.VideoCapture) -> None:
        """A live stream is read as fast as it comes (or frames would queue up in the socket and
        the newest frame would grow old); only `max_fps` of them are converted and kept."""
        last = 0.0
        while not self._stop.is_set():
            if not capture.grab():
                return
            if time.monotonic() - last < self.min_interval:
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                return
            self._keep(image)
            last = time.monotonic()

    def _is_live(self) -> bool:
        source = parse_source(self.source)
        return isinstance(source, int) or "://" in source

    def _keep(self, image: np.ndarray) -> None:
        now = time.time()
        self.frames_read += 1
        with self._lock:
            self._latest = Frame(image, self.frames_read, now)
        self.health.last_ok_at = now
