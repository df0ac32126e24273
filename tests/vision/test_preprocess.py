"""Crop preparation: whatever way the code is painted or seen, the model gets one level line of text."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.training.container_synth import render_container
from models.vision.preprocess import FALLBACK_CUTS, container_lines, fallback_lines


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image turned about its centre on a canvas large enough to keep its corners."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (int(h * sin + w * cos), int(h * cos + w * sin))
    matrix[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
    return cv2.warpAffine(image, matrix, size, borderMode=cv2.BORDER_REPLICATE)


def _lean(line: np.ndarray) -> float:
    """How far the text's middle row drops from the line's first quarter to its last, in character heights."""
    strokes = np.abs(cv2.Sobel(line, cv2.CV_32F, 1, 0, ksize=3))
    rows = np.arange(line.shape[0], dtype=np.float32)[:, None]
    quarter = line.shape[1] // 4

    def middle(part: np.ndarray) -> float:
        return float((part * rows).sum() / part.sum())

    return (middle(strokes[:, -quarter:]) - middle(strokes[:, :quarter])) / line.shape[0]


@pytest.mark.parametrize("degrees", [-6.0, 6.0])
def test_a_leaning_vertical_code_becomes_a_level_line(degrees):
    """A camera not square to the door sees a vertical code's column lean; the model must get it level."""
    rng = np.random.default_rng(7)
    for _ in range(6):
        code = render_container(rng, "v")
        upright = container_lines(code.image)[0]
        leaning = container_lines(_turned(code.image, degrees))[0]
        assert abs(_lean(upright)) < 0.1
        assert abs(_lean(leaning)) < 0.15, (code.label, _lean(leaning))


def test_the_fast_percentiles_are_numpys_to_the_last_bit():
    """The model was trained on inputs stretched by numpy's percentiles; the faster ones must not move them."""
    from models.vision.preprocess import _percentiles

    rng = np.random.default_rng(11)
    arrays = [rng.integers(0, 256, (32, int(w))).astype(np.float32) for w in rng.integers(1, 300, 200)]
    arrays += [np.full((32, 160), 7.0, np.float32), np.zeros((1, 1), np.float32),
               cv2.GaussianBlur(rng.integers(0, 256, (32, 256)).astype(np.float32), (0, 0), 3)]
    for values in arrays:
        expected = np.percentile(values, (2, 98))
        got = _percentiles(values, (2, 98))
        assert [float(v) for v in got] == [float(v) for v in expected]
        assert all(isinstance(v, np.float64) for v in got)


def test_the_other_layouts_of_an_unclear_crop_are_one_line_and_every_cut():
    crop = np.full((60, 200, 3), 200, np.uint8)
    cv2.putText(crop, "ABCU", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    cv2.putText(crop, "1234567", (10, 55), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    lines = fallback_lines(crop, plate=False)
    assert len(lines) == 1 + len(FALLBACK_CUTS)
    assert lines[0].shape == (60, 200)  # as one line, unchanged in size
    assert all(line.shape[1] > 200 for line in lines[1:])  # two halves side by side: wider than the crop
    assert len(fallback_lines(crop, plate=True)) == 1 + len(FALLBACK_CUTS)


def test_a_vertical_code_has_no_other_layout():
    tall = np.full((400, 50, 3), 200, np.uint8)
    assert fallback_lines(tall, plate=False) == []


def test_two_lines_laid_side_by_side_with_a_gap_keep_both_lines_whole_and_blank_between():
    from models.vision.preprocess import _fit_height, line_split_row, stitch_lines

    rng = np.random.default_rng(5)
    block = np.full((40, 60), 200, np.uint8)
    block[4:16, 20:40] = rng.integers(0, 60, (12, 20))  # the upper line's ink
    block[22:38, 5:55] = rng.integers(0, 60, (16, 50))  # the lower line's ink
    row = line_split_row(block)
    assert 16 <= row <= 22
    seamless, spaced = stitch_lines(block), stitch_lines(block, gap=0.5)
    height = seamless.shape[0]
    blank = round(height * 0.5)
    assert spaced.shape == (height, seamless.shape[1] + blank)
    # the seamless layout's columns are the spaced one's, less the blank of the block's median grey
    left = _fit_height(block[:row], height).shape[1]
    assert (spaced[:, left:left + blank] == int(np.median(block))).all()
    assert np.array_equal(np.hstack([spaced[:, :left], spaced[:, left + blank:]]), seamless)
    assert stitch_lines(block, gap=0.0).shape == seamless.shape
