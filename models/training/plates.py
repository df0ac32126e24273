"""Retrain the plate recogniser from scratch.

    python -m models.training.plates --out models/plate_reader.onnx
"""

from __future__ import annotations

import json
from pathlib import Path

from models.training.train import Task, parse_args, train
from models.vision.charsets import PLATE_CHARS
from models.vision.preprocess import PLATE_WIDTH

TASK = Task("plates", PLATE_CHARS, PLATE_WIDTH, ("vn1", "vn2", "cn1", "cn2"))


def main() -> None:
    """Train, export, and write the training record beside the model."""
    args = parse_args(TASK, "models/plate_reader.onnx")
    record = train(TASK, args)
    Path(args.out).with_suffix(".training.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
