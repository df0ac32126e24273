"""Fit each shipped recogniser's confidence map on the calibration sets and write it beside the model.

    python -m models.training.calibrate                 # both models, 1000 crops per class
    python -m models.training.calibrate --task containers --per-class 500

Run it after retraining a model: the map belongs to the model it was fitted on (its sha256 is
recorded in the file), read with its second- and third-opinion models where they are installed
(recorded too).
Only onnxruntime, OpenCV and numpy are needed.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from models.synth.dataset import CALIBRATION_SEED, CONTAINER_CLASSES, PLATE_CLASSES, held_out
from models.vision.calibration import calibration_path, fit_isotonic
from models.vision.reader import (
    CONTAINER_MODEL,
    CONTAINER_SECOND_MODEL,
    CONTAINER_THIRD_MODEL,
    PLATE_MODEL,
    PLATE_SECOND_MODEL,
    PLATE_THIRD_MODEL,
    VisionReader,
)


def fit(task: str, per_class: int, threads: int = 1) -> Path:
    """Read the task's calibration crops with raw confidences, fit the map, write it; returns its path.

    The reader's map also decides which crops it looks at again, so the fit runs twice: the
    second time with the map of the first (a new model's old map no longer describes it).
    """
    _fit_once(task, per_class, threads)
    return _fit_once(task, per_class, threads)


def _fit_once(task: str, per_class: int, threads: int) -> Path:
    reader = VisionReader(threads=threads, min_confidence=0.0, calibrated=False, strong=False)
    model = PLATE_MODEL if task == "plates" else CONTAINER_MODEL
    read = reader.read_plate_crop if task == "plates" else reader.read_container_crop
    raw, correct = [], []
    for kind in sorted(PLATE_CLASSES if task == "plates" else CONTAINER_CLASSES):
        for sample in held_out(task, kind, per_class, seed=CALIBRATION_SEED):
            reading = read(sample.crop)
            if reading is not None:
                raw.append(reading.confidence)
                correct.append(reading.text == sample.label)
    calibration = fit_isotonic(np.array(raw), np.array(correct))
    path = calibration_path(model)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    second = PLATE_SECOND_MODEL if task == "plates" else CONTAINER_SECOND_MODEL
    third = PLATE_THIRD_MODEL if task == "plates" else CONTAINER_THIRD_MODEL
    second_digest = _digest(second)
    third_digest = _digest(third) if second_digest else None  # a third opinion is only asked beside a second
    path.write_text(calibration.to_json(model=model.name, model_sha256=digest, second_model_sha256=second_digest,
                                        third_model_sha256=third_digest,
                                        seed=CALIBRATION_SEED,
                                        per_class=per_class, readings=len(raw),
                                        readings_right=int(np.sum(correct))))
    return path


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def main() -> None:
    """Fit the maps the command line asks for."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["plates", "containers", "both"], default="both")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for task in (["plates", "containers"] if args.task == "both" else [args.task]):
        print(fit(task, args.per_class, args.threads))


if __name__ == "__main__":
    main()
