"""ISO 6346 judged by python-stdnum (an implementation we did not write), on random and mutated codes.

stdnum.iso6346 is wider than ours in two ways, both deliberate on our side: it allows digits in the
owner code (`\\w{3}`) and the category `R`; ours requires three letters and U, J or Z (shared/domain.md).
So on codes of our shape both must agree exactly; outside it, whatever ours accepts stdnum accepts.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stdnum import iso6346 as oracle

from devices.protocols.iso6346 import CONTAINER_NUMBER, check_digit, is_valid_container

ALNUM = string.ascii_uppercase + string.digits
OWNERS = st.text(string.ascii_uppercase, min_size=3, max_size=3)
CATEGORIES = st.sampled_from("UJZ")
SERIALS = st.text(string.digits, min_size=6, max_size=6)
FIRST_TENS = st.builds(lambda o, c, s: o + c + s, OWNERS, CATEGORIES, SERIALS)


def valid_code(first_ten: str) -> str:
    return first_ten + oracle.calc_check_digit(first_ten)


@pytest.mark.parametrize(("first_ten", "digit"), [("CSQU305438", 3), ("MWCU605978", 4), ("ABCU123456", 0)])
def test_the_domain_examples_agree_with_stdnum(first_ten: str, digit: int) -> None:
    assert check_digit(first_ten) == digit == int(oracle.calc_check_digit(first_ten))
    assert is_valid_container(f"{first_ten}{digit}") and oracle.is_valid(f"{first_ten}{digit}")


@settings(max_examples=500)
@given(st.text(ALNUM, min_size=10, max_size=10))
@example("CSQU305438")
@example("AAAA000000")  # A = 10: the value 11 is skipped so A and K still differ by 11
def test_our_check_digit_is_stdnums_for_any_ten_letters_and_digits(first_ten: str) -> None:
    assert str(check_digit(first_ten)) == oracle.calc_check_digit(first_ten)


@settings(max_examples=500)
@given(FIRST_TENS, st.integers(0, 9))
def test_validity_agrees_with_stdnum_for_every_check_digit(first_ten: str, digit: int) -> None:
    code = f"{first_ten}{digit}"
    assert is_valid_container(code) == oracle.is_valid(code)


@settings(max_examples=1000)
@given(FIRST_TENS, st.integers(0, 10), st.sampled_from(ALNUM), st.booleans())
def test_mutated_codes_agree_with_stdnum(first_ten: str, position: int, replacement: str, swap: bool) -> None:
    """One character replaced (an OCR misread) or two neighbours swapped, as a camera gets it wrong."""
    chars = list(valid_code(first_ten))
    if swap and position < 10:
        chars[position], chars[position + 1] = chars[position + 1], chars[position]
    else:
        chars[position] = replacement
    code = "".join(chars)
    ours = is_valid_container(code)
    if CONTAINER_NUMBER.match(code):
        assert ours == oracle.is_valid(code), code
    else:
        assert not ours, code  # a digit in the owner code or a category outside U/J/Z: ours refuses the shape


@given(FIRST_TENS)
def test_lower_case_and_spaced_codes_fold_like_stdnum_compacts(first_ten: str) -> None:
    code = valid_code(first_ten)
    spaced = oracle.format(code).lower()  # `csqu 305438 3`
    assert is_valid_container(spaced) and oracle.is_valid(spaced)


@pytest.mark.parametrize("code", ["CSQU305438\u0663", "CSQU\u0663\u0660\u0665\u0664\u0663\u0668\u0663",
                                  "CSQU３０５４３８٣"])
def test_digits_nfkc_does_not_make_ascii_are_refused(code: str) -> None:
    assert not is_valid_container(code)
