"""Camera-like damage for synthetic crops: the localiser's loose crop, perspective, blur, night/IR,
glare, dirt, low resolution and JPEG. Seeded through the numpy Generator passed in."""

from __future__ import annotations

import cv2
import numpy as np

DAMAGE = ("dirt", "glare", "night", "low_resolution", "blur", "motion_blur", "noise", "jpeg")


def _surround(image: np.ndarray, rng: np.random.Generator, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """The crop on a larger random background; returns it and the crop's corners in it."""
    h, w = image.shape[:2]
    px, py = int(w * pad) + 4, int(h * pad) + 4
    canvas = np.empty((h + 2 * py, w + 2 * px, 3), np.uint8)
    base = rng.integers(0, 256, 3)
    canvas[:] = base
    noise = rng.normal(0, rng.uniform(3, 25), canvas.shape[:2])[..., None]
    canvas[:] = np.clip(canvas.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    canvas[py:py + h, px:px + w] = image
    corners = np.float32([[px, py], [px + w, py], [px + w, py + h], [px, py + h]])
    return canvas, corners


def loose_crop(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Warp the crop a little in perspective and cut it out again with a loose, uneven box."""
    return loose_crop_with_maps(image, (), rng, strength)[0]


def loose_crop_with_maps(image: np.ndarray, maps: tuple[np.ndarray, ...], rng: np.random.Generator,
                         strength: float = 1.0) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """`loose_crop`, with per-pixel maps of the image (a float ink coverage, integer character cells)
    carried through the same warp: (crop, each map cut as the crop, each map warped but not cut).

    Maps draw nothing from `rng`, so the crop is the very one `loose_crop` gives; float maps are
    interpolated, integer maps keep their values (nearest pixel).
    """
    h, w = image.shape[:2]
    canvas, corners = _surround(image, rng, 0.25)
    shift = np.float32([[rng.normal(0, 0.03 * w * strength), rng.normal(0, 0.06 * h * strength)] for _ in range(4)])
    target = corners + shift
    angle = np.deg2rad(float(np.clip(rng.normal(0, 2.5 * strength), -7, 7)))
    centre = target.mean(axis=0)
    rotation = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = (target - centre) @ rotation.T + centre
    matrix = cv2.getPerspectiveTransform(corners, target.astype(np.float32))
    size = (canvas.shape[1], canvas.shape[0])
    warped = cv2.warpPerspective(canvas, matrix, size, borderMode=cv2.BORDER_REPLICATE)
    whole = []
    for plane in maps:
        placed = np.zeros(canvas.shape[:2], plane.dtype)
        px, py = int(corners[0][0]), int(corners[0][1])
        placed[py:py + h, px:px + w] = plane
        nearest = np.issubdtype(plane.dtype, np.integer)
        whole.append(cv2.warpPerspective(placed, matrix, size, flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0))
    x0, y0 = target.min(axis=0)
    x1, y1 = target.max(axis=0)
    bw, bh = x1 - x0, y1 - y0
    x0 += rng.uniform(-0.05, 0.03) * bw * strength
    x1 += rng.uniform(-0.03, 0.05) * bw * strength
    y0 += rng.uniform(-0.07, 0.04) * bh * strength
    y1 += rng.uniform(-0.04, 0.07) * bh * strength
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(warped.shape[1], int(np.ceil(x1))), min(warped.shape[0], int(np.ceil(y1)))
    return warped[y0:y1, x0:x1], [plane[y0:y1, x0:x1] for plane in whole], whole


def photometric(image: np.ndarray, rng: np.random.Generator, damage: list[str] | None = None) -> np.ndarray:
    """Blur, low resolution, night/IR, glare, dirt, noise and JPEG, each with its own chance.

    `damage`, when given, gets the name of each harm applied (`DAMAGE` lists them); recording them
    draws nothing from `rng`, so a seeded set is the same with or without it.
    """
    applied = damage if damage is not None else []
    out = image.astype(np.float32)
    h, w = out.shape[:2]
    short = min(h, w)  # the text's scale: a plate's height, a vertical code's width
    if rng.random() < 0.35:  # dirt: dark smudges
        for _ in range(int(rng.integers(1, 5))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(2, max(3, short // 3))), int(rng.integers(2, max(3, short // 6))))
            mask = np.zeros((h, w), np.float32)
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, min(axes) / 2))
            out = out * (1 - mask[..., None] * rng.uniform(0.2, 0.6)) + mask[..., None] * rng.uniform(20, 80)
        applied.append("dirt")
    if rng.random() < 0.25:  # glare: a bright soft blob
        mask = np.zeros((h, w), np.float32)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(mask, centre, int(rng.integers(max(2, short // 4), max(3, short))), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, short / 4))
        out = out + mask[..., None] * rng.uniform(60, 160)
        applied.append("glare")
    if rng.random() < 0.2:  # night / IR: grey, dark, contrasty, noisy
        grey = out.mean(axis=2, keepdims=True)
        out = np.repeat(grey, 3, axis=2) * rng.uniform(0.25, 0.6)
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
        out += rng.normal(0, rng.uniform(4, 14), out.shape[:2])[..., None]
        applied.append("night")
    else:
        gain, bias = rng.uniform(0.6, 1.3), rng.uniform(-40, 40)
        out = out * gain + bias
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:  # low resolution: a distant camera
        factor = rng.uniform(0.25, 0.8)
        small = (max(8, int(w * factor)), max(4, int(h * factor)))
        out = cv2.resize(cv2.resize(out, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
        applied.append("low_resolution")
    if rng.random() < 0.4:
        sigma = rng.uniform(0.5, 1.8) * max(1.0, short / 60)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
        applied.append("blur")
    elif rng.random() < 0.25:  # motion blur along the lane
        length = int(rng.integers(3, max(4, short // 10 + 4)))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        out = cv2.filter2D(out, -1, kernel)
        applied.append("motion_blur")
    if rng.random() < 0.5:
        out = np.clip(out.astype(np.float32) + rng.normal(0, rng.uniform(2, 10), out.shape), 0, 255).astype(np.uint8)
        applied.append("noise")
    if rng.random() < 0.5:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        if ok:
            out = cv2.imdecode(data, cv2.IMREAD_COLOR)
            applied.append("jpeg")
    return out


def augment_crop_with_maps(image: np.ndarray, maps: tuple[np.ndarray, ...], rng: np.random.Generator,
                           strength: float = 1.0, damage: list[str] | None = None,
                           ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """`augment_crop` with per-pixel maps carried through the warp (see `loose_crop_with_maps`):
    (crop, each map cut as the crop, each map warped but not cut). The maps draw nothing from `rng`."""
    crop, cut, whole = loose_crop_with_maps(image, maps, rng, strength)
    return photometric(crop, rng, damage), cut, whole


def augment_crop(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
                 damage: list[str] | None = None) -> np.ndarray:
    """A clean rendered crop as a camera and the localiser would deliver it (`damage`: see `photometric`)."""
    return augment_crop_with_maps(image, (), rng, strength, damage)[0]
