"""Grammars and the grammar-constrained CTC decoder, on hand-made probability matrices."""

from __future__ import annotations

import numpy as np
import pytest

from devices.protocols.iso6346 import check_digit
from models.vision.charsets import CONTAINER_CHARS, PLATE_CHARS
from models.vision.ctc import beam_search, decode, greedy
from models.vision.formatting import display_container, display_plate
from models.vision.grammar import CN_PLATE, ISO6346, PLATES, VN_PLATE


def probs_for(steps: list[dict[str, float]], charset: str) -> np.ndarray:
    """A (T, classes) matrix: each step gives probabilities for some characters ('' is the blank);
    the rest of the step's mass goes to the blank."""
    out = np.zeros((len(steps), len(charset) + 1), np.float32)
    for t, step in enumerate(steps):
        for char, p in step.items():
            out[t, 0 if char == "" else charset.index(char) + 1] = p
        out[t, 0] += max(0.0, 1.0 - out[t].sum())
    return out


def spelled(text: str, charset: str, sure: float = 0.99) -> list[dict[str, float]]:
    steps: list[dict[str, float]] = []
    for char in text:
        steps += [{char: sure}, {"": 1.0}]
    return steps


@pytest.mark.parametrize("plate", ["29C12345", "29C1234", "51LD12345", "12R00123", "29C123456"])
def test_vietnamese_plates_fit_the_vn_grammar(plate):
    assert VN_PLATE.valid(plate) and PLATES.kind_of(plate) == "VN"


@pytest.mark.parametrize("plate", ["桂A12345", "桂F1234挂", "粤B12345D", "京AD12345"])
def test_chinese_plates_fit_the_cn_grammar(plate):
    assert CN_PLATE.valid(plate) and PLATES.kind_of(plate) == "CN"


@pytest.mark.parametrize("text", ["29I12345", "29C123", "2C12345", "桂A1234O", "桂12345", "CSQU3054383", "22G1"])
def test_other_texts_are_not_plates(text):
    assert not PLATES.valid(text)


def test_iso6346_needs_the_check_digit():
    assert ISO6346.valid("CSQU3054383")
    assert not ISO6346.valid("CSQU3054384")
    assert not ISO6346.valid("CSQ03054383")
    assert ISO6346.viable("CSQU30") and not ISO6346.viable("CSQ0")


def test_a_confident_valid_reading_is_decoded_directly():
    probs = probs_for(spelled("29C12345", PLATE_CHARS), PLATE_CHARS)
    reading = decode(probs, PLATE_CHARS, PLATES)
    assert reading is not None and reading.text == "29C12345" and reading.probability > 0.95


def test_ocr_confusions_are_ranked_away_by_the_grammar():
    # The model prefers O over 0 in the serial and 5 over S in the owner code: the grammar knows better.
    steps = spelled("C", CONTAINER_CHARS) + [{"5": 0.6, "S": 0.39}, {"": 1.0}] + spelled("QU3", CONTAINER_CHARS)
    steps += [{"O": 0.55, "0": 0.44}, {"": 1.0}] + spelled("54383", CONTAINER_CHARS)
    probs = probs_for(steps, CONTAINER_CHARS)
    assert greedy(probs, CONTAINER_CHARS)[0] == "C5QU3O54383"
    reading = decode(probs, CONTAINER_CHARS, ISO6346)
    assert reading is not None and reading.text == "CSQU3054383"
    assert 0.1 < reading.probability < 0.5  # both corrections were the model's second choice


def test_the_check_digit_picks_the_right_alternative():
    # 8 or 3 in the serial: only one gives the painted check digit 3.
    assert check_digit("CSQU305438") == 3 and check_digit("CSQU305488") != 3
    steps = spelled("CSQU3054", CONTAINER_CHARS) + [{"8": 0.6, "3": 0.39}, {"": 1.0}] + spelled("83", CONTAINER_CHARS)
    probs = probs_for(steps, CONTAINER_CHARS)
    assert greedy(probs, CONTAINER_CHARS)[0] == "CSQU3054883"
    reading = decode(probs, CONTAINER_CHARS, ISO6346)
    assert reading is not None and reading.text == "CSQU3054383"


def test_no_valid_alternative_means_no_reading():
    probs = probs_for(spelled("CSQU3054384", CONTAINER_CHARS, sure=0.999), CONTAINER_CHARS)
    assert decode(probs, CONTAINER_CHARS, ISO6346) is None  # check digit fails and nothing else is likely
    assert all(c.valid is False or ISO6346.valid(c.text) for c in beam_search(probs, CONTAINER_CHARS, ISO6346))


def test_repeated_characters_need_a_blank_between_them():
    steps = [{"2": 0.99}, {"2": 0.99}, {"9": 0.99}] + spelled("C12345", PLATE_CHARS)  # "22" without a blank is one 2
    probs = probs_for(steps, PLATE_CHARS)
    assert greedy(probs, PLATE_CHARS)[0] == "29C12345"
    steps = [{"2": 0.99}, {"": 1.0}, {"2": 0.99}, {"": 1.0}, {"9": 0.99}] + spelled("C12345", PLATE_CHARS)
    # 229C12345 fits no grammar; 29C12345 does, but only if the model was wrong about a 2: unlikely.
    reading = decode(probs_for(steps, PLATE_CHARS), PLATE_CHARS, PLATES)
    assert reading is None or reading.probability < 0.05


def test_readings_are_displayed_as_painted():
    assert display_plate("29C12345", "VN") == "29C-123.45"
    assert display_plate("29C1234", "VN") == "29C-1234"
    assert display_plate("桂A12345", "CN") == "桂A·12345"
    assert display_container("CSQU3054383") == "CSQU 305438 3"


def test_viability_is_the_per_template_rule():
    # the bit-mask test must answer as checking each template in turn would
    import random

    def by_template(grammar, prefix):
        return any(len(prefix) <= len(t) and all(c in allowed for c, allowed in zip(prefix, t, strict=False))
                   for t in grammar.templates)

    rng = random.Random(7)
    alphabet = PLATE_CHARS + "OI-x"
    for grammar in (VN_PLATE, CN_PLATE, ISO6346):
        for _ in range(3000):
            template = rng.choice(grammar.templates)
            prefix = "".join(rng.choice(template[i]) if i < len(template) and rng.random() < 0.9
                             else rng.choice(alphabet) for i in range(rng.randint(0, len(template) + 2)))
            assert grammar.viable(prefix) == by_template(grammar, prefix), (grammar.name, prefix)
