"""An IP camera that streams MJPEG over HTTP, showing the empty lane or the truck a scenario sends.

OpenCV opens `http://127.0.0.1:<port>/video.mjpg` through the same FFmpeg path as a real
camera's stream, so the node's video camera driver and its plate reader run unchanged against it.
Frames are drawn with the synthetic plate renderer (models/synth) at 960x540.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

log = logging.getLogger(__name__)
BOUNDARY = b"smartgate-frame"


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("OpenCV could not encode a frame")
    return data.tobytes()


class VideoCameraSimulator:
    """MJPEG stream on loopback; `show_truck(plate)`, `show_container(code)` and `clear()` change what it shows."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fps: float = 10.0):
        self.fps = fps
        self.frames_sent = 0
        self._lock = threading.Lock()
        self._offline = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None
        self.showing: str | None = None
        self._empty_lane = _jpeg(self._draw(None))  # drawn once: clearing is cheap enough for the event loop
        self._frame = self._empty_lane

    @property
    def url(self) -> str:
        """The stream's address, for the site's `transport.source`."""
        return f"http://{self.host}:{self.port}/video.mjpg"

    def start(self) -> VideoCameraSimulator:
        """Serve the stream in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="video-camera-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and end every open stream."""
        self._offline.set()
        self._server.shutdown()
        self._server.server_close()

    def show_truck(self, plate: str) -> None:
        """Show a truck front with this plate (any spelling: 29C-123.45, 桂F·12345)."""
        from devices.protocols.plates import normalise_plate

        normal = normalise_plate(plate)
        frame = _jpeg(self._draw(normal))
        with self._lock:
            self._frame, self.showing = frame, normal

    def show_container(self, code: str, layout: str = "h1") -> None:
        """Show a container's doors with this code (e.g. CSQU3054383) painted in `layout` (h1, h2, v)."""
        from models.synth.scenes import container_at_gate

        normal = code.replace(" ", "").upper()
        frame = _jpeg(container_at_gate(normal, layout, seed=sum(map(ord, normal))).frame)
        with self._lock:
            self._frame, self.showing = frame, normal

    def clear(self) -> None:
        """Show the empty lane."""
        with self._lock:
            self._frame, self.showing = self._empty_lane, None

    # fault hooks, as for the other simulators (scenario `faults:` and `smartgate simulate`)
    async def fault_disconnect(self) -> None:
        """The camera drops off the network: open streams end, new ones are refused."""
        self._offline.set()

    async def recover_disconnect(self) -> None:
        self._offline.clear()

    @staticmethod
    def _draw(plate: str | None) -> np.ndarray:
        from models.synth.scenes import truck_at_gate

        return truck_at_gate(plate, seed=sum(map(ord, plate or ""))).frame

    def _current(self) -> bytes:
        with self._lock:
            return self._frame

    def _handler_class(self):
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if camera._offline.is_set():
                    self.send_error(503, "camera offline")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                interval = 1.0 / camera.fps
                try:
                    while not camera._offline.is_set():
                        frame = camera._current()
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(frame)).encode() + b"\r\n\r\n" + frame + b"\r\n")
                        camera.frames_sent += 1
                        time.sleep(interval)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the http.server API
                log.debug("video camera simulator: " + format, *args)

        return Handler
