"""Seeded synthetic datasets: every sample i of seed s comes from its own Generator([s, i]),
so a set is the same whichever process or machine renders it."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass

import cv2
import numpy as np

from models.synth.augment import augment_crop_with_maps
from models.synth.container_synth import render_container
from models.synth.legibility import LEGIBLE_DPRIME, legibility
from models.synth.plate_synth import GUANGXI_SHARE, render_plate
from models.synth.realistic import realistic_plate
from models.vision.preprocess import CONTAINER_WIDTH, INPUT_HEIGHT, PLATE_WIDTH, container_input, plate_input

HELD_OUT_SEED = 20261201  # the evaluation sets; training seeds must differ
CALIBRATION_SEED = 20261101  # the sets the confidence maps are fitted on; neither training nor evaluation
PLATE_CLASSES = {"vn1": ("VN", 1), "vn2": ("VN", 2), "cn1": ("CN", 1), "cn2": ("CN", 2)}
CONTAINER_CLASSES = {"h1": "h1", "h2": "h2", "v": "v"}


@dataclass(frozen=True)
class Sample:
    """An augmented crop (BGR), its label and its class."""

    crop: np.ndarray
    label: str
    kind: str
    damage: tuple[str, ...] = ()  # the camera harms the crop was given (`augment.DAMAGE`)
    legibility: float = float("inf")  # d' of its least legible character (`models.synth.legibility`)

    @property
    def legible(self) -> bool:
        """Whether every character still stands out enough for a person to read it."""
        return self.legibility >= LEGIBLE_DPRIME


def _damaged(image: np.ndarray, ink: np.ndarray, cells: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, ...], float]:
    """The clean render as a camera and the localiser deliver it (`augment.augment_crop`, the same
    draws), the harms it was given, and how legible its worst character still is."""
    surface = np.ones(image.shape[:2], np.uint8)
    damage: list[str] = []
    crop, (ink, cells, surface), (_, whole_cells, _) = augment_crop_with_maps(image, (ink, cells, surface), rng,
                                                                              damage=damage)
    return crop, tuple(damage), legibility(crop, ink, cells, whole_cells, surface)


def plate_sample(seed: int, index: int, kind: str | None = None, guangxi_share: float = GUANGXI_SHARE) -> Sample:
    """Plate sample `index` of `seed`: a random class unless `kind` names one (`guangxi_share`: see
    `plate_synth.cn_text`)."""
    rng = np.random.default_rng([seed, index])
    country, lines = PLATE_CLASSES[kind] if kind else (None, None)
    plate = render_plate(rng, country, lines, guangxi_share=guangxi_share)
    crop, damage, legible = _damaged(plate.image, plate.ink, plate.cells, rng)
    return Sample(crop, plate.label, plate.kind, damage, legible)


def realistic_sample(seed: int, index: int, kind: str | None = None) -> Sample:
    """Realistic plate crop `index` of `seed` (`models.synth.realistic`: tight, small, tilted, any
    province); its legibility is not measured (infinite)."""
    rng = np.random.default_rng([seed, index, 1])  # its own stream: sample i of a seed is either kind
    country, lines = PLATE_CLASSES[kind] if kind else (None, None)
    plate = realistic_plate(rng, country, lines)
    return Sample(plate.crop, plate.label, plate.kind)


def mixed_plate_sample(seed: int, index: int, realistic: float, guangxi_share: float) -> Sample:
    """Sample `index` of a training set whose `realistic` share is drawn by `realistic_sample`, the
    rest by `plate_sample` with `guangxi_share`."""
    if realistic and np.random.default_rng([seed, index, 2]).random() < realistic:
        return realistic_sample(seed, index)
    return plate_sample(seed, index, guangxi_share=guangxi_share)


def container_sample(seed: int, index: int, kind: str | None = None) -> Sample:
    """Container-code sample `index` of `seed`: a random layout unless `kind` names one."""
    rng = np.random.default_rng([seed, index])
    code = render_container(rng, kind)
    crop, damage, legible = _damaged(code.image, code.ink, code.cells, rng)
    return Sample(crop, code.label, code.layout, damage, legible)


def held_out(task: str, kind: str, count: int, seed: int = HELD_OUT_SEED, start: int = 0) -> list[Sample]:
    """The fixed evaluation set of one class, never used in training (`seed`: another fixed set;
    `start`: its samples from that one on)."""
    make = plate_sample if task == "plates" else container_sample
    class_no = sorted(PLATE_CLASSES if task == "plates" else CONTAINER_CLASSES).index(kind)
    return [make(seed + class_no, i, kind) for i in range(start, count)]


def _training_chunk(args: tuple[str, int, int, int, float, float]) -> tuple[np.ndarray, list[str], np.ndarray]:
    task, seed, start, stop, realistic, guangxi_share = args
    width = PLATE_WIDTH if task == "plates" else CONTAINER_WIDTH
    if task == "plates" and (realistic or guangxi_share != GUANGXI_SHARE):
        def make(seed: int, index: int) -> Sample:
            return mixed_plate_sample(seed, index, realistic, guangxi_share)
    else:
        make = plate_sample if task == "plates" else container_sample
    to_input: Callable = plate_input if task == "plates" else container_input
    images = np.empty((stop - start, INPUT_HEIGHT, width), np.uint8)
    labels = []
    legibility = np.empty(stop - start, np.float32)
    for row, index in enumerate(range(start, stop)):
        sample = make(seed, index)
        # Training cuts two-line crops where the renderer knows they are two-line; run time decides
        # from the crop (and reads ambiguous crops both ways).
        two = sample.kind in ("vn2", "cn2", "h2")
        x = to_input(sample.crop, two_lines=two)[0]
        images[row] = np.round((x + 1.0) * 127.5).astype(np.uint8)
        labels.append(sample.label)
        legibility[row] = min(sample.legibility, 1e6)
    return images, labels, legibility


def _held_out_labels(args: tuple[str, str, int, int]) -> list[str]:
    task, kind, start, stop = args
    return [sample.label for sample in held_out(task, kind, stop, start=start)]


def held_out_labels(task: str, kinds: tuple[str, ...], count: int, workers: int | None = None) -> set[str]:
    """The labels of the first `count` held-out crops of each class in `kinds` (what `held_out` gives),
    rendered on `workers` processes: the labels a training set must leave out."""
    step = 250
    chunks = [(task, kind, start, min(count, start + step)) for kind in kinds for start in range(0, count, step)]
    if not chunks:
        return set()
    with _pool(min(len(chunks), workers or os.cpu_count() or 1)) as pool:
        return {label for labels in pool.map(_held_out_labels, chunks) for label in labels}


def _one_thread() -> None:
    # each worker renders alone; OpenCV's own thread pool in every worker would only oversubscribe
    cv2.setNumThreads(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    # Spawned, not forked: a training process has torch's (and the GPU driver's) threads running, and a
    # child forked while one of them held a lock hung before it rendered anything (seen in the tests).
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)


def training_set(task: str, seed: int, count: int, workers: int | None = None,
                 exclude: set[str] | frozenset[str] = frozenset(), deadline: float | None = None,
                 chunk: int = 500, realistic: float = 0.0,
                 guangxi_share: float = GUANGXI_SHARE) -> tuple[np.ndarray, list[str], np.ndarray, int]:
    """`count` preprocessed training inputs (uint8, N x 32 x W), their labels, their legibility
    (`Sample.legibility`) and how many samples were rendered, rendered in parallel in chunks of
    `chunk` samples.

    Samples whose label is in `exclude` (the held-out labels) are dropped. With a `deadline`
    (`time.monotonic()` seconds) rendering stops there: the set is then the samples of the chunks
    finished in order by then (at least the first chunk), the same crops a full render starts with.
    Plates only: `realistic` of the samples are realistic crops (`mixed_plate_sample`), and
    `guangxi_share` of the others' Chinese plates are 桂.
    """
    if seed in (HELD_OUT_SEED, CALIBRATION_SEED):
        raise ValueError("the training seed must differ from the held-out and calibration seeds")
    workers = workers or os.cpu_count() or 1
    chunks = [(task, seed, start, min(count, start + chunk), realistic, guangxi_share)
              for start in range(0, count, chunk)]
    images, labels, legibility, rendered = [], [], [], 0
    with _pool(workers) as pool:
        futures = [pool.submit(_training_chunk, job) for job in chunks]
        for number, future in enumerate(futures):
            remaining = None if deadline is None or number == 0 else deadline - time.monotonic()
            try:
                chunk_images, chunk_labels, chunk_legibility = future.result(
                    timeout=None if remaining is None else max(0.0, remaining))
            except FuturesTimeout:
                pool.shutdown(wait=True, cancel_futures=True)
                break
            rendered += len(chunk_labels)
            keep = [i for i, label in enumerate(chunk_labels) if label not in exclude]
            images.append(chunk_images[keep])
            labels.extend(chunk_labels[i] for i in keep)
            legibility.append(chunk_legibility[keep])
    return np.concatenate(images), labels, np.concatenate(legibility), rendered
