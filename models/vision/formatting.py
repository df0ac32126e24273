"""Readings as people write them: `29C-123.45`, `桂A·12345`, `CSQU 305438 3`."""

from __future__ import annotations

import re

# prefix (province, series, optional digit) and serial; a 5-digit serial is preferred when ambiguous
VN_PARTS = re.compile(r"^(\d{2}[A-Z]{1,2}\d??)(\d{4,5})$")


def display_plate(text: str, country: str) -> str:
    """A normalised plate with its country's separators."""
    if country == "VN":
        match = VN_PARTS.match(text)
        if match:
            prefix, serial = match.groups()
            if len(serial) == 5:
                serial = f"{serial[:3]}.{serial[3:]}"
            return f"{prefix}-{serial}"
        return text
    if country == "CN" and len(text) > 2:
        return f"{text[:2]}·{text[2:]}"
    return text


def display_container(text: str) -> str:
    """An 11-character container number as painted: owner+category, serial, check digit."""
    return f"{text[:4]} {text[4:10]} {text[10:]}" if len(text) == 11 else text
