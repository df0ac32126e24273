"""Calibrated confidence: the map is monotone, says how often readings are right, belongs to the
model it ships beside, and a broken map file stops the reader naming the file and the fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from models.vision.calibration import IDENTITY, calibration_path, fit_isotonic, load_calibration
from models.vision.reader import (
    CONTAINER_MODEL,
    CONTAINER_SECOND_MODEL,
    CONTAINER_THIRD_MODEL,
    PLATE_MODEL,
    PLATE_SECOND_MODEL,
    PLATE_THIRD_MODEL,
    VisionReader,
)
from models.vision.recogniser import ModelError


def test_the_fitted_map_rises_and_gives_the_observed_share_right():
    rng = np.random.default_rng(3)
    raw = rng.random(4000)
    correct = rng.random(4000) < np.sqrt(raw)  # readings at raw p are right sqrt(p) of the time
    calibration = fit_isotonic(raw, correct)
    assert all(b >= a for a, b in zip(calibration.calibrated, calibration.calibrated[1:], strict=False))
    for p in (0.04, 0.25, 0.5, 0.81):
        assert calibration(p) == pytest.approx(np.sqrt(p), abs=0.08), p


def test_a_model_without_a_map_reports_its_raw_probability(tmp_path):
    assert load_calibration(tmp_path / "other.onnx") is IDENTITY
    assert IDENTITY(0.37) == 0.37


def test_a_broken_map_file_names_itself_and_the_fix(tmp_path):
    model = tmp_path / "reader.onnx"
    calibration_path(model).write_text(json.dumps({"raw": [0.0, 0.5, 0.2], "calibrated": [0, 1, 1]}))
    with pytest.raises(ModelError, match=r"reader\.calibration\.json.*models\.training\.calibrate"):
        load_calibration(model)
    calibration_path(model).write_text("{not json")
    with pytest.raises(ModelError, match="reader.calibration.json"):
        load_calibration(model)


@pytest.mark.parametrize(("model", "second", "third"),
                         [(PLATE_MODEL, PLATE_SECOND_MODEL, PLATE_THIRD_MODEL),
                          (CONTAINER_MODEL, CONTAINER_SECOND_MODEL, CONTAINER_THIRD_MODEL)],
                         ids=["plates", "containers"])
def test_each_shipped_map_was_fitted_on_the_models_beside_it(model: Path, second: Path, third: Path):
    data = json.loads(calibration_path(model).read_text())
    assert data["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest(), \
        f"{model.name} changed after its map was fitted: run python -m models.training.calibrate"
    # the map describes the reader as shipped: with its second-opinion model, or without one
    assert data.get("second_model_sha256") == (hashlib.sha256(second.read_bytes()).hexdigest()
                                              if second.is_file() else None), \
        f"{second.name} changed after the map was fitted: run python -m models.training.calibrate"
    assert data.get("third_model_sha256") == (hashlib.sha256(third.read_bytes()).hexdigest()
                                             if third.is_file() and second.is_file() else None), \
        f"{third.name} changed after the map was fitted: run python -m models.training.calibrate"


def test_readings_carry_the_calibrated_confidence():
    from models.training.dataset import container_sample

    calibrated, raw = VisionReader(min_confidence=0.0), VisionReader(min_confidence=0.0, calibrated=False)
    for index in range(8):
        crop = container_sample(515, index).crop
        a, b = calibrated.read_container_crop(crop), raw.read_container_crop(crop)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.text == b.text
            assert a.confidence == pytest.approx(calibrated.container_calibration(b.confidence), abs=1e-3)


def test_a_broken_map_stops_a_smartgate_command_with_one_clear_line(monkeypatch, capsys, tmp_path):
    import models.vision.reader as reader_module
    from edge.cli import main

    broken = tmp_path / "plate_reader.onnx"
    calibration_path(broken).write_text("{not json")
    monkeypatch.setattr(reader_module, "load_calibration", lambda _model: load_calibration(broken))
    assert main(["bench", "vision", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "plate_reader.calibration.json: not a calibration file" in err and "Traceback" not in err
