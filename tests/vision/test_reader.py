"""The committed models read generated plates and container codes end to end, on crops and whole
frames, and bad input of any kind is "no reading"."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import models
from devices.protocols.iso6346 import is_valid_container
from models.training import plate_font
from models.training.container_synth import ContainerSample, door_background, paint, render_code_block
from models.training.dataset import container_sample, plate_sample
from models.training.fonts import installed_fonts
from models.training.glyphs import draw_line
from models.training.scenes import container_at_gate, scene
from models.vision.reader import VisionReader

SEED = 424242  # neither the training seed nor the held-out one
@pytest.fixture(scope="module")
def reader() -> VisionReader:
    return VisionReader(threads=1)


@pytest.mark.parametrize("kind", ["vn1", "vn2", "cn1", "cn2"])
def test_generated_plates_are_read_exactly(reader, kind):
    samples = [plate_sample(SEED, i, kind) for i in range(20)]
    readings = [reader.read_plate_crop(s.crop) for s in samples]
    right = sum(r is not None and r.text == s.label for r, s in zip(readings, samples, strict=True))
    assert right >= 19, [(s.label, r and r.text) for r, s in zip(readings, samples, strict=True)]
    first = next(r for r in readings if r is not None)
    assert first.kind == ("VN" if kind.startswith("vn") else "CN") and 0 < first.confidence <= 1


@pytest.mark.parametrize("layout", ["h1", "h2", "v"])
def test_generated_container_codes_are_read_exactly(reader, layout):
    samples = [container_sample(SEED, i, layout) for i in range(20)]
    readings = [reader.read_container_crop(s.crop) for s in samples]
    right = sum(r is not None and r.text == s.label for r, s in zip(readings, samples, strict=True))
    assert right >= 19, [(s.label, r and r.text) for r, s in zip(readings, samples, strict=True)]
    assert all(r is None or is_valid_container(r.text) for r in readings)


def test_plates_lettered_as_real_chinese_plates_are_read(reader):
    # GA 36 lettering: a bare-bar 1, a flat-topped 3 and a spurred G, the glyphs a desktop-font-only
    # reader read as nothing, 5 or 6 (it got two of these eight).
    labels = ["皖A13G31", "浙G31133", "桂A3G113", "苏E1G333", "皖A31G13", "豫K33G11", "鲁R1313G", "桂F13G33"]
    cjk = installed_fonts().cjk[0]
    right = []
    for i, label in enumerate(labels):
        plate = np.empty((48, 188, 3), np.uint8)
        plate[:] = (160, 70, 10)  # blue, white lettering
        draw_line(plate, f"{label[:2]}·{label[2:]}", (8, 8, 172, 32), (plate_font.FONTS[i % 2], cjk),
                  (245, 245, 245), np.random.default_rng(i), label[0])
        reading = reader.read_plate_crop(cv2.GaussianBlur(plate, (0, 0), 0.8))
        right.append(reading is not None and reading.text == label)
    assert sum(right) >= 7, list(zip(labels, right, strict=True))


def _painted(code: str, layout: str, seed: int) -> ContainerSample:
    rng = np.random.default_rng(seed)
    font = installed_fonts().latin[0]
    mask, _ = render_code_block(rng, code, layout, 36, font)
    door = door_background(rng, mask.shape[1] + 30, mask.shape[0] + 20)
    paint(door, mask, 15, 10, (240, 240, 240))
    return ContainerSample(door, code, layout)


def test_a_code_painted_with_a_wrong_check_digit_is_never_reported_as_that_code(reader):
    wrong = "CSQU3054384"  # the right check digit is 3
    assert not is_valid_container(wrong)
    for seed, layout in enumerate(["h1", "h2", "v"] * 3):
        reading = reader.read_container_crop(_painted(wrong, layout, seed).image)
        assert reading is None or (reading.text != wrong and is_valid_container(reading.text))
    right = reader.read_container_crop(_painted("CSQU3054383", "h1", 1).image)
    assert right is not None and right.text == "CSQU3054383" and right.display == "CSQU 305438 3"


def test_a_whole_frame_gives_the_plate_and_the_container_number_not_the_size_code(reader):
    found_plate = found_code = 0
    for index in range(6):
        frame_scene = scene(SEED, index, "rear")
        truth = {t.kind: t for t in frame_scene.truths}
        plates = reader.read_plates(frame_scene.frame)
        codes = reader.read_container_codes(frame_scene.frame)
        assert all(is_valid_container(c.text) for c in codes)
        assert not any(c.text[:4].isdigit() for c in codes)  # 22G1, 45G1: never taken for the code
        found_code += truth["container"].label in {c.text for c in codes}
        if "plate" in truth:
            found_plate += truth["plate"].label in {p.text for p in plates}
            hit = next((p for p in plates if p.text == truth["plate"].label), None)
            if hit is not None:
                x, y, w, h = hit.box
                tx, ty, tw, th = truth["plate"].box
                assert x <= tx + tw and tx <= x + w and y <= ty + th and ty <= y + h  # the box is on the plate
    assert found_code >= 5 and found_plate >= 4


def test_two_line_codes_on_doors_in_whole_frames_are_found_and_read(reader):
    # Owner codes of barred letters (A, E, H, Z) used to fall apart into their top and bottom
    # halves, which the localiser then stacked with each other instead of with the serial: 20 of
    # these 24 doors were read.
    doors = [s for s in (scene(4242, i, "rear") for i in range(1, 200, 2))
             if any(t.kind == "container" and t.layout == "h2" for t in s.truths)][:24]
    read = [next(t.label for t in s.truths if t.kind == "container") in
            {r.text for r in reader.read_container_codes(s.frame)} for s in doors]
    assert len(doors) == 24 and sum(read) >= 23, read


def test_a_code_line_with_a_door_rib_fused_to_its_owner_code_is_read_whole(reader):
    # The rib makes the owner code's blob tall; joined with it, the line came out three lines high
    # and was read as MAEU6802802 (owner code right, serial made up, check digit valid by chance).
    door = scene(777, 117, "rear")
    truth = next(t.label for t in door.truths if t.kind == "container")
    assert truth == "MAEU9502352"
    assert [r.text for r in reader.read_container_codes(door.frame)] == [truth]


# Crops whose gap between their two lines the row-energy cut misses (val set seed 77770000 + class
# number): a code on corrugated steel whose ribs hide the gap, a code painted low on a wide panel
# (the least energy is in the margin above it), and plates the cut read nothing sure in.
MISCUT = [("containers", 77770001, 355, "h2"), ("containers", 77770001, 551, "h2"),
          ("plates", 77770003, 158, "vn2"), ("plates", 77770001, 164, "cn2")]


@pytest.mark.parametrize(("task", "seed", "index", "kind"), MISCUT)
def test_a_two_line_crop_cut_at_the_wrong_row_is_read_laid_out_another_way(reader, monkeypatch,
                                                                            task, seed, index, kind):
    from models.vision import preprocess

    sample = (plate_sample if task == "plates" else container_sample)(seed, index, kind)
    read = reader.read_plate_crop if task == "plates" else reader.read_container_crop
    reading = read(sample.crop)
    assert reading is not None and reading.text == sample.label
    # the other layouts are what read it: cut only the usual way, it is not read right
    monkeypatch.setattr(preprocess, "fallback_lines", lambda crop, plate: [])
    usual = read(sample.crop)
    assert usual is None or usual.text != sample.label


def test_two_containers_side_by_side_in_one_frame_are_both_read(reader):
    # Two 20-foot boxes on one trailer: one reading per place, not one per frame.
    left = container_at_gate("CSQU3054383", "h1", seed=1)
    right = container_at_gate("MSKU1234565", "h1", seed=2)
    frame = np.hstack([left.frame, right.frame])
    assert sorted(r.text for r in reader.read_container_codes(frame)) == ["CSQU3054383", "MSKU1234565"]


def test_without_the_container_model_codes_are_no_reading_and_plates_still_read(reader):
    if reader.containers is not None:
        pytest.skip("the container model is installed")
    frame_scene = scene(SEED, 0, "rear")
    assert reader.read_container_codes(frame_scene.frame) == []
    assert reader.read_container_crop(container_sample(SEED, 0, "h1").crop) is None
    plate = next(t for t in frame_scene.truths if t.kind == "plate")
    assert plate.label in {r.text for r in reader.read_plates(frame_scene.frame)}


def test_a_front_frame_gives_its_plate(reader):
    hits = 0
    for index in range(6):
        frame_scene = scene(SEED + 1, index, "front")
        texts = {r.text for r in reader.read_plates(frame_scene.frame)}
        hits += frame_scene.truths[0].label in texts
    assert hits >= 5


@pytest.mark.parametrize("bad", [
    np.zeros((0, 0, 3), np.uint8),                    # empty
    np.zeros((4, 7, 3), np.uint8),                    # tiny
    np.full((1080, 1920, 3), 128, np.uint8),          # grey card
    np.full((720, 1280), 0, np.uint8),                # black, one channel
    b"\xff\xd8\xff\xe0 not really a jpeg",            # corrupt
    b"",                                              # no bytes
    np.random.default_rng(0).integers(0, 255, (6000, 8000, 3), dtype=np.uint8),  # huge noise
    np.zeros((10, 10, 10, 3), np.uint8),              # wrong shape
    np.array([["a", "b"], ["c", "d"]]),               # not numbers
    None,
    "not an image",
])
def test_bad_input_is_no_reading_never_an_exception(reader, bad):
    assert reader.read_plates(bad) == []
    assert reader.read_container_codes(bad) == []
    if not (isinstance(bad, np.ndarray) and bad.size > 10**6):
        assert reader.read_plate_crop(bad) is None
        assert reader.read_container_crop(bad) is None


def test_encoded_jpeg_bytes_and_float_frames_are_read_like_arrays(reader):
    sample = plate_sample(SEED, 3, "vn1")
    ok, jpeg = cv2.imencode(".jpg", sample.crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    as_bytes = reader.read_plate_crop(jpeg.tobytes())
    as_float = reader.read_plate_crop(sample.crop.astype(np.float32) / 255.0)
    assert as_bytes is not None and as_bytes.text == sample.label
    assert as_float is not None and as_float.text == sample.label


def test_the_package_api_reads_frames_with_a_configured_thread_count():
    models.configure(threads=2)
    try:
        frame_scene = scene(SEED, 2, "front")
        readings = models.read_plates(frame_scene.frame)
        assert models.reader().threads == 2
        assert frame_scene.truths[0].label in {r.text for r in readings}
        assert models.read_container_codes(np.zeros((50, 50, 3), np.uint8)) == []
    finally:
        models.configure(threads=1)


def test_second_looks_read_more_hard_crops_without_more_wrong_numbers():
    """Crops the first look leaves unsure (night, noise, a loose box) are read three more ways and
    the looks vote: more vertical codes come out right, and no more come out wrong."""
    from models.training.dataset import held_out

    samples = held_out("containers", "v", 300)
    # the fast models' own looks (with the strong recogniser, the cascade reads the unsure crops instead)
    plain, looking = VisionReader(second_looks=False, strong=False), VisionReader(strong=False)

    def tally(reader: VisionReader) -> tuple[int, int]:
        readings = [reader.read_container_crop(s.crop) for s in samples]
        right = sum(r is not None and r.text == s.label for r, s in zip(readings, samples, strict=True))
        return right, sum(r is not None for r in readings) - right

    (plain_right, plain_wrong), (right, wrong) = tally(plain), tally(looking)
    assert right > plain_right
    assert wrong <= plain_wrong


def test_a_second_model_of_the_wrong_kind_is_refused_naming_its_file():
    from models.vision.reader import CONTAINER_MODEL
    from models.vision.recogniser import ModelError

    with pytest.raises(ModelError, match="container_reader.onnx"):
        VisionReader(plate_second=CONTAINER_MODEL)


def test_without_second_models_crops_are_read_by_the_first_alone(tmp_path):
    alone = VisionReader(plate_second=tmp_path / "missing.onnx", container_second=None)
    assert alone.plate_second is None and alone.container_second is None
    samples = [plate_sample(SEED, i, "cn1") for i in range(10)]
    right = sum((r := alone.read_plate_crop(s.crop)) is not None and r.text == s.label for s in samples)
    assert right >= 9


def test_a_second_opinion_identical_to_the_first_changes_no_reading():
    """The second opinion averages two models' probabilities on the crops the first is unsure of;
    with the same model twice the average is the first model's own, so every reading, right or
    wrong, confidence included, must come out as it does with no second model."""
    from models.training.dataset import held_out
    from models.vision.reader import CONTAINER_MODEL, PLATE_MODEL

    alone = VisionReader(plate_second=None, container_second=None)
    twice = VisionReader(plate_second=PLATE_MODEL, container_second=CONTAINER_MODEL,
                         plate_third=None, container_third=None)
    plates = held_out("plates", "cn2", 150)
    codes = held_out("containers", "v", 100)
    assert [alone.read_plate_crop(s.crop) for s in plates] == [twice.read_plate_crop(s.crop) for s in plates]
    assert ([alone.read_container_crop(s.crop) for s in codes]
            == [twice.read_container_crop(s.crop) for s in codes])


def test_three_identical_opinions_read_what_the_first_model_reads_alone():
    """With a third opinion the average is over all three models: the same model three times must
    give the first model's own readings (confidences to rounding, as a sum of three is not exact)."""
    from models.training.dataset import held_out
    from models.vision.reader import CONTAINER_MODEL, PLATE_MODEL

    alone = VisionReader(plate_second=None, container_second=None)
    thrice = VisionReader(plate_second=PLATE_MODEL, container_second=CONTAINER_MODEL,
                          plate_third=PLATE_MODEL, container_third=CONTAINER_MODEL)
    assert thrice.container_third is not None and thrice.plate_third is not None
    for read_alone, read_thrice, samples in (
            (alone.read_plate_crop, thrice.read_plate_crop, held_out("plates", "vn2", 100)),
            (alone.read_container_crop, thrice.read_container_crop, held_out("containers", "h2", 100))):
        for sample in samples:
            one, three = read_alone(sample.crop), read_thrice(sample.crop)
            assert (one and one.text) == (three and three.text)
            if one is not None:
                assert three.confidence == pytest.approx(one.confidence, abs=2e-3)


def test_a_third_opinion_is_asked_only_beside_a_second_and_must_be_of_its_kind():
    from models.vision.reader import CONTAINER_MODEL, PLATE_MODEL
    from models.vision.recogniser import ModelError

    lonely = VisionReader(plate_second=None, plate_third=PLATE_MODEL,
                          container_second=None, container_third=CONTAINER_MODEL)
    assert lonely.plate_third is None and lonely.container_third is None
    with pytest.raises(ModelError, match="plate_reader.onnx"):
        VisionReader(container_second=CONTAINER_MODEL, container_third=PLATE_MODEL)


def test_a_corrupt_second_model_file_fails_at_start_naming_the_file_and_the_fix(tmp_path):
    from models.vision.recogniser import ModelError

    broken = tmp_path / "plate_reader_second.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match=r"plate_reader_second\.onnx.*models\.training\.plates"):
        VisionReader(plate_second=broken)
