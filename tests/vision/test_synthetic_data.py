"""The synthetic generators: seeded and reproducible, and every label fits its grammar."""

from __future__ import annotations

import numpy as np

from devices.protocols.iso6346 import is_valid_container
from models.training.container_synth import render_container
from models.training.dataset import HELD_OUT_SEED, held_out, plate_sample
from models.training.glyphs import glyph_mask
from models.training.plate_synth import CN_SERIAL, DIGITS, VN_SERIES, plate_parts, render_plate
from models.training.scenes import scene
from models.vision.grammar import CN_PLATE, VN_PLATE


def test_the_same_seed_gives_the_same_images():
    a, b = plate_sample(7, 3), plate_sample(7, 3)
    assert a.label == b.label and np.array_equal(a.crop, b.crop)
    assert not np.array_equal(plate_sample(7, 4).crop, a.crop)
    s1, s2 = scene(5, 1, "rear"), scene(5, 1, "rear")
    assert s1.truths == s2.truths and np.array_equal(s1.frame, s2.frame)


def test_every_plate_label_fits_its_countrys_grammar():
    rng = np.random.default_rng(11)
    for _ in range(300):
        plate = render_plate(rng)
        grammar = VN_PLATE if plate.kind.startswith("vn") else CN_PLATE
        assert grammar.valid(plate.label), plate.label
        assert plate.image.dtype == np.uint8 and plate.image.ndim == 3


def test_every_container_label_has_a_valid_check_digit():
    rng = np.random.default_rng(12)
    for _ in range(200):
        code = render_container(rng)
        assert is_valid_container(code.label), code.label
        if code.layout == "v":
            assert code.image.shape[0] > 2 * code.image.shape[1]  # painted downwards


def test_a_given_plate_is_drawn_as_asked():
    rng = np.random.default_rng(1)
    assert render_plate(rng, label="29C12345").label == "29C12345"
    assert render_plate(rng, label="桂F1234挂", lines=2).kind == "cn2"
    assert plate_parts("51LD12345") == ("VN", "51LD", "123.45")


def test_held_out_sets_are_fixed_and_apart_from_training():
    first = held_out("plates", "vn1", 5)
    again = held_out("plates", "vn1", 5)
    assert [s.label for s in first] == [s.label for s in again]
    assert all(s.kind == "vn1" for s in first)
    assert HELD_OUT_SEED != 1  # the training seed


def test_recording_the_damage_leaves_the_crop_as_it_was():
    """The bench's per-harm figures must be about the very crops the held-out set always held."""
    from models.training.augment import DAMAGE, augment_crop

    image = render_plate(np.random.default_rng(3), label="29C12345").image
    seen: set[str] = set()
    for index in range(40):
        damage: list[str] = []
        recorded = augment_crop(image, np.random.default_rng([9, index]), damage=damage)
        plain = augment_crop(image, np.random.default_rng([9, index]))
        assert np.array_equal(recorded, plain)
        assert set(damage) <= set(DAMAGE)
        seen.update(damage)
    assert {"night", "glare", "blur"} <= seen  # forty crops meet the common harms
    sample = held_out("containers", "v", 1)[0]
    assert sample.damage == held_out("containers", "v", 1)[0].damage


def test_the_drawn_plate_font_draws_every_plate_character_and_no_two_alike():
    import cv2

    from models.training import plate_font

    chars = sorted(set(CN_SERIAL + VN_SERIES + DIGITS))
    for font in plate_font.FONTS:
        masks = {}
        for char in chars:
            ink = glyph_mask(char, font)
            assert ink.shape[0] > 2 * ink.shape[1] if char == "1" else ink.shape[0] < 3 * ink.shape[1], char
            masks[char] = cv2.resize(ink, (16, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        for i, a in enumerate(chars):
            for b in chars[i + 1:]:
                # among them the pairs desktop fonts made the reader confuse on real plates: 3/5, G/6, 1/7
                assert np.abs(masks[a] - masks[b]).mean() > 0.06, (a, b)  # E and F: 0.08


def _clean_code_with_maps():
    from models.training.container_synth import render_container

    code = render_container(np.random.default_rng(21), "h1")
    return code, np.ones(code.image.shape[:2], np.uint8)


def test_a_clean_painted_code_is_legible_in_every_character():
    from models.training.legibility import LEGIBLE_DPRIME, character_dprimes

    code, surface = _clean_code_with_maps()
    values = character_dprimes(code.image, code.ink, code.cells, code.cells, surface)
    assert len(values) == 11  # one per character of the number
    assert min(values) > 3 * LEGIBLE_DPRIME


def test_glare_over_one_character_makes_the_crop_illegible_and_only_that_character():
    from models.training.legibility import LEGIBLE_DPRIME, character_dprimes, legibility

    code, surface = _clean_code_with_maps()
    washed = code.image.copy()
    ys, xs = np.nonzero(code.cells == 5)
    pad = (ys.max() - ys.min()) // 4
    washed[ys.min() - pad:ys.max() + pad + 1, xs.min() - pad:xs.max() + pad + 1] = 255  # a lamp's spot on the U
    values = character_dprimes(washed, code.ink, code.cells, code.cells, surface)
    assert values[4] < LEGIBLE_DPRIME
    assert all(v > LEGIBLE_DPRIME for i, v in enumerate(values) if i != 4)
    assert legibility(washed, code.ink, code.cells, code.cells, surface) < LEGIBLE_DPRIME


def test_a_character_the_crop_cut_off_is_not_legible():
    from models.training.legibility import legibility

    code, surface = _clean_code_with_maps()
    first = np.nonzero(code.cells == 1)[1]
    cut = slice(int(first.min() + 0.7 * (first.max() - first.min())), None)  # most of the first letter gone
    assert legibility(code.image[:, cut], code.ink[:, cut], code.cells[:, cut], code.cells, surface[:, cut]) == 0.0


def test_night_noise_that_buries_the_ink_makes_a_crop_illegible():
    from models.training.legibility import LEGIBLE_DPRIME, legibility

    code, surface = _clean_code_with_maps()
    dark = code.image.astype(np.float32) * 0.15 + np.random.default_rng(2).normal(0, 25, code.image.shape)
    dark = np.clip(dark, 0, 255).astype(np.uint8)
    assert legibility(dark, code.ink, code.cells, code.cells, surface) < LEGIBLE_DPRIME


def test_judging_legibility_leaves_the_held_out_crops_as_they_always_were():
    """Samples are damaged with the very draws `augment_crop` makes, so the held-out sets are unchanged."""
    from models.training.augment import augment_crop
    from models.training.dataset import container_sample

    for index in range(12):
        sample = plate_sample(HELD_OUT_SEED, index)
        rng = np.random.default_rng([HELD_OUT_SEED, index])
        plate = render_plate(rng)
        assert np.array_equal(sample.crop, augment_crop(plate.image, rng))
        code_sample = container_sample(HELD_OUT_SEED, index)
        rng = np.random.default_rng([HELD_OUT_SEED, index])
        assert np.array_equal(code_sample.crop, augment_crop(render_container(rng).image, rng))
    samples = held_out("containers", "h1", 60)
    assert any(s.legible for s in samples) and any(not s.legible for s in samples)


def test_the_training_cache_key_covers_every_module_that_renders_a_crop():
    from models.training.sources import PROJECT, renderer_sources

    sources = {path.relative_to(PROJECT).as_posix() for path in renderer_sources()}
    # the renderers, the damage and the legibility measure, and the grammars in devices/ they draw from
    assert {"models/synth/plate_synth.py", "models/synth/container_synth.py", "models/synth/augment.py",
            "models/synth/legibility.py", "models/vision/preprocess.py", "devices/protocols/plates.py",
            "devices/protocols/iso6346.py"} <= sources
    # code that does not change a crop does not throw a rendered set away
    assert not sources & {"models/training/train.py", "models/training/card.py", "models/training/net.py"}


def test_held_out_labels_rendered_in_parallel_are_the_held_out_sets_labels():
    from models.training.dataset import held_out_labels

    expected = {s.label for kind in ("h1", "v") for s in held_out("containers", kind, 12)}
    assert held_out_labels("containers", ("h1", "v"), 12, workers=2) == expected


def test_rendering_stopped_by_its_deadline_keeps_the_crops_a_full_render_starts_with():
    import time

    from models.training.dataset import training_set

    # a deadline already past: the first chunk is still waited for, and no chunk after one unfinished
    cut, cut_labels, legibility, rendered = training_set("plates", 9, 2000, workers=1, chunk=10,
                                                         deadline=time.monotonic() - 1)
    assert 10 <= rendered < 2000 and rendered % 10 == 0
    assert len(cut) == len(cut_labels) == len(legibility) == rendered
    full, full_labels, _, all_rendered = training_set("plates", 9, rendered, workers=2, chunk=10)
    assert all_rendered == rendered and cut_labels == full_labels and np.array_equal(cut, full)
    # held-out labels are dropped, and counted as rendered
    dropped, dropped_labels, _, again = training_set("plates", 9, rendered, workers=2, chunk=10,
                                                     exclude={full_labels[3]})
    assert again == rendered and full_labels[3] not in dropped_labels
    assert len(dropped) == len(dropped_labels) == rendered - full_labels.count(full_labels[3])
