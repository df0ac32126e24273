"""The folded PP-OCRv4 files the reader runs (`models.training.fold_strong`) are the wheel's models:
the same probabilities on real-looking input, so every reading and confidence stays as it was."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.training.dataset import CALIBRATION_SEED, held_out
from models.vision import preprocess
from models.vision.recogniser import cpu_session_options
from models.vision.strong import (
    DET_NAME,
    FOLDED,
    MODELS_DIR,
    REC_NAME,
    StrongRecogniser,
    find_model,
    runtime_model,
    verified,
)


def test_the_reader_runs_the_folded_copies_committed_with_the_card():
    for name in (REC_NAME, DET_NAME):
        path = runtime_model(name)
        assert path == MODELS_DIR / FOLDED[name] and verified(path)


@pytest.mark.parametrize("kind", ["cn1", "vn2"])
def test_the_folded_recogniser_gives_the_original_probabilities(kind):
    original = StrongRecogniser(find_model(REC_NAME), threads=1)
    folded = StrongRecogniser(runtime_model(REC_NAME), threads=1)
    assert folded.classes == original.classes
    for sample in held_out("plates", kind, 6, seed=CALIBRATION_SEED):
        line = preprocess.plate_lines(sample.crop)[0]
        a, b = original.probabilities(line), folded.probabilities(line)
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-4
        assert (a.argmax(-1) == b.argmax(-1)).all()


def test_the_folded_detector_gives_the_original_text_map():
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(path), cpu_session_options(1), providers=["CPUExecutionProvider"])
                for path in (find_model(DET_NAME), runtime_model(DET_NAME))]
    crop = held_out("containers", "h1", 1, seed=CALIBRATION_SEED)[0].crop
    image = cv2.resize(crop, (320, 160))  # the detector wants sides that are multiples of 32
    feed = (image.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0).astype(np.float32)
    a, b = (s.run(None, {s.get_inputs()[0].name: feed})[0] for s in sessions)
    assert np.abs(a - b).max() < 1e-4
