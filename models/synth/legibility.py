"""How legible every character of a damaged synthetic crop still is, measured on the crop itself.

The renderer knows where each character's ink is (`ink`, `cells`) and the augmentation carries
that through its warp, so after the camera damage each character can be judged by what a reader
has to go on: how far its ink stands out from the paper around it, against the spread of both
(the sensitivity index d' of signal detection). Glare that washes a character out, night gain and
sensor noise that bury it, blur and low resolution that smear ink into paper all lower it; a
character the localiser's box cut off is not there to read at all.

A crop is only as legible as its worst character: the reader must get every character right.
"""

from __future__ import annotations

import cv2
import numpy as np

# d' below which a character is taken as unreadable. Chosen by eye on held-out crops sorted by
# their worst character (the montage `python -m models.synth.montage` writes): at 1.0 and
# below the character is gone under glare, night or noise; at 2.0 and above a person reads it;
# in between, a person guesses some.
LEGIBLE_DPRIME = 1.5
VISIBLE_SHARE = 0.6  # a character less of whose box than this is inside the crop was cut off
INK_CORE = 0.6  # coverage from which a pixel is the character's ink
PAPER = 0.05  # coverage below which a pixel is paper


def character_dprimes(crop: np.ndarray, ink: np.ndarray, cells: np.ndarray,
                      whole_cells: np.ndarray | None = None, surface: np.ndarray | None = None) -> list[float]:
    """d' of each character of `crop` (BGR or grey), in character order; 0 for one cut off or drowned.

    `ink` and `cells` are the renderer's maps cut like the crop; `whole_cells` the cells before the
    cut, to tell how much of each character the crop kept; `surface` (non-zero on the plate or door,
    not on the scenery round it) keeps the paper to what the text is painted on.
    """
    grey = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    grey = grey.astype(np.float32)
    count = int(max(cells.max(initial=0), 0 if whole_cells is None else whole_cells.max(initial=0)))
    out = []
    for k in range(1, count + 1):
        region = cells == k
        kept = int(region.sum())
        if whole_cells is not None and kept < VISIBLE_SHARE * max(1, int((whole_cells == k).sum())):
            out.append(0.0)
            continue
        ys, xs = np.nonzero(region)
        if ys.size == 0:
            out.append(0.0)
            continue
        pad = max(2, int(0.25 * (ys.max() - ys.min() + 1)))
        y0, y1 = max(0, ys.min() - pad), min(grey.shape[0], ys.max() + pad + 1)
        x0, x1 = max(0, xs.min() - pad), min(grey.shape[1], xs.max() + pad + 1)
        window_ink = ink[y0:y1, x0:x1]
        window = grey[y0:y1, x0:x1]
        core = window[(window_ink >= INK_CORE) & region[y0:y1, x0:x1]]
        on_paper = window_ink <= PAPER
        if surface is not None:
            on_paper &= surface[y0:y1, x0:x1] > 0
        paper = window[on_paper]
        if core.size < 3 or paper.size < 3:
            out.append(0.0)
            continue
        spread = float(np.sqrt((core.var() + paper.var()) / 2.0))
        out.append(abs(float(core.mean()) - float(paper.mean())) / max(spread, 1.0))
    return out


def legibility(crop: np.ndarray, ink: np.ndarray, cells: np.ndarray, whole_cells: np.ndarray | None = None,
               surface: np.ndarray | None = None) -> float:
    """The d' of the crop's least legible character (0 when a character is missing)."""
    values = character_dprimes(crop, ink, cells, whole_cells, surface)
    return min(values) if values else 0.0
