"""The shipped recognisers are 8-bit (models.training.quantize), and quantising a float model again
gives a reader that reads what the shipped one reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models.vision.reader import CONTAINER_MODEL, CONTAINER_SECOND_MODEL, PLATE_MODEL, PLATE_SECOND_MODEL

SHIPPED = [PLATE_MODEL, PLATE_SECOND_MODEL, CONTAINER_MODEL, CONTAINER_SECOND_MODEL]


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.stem)
def test_each_shipped_recogniser_is_the_8_bit_one_and_says_so(model: Path):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["precision"] == "int8" and meta["task"] in ("plates", "containers")
    assert session.get_inputs()[0].type == "tensor(float)"  # callers still pass float images


def test_quantising_a_quantised_model_is_refused_naming_the_fix(tmp_path):
    pytest.importorskip("onnx")
    from models.training.quantize import quantise

    with pytest.raises(ValueError, match="already quantised; quantise the float model a training run exported"):
        quantise(PLATE_MODEL, tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()


def test_a_file_that_is_not_an_onnx_model_is_refused_naming_it(tmp_path):
    pytest.importorskip("onnx")
    from models.training.quantize import quantise

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="broken.onnx: not an ONNX model"):
        quantise(broken, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_a_float_model_quantised_again_reads_what_the_shipped_reader_reads(tmp_path):
    """Shipped 8-bit reader → float network (its weights read back) → export → quantise: the round
    trip's reader gives the shipped reader's readings on the crops it is sure of."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from models.training.dataset import plate_sample
    from models.training.net import CRNN
    from models.training.plates import TASK
    from models.training.quantize import is_quantised, quantise
    from models.training.train import export
    from models.training.transfer import init_from_onnx, onnx_widths
    from models.vision.charsets import PLATE_CHARS
    from models.vision.ctc import greedy
    from models.vision.preprocess import PLATE_WIDTH, model_input, plate_lines

    crops = [plate_sample(91, i).crop for i in range(48)]
    inputs = np.stack([model_input(plate_lines(crop)[0], PLATE_WIDTH).astype(np.float32) for crop in crops])
    net = CRNN(len(PLATE_CHARS) + 1, onnx_widths(PLATE_MODEL))
    init_from_onnx(net, PLATE_MODEL, PLATE_CHARS, np.round((inputs[:, 0] + 1) * 127.5).astype(np.uint8))
    export(net, TASK, tmp_path / "float.onnx")
    assert not is_quantised(tmp_path / "float.onnx")
    quantise(tmp_path / "float.onnx", tmp_path / "int8.onnx", per_class=50)
    assert is_quantised(tmp_path / "int8.onnx")

    def readings(path: Path) -> list[tuple[str, float]]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [greedy(p, PLATE_CHARS) for p in session.run(None, {"image": inputs})[0]]

    shipped, again = readings(PLATE_MODEL), readings(tmp_path / "int8.onnx")
    sure = [i for i, (_text, lowest) in enumerate(shipped) if lowest >= 0.9]
    assert len(sure) >= 30
    assert [again[i][0] for i in sure] == [shipped[i][0] for i in sure]
    meta = ort.InferenceSession(str(tmp_path / "int8.onnx")).get_modelmeta().custom_metadata_map
    assert (meta["precision"], meta["charset"], meta["input_width"]) == ("int8", PLATE_CHARS, str(PLATE_WIDTH))
