"""Container numbers and number plates as the gate's cameras and seals report them (shared/domain.md)."""

from __future__ import annotations

import string

import pytest

from devices.protocols.iso6346 import check_digit, is_valid_container, normalise_container
from devices.protocols.plates import normalise_plate, plate_country

VALID_CONTAINERS = ["CSQU3054383", "MWCU6059784", "ABCU1234560"]
OCR_CONFUSIONS = [("O", "0"), ("I", "1"), ("S", "5"), ("B", "8"), ("Z", "2"), ("G", "6")]


def single_substitutions(number: str) -> list[str]:
    """Every number one character away that still has the ISO 6346 shape."""
    variants = []
    for position, char in enumerate(number):
        alphabet = string.ascii_uppercase if position < 3 else "UJZ" if position == 3 else string.digits
        variants += [number[:position] + other + number[position + 1:] for other in alphabet if other != char]
    return variants


# ------------------------------------------------------------------ ISO 6346 check digits


@pytest.mark.parametrize(("first_ten", "digit"), [("CSQU305438", 3), ("MWCU605978", 4), ("ABCU123456", 0)])
def test_check_digits_from_domain_md(first_ten, digit):
    assert check_digit(first_ten) == digit
    assert check_digit(first_ten.lower()) == digit


@pytest.mark.parametrize("bad", ["CSQU30543", "CSQU3054383", "CSQU30543!", "CSQU30543É"])
def test_check_digit_refuses_anything_but_ten_characters_of_the_alphabet(bad):
    with pytest.raises(ValueError):
        check_digit(bad)


@pytest.mark.parametrize("number", VALID_CONTAINERS + ["csqu3054383", "CSQU 305438-3", "CSQU 305438 3",
                                                       "MWCU/605978/4", "MWCU.605978.4"])
def test_valid_container_numbers_as_painted_or_typed(number):
    assert is_valid_container(number)


@pytest.mark.parametrize("number", [
    "CSQU3054384",   # wrong check digit
    "CSQU305438",    # check digit missing
    "CSQU30543833",  # one digit too many
    "CSQX3054383",   # category must be U, J or Z
    "C5QU3054383",   # digit among the owner letters
    "CSQU3O54383",   # letter among the serial digits
    "22G1",          # the size/type code painted next to it
    "",
])
def test_invalid_container_numbers(number):
    assert not is_valid_container(number)


def test_normalise_container_as_the_codecs_use_it():
    assert normalise_container(" csqu 305438-3 ") == "CSQU3054383"
    assert normalise_container("MWCU/605978.4") == "MWCU6059784"


@pytest.mark.parametrize("number", VALID_CONTAINERS)
@pytest.mark.parametrize(("letter", "digit"), OCR_CONFUSIONS)
def test_every_typical_ocr_confusion_in_a_valid_number_is_caught(number, letter, digit):
    misreads = []
    for position, char in enumerate(number):
        swap = {letter: digit, digit: letter}.get(char)
        if swap is not None:
            misreads.append(number[:position] + swap + number[position + 1:])
    for misread in misreads:
        assert not is_valid_container(misread), misread


@pytest.mark.parametrize(("read", "truth"), [
    ("CSQU3O54383", "CSQU3054383"),  # O for 0 in the serial
    ("CSQU3054B83", "CSQU3054383"),  # B for 8... in a digit place
    ("MWCU6O59784", "MWCU6059784"),
    ("A8CU1234560", "ABCU1234560"),  # 8 for B in the owner code
    ("ABCU12345G0", "ABCU1234560"),  # G for 6
    ("CSQU3054388", "CSQU3054383"),  # 8 for 3 in the check digit
    ("CSQU8054383", "CSQU3054383"),  # 8 for 3 in the serial: the check digit catches it
    ("MWCU6059734", "MWCU6059784"),  # 3 for 8
    ("MWCU6Q59784", "MWCU6059784"),  # Q for 0
])
def test_specific_misreads_of_real_numbers_are_detected(read, truth):
    assert is_valid_container(truth)
    assert not is_valid_container(read)


@pytest.mark.parametrize("number", VALID_CONTAINERS)
def test_a_single_character_change_is_usually_detected(number):
    variants = single_substitutions(number)
    detected = sum(not is_valid_container(variant) for variant in variants)
    assert detected / len(variants) >= 0.85


def test_known_blind_spots_of_the_check_digit():
    # A (10) and K (21) differ by 11: the sum mod 11 does not move.
    assert is_valid_container("ABCU1234560") and is_valid_container("KBCU1234560")
    # Remainders 0 and 10 both give check digit 0, so numbers ending in 0 are the weakest.
    assert is_valid_container("ABCU3234560")


# ------------------------------------------------------------------ number plates


@pytest.mark.parametrize("written", ["29C-123.45", "29C12345", "29c 123 45", " 29C-123 45 ", "29C_123.45"])
def test_one_vietnamese_plate_however_it_is_written(written):
    assert normalise_plate(written) == "29C12345"


def test_chinese_plate_separator_dot_is_dropped():
    assert normalise_plate("桂A·12345") == normalise_plate("桂A12345") == "桂A12345"


def test_two_line_plate_read_as_two_lines_matches_the_one_line_form():
    assert normalise_plate("29C\n123.45") == normalise_plate("29C-123.45")


@pytest.mark.parametrize("plate", ["29C-123.45", "51D-12345", "29C-1234", "12R-001.23", "51LD-123.45", "29c 123 45"])
def test_vietnamese_plates(plate):
    assert plate_country(plate) == "VN"


@pytest.mark.parametrize("plate", ["桂A·12345", "桂F12345", "桂A1234挂", "京A·D12345", "粤B·12345"])
def test_chinese_plates(plate):
    assert plate_country(plate) == "CN"


@pytest.mark.parametrize("text", [
    "",
    "HELLO",
    "12345",
    "ABC-1234",      # no province code
    "29C-12.3",      # serial too short
    "29I-123.45",    # I, J, O, Q, W are not series letters
    "29O-123.45",
    "29W-123.45",
    "桂A·1234",      # Chinese serial too short
    "京A·I2345",     # no I or O in a Chinese serial
    "CSQU3054383",   # a container number is not a plate
    "22G1",
])
def test_non_plates_belong_to_no_country(text):
    assert plate_country(text) is None
