"""Number-plate grammars (Vietnamese, Chinese); the plate normaliser itself lives in identifiers."""

from __future__ import annotations

import re

from devices.protocols.identifiers import normalise_plate

__all__ = ["CN_PLATE", "CN_PROVINCES", "VN_PLATE", "normalise_plate", "plate_country"]

# Vietnamese: 2-digit province code, series of 1-2 letters (no I, J, O, Q, W) with an optional
# digit, then a 4- or 5-digit serial. Examples: 29C12345, 29C1234, 51LD12345, 12R00123.
_VN_SERIES = "ABCDEFGHKLMNPRSTUVXYZ"
VN_PLATE = re.compile(rf"^[0-9]{{2}}(?:[{_VN_SERIES}]{{1,2}}|QT)[0-9]?[0-9]{{4,5}}$")  # QT: diplomatic series

# Chinese: province character, issuing-office letter, 5 characters (6 for new-energy) without I
# or O; trailers end in 挂.
CN_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
CN_PLATE = re.compile(rf"^[{CN_PROVINCES}][A-Z][A-HJ-NP-Z0-9]{{4,5}}[A-HJ-NP-Z0-9挂学警]$")


def plate_country(plate: str) -> str | None:
    """Return "VN" or "CN" when the normalised plate fits that grammar, else None."""
    normal = normalise_plate(plate)
    if VN_PLATE.match(normal):
        return "VN"
    if CN_PLATE.match(normal):
        return "CN"
    return None
