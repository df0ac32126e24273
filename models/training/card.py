"""Write the model cards (`models/plate_reader.md`, `models/container_reader.md`) from the training
records beside the models and a `smartgate bench vision` JSON:

    smartgate bench vision --out /tmp/vision.json
    python -m models.training.card --bench /tmp/vision.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent


def _row(name: str, ours: dict | None, base: dict | None) -> str:
    ours_text = f"{ours['exact_match']:.2%} (n={ours['n']})" if ours else "-"
    legible, illegible = (ours or {}).get("legible"), (ours or {}).get("illegible")
    legible_text = (f"{legible['exact_match']:.2%} (n={legible['n']}), {legible['wrong_reading']} wrong"
                    if legible and legible["n"] else "-")
    illegible_text = (f"{illegible['wrong_reading']} wrong, {illegible['no_reading']} unread, "
                      f"{illegible['read_right']} right (n={illegible['n']})" if illegible else "-")
    base_text = f"{base['exact_match']:.2%} (n={base['n']})" if base else "-"
    line_text = (f"{base['recogniser_only_exact_match']:.2%}" if base and "recogniser_only_exact_match" in base
                 else "-")
    return f"| {name} | {ours_text} | {legible_text} | {illegible_text} | {base_text} | {line_text} |"


HARMS = (("night", "night/IR"), ("glare", "glare"), ("low_resolution", "low resolution"), ("blur", "blur"),
         ("motion_blur", "motion blur"), ("dirt", "dirt"))


def _harm_table(held: dict, classes: list[tuple[str, str]]) -> list[str]:
    """This model's exact match on the held-out crops by the camera harm they were given."""
    def cell(entry: dict | None) -> str:
        return f"{entry['exact_match']:.2%} (n={entry['n']})" if entry and entry.get("n") else "-"

    rows = [(label, held[key]) for key, label in classes if "by_damage" in held.get(key, {})]
    if not rows:
        return []
    return ["", "By camera harm (a crop can have several; night/IR and glare are the ones that most often leave a "
            "crop unreadable even to a person):", "",
            "| class | without night or glare | " + " | ".join(name for _, name in HARMS) + " |",
            "| --- " * (len(HARMS) + 2) + "|",
            *(f"| {label} | {cell(entry['without_night_or_glare'])} | "
              + " | ".join(cell(entry["by_damage"].get(key)) for key, _ in HARMS) + " |" for label, entry in rows)]


def _common(task: str, onnx: Path, record: dict, bench: dict, classes: list[tuple[str, str]]) -> list[str]:
    size_mb = onnx.stat().st_size / 1e6
    digest = hashlib.sha256(onnx.read_bytes()).hexdigest()[:16]
    held, base = bench["held_out"], bench.get("baseline_rapidocr", {})
    lines = ["| class | this model, exact match, all crops | legible crops | illegible crops "
             "| rapidocr_onnxruntime (detector + recogniser) | rapidocr, recogniser alone |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [_row(label, held.get(key), base.get(key)) for key, label in classes]
    model_ms = bench["model_only_ms"]["plate" if task == "plates" else "container"]
    return [
        f"- File: `{onnx.name}`, {size_mb:.2f} MB, sha256 `{digest}…`; ONNX opset 17; runs on onnxruntime's CPU "
        "provider; needs only onnxruntime, OpenCV and numpy at run time.",
        *_precision_line(onnx),
        f"- Training on synthetic crops (labels of the held-out sets excluded: "
        f"{record['excluded_held_out_labels']:,}); batch {record['batch']}, AdamW, one-cycle LR, CTC loss, "
        f"{'bf16 autocast' if record.get('precision', 'bf16') == 'bf16' else 'fp32'} on "
        f"{record.get('device', 'cpu').replace('cpu', 'CPU, 2 vCPU')}. "
        f"Per-epoch record: `{onnx.stem}.training.json`.",
        f"  - {record['samples']:,} crops (seed {record['seed']}"
        + (f"; crops below d' {record['min_legibility']} left out" if record.get("min_legibility") else "")
        + (f"; per-batch shift/scale/shear/contrast jitter {record['jitter']}" if record.get("jitter") else "")
        + f"), {record['epochs']} epochs, LR peak {record['lr']}, "
        f"{record['train_seconds'] / 60:.0f} min; from "
        + (f"`{record['init']}` (see below)" if record.get("init") else "random weights")
        + f"; validation (greedy, {record['validation']:,} crops of its seed) after the last epoch "
        f"{record['history'][-1]['val_exact']:.2%}.",
        "",
        "## Held-out accuracy (synthetic, fixed seed the training never used; grammar-ranked decoding)",
        "",
        *lines,
        "",
        f"Legible: every character's ink stands out from the paint around it by a d' of at least "
        f"{bench.get('legible_min_dprime', '?')} on the damaged crop and none was cut off by the crop",
        "(`models/synth/legibility.py`; `python -m models.synth.montage` shows the least legible crops of",
        "a class). On an illegible crop no person could give the label, so no reading is the right answer there",
        "and a wrong reading the only failure.",
        *_harm_table(held, classes),
        "",
        f"- Speed, one thread{_measured_on(bench)}: the model alone p50 {model_ms['p50']} ms / "
        f"p99 {model_ms['p99']} ms per crop; "
        f"the whole crop read (levelling, line cut, model, decoding) p50 {bench['crop_ms']['p50']} ms / "
        f"p99 {bench['crop_ms']['p99']} ms over every held-out crop of both models"
        + (f"; rapidocr_onnxruntime p50 {base['crop_ms']['p50']} ms per crop with its detector, "
           f"{base['recogniser_only_crop_ms']['p50']} ms with its recogniser alone."
           if "recogniser_only_crop_ms" in base else "."),
        f"- Confidence: the decoder's share of the model's probability mass mapped by `{onnx.stem}.calibration.json`"
        " (isotonic, fitted on a separate seeded calibration set by `python -m models.training.calibrate`); "
        f"expected calibration error of this model's held-out readings {bench['calibration'][task]['ece']}. "
        "The reader reports readings of calibrated confidence 0.5 or more.",
    ]


SPEC = """## Input / output
- Input `image`: float32 (N, 1, 32, {width}), grey scaled to [-1, 1] after a 2-98 % percentile
  stretch, made by `models.vision.preprocess.{fn}` from a BGR crop (levelled; two-line crops cut at
  their line gap and laid side by side{vertical}).
- Output `probs`: float32 (N, {steps}, {classes}) softmax over the CTC blank (index 0) and the
  charset in the ONNX metadata `charset` ({charset_note}); one step per 4 input columns.
- Decoding: `models.vision.ctc.decode` with the grammar in `models.vision.grammar` ({grammar}). A crop
  the first look leaves unsure (calibrated < 0.9) is read three more ways (smoothed, with a margin,
  trimmed; `models.vision.preprocess.second_looks`) and the looks vote; an unsure reading no other look
  repeats is dropped. A crop still unsure after them is also read as one line and cut into two lines
  at 30-70% of its height (`models.vision.preprocess.fallback_lines`), in case its line gap was missed.
"""


def _network_line(onnx: Path) -> str:
    """The card's line on the network, read from the ONNX file itself."""
    from models.training.transfer import onnx_widths, parameter_count

    widths = onnx_widths(onnx)
    params = parameter_count(onnx)
    blocks = "-".join(map(str, widths[:4]))
    return (f"- Network (`models/training/net.py`): CRNN, 4 strided/plain 3x3 conv blocks ({blocks})"
            f" and a (2,1) conv to {widths[4]} channels, two 1-D convs for context, 1x1 conv head; {params / 1e6:.2f} M"
            " parameters (batch norms folded in).")


def _precision_line(onnx: Path) -> list[str]:
    """The card's line on the 8-bit quantisation, where the file is quantised."""
    import onnx as onnx_lib

    meta = {p.key: p.value for p in onnx_lib.load(str(onnx)).metadata_props}
    if meta.get("precision") != "int8":
        return []
    return ["- 8-bit (`python -m models.training.quantize`, the last step of training): weights int8 per output "
            "channel, activations between the convolutions uint8 with ranges from percentile calibration on "
            "calibration-seed crops; the first convolution and the head stay in float. The model alone runs about "
            "1.6x as fast as in float and reads as many crops right (the figures in `models/training/quantize.py`)."]


def _measured_on(bench: dict) -> str:
    """' of <CPU> (<its vector extensions>)' where the bench recorded the machine, else nothing."""
    machine = bench.get("machine") or {}
    if not machine.get("cpu_model"):
        return ""
    flags = machine.get("cpu_speed_flags") or []
    return f" of {machine['cpu_model']}" + (f" ({', '.join(flags)})" if flags else "")


def _second_opinion(task: str, second: Path, bench: dict) -> list[str]:
    """The card's section on the second-opinion model, when one is installed beside the first."""
    if not second.is_file():
        return []
    return [
        f"## Second opinion (`{second.name}`)",
        "",
        "Where the first model's reading is less sure than 0.99 (calibrated), or it read nothing, the reader",
        "also runs a second model, trained apart on other crops, averages the two models' per-step",
        "probabilities and decodes the average instead; the second looks then use both models too. Most",
        "crops are sure at the first look, so the median crop's time is the first model's. The held-out",
        "figures, speeds and the confidence map above are those of the reader with all its models.",
        *_opinion_lines(task, second, bench, "second"),
        "",
    ]


def _third_opinion(task: str, second: Path, third: Path, bench: dict) -> list[str]:
    """The card's section on the third-opinion model, when one is installed beside the second."""
    if not (second.is_file() and third.is_file()):
        return []
    return [
        f"## Third opinion (`{third.name}`)",
        "",
        "A third model, trained apart again, joins the second: where the second is asked, the reader",
        "averages all three models' per-step probabilities.",
        *_opinion_lines(task, third, bench, "third"),
        "",
    ]


def _opinion_lines(task: str, model: Path, bench: dict, which: str) -> list[str]:
    """An opinion model's network, file, training, retrain command and speed."""
    record = json.loads(model.with_suffix(".training.json").read_text())
    widths = record.get("widths") or [32]
    scale = widths[0] / 32
    command = record.get("command") or (
        f"python -m models.training.{task} --out models/{model.name} --seed {record['seed']} "
        f"--epochs {record['epochs']}" + (f" --net-scale {scale:g}" if scale != 1 else "")
        + (f" --init {record['init']}" if record.get("init") else ""))
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    return [
        _network_line(model).replace("- Network", "- Its network"),
        f"- File: `{model.name}`, {model.stat().st_size / 1e6:.2f} MB, sha256 `{digest}…`; "
        f"{record['samples']:,} crops (seed {record['seed']}), {record['epochs']} epochs"
        + (f" (the one-cycle schedule on the clock: `--time-limit {record['time_limit_s']:g}`)"
           if record.get("time_limit_s") else "")
        + f", LR peak {record['lr']}, {record['train_seconds'] / 60:.0f} min; validation after the last epoch "
        f"{record['history'][-1]['val_exact']:.2%}. Per-epoch record: `{model.stem}.training.json`.",
        f"- Retrain: `{command}`, then `python -m models.training.calibrate`.",
        *([f"- Speed, one thread: the {which} model alone p50 {timing['p50']} ms / p99 {timing['p99']} ms per crop."]
          if (timing := bench["model_only_ms"].get(f"{task.rstrip('s')}_{which}")) else []),
    ]


def _target_line(bench: dict, names: dict[str, str], target: float) -> str:
    """The card's line on the issue's exact-match target, on all held-out crops and on the legible ones."""
    held = bench["held_out"]

    def short(share: float) -> list[str]:
        return [name for key, name in names.items() if held[key]["exact_match"] < share]

    below = short(target)
    legible_below = [name for key, name in names.items() if held[key].get("legible", {}).get("exact_match", 0) < target]
    legible = ", ".join(f"{name} {held[key]['legible']['exact_match']:.2%}" for key, name in names.items()
                        if held[key].get("legible", {}).get("n"))
    all_crops = (f"every class meets the issue's {target:.1%} target on all held-out crops" if not below else
                 f"below the issue's {target:.1%} target on all held-out crops for {', '.join(below)}")
    legible_crops = ("every class meets it on the legible crops" if not legible_below else
                     f"below it on the legible crops for {', '.join(legible_below)}")
    return f"- {all_crops[0].upper() + all_crops[1:]}; {legible_crops} ({legible})."


PLATE_NAMES = {"plates:vn1": "VN one-line", "plates:vn2": "VN two-line", "plates:cn1": "CN one-line",
               "plates:cn2": "CN two-line"}
CONTAINER_NAMES = {"containers:h1": "one line", "containers:h2": "two lines", "containers:v": "vertical"}


# Sections measured and written by hand (real-image evaluations): a regenerated card keeps them as they are.
KEPT_HEADINGS = ("## Real images",)


def kept_sections(old_card: str) -> list[str]:
    """The hand-written sections of a card (headings in KEPT_HEADINGS), each up to the next `## ` heading."""
    sections = re.split(r"(?m)^(?=## )", old_card)
    return [section.rstrip("\n") for section in sections if section.startswith(KEPT_HEADINGS)]


def _write_card(path: Path, lines: list[str]) -> None:
    """Write a card from generated lines, then append the hand-written sections the old card had."""
    kept = kept_sections(path.read_text()) if path.exists() else []
    text = "\n".join(lines).rstrip("\n") + "\n"
    for section in kept:
        text += "\n" + section + "\n"
    path.write_text(text)


def write_cards(bench: dict) -> list[Path]:
    """Write both cards; returns their paths."""
    written = []
    plates = MODELS / "plate_reader.onnx"
    record = json.loads(plates.with_suffix(".training.json").read_text())
    real = bench.get("real_cn_crops", {})
    text = [
        "# Plate reader (`plate_reader.onnx`)",
        "",
        "Reads one number plate crop: Vietnamese (one-line `29C-123.45`, two-line `29C` / `123.45`, yellow, white,",
        "red-on-yellow, blue) and Chinese (`桂A·12345` one-line front and two-line rear truck plates, trailers `挂`,",
        "new-energy 6-character serials; yellow, blue, green, white). Output is the normalised plate (`29C12345`).",
        "",
        "## Data and recipe",
        "- Synthetic only (`models/synth/plate_synth.py`, `augment.py`): random valid plates in the formats of",
        "  shared/domain.md, glyphs from Debian fonts (DejaVu, Liberation, FreeFont; WenQuanYi Micro Hei / Zen Hei,",
        "  Noto Sans CJK for province characters) and a drawn plate font after GA 36 (`plate_font.py`: a bare-bar 1,",
        "  a flat-topped 3, a spurred G; half the Chinese and a quarter of the Vietnamese plates) stretched to plate",
        "  cells; damage: loose perspective crop, rotation, dirt, glare, night/IR, low resolution, Gaussian and",
        "  motion blur, noise, JPEG.",
        "- Retrain: `python -m models.training.plates --out models/plate_reader.onnx` (needs the `train` extra).",
        _network_line(plates),
        *_common("plates", plates, record, bench,
                 [("plates:vn1", "VN one-line"), ("plates:vn2", "VN two-line"), ("plates:cn1", "CN one-line"),
                  ("plates:cn2", "CN two-line"), ("plates:cn", "CN all")]),
        f"- Real CN crops (shared/data/plates/cn-real, blue/green passenger plates, evaluation only): "
        f"{real.get('exact_match', 0):.2%} exact (n={real.get('n', 0)})"
        + (f"; rapidocr_onnxruntime {real['baseline_rapidocr_exact_match']:.2%}." if "baseline_rapidocr_exact_match"
           in real else "."),
        "",
        SPEC.format(width=160, fn="plate_input", vertical="", steps=40, classes=71,
                    charset_note="digits, A-Z, 31 province characters, 挂学警",
                    grammar="VN `DD` + series + optional digit + 4-5 digits, or CN province + letter + 5-6"),
        *_second_opinion("plates", MODELS / "plate_reader_second.onnx", bench),
        *_third_opinion("plates", MODELS / "plate_reader_second.onnx", MODELS / "plate_reader_third.onnx", bench),
        "## Limits",
        _target_line(bench, PLATE_NAMES, 0.99),
        "- The held-out sets include plates in the drawn plate font since it was added (the seeded generator",
        "  draws other plates now). Measured at that retrain with this reader, 1000 crops per class (VN one-line,",
        "  VN two-line, CN one-line, CN two-line): the previous model, trained on desktop fonts only, read",
        "  88.2 / 86.5 / 83.9 / 75.7% of these sets right (103 / 113 / 125 / 204 wrong); on the previous sets",
        "  (desktop fonts only) this model reads 99.1 / 98.2 / 98.8 / 98.6% (4 / 5 / 5 / 8 wrong), the previous",
        "  model 99.2 / 98.6 / 99.4 / 98.6% (7 / 8 / 5 / 9 wrong).",
        "- Most misses are crops left unread: small or blurred ones, strongly sheared ones, and night crops",
        "  whose small top line the noise has covered.",
        "- Real CN crops are blue and green passenger plates of 94x24 px, smaller than most training crops. With",
        "  desktop fonts only, the reader got 27.2% of them right and 109 of 323 wrong (3 read as 5, G as 6, the",
        "  bare 1 dropped); lettering half the synthetic Chinese plates in the drawn plate font brought that to",
        f"  the figure above, with {real.get('wrong_reading', '?')} wrong and "
        f"{real.get('no_reading', 0):.0%} not read. Most of the rest are left",
        "  unread; of the wrong ones, 皖 read as 桂 (a third of the synthetic Chinese plates are Guangxi's, as at",
        "  Huu Nghi) and M read as 1 or H lead.",
        "- Trained on synthetic plates only; real VN plates were not available for evaluation here.",
        "- Plates smaller than about 14 px character height in the frame are rarely read.",
    ]
    path = MODELS / "plate_reader.md"
    _write_card(path, text)
    written.append(path)

    codes = MODELS / "container_reader.onnx"
    record = json.loads(codes.with_suffix(".training.json").read_text())
    frames = bench["frames_1920x1080"]
    text = [
        "# Container-number reader (`container_reader.onnx`)",
        "",
        "Reads one ISO 6346 container number as painted on a door: one line `CSQU 305438 [3]`, two lines",
        "`CSQU` / `305438 [3]`, or vertical (one character per row). Output is the 11-character number; only",
        "check-digit-valid numbers are ever reported.",
        "",
        "## Data and recipe",
        "- Synthetic only (`models/synth/container_synth.py`): owner codes (common carriers and random), category",
        "  U/J/Z, random serial, computed check digit boxed as painted; corrugated doors in carrier colours; the same",
        "  damage as the plate reader. The size/type code (`22G1`) is painted next to the code in scenes only.",
        _network_line(codes),
        "- Input 256 columns. Training starts from the plate reader",
        "  (`models/training/transfer.py`: its convolutions, and its output rows for digits and A-Z): from random",
        "  weights this network sat for epochs emitting the commonest owner letters at the first time steps",
        "  whatever the crop showed (0-4% exact), from the plate reader it reads owner codes after one epoch.",
        "- Retrain: `python -m models.training.plates` then `python -m models.training.containers`.",
        *_common("containers", codes, record, bench,
                 [("containers:h1", "one line"), ("containers:h2", "two lines"), ("containers:v", "vertical"),
                  ("containers:all", "all layouts")]),
        "- Check-digit-invalid numbers reported as valid: "
        f"{bench['held_out']['containers:all']['check_digit_invalid_reported']}"
        " (by construction: the decoder only returns ISO 6346 valid readings).",
        "",
        SPEC.format(width=256, fn="container_input", vertical="; vertical codes turned a quarter left, then levelled",
                    steps=64, classes=37, charset_note="digits, A-Z",
                    grammar="ISO 6346: 3 letters, U/J/Z, 6 digits, check digit"),
        *_second_opinion("containers", MODELS / "container_reader_second.onnx", bench),
        *_third_opinion("containers", MODELS / "container_reader_second.onnx",
                        MODELS / "container_reader_third.onnx", bench),
        "## Limits",
        _target_line(bench, CONTAINER_NAMES, 0.995),
        "- Readings that were wrong but check-digit valid (two or more characters wrong): "
        + ", ".join(f"{label} {bench['held_out'][key]['wrong_reading']}/{bench['held_out'][key]['n']}"
                    for key, label in (("containers:h1", "one line"), ("containers:h2", "two lines"),
                                       ("containers:v", "vertical")))
        + ". A wrong number does not match the declaration, so the lane is held for an officer, never released.",
        "- Most wrong readings change one owner letter for one whose ISO 6346 value differs by 11 (M/W, G/Q,",
        "  H/R, B/L), or any letter when the check digit is 0 (residues 0 and 10 both give 0): the check digit",
        "  cannot tell these apart. M/W above all: a blur along the strokes leaves the two alike.",
        "",
        "## Localisation (both readers)",
        "`models/vision/localise.py`, OpenCV only: horizontal-gradient stroke map without long straight edges,",
        "closed into blobs, split into dense row bands, words joined into lines, lines stacked into two-line blocks,",
        "vertical pieces joined into columns; the recognisers and grammars then reject what is not a reading.",
        "Where boxes of one frame overlap (a loose and a tight box round one code), only the surest reading is",
        "reported.",
        f"On {frames['n']} synthetic 1920x1080 frames: plates read {frames['plate_read_rate']:.2%}, container",
        f"numbers read {frames['container_read_rate']:.2%}, p50 {frames['ms']['p50']} ms / "
        f"p99 {frames['ms']['p99']} ms",
        "per frame (plates and codes) on one thread; readings of something the frame does not show: "
        f"{frames.get('false_plate_readings', '-')} plates, {frames.get('false_container_readings', '-')} container"
        " numbers"
        + (f"; rapidocr_onnxruntime's detector+recogniser on the same frames: plates "
           f"{frames['baseline_rapidocr']['plate_read_rate']:.2%}, codes "
           f"{frames['baseline_rapidocr']['container_read_rate']:.2%}, "
           f"p50 {frames['baseline_rapidocr']['ms']['p50']} ms"
           if "baseline_rapidocr" in frames else "")
        + ". Chosen over rapidocr's shipped detector for that speed, at the recall shown.",
    ]
    path = MODELS / "container_reader.md"
    _write_card(path, text)
    written.append(path)
    return written


def main() -> None:
    """Write the cards from a bench JSON file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", required=True, help="JSON written by `smartgate bench vision --out FILE`")
    args = parser.parse_args()
    data = json.loads(Path(args.bench).read_text())
    vision = data.get("vision", data)
    if "machine" in data:  # what the speeds were measured on, for the cards to say
        vision = {**vision, "machine": data["machine"]}
    for path in write_cards(vision):
        print(path)


if __name__ == "__main__":
    main()
