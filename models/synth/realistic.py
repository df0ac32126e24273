"""Plate crops as a plate detector hands them over from a real camera, not as our localiser cuts them.

The default synthesis (`dataset.plate_sample`) gives loose crops of plates 30-60 px tall, turned a
few degrees, a third of its Chinese plates 桂. Real crops (issue #29) differ in every one of those:
- tight: the detector's box hugs the plate, often cutting its border, with background wedges
  where the plate is tilted;
- small: about 94 x 24 px, the glyphs ~10 px tall, often squeezed to a fixed box whatever the
  plate's own shape;
- tilted and sheared up to ±15° (a camera beside the lane, a plate fixed askew);
- lettered in the plate face (GA 36), blue or green passenger plates as well as yellow trucks;
- any province (a flat prior: a gate far from Guangxi sees few 桂);
- JPEG'd and blurred after the shrink;
- Vietnamese plates as they are printed: a two-row plate's top row has a dash after the province
  (`59-P1`), and a few plates carry the `MĐ` series, its Đ drawn from a font that has the glyph
  and labelled `D` (matching form: `29MD112345`), as no reader has a Đ class;
- Vietnamese two-row plates of both sizes: a car's or truck's (330 x 165 mm) and a motorbike's
  (190 x 140 mm, its rows nearly as wide as the plate).
`realistic_plate` draws such a crop; every draw comes from the Generator passed in. Only Vietnamese
crops draw the extra numbers the printed forms need: a seed's Chinese crops are what they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.synth.augment import photometric
from models.synth.plate_synth import (
    BLACK,
    BLUE,
    GREEN,
    WHITE,
    WHITE_TEXT,
    YELLOW,
    cn_text,
    plate_parts,
    render_plate,
    vn_text,
)

MAX_TILT = 15.0  # degrees, both the turn and the shear
REAL_SIZE = (94, 24)  # w, h: the fixed box a plate detector's crops are often resized to
CN_SHARE = 0.75  # of the realistic crops; the rest are Vietnamese
ONE_LINE_SHARE = {"CN": 0.85, "VN": 0.6}  # passenger plates are one-line; truck rears two
PLATE_FONT_SHARE = {"CN": 0.85, "VN": 0.5}
PHOTOMETRIC_SHARE = 0.4  # crops also given `augment.photometric`'s harms (night, glare, dirt...)
VN_MD_SHARE = 0.05  # Vietnamese plates of the `MĐ` series (printed Đ, labelled D)
VN_TOP_DASH_SHARE = 0.85  # two-row Vietnamese plates printing their top row `59-P1` (the rest `59P1`)
VN_MOTORBIKE_SHARE = 0.4  # two-row Vietnamese plates of a motorbike's size (190 x 140 mm)


@dataclass(frozen=True)
class RealisticPlate:
    """A realistic crop (BGR), its normalised label, its class and how it was drawn."""

    crop: np.ndarray
    label: str
    kind: str  # "vn1", "vn2", "cn1", "cn2"
    tilt: float  # degrees the plate is turned
    shear: float  # degrees its verticals lean
    printed: str = ""  # the text as the plate prints it, rows joined by a new line: `29-MĐ1\n123.45`
    motorbike: bool = False  # a Vietnamese two-row plate of a motorbike's size


def _cn_colours(rng: np.random.Generator, label: str) -> tuple[tuple, tuple]:
    if len(label) == 8 and not label.endswith("挂"):
        return GREEN, BLACK  # new-energy
    roll = rng.random()
    if roll < 0.6:
        return BLUE, WHITE_TEXT  # passenger cars
    if roll < 0.92:
        return YELLOW, BLACK  # trucks, buses
    return WHITE, BLACK


def _vn_colours(rng: np.random.Generator) -> tuple[tuple, tuple]:
    roll = rng.random()
    if roll < 0.5:
        return WHITE, BLACK
    if roll < 0.85:
        return YELLOW, BLACK
    return BLUE, WHITE_TEXT


def vn_printed(rng: np.random.Generator, lines: int) -> tuple[str, str, str]:
    """A Vietnamese plate as (label in matching form, prefix as printed, serial as printed).

    `VN_MD_SHARE` of them are `MĐ` plates (`29MD112345`, printed `29MĐ1`); a two-row plate's top row
    has the dash after the province `VN_TOP_DASH_SHARE` of the time (`29-C1`, `29-MĐ1`).
    """
    label = vn_text(rng)[2]
    if rng.random() < VN_MD_SHARE:  # always a 5-digit serial: `29MD11234` would read as series MD, serial 11234
        digits = "".join(str(d) for d in rng.integers(0, 10, 5))
        label = f"{label[:2]}MD{rng.integers(1, 10)}{digits}"
    _, prefix, serial = plate_parts(label)
    if prefix[2:4] == "MD":
        prefix = prefix[:2] + "MĐ" + prefix[4:]
    if lines == 2 and rng.random() < VN_TOP_DASH_SHARE:
        prefix = f"{prefix[:2]}-{prefix[2:]}"
    return label, prefix, serial


def _angle(rng: np.random.Generator, spread: float) -> float:
    """Degrees within ±MAX_TILT: most plates nearly level, a tail out to the limit."""
    return float(np.clip(rng.laplace(0.0, spread), -MAX_TILT, MAX_TILT))


def tight_crop(image: np.ndarray, rng: np.random.Generator, tilt: float, shear: float) -> np.ndarray:
    """The plate turned by `tilt`, its verticals leaning by `shear` degrees, on a random background,
    cut out with a box that hugs it (each side from 4 % inside to 8 % outside the plate)."""
    h, w = image.shape[:2]
    pad = int(0.4 * w) + 8
    canvas = np.empty((h + 2 * pad, w + 2 * pad, 3), np.uint8)
    canvas[:] = rng.integers(0, 256, 3)
    noise = rng.normal(0, rng.uniform(3, 30), canvas.shape[:2])[..., None]
    canvas[:] = np.clip(canvas.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    canvas[pad:pad + h, pad:pad + w] = image
    corners = np.float32([[pad, pad], [pad + w, pad], [pad + w, pad + h], [pad, pad + h]])
    centre = corners.mean(axis=0)
    lean = np.tan(np.deg2rad(shear))
    turn = np.deg2rad(tilt)
    rotation = np.float32([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    moved = corners - centre
    moved[:, 0] += lean * moved[:, 1]
    target = moved @ rotation.T + centre
    target += rng.normal(0, 0.015, (4, 2)).astype(np.float32) * np.float32([w, h])  # a little perspective
    matrix = cv2.getPerspectiveTransform(corners, target.astype(np.float32))
    warped = cv2.warpPerspective(canvas, matrix, (canvas.shape[1], canvas.shape[0]), flags=cv2.INTER_AREA,
                                 borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = target.min(axis=0)
    x1, y1 = target.max(axis=0)
    bw, bh = x1 - x0, y1 - y0
    x0 -= rng.uniform(-0.04, 0.08) * bw
    x1 += rng.uniform(-0.04, 0.08) * bw
    y0 -= rng.uniform(-0.04, 0.08) * bh
    y1 += rng.uniform(-0.04, 0.08) * bh
    x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
    x1, y1 = min(warped.shape[1], int(round(x1))), min(warped.shape[0], int(round(y1)))
    return warped[y0:y1, x0:x1]


def shrink(crop: np.ndarray, rng: np.random.Generator, lines: int) -> np.ndarray:
    """The crop at a real detector crop's size: half the one-line crops squeezed to 94 x 24 whatever
    their shape, the others kept in shape at 14-34 px (one line) or 26-60 px (two lines) tall."""
    h, w = crop.shape[:2]
    if lines == 1 and rng.random() < 0.5:
        size = REAL_SIZE
    else:
        height = int(rng.integers(14, 35) if lines == 1 else rng.integers(26, 61))
        size = (max(16, int(round(w * height / h))), height)
    method = cv2.INTER_AREA if rng.random() < 0.7 else cv2.INTER_LINEAR
    return cv2.resize(crop, size, interpolation=method)


def camera(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the shrunk crop goes through after: softening, sensor noise and JPEG, each by chance."""
    out = crop
    if rng.random() < 0.3:  # it was smaller still in the frame and blown up to the box
        h, w = out.shape[:2]
        factor = rng.uniform(0.5, 0.85)
        small = (max(8, int(w * factor)), max(6, int(h * factor)))
        out = cv2.resize(cv2.resize(out, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.8))
    if rng.random() < 0.4:
        out = np.clip(out.astype(np.float32) + rng.normal(0, rng.uniform(2, 8), out.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 95))])
        if ok:
            out = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return out


def realistic_plate(rng: np.random.Generator, country: str | None = None, lines: int | None = None) -> RealisticPlate:
    """One realistic plate crop (see the module's docstring); `country` "VN"/"CN", `lines` 1/2, random when None."""
    country = country or ("CN" if rng.random() < CN_SHARE else "VN")
    lines = lines or (1 if rng.random() < ONE_LINE_SHARE[country] else 2)
    # The text first (a flat province prior), then its colours, then the plate drawn large and clean.
    if country == "CN":
        prefix, serial, label = cn_text(rng, guangxi_share=0.0)
        printed_prefix = None
    else:
        label, printed_prefix, serial = vn_printed(rng, lines)
        prefix = printed_prefix
    colours = _cn_colours(rng, label) if country == "CN" else _vn_colours(rng)
    # The drawn plate font has no Đ: an `MĐ` plate is lettered in a desktop font that has it.
    font_share = 0.0 if "Đ" in prefix else PLATE_FONT_SHARE[country]
    # drawn for Vietnamese two-row plates only: a seed's other crops are what they were
    motorbike = country == "VN" and lines == 2 and rng.random() < VN_MOTORBIKE_SHARE
    plate = render_plate(rng, country, lines, scale=rng.uniform(0.35, 0.55), label=label,
                         plate_font_share=font_share, colours=colours, printed_prefix=printed_prefix,
                         motorbike=motorbike)
    tilt, shear = _angle(rng, 3.5), _angle(rng, 3.5)
    crop = tight_crop(plate.image, rng, tilt, shear)
    # Light, dirt, glare and night at the plate's drawn size, where they have their usual scale, on
    # some crops (all of them left too many crops no one could read); the resolution is then the detector's.
    if rng.random() < PHOTOMETRIC_SHARE:
        crop = photometric(crop, rng)
    else:
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.7, 1.2) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
    crop = camera(shrink(crop, rng, lines), rng)
    separator = "\n" if lines == 2 else ("-" if country == "VN" else "·")
    return RealisticPlate(crop, plate.label, plate.kind, tilt, shear, f"{prefix}{separator}{serial}", motorbike)
