"""The strong general recogniser: PP-OCRv4's text recogniser, run directly with onnxruntime.

PP-OCRv4's mobile recogniser (Apache-2.0, `ch_PP-OCRv4_rec_infer.onnx`, 10.9 MB) reads printed
text of any kind, Chinese included, and was trained on real photographs: on real crops it reads
what our small synthetic-trained models miss. It is 10-20x slower than them, so the reader asks
it only about crops its fast model is unsure of (the cascade in `models.vision.reader`).

It is not our code that decodes it: its 6,625 classes are folded into the few a grammar needs
(our characters, their lower-case and full-width forms, separators as the blank, and one class
for everything else), and `models.vision.ctc` decodes that under the VN/CN plate grammars or
ISO 6346 with its check digit, O/0 and I/1 read as each other where the grammar needs the other.
A string outside the grammar is never a reading.

Where the file comes from (`runtime_model`): the folded copy committed in `models/` (the same
model with its element-wise chains folded into its convolutions, `models.training.fold_strong`),
else (`find_model`) `models/<name>` when one is put there, else the rapidocr_onnxruntime 1.4.4
wheel's `models/` folder, found without importing the package (its code is never run). Only
onnxruntime, OpenCV and numpy run. See `models/strong_reader.md`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from devices.protocols.plates import CN_PROVINCES
from models.vision.calibration import IDENTITY, Calibration, load_calibration
from models.vision.ctc import Candidate, decode
from models.vision.preprocess import to_gray
from models.vision.recogniser import ModelError, cpu_session_options

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent
REC_NAME = "ch_PP-OCRv4_rec_infer.onnx"
DET_NAME = "ch_PP-OCRv4_det_infer.onnx"
WHEEL = "rapidocr_onnxruntime"  # 1.4.4 ships both files under its package's models/
# The same models with their element-wise chains folded (`python -m models.training.fold_strong`): the
# same outputs to float rounding in about three quarters of the time; committed to models/.
FOLDED = {REC_NAME: "ch_PP-OCRv4_rec_folded.onnx", DET_NAME: "ch_PP-OCRv4_det_folded.onnx"}
SHA256 = {REC_NAME: "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
          DET_NAME: "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
          FOLDED[REC_NAME]: "6aec93351c6f760f1d046f0e0e9752263969d2984a654318414b6f85712de0b7",
          FOLDED[DET_NAME]: "0005e2266729d58dabbf76d77b3c5c238983ea305ba7d37049732af828e08373"}
# The calibration maps of the strong model's grammar-decoded readings, fitted on synthetic
# calibration-seed crops (`python -m models.training.calibrate_strong`), never on real ones.
PLATE_CALIBRATION = MODELS_DIR / "strong_plates.onnx"  # the map's path is `strong_plates.calibration.json`
CONTAINER_CALIBRATION = MODELS_DIR / "strong_containers.onnx"
HEIGHT = 48  # the recogniser's input height
PROVINCE_SHARE = 0.35  # of a one-line CN plate's width: the province glyph, the letter and the dot (GA 36)
SEPARATORS = " ·•・‧-－—_.．,，:：'\"|[]()【】「」"  # separators, and the box round a check digit
OTHER = "\x00"  # the folded class for every character no grammar uses
PLATE_ALIAS = {"O": "0", "I": "1", "0": "O", "1": "I"}
CONTAINER_ALIAS = {"O": "0", "0": "O", "I": "1", "1": "I"}


def find_model(name: str) -> Path | None:
    """The ONNX file: `models/<name>` if present, else the installed rapidocr_onnxruntime wheel's copy."""
    local = MODELS_DIR / name
    if local.is_file():
        return local
    try:
        spec = importlib.util.find_spec(WHEEL)  # locates the package; imports none of its code
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    return None


def runtime_model(name: str) -> Path | None:
    """The file the reader runs for `name`: its folded copy in models/ when there, else `find_model(name)`."""
    folded = MODELS_DIR / FOLDED.get(name, name)
    return folded if folded.is_file() else find_model(name)


def verified(path: Path) -> bool:
    """True when the file is the one the card describes (its sha256); logs a warning if not."""
    expected = SHA256.get(path.name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected and digest != expected:
        log.warning("vision: %s is not the model models/strong_reader.md describes (sha256 %s…); using it anyway",
                    path, digest[:16])
        return False
    return True


def session(path: Path, threads: int) -> ort.InferenceSession:
    """One single-threaded (by default) CPU session, or a ModelError naming the file and the fix."""
    try:
        return ort.InferenceSession(str(path), cpu_session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelError(f"{path}: not a loadable ONNX model ({error}); reinstall it with "
                         f"`pip install --no-deps {WHEEL}==1.4.4` or delete it from models/") from error


class StrongRecogniser:
    """PP-OCRv4's recogniser: a line image in, per-step probabilities over its 6,625 classes out."""

    def __init__(self, path: Path, threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file missing; `pip install --no-deps {WHEEL}==1.4.4`")
        verified(self.path)
        self.session = session(self.path, threads)
        listed = self.session.get_modelmeta().custom_metadata_map.get("character")
        if not listed:
            raise ModelError(f"{self.path}: no 'character' list in its metadata: not a PP-OCR recogniser")
        self.classes = ("", *listed.split("\n"), " ")  # blank first, space last, as PaddleOCR adds them
        self.input_name = self.session.get_inputs()[0].name
        self.plate_calibration = load_calibration(PLATE_CALIBRATION)
        self.container_calibration = load_calibration(CONTAINER_CALIBRATION)

    def probabilities(self, line: np.ndarray) -> np.ndarray:
        """(T, 6625) probabilities for one line of text (BGR or grey), T = its width at 48 px / 8."""
        return self.session.run(None, {self.input_name: line_input(line)})[0][0]

    def folded(self, probs: np.ndarray, charset: str) -> np.ndarray:
        """`probs` folded to (T, 1 + len(charset) + 1): blank (with separators), `charset`, other."""
        order, starts = _folding(self.classes, charset)
        grouped = np.add.reduceat(probs[:, order], starts, axis=1)
        other = np.clip(1.0 - grouped.sum(axis=1, keepdims=True), 0.0, 1.0)
        return np.concatenate([grouped, other], axis=1)

    def read(self, lines: list[np.ndarray], charset: str, language, alias: dict[str, str],
             calibration: Calibration = IDENTITY) -> tuple[Candidate | None, float]:
        """The likeliest grammar-valid reading over `lines` (ways to lay one crop out) and its calibrated
        confidence; (None, 0.0) when no line gives a valid reading."""
        best: Candidate | None = None
        for line in lines:
            candidate = decode(self.folded(self.probabilities(line), charset), charset + OTHER, language,
                               alias=alias)
            if candidate is not None and (best is None or candidate.probability > best.probability):
                best = candidate
        return best, (calibration(best.probability) if best is not None else 0.0)

    def province(self, line: np.ndarray) -> tuple[str, float]:
        """The likeliest CN province on a one-line plate and its peak probability, from the line's left
        PROVINCE_SHARE alone (the province glyph, the letter and the dot of a GA 36 plate)."""
        left = line[:, :max(8, int(round(line.shape[1] * PROVINCE_SHARE)))]
        probs = self.probabilities(left)
        columns = _province_columns(self.classes)
        peaks = probs[:, columns].max(axis=0)
        best = int(peaks.argmax())
        return CN_PROVINCES[best], float(peaks[best])

    def text(self, line: np.ndarray) -> tuple[str, float]:
        """The free (greedy) reading of a line, and its mean character probability: no grammar."""
        probs = self.probabilities(line)
        best = probs.argmax(-1)
        chars, sure, last = [], [], 0
        for step, k in enumerate(best):
            if k != last and k != 0:
                chars.append(self.classes[k])
                sure.append(float(probs[step, k]))
            last = int(k)
        return "".join(chars), (float(np.mean(sure)) if sure else 0.0)


def line_input(line: np.ndarray) -> np.ndarray:
    """(1, 3, 48, W) float32 in [-1, 1], as PaddleOCR feeds its recogniser (W = the line's width at 48 px)."""
    if line.ndim == 2:
        line = cv2.cvtColor(line, cv2.COLOR_GRAY2BGR)
    height, width = line.shape[:2]
    target = max(HEIGHT // 2, int(math.ceil(HEIGHT * width / max(1, height))))
    resized = cv2.resize(line, (target, HEIGHT), interpolation=cv2.INTER_AREA if height > HEIGHT
                         else cv2.INTER_LINEAR)
    return (resized.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0).astype(np.float32)


@lru_cache(maxsize=2)
def _province_columns(classes: tuple[str, ...]) -> np.ndarray:
    """The recogniser's class of each CN province character, in CN_PROVINCES order."""
    where = {char: k for k, char in enumerate(classes) if k}
    missing = [char for char in CN_PROVINCES if char not in where]
    if missing:
        raise ModelError(f"the strong recogniser cannot emit {missing}: not the PP-OCR model the card describes")
    return np.array([where[char] for char in CN_PROVINCES])


@lru_cache(maxsize=8)
def _folding(classes: tuple[str, ...], charset: str) -> tuple[np.ndarray, np.ndarray]:
    """Column order and group starts for `np.add.reduceat`: group 0 the blank and the separators, then
    one group per `charset` character (itself, lower case, full width)."""
    groups: list[list[int]] = [[0]]
    where = {char: k for k, char in enumerate(classes) if k}
    groups[0] += [where[c] for c in SEPARATORS if c in where]
    for char in charset:
        forms = {char, char.lower()}
        if char.isascii() and char.isalnum():
            forms.add(chr(ord(char) + 0xFEE0))  # the full-width form: Ａ, ０
        groups.append(sorted(where[f] for f in forms if f in where))
    order = [k for group in groups for k in group]
    missing = [char for char, group in zip(charset, groups[1:], strict=True) if not group]
    if missing:
        raise ModelError(f"the strong recogniser cannot emit {missing}: not the PP-OCR model the card describes")
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
    return np.array(order), starts


def stack_to_line(gray: np.ndarray, height: int = HEIGHT, whole_only: bool = False) -> np.ndarray:
    """A vertical code (upright characters one above another) laid out as one line, left to right.

    The ink is the minority class of an Otsu split of the column; its connected pieces that overlap
    in rows are one character (a boxed check digit with its box, an i's dot); characters taller
    than a fifth of the median, in top-to-bottom order, are cut to their own columns, scaled to
    `height` less a margin and set side by side a sixth of the line height apart (wider gaps made
    PP-OCR read spaced, full-width characters and drop some). A stack with fewer
    than four characters found comes back turned a quarter left. `whole_only`: pieces the crop's top
    or bottom edge cuts are left out (part of a letter, or of a door handle, is no character).
    """
    gray = to_gray(gray)
    rows, cols = gray.shape[:2]
    fallback = cv2.rotate(gray, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if rows < 16 or cols < 4:
        return fallback
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if cv2.countNonZero(ink) > ink.size / 2:
        ink = cv2.bitwise_not(ink)
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    pieces = [tuple(int(v) for v in stats[k, :4]) for k in range(1, count)
              if stats[k, cv2.CC_STAT_AREA] >= 12 and stats[k, cv2.CC_STAT_WIDTH] < 0.95 * cols
              and stats[k, cv2.CC_STAT_HEIGHT] < 0.5 * rows]
    if whole_only:  # pieces the crop's top or bottom edge cuts are not whole characters (a bar, a handle)
        pieces = [p for p in pieces if p[1] > 0 and p[1] + p[3] < rows]
    pieces.sort(key=lambda p: p[1])
    chars: list[list[int]] = []  # x1, y1, x2, y2 of each character
    for x, y, w, h in pieces:
        if chars and y < chars[-1][3] - 0.3 * min(h, chars[-1][3] - chars[-1][1]):
            last = chars[-1]
            last[:] = [min(last[0], x), min(last[1], y), max(last[2], x + w), max(last[3], y + h)]
        else:
            chars.append([x, y, x + w, y + h])
    if not chars:
        return fallback
    tall = float(np.median([c[3] - c[1] for c in chars]))
    chars = [c for c in chars if c[3] - c[1] >= 0.5 * tall and c[3] - c[1] <= 2.0 * tall]
    if len(chars) < 4:
        return fallback
    inner = height - 2 * max(2, height // 8)
    margin = (height - inner) // 2
    background = int(np.median(gray))
    line = []
    for x1, y1, x2, y2 in chars:
        pad = max(1, int(0.08 * (y2 - y1)))
        piece = gray[max(0, y1 - pad):min(rows, y2 + pad), max(0, x1 - pad):min(cols, x2 + pad)]
        scale = inner / max(1, piece.shape[0])
        piece = cv2.resize(piece, (max(1, int(round(piece.shape[1] * scale))), inner), interpolation=cv2.INTER_AREA
                           if scale < 1 else cv2.INTER_LINEAR)
        piece = cv2.copyMakeBorder(piece, margin, height - inner - margin, 0, max(2, inner // 6),
                                   cv2.BORDER_CONSTANT, value=background)
        line.append(piece)
    return cv2.copyMakeBorder(np.hstack(line), 0, 0, max(2, inner // 6), 0, cv2.BORDER_CONSTANT, value=background)
