"""Vision: held-out accuracy per class, the real sets, calibration, and single-thread speed per crop
and per 1920x1080 frame, beside rapidocr_onnxruntime on the same crops and frames.

Real sets (`real`): real CN plate crops, real container crops cut from the real frames' labelled
boxes, and the real container frames; for each, ours (the cascade), our fast models alone and
rapidocr's recogniser alone (crops) or its detector + recogniser (frames): exact match, wrong- and
no-reading rates, p50/p90/p99 ms on one thread.

The held-out sets come from `models.training.dataset.held_out` (a seed the training never uses,
and their labels were excluded from training). Real crops are read from the shared evaluation
folder (file name = label) when it is there, and from any other folder of labelled crops given
(`smartgate bench vision --real-crops DIR`: plates of either country or container codes, labelled by
file name or by a `labels.csv` / `labels.jsonl` beside them). Prints JSON.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.stats import percentiles
from devices.protocols.iso6346 import is_valid_container
from devices.protocols.plates import normalise_plate

PLATE_CLASSES = ("vn1", "vn2", "cn1", "cn2")
CONTAINER_LAYOUTS = ("h1", "h2", "v")


def real_crops_dir() -> Path | None:
    """The labelled real CN plate crops (shared/data/plates/cn-real), if present."""
    env = os.environ.get("SMARTGATE_REAL_CROPS")
    candidates = [Path(env)] if env else []
    root = Path(__file__).resolve().parent.parent
    relative = Path("shared") / "data" / "plates" / "cn-real"
    candidates += [folder / relative for folder in (root, *root.parents)]  # a worktree sits deeper than main
    return next((c for c in candidates if c.is_dir()), None)


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class LabelsError(ValueError):
    """A folder of real crops that cannot be measured: missing, empty, or its labels file unreadable."""


def labelled_crops(folder: Path) -> list[tuple[Path, str]]:
    """A folder's crops and their labels, in file-name order.

    Labels come from `labels.csv` (`file,label` per row, a header row allowed) or `labels.jsonl`
    (`{"file": ..., "label": ...}` per line) in the folder when there is one, with files relative to
    the folder; otherwise each image's file name without its suffix is its label (`皖A12345.jpg`,
    `29C-123.45.png`, `59-P1 123.45.jpg`). A labels file is how to label two crops of one plate, or a
    label a file name cannot hold (`/`). Raises LabelsError naming the folder (and line) and the fix.
    """
    if not folder.is_dir():
        raise LabelsError(f"{folder}: no such folder of real crops; give a folder of images named by their labels "
                          f"(or with a labels.csv / labels.jsonl)")
    rows: list[tuple[Path, str]] = []
    csv_file, jsonl_file = folder / "labels.csv", folder / "labels.jsonl"
    if csv_file.is_file():
        import csv

        with csv_file.open(newline="", encoding="utf-8-sig") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    raise LabelsError(f"{csv_file}:{number}: want `file,label`, got {row!r}")
                if number == 1 and row[0].strip().lower() == "file":
                    continue  # the header
                rows.append((folder / row[0].strip(), row[1].strip()))
    elif jsonl_file.is_file():
        for number, line in enumerate(jsonl_file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                rows.append((folder / str(entry["file"]), str(entry["label"])))
            except (ValueError, KeyError, TypeError) as error:
                raise LabelsError(f"{jsonl_file}:{number}: want {{\"file\": ..., \"label\": ...}} ({error})") from error
    else:
        rows = [(path, path.stem) for path in sorted(folder.iterdir())
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    if not rows:
        raise LabelsError(f"{folder}: no labelled crops ({', '.join(sorted(IMAGE_SUFFIXES))} files named by their "
                          f"labels, or a labels.csv / labels.jsonl)")
    return rows


def crops_kind(labels: list[str]) -> str:
    """"containers" when most labels are check-digit-valid ISO 6346 codes, else "plates"."""
    codes = sum(is_valid_container(_plain_code(label)) for label in labels)
    return "containers" if codes * 2 > len(labels) else "plates"


def _read_image(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), np.uint8)  # cv2.imread cannot open non-ASCII names everywhere
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


def _calibration(pairs: list[tuple[float, bool]], bins: int = 10) -> dict:
    """Expected calibration error and per-bin accuracy of (confidence, correct) pairs."""
    if not pairs:
        return {"ece": None, "bins": []}
    conf = np.array([p[0] for p in pairs])
    right = np.array([p[1] for p in pairs], dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    ece, table = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if not mask.any():
            continue
        gap = abs(conf[mask].mean() - right[mask].mean())
        ece += gap * mask.mean()
        table.append({"range": f"{lo:.1f}-{hi:.1f}", "n": int(mask.sum()),
                      "mean_confidence": round(float(conf[mask].mean()), 3),
                      "accuracy": round(float(right[mask].mean()), 3)})
    return {"ece": round(float(ece), 4), "bins": table}


class _Baseline:
    """rapidocr_onnxruntime (detector + classifier + recogniser) on one thread, as shipped in its wheel."""

    def __init__(self):
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)

    def crop_text(self, crop: np.ndarray) -> str:
        result, _ = self.engine(crop)
        if not result:
            return ""
        lines = sorted(result, key=lambda r: (min(p[1] for p in r[0]), min(p[0] for p in r[0])))
        return normalise_plate("".join(r[1] for r in lines))

    def line_text(self, crop: np.ndarray) -> str:
        """Its recogniser alone on the whole crop (no detection): its fastest way to read a crop."""
        result, _ = self.engine(crop, use_det=False, use_cls=False)
        return normalise_plate("".join(r[0] for r in result or []))

    def frame_texts(self, frame: np.ndarray) -> list[str]:
        result, _ = self.engine(frame)
        return [normalise_plate(r[1]) for r in result or []]


def _baseline() -> _Baseline | None:
    try:
        return _Baseline()
    except Exception:  # not installed: the bench still reports our own figures
        return None


# `--only`: the real sets alone, the real container frames alone, or the realistic synthetic plates alone
ONLY = ("real", "real-frames", "realistic")
REALISTIC_SEED = 20261301  # realistic synthetic plates for evaluation: no training run uses it


def run_vision_bench(per_class: int = 1000, frames: int = 100, baseline_per_class: int = 50,
                     real_limit: int | None = None, with_baseline: bool = True, only: str | None = None,
                     real_crops: list[Path] | None = None, real_frames: Path | None = None,
                     realistic_per_class: int = 300) -> dict:
    """All vision figures; `per_class` held-out crops per class, `frames` whole frames.

    The rapidocr baseline reads the first `baseline_per_class` crops of each class and a fifth of
    the frames; `real_limit` caps the labelled real crops read (None: all of them). `only="real"`
    measures the real sets alone, `only="real-frames"` the real container frames alone.
    """
    from models.synth.dataset import held_out
    from models.synth.legibility import LEGIBLE_DPRIME
    from models.synth.scenes import scene
    from models.vision.reader import VisionReader

    if only is not None and only not in ONLY:
        raise ValueError(f"vision bench: --only {only!r}: use one of {', '.join(ONLY)}")
    crops_dirs = [Path(folder) for folder in real_crops or []]
    for folder in crops_dirs:  # a wrong folder is said before minutes of reading, not after
        labelled_crops(folder)
    frames_dir = Path(real_frames) if real_frames else None
    if frames_dir is not None and not (frames_dir / "labels.jsonl").is_file():
        raise LabelsError(f"{frames_dir}: no labels.jsonl; real frames need one line per frame "
                          f'({{"file": ..., "codes": [{{"code": ..., "box": [x1, y1, x2, y2]}}]}})')
    cv2.setNumThreads(1)
    reader = VisionReader(threads=1)
    if only == "realistic":
        return {"threads": 1, "only": only, "realistic_synthetic": _realistic_sets(reader, realistic_per_class)}
    if only is not None:
        return {"threads": 1, "only": only,
                "real": _real_sets(reader, real_limit, with_baseline, frames_only=only == "real-frames",
                                   crops_dirs=crops_dirs, frames_dir=frames_dir)}
    baseline = _baseline() if with_baseline else None
    figures: dict = {"threads": 1, "per_class": per_class, "held_out": {}, "baseline_rapidocr": {}}
    crop_ms: list[float] = []
    crop_cpu_ms: list[float] = []
    confidence_pairs: dict[str, list[tuple[float, bool]]] = {"plates": [], "containers": []}
    base_ms: list[float] = []
    line_ms: list[float] = []

    tasks = [("plates", PLATE_CLASSES)]
    if reader.containers is not None:
        tasks.append(("containers", CONTAINER_LAYOUTS))
    else:
        figures["containers"] = "container_reader.onnx not installed: container numbers not measured"
    for task, classes in tasks:
        read = reader.read_plate_crop if task == "plates" else reader.read_container_crop
        for kind in classes:
            samples = held_out(task, kind, per_class)
            right = none = invalid = 0
            outcomes: list[tuple[tuple[str, ...], bool]] = []
            legibility: list[tuple[bool, str]] = []
            for sample in samples:
                reading, (took, cpu) = _timed(read, sample.crop)
                crop_ms.append(took)
                crop_cpu_ms.append(cpu)
                outcomes.append((sample.damage, reading is not None and reading.text == sample.label))
                legibility.append((sample.legible, "none" if reading is None
                                   else "right" if reading.text == sample.label else "wrong"))
                if reading is None:
                    none += 1
                    continue
                ok = reading.text == sample.label
                right += ok
                if task == "containers":
                    invalid += not is_valid_container(reading.text)
                confidence_pairs[task].append((reading.confidence, ok))
            entry = {"n": len(samples), "exact_match": round(right / len(samples), 4),
                     "no_reading": round(none / len(samples), 4), "wrong_reading": len(samples) - right - none}
            if task == "containers":
                entry["check_digit_invalid_reported"] = invalid
            entry.update(_by_legibility(legibility))
            entry.update(_by_damage(outcomes))
            figures["held_out"][f"{task}:{kind}"] = entry
            if baseline is not None:
                base_right = line_right = 0
                subset = samples[:baseline_per_class]
                for sample in subset:
                    started = time.perf_counter()
                    text = baseline.crop_text(sample.crop)
                    base_ms.append((time.perf_counter() - started) * 1000)
                    base_right += text == sample.label
                    started = time.perf_counter()
                    text = baseline.line_text(sample.crop)
                    line_ms.append((time.perf_counter() - started) * 1000)
                    line_right += text == sample.label
                figures["baseline_rapidocr"][f"{task}:{kind}"] = {
                    "n": len(subset), "exact_match": round(base_right / len(subset), 4),
                    "recogniser_only_exact_match": round(line_right / len(subset), 4)}
    figures["legible_min_dprime"] = LEGIBLE_DPRIME
    cn = [figures["held_out"][f"plates:{k}"] for k in ("cn1", "cn2")]
    figures["held_out"]["plates:cn"] = {"n": sum(c["n"] for c in cn),
                                        "exact_match": round(sum(c["exact_match"] * c["n"] for c in cn)
                                                             / sum(c["n"] for c in cn), 4)}
    containers = [figures["held_out"][f"containers:{k}"] for k in CONTAINER_LAYOUTS if f"containers:{k}"
                  in figures["held_out"]]
    figures["held_out"]["containers:all"] = {} if not containers else {
        "n": sum(c["n"] for c in containers),
        "exact_match": round(sum(c["exact_match"] * c["n"] for c in containers) / sum(c["n"] for c in containers), 4),
        "check_digit_invalid_reported": sum(c["check_digit_invalid_reported"] for c in containers)}
    # the reported (calibrated) confidence against how often readings that sure were right
    figures["calibration"] = {**_calibration(confidence_pairs["plates"] + confidence_pairs["containers"]),
                              "plates": _calibration(confidence_pairs["plates"]),
                              "containers": _calibration(confidence_pairs["containers"])}
    figures["crop_ms"] = percentiles(crop_ms)
    figures["crop_cpu_ms"] = percentiles(crop_cpu_ms)
    figures["model_only_ms"] = _model_only_ms(reader)
    if base_ms:
        figures["baseline_rapidocr"]["crop_ms"] = percentiles(base_ms)
        figures["baseline_rapidocr"]["recogniser_only_crop_ms"] = percentiles(line_ms)

    figures["real"] = _real_sets(reader, real_limit, with_baseline, crops_dirs=crops_dirs, frames_dir=frames_dir)
    cn = figures["real"]["cn_crops"]
    figures["real_cn_crops"] = {"n": cn["n"]} if not cn["n"] else {  # the earlier summary, kept for its readers
        "n": cn["n"], "exact_match": cn["ours"]["exact_match"], "no_reading": cn["ours"]["no_reading"],
        "wrong_reading": cn["ours"]["wrong_count"], "source": cn["source"],
        "baseline_rapidocr_rec_alone_exact_match": cn.get("rapidocr_rec_alone", {}).get("exact_match")}
    figures["frames_1920x1080"] = _frames(reader, baseline, scene, frames)
    figures["realistic_synthetic"] = _realistic_sets(reader, realistic_per_class)
    return figures


def _realistic_sets(reader, per_class: int) -> dict:
    """Realistic synthetic plate crops (`models.synth.realistic`: tight, small, tilted and sheared, any province,
    Vietnamese plates as printed, motorbike plates among the two-row ones) of a seed no training uses, per class:
    ours and our fast models alone. Not real images: the stand-in for the real Vietnamese crops we do not hold,
    a development figure beside the real sets, never a target."""
    from models.synth.dataset import realistic_sample
    from models.vision.reader import VisionReader

    fast = VisionReader(threads=1, strong=False)
    out: dict = {"note": "synthetic (models/synth/realistic.py), not real; seed "
                         f"{REALISTIC_SEED}, which no training run uses", "per_class": per_class}
    readers = {"ours": _text_and_confidence(reader.read_plate_crop),
               "ours_fast_alone": _text_and_confidence(fast.read_plate_crop)}
    for number, kind in enumerate(PLATE_CLASSES):
        samples = ((sample.crop, sample.label) for sample in
                   (realistic_sample(REALISTIC_SEED + number, index, kind) for index in range(per_class)))
        out[kind] = _tally_crops(samples, readers)
    return out


def _by_legibility(outcomes: list[tuple[bool, str]]) -> dict:
    """The crops split by whether every character is still legible (`models.training.legibility`).

    On a legible crop the right answer is the label; on an illegible one no person could give it,
    so "no reading" is the right answer there and a wrong reading the only failure.
    """
    def count(rows: list[str], status: str) -> int:
        return sum(row == status for row in rows)

    legible = [status for ok, status in outcomes if ok]
    illegible = [status for ok, status in outcomes if not ok]
    return {"legible": {"n": len(legible),
                        "exact_match": round(count(legible, "right") / len(legible), 4) if legible else None,
                        "wrong_reading": count(legible, "wrong")},
            "illegible": {"n": len(illegible), "no_reading": count(illegible, "none"),
                          "read_right": count(illegible, "right"), "wrong_reading": count(illegible, "wrong")}}


def _by_damage(outcomes: list[tuple[tuple[str, ...], bool]]) -> dict:
    """Exact match of the crops by camera harm: those without night or glare, and those with each harm."""
    from models.synth.augment import DAMAGE

    def share(rows: list[bool]) -> dict:
        return {"n": len(rows), "exact_match": round(sum(rows) / len(rows), 4) if rows else None}

    # Night gain and glare blobs are what most often leave a crop unreadable even to a person.
    lit = [ok for damage, ok in outcomes if "night" not in damage and "glare" not in damage]
    return {"without_night_or_glare": share(lit),
            "by_damage": {name: share([ok for damage, ok in outcomes if name in damage]) for name in DAMAGE}}


def _model_only_ms(reader) -> dict:
    from models.vision.preprocess import CONTAINER_WIDTH, PLATE_WIDTH

    out = {}
    models = (("plate", reader.plates, PLATE_WIDTH), ("container", reader.containers, CONTAINER_WIDTH),
              ("plate_second", reader.plate_second, PLATE_WIDTH),
              ("container_second", reader.container_second, CONTAINER_WIDTH),
              ("plate_third", reader.plate_third, PLATE_WIDTH),
              ("container_third", reader.container_third, CONTAINER_WIDTH))
    for name, model, width in models:
        if model is None:
            continue
        x = np.zeros((1, 32, width), np.float32)
        samples = []
        for _ in range(300):
            started = time.perf_counter()
            model.probabilities([x])
            samples.append((time.perf_counter() - started) * 1000)
        out[name] = percentiles(samples)
    return out


def real_frames_dir() -> Path | None:
    """The labelled real container frames (shared/data/containers/real-frames), if present."""
    env = os.environ.get("SMARTGATE_REAL_FRAMES")
    candidates = [Path(env)] if env else []
    root = Path(__file__).resolve().parent.parent
    relative = Path("shared") / "data" / "containers" / "real-frames"
    candidates += [folder / relative for folder in (root, *root.parents)]
    return next((c for c in candidates if (c / "labels.jsonl").is_file()), None)


def _plain_code(text: str) -> str:
    return "".join(c for c in text.upper() if c.isascii() and c.isalnum())


class _Tally:
    """Right / wrong / no reading and single-thread time of one reader on one real set."""

    def __init__(self):
        self.right = self.wrong = self.none = 0
        self.ms: list[float] = []
        self.cpu_ms: list[float] = []
        self.confidences: list[tuple[float, bool]] = []  # (reported confidence, right) of each reading

    def add(self, text: str | None, label: str, ms: tuple[float, float], confidence: float | None = None) -> None:
        self.ms.append(ms[0])
        self.cpu_ms.append(ms[1])
        if not text:
            self.none += 1
        elif text == label:
            self.right += 1
        else:
            self.wrong += 1
        if text and confidence is not None:
            self.confidences.append((confidence, text == label))

    def figures(self) -> dict:
        n = max(1, self.right + self.wrong + self.none)
        out = {"n": self.right + self.wrong + self.none, "exact_match": round(self.right / n, 4),
               "wrong_reading": round(self.wrong / n, 4), "no_reading": round(self.none / n, 4),
               "wrong_count": self.wrong, "ms": percentiles(self.ms), "cpu_ms": percentiles(self.cpu_ms)}
        if self.confidences:  # does a reported confidence mean what it says on real images?
            out["calibration"] = _calibration(self.confidences)
        return out


def _tally_crops(samples, readers: dict, group=None) -> dict:
    """Each reader's right / wrong / none and time over `samples` ((image, label) pairs); `readers` maps a
    name to a function of the image giving (text or None, confidence or None). With `group` (label →
    name), each group's figures apart too, under `by_group`."""
    tallies: dict[str | None, dict[str, _Tally]] = {}
    for image, label in samples:
        keys = {None, group(label) if group else None}
        for who, read in readers.items():
            (text, confidence), ms = _timed(read, image)
            for key in keys:
                tallies.setdefault(key, {name: _Tally() for name in readers})[who].add(text, label, ms, confidence)
    whole = tallies.get(None, {name: _Tally() for name in readers})
    figures: dict = {name: tally.figures() for name, tally in whole.items()}
    groups = {key: value for key, value in tallies.items() if key is not None}
    if group is not None and groups:
        figures["by_group"] = {key: {"n": value[next(iter(readers))].figures()["n"],
                                     **{name: tally.figures() for name, tally in value.items()}}
                               for key, value in sorted(groups.items())}
    return figures


def _text_and_confidence(read):
    """A reader's crop function as `_tally_crops` wants it: (text, confidence), both None for no reading."""
    def run(image):
        reading = read(image)
        return (reading.text, reading.confidence) if reading is not None else (None, None)
    return run


def _timed(function, *args):
    """The call's result and its (wall, this thread's CPU) milliseconds. Every model runs on the calling
    thread (one intra-op thread, OpenCV on one thread), so the CPU time is the single-thread cost even
    on a machine shared with other work, where the wall time also counts waiting for a core."""
    started, cpu = time.perf_counter(), time.thread_time()
    out = function(*args)
    return out, ((time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000)


def _real_sets(reader, limit: int | None, with_baseline: bool, frames_only: bool = False,
               crops_dirs: list[Path] | None = None, frames_dir: Path | None = None) -> dict:
    """Every real evaluation set: ours (the cascade), our fast models alone, and rapidocr's recogniser alone
    (its PP-OCRv4 rec ONNX run directly on the crop, free greedy decoding) on crops; ours and rapidocr's
    detector + recogniser on whole frames. `crops_dirs`: more folders of labelled real crops (`labelled_crops`),
    each reported under `crops` by its folder's name; `frames_dir`: real frames instead of the shared ones.
    Evaluation only: nothing here is fitted on these sets."""
    from models.vision.grammar import PLATES
    from models.vision.reader import VisionReader
    from models.vision.strong import REC_NAME, StrongRecogniser, find_model

    fast = VisionReader(threads=1, strong=False)
    rec_path = find_model(REC_NAME) if with_baseline else None
    rec = StrongRecogniser(rec_path, threads=1) if rec_path is not None else None
    out: dict = {"note": "evaluation only; ours = the cascade (fast models, then PP-OCRv4 rec on unsure crops); "
                         "rapidocr_rec_alone = PP-OCRv4 rec ONNX on the whole crop, no detector, greedy"}

    def crops_set(samples, read_ours, read_fast, normalise, group=None) -> dict:
        readers = {"ours": _text_and_confidence(read_ours), "ours_fast_alone": _text_and_confidence(read_fast)}
        if rec is not None:
            readers["rapidocr_rec_alone"] = lambda image: (normalise(rec.text(image)[0]), None)
        return _tally_crops(samples, readers, group)

    def plate_country(label: str) -> str:
        return PLATES.kind_of(label) or "not a VN or CN plate"

    if not frames_only:
        out["crops"] = {}
        seen = {real_crops_dir().resolve()} if real_crops_dir() is not None else set()
        for folder in crops_dirs or []:
            folder = Path(folder)
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            listed = labelled_crops(folder)[:limit]
            kind = crops_kind([label for _, label in listed])
            normalise = normalise_plate if kind == "plates" else _plain_code
            samples, unreadable = [], []
            for path, label in listed:
                image = _read_image(path) if path.is_file() else None
                if image is None:
                    unreadable.append(path.name)
                else:
                    samples.append((image, normalise(label)))
            name = folder.name if folder.name not in out["crops"] else str(folder)
            read_ours, read_fast = ((reader.read_plate_crop, fast.read_plate_crop) if kind == "plates"
                                    else (reader.read_container_crop, fast.read_container_crop))
            out["crops"][name] = {"n": len(samples), "source": str(folder), "kind": kind,
                                  "unreadable_files": unreadable,
                                  **crops_set(samples, read_ours, read_fast, normalise,
                                              group=plate_country if kind == "plates" else None)}
    folder = real_crops_dir()
    if frames_only:
        pass
    elif folder is None:
        out["cn_crops"] = {"n": 0, "note": "shared/data/plates/cn-real not found"}
    else:
        samples = [(image, normalise_plate(path.stem)) for path in sorted(folder.glob("*.jpg"))[:limit]
                   if (image := _read_image(path)) is not None]
        out["cn_crops"] = {"n": len(samples), "source": str(folder),
                           **crops_set(samples, reader.read_plate_crop, fast.read_plate_crop, normalise_plate)}
        out["cn_plates_in_frames"] = _plates_in_frames(reader, fast, samples)
    frames_dir = frames_dir or real_frames_dir()
    if frames_dir is None or reader.containers is None:
        out["container_crops"] = out["container_frames"] = {"n": 0, "note": "real frames or container model missing"}
        return out
    rows = [json.loads(line) for line in (frames_dir / "labels.jsonl").read_text().splitlines() if line.strip()]
    rows = rows[:limit]
    frames = [(row, _read_image(frames_dir / row["file"])) for row in rows]
    crops = []
    for row, frame in frames:
        for code in row["codes"] if frame is not None else []:
            x1, y1, x2, y2 = code["box"]
            crops.append((frame[max(0, y1):y2, max(0, x1):x2], code["code"]))
    if not frames_only:
        out["container_crops"] = {"n": len(crops), "source": str(frames_dir) + " (the labelled boxes)",
                                  **crops_set(crops, reader.read_container_crop, fast.read_container_crop,
                                              _plain_code)}
    out["container_frames"] = _real_frames(reader, fast, frames, with_baseline)
    return out


def _plates_in_frames(reader, fast, samples: list) -> dict:
    """Each real CN plate crop on a synthetic truck front in a 1920x1080 frame (`plate_crop_at_gate`,
    115-210 px wide): the frame reader's localiser, then its models. Hit: the label among the frame's
    readings; any other reading is a wrong one (the frame shows one plate). No real frames of plates are
    at hand: this is the nearest measure of reading a real plate in a camera frame."""
    from models.synth.scenes import plate_crop_at_gate

    def run(read) -> dict:
        hits = other = 0
        ms: list[float] = []
        cpu_ms: list[float] = []
        for index, (crop, label) in enumerate(samples):
            frame = plate_crop_at_gate(crop, label, seed=index).frame
            readings, (took, cpu) = _timed(read, frame)
            ms.append(took)
            cpu_ms.append(cpu)
            texts = {r.text for r in readings}
            hits += label in texts
            other += len(texts - {label})
        n = max(1, len(ms))
        return {"n": len(ms), "hit_rate": round(hits / n, 4), "other_readings": other,
                "ms": percentiles(ms), "cpu_ms": percentiles(cpu_ms)}

    return {"n": len(samples), "note": "real CN crops placed on synthetic truck fronts, 1920x1080",
            "ours": run(reader.read_plates), "ours_fast_alone": run(fast.read_plates)}


def _real_frames(reader, fast, frames: list, with_baseline: bool) -> dict:
    """Hit: the labelled code is among the frame's readings; other readings (a parked container behind,
    or a wrong reading) are counted apart, since other containers in view are not labelled."""
    from models.vision.reader import vote_container_codes

    def run(read) -> dict:
        hits = other = other_frames = 0
        ms: list[float] = []
        cpu_ms: list[float] = []
        trucks: dict[str, tuple[set[str], list]] = {}  # one truck's frames share the name before "-OCR-"
        for row, frame in frames:
            if frame is None:
                continue
            readings, (took, cpu) = _timed(read, frame)
            ms.append(took)
            cpu_ms.append(cpu)
            labels = {code["code"] for code in row["codes"]}
            texts = {r.text for r in readings}
            hits += bool(labels & texts)
            other += len(texts - labels)
            other_frames += bool(texts - labels)
            truck = trucks.setdefault(Path(row["file"]).name.split("-OCR-")[0], (set(), []))
            truck[0].update(labels)
            truck[1].append(readings)
        n = max(1, len(ms))
        # voted across each truck's views: every labelled code of the truck among the votes
        labelled = found = extra = 0
        for labels, per_frame in trucks.values():
            voted = {r.text for r in vote_container_codes(per_frame)}
            labelled += len(labels)
            found += len(labels & voted)
            extra += len(voted - labels)
        return {"n": len(ms), "hit_rate": round(hits / n, 4), "other_readings": other,
                "frames_with_other_reading": other_frames, "ms": percentiles(ms),
                "cpu_ms": percentiles(cpu_ms),
                "per_truck_voted": {"trucks": len(trucks), "codes": labelled,
                                    "found": round(found / max(1, labelled), 4), "other_readings": extra}}

    out = {"n": len(frames), "ours": run(reader.read_container_codes),
           "ours_without_detector": run(fast.read_container_codes)}
    baseline = _baseline() if with_baseline else None
    if baseline is not None:
        subset = frames[:max(2, len(frames) // 5)]
        hits, ms, cpu_ms = 0, [], []
        for row, frame in subset:
            texts, (took, cpu) = _timed(baseline.frame_texts, frame)
            ms.append(took)
            cpu_ms.append(cpu)
            joined = "|".join(_plain_code(t) for t in texts)
            hits += any(code["code"] in joined.replace("|", "") or code["code"] in joined for code in row["codes"])
        out["rapidocr_det_rec"] = {"n": len(subset), "hit_rate": round(hits / max(1, len(subset)), 4),
                                   "ms": percentiles(ms), "cpu_ms": percentiles(cpu_ms)}
    return out


def _frames(reader, baseline, scene, count: int) -> dict:
    ms, base_ms = [], []
    found = {"plate": [0, 0], "container": [0, 0]}
    false = {"plate": 0, "container": 0}  # readings of something the frame does not show
    base_found = {"plate": [0, 0], "container": [0, 0]}
    for index in range(count):
        frame_scene = scene(4242, index, "front" if index % 2 == 0 else "rear")
        started = time.perf_counter()
        plates = reader.read_plates(frame_scene.frame)
        codes = reader.read_container_codes(frame_scene.frame) if index % 2 else []
        ms.append((time.perf_counter() - started) * 1000)
        texts = {r.text for r in plates} | {r.text for r in codes}
        shown = {truth.label for truth in frame_scene.truths}
        false["plate"] += sum(r.text not in shown for r in plates)
        false["container"] += sum(r.text not in shown for r in codes)
        for truth in frame_scene.truths:
            found[truth.kind][1] += 1
            found[truth.kind][0] += truth.label in texts
        if baseline is not None and index < max(2, count // 5):
            started = time.perf_counter()
            base_texts = baseline.frame_texts(frame_scene.frame)
            base_ms.append((time.perf_counter() - started) * 1000)
            joined = "".join(base_texts)
            for truth in frame_scene.truths:
                base_found[truth.kind][1] += 1
                base_found[truth.kind][0] += truth.label in joined
    out = {"n": count, "ms": percentiles(ms),
           "plate_read_rate": round(found["plate"][0] / max(1, found["plate"][1]), 4),
           "container_read_rate": round(found["container"][0] / max(1, found["container"][1]), 4),
           "false_plate_readings": false["plate"], "false_container_readings": false["container"]}
    if base_ms:
        out["baseline_rapidocr"] = {"n": len(base_ms), "ms": percentiles(base_ms),
                                    "plate_read_rate": round(base_found["plate"][0]
                                                             / max(1, base_found["plate"][1]), 4),
                                    "container_read_rate": round(base_found["container"][0]
                                                                 / max(1, base_found["container"][1]), 4)}
    return out
