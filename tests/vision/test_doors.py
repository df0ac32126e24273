"""The door reader's rules on small constructed inputs: how detected boxes are grouped into codes, a
column's pieces read at the column's width, weight-table rows never read as codes, codes beside
their size/type code ranked first.

The boxes are built by hand (no detector); the two tests that read use frames drawn here with
OpenCV and the strong recogniser from the rapidocr_onnxruntime wheel (see test_cascade.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from devices.protocols.iso6346 import check_digit
from models.vision import doors
from models.vision.doors import Box, _groups, _mark_weight_rows, _one_width
from models.vision.reader import VisionReader


def _code(first_ten: str) -> str:
    return first_ten + str(check_digit(first_ten))


@pytest.fixture(scope="module")
def reader() -> VisionReader:
    return VisionReader(threads=1)


def test_words_of_a_line_and_an_owner_code_over_its_serial_are_grouped_in_reading_order():
    owner, serial, digit = Box(100, 100, 160, 40), Box(290, 100, 240, 40), Box(550, 100, 40, 40)
    top, below = Box(1000, 100, 160, 40), Box(1000, 150, 260, 40)
    far = Box(100, 600, 200, 40)  # a line far below: another piece of text
    groups = [[id(b) for b in g] for g in _groups([owner, serial, digit, top, below, far])]
    assert [id(owner), id(serial), id(digit)] in groups  # the line, cut into three words
    assert [id(top), id(below)] in groups  # owner code over serial
    assert [id(serial), id(owner)] not in groups  # never against reading order
    assert not any(id(far) in g and len(g) > 1 for g in groups)


def test_the_pieces_of_one_column_take_the_columns_width_and_a_column_beside_keeps_its_own():
    owner = Box(860, 216, 29, 200, vertical=True)  # narrow letters boxed narrowly
    serial = Box(836, 450, 47, 404, vertical=True)
    size_type = Box(1008, 185, 48, 246, vertical=True)  # 22G1 painted in a column beside it
    _one_width([owner, serial, size_type])
    assert (owner.x, owner.w) == (serial.x, serial.w) == (836, 53)
    assert (size_type.x, size_type.w) == (1008, 48)
    groups = [[id(b) for b in g] for g in _groups([owner, serial, size_type])]
    assert [id(owner), id(serial)] in groups and not any(id(size_type) in g and len(g) > 1 for g in groups)


def test_figures_and_units_on_a_weight_row_are_weights_and_the_code_above_is_not():
    code = Box(300, 100, 400, 50, text="MSKU 304805 3")
    label = Box(300, 400, 260, 40, text="MAX GROSS", weight=True)
    figure = Box(600, 400, 180, 40, text="30480")  # read without its separator: no weight by itself
    unit = Box(800, 400, 70, 40, text="KG")
    pounds = Box(600, 450, 180, 40, text="67200")  # the next row, with no unit read: not a weight
    for box in (unit, code, figure, pounds):
        box.weight = bool(doors.WEIGHT.search(box.text))
    _mark_weight_rows([code, label, figure, unit, pounds])
    assert figure.weight and unit.weight and label.weight
    assert not code.weight and not pounds.weight


def _door(lines: list[tuple[str, tuple[int, int], float]]) -> np.ndarray:
    frame = np.full((1080, 1920, 3), (40, 40, 120), np.uint8)
    for text, (x, y), scale in lines:
        cv2.putText(frame, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), max(2, int(scale * 2.5)),
                    cv2.LINE_AA)
    return frame


def test_a_code_beside_its_size_type_code_ranks_above_one_without(reader):
    beside, alone = _code("TGHU073732"), _code("MSKU360516")
    frame = _door([(f"{alone[:4]} {alone[4:10]} {alone[10]}", (150, 800), 2.2),
                   (f"{beside[:4]} {beside[4:10]} {beside[10]}", (1000, 300), 2.2), ("22G1", (1000, 380), 2.2)])
    codes = reader.doors.read(frame)
    assert codes[0].text == beside and codes[0].size_type_near
    other = [c for c in codes if c.text == alone]
    assert other and not other[0].size_type_near and other[0].confidence < codes[0].confidence


def _column(code: str) -> tuple[np.ndarray, int, int]:
    """A frame with `code` painted one character per row; the first and last rows of its ink."""
    frame = np.full((1080, 1920, 3), (40, 40, 120), np.uint8)
    for i, char in enumerate(code):
        cv2.putText(frame, char, (900, 194 + i * 64), cv2.FONT_HERSHEY_SIMPLEX, 1.8, (235, 235, 235), 4, cv2.LINE_AA)
    ink = np.flatnonzero((frame[:, 880:980, 0] > 150).any(axis=1))
    return frame, int(ink[0]), int(ink[-1])


def test_a_column_boxed_below_its_first_letters_bar_is_read_whole(reader):
    code = _code("TEMU052462")
    frame, first, last = _column(code)
    below_bar = first + 20  # the detector's box starts well under the T's bar
    column = Box(895, below_bar, 50, last - below_bar, vertical=True)
    candidate = reader.doors._decode([reader.doors._look(frame, column)])
    assert candidate is not None and candidate.text == code


def test_a_letter_the_columns_crop_cuts_is_left_out_not_misread(reader, monkeypatch):
    # Cut under its bar, a T is an I, and IEMU0524620 is as valid as TEMU0524620: the cut glyph is
    # dropped, and the nine characters left are no reading at all.
    code, misread = _code("TEMU052462"), "IEMU0524620"
    assert _code(misread[:10]) == misread
    frame, first, last = _column(code)
    monkeypatch.setattr(doors, "COLUMN_MARGIN", 0.1)  # a margin too small to reach the bar
    column = Box(895, first + 14, 50, last - first - 14, vertical=True)
    assert reader.doors._decode([reader.doors._look(frame, column)]) is None
    monkeypatch.setattr(doors, "WHOLE_ONLY", False)  # cut glyphs read as they are: the misreading
    candidate = reader.doors._decode([reader.doors._look(frame, column)])
    assert candidate is not None and candidate.text == misread


def test_the_bench_measures_the_real_frames_alone_when_asked(tmp_path, monkeypatch):
    import json

    from benchmarks.vision_bench import run_vision_bench

    frames = tmp_path / "real-frames"
    (frames / "images").mkdir(parents=True)
    code = _code("TGHU073732")
    cv2.imwrite(str(frames / "images" / "a.jpg"), _door([(f"{code[:4]} {code[4:10]} {code[10]}", (800, 400), 2.4),
                                                       ("22G1", (800, 480), 2.4)]))
    (frames / "labels.jsonl").write_text(json.dumps({"file": "images/a.jpg", "view": "AS", "codes": [
        {"code": code, "box": [780, 330, 1500, 420], "layout": "one-line"}]}) + "\n")
    monkeypatch.setenv("SMARTGATE_REAL_FRAMES", str(frames))
    figures = run_vision_bench(with_baseline=False, only="real-frames")
    assert set(figures["real"]) == {"note", "container_frames"}
    ours = figures["real"]["container_frames"]["ours"]
    assert ours["n"] == 1 and ours["hit_rate"] == 1.0 and ours["frames_with_other_reading"] == 0
    with pytest.raises(ValueError, match="--only"):
        run_vision_bench(only="frames")
