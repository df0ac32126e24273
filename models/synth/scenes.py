"""Synthetic gate-camera frames: a truck front or rear with its plate, and container doors with the
code and the size/type code painted near each other. Used to measure localisation and whole-frame
reading; each frame carries its truth (label and box)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.synth.container_synth import (
    _ink_for,
    container_text,
    door_background,
    paint,
    render_code_block,
    size_type_text,
)
from models.synth.fonts import installed_fonts
from models.synth.glyphs import draw_line
from models.synth.plate_synth import PlateSample, render_plate


@dataclass(frozen=True)
class Truth:
    """What a frame shows: "plate" or "container", the normalised text, and its box (x, y, w, h)."""

    kind: str
    label: str
    box: tuple[int, int, int, int]
    layout: str


@dataclass(frozen=True)
class Scene:
    """A frame and everything readable in it."""

    frame: np.ndarray
    truths: tuple[Truth, ...]


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    top = rng.integers(90, 220, 3).astype(np.float32)
    bottom = rng.integers(30, 120, 3).astype(np.float32)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    frame = top * (1 - ramp) + bottom * ramp
    frame = np.repeat(frame, width, axis=1)
    for _ in range(int(rng.integers(2, 6))):  # gate structures, poles, signs
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, width // 3)), int(rng.integers(20, height // 2))
        cv2.rectangle(frame, (x, y), (x + w, y + h), tuple(int(v) for v in rng.integers(20, 230, 3)), -1)
    return np.clip(frame + rng.normal(0, 4, (height, width, 1)), 0, 255).astype(np.uint8)


def _place(frame: np.ndarray, patch: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    h, w = patch.shape[:2]
    x = int(np.clip(x, 0, frame.shape[1] - w))
    y = int(np.clip(y, 0, frame.shape[0] - h))
    frame[y:y + h, x:x + w] = patch
    return x, y, w, h


def _truck_front(rng: np.random.Generator, frame: np.ndarray, label: str | None = None,
                 plate_image: np.ndarray | None = None) -> Truth:
    height, width = frame.shape[:2]
    cab_w = int(width * rng.uniform(0.35, 0.6))
    cab_h = int(height * rng.uniform(0.55, 0.85))
    x0 = int(rng.integers(0, width - cab_w))
    y0 = int(rng.integers(0, height - cab_h))
    colour = tuple(int(v) for v in rng.integers(40, 230, 3))
    cv2.rectangle(frame, (x0, y0), (x0 + cab_w, y0 + cab_h), colour, -1)
    cv2.rectangle(frame, (x0 + cab_w // 10, y0 + cab_h // 12), (x0 + cab_w * 9 // 10, y0 + cab_h * 2 // 5),
                  (60, 50, 40), -1)  # windscreen
    grille_y = y0 + cab_h * 11 // 20
    for i in range(int(rng.integers(4, 9))):  # grille bars
        y = grille_y + i * max(4, cab_h // 40)
        cv2.line(frame, (x0 + cab_w // 4, y), (x0 + cab_w * 3 // 4, y), (30, 30, 30), max(1, cab_h // 120))
    lamp = max(8, cab_w // 14)
    cv2.circle(frame, (x0 + cab_w // 8, grille_y + cab_h // 8), lamp, (230, 240, 250), -1)
    cv2.circle(frame, (x0 + cab_w * 7 // 8, grille_y + cab_h // 8), lamp, (230, 240, 250), -1)
    if plate_image is not None:  # a given crop (a real photograph's plate), labelled `label`
        plate = PlateSample(plate_image, label or "", "given")
    else:
        plate = render_plate(rng, lines=1 if label else None, scale=float(rng.uniform(0.25, 0.55)) * height / 1080,
                             label=label)
    ph, pw = plate.image.shape[:2]
    px = x0 + (cab_w - pw) // 2 + int(rng.integers(-cab_w // 8, cab_w // 8 + 1))
    py = y0 + cab_h - ph - int(rng.integers(cab_h // 30, cab_h // 8 + 2))
    box = _place(frame, plate.image, px, py)
    return Truth("plate", plate.label, box, plate.kind)


def _container_rear(rng: np.random.Generator, frame: np.ndarray, code: str | None = None,
                    layout: str | None = None) -> list[Truth]:
    height, width = frame.shape[:2]
    door_w = int(width * rng.uniform(0.45, 0.7))
    door_h = int(height * rng.uniform(0.7, 0.95))
    x0 = int(rng.integers(0, width - door_w))
    y0 = int(rng.integers(0, height - door_h))
    door = door_background(rng, door_w, door_h)
    for i in range(4):  # locking bars
        bx = int(door_w * (0.12 + 0.25 * i + rng.uniform(-0.03, 0.03)))
        cv2.line(door, (bx, door_h // 20), (bx, door_h * 19 // 20), (90, 90, 90), max(2, door_w // 150))
    cv2.line(door, (door_w // 2, 0), (door_w // 2, door_h), (20, 20, 20), max(2, door_w // 200))
    ink = _ink_for(door, rng)
    fonts = installed_fonts()
    font = fonts.latin[rng.integers(len(fonts.latin))]
    drawn_layout = ("h1", "h2", "v")[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
    drawn_code = container_text(rng)
    layout, code = layout or drawn_layout, code or drawn_code
    char_h = int(door_h * rng.uniform(0.035, 0.06))
    mask, _ = render_code_block(rng, code, layout, char_h, font)
    mh, mw = mask.shape[:2]
    if layout == "v":
        cx = int(door_w * rng.uniform(0.9, 0.95)) - mw
        cy = int(door_h * rng.uniform(0.08, 0.15))
    else:
        cx = int(door_w * rng.uniform(0.55, 0.95)) - mw
        cy = int(door_h * rng.uniform(0.05, 0.12))
    cx, cy = max(0, cx), max(0, cy)
    paint(door, mask, cx, cy, ink)
    size_mask = np.zeros((int(char_h * 1.4), int(char_h * 3.6), 3), np.uint8)
    draw_line(size_mask, size_type_text(rng), (0, int(char_h * 0.2), int(char_h * 3.2), char_h), (font, font),
              (255, 255, 255), rng)
    if layout == "v":
        sx, sy = max(0, cx - size_mask.shape[1] - char_h), cy + mh // 3
    else:
        sx, sy = cx + mw - size_mask.shape[1], cy + mh + int(char_h * rng.uniform(0.3, 0.8))
    paint(door, size_mask, sx, sy, ink)
    frame[y0:y0 + door_h, x0:x0 + door_w] = door
    truths = [Truth("container", code, (x0 + cx, y0 + cy, mw, mh), layout)]
    plate = render_plate(rng, lines=2, scale=float(rng.uniform(0.25, 0.5)))
    ph, pw = plate.image.shape[:2]
    px = x0 + int(door_w * rng.uniform(0.2, 0.6))
    py = min(height - ph, y0 + door_h - ph // 2)
    if py + ph <= height and px + pw <= width:
        box = _place(frame, plate.image, px, py)
        truths.append(Truth("plate", plate.label, box, plate.kind))
    return truths


def camera_damage(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole-frame camera effects at frame scale: light level, night/IR, blur, noise, JPEG."""
    out = frame.astype(np.float32)
    if rng.random() < 0.15:  # night / IR
        out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2) * rng.uniform(0.35, 0.6)
    else:
        out = out * rng.uniform(0.7, 1.2) + rng.uniform(-25, 25)
    out = np.clip(out + rng.normal(0, rng.uniform(1, 6), out.shape[:2])[..., None], 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.4))
    ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 95))])
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else out


def render_scene(rng: np.random.Generator, kind: str | None = None, width: int = 1920, height: int = 1080) -> Scene:
    """A frame of a truck front ("front") or a container rear ("rear"), with camera damage."""
    kind = kind or ("front" if rng.random() < 0.5 else "rear")
    frame = _background(rng, width, height)
    truths = [_truck_front(rng, frame)] if kind == "front" else _container_rear(rng, frame)
    return Scene(camera_damage(frame, rng), tuple(truths))


def truck_at_gate(plate: str | None, seed: int = 0, width: int = 960, height: int = 540) -> Scene:
    """A truck front showing `plate` (normalised), or the empty lane when `plate` is None; for the
    video camera simulator."""
    rng = np.random.default_rng([seed, width, height])
    frame = _background(rng, width, height)
    truths = (_truck_front(rng, frame, plate),) if plate else ()
    return Scene(frame, truths)


def plate_crop_at_gate(crop: np.ndarray, label: str, seed: int, width: int = 1920, height: int = 1080,
                       plate_width: tuple[float, float] = (0.06, 0.11)) -> Scene:
    """A truck front carrying a given plate crop (e.g. a real photograph's, labelled `label`), scaled to
    `plate_width` of the frame's width (random in the range; an ANPR camera's 115-210 px at 1920), on
    a synthetic cab and background: real plates in a frame where no real frames of plates are at hand."""
    rng = np.random.default_rng([seed, width, height, 2])
    frame = _background(rng, width, height)
    target = max(8, int(width * rng.uniform(*plate_width)))
    scaled = cv2.resize(crop, (target, max(4, round(crop.shape[0] * target / crop.shape[1]))),
                        interpolation=cv2.INTER_CUBIC)
    return Scene(frame, (_truck_front(rng, frame, label, plate_image=scaled),))


def container_at_gate(code: str, layout: str = "h1", seed: int = 0, width: int = 960, height: int = 540) -> Scene:
    """A container's doors showing `code` (11 characters) painted in `layout` ("h1", "h2", "v"), with
    its size/type code and the trailer's plate; for the rear video camera simulator."""
    rng = np.random.default_rng([seed, width, height, 1])
    frame = _background(rng, width, height)
    return Scene(frame, tuple(_container_rear(rng, frame, code, layout)))


def scene(seed: int, index: int, kind: str | None = None) -> Scene:
    """Scene `index` of `seed`, the same on every machine."""
    return render_scene(np.random.default_rng([seed, index]), kind)
