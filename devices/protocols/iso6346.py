"""ISO 6346 container numbers: check digit, validation, normalisation (folding lives in identifiers)."""

from __future__ import annotations

import re

from devices.protocols.identifiers import normalise_container

__all__ = ["CONTAINER_NUMBER", "check_digit", "is_valid_container", "normalise_container"]

_LETTER_VALUES: dict[str, int] = {}
_value = 10
for _letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    if _value % 11 == 0:  # values 11, 22, 33 are skipped by the standard
        _value += 1
    _LETTER_VALUES[_letter] = _value
    _value += 1
_DIGIT_VALUES = {str(digit): digit for digit in range(10)}  # ASCII digits only: `٣` or `３` is no digit here

CONTAINER_NUMBER = re.compile(r"^[A-Z]{3}[UJZ][0-9]{7}$")


def check_digit(first_ten: str) -> int:
    """Return the check digit for owner code + category + 6-digit serial (10 characters).

    Only ASCII letters (either case) and ASCII digits count: any other character, an Arabic-Indic
    or full-width digit included, raises ValueError (fold the text with `normalise_container` first).
    """
    if len(first_ten) != 10:
        raise ValueError(f"need 10 characters, got {len(first_ten)}: {first_ten!r}")
    total = 0
    for position, char in enumerate(first_ten):
        value = _DIGIT_VALUES.get(char)
        if value is None:
            value = _LETTER_VALUES.get(char.upper()) if char.isascii() else None
        if value is None:
            raise ValueError(f"invalid character {char!r} in {first_ten!r}")
        total += value << position
    return total % 11 % 10


def is_valid_container(number: str) -> bool:
    """True when the folded number has the ISO 6346 shape (ASCII only) and its check digit holds.

    The number is folded first (`ＣＳＱＵ３０５４３８３` is `CSQU3054383`); digits NFKC does not turn
    into ASCII (Arabic-Indic `٣`, Devanagari ...) never count.
    """
    normal = normalise_container(number)
    if not CONTAINER_NUMBER.match(normal):
        return False
    return check_digit(normal[:10]) == int(normal[10])
