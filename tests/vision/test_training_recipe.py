"""The one retraining command runs the whole recipe: every stage on crops of its own seed, each
after the first starting from the one before, and records them all. Needs the `train` extra
(torch, onnx); skipped without it."""

from __future__ import annotations

import json
import subprocess
import sys

import onnxruntime as ort
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.mark.timeout(300)
def test_the_plate_recipe_runs_every_stage_and_records_it(tmp_path):
    out = tmp_path / "plates.onnx"
    result = subprocess.run([sys.executable, "-m", "models.training.plates", "--out", str(out), "--samples", "300",
                             "--epochs", "1", "--held-out", "5", "--cache", str(tmp_path / "cache"), "--threads", "1"],
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(out.with_suffix(".training.json").read_text())
    first, second = record["stages"]
    assert (first["seed"], second["seed"]) == (1, 2)  # the recipe's seeds: fresh crops in stage 2
    assert first["init"] is None and second["init"].endswith("plates-seed1-n300.pt")
    assert second["lr"] < first["lr"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["task"] == "plates"


def test_a_later_stage_alone_needs_its_start(tmp_path):
    result = subprocess.run([sys.executable, "-m", "models.training.plates", "--out", str(tmp_path / "p.onnx"),
                             "--stage", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--init" in result.stderr
