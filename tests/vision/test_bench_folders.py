"""`smartgate bench vision --real-crops DIR`: any folder of labelled real crops is measured, not only ours.

We are checked on real images we do not hold (Vietnamese plates among them): a tester drops a folder of
crops named by their labels, or with a labels file, and gets the same figures as for the shared set.
"""

from __future__ import annotations

import json

import cv2
import pytest

from benchmarks.vision_bench import LabelsError, _real_sets, crops_kind, labelled_crops
from edge.cli import main
from models.training.dataset import CALIBRATION_SEED, container_sample, plate_sample
from models.vision.reader import VisionReader


def _write(path, image) -> None:
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(data.tobytes())


def test_labels_come_from_file_names_as_plates_are_written(tmp_path):
    for name in ("29C-123.45.jpg", "59-P1 123.45.PNG", "皖A12345.jpeg"):
        _write(tmp_path / name, plate_sample(CALIBRATION_SEED, 0, "vn1").crop)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [label for _, label in labelled_crops(tmp_path)] == ["29C-123.45", "59-P1 123.45", "皖A12345"]


def test_a_labels_file_labels_two_crops_of_one_plate_and_labels_a_file_name_cannot_hold(tmp_path):
    (tmp_path / "labels.csv").write_text("file,label\na.jpg,51F-123.45\nb.jpg,51F-123.45\nc.jpg,29-MĐ1/123.45\n")
    assert [(path.name, label) for path, label in labelled_crops(tmp_path)] == [
        ("a.jpg", "51F-123.45"), ("b.jpg", "51F-123.45"), ("c.jpg", "29-MĐ1/123.45")]
    other = tmp_path / "jsonl"
    other.mkdir()
    (other / "labels.jsonl").write_text(json.dumps({"file": "x.png", "label": "CSQU3054383"}) + "\n\n")
    assert [(path.name, label) for path, label in labelled_crops(other)] == [("x.png", "CSQU3054383")]


@pytest.mark.parametrize("make, said", [
    (lambda folder: None, "no such folder"),
    (lambda folder: folder.mkdir(), "no labelled crops"),
    (lambda folder: (folder.mkdir(), (folder / "labels.csv").write_text("a.jpg\n")), "labels.csv:1: want `file,label`"),
    (lambda folder: (folder.mkdir(), (folder / "labels.jsonl").write_text('{"file": "a.jpg"}\n')),
     "labels.jsonl:1: want"),
])
def test_a_folder_that_cannot_be_measured_is_named_with_the_fix(tmp_path, make, said):
    folder = tmp_path / "crops"
    make(folder)
    with pytest.raises(LabelsError, match=said):
        labelled_crops(folder)


def test_the_kind_of_a_folder_follows_its_labels():
    assert crops_kind(["CSQU3054383", "MSKU 360516 1"]) == "containers"
    assert crops_kind(["29C-123.45", "皖A12345", "CSQU3054383"]) == "plates"


def test_the_cli_refuses_a_missing_folder_before_reading_anything(tmp_path, capsys):
    assert main(["bench", "vision", "--only", "real", "--real-crops", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder of real crops" in capsys.readouterr().err


def test_each_folder_is_reported_by_name_with_each_country_apart(tmp_path, monkeypatch):
    plates = tmp_path / "vn-real"
    plates.mkdir()
    labels = []
    for index, kind in enumerate(("vn1", "vn2", "cn1")):
        sample = plate_sample(CALIBRATION_SEED, index, kind)
        _write(plates / f"{sample.label}.png", sample.crop)
        labels.append(sample.label)
    (plates / "broken.jpg").write_bytes(b"not a jpeg")  # counted apart, never read as a plate
    codes = tmp_path / "doors"
    codes.mkdir()
    sample = container_sample(CALIBRATION_SEED, 0, "h1")
    _write(codes / f"{sample.label}.png", sample.crop)
    shared = tmp_path / "cn-real"  # the shared set, empty here: only the folders given are read
    shared.mkdir()
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "labels.jsonl").write_text("")
    monkeypatch.setenv("SMARTGATE_REAL_CROPS", str(shared))

    real = _real_sets(VisionReader(threads=1), None, with_baseline=False, crops_dirs=[plates, codes, plates],
                      frames_dir=frames)

    assert set(real["crops"]) == {"vn-real", "doors"}  # a folder given twice is read once
    vn = real["crops"]["vn-real"]
    assert vn["kind"] == "plates" and vn["n"] == 3 and vn["unreadable_files"] == ["broken.jpg"]
    assert {name: group["n"] for name, group in vn["by_group"].items()} == {"VN": 2, "CN": 1}
    for figures in (vn["ours"], *(group["ours"] for group in vn["by_group"].values())):
        assert figures["exact_match"] + figures["wrong_reading"] + figures["no_reading"] == pytest.approx(1.0)
        assert figures["cpu_ms"]["n"] == figures["n"]
    assert vn["ours"]["exact_match"] == pytest.approx(
        sum(g["ours"]["exact_match"] * g["n"] for g in vn["by_group"].values()) / 3, abs=1e-3)
    door = real["crops"]["doors"]
    assert door["kind"] == "containers" and door["n"] == 1 and "by_group" not in door
    assert door["ours"]["exact_match"] == 1.0  # a clean synthetic code: read as its label, not as a plate


def test_the_realistic_synthetic_plates_are_reported_per_class_apart_from_the_real_sets():
    from benchmarks.vision_bench import _realistic_sets

    figures = _realistic_sets(VisionReader(threads=1), per_class=3)
    assert "not real" in figures["note"] and figures["per_class"] == 3
    for kind in ("vn1", "vn2", "cn1", "cn2"):
        for who in ("ours", "ours_fast_alone"):
            tally = figures[kind][who]
            assert tally["n"] == 3 and tally["cpu_ms"]["n"] == 3
            assert tally["exact_match"] + tally["wrong_reading"] + tally["no_reading"] == pytest.approx(1.0)
