"""A montage of the least legible held-out crops of a class, to choose the legibility threshold by eye.

    python -m models.synth.montage containers v --out /tmp/v.png

Apart from `legibility.py` so that the measure does not import the data set that uses it.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from models.synth.dataset import held_out


def write_montage(task: str, kind: str, count: int, out: str) -> None:
    """Held-out crops sorted by legibility, each captioned with it, to choose the threshold by eye."""
    samples = sorted(held_out(task, kind, count), key=lambda s: s.legibility)[:count // 5]
    tiles = []
    for sample in samples:
        crop = sample.crop
        h = 64
        w = min(300, int(crop.shape[1] * h / crop.shape[0]))
        tile = np.full((h + 16, 310, 3), 255, np.uint8)
        tile[:h, :w] = cv2.resize(crop, (w, h))
        cv2.putText(tile, f"d'={sample.legibility:.2f} {sample.label}", (2, h + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 200), 1)
        tiles.append(tile)
    while len(tiles) % 5:
        tiles.append(np.full_like(tiles[0], 255))
    cv2.imwrite(out, np.vstack([np.hstack(tiles[i:i + 5]) for i in range(0, len(tiles), 5)]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write a montage of the least legible held-out crops of a class.")
    parser.add_argument("task", choices=("plates", "containers"))
    parser.add_argument("kind", help="vn1, vn2, cn1, cn2 / h1, h2, v")
    parser.add_argument("--count", type=int, default=200, help="held-out crops to sort (the least legible fifth shown)")
    parser.add_argument("--out", default="legibility.png")
    args = parser.parse_args()
    write_montage(args.task, args.kind, args.count, args.out)
