"""Recognition models and their inference wrappers.

`load_plate_reader()` is the seam the video camera driver uses. The trained ONNX plate and
container-code readers belong to the vision work (its own issue); until they are committed here
it returns None, and video cameras watch their streams without reading plates (their health
says so). The ANPR cameras that publish results over MQTT need no model on the node.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PlateReader = Callable[[np.ndarray], list[tuple[str, float]]]


def load_plate_reader(threads: int = 1) -> PlateReader | None:
    """The plate reader from the committed models, or None when no model is installed."""
    return None
