"""Draw lines of plate-style characters: each glyph stretched to fill its cell, as plate lettering is."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from models.synth import plate_font
from models.synth.fonts import load_font

SEPARATORS = "-.·"


@lru_cache(maxsize=8192)
def glyph_mask(char: str, font_path: str) -> np.ndarray:
    """The ink of one character (uint8 0..255), cropped to its bounding box.

    `font_path` may name the drawn plate font (`plate_font.FONTS`); it draws digits and capitals.
    """
    if plate_font.is_plate_font(font_path):
        return plate_font.glyph(char, font_path)
    font = load_font(font_path, 96)
    left, top, right, bottom = font.getbbox(char)
    image = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(image).text((4 - left, 4 - top), char, font=font, fill=255)
    ink = np.asarray(image)
    rows, cols = np.nonzero(ink > 40)
    if rows.size == 0:
        return np.zeros((8, 8), np.uint8)
    return ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1].copy()


def _paste(canvas: np.ndarray, mask: np.ndarray, x: int, y: int, w: int, h: int, color: tuple[int, int, int]) -> None:
    import cv2

    w, h = max(1, w), max(1, h)
    resized = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(canvas.shape[1], x + w), min(canvas.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    alpha = resized[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region * (1 - alpha) + np.array(color, np.float32) * alpha).astype(np.uint8)


def draw_line(canvas: np.ndarray, text: str, box: tuple[int, int, int, int], fonts: tuple[str, str],
              color: tuple[int, int, int], rng: np.random.Generator, cjk_chars: str = "",
              ink: np.ndarray | None = None, cells: np.ndarray | None = None) -> None:
    """Draw `text` evenly across `box` (x, y, w, h); separators take a narrow cell.

    `fonts` is (latin font, cjk font); characters in `cjk_chars` use the CJK one. `ink` (float32,
    the canvas's size) gets each glyph's coverage 0..1 and `cells` (uint8) the next character number
    over each glyph's box: what `legibility` needs to judge every character. Neither draws from `rng`.
    """
    x, y, w, h = box
    widths = [0.45 if c in SEPARATORS else (1.25 if c in cjk_chars else 1.0) for c in text]
    unit = w / sum(widths)
    fill = rng.uniform(0.72, 0.9)
    cursor = float(x)
    for char, rel in zip(text, widths, strict=True):
        cell_w = unit * rel
        if char == " ":
            cursor += cell_w
            continue
        if char == "-":
            mw, mh = int(cell_w * 0.7), max(2, int(h * 0.08))
            _paste(canvas, np.full((4, 4), 255, np.uint8), int(cursor + cell_w * 0.15), y + h // 2 - mh // 2, mw, mh,
                   color)
            _mark(ink, None, np.full((4, 4), 255, np.uint8), int(cursor + cell_w * 0.15), y + h // 2 - mh // 2, mw, mh)
        elif char in ".·":
            d = max(2, int(min(cell_w * 0.6, h * 0.12)))
            dot_y = y + h - d - int(h * 0.05) if char == "." else y + h // 2 - d // 2
            _paste(canvas, _disc(), int(cursor + (cell_w - d) / 2), dot_y, d, d, color)
            _mark(ink, None, _disc(), int(cursor + (cell_w - d) / 2), dot_y, d, d)
        else:
            font = fonts[1] if char in cjk_chars else fonts[0]
            mask = glyph_mask(char, font)
            gw = int(cell_w * fill)
            if char in "1I":  # narrow glyphs keep their shape instead of becoming blocks
                gw = max(2, int(gw * min(1.0, mask.shape[1] / mask.shape[0] * 2.2)))
            _paste(canvas, mask, int(cursor + (cell_w - gw) / 2), y, gw, h, color)
            _mark(ink, cells, mask, int(cursor + (cell_w - gw) / 2), y, gw, h)
        cursor += cell_w


def _mark(ink: np.ndarray | None, cells: np.ndarray | None, mask: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """Record one glyph's coverage in `ink` and its box, numbered after those already there, in `cells`."""
    import cv2

    target = ink if ink is not None else cells
    if target is None:
        return
    w, h = max(1, w), max(1, h)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(target.shape[1], x + w), min(target.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    if ink is not None:
        alpha = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        np.maximum(ink[y0:y1, x0:x1], alpha[y0 - y:y1 - y, x0 - x:x1 - x], out=ink[y0:y1, x0:x1])
    if cells is not None:
        cells[y0:y1, x0:x1] = int(cells.max()) + 1


@lru_cache(maxsize=1)
def _disc() -> np.ndarray:
    import cv2

    disc = np.zeros((16, 16), np.uint8)
    cv2.circle(disc, (8, 8), 7, 255, -1)
    return disc
