"""Retrain the container-code recogniser from scratch.

    python -m models.training.containers --out models/container_reader.onnx
"""

from __future__ import annotations

import json
from pathlib import Path

from models.training.train import Task, parse_args, train
from models.vision.charsets import CONTAINER_CHARS
from models.vision.preprocess import CONTAINER_WIDTH

TASK = Task("containers", CONTAINER_CHARS, CONTAINER_WIDTH, ("h1", "h2", "v"))


def main() -> None:
    """Train, export, and write the training record beside the model."""
    args = parse_args(TASK, "models/container_reader.onnx")
    record = train(TASK, args)
    Path(args.out).with_suffix(".training.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
