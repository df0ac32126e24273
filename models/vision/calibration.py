"""Calibrated confidence: the decoder's raw probability mapped to how often readings that sure are right.

The decoder's probability is the reading's share of all the model's probability mass. Under a
strict grammar (ISO 6346's check digit above all) a reading can be right while much of that mass
sat on readings the grammar rules out, so the raw share understates it. Each model has a
monotone map, fitted by isotonic regression on a seeded calibration set that neither training
nor the held-out evaluation uses (`python -m models.training.calibrate`), stored beside the model
as `<model>.calibration.json`. Without that file the raw probability is the confidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.vision.recogniser import ModelError


@dataclass(frozen=True)
class Calibration:
    """A monotone piecewise-linear map from raw decoder probability to the chance of being right."""

    raw: tuple[float, ...]
    calibrated: tuple[float, ...]

    def __call__(self, probability: float) -> float:
        if not self.raw:
            return probability
        return float(np.interp(probability, self.raw, self.calibrated))

    def to_json(self, **extra: object) -> str:
        """The file's text: the knots, and whatever describes how they were fitted."""
        return json.dumps({"raw": list(self.raw), "calibrated": list(self.calibrated), **extra}, indent=1) + "\n"


IDENTITY = Calibration((), ())


def calibration_path(model: Path) -> Path:
    """Where a model's calibration lives: beside it, `<stem>.calibration.json`."""
    return Path(model).with_suffix(".calibration.json")


def load_calibration(model: Path) -> Calibration:
    """The model's calibration, or the identity when it has none; a broken file is a ModelError naming it."""
    path = calibration_path(model)
    if not path.is_file():
        return IDENTITY
    try:
        data = json.loads(path.read_text())
        raw, calibrated = [float(v) for v in data["raw"]], [float(v) for v in data["calibrated"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{path}: not a calibration file ({error}); delete it or rerun "
                         "`python -m models.training.calibrate`") from error
    if len(raw) != len(calibrated) or any(b < a for a, b in zip(raw, raw[1:], strict=False)):
        raise ModelError(f"{path}: 'raw' must rise and match 'calibrated' in length; rerun "
                         "`python -m models.training.calibrate`")
    return Calibration(tuple(raw), tuple(calibrated))


def fit_isotonic(raw: np.ndarray, correct: np.ndarray, bin_size: int = 40) -> Calibration:
    """Pool-adjacent-violators fit of P(correct | raw) over bins of `bin_size` readings.

    Binning first keeps one stray reading from setting the map: each knot stands for at least
    `bin_size` readings. Knots sit at the bins' mean raw probability.
    """
    order = np.argsort(raw, kind="stable")
    x, y = np.asarray(raw, np.float64)[order], np.asarray(correct, np.float64)[order]
    if x.size == 0:
        return IDENTITY
    bins = np.array_split(np.arange(x.size), max(1, x.size // bin_size))
    centres = [float(x[b].mean()) for b in bins]
    values, weights, members = [], [], []
    for index, b in enumerate(bins):
        values.append(float(y[b].mean()))
        weights.append(float(b.size))
        members.append([index])
        while len(values) > 1 and values[-2] > values[-1]:
            total = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / total
            weights[-2] = total
            members[-2] += members[-1]
            del values[-1], weights[-1], members[-1]
    fitted = [0.0] * len(bins)
    for value, group in zip(values, members, strict=True):
        for index in group:
            fitted[index] = value
    knots = dict(zip([0.0, *centres, 1.0], [fitted[0], *fitted, fitted[-1]], strict=True))  # one knot per raw value
    xs = sorted(knots)
    return Calibration(tuple(round(v, 6) for v in xs), tuple(round(float(knots[v]), 4) for v in xs))
