"""The recognisers' alphabets. Index 0 of every model output is the CTC blank."""

from __future__ import annotations

from devices.protocols.plates import CN_PROVINCES

DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PLATE_CHARS = DIGITS + LETTERS + CN_PROVINCES + "挂学警"
CONTAINER_CHARS = DIGITS + LETTERS


def encode(text: str, charset: str) -> list[int]:
    """Class indices (1-based; 0 is the blank) of `text` in `charset`."""
    return [charset.index(c) + 1 for c in text]
