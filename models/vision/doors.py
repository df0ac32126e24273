"""Container numbers on real doors and sides: a real text detector, then lines grouped into codes.

PP-OCRv4's DB text detector (`ch_PP-OCRv4_det_infer.onnx`, from the same wheel as the strong
recogniser; see `models.vision.strong`) finds the text on a frame scaled to `DET_WIDTH` pixels.
Each text box is read once by the strong recogniser (a free reading, for what the box is, and its
per-step probabilities folded to digits and A-Z). Boxes are then grouped as codes are painted:
owner, serial and check digit on one line (often detected as two or three words), owner above
serial, or one character per row (a column of boxes, or one tall box, laid out as a line). The
group's probabilities, laid end to end, are decoded under ISO 6346 with its check digit: CTC
steps of boxes in reading order are a valid alignment of the joined text. The pieces of one
column are read at the column's width. Where no sure code stands beside its size/type code, the
OpenCV localiser's vertical columns (`models.vision.localise.vertical_regions`) are read as
stacks too: the detector, trained on horizontal lines, cuts one-character-per-row codes into
pieces or misses them.

Rules that no score overrides:
- a box that reads as a weight or volume (`30.480 KG`, `67,200 LBS`, `MAX GROSS`, `CU.M`), or
  stands on one line with such a box, is never part of a code;
- codes near a size/type code (`22G1`, `45G1`) rank first; the others follow at lower confidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from models.vision.charsets import CONTAINER_CHARS
from models.vision.ctc import decode
from models.vision.grammar import ISO6346
from models.vision.localise import vertical_regions
from models.vision.strong import CONTAINER_ALIAS, OTHER, StrongRecogniser, session, stack_to_line

# The detector's input width (the frame is scaled to it; height a multiple of 32). At 640 px the
# letter-spaced codes painted on many doors (owner code over serial, ~30 px letters in a 1080p
# frame, a letter's width apart) fell below the detector's scale and were not boxed at all.
DET_WIDTH = 960
DET_THRESHOLD = 0.3  # DB probability above which a pixel is text (PaddleOCR's default)
BOX_THRESHOLD = 0.5  # mean DB probability a box must have (PaddleOCR's default)
UNCLIP = 1.6  # DB boxes are shrunk text kernels: grown back by area * UNCLIP / perimeter
MAX_BOXES = 12  # at most this many boxes are read, the most code-like first
GROW_BELOW = 0.9  # a group read less surely than this without its check digit is read again, grown
GROW_REACH = (1.0, 1.4)  # by this many line heights (a boxed check digit is about one height on)
MIN_HEIGHT = 14  # frame pixels: lower text is not a code read at a gate
COLUMNS = 5  # the OpenCV localiser's vertical columns read where the detector found no sure code
SURE = 0.9  # a code this sure beside its size/type code is the view's painted code: no more is looked for
# A column's glyphs that its crop's top or bottom edge cuts are left out of the stack: a T cut under
# its bar reads as an I, and IEMU0524620 is as valid as TEMU0524620; nine whole characters are no
# reading, and the column's other reads (grown, or the localiser's box) can still give the right one.
WHOLE_ONLY = True
COLUMN_MARGIN = 0.6  # a column is read with this many of its widths above and below its box
WEIGHT = re.compile(r"\d[.,]\d{3}|KGS?\b|KG\d|LBS?\b|GROSS|TARE|NET\b|PAYLOAD|CU\.?\s?(M|FT)|MAX|WT", re.I)
SIZE_TYPE = re.compile(r"^[1-9LMN]?[0-9][A-Z][0-9]$")  # 22G1, 45G1, L5G1; its first digit may be missed
NEAR_SIZE_TYPE = 0.75  # a code with no size/type code near it keeps this share of its confidence


@dataclass(eq=False)  # boxes are compared by identity: two boxes at one place are still two
class Box:
    """One detected text box (frame pixels), what the strong recogniser read in it, and its folded steps."""

    x: int
    y: int
    w: int
    h: int
    text: str = ""
    probs: np.ndarray | None = None  # (T, 1 + 36 + 1): blank, digits and A-Z, other
    weight: bool = False  # reads as a weight or volume: never part of a code
    vertical: bool = False

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x, y, w, h)."""
        return (self.x, self.y, self.w, self.h)


@dataclass(frozen=True)
class DoorCode:
    """A container number found in a frame: text, confidence, box, and whether a size/type code is near."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]
    size_type_near: bool


class DoorReader:
    """The DB detector and the strong recogniser, reading container numbers in whole frames."""

    def __init__(self, detector_path, recogniser: StrongRecogniser, threads: int = 1):
        self.detector = session(detector_path, threads)
        self.input_name = self.detector.get_inputs()[0].name
        self.recogniser = recogniser

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Text boxes in a BGR frame, in its pixels."""
        height, width = frame.shape[:2]
        scale = DET_WIDTH / width
        target_h = max(32, int(round(height * scale / 32)) * 32)
        small = cv2.resize(frame, (DET_WIDTH, target_h), interpolation=cv2.INTER_AREA)
        x = (small.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0).astype(np.float32)
        prob = self.detector.run(None, {self.input_name: x})[0][0, 0]
        mask = cv2.dilate((prob > DET_THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        sx, sy = width / DET_WIDTH, height / target_h
        boxes = []
        for contour in contours:
            x0, y0, w0, h0 = cv2.boundingRect(contour)
            if min(w0, h0) < 3:
                continue
            inside = np.zeros((h0, w0), np.uint8)
            cv2.drawContours(inside, [contour - [x0, y0]], -1, 1, -1)
            if float(cv2.mean(prob[y0:y0 + h0, x0:x0 + w0], inside)[0]) < BOX_THRESHOLD:
                continue
            area, perimeter = cv2.contourArea(contour), cv2.arcLength(contour, True)
            grow = area * UNCLIP / max(perimeter, 1.0)
            x1, y1 = max(0.0, (x0 - grow) * sx), max(0.0, (y0 - grow) * sy)
            x2, y2 = min(width, (x0 + w0 + grow) * sx), min(height, (y0 + h0 + grow) * sy)
            boxes.append(Box(int(x1), int(y1), int(x2 - x1), int(y2 - y1)))
        return boxes

    def read(self, frame: np.ndarray, min_confidence: float = 0.5) -> list[DoorCode]:
        """Every container number read in a BGR frame, best first."""
        boxes = [b for b in _columns(self.detect(frame)) if min(b.w, b.h) >= MIN_HEIGHT]
        boxes.sort(key=_code_likeness, reverse=True)
        boxes = [self._look(frame, box) for box in boxes[:MAX_BOXES]]
        _mark_weight_rows(boxes)
        size_types = [b for b in boxes if SIZE_TYPE.match(_plain(b.text))]
        found: dict[str, DoorCode] = {}
        self._read_groups(frame, _groups([b for b in boxes if not b.weight and b not in size_types]), size_types,
                          min_confidence, found)
        if not any(code.size_type_near and code.confidence >= SURE for code in found.values()):
            # No sure code beside its size/type code: the detector may have missed a vertical code
            # (one character per row, cut into pieces or not boxed at all). The OpenCV localiser's
            # columns are read as stacks too.
            columns = [Box(*region.box, vertical=True) for region in vertical_regions(frame, COLUMNS)]
            columns = [self._look(frame, column) for column in columns if min(column.w, column.h) >= MIN_HEIGHT]
            self._read_groups(frame, [[c] for c in columns if not c.weight], size_types, min_confidence, found)
        return sorted(found.values(), key=lambda c: -c.confidence)

    def _read_groups(self, frame: np.ndarray, groups: list[list[Box]], size_types: list[Box], min_confidence: float,
                     found: dict[str, DoorCode]) -> None:
        """Decode each group of boxes as one code; the surest reading of each text goes into `found`."""
        for group in groups:
            plain = "".join(_plain(b.text) for b in group)
            if not 6 <= len(plain) <= 14 or sum(c.isdigit() for c in plain) < 4:
                continue
            if len(group) > 1 and all(b.vertical for b in group):
                # One column, one read: its pieces read apart, each with its margin, overlap each other's
                # end characters (read twice) once the margin reaches the next piece.
                group = [self._look(frame, Box(*_union(group), vertical=True))]
            candidate = self._decode(group)
            if len(plain) < 11 and (candidate is None or candidate.probability < GROW_BELOW):
                # The boxed check digit is often left out of the detector's box, and a column's box
                # can stop short of its ends: the group's last box is read again, grown along the line.
                for reach in GROW_REACH:
                    grown = self._look(frame, _grown(group, frame.shape, len(plain), reach))
                    if grown.weight:
                        break
                    again = self._decode([*group[:-1], grown] if len(group) > 1 or not group[0].vertical
                                         else [grown])
                    if again is not None and (candidate is None or again.probability > candidate.probability):
                        candidate = again
                    if candidate is not None and candidate.probability >= GROW_BELOW:
                        break
            if candidate is None:
                continue
            confidence = self.recogniser.container_calibration(candidate.probability)
            box = _union(group)
            near = any(_near(box, s.box) for s in size_types)
            if not near:
                confidence *= NEAR_SIZE_TYPE
            if confidence < min_confidence:
                continue
            if candidate.text not in found or found[candidate.text].confidence < confidence:
                found[candidate.text] = DoorCode(candidate.text, round(confidence, 4), box, near)

    def _look(self, frame: np.ndarray, box: Box) -> Box:
        """Read one box: its free text (to know a weight or a size/type code) and its folded steps."""
        if box.vertical:
            # The detector's box hugs a column and can stop short of its end characters' thin strokes
            # (a T's bar read as I): a margin of about half a character (a column's width is about a
            # character's height) keeps them whole.
            grow_x, grow_y = box.w // 3, int(COLUMN_MARGIN * box.w)
            crop = frame[max(0, box.y - grow_y):box.y + box.h + grow_y, max(0, box.x - grow_x):box.x + box.w + grow_x]
            line = stack_to_line(crop, whole_only=WHOLE_ONLY)
        else:
            line = frame[box.y:box.y + box.h, box.x:box.x + box.w]
        probs = self.recogniser.probabilities(line)
        box.text = _greedy(probs, self.recogniser.classes)
        box.weight = bool(WEIGHT.search(box.text))
        box.probs = self.recogniser.folded(probs, CONTAINER_CHARS)
        return box

    def _decode(self, group: list[Box]):
        """The group's steps laid end to end, decoded under ISO 6346 (None: no valid reading)."""
        return decode(np.concatenate([b.probs for b in group]), CONTAINER_CHARS + OTHER, ISO6346,
                      alias=CONTAINER_ALIAS)


def _grown(group: list[Box], shape: tuple[int, ...], read: int, reach: float) -> Box:
    """The group's last box grown along its line: right by `reach` heights (a line), or up and down a column."""
    last, height, width = group[-1], shape[0], shape[1]
    if not last.vertical:
        right = min(width, last.x + last.w + int(reach * last.h))
        return Box(last.x, last.y, right - last.x, last.h)
    step = max(1, int(last.h / max(1, len(_plain(last.text)))))  # one character's height
    missing = max(1, 11 - read)
    top = max(0, last.y - (missing * step if len(group) == 1 else 0))
    bottom = min(height, last.y + last.h + int(reach * 1.5 * step))
    return Box(last.x, top, last.w, bottom - top, vertical=True)


def _greedy(probs: np.ndarray, classes: tuple[str, ...]) -> str:
    best = probs.argmax(-1)
    out, last = [], 0
    for k in best:
        if k != last and k != 0:
            out.append(classes[k])
        last = int(k)
    return "".join(out)


def _plain(text: str) -> str:
    """Letters and digits only, upper case."""
    return "".join(c for c in text.upper() if c.isascii() and c.isalnum())


def _code_likeness(box: Box) -> float:
    """How much a box looks like part of a code: the code is the largest lettering on a door or side
    (weight tables and logos' small print come later), words and columns before single glyphs."""
    aspect = max(box.w, box.h) / max(1, min(box.w, box.h))
    return min(box.w, box.h) * min(aspect, 4.0) ** 0.5


def _columns(boxes: list[Box]) -> list[Box]:
    """Tall boxes marked vertical, and runs of small boxes stacked one above another joined into columns."""
    for box in boxes:
        box.vertical = box.h > 2.5 * box.w
    singles = sorted((b for b in boxes if not b.vertical and b.w < 1.6 * b.h), key=lambda b: (b.y))
    used: set[int] = set()
    columns = []
    for i, first in enumerate(singles):
        if i in used:
            continue
        run = [first]
        for j in range(i + 1, len(singles)):
            if j in used:
                continue
            last = run[-1]
            other = singles[j]
            centre, other_centre = last.x + last.w / 2, other.x + other.w / 2
            if abs(centre - other_centre) < 0.6 * max(last.w, other.w) and 0 <= other.y - (last.y + last.h) \
                    < 1.2 * last.h and 0.6 < other.h / last.h < 1.6:
                run.append(other)
                used.add(j)
        if len(run) >= 4:
            used.add(i)
            column = _union(run)
            columns.append(Box(*column, vertical=True))
    out = [b for i, b in enumerate(singles) if i not in used] + [b for b in boxes if b not in singles] + columns
    _one_width(out)
    return out


def _in_one_column(a: Box, b: Box) -> bool:
    """Two vertical boxes one above the other in one column (centres aligned, a short gap between)."""
    if not (a.vertical and b.vertical):
        return False
    top, bottom = (a, b) if a.y <= b.y else (b, a)
    gap = bottom.y - (top.y + top.h)
    return (abs(a.x + a.w / 2 - b.x - b.w / 2) < 0.6 * max(a.w, b.w)
            and -0.2 * min(a.h, b.h) <= gap < 2.0 * max(a.w, b.w))


def _one_width(boxes: list[Box]) -> None:
    """Vertical boxes stacked in one column take the column's left and right edges (in place).

    A column of one code has one width, but the detector boxes its pieces (owner code, serial) by
    their own glyphs: a piece of narrow letters (I, U, 1) gets a box narrower than a T or an M
    above it, which then reads as an I.
    """
    columns = [b for b in boxes if b.vertical]
    changed = True
    while changed:
        changed = False
        for a in columns:
            for b in columns:
                if a is not b and _in_one_column(a, b) and (a.x, a.w) != (b.x, b.w):
                    left, right = min(a.x, b.x), max(a.x + a.w, b.x + b.w)
                    for box in (a, b):
                        box.x, box.w = left, right - left
                    changed = True


def _mark_weight_rows(boxes: list[Box]) -> None:
    """Boxes on one line with a weight or volume box, within three line heights of it (or of another box so
    marked), are weights too (in place).

    The detector often boxes a weight table's figures apart from their units and labels
    (`MAX GROSS` | `30480` | `KG`): a figure read without its separator is still part of the table.
    """
    changed = True
    while changed:
        changed = False
        for a in boxes:
            if not a.weight:
                continue
            for b in boxes:
                if not b.weight and _same_row(a, b):
                    b.weight = changed = True


def _same_row(a: Box, b: Box) -> bool:
    """Two horizontal boxes on one text line, of one height, at most three line heights apart."""
    if a.vertical or b.vertical:
        return False
    shared = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    gap = max(a.x, b.x) - min(a.x + a.w, b.x + b.w)
    return shared > 0.6 * min(a.h, b.h) and 0.6 < b.h / a.h < 1.6 and gap < 3.0 * min(a.h, b.h)


def _groups(boxes: list[Box]) -> list[list[Box]]:
    """Boxes alone, and runs of up to three in reading order: the next word on the line, or the line below."""
    def follows(a: Box, b: Box) -> bool:
        if a.vertical or b.vertical:
            return (a.vertical and b.vertical and abs(a.x + a.w / 2 - b.x - b.w / 2) < 0.6 * max(a.w, b.w)
                    and -0.2 * a.w <= b.y - (a.y + a.h) < 2.0 * a.w)
        same_line = min(a.y + a.h, b.y + b.h) - max(a.y, b.y) > 0.5 * min(a.h, b.h)
        if same_line:
            return 0 <= b.x - (a.x + a.w) < 2.0 * a.h and 0.5 < b.h / a.h < 2.0
        # the line below: left-aligned, or under it (an owner code is often centred or right-aligned over the serial)
        overlap = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
        under = abs(b.x - a.x) < 1.5 * a.h or overlap > 0.5 * min(a.w, b.w)
        return -0.5 * a.h <= b.y - (a.y + a.h) < 1.0 * a.h and under and 0.6 < b.h / a.h < 1.6

    out = [[b] for b in boxes]
    for a in boxes:
        for b in boxes:
            if b is not a and follows(a, b):
                out.append([a, b])
                out += [[a, b, c] for c in boxes if c is not a and c is not b and follows(b, c)]
    return out


def _union(boxes: list[Box]) -> tuple[int, int, int, int]:
    x1, y1 = min(b.x for b in boxes), min(b.y for b in boxes)
    x2, y2 = max(b.x + b.w for b in boxes), max(b.y + b.h for b in boxes)
    return (x1, y1, x2 - x1, y2 - y1)


def _near(code: tuple[int, int, int, int], size_type: tuple[int, int, int, int]) -> bool:
    """True when a size/type box lies within two code-line heights of the code's box."""
    x, y, w, h = code
    sx, sy, sw, sh = size_type
    reach = 2.5 * min(w, h)
    return sx < x + w + reach and sx + sw > x - reach and sy < y + h + reach and sy + sh > y - reach
