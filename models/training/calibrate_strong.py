"""Fit the strong recogniser's confidence maps (plates, containers) on the synthetic calibration sets.

    python -m models.training.calibrate_strong                 # 300 crops per class
    python -m models.training.calibrate_strong --per-class 500

The strong recogniser (PP-OCRv4's, `models.vision.strong`) reads each calibration crop laid out
as the cascade lays it out; its grammar-decoded reading's share of the probability mass is
mapped to how often readings that sure were right (isotonic, `models.vision.calibration`), and
written as `models/strong_plates.calibration.json` / `models/strong_containers.calibration.json`.
The calibration seed is neither a training nor an evaluation seed; no real image is used, so the
maps describe the model on synthetic crops, where it is weaker than on real ones (see the card).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from models.training.dataset import CALIBRATION_SEED, CONTAINER_CLASSES, PLATE_CLASSES, held_out
from models.vision import preprocess
from models.vision.calibration import calibration_path, fit_isotonic
from models.vision.charsets import CONTAINER_CHARS, PLATE_CHARS
from models.vision.grammar import ISO6346, PLATES
from models.vision.strong import (
    CONTAINER_ALIAS,
    CONTAINER_CALIBRATION,
    PLATE_ALIAS,
    PLATE_CALIBRATION,
    REC_NAME,
    StrongRecogniser,
    find_model,
    stack_to_line,
)


def ways(crop: np.ndarray, plate: bool) -> list[np.ndarray]:
    """The lines the cascade gives the strong recogniser for a crop."""
    if plate:
        return preprocess.plate_lines(crop)
    if crop.shape[0] > preprocess.VERTICAL_MIN_ASPECT * crop.shape[1]:
        return [stack_to_line(crop)]
    return preprocess.container_lines(crop)


def fit(task: str, per_class: int) -> Path:
    """Read the task's calibration crops with the strong recogniser, fit its map, write it; returns its path."""
    path = find_model(REC_NAME)
    if path is None:
        raise SystemExit(f"{REC_NAME} not found: pip install --no-deps rapidocr_onnxruntime==1.4.4")
    strong = StrongRecogniser(path, threads=1)
    plate = task == "plates"
    raw, correct = [], []
    for kind in sorted(PLATE_CLASSES if plate else CONTAINER_CLASSES):
        for sample in held_out(task, kind, per_class, seed=CALIBRATION_SEED):
            candidate, _ = strong.read(ways(sample.crop, plate), PLATE_CHARS if plate else CONTAINER_CHARS,
                                       PLATES if plate else ISO6346, PLATE_ALIAS if plate else CONTAINER_ALIAS)
            if candidate is not None:
                raw.append(candidate.probability)
                correct.append(candidate.text == sample.label)
    calibration = fit_isotonic(np.array(raw), np.array(correct))
    out = calibration_path(PLATE_CALIBRATION if plate else CONTAINER_CALIBRATION)
    out.write_text(calibration.to_json(model=path.name, model_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                       task=task, seed=CALIBRATION_SEED, per_class=per_class, readings=len(raw),
                                       right=int(sum(correct))))
    return out


def main() -> None:
    """Command line: fit one task's map or both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("plates", "containers", "both"), default="both")
    parser.add_argument("--per-class", type=int, default=300)
    args = parser.parse_args()
    for task in ("plates", "containers") if args.task == "both" else (args.task,):
        print(fit(task, args.per_class))


if __name__ == "__main__":
    main()
