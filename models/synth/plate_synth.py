"""Synthetic Vietnamese and Chinese number plates: random valid texts, rendered as plate images.

Every function takes a numpy Generator, so a seed gives the same plates on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.protocols.plates import CN_PROVINCES
from models.synth.fonts import installed_fonts
from models.synth.glyphs import draw_line
from models.synth.plate_font import FONTS as PLATE_FONTS
from models.vision.formatting import VN_PARTS

VN_SERIES = "ABCDEFGHKLMNPRSTUVXYZ"
VN_TWO_LETTER_SERIES = ("LD", "KT", "RM", "NG", "NN", "QT", "CD", "HC")
VN_PROVINCES = [f"{n:02d}" for n in range(11, 100) if n not in (13, 42, 44, 45, 46, 87, 91, 96)]
CN_SERIAL = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CN_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"
PLATE_FONT_SHARE_CN = 0.5  # share of Chinese plates lettered in the drawn plate font
PLATE_FONT_SHARE_VN = 0.25
GUANGXI_SHARE = 0.35  # share of Chinese plates drawn as 桂 (Huu Nghi's); 0 draws every province evenly

# (background BGR, text BGR)
WHITE, YELLOW, BLUE, GREEN = (235, 238, 240), (20, 200, 245), (160, 70, 10), (120, 210, 140)
BLACK, RED, WHITE_TEXT = (20, 20, 20), (30, 30, 200), (245, 245, 245)


@dataclass(frozen=True)
class PlateSample:
    """A rendered plate: the image, its normalised label and its class."""

    image: np.ndarray  # BGR
    label: str  # normalised: no separators
    kind: str  # "vn1", "vn2", "cn1", "cn2"
    ink: np.ndarray | None = None  # float32 0..1: the lettering's coverage (border and separators too)
    cells: np.ndarray | None = None  # uint8: character k's box holds k (1..), else 0


def vn_text(rng: np.random.Generator) -> tuple[str, str, str]:
    """A Vietnamese plate as (prefix, serial as printed, normalised label), e.g. ('29C', '123.45', '29C12345')."""
    province = VN_PROVINCES[rng.integers(len(VN_PROVINCES))]
    roll = rng.random()
    if roll < 0.12:
        series = VN_TWO_LETTER_SERIES[rng.integers(len(VN_TWO_LETTER_SERIES))]
    elif roll < 0.22:
        series = VN_SERIES[rng.integers(len(VN_SERIES))] + str(rng.integers(1, 10))
    else:
        series = VN_SERIES[rng.integers(len(VN_SERIES))]
    digits = "".join(DIGITS[i] for i in rng.integers(0, 10, 5 if rng.random() < 0.8 else 4))
    printed = f"{digits[:3]}.{digits[3:]}" if len(digits) == 5 else digits
    prefix = province + series
    return prefix, printed, prefix + digits


def cn_text(rng: np.random.Generator, guangxi_share: float = GUANGXI_SHARE) -> tuple[str, str, str]:
    """A Chinese plate as (province + office letter, serial, normalised label), e.g. ('桂A', '12345', '桂A12345').

    `guangxi_share` of the plates are 桂, the rest any of the 31 provinces evenly (0: a flat prior; the
    draws from `rng` are the same whatever the share)."""
    province = "桂" if rng.random() < guangxi_share else CN_PROVINCES[rng.integers(len(CN_PROVINCES))]
    office = "F" if province == "桂" and rng.random() < 0.3 else CN_LETTERS[rng.integers(len(CN_LETTERS))]
    roll = rng.random()
    length = 6 if roll < 0.1 else 5  # new-energy plates have 6
    serial = []
    for _ in range(length):
        pool = CN_SERIAL if rng.random() < 0.3 else DIGITS
        serial.append(pool[rng.integers(len(pool))])
    text = "".join(serial)
    if length == 5 and rng.random() < 0.15:
        text = text[:4] + "挂"  # trailer
    return province + office, text, province + office + text


def _plate_colours(rng: np.random.Generator, country: str, label: str) -> tuple[tuple, tuple]:
    roll = rng.random()
    if country == "VN":
        if roll < 0.45:
            return YELLOW, BLACK
        if roll < 0.55:
            return YELLOW, RED
        if roll < 0.93:
            return WHITE, BLACK
        return BLUE, WHITE_TEXT
    if len(label) == 8 and not label.endswith("挂"):
        return GREEN, BLACK
    if roll < 0.6:
        return YELLOW, BLACK
    if roll < 0.9:
        return BLUE, WHITE_TEXT
    return WHITE, BLACK


def _latin_font(rng: np.random.Generator, country: str, installed: tuple[str, ...],
                plate_font_share: float | None = None) -> str:
    """The font for a plate's digits and letters: often the drawn plate font, otherwise a desktop one.

    Real plates are lettered in their standard's face; desktop fonts stay in the mix so the reader
    does not depend on one face. Chinese plates get the drawn font more often because it is drawn
    after their standard (GA 36); Vietnamese plates get it less, as their face is another narrow sans.
    """
    if plate_font_share is None:
        plate_font_share = PLATE_FONT_SHARE_CN if country == "CN" else PLATE_FONT_SHARE_VN
    if rng.random() < plate_font_share:
        return PLATE_FONTS[rng.integers(len(PLATE_FONTS))]
    return installed[rng.integers(len(installed))]


def _jitter(colour: tuple, rng: np.random.Generator, amount: int = 25) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def plate_parts(label: str) -> tuple[str, str, str]:
    """(country, prefix, serial as printed) of a normalised plate: '29C12345' → ('VN', '29C', '123.45')."""
    if label[:1] in CN_PROVINCES:
        return "CN", label[:2], label[2:]
    match = VN_PARTS.match(label)
    if not match:
        raise ValueError(f"not a Vietnamese or Chinese plate: {label!r}")
    prefix, digits = match.groups()
    printed = f"{digits[:3]}.{digits[3:]}" if len(digits) == 5 else digits
    return "VN", prefix, printed


def render_plate(rng: np.random.Generator, country: str | None = None, lines: int | None = None,
                 scale: float | None = None, label: str | None = None, *, guangxi_share: float = GUANGXI_SHARE,
                 plate_font_share: float | None = None,
                 colours: tuple[tuple, tuple] | None = None, printed_prefix: str | None = None,
                 motorbike: bool = False) -> PlateSample:
    """Render one random plate, clean (no augmentation); `country` "VN"/"CN", `lines` 1/2.

    `scale` is pixels per millimetre of the real plate (random 0.3-0.6 when None: a crop as a
    gate camera sees it). `label` (normalised, e.g. "29C12345") draws that plate instead of a
    random one. `guangxi_share`: see `cn_text`; `plate_font_share`: the chance of the drawn plate
    font (None: the country's share above); `colours`: (background, text) BGR instead of a random pair;
    `printed_prefix`: the prefix as the plate prints it (`29-MĐ1` on a two-line plate's top row) instead
    of the label's own (`29MD1`); it draws nothing from `rng` and the label stays as it was.
    `motorbike`: a Vietnamese two-line plate of a motorbike's size (190 x 140 mm, both rows nearly as
    wide as the plate) instead of a car's (330 x 165 mm).
    The defaults draw what they always drew, so a seeded set is the same.
    """
    fonts = installed_fonts()
    given = plate_parts(label) if label else None
    if given:
        country = given[0]
    country = country or ("VN" if rng.random() < 0.5 else "CN")
    lines = lines or (1 if rng.random() < 0.5 else 2)
    font_pair = (_latin_font(rng, country, fonts.latin, plate_font_share), fonts.cjk[rng.integers(len(fonts.cjk))])
    if given:
        prefix, serial = given[1], given[2]
        label = prefix + serial.replace(".", "")
    elif country == "VN":
        prefix, serial, label = vn_text(rng)
    else:
        prefix, serial, label = cn_text(rng, guangxi_share)
    if printed_prefix is not None:
        prefix = printed_prefix
    sizes_mm = {("VN", 1): (520, 110), ("VN", 2): (330, 165), ("CN", 1): (440, 140), ("CN", 2): (440, 220)}
    width, height = (190, 140) if motorbike and (country, lines) == ("VN", 2) else sizes_mm[(country, lines)]
    scale = rng.uniform(0.3, 0.6) if scale is None else scale
    width, height = int(width * scale), int(height * rng.uniform(0.95, 1.05) * scale)
    background, ink = colours if colours is not None else _plate_colours(rng, country, label)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = _jitter(background, rng)
    ink = _jitter(ink, rng, 15)
    border = max(2, int(height * 0.04))
    margin = int(border * rng.uniform(0.4, 1.2))
    import cv2

    cv2.rectangle(image, (margin, margin), (width - 1 - margin, height - 1 - margin), ink, border)
    inner = margin + border
    pad_x = int(width * rng.uniform(0.03, 0.07)) + inner
    cjk = CN_PROVINCES + "挂学警"
    maps = {"ink": np.zeros((height, width), np.float32), "cells": np.zeros((height, width), np.uint8)}
    cv2.rectangle(maps["ink"], (margin, margin), (width - 1 - margin, height - 1 - margin), 1.0, border)
    if lines == 1:
        text_h = int((height - 2 * inner) * rng.uniform(0.62, 0.8))
        top = (height - text_h) // 2
        text = f"{prefix}-{serial}" if country == "VN" else f"{prefix}·{serial}"
        draw_line(image, text, (pad_x, top, width - 2 * pad_x, text_h), font_pair, ink, rng, cjk, **maps)
    else:
        usable = height - 2 * inner
        top_share = rng.uniform(0.36, 0.44) if country == "VN" else rng.uniform(0.28, 0.34)
        gap = int(usable * rng.uniform(0.06, 0.1))
        top_h = int(usable * top_share)
        bottom_h = usable - top_h - gap - int(usable * 0.1)
        y0 = inner + int(usable * 0.05)
        top_share_w = rng.uniform(0.45, 0.6) if country == "VN" else rng.uniform(0.32, 0.42)
        if motorbike and country == "VN":  # the top row (`59-X1`) nearly as wide as the serial below it
            top_share_w = min(1.0, top_share_w * 1.55)
        top_w = int((width - 2 * pad_x) * top_share_w)
        draw_line(image, prefix, ((width - top_w) // 2, y0, top_w, top_h), font_pair, ink, rng, cjk, **maps)
        draw_line(image, serial, (pad_x, y0 + top_h + gap, width - 2 * pad_x, bottom_h), font_pair, ink, rng, cjk,
                  **maps)
    kind = ("vn" if country == "VN" else "cn") + str(lines)
    return PlateSample(image, label, kind, maps["ink"], maps["cells"])
