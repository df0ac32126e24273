"""ISO 6346 container numbers: check digit, validation, normalisation."""

from __future__ import annotations

import re

_LETTER_VALUES: dict[str, int] = {}
_value = 10
for _letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    if _value % 11 == 0:  # values 11, 22, 33 are skipped by the standard
        _value += 1
    _LETTER_VALUES[_letter] = _value
    _value += 1

CONTAINER_NUMBER = re.compile(r"^[A-Z]{3}[UJZ]\d{7}$")


def normalise_container(text: str) -> str:
    """Uppercase and drop spaces, dashes and slashes: `CSQU 305438-3` gives `CSQU3054383`."""
    return re.sub(r"[\s\-/.]+", "", text).upper()


def check_digit(first_ten: str) -> int:
    """Return the check digit for owner code + category + 6-digit serial (10 characters)."""
    if len(first_ten) != 10:
        raise ValueError(f"need 10 characters, got {len(first_ten)}: {first_ten!r}")
    total = 0
    for position, char in enumerate(first_ten.upper()):
        if char.isdigit():
            value = int(char)
        elif char in _LETTER_VALUES:
            value = _LETTER_VALUES[char]
        else:
            raise ValueError(f"invalid character {char!r} in {first_ten!r}")
        total += value << position
    return total % 11 % 10


def is_valid_container(number: str) -> bool:
    """True when the number has the ISO 6346 shape and its check digit holds."""
    normal = normalise_container(number)
    if not CONTAINER_NUMBER.match(normal):
        return False
    return check_digit(normal[:10]) == int(normal[10])
