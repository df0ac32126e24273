"""Retrain the plate recogniser from scratch.

    python -m models.training.plates --out models/plate_reader.onnx
"""

from __future__ import annotations

from models.training.train import Task, main
from models.vision.charsets import PLATE_CHARS
from models.vision.preprocess import PLATE_WIDTH

TASK = Task("plates", PLATE_CHARS, PLATE_WIDTH, ("vn1", "vn2", "cn1", "cn2"),
            samples=250_000, epochs=9, lr=3e-3)

if __name__ == "__main__":
    main(TASK, "models/plate_reader.onnx")
