"""Starting a recogniser from a shipped one (the container reader from the plate reader) keeps
what the shipped one computes. Needs the `train` extra (torch, onnx); skipped without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from models.training.dataset import container_sample, plate_sample  # noqa: E402
from models.training.net import CRNN  # noqa: E402
from models.training.transfer import init_from_onnx  # noqa: E402
from models.vision.charsets import CONTAINER_CHARS, PLATE_CHARS  # noqa: E402
from models.vision.preprocess import container_input, plate_input  # noqa: E402

PLATE_MODEL = Path(__file__).resolve().parents[2] / "models" / "plate_reader.onnx"


def _inputs(make, to_input, count: int) -> np.ndarray:
    return np.stack([np.round((to_input(make(77, i).crop)[0] + 1) * 127.5).astype(np.uint8) for i in range(count)])


def _probs(net: CRNN, images: np.ndarray) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        x = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)
        return torch.softmax(net(x), -1).numpy()


def test_a_net_started_from_the_plate_reader_computes_what_the_plate_reader_computes():
    images = _inputs(plate_sample, plate_input, 64)
    net = CRNN(len(PLATE_CHARS) + 1)
    assert init_from_onnx(net, PLATE_MODEL, PLATE_CHARS, images) == len(PLATE_CHARS)
    session = ort.InferenceSession(str(PLATE_MODEL), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": images[:16, None].astype(np.float32) / 127.5 - 1})[0]
    assert np.abs(_probs(net, images[:16]) - expected).max() < 1e-4


def test_the_container_reader_starts_with_the_plate_readers_digits_and_letters():
    images = _inputs(container_sample, container_input, 64)
    net = CRNN(len(CONTAINER_CHARS) + 1)
    assert init_from_onnx(net, PLATE_MODEL, CONTAINER_CHARS, images) == 36
    probs = _probs(net, images)
    assert probs.shape == (64, 64, 37) and np.allclose(probs.sum(-1), 1, atol=1e-4)
    assert (probs.argmax(-1) > 0).any()  # it already sees characters before any container training
