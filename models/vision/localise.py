"""Find where plates and container codes are in a frame, with OpenCV only.

Text is where short vertical strokes crowd together: the horizontal gradient, thresholded, with
long straight edges (door bars, corrugation, cab outlines) removed, closed into blobs. Blobs of a
plate's or a code line's shape become candidates; the recognisers and the grammars then decide
which of them are readings. Work happens on a frame scaled to at most `WORK_WIDTH` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

import cv2
import numpy as np

WORK_WIDTH = 960


@dataclass(frozen=True)
class Region:
    """A candidate box in frame pixels (x, y, w, h), its layout guess and how text-like it is."""

    box: tuple[int, int, int, int]
    vertical: bool
    score: float
    # The text's own box, without the margin `box` adds (plates): the strong recogniser reads a tight
    # box better (a real plate in a frame: 109 of 120 read right in its core, 94 in the loose box).
    core: tuple[int, int, int, int] | None = None


def _stroke_map(gray: np.ndarray, long_line: int) -> np.ndarray:
    gradient = cv2.convertScaleAbs(cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3))
    mean, spread = cv2.meanStdDev(gradient)  # a tenth of numpy's mean and std over a frame
    threshold = max(40.0, float(mean[0, 0] + 2.0 * spread[0, 0]))
    _, strokes = cv2.threshold(gradient, threshold, 255, cv2.THRESH_BINARY)
    lines = cv2.morphologyEx(strokes, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, long_line)))
    return cv2.subtract(strokes, cv2.dilate(lines, np.ones((3, 3), np.uint8)))


def _blobs(strokes: np.ndarray, kernel: tuple[int, int]) -> list[tuple[int, int, int, int, float]]:
    closed = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
    closed = cv2.morphologyEx(closed, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w < 6 or h < 6:
            continue
        density = float(cv2.countNonZero(strokes[y:y + h, x:x + w])) / (w * h)
        out.append((x, y, w, h, density))
    return out


def _text_bands(strokes: np.ndarray, blob: tuple[int, int, int, int, float]) -> list[tuple[int, int, int, int, float]]:
    """The text lines inside a blob: runs of rows dense with strokes, trimmed to their columns.

    A blob can hold a code line and the size/type code under it, or a line with a door bar or a
    rib fused to it; the row profile separates them.
    """
    x, y, w, h, _ = blob
    patch = strokes[y:y + h, x:x + w] > 0
    rows = patch.mean(axis=1)
    if rows.max(initial=0.0) <= 0.0:
        return []
    dense = rows >= 0.35 * rows.max()
    runs, start = [], None
    for i, flag in enumerate(np.append(dense, False)):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= 3:
                runs.append((start, i))
            start = None
    bands = [(top, bottom) for top, bottom in runs if bottom - top >= 5]
    # Letters with a bar across their middle (A, Z, E, H) give that row few vertical strokes, so a
    # line of them can fall apart into its top and bottom halves: two runs a row or two apart are
    # also tried as one line (as well as apart, for a code line and the size code close under it).
    for (top, middle), (resume, bottom) in zip(runs, runs[1:], strict=False):
        if resume - middle <= 0.3 * min(middle - top, bottom - resume) + 1:
            bands.append((top, bottom))
    out = []
    for top, bottom in bands:
        band = patch[top:bottom]
        cols = np.nonzero(band.any(axis=0))[0]
        if cols.size == 0:
            continue
        left, right = int(cols[0]), int(cols[-1]) + 1
        area = (right - left) * (bottom - top)
        out.append((x + left, y + top, right - left, bottom - top, float(band[:, left:right].sum()) / max(1, area)))
    return out


def _join_words(blobs: list[tuple[int, int, int, int, float]]) -> list[tuple[int, int, int, int, float]]:
    """Blobs side by side on one text line (owner code, serial, check digit) joined into lines.

    The line's top and bottom are the members' medians, so a door bar or rib fused to one word
    does not make the whole line tall.
    """
    joined = []
    items = sorted(blobs, key=lambda b: b[0])
    for i, first in enumerate(items):
        members = [first]
        right = first[0] + first[2]
        for other in items[i + 1:]:
            x2, y2, w2, h2, _ = other
            band_top = float(median([m[1] for m in members]))
            band_bottom = float(median([m[1] + m[3] for m in members]))
            height = band_bottom - band_top
            gap = x2 - right
            if gap > 1.6 * min(height, h2) or gap < -0.2 * w2:
                continue
            shared = min(band_bottom, y2 + h2) - max(band_top, y2)
            if shared < 0.6 * min(height, h2):
                continue
            members.append(other)
            right = max(right, x2 + w2)
        if len(members) > 1:
            top = int(median([m[1] for m in members]))
            bottom = int(median([m[1] + m[3] for m in members]))
            left = first[0]
            mass = sum(m[4] * m[2] * m[3] for m in members)
            area = max(1, (right - left) * max(1, bottom - top))
            joined.append((left, top, right - left, max(1, bottom - top), min(1.0, mass / area)))
    return joined


def _stack_lines(lines: list[tuple[int, int, int, int, float]]) -> list[tuple[int, int, int, int, float]]:
    """Two lines one above the other (owner code over serial) as one two-line block."""
    out = []
    for ax, ay, aw, ah, ad in lines:
        for bx, by, bw, bh, bd in lines:
            gap = by - (ay + ah)
            if not -0.1 * ah <= gap <= 1.0 * max(ah, bh) or not 0.6 <= bh / ah <= 1.6:
                continue
            shared = min(ax + aw, bx + bw) - max(ax, bx)
            if shared < 0.6 * min(aw, bw):
                continue
            x0, y0 = min(ax, bx), ay
            x1, y1 = max(ax + aw, bx + bw), by + bh
            out.append((x0, y0, x1 - x0, y1 - y0, (ad * aw * ah + bd * bw * bh) / ((x1 - x0) * (y1 - y0))))
    return out


def _join_column(blobs: list[tuple[int, int, int, int, float]]) -> list[tuple[int, int, int, int, float]]:
    """Pieces of a vertical code (owner code, serial, check digit) stacked in one column, joined."""
    out = []
    items = sorted(blobs, key=lambda b: b[1])
    for i, first in enumerate(items):
        x0, y0, x1, y1 = first[0], first[1], first[0] + first[2], first[1] + first[3]
        mass, joined = first[4] * first[2] * first[3], 1
        for bx, by, bw, bh, bd in items[i + 1:]:
            width = x1 - x0
            shared = min(x1, bx + bw) - max(x0, bx)
            if shared < 0.5 * min(width, bw) or by - y1 > 1.5 * max(width, bw) or not 0.5 <= bw / width <= 2.0:
                continue
            x0, x1, y1 = min(x0, bx), max(x1, bx + bw), max(y1, by + bh)
            mass += bd * bw * bh
            joined += 1
        if joined > 1:
            out.append((x0, y0, x1 - x0, y1 - y0, min(1.0, mass / ((x1 - x0) * (y1 - y0)))))
    return out


def _scale_frame(frame: np.ndarray) -> tuple[np.ndarray, float]:
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, WORK_WIDTH / gray.shape[1])
    if scale < 1.0:
        gray = cv2.resize(gray, (round(gray.shape[1] * scale), round(gray.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    return gray, scale


def _to_frame(box: tuple[int, int, int, int], scale: float, pad_x: float, pad_y: float,
              shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = (x - w * pad_x) / scale, (y - h * pad_y) / scale
    x1, y1 = (x + w * (1 + pad_x)) / scale, (y + h * (1 + pad_y)) / scale
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(shape[1], int(np.ceil(x1))), min(shape[0], int(np.ceil(y1)))
    return x0, y0, x1 - x0, y1 - y0


def _suppress(regions: list[Region], limit: int) -> list[Region]:
    """Best-scoring regions first, dropping any mostly inside one already kept."""
    kept: list[Region] = []
    for region in sorted(regions, key=lambda r: -r.score):
        x, y, w, h = region.box
        if any(overlap_area(region.box, k.box) > 0.7 * w * h for k in kept):
            continue
        kept.append(region)
        if len(kept) == limit:
            break
    return kept


def overlap_area(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Pixels two (x, y, w, h) boxes share."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    return float(max(0, w) * max(0, h))


def plate_regions(frame: np.ndarray, limit: int = 8) -> list[Region]:
    """Candidate plate boxes, loosely cut around the plate, best first."""
    gray, scale = _scale_frame(frame)
    strokes = _stroke_map(gray, long_line=60)
    regions = []
    for kernel in ((11, 3), (17, 7)):
        for x, y, w, h, density in _blobs(strokes, kernel):
            aspect = w / h
            if not (8 <= h <= 120 and 24 <= w <= 420 and 1.2 <= aspect <= 7.5 and density >= 0.12):
                continue
            regions.append(Region(_to_frame((x, y, w, h), scale, 0.08, 0.2, frame.shape), False,
                                  density * min(1.0, h / 12), _to_frame((x, y, w, h), scale, 0.0, 0.0, frame.shape)))
    return _suppress(regions, limit)


def code_regions(frame: np.ndarray, limit: int = 10) -> list[Region]:
    """Candidate container-code boxes (horizontal, two-line or vertical), best first."""
    gray, scale = _scale_frame(frame)
    strokes = _stroke_map(gray, long_line=45)
    regions = []
    for kernel, vertical in (((15, 3), False), ((13, 9), False), ((5, 15), True)):
        blobs = _blobs(strokes, kernel)
        if vertical:
            blobs += _join_column([b for b in blobs if b[3] > b[2]])
        else:
            lines = [band for blob in blobs if blob[3] > 12 for band in _text_bands(strokes, blob)]
            # words joined from bands alone as well: a door rib fused to a word's blob spoils its line
            lines += _join_words(blobs + lines) + _join_words(lines)
            blobs += lines + _stack_lines([line for line in lines if 1.5 <= line[2] / line[3] <= 12])
        for x, y, w, h, density in blobs:
            aspect = w / h
            if density < 0.1 or min(w, h) < 7:
                continue
            if vertical:
                if not (1 / aspect >= 4.0 and h >= 80):
                    continue
                box = _to_frame((x, y, w, h), scale, 0.25, 0.04, frame.shape)
            else:
                if not (1.4 <= aspect <= 16 and w >= 40 and h <= 150):
                    continue
                box = _to_frame((x, y, w, h), scale, 0.05, 0.2, frame.shape)
            regions.append(Region(box, vertical, density * min(1.0, max(w, h) / 60)))
    return _suppress(regions, limit)


def vertical_regions(frame: np.ndarray, limit: int = 3) -> list[Region]:
    """Candidate vertical container codes alone (one character per row), best first: the part of
    `code_regions` a text detector trained on horizontal lines misses."""
    gray, scale = _scale_frame(frame)
    strokes = _stroke_map(gray, long_line=45)
    blobs = _blobs(strokes, (5, 15))
    blobs += _join_column([b for b in blobs if b[3] > b[2]])
    regions = []
    for x, y, w, h, density in blobs:
        if density < 0.1 or min(w, h) < 7 or not (h / w >= 4.0 and h >= 80):
            continue
        box = _to_frame((x, y, w, h), scale, 0.25, 0.04, frame.shape)
        regions.append(Region(box, True, density * min(1.0, h / 60)))
    return _suppress(regions, limit)
