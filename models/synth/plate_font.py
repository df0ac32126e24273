"""A drawn plate font: digits and capitals as the stencil-like lettering of GA 36 (Chinese) plates.

No desktop font installed offline looks like plate lettering, and the difference is what the
recogniser trips on in real crops: a plate's "1" is a bare bar, its "3" has a flat top (desktop
fonts' round "3" taught the model to read real ones as "5"), and its "G" has a spur and a flat right
side where a desktop "G" looks like a "6". Each glyph here is a few centre lines on a 4 × 8 grid
(x right, y down), drawn with a round pen; `glyph` turns one into an ink mask like
`glyphs.glyph_mask` gives for a font.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

PREFIX = "plate-font:"  # a font "path" naming this font and its pen width, e.g. "plate-font:0.8"
PEN_WIDTHS = (0.8, 1.05)  # grid units: GA 36 strokes are about a fifth of a glyph's width
PIXELS_PER_UNIT = 24

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, steps: int = 12) -> Stroke:
    """Points on an elliptic arc from `start` to `stop` degrees (0 = right, 90 = down)."""
    angles = np.deg2rad(np.linspace(start, stop, steps))
    return [(cx + rx * float(np.cos(a)), cy + ry * float(np.sin(a))) for a in angles]


def _stadium() -> Stroke:
    return _arc(2, 2, 2, 2, 180, 360) + _arc(2, 6, 2, 2, 0, 180) + [(0, 2)]


def _six() -> list[Stroke]:
    return [_arc(2, 2, 2, 2, 330, 180) + _arc(2, 5.8, 2, 2.2, 180, 540, 24)]


def _turned(strokes: list[Stroke]) -> list[Stroke]:
    return [[(4 - x, 8 - y) for x, y in stroke] for stroke in strokes]


def _p_bowl() -> Stroke:
    return [(0, 8), (0, 0), (2.3, 0)] + _arc(2.3, 2.1, 1.7, 2.1, 270, 450) + [(0, 4.2)]


GLYPHS: dict[str, list[Stroke]] = {
    "0": [_stadium()],
    "1": [[(2, 0), (2, 8)]],
    "2": [_arc(2, 2, 2, 2, 180, 360) + [(4, 2.6), (0, 8), (4, 8)]],
    "3": [[(0.2, 0), (4, 0), (1.8, 3.3)] + _arc(2, 5.6, 2, 2.3, 270, 510)],
    "4": [[(3, 8), (3, 0), (0, 5.6), (4, 5.6)]],
    "5": [[(3.8, 0), (0.4, 0), (0.2, 3.6)] + _arc(2, 5.7, 2, 2.3, 250, 510)],
    "6": _six(),
    "7": [[(0, 0), (4, 0), (4, 1), (1.6, 8)]],
    "8": [_arc(2, 1.9, 1.8, 1.9, 0, 360, 24), _arc(2, 5.9, 2, 2.1, 0, 360, 24)],
    "9": _turned(_six()),
    "A": [[(0, 8), (1.5, 0), (2.5, 0), (4, 8)], [(0.8, 5.2), (3.2, 5.2)]],
    "B": [[(0, 8), (0, 0), (2.5, 0)] + _arc(2.5, 1.9, 1.4, 1.9, 270, 450) + [(0, 3.8)],
          [(0, 3.8), (2.4, 3.8)] + _arc(2.4, 5.9, 1.6, 2.1, 270, 450) + [(0, 8)]],
    "C": [_arc(2, 2, 2, 2, 340, 180) + _arc(2, 6, 2, 2, 180, 20)],
    "D": [[(0, 0), (2, 0)] + _arc(2, 2, 2, 2, 270, 360) + _arc(2, 6, 2, 2, 0, 90) + [(0, 8), (0, 0)]],
    "E": [[(4, 0), (0, 0), (0, 8), (4, 8)], [(0, 3.9), (3.4, 3.9)]],
    "F": [[(4, 0), (0, 0), (0, 8)], [(0, 3.9), (3.4, 3.9)]],
    "G": [_arc(2, 2, 2, 2, 340, 180) + _arc(2, 6, 2, 2, 180, 0) + [(4, 4.2), (2.2, 4.2)]],
    "H": [[(0, 0), (0, 8)], [(4, 0), (4, 8)], [(0, 3.9), (4, 3.9)]],
    "I": [[(2, 0), (2, 8)]],
    "J": [[(4, 0), (4, 6)] + _arc(2, 6, 2, 2, 0, 180) + [(0, 5.2)]],
    "K": [[(0, 0), (0, 8)], [(4, 0), (0.2, 4.6)], [(1.4, 3.4), (4, 8)]],
    "L": [[(0, 0), (0, 8), (4, 8)]],
    "M": [[(0, 8), (0, 0), (2, 5), (4, 0), (4, 8)]],
    "N": [[(0, 8), (0, 0), (4, 8), (4, 0)]],
    "O": [_stadium()],
    "P": [_p_bowl()],
    "Q": [_stadium(), [(2.4, 5.6), (4.2, 8.2)]],
    "R": [_p_bowl(), [(2, 4.2), (4, 8)]],
    "S": [_arc(2, 2, 2, 2, 345, 120) + _arc(2, 6, 2, 2, 300, 555)],
    "T": [[(0, 0), (4, 0)], [(2, 0), (2, 8)]],
    "U": [[(0, 0), (0, 6)] + _arc(2, 6, 2, 2, 180, 0) + [(4, 0)]],
    "V": [[(0, 0), (2, 8), (4, 0)]],
    "W": [[(0, 0), (1, 8), (2, 2.5), (3, 8), (4, 0)]],
    "X": [[(0, 0), (4, 8)], [(4, 0), (0, 8)]],
    "Y": [[(0, 0), (2, 4), (4, 0)], [(2, 4), (2, 8)]],
    "Z": [[(0, 0), (4, 0), (0, 8), (4, 8)]],
}

FONTS = tuple(f"{PREFIX}{width}" for width in PEN_WIDTHS)


def is_plate_font(font_path: str) -> bool:
    """True for a font "path" that names this font."""
    return font_path.startswith(PREFIX)


@lru_cache(maxsize=512)
def glyph(char: str, font_path: str) -> np.ndarray:
    """The ink of one character (uint8 0..255), cropped to its bounding box; KeyError if not drawn."""
    pen = float(font_path[len(PREFIX):])
    scale = PIXELS_PER_UNIT
    pad = int(np.ceil(pen * scale))
    canvas = np.zeros((8 * scale + 2 * pad, 4 * scale + 2 * pad), np.uint8)
    for stroke in GLYPHS[char]:
        points = np.array([[(x * scale + pad) * 16, (y * scale + pad) * 16] for x, y in stroke], np.int32)
        cv2.polylines(canvas, [points], False, 255, max(1, round(pen * scale)), cv2.LINE_AA, shift=4)
    rows, cols = np.nonzero(canvas > 40)
    return canvas[rows.min():rows.max() + 1, cols.min():cols.max() + 1].copy()
