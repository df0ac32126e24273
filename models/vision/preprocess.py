"""Crop → model input. Shared by training and run time, so the model sees at run time what it learnt on.

Two-line plates and two-line container codes are cut at the gap between their lines and the two
halves laid side by side; vertical container codes are turned so their first character is on the
left, then levelled like the rest. The recognisers therefore only ever read one line, left to right.
"""

from __future__ import annotations

import cv2
import numpy as np

INPUT_HEIGHT = 32
PLATE_WIDTH = 160
CONTAINER_WIDTH = 256
TWO_LINE_MIN_ASPECT = 0.41  # height / width above which a plate or code block has two lines
VERTICAL_MIN_ASPECT = 2.0  # height / width above which a container code is painted downwards


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 grey image from BGR, BGRA or grey input."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _stroke_profile(gray: np.ndarray, inner: float = 0.1) -> np.ndarray:
    """Per-row stroke energy: the horizontal gradient summed along the row, smoothed.

    Glyphs have many vertical strokes, the gap between two lines has none, whatever the colours of
    ink and plate.
    """
    height, width = gray.shape[:2]
    gradient = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3))
    left, right = int(width * inner), max(int(width * (1 - inner)), int(width * inner) + 1)
    profile = gradient[:, left:right].mean(axis=1)
    kernel = max(1, height // 25)
    return np.convolve(profile, np.ones(kernel, np.float32) / kernel, mode="same")


def deskew(gray: np.ndarray, max_degrees: float = 8.0, step: float = 1.0) -> np.ndarray:
    """The crop turned so its text lines run level: the angle whose row profile is sharpest wins."""
    height, width = gray.shape[:2]
    if height < 8 or width < 8:
        return gray
    scale = 48.0 / height
    small = cv2.resize(gray, (max(8, int(width * scale)), 48), interpolation=cv2.INTER_AREA)
    gradient = np.abs(cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3))
    size = (small.shape[1], small.shape[0])
    centre = (size[0] / 2, size[1] / 2)
    angles = np.arange(-max_degrees, max_degrees + 1e-6, step)
    # one buffer for every turn and OpenCV's row means: a quarter of the time of numpy's mean per angle
    profiles = np.empty((len(angles), size[1]), np.float32)
    turned = np.empty_like(gradient)
    for i, angle in enumerate(angles):
        cv2.warpAffine(gradient, cv2.getRotationMatrix2D(centre, float(angle), 1.0), size, dst=turned)
        profiles[i] = cv2.reduce(turned, 1, cv2.REDUCE_AVG)[:, 0]
    scores = np.diff(profiles, axis=1).var(axis=1)  # one call for all angles: numpy overhead dominated
    best_angle = float(angles[int(np.argmax(scores))])  # the first of equals, as the loop this replaced chose
    if best_angle == 0.0:
        return gray
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), best_angle, 1.0)
    return cv2.warpAffine(gray, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def line_split_row(gray: np.ndarray, low: float = 0.25, high: float = 0.65) -> int:
    """The row between the two text lines: the row of least stroke energy in the middle band."""
    height = gray.shape[0]
    profile = _stroke_profile(gray, inner=0.2)
    start, stop = int(height * low), max(int(height * high), int(height * low) + 1)
    return start + int(np.argmin(profile[start:stop]))


def line_choices(gray: np.ndarray, low: float = 0.25, high: float = 0.65) -> tuple[bool, ...]:
    """How to read a text block: (False,) one line, (True,) two lines, (False, True) try both.

    The block's shape decides when it is clear; in between, a stroke-free gap in the middle band
    between two inked lines says two lines, strokes all through say one, and anything else is
    read both ways (the grammar and the model's confidence then choose).
    """
    height, width = gray.shape[:2]
    aspect = height / max(1, width)
    if aspect < TWO_LINE_MIN_ASPECT - 0.08:
        return (False,)
    if aspect > TWO_LINE_MIN_ASPECT + 0.09:
        return (True,)
    profile = _stroke_profile(gray, inner=0.2)  # the plate's own side edges stand in every row
    start, stop = int(height * low), max(int(height * high), int(height * low) + 1)
    row = start + int(np.argmin(profile[start:stop]))
    edge = max(1, int(height * 0.03))
    if row - start < edge or stop - row <= edge:
        return (False, True)  # the least ink is at the band's edge: a margin, or a gap just outside it
    above, below = profile[:row], profile[row + 1:]
    top, bottom = float(above.max()), float(below.max())
    if min(top, bottom) < 0.3 * max(top, bottom):
        return (False, True)  # hardly any strokes on one side: not two lines of text
    ratio = float(profile[row]) / max(1e-6, min(top, bottom))
    if ratio < 0.25:
        return (True,)
    if ratio > 0.85:
        return (False,)
    return (False, True)


def has_two_lines(gray: np.ndarray, low: float = 0.25, high: float = 0.65) -> bool:
    """True when the text block more likely holds two lines than one."""
    return line_choices(gray, low, high)[-1]


def _fit_height(gray: np.ndarray, height: int) -> np.ndarray:
    h, w = gray.shape[:2]
    width = max(1, round(w * height / max(1, h)))
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)


def stitch_lines(gray: np.ndarray, low: float = 0.25, high: float = 0.65, gap: float = 0.0) -> np.ndarray:
    """Cut a two-line crop at its line gap and put the lower line to the right of the upper one,
    `gap` line heights of the block's median grey between them."""
    return _cut_at(gray, line_split_row(gray, low, high), gap)


def _cut_at(gray: np.ndarray, row: int, gap: float = 0.0) -> np.ndarray:
    """The block cut at `row` with the lower part laid to the right of the upper one, `gap` line
    heights of blank between (the block itself where either part would be under 4 rows)."""
    top, bottom = gray[:row], gray[row:]
    if top.shape[0] < 4 or bottom.shape[0] < 4:
        return gray
    height = max(top.shape[0], bottom.shape[0])
    parts = [_fit_height(top, height), _fit_height(bottom, height)]
    if gap > 0:
        blank = np.full((height, max(2, round(height * gap))), int(np.median(gray)), gray.dtype)
        parts.insert(1, blank)
    return np.hstack(parts)


def _percentiles(values: np.ndarray, percents: tuple[float, ...]) -> list[np.float64]:
    """`np.percentile(values, percents)` to the last bit (its linear rule), at a sixth of its cost:
    one partition around the few ranks needed instead of numpy's general machinery."""
    flat = values.reshape(-1)
    top = flat.size - 1
    places = [q / 100 * top for q in percents]
    ranks = sorted({rank for place in places for rank in (int(place), min(int(place) + 1, top))})
    ordered = np.partition(flat, ranks)
    out = []
    for place in places:
        below, above = float(ordered[int(place)]), float(ordered[min(int(place) + 1, top)])
        t, rise = place - int(place), above - below
        out.append(np.float64(above - rise * (1 - t) if t >= 0.5 else below + rise * t))  # numpy's _lerp
    return out


def _normalise(gray: np.ndarray, width: int) -> np.ndarray:
    resized = cv2.resize(gray, (width, INPUT_HEIGHT), interpolation=cv2.INTER_AREA
                         if gray.shape[1] > width else cv2.INTER_LINEAR).astype(np.float32)
    low, high = _percentiles(resized, (2, 98))
    scale = 1.0 / max(float(high - low), 16.0)
    return np.clip((resized - low) * scale, 0.0, 1.0) * 2.0 - 1.0


def plate_line(gray: np.ndarray, two_lines: bool | None = None) -> np.ndarray:
    """A plate crop as one line of text (uint8 grey); `two_lines` None lets the crop decide."""
    block = deskew(gray)
    if two_lines is None:
        two_lines = has_two_lines(block)
    return stitch_lines(block) if two_lines else block


def container_line(gray: np.ndarray, two_lines: bool | None = None) -> np.ndarray:
    """A container-code crop as one line of text (uint8 grey); `two_lines` None lets the crop decide."""
    vertical, block = _container_block(gray)
    if vertical:
        return block
    if two_lines is None:
        two_lines = has_two_lines(block, 0.3, 0.7)
    return stitch_lines(block, 0.3, 0.7) if two_lines else block


def _container_block(gray: np.ndarray) -> tuple[bool, np.ndarray]:
    h, w = gray.shape[:2]
    if h / max(1, w) > VERTICAL_MIN_ASPECT:
        return True, deskew(cv2.rotate(gray, cv2.ROTATE_90_COUNTERCLOCKWISE))
    return False, deskew(gray)


def plate_input(crop: np.ndarray, two_lines: bool | None = None) -> np.ndarray:
    """Model input (1, 32, PLATE_WIDTH) float32 in [-1, 1] for a plate crop."""
    return model_input(plate_line(to_gray(crop), two_lines), PLATE_WIDTH)


def container_input(crop: np.ndarray, two_lines: bool | None = None) -> np.ndarray:
    """Model input (1, 32, CONTAINER_WIDTH) float32 in [-1, 1] for a container-code crop."""
    return model_input(container_line(to_gray(crop), two_lines), CONTAINER_WIDTH)


def model_input(line: np.ndarray, width: int) -> np.ndarray:
    """Model input (1, 32, width) float32 in [-1, 1] for one line of text (uint8 grey)."""
    return _normalise(line, width)[None]


def plate_lines(crop: np.ndarray, gap: float = 0.0) -> list[np.ndarray]:
    """A plate crop as one line of text (grey): one, or one per reading of an unclear layout; two
    lines are laid side by side with `gap` line heights of blank between them."""
    block = deskew(to_gray(crop))
    return [stitch_lines(block, gap=gap) if two else block for two in line_choices(block)]


def may_have_two_lines(crop: np.ndarray) -> bool:
    """False where the crop's shape alone says one line (`line_choices` would not look further)."""
    height, width = crop.shape[:2]
    return height / max(1, width) >= TWO_LINE_MIN_ASPECT - 0.08


def container_lines(crop: np.ndarray) -> list[np.ndarray]:
    """A container-code crop as one line of text (grey): one, or one per reading of an unclear layout."""
    vertical, block = _container_block(to_gray(crop))
    if vertical:
        return [block]
    return [stitch_lines(block, 0.3, 0.7) if two else block for two in line_choices(block, 0.3, 0.7)]


FALLBACK_CUTS = (0.3, 0.4, 0.5, 0.6, 0.7)  # where a crop still unsure is also cut into two lines


def fallback_lines(crop: np.ndarray, plate: bool) -> list[np.ndarray]:
    """Every other way to lay out a crop the usual layouts left unsure: as one line, and cut into
    two lines at each of FALLBACK_CUTS of its height.

    The usual cut is the row of least stroke energy, and two things fool it: a background with
    strokes of its own (corrugated steel's ribs) hides the gap between the lines, and a loose box
    (a code painted low on a wide panel) puts the least energy in the margin above the text.
    Vertical container codes have one layout and get none here.
    """
    gray = to_gray(crop)
    if plate:
        block = deskew(gray)
    else:
        vertical, block = _container_block(gray)
        if vertical:
            return []
    cuts = [_cut_at(block, int(block.shape[0] * share)) for share in FALLBACK_CUTS]
    return [block, *(cut for cut in cuts if cut is not block)]


def second_looks(line: np.ndarray) -> list[np.ndarray]:
    """The same line seen three other ways, for crops the first look left unsure: smoothed (sensor
    noise, JPEG blocks), with a margin added and with a little of each end cut off (a localiser's
    box too tight or too loose moves the glyphs against the model's steps)."""
    width = line.shape[1]
    margin = max(1, round(width * 0.04))
    cut = max(1, round(width * 0.03))
    looks = [cv2.GaussianBlur(line, (0, 0), 1.0),
             cv2.copyMakeBorder(line, 0, 0, margin, margin, cv2.BORDER_REPLICATE)]
    if width > 4 * cut:
        looks.append(line[:, cut:width - cut])
    return looks
