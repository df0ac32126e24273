"""A video file standing in for a streaming camera: synthetic frames of a truck front with a plate.

OpenCV reads a file through the same VideoCapture path as an RTSP stream, so the video camera
driver runs unchanged against it. Frames are drawn, not recorded: a yellow plate with black text
on a grey truck front, the text moving a little from frame to frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def draw_truck_front(plate: str, width: int = 640, height: int = 360, shift: int = 0) -> np.ndarray:
    """One BGR frame: a truck front with a yellow plate reading `plate` (ASCII only)."""
    frame = np.full((height, width, 3), 90, np.uint8)
    cv2.rectangle(frame, (120, 40), (520, 330), (150, 150, 150), -1)  # the cab
    x, y = 220 + shift, 250
    cv2.rectangle(frame, (x, y), (x + 200, y + 48), (0, 215, 255), -1)  # a yellow plate
    cv2.putText(frame, plate, (x + 8, y + 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2, cv2.LINE_AA)
    return frame


def write_video(path: str | Path, plates: list[str], frames_per_plate: int = 10, fps: float = 10.0) -> Path:
    """Write an MJPG AVI showing each plate for `frames_per_plate` frames; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 360))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for plate in plates:
            for i in range(frames_per_plate):
                writer.write(draw_truck_front(plate, shift=i % 5))
    finally:
        writer.release()
    return path
