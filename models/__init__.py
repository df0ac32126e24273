"""Recognition models and their inference wrappers.

    from models import read_plates, read_container_codes
    for reading in read_plates(frame):          # a BGR numpy frame (or encoded image bytes)
        print(reading.display, reading.confidence, reading.box)

The ONNX files beside this module (`plate_reader.onnx`, `container_reader.onnx`, each with its
model card, and the optional second-opinion models `plate_reader_second.onnx` and
`container_reader_second.onnx`) are loaded once, on first use, with `configure(threads=...)`
onnxruntime threads.
Bad input gives an empty list, never an exception. Training lives in `models/training/` and is
never imported at run time.
"""

from __future__ import annotations

import threading

import numpy as np

from models.vision.reader import CONTAINER_MODEL, PLATE_MODEL, Reading, VisionReader
from models.vision.recogniser import ModelError

__all__ = ["ModelError", "Reading", "VisionReader", "configure", "load_plate_reader", "read_container_codes",
           "read_plates", "reader"]

_lock = threading.Lock()
_reader: VisionReader | None = None
_threads = 1
_shared: dict[int, VisionReader] = {}


def configure(threads: int = 1) -> None:
    """Set onnxruntime's thread count for the shared reader (recreated on next use)."""
    global _reader, _threads
    with _lock:
        _threads, _reader = max(1, int(threads)), None


def reader() -> VisionReader:
    """The shared reader, its sessions created on first use; raises ModelError when a model is missing."""
    global _reader
    with _lock:
        if _reader is None:
            _reader = VisionReader(_threads)
        return _reader


def read_plates(frame: np.ndarray | bytes) -> list[Reading]:
    """Plates read in a camera frame: text, confidence, box, kind ("VN"/"CN"), best first."""
    return reader().read_plates(frame)


def read_container_codes(frame: np.ndarray | bytes) -> list[Reading]:
    """Check-digit-valid ISO 6346 container numbers read in a frame, best first."""
    return reader().read_container_codes(frame)


def models_installed() -> bool:
    """True when the plate model is present (the container-code model is optional)."""
    return PLATE_MODEL.is_file()


def container_model_installed() -> bool:
    """True when the container-code model is present."""
    return CONTAINER_MODEL.is_file()


def load_plate_reader(threads: int = 1) -> VisionReader | None:
    """The reader video camera drivers share (one per thread count), or None without the models."""
    if not models_installed():
        return None
    with _lock:
        if threads not in _shared:
            _shared[threads] = VisionReader(threads)
        return _shared[threads]
