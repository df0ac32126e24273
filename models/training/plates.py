"""Retrain the plate recogniser from scratch.

    python -m models.training.plates --out models/plate_reader.onnx

The recipe has two stages: from random weights on 250k crops of seed 1, then on 200k fresh crops
of seed 2 at a lower learning rate (`--stage N --init F` runs one of them).
"""

from __future__ import annotations

from models.training.train import Stage, Task, main
from models.vision.charsets import PLATE_CHARS
from models.vision.preprocess import PLATE_WIDTH

TASK = Task("plates", PLATE_CHARS, PLATE_WIDTH, ("vn1", "vn2", "cn1", "cn2"),
            stages=(Stage(seed=1, samples=250_000, epochs=9, lr=3e-3),
                    Stage(seed=2, samples=200_000, epochs=6, lr=1e-3)))

if __name__ == "__main__":
    main(TASK, "models/plate_reader.onnx")
