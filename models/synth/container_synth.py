"""Synthetic ISO 6346 container codes as painted on container doors: horizontal, two-line, vertical.

The size/type code (e.g. `22G1`) is painted nearby in scenes, never inside the code's own crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from devices.protocols.iso6346 import check_digit
from models.synth.fonts import installed_fonts
from models.synth.glyphs import draw_line, glyph_mask

OWNERS = ("CSQ", "MSC", "MSK", "MAE", "CMA", "COS", "OOL", "EMC", "EGH", "HLX", "HLB", "ONE", "TGH", "TCL",
          "TCN", "TRH", "GES", "SEG", "FCI", "BMO", "CAI", "DFS", "YML", "WHL", "ZIM", "APL", "APZ", "TLL",
          "BEA", "GLD", "SUD", "MRK", "PON", "NYK", "KKF", "MOL", "HDM", "SIT", "SNB", "CBH", "TTN", "UET")
SIZE_TYPES = ("22G1", "45G1", "42G1", "22R1", "45R1", "22U1", "42U1", "22T1", "25G1", "L5G1", "45P3", "22P1")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DOOR_COLOURS = ((40, 40, 170), (150, 80, 20), (50, 110, 40), (130, 130, 130), (30, 110, 220), (220, 220, 220),
                (40, 40, 40), (60, 140, 150), (110, 60, 110), (20, 60, 110))


@dataclass(frozen=True)
class ContainerSample:
    """A rendered container code crop: image, the 11-character label, layout ("h1", "h2", "v")."""

    image: np.ndarray  # BGR
    label: str
    layout: str
    ink: np.ndarray | None = None  # float32 0..1: the paint's coverage (the check digit's box too)
    cells: np.ndarray | None = None  # uint8: character k's box holds k (1..11), else 0


def container_text(rng: np.random.Generator) -> str:
    """A random check-digit-valid container number, e.g. CSQU3054383."""
    owner = OWNERS[rng.integers(len(OWNERS))] if rng.random() < 0.2 else "".join(
        LETTERS[i] for i in rng.integers(0, 26, 3))
    category = "U" if rng.random() < 0.9 else ("J" if rng.random() < 0.5 else "Z")
    serial = "".join(str(d) for d in rng.integers(0, 10, 6))
    first = owner + category + serial
    return first + str(check_digit(first))


def size_type_text(rng: np.random.Generator) -> str:
    """A size/type code such as 22G1."""
    return SIZE_TYPES[rng.integers(len(SIZE_TYPES))]


def door_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A painted corrugated door: a base colour with vertical ribs of light and shade."""
    base = np.array(DOOR_COLOURS[rng.integers(len(DOOR_COLOURS))], np.float32)
    base = np.clip(base + rng.normal(0, 12, 3), 0, 255)
    period = rng.uniform(25, 90)
    phase = rng.uniform(0, 2 * np.pi)
    xs = np.arange(width, dtype=np.float32)
    shade = 1.0 + rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * xs / period + phase)
    image = base[None, None, :] * shade[None, :, None]
    return np.clip(np.repeat(image, height, axis=0), 0, 255).astype(np.uint8)


def _ink_for(background: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    if float(background.mean()) > 150:
        return (25, 25, 25) if rng.random() < 0.85 else (30, 30, 160)
    return (240, 240, 240) if rng.random() < 0.9 else (40, 200, 230)


def _box_digit(image: np.ndarray, box: tuple[int, int, int, int], ink: tuple, rng: np.random.Generator) -> None:
    x, y, w, h = box
    pad = max(2, int(h * 0.12))
    cv2.rectangle(image, (x - pad, y - pad), (x + w + pad, y + h + pad), ink, max(1, h // 14))


def render_code_block(rng: np.random.Generator, code: str, layout: str, char_h: int,
                      font: str) -> tuple[np.ndarray, np.ndarray]:
    """The code painted on a transparent block, layout-sized: (ink mask uint8 BGR with the check
    digit's box drawn too, character cells uint8: character k's box holds k)."""
    rng_state = rng  # one generator for all draws
    if layout == "v":
        cell = int(char_h * 1.15)
        gap = int(char_h * rng_state.uniform(0.2, 0.6))
        width = int(char_h * 1.1)
        height = cell * 11 + 2 * gap + int(char_h * 0.4)
        mask = np.zeros((height, width + 8, 3), np.uint8)
        cells = np.zeros(mask.shape[:2], np.uint8)
        y = 0
        for i, char in enumerate(code):
            if i in (4, 10):
                y += gap
            glyph_w = int(char_h * rng_state.uniform(0.6, 0.75))
            draw_line(mask, char, ((width + 8 - glyph_w) // 2, y, glyph_w, char_h), (font, font), (255, 255, 255),
                      rng_state, cells=cells)
            if i == 10:
                _box_digit(mask, ((width + 8 - glyph_w) // 2, y, glyph_w, char_h), (255, 255, 255), rng_state)
            y += cell
        return mask, cells
    char_w = int(char_h * rng_state.uniform(0.62, 0.78))
    space = int(char_w * rng_state.uniform(0.4, 1.0))
    if layout == "h1":
        width = char_w * 11 + 2 * space + int(char_h * 0.5)
        mask = np.zeros((int(char_h * 1.4), width, 3), np.uint8)
        cells = np.zeros(mask.shape[:2], np.uint8)
        y = int(char_h * 0.2)
        draw_line(mask, code[:4], (0, y, char_w * 4, char_h), (font, font), (255, 255, 255), rng_state, cells=cells)
        draw_line(mask, code[4:10], (char_w * 4 + space, y, char_w * 6, char_h), (font, font), (255, 255, 255),
                  rng_state, cells=cells)
        x = char_w * 10 + 2 * space
        draw_line(mask, code[10], (x, y, char_w, char_h), (font, font), (255, 255, 255), rng_state, cells=cells)
        _box_digit(mask, (x, y, char_w, char_h), (255, 255, 255), rng_state)
        return mask, cells
    # h2: owner + category on top, serial and boxed check digit below
    line_gap = int(char_h * rng_state.uniform(0.25, 0.5))
    width = char_w * 7 + space + int(char_h * 0.5)
    mask = np.zeros((char_h * 2 + line_gap + int(char_h * 0.4), width, 3), np.uint8)
    cells = np.zeros(mask.shape[:2], np.uint8)
    y = int(char_h * 0.2)
    top_x = int(rng_state.uniform(0, max(1, width - char_w * 4 - int(char_h * 0.5))))
    draw_line(mask, code[:4], (top_x, y, char_w * 4, char_h), (font, font), (255, 255, 255), rng_state, cells=cells)
    y2 = y + char_h + line_gap
    draw_line(mask, code[4:10], (0, y2, char_w * 6, char_h), (font, font), (255, 255, 255), rng_state, cells=cells)
    x = char_w * 6 + space
    draw_line(mask, code[10], (x, y2, char_w, char_h), (font, font), (255, 255, 255), rng_state, cells=cells)
    _box_digit(mask, (x, y2, char_w, char_h), (255, 255, 255), rng_state)
    return mask, cells


def paint(background: np.ndarray, mask: np.ndarray, x: int, y: int, ink: tuple) -> None:
    """Paint the white parts of `mask` onto `background` at (x, y) in the colour `ink`, clipped."""
    h, w = mask.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(background.shape[1], x + w), min(background.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    alpha = mask[y0 - y:y1 - y, x0 - x:x1 - x, :1].astype(np.float32) / 255.0
    region = background[y0:y1, x0:x1].astype(np.float32)
    background[y0:y1, x0:x1] = (region * (1 - alpha) + np.array(ink, np.float32) * alpha).astype(np.uint8)


def render_container(rng: np.random.Generator, layout: str | None = None) -> ContainerSample:
    """One container-code crop as a localiser would cut it from a door, clean (no augmentation)."""
    fonts = installed_fonts()
    font = fonts.latin[rng.integers(len(fonts.latin))]
    layout = layout or ("h1", "h2", "v")[int(rng.choice(3, p=(0.4, 0.2, 0.4)))]  # vertical is the hardest
    code = container_text(rng)
    char_h = int(rng.integers(18, 40))
    mask, block_cells = render_code_block(rng, code, layout, char_h, font)
    mh, mw = mask.shape[:2]
    margin_x = int(char_h * rng.uniform(0.15, 0.6))
    margin_y = int(char_h * rng.uniform(0.1, 0.5))
    background = door_background(rng, mw + 2 * margin_x, mh + 2 * margin_y)
    paint(background, mask, margin_x, margin_y, _ink_for(background, rng))
    ink = np.zeros(background.shape[:2], np.float32)
    cells = np.zeros(background.shape[:2], np.uint8)
    ink[margin_y:margin_y + mh, margin_x:margin_x + mw] = mask[:, :, 0] / 255.0
    cells[margin_y:margin_y + mh, margin_x:margin_x + mw] = block_cells
    return ContainerSample(background, code, layout, ink, cells)


def glyph_height(font: str) -> int:
    """Height of a capital at the reference size, used to place size/type codes in scenes."""
    return glyph_mask("H", font).shape[0]
