"""Number-plate normalisation and the Vietnamese / Chinese plate grammars."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-.·•_]+")

# Vietnamese: 2-digit province code, series of 1-2 letters (no I, J, O, Q, W) with an optional
# digit, then a 4- or 5-digit serial. Examples: 29C12345, 29C1234, 51LD12345, 12R00123.
_VN_SERIES = "ABCDEFGHKLMNPRSTUVXYZ"
VN_PLATE = re.compile(rf"^\d{{2}}(?:[{_VN_SERIES}]{{1,2}}|QT)\d?\d{{4,5}}$")  # QT: diplomatic series

# Chinese: province character, issuing-office letter, 5 characters (6 for new-energy) without I
# or O; trailers end in 挂.
CN_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
CN_PLATE = re.compile(rf"^[{CN_PROVINCES}][A-Z][A-HJ-NP-Z0-9]{{4,5}}[A-HJ-NP-Z0-9挂学警]$")


def normalise_plate(text: str) -> str:
    """Return the plate in matching form: uppercase, without `-`, `.`, `·` or spaces.

    `29C-123.45`, `29C12345` and `29c 123 45` all give `29C12345`.
    """
    return _SEPARATORS.sub("", text).upper()


def plate_country(plate: str) -> str | None:
    """Return "VN" or "CN" when the normalised plate fits that grammar, else None."""
    normal = normalise_plate(plate)
    if VN_PLATE.match(normal):
        return "VN"
    if CN_PLATE.match(normal):
        return "CN"
    return None
