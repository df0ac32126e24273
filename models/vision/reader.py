"""Read plates and container codes: from a crop, or from a whole frame (localise, then read).

Readings are grammar-checked: a plate must fit the Vietnamese or Chinese grammar, a container
number ISO 6346 with its check digit. What does not fit is not a reading. Bad input of any kind
(empty, tiny, grey, corrupt, huge) gives no reading, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from devices.protocols.plates import CN_PROVINCES
from models.vision import preprocess
from models.vision.calibration import IDENTITY, Calibration, load_calibration
from models.vision.cascade_vote import EVEN, Ballot, look_alikes, province_only, settle
from models.vision.charsets import CONTAINER_CHARS, PLATE_CHARS
from models.vision.ctc import decode, label_probability, reading_mass
from models.vision.doors import DoorReader
from models.vision.formatting import display_container, display_plate
from models.vision.grammar import ISO6346, PLATES, AnyOf, Grammar
from models.vision.localise import code_regions, overlap_area, plate_regions, vertical_regions
from models.vision.recogniser import Recogniser
from models.vision.strong import (
    CONTAINER_ALIAS,
    DET_NAME,
    PLATE_ALIAS,
    REC_NAME,
    StrongRecogniser,
    runtime_model,
    stack_to_line,
)
from models.vision.strong import OTHER as STRONG_OTHER

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent.parent
PLATE_MODEL = MODELS_DIR / "plate_reader.onnx"
CONTAINER_MODEL = MODELS_DIR / "container_reader.onnx"
# A second model of each kind, trained on other crops from other weights, gives a second opinion
# where the first is not sure: the two models' probabilities are averaged (optional files).
PLATE_SECOND_MODEL = MODELS_DIR / "plate_reader_second.onnx"
CONTAINER_SECOND_MODEL = MODELS_DIR / "container_reader_second.onnx"
# A third, trained apart again, joins the second where it is installed: the average is over all.
PLATE_THIRD_MODEL = MODELS_DIR / "plate_reader_third.onnx"
CONTAINER_THIRD_MODEL = MODELS_DIR / "container_reader_third.onnx"
MIN_SIDE = 8  # pixels: a crop smaller than this holds nothing readable
MAX_PIXELS = 40_000_000  # larger frames are scaled down before localisation
AGREE = 2  # looks that must give an unsure reading before it counts
SURE = 0.9  # a reading this sure is neither read the other layout's way nor looked at again
CONSULT = 0.99  # a first reading less sure than this is read again with the second model's opinion
# The cascade: a crop whose fast reading is less sure than this (calibrated: fewer than 1 in 100 of
# readings that sure are wrong) is also read by the strong general recogniser, and the two vote.
CASCADE = 0.99
CASCADE_FRAMES = True  # the vertical columns of a frame the fast models read something in go to the cascade too
# The best PLATE_FRAME_STRONG plate regions of a frame (the localiser's ranking) go to the cascade where the
# fast models are unsure of them, even where they read nothing in them (a real plate the synthetic-trained
# fast models cannot read at all: see the plate card, "Plates in frames"); the other regions never do
# (a container door holds many plate-shaped words: each strong read costs ~10 ms).
PLATE_FRAME_STRONG = 3
# In those regions a reading the fast models are sure of is read by the strong recogniser too, and they vote:
# on real plates the fast models are sure of wrong readings (G read 6, M read H, at calibrated 1.0) that
# the province check alone does not see. Crops skip this (their speed target); a frame costs one strong read.
VERIFY_SURE_IN_FRAMES = True
# Where the strong recogniser reads nothing valid in a crop the fast models left unsure, their reading stands
# only at this calibrated confidence (SURE): on realistic synthetic crops the readings that stood below it were
# wrong about a third of the time (small two-line plates: the strong model misses the province glyph, the fast
# models guess it), and a wrong plate can match another truck's declaration.
UNCONFIRMED_MIN = SURE
STRONG_LINE_GAP = 0.5  # line heights of blank between the two lines of a plate the strong recogniser reads
# A Vietnamese plate crop the fast models are sure of is read by the strong recogniser too, and where it reads,
# at better than even, a plate apart only in look-alike glyphs (1/7, E/F, 8/B...) there is no reading. On real
# Vietnamese crops the fast models' sure readings were wrong 4 % of the time in just such glyphs (issue #29);
# on synthetic crops they are nearly never wrong, and this cost 1 right reading in about 1,600. It costs one
# strong read (~10 ms) per sure Vietnamese crop. Chinese crops have the province check instead.
VERIFY_VN_LOOK_ALIKES = True
VERTICAL_REGIONS = 5  # vertical columns of a frame read by the cascade beside the text detector's lines


@dataclass(frozen=True)
class Reading:
    """One plate or container number read from an image."""

    text: str  # normalised: 29C12345, 桂A12345, CSQU3054383
    confidence: float  # 0..1
    box: tuple[int, int, int, int]  # x, y, w, h in the image's pixels
    kind: str  # "VN", "CN" or "ISO6346"

    @property
    def display(self) -> str:
        """The reading as it is painted: 29C-123.45, 桂A·12345, CSQU 305438 3."""
        return display_container(self.text) if self.kind == "ISO6346" else display_plate(self.text, self.kind)


def as_image(frame: object) -> np.ndarray | None:
    """A uint8 BGR or grey image from whatever the caller passed, or None when it is not one."""
    if isinstance(frame, bytes | bytearray | memoryview):
        data = np.frombuffer(frame, np.uint8)
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        return None
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        return None
    if frame.dtype != np.uint8:
        if not np.issubdtype(frame.dtype, np.number):
            return None
        values = np.nan_to_num(frame.astype(np.float32))
        if values.max(initial=0.0) <= 1.0:
            values = values * 255.0
        frame = np.clip(values, 0, 255).astype(np.uint8)
    if min(frame.shape[:2]) < MIN_SIDE:
        return None
    return np.ascontiguousarray(frame)


def _is_flat(image: np.ndarray) -> bool:
    """True for a grey or black card, which holds no text: the spread of all its values is tiny."""
    # OpenCV's one pass over a frame takes ~1 ms where numpy's std takes ~15 ms; the plane view
    # pools the channels, as numpy's std of the whole array does.
    plane = image.reshape(image.shape[0], -1)
    return float(cv2.meanStdDev(plane)[1][0, 0]) < 3.0


class VisionReader:
    """Both recognisers, their sessions created once; thread-safe for concurrent reads."""

    def __init__(self, threads: int = 1, plate_model: Path = PLATE_MODEL, container_model: Path = CONTAINER_MODEL,
                 min_confidence: float = 0.5, calibrated: bool = True, second_looks: bool = True,
                 plate_second: Path | None = PLATE_SECOND_MODEL,
                 container_second: Path | None = CONTAINER_SECOND_MODEL,
                 plate_third: Path | None = PLATE_THIRD_MODEL,
                 container_third: Path | None = CONTAINER_THIRD_MODEL,
                 strong: Path | None | bool = True):
        """`min_confidence` applies to the reported confidence; `calibrated=False` reports the raw one;
        `second_looks` reads crops the first look left unsure three more ways and lets the looks vote;
        `plate_second` / `container_second`: the second-opinion models (None, or a missing file: none);
        `plate_third` / `container_third`: third opinions, used only beside a second one;
        `strong`: the strong general recogniser of the cascade (True: found as `runtime_model` says;
        a path; False or None: none, the fast models read alone)."""
        self.threads, self.min_confidence, self.second_looks = threads, min_confidence, second_looks
        self.plates = Recogniser(plate_model, PLATE_CHARS, preprocess.PLATE_WIDTH, threads)
        self.plate_second = _optional(plate_second, PLATE_CHARS, preprocess.PLATE_WIDTH, threads)
        self.plate_third = (_optional(plate_third, PLATE_CHARS, preprocess.PLATE_WIDTH, threads)
                            if self.plate_second is not None else None)
        # The maps also decide when a crop is unsure enough to be looked at again, so they are
        # loaded even when the raw probability is reported (as the calibration fit needs it).
        self.plate_calibration = load_calibration(plate_model)
        self.container_calibration = load_calibration(container_model)
        self.report_calibrated = calibrated
        # The container-code model is optional: without it, container numbers are not read (logged once).
        self.containers = (Recogniser(container_model, CONTAINER_CHARS, preprocess.CONTAINER_WIDTH, threads)
                           if Path(container_model).is_file() else None)
        if self.containers is None:
            log.warning("vision: %s is not installed; container numbers will not be read", container_model)
        self.container_second = (_optional(container_second, CONTAINER_CHARS, preprocess.CONTAINER_WIDTH, threads)
                                 if self.containers is not None else None)
        self.container_third = (_optional(container_third, CONTAINER_CHARS, preprocess.CONTAINER_WIDTH, threads)
                                if self.container_second is not None else None)
        strong_path = runtime_model(REC_NAME) if strong is True else (Path(strong) if strong else None)
        if strong is True and strong_path is None:
            log.warning("vision: %s not found in models/ nor in the %s wheel; crops the fast models are unsure "
                        "of are not read again by the strong recogniser", REC_NAME, "rapidocr_onnxruntime")
        self.strong = StrongRecogniser(strong_path, threads) if strong_path is not None else None
        # Container numbers in whole frames: the text detector beside the strong recogniser, where both are.
        detector = None
        if self.strong is not None:
            detector = runtime_model(DET_NAME) if strong is True else strong_path.with_name(DET_NAME)
        self.doors = (DoorReader(detector, self.strong, threads) if detector is not None and detector.is_file()
                      and self.containers is not None else None)

    # -- crops --------------------------------------------------------------------------------
    def read_plate_crop(self, crop: object) -> Reading | None:
        """The plate in a crop around one plate, or None."""
        return self._read_crop(crop, plate=True)

    def read_container_crop(self, crop: object) -> Reading | None:
        """The container number in a crop around one painted code, or None."""
        return self._read_crop(crop, plate=False)

    def _read_crop(self, crop: object, plate: bool) -> Reading | None:
        if not plate and self.containers is None:
            return None
        try:
            image = as_image(crop)
            if image is None or _is_flat(image):
                return None
            image, scale = _bounded(image)
            box = (0, 0, int(image.shape[1] / scale), int(image.shape[0] / scale))
            return self._read_crops([image], [box], plate, known_text=True, cascade=self.strong is not None)[0]
        except Exception:  # a reader must never take the camera driver down
            log.exception("vision: reading a crop failed; treated as no reading")
            return None

    # -- frames -------------------------------------------------------------------------------
    def read_plates(self, frame: object) -> list[Reading]:
        """Every plate read in a camera frame, best first; [] when none (or the frame is bad)."""
        return self._read_frame(frame, plate=True)

    def read_container_codes(self, frame: object) -> list[Reading]:
        """Every valid container number read in a frame, best first; [] when none."""
        return self._read_frame(frame, plate=False)

    def read_container_codes_of_vehicle(self, frames: list[object]) -> list[Reading]:
        """The container numbers of one vehicle from several frames (its camera views, or moments), voted
        (`vote_container_codes`); best first."""
        return vote_container_codes([self.read_container_codes(frame) for frame in frames])

    def _read_frame(self, frame: object, plate: bool) -> list[Reading]:
        if not plate and self.containers is None:
            return []
        try:
            image = as_image(frame)
            if image is None or _is_flat(image):
                return []
            image, scale = _bounded(image)
            if not plate and self.doors is not None:
                return self._read_doors(image, scale)
            regions = plate_regions(image) if plate else code_regions(image)
            crops, boxes, cores = [], [], []
            for region in regions:
                x, y, w, h = region.box
                if w >= MIN_SIDE and h >= MIN_SIDE:
                    crops.append(image[y:y + h, x:x + w])
                    boxes.append(tuple(int(v / scale) for v in region.box))
                    cx, cy, cw, ch = region.core if region.core and min(region.core[2:]) >= MIN_SIDE else region.box
                    cores.append(image[cy:cy + ch, cx:cx + cw])
            cascade = plate and self.strong is not None
            readings = [r for r in self._read_crops(crops, boxes, plate, cascade=cascade,
                                                    strong_first=PLATE_FRAME_STRONG,
                                                    strong_crops=cores if cascade else None)
                        if r is not None]
            return _one_per_place(_best_per_text(readings))
        except Exception:  # a reader must never take the camera driver down
            log.exception("vision: reading a frame failed; treated as no reading")
            return []

    def _read_doors(self, image: np.ndarray, scale: float) -> list[Reading]:
        """Container numbers in a frame: the text detector's lines and stacks and the OpenCV localiser's
        vertical columns read by the strong recogniser (`models.vision.doors`), and those columns read
        by the cascade too."""
        codes = self.doors.read(image, self.min_confidence)
        found = [Reading(code.text, code.confidence, tuple(int(v / scale) for v in code.box), "ISO6346")
                 for code in codes]
        if any(code.size_type_near and code.confidence >= SURE for code in codes):
            return _one_per_place(found)  # a sure code beside its size/type code: the painted code of this view
        crops, boxes = [], []
        for region in vertical_regions(image, VERTICAL_REGIONS):
            x, y, w, h = region.box
            if w >= MIN_SIDE and h >= MIN_SIDE:
                crops.append(image[y:y + h, x:x + w])
                boxes.append(tuple(int(v / scale) for v in region.box))
        found += [r for r in self._read_crops(crops, boxes, False, cascade=CASCADE_FRAMES) if r is not None]
        return _one_per_place(_best_per_text(found))

    def _read_crops(self, crops: list[np.ndarray], boxes: list[tuple[int, int, int, int]],
                    plate: bool, known_text: bool = False, cascade: bool = False,
                    strong_first: int | None = None,
                    strong_crops: list[np.ndarray] | None = None) -> list[Reading | None]:
        """Read each crop; `known_text`: the crops surely hold a plate or code (not a localiser's guess);
        `cascade`: crops the fast models leave unsure go to the strong recogniser (instead of more looks);
        `strong_first`: only the first so many crops (a localiser's best) go to it, even those the fast
        models read nothing in (None: every crop they read something in, and every crop of `known_text`);
        `strong_crops`: what the strong recogniser reads of each crop instead (a frame region's tight core)."""
        if not crops:
            return []
        to_lines = preprocess.plate_lines if plate else preprocess.container_lines
        model = self.plates if plate else self.containers
        width = preprocess.PLATE_WIDTH if plate else preprocess.CONTAINER_WIDTH
        language = PLATES if plate else ISO6346
        calibration = self.plate_calibration if plate else self.container_calibration
        others = [m for m in ((self.plate_second, self.plate_third) if plate
                              else (self.container_second, self.container_third)) if m is not None]
        lines = [to_lines(crop) for crop in crops]  # an unclear layout has a second way to read it
        heard: list[list[tuple[str, float]]] = [[] for _ in crops]  # valid readings, raw probability
        first: dict[int, list[np.ndarray]] = {}  # the first model's probabilities for each way read
        first_inputs: dict[int, list[np.ndarray]] = {}  # and its inputs, which the other opinions read too
        consulted: set[int] = set()  # crops both models read, their probabilities averaged

        matrices: list[list[np.ndarray]] = [[] for _ in crops]  # what each crop's readings were decoded from

        # Plates: each matrix's province prior (the mean of the priors of the models averaged in it) is
        # swapped for a flat one before decoding.
        alone_prior = _guangxi_prior(model) if plate else None
        pooled_prior = (float(np.mean([_guangxi_prior(m) for m in (model, *others)])) if plate else None)

        def hear(jobs: list[tuple[int, np.ndarray]], probs: np.ndarray | list[np.ndarray],
                 guangxi: float | None) -> None:
            for (owner, _), p in zip(jobs, probs, strict=True):
                if guangxi is not None:
                    p = _flat_province_prior(p, guangxi)
                matrices[owner].append(p)
                candidate = decode(p, model.charset, language)
                if candidate is not None:
                    heard[owner].append((candidate.text, candidate.probability))

        def look(jobs: list[tuple[int, np.ndarray]], keep: bool = False) -> None:
            alone = [job for job in jobs if job[0] not in consulted]
            paired = [job for job in jobs if job[0] in consulted]
            if alone:
                inputs = [preprocess.model_input(line, width) for _, line in alone]
                probs = model.probabilities(inputs)
                hear(alone, probs, alone_prior)
                if keep:
                    for (owner, _), p, given in zip(alone, probs, inputs, strict=True):
                        first.setdefault(owner, []).append(p)
                        first_inputs.setdefault(owner, []).append(given)
            if paired and others:
                inputs = [preprocess.model_input(line, width) for _, line in paired]
                hear(paired, opinion(model.probabilities(inputs), inputs), pooled_prior)

        def opinion(ours: np.ndarray, inputs: list[np.ndarray]) -> np.ndarray:
            # every model's per-step probabilities, averaged
            return (ours + sum(other.probabilities(inputs) for other in others)) / (1 + len(others))

        def certainty(owner: int) -> float:
            return calibration(max(raw for _, raw in heard[owner])) if heard[owner] else 0.0

        def worth_more(owner: int, below: float) -> bool:
            # Most regions a localiser finds in a frame hold no text: only those the first look read
            # something in are looked at again, which keeps a frame's time near one look.
            return certainty(owner) < below and (known_text or bool(heard[owner]))

        look([(i, ways[0]) for i, ways in enumerate(lines)], keep=True)
        # the second way is read only where the first gave nothing sure
        look([(i, ways[1]) for i, ways in enumerate(lines) if len(ways) > 1 and certainty(i) < SURE], keep=True)
        if others:
            # The other opinions replace the first: the average of models trained apart is wrong
            # less often than any one of them, so what the first model heard alone is forgotten.
            ask = [i for i in range(len(crops)) if worth_more(i, CONSULT)]
            jobs = [(i, line) for i in ask for line in lines[i][:len(first[i])]]
            if jobs:
                ours = np.stack([p for i in ask for p in first[i]])
                for i in ask:
                    heard[i] = []
                consulted.update(ask)
                hear(jobs, opinion(ours, [given for i in ask for given in first_inputs[i]]), pooled_prior)
        # A one-line plate crop the cascade will show the strong recogniser gets no more looks of the fast
        # models: on real crops (nearly all unsure) those looks cost more than the strong read and added
        # no right reading. Two-line plates and container codes keep them (their other layouts).
        skip = {i for i, crop in enumerate(crops) if cascade and known_text and plate
                and crop.shape[0] < (preprocess.TWO_LINE_MIN_ASPECT - 0.08) * crop.shape[1]}
        if self.second_looks:
            look([(i, seen) for i, ways in enumerate(lines) if i not in skip and worth_more(i, SURE)
                  for line in ways for seen in preprocess.second_looks(line)])
        if known_text:
            # A crop that surely holds text and is still unsure after every look may have been
            # cut into lines at the wrong row: it is read laid out every other way too.
            look([(i, line) for i, crop in enumerate(crops) if i not in skip and certainty(i) < SURE
                  for line in preprocess.fallback_lines(crop, plate)])
        views: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}

        def strong_lines(crop: np.ndarray, ways: list[np.ndarray] | None = None) -> list[np.ndarray]:
            # Two-line plates are laid out for the strong recogniser with a blank between the lines: joined
            # edge to edge, it reads the seam (the plate's side edges, a cut glyph) as a 1 or a 7.
            if plate and STRONG_LINE_GAP and preprocess.may_have_two_lines(crop):
                return preprocess.plate_lines(crop, gap=STRONG_LINE_GAP)
            return ways if ways is not None else to_lines(crop)

        def strong_view(i: int) -> tuple[np.ndarray, list[np.ndarray]]:
            # what the strong recogniser reads of crop i: the crop and its lines, or its given tight version
            if i not in views:
                views[i] = ((crops[i], strong_lines(crops[i], lines[i])) if strong_crops is None
                            else (strong_crops[i], strong_lines(strong_crops[i])))
            return views[i]

        def to_strong(i: int) -> bool:
            if strong_first is not None:
                return i < strong_first
            return known_text or bool(heard[i])

        # A frame's best regions: a sure reading there is read by the strong recogniser too (VERIFY_SURE_IN_FRAMES).
        verify_sure = VERIFY_SURE_IN_FRAMES and strong_first is not None

        def province_doubt(owner: int) -> bool:
            # The fast models learnt their province prior from the synthesis (35 % 桂), all of them the
            # same one, so their sureness of a small real province glyph is no evidence beyond it: the
            # strong model reads the province of a CN crop they are sure of (the levelled crop's left
            # part, a fifth of its full read's time), and where it reads another one the crop goes to
            # the cascade, whose vote may overturn the province only (see `_cascade`).
            provinces = {text[0] for text, _ in heard[owner] if text[0] in CN_PROVINCES}
            asked = known_text if strong_first is None else owner < strong_first
            if not (provinces and self.strong is not None and asked):
                return False
            crop, ways = strong_view(owner)
            whole = ways[0]  # the crop levelled, not cut into lines: its province glyph stands at the left
            if whole.shape[:2] != crop.shape[:2]:
                return False
            province, peak = self.strong.province(whole)
            # below a uniform guess over the provinces the strong model sees no province there: no dispute
            return province not in provinces and peak >= 1.0 / len(CN_PROVINCES)

        if cascade:
            # The strong recogniser on crops still unsure after every look; in a frame, only on the regions
            # `to_strong` allows (most regions hold no code).
            return [self._cascade(heard[i], matrices[i], *strong_view(i), boxes[i], plate, known_text, verify_sure)
                    if (certainty(i) < CASCADE and to_strong(i))
                    or (plate and province_doubt(i))
                    or (verify_sure and to_strong(i) and bool(heard[i]))
                    else self._unless_look_alike(self._verdict(heard[i], boxes[i], calibration, language),
                                                 lambda i=i: strong_view(i)[1], plate and known_text)
                    for i in range(len(crops))]
        return [self._verdict(heard[i], boxes[i], calibration, language) for i in range(len(crops))]

    def _cascade(self, heard: list[tuple[str, float]], matrices: list[np.ndarray], crop: np.ndarray,
                 lines: list[np.ndarray], box: tuple[int, int, int, int], plate: bool,
                 known_text: bool = True, verify_sure: bool = False) -> Reading | None:
        """The fast models and the strong recogniser vote on a crop the fast models left unsure, or on
        the province of a CN crop they are sure of.

        The candidates are the fast models' reading (voted over their looks) and the strong one's;
        `models.vision.cascade_vote.settle` decides between them (a product of experts, each model
        scoring both candidates; agreement never lowers the surer model's chance; look-alike
        disagreements need a sure vote; a disputed sure reading won at even odds is no reading).
        Where the strong model reads nothing the grammar accepts (on a one-line plate: neither on the
        levelled line nor on the crop as it came), it abstains and the fast models' verdict stands; so
        does a sure CN reading the strong model differs from in more than its province (it is asked
        about the province only: on other characters the sure fast models win), unless `verify_sure`
        (a frame's best regions), where the two vote. `known_text`: the crop surely holds text, so a
        one-line plate the levelled line gives nothing valid is also read as it came.
        """
        calibration = self.plate_calibration if plate else self.container_calibration
        language = PLATES if plate else ISO6346
        fast_charset = PLATE_CHARS if plate else CONTAINER_CHARS
        strong = self.strong
        if plate:
            ways = lines
            charset, alias = PLATE_CHARS, PLATE_ALIAS
        else:
            vertical = crop.shape[0] > preprocess.VERTICAL_MIN_ASPECT * crop.shape[1]
            ways = [stack_to_line(crop)] if vertical else lines
            charset, alias = CONTAINER_CHARS, CONTAINER_ALIAS
        # In the vote the strong model speaks with its raw share, not a map fitted on synthetic crops: with
        # the maps (which raise it) the vote chose its valid-but-wrong readings over the fast models' right
        # ones (synthetic two-line and vertical codes: 3-4 wrong per 100 against 0; see the card).
        strong_calibration = IDENTITY
        folded = [strong.folded(strong.probabilities(way), charset) for way in ways]
        strong_charset = charset + STRONG_OTHER
        fast_text, fast = None, 0.0
        if heard:  # the fast models' choice over all their looks, at the confidence of its surest look
            mass: dict[str, float] = {}
            for text, raw in heard:
                mass[text] = mass.get(text, 0.0) + raw
            fast_text = max(mass, key=mass.__getitem__)
            fast = calibration(max(raw for text, raw in heard if text == fast_text))
        strong_text, sure = None, 0.0
        for probs in folded:
            candidate = decode(probs, strong_charset, language, alias=alias)
            if candidate is not None and candidate.probability > sure:
                strong_text, sure = candidate.text, candidate.probability
        if strong_text is None and plate and known_text and ways[0].shape[:2] == crop.shape[:2]:
            # Nothing valid on the levelled one-line crop: the crop as it came (colour, not turned), as it
            # learnt from (levelling a tight crop can cut or blur a glyph at its ends).
            folded.append(strong.folded(strong.probabilities(crop), charset))
            candidate = decode(folded[-1], strong_charset, language, alias=alias)
            if candidate is not None:
                strong_text, sure = candidate.text, candidate.probability
        if strong_text is None:
            # It abstains (nothing it reads fits the grammar). The fast models' verdict stands where they are sure
            # by themselves (UNCONFIRMED_MIN): below that, a reading no second model could confirm is no reading.
            verdict = self._verdict(heard, box, calibration, language)
            return verdict if verdict is None or fast >= UNCONFIRMED_MIN else None
        if (fast_text is not None and fast >= CASCADE and not province_only(fast_text, strong_text)
                and not verify_sure):
            # A sure CN reading shown to the strong model for its province alone (see `_read_crops`).
            return self._verdict(heard, box, calibration, language)
        sure = strong_calibration(sure)
        masses: dict[int, float] = {}

        def share(all_probs: list[np.ndarray], chars: str, text: str, look_alike: dict | None) -> float:
            best = 0.0
            for p in all_probs:
                if id(p) not in masses:
                    masses[id(p)] = max(reading_mass(p, chars), 1e-300)
                best = max(best, label_probability(p, chars, text, look_alike) / masses[id(p)])
            return min(1.0, best)

        def ballot(text: str, chance: float) -> Ballot:
            if text == fast_text:
                return Ballot(fast_text, fast, text, chance)
            return Ballot(fast_text, fast, text, chance,
                          strong_for_fast=(strong_calibration(share(folded, strong_charset, fast_text, alias))
                                           if fast_text is not None else 0.0),
                          fast_for_strong=calibration(share(matrices, fast_charset, text, None)))

        # A sure reading the strong model disputes (a province, above) and a vote no better than even: none.
        verdict = settle(ballot(strong_text, sure), tie_is_none=fast >= CASCADE, look_alikes_doubtful=plate)
        if verdict is None or verdict[1] < self.min_confidence:
            return None
        text, confidence = verdict
        return Reading(text, round(confidence, 4), box, language.kind_of(text) or "")

    def _unless_look_alike(self, verdict: Reading | None, lines: Callable[[], list[np.ndarray]],
                           asked: bool) -> Reading | None:
        """`verdict`, or None where it is a sure Vietnamese plate the strong recogniser reads, at better than
        even, as another plate apart from it only in look-alike glyphs (VERIFY_VN_LOOK_ALIKES); `lines()` gives
        the crop's lines as the strong recogniser reads them, `asked`: the crop surely holds a plate."""
        if not (VERIFY_VN_LOOK_ALIKES and asked and verdict is not None and verdict.kind == "VN"
                and self.strong is not None):
            return verdict
        candidate, _ = self.strong.read(lines(), PLATE_CHARS, PLATES, PLATE_ALIAS)
        if (candidate is not None and candidate.text != verdict.text and candidate.probability >= EVEN
                and look_alikes(verdict.text, candidate.text)):
            return None
        return verdict

    def _verdict(self, heard: list[tuple[str, float]], box: tuple[int, int, int, int], calibration: Calibration,
                 language: Grammar | AnyOf) -> Reading | None:
        """The reading most of the looks' probability mass backs, at the confidence of its surest look."""
        if not heard:
            return None
        mass: dict[str, float] = {}
        surest: dict[str, float] = {}
        votes: dict[str, int] = {}
        for text, raw in heard:
            mass[text] = mass.get(text, 0.0) + raw
            surest[text] = max(surest.get(text, 0.0), raw)
            votes[text] = votes.get(text, 0) + 1
        text = max(mass, key=lambda t: (mass[t], surest[t]))
        confidence = calibration(surest[text])
        if confidence < SURE and votes[text] < AGREE and len(heard) > 1:
            return None  # an unsure reading that no other look repeats
        reported = confidence if self.report_calibrated else surest[text]
        if reported < self.min_confidence:
            return None
        return Reading(text, round(reported, 4), box, language.kind_of(text) or "")


# The default synthesis draws 桂 for 35 % of Chinese plates (Huu Nghi's share) and the other 30
# provinces evenly, so a model trained on it learnt that prior: it reads a small unclear province as
# 桂. Its province probabilities are divided by that prior and multiplied by a flat one (a label-shift
# correction from the synthesis's known distribution; nothing is fitted on real plates). A model
# trained on another mix says its share of 桂 in its metadata (`guangxi_prior`, written by
# models.training.train); files without it were trained on the default synthesis.
_DEFAULT_GUANGXI_PRIOR = 0.35 + 0.65 / len(CN_PROVINCES)
_PROVINCE_COLUMNS = np.array([PLATE_CHARS.index(char) + 1 for char in CN_PROVINCES])
_GUANGXI = CN_PROVINCES.index("桂")


def _guangxi_prior(recogniser: Recogniser) -> float:
    """The share of 桂 among the Chinese plates `recogniser` learnt from."""
    return float(recogniser.metadata.get("guangxi_prior", _DEFAULT_GUANGXI_PRIOR))


@lru_cache(maxsize=8)
def _province_weights(guangxi: float) -> np.ndarray:
    """Per province: a flat prior over the model's prior (桂 `guangxi`, the others sharing the rest evenly)."""
    others = (1.0 - guangxi) / (len(CN_PROVINCES) - 1)
    prior = np.full(len(CN_PROVINCES), others, np.float32)
    prior[_GUANGXI] = guangxi
    return (1.0 / len(CN_PROVINCES)) / prior


def _flat_province_prior(probs: np.ndarray, guangxi: float = _DEFAULT_GUANGXI_PRIOR) -> np.ndarray:
    """A plate model's per-step probabilities with its province prior (桂 `guangxi`) swapped for a flat one."""
    if abs(guangxi - 1.0 / len(CN_PROVINCES)) < 1e-4:
        return probs
    out = probs.copy()
    out[..., _PROVINCE_COLUMNS] *= _province_weights(guangxi)
    return out / out.sum(axis=-1, keepdims=True)


def vote_container_codes(per_frame: list[list[Reading]]) -> list[Reading]:
    """One vehicle's container numbers from the readings of each of its frames.

    Each frame's readings are votes. A number that differs in one or two characters from one with
    more votes (summed confidence) is dropped: the H/R and M/W swaps the check digit cannot see
    rarely repeat in every view. The confidence of a number read in several frames is the chance
    not every one of them is wrong, 1 - (1 - c1)(1 - c2)...; best first.
    """
    weight: dict[str, float] = {}
    doubt: dict[str, float] = {}
    where: dict[str, Reading] = {}
    for readings in per_frame:
        for reading in {r.text: r for r in readings}.values():  # one vote per frame
            weight[reading.text] = weight.get(reading.text, 0.0) + reading.confidence
            doubt[reading.text] = doubt.get(reading.text, 1.0) * (1.0 - reading.confidence)
            if reading.text not in where or reading.confidence > where[reading.text].confidence:
                where[reading.text] = reading
    kept = [text for text in weight if not any(
        other != text and weight[other] > weight[text] and _differences(text, other) <= 2 for other in weight)]
    return sorted((Reading(text, round(1.0 - doubt[text], 4), where[text].box, where[text].kind) for text in kept),
                  key=lambda r: -r.confidence)


def _differences(a: str, b: str) -> int:
    """Characters that differ between two texts of one length (their length apart otherwise)."""
    return sum(x != y for x, y in zip(a, b, strict=True)) if len(a) == len(b) else max(len(a), len(b))


def _optional(path: Path | None, charset: str, width: int, threads: int) -> Recogniser | None:
    """A second-opinion recogniser, or None when it is not asked for or not installed."""
    if path is None or not Path(path).is_file():
        return None
    return Recogniser(path, charset, width, threads)


def _bounded(image: np.ndarray) -> tuple[np.ndarray, float]:
    pixels = image.shape[0] * image.shape[1]
    if pixels <= MAX_PIXELS:
        return image, 1.0
    scale = (MAX_PIXELS / pixels) ** 0.5
    size = (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _best_per_text(readings: list[Reading]) -> list[Reading]:
    best: dict[str, Reading] = {}
    for reading in readings:
        if reading.text not in best or reading.confidence > best[reading.text].confidence:
            best[reading.text] = reading
    return sorted(best.values(), key=lambda r: -r.confidence)


def _one_per_place(readings: list[Reading]) -> list[Reading]:
    """Readings (surest first) less any whose box mostly overlaps a surer one's.

    A localiser's loose box around a code and its tight box around the same code can read as two
    different valid numbers; only one thing is painted there, and the surer reading is kept.
    """
    kept: list[Reading] = []
    for reading in readings:
        if not any(overlap_area(reading.box, k.box) > 0.5 * min(_area(reading.box), _area(k.box)) for k in kept):
            kept.append(reading)
    return kept


def _area(box: tuple[int, int, int, int]) -> int:
    return max(1, box[2] * box[3])
