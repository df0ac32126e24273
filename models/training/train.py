"""Train a CRNN recogniser on synthetic crops with CTC loss and export it to ONNX.

Used by `python -m models.training.plates` and `python -m models.training.containers`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.synth.dataset import held_out_labels, training_set
from models.synth.plate_synth import GUANGXI_SHARE
from models.training.net import CRNN, ExportWrapper, widths_for
from models.training.sources import renderer_version
from models.vision.charsets import encode

RENDER_SHARE = 0.4  # of a --time-limit, the most that rendering may take
EXPORT_RESERVE_S = 30.0  # of a --time-limit, kept for the last validation, the checkpoint and the export


@dataclass
class Task:
    """What differs between the plate and the container recogniser."""

    name: str  # "plates" or "containers"
    charset: str
    width: int
    kinds: tuple[str, ...]
    samples: int  # the recipe of the committed model: training crops, epochs, peak learning rate
    epochs: int
    lr: float
    net_scale: float = 1.0  # channel widths against net.WIDTHS, when not started from an ONNX file
    min_legibility: float = 0.0  # crops whose worst character's d' is lower are left out of training
    jitter: float = 0.0  # strength of the per-batch shift, scale, shear and contrast jitter (0: none)
    realistic: float = 0.0  # plates: share of realistic crops (models.synth.realistic) in the training set
    guangxi_share: float = GUANGXI_SHARE  # plates: share of the other crops' Chinese plates drawn 桂


def parse_args(task: Task, default_out: str, default_init: str | None = None,
               argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options shared by both training entry points (`argv`: the command line's when None).

    A value that would train nothing, or train something other than asked, stops the command at once
    with the option, the value and the range it takes."""
    parser = argparse.ArgumentParser(description=f"Train the {task.name} recogniser from scratch on synthetic data.")
    parser.add_argument("--out", default=default_out, help="ONNX file to write (its model card goes beside it)")
    parser.add_argument("--samples", type=int, default=task.samples, help="synthetic training crops")
    parser.add_argument("--epochs", type=int, default=task.epochs)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=task.lr, help="peak of the one-cycle learning rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--workers", type=int, default=0, help="rendering processes (0: one per core)")
    parser.add_argument("--time-limit", type=float, default=0,
                        help="end the whole run within about this many seconds (0: no limit): rendering stops at "
                             f"{RENDER_SHARE:.0%} of it with the crops rendered by then, and the one-cycle schedule "
                             "runs on the clock over the rest instead of over --epochs (for a lent machine whose "
                             "time is fixed and whose speed is not known beforehand)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="bf16 autocast or plain fp32 (auto: bf16 on a GPU, and on a CPU only where it "
                             "computes bf16 in hardware)")
    parser.add_argument("--device", default="auto",
                        help="where the network trains: cpu, cuda, cuda:N (auto: cuda when torch sees a GPU); "
                             "rendering always runs on the CPU's cores")
    parser.add_argument("--cache", default=".cache/training", help="folder for the rendered training set")
    parser.add_argument("--held-out", type=int, default=1000, help="held-out crops per class excluded from training")
    parser.add_argument("--min-legibility", type=float, default=task.min_legibility,
                        help="leave out crops whose least legible character has a lower d' (0: keep all; "
                             "models.synth.legibility)")
    parser.add_argument("--jitter", type=float, default=task.jitter,
                        help="per-batch shift/scale/shear/contrast jitter of the rendered inputs "
                             "(0: none, 1: standard)")
    parser.add_argument("--realistic", type=float, default=task.realistic,
                        help="plates: share of the training crops drawn as a plate detector's real crops "
                             "(tight, ~94x24, tilted and sheared to 15 degrees, any province; models.synth.realistic)")
    parser.add_argument("--flat-provinces", dest="guangxi_share", action="store_const", const=0.0,
                        default=task.guangxi_share,
                        help=f"plates: draw every province evenly in the other crops too (default: "
                             f"{GUANGXI_SHARE:.0%} 桂); the model then needs no prior correction at run time")
    parser.add_argument("--net-scale", type=float, default=task.net_scale,
                        help="network width against the standard one (an ONNX --init keeps its own width)")
    parser.add_argument("--init", default=default_init,
                        help="start from this torch checkpoint (.pt, written to the cache after training) or "
                             "recogniser (.onnx: its features, and its head's rows for shared characters)")
    parser.add_argument("--float", dest="quantise", action="store_false",
                        help="write the float model and skip the 8-bit quantisation the shipped models have "
                             "(models.training.quantize)")
    args = parser.parse_args(argv)
    for option, value, low, high, what in (
            ("--samples", args.samples, 1, None, "the number of training crops"),
            ("--epochs", args.epochs, 1, None, "the number of passes over the crops"),
            ("--batch", args.batch, 1, None, "crops per step"),
            ("--lr", args.lr, 1e-7, 1.0, "a peak learning rate"),
            ("--threads", args.threads, 0, None, "torch threads, 0 for all cores"),
            ("--workers", args.workers, 0, None, "rendering processes, 0 for one per core"),
            ("--time-limit", args.time_limit, 0.0, None, "seconds for the whole run, 0 for no limit"),
            ("--held-out", args.held_out, 0, None, "held-out crops per class"),
            ("--min-legibility", args.min_legibility, 0.0, None, "a d' of 0 (keep every crop) or more"),
            # above 3 the contrast jitter's gain turns negative and inverts the crop
            ("--jitter", args.jitter, 0.0, 3.0, "a strength from 0 (none) to 3; 1 is standard"),
            ("--realistic", args.realistic, 0.0, 1.0, "a share from 0 to 1"),
            ("--net-scale", args.net_scale, 0.25, 4.0, "a width between 0.25 and 4 times the standard network")):
        if not (math.isfinite(value) and value >= low and (high is None or value <= high)):
            parser.error(f"{option} {value}: give {what}")
    return args


def main(task: Task, default_out: str, default_init: str | None = None) -> None:
    """The training command: train, export, and write the training record beside the model."""
    args = parse_args(task, default_out, default_init)
    record = train(task, args)
    # the command that made it, with the file it wrote, so a card can say how to make it again
    given = sys.argv[1:]
    record["command"] = " ".join(["python", "-m", f"models.training.{task.name}", *given]
                                 + ([] if "--out" in given else ["--out", args.out]))
    Path(args.out).with_suffix(".training.json").write_text(json.dumps(record, indent=1) + "\n")


def _greedy(probs: np.ndarray, charset: str) -> list[str]:
    best = probs.argmax(-1)
    texts = []
    for row in best:
        chars, last = [], 0
        for k in row:
            if k != last and k != 0:
                chars.append(charset[k - 1])
            last = k
        texts.append("".join(chars))
    return texts


def load_or_render(task: Task, args: argparse.Namespace, exclude: set[str],
                   deadline: float | None = None) -> tuple[np.ndarray, list[str]]:
    """The training set from the cache (rendering it first when missing or made by other code), less
    the crops below `--min-legibility`. Rendering stops at `deadline` (`time.monotonic()`), if given;
    a set cut short there is not cached."""
    cache = Path(args.cache) / f"{task.name}-seed{args.seed}-n{args.samples}{_mix_tag(args)}-{renderer_version()}.npz"
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        images, labels, legibility = data["images"], [str(x) for x in data["labels"]], data["legibility"]
    else:
        started = time.perf_counter()
        images, labels, legibility, rendered = training_set(task.name, args.seed, args.samples,
                                                            workers=args.workers or None, exclude=exclude,
                                                            deadline=deadline, realistic=args.realistic,
                                                            guangxi_share=args.guangxi_share)
        print(f"rendered {rendered} crops in {time.perf_counter() - started:.0f} s, {len(labels)} for training "
              f"(the others' labels are held out)", flush=True)
        if rendered == args.samples:  # nothing was cut off by the deadline
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, images=images, labels=np.array(labels), legibility=legibility)
    keep = np.flatnonzero(legibility >= args.min_legibility)
    if len(keep) < len(labels):
        print(f"left out {len(labels) - len(keep)} crops below d' {args.min_legibility}", flush=True)
    return images[keep], [labels[i] for i in keep]


def _mix_tag(args: argparse.Namespace) -> str:
    """The part of a cache or checkpoint name that tells a mixed plate set from the default one."""
    tag = f"-real{args.realistic:g}" if args.realistic else ""
    return tag + (f"-gx{args.guangxi_share:g}" if args.guangxi_share != GUANGXI_SHARE else "")


def province_prior(args: argparse.Namespace) -> float:
    """The share of 桂 among the Chinese plates the model learns from (realistic crops draw provinces evenly)."""
    flat = 1.0 / 31
    other = args.guangxi_share + (1 - args.guangxi_share) * flat
    return args.realistic * flat + (1 - args.realistic) * other


def hardware_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).

    Without it torch emulates bf16, and autocast made a training step 11 to 13 times slower than
    fp32 (measured on an AVX2-only AMD EPYC: 18 s against 1.4 s per batch of 128 container crops).
    """
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def training_device(asked: str) -> torch.device:
    """The device the network trains on; a GPU asked for that torch cannot see stops the command."""
    if asked == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(asked)
    except RuntimeError as error:
        raise SystemExit(f"--device {asked}: not a torch device ({error}); use cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {asked}: torch sees no GPU here (torch {torch.__version__}); use --device cpu")
    return device


def one_cycle(progress: float, peak: float, warm_up: float = 0.15) -> tuple[float, float]:
    """The learning rate and Adam's beta1 at `progress` (0 to 1) through a one-cycle schedule, as
    torch's OneCycleLR (cosine) gives them: the rate rises from peak/25 to `peak` over the first
    `warm_up` of the run and falls to peak/250,000, while beta1 falls from 0.95 to 0.85 and rises again."""
    start, end = peak / 25, peak / 25 / 1e4

    def cosine(a: float, b: float, fraction: float) -> float:
        return b + (a - b) / 2 * (math.cos(math.pi * min(1.0, max(0.0, fraction))) + 1)

    if progress < warm_up:
        fraction = progress / warm_up
        return cosine(start, peak, fraction), cosine(0.95, 0.85, fraction)
    fraction = (progress - warm_up) / (1 - warm_up)
    return cosine(peak, end, fraction), cosine(0.85, 0.95, fraction)


def padded_targets(labels: list[str], charset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every label's character indices in one (N, longest) tensor, padded with blanks, and their lengths."""
    encoded = [encode(label, charset) for label in labels]
    padded = torch.zeros(len(encoded), max(map(len, encoded), default=1), dtype=torch.long)
    for row, code in enumerate(encoded):
        padded[row, :len(code)] = torch.tensor(code, dtype=torch.long)
    return padded, torch.tensor([len(code) for code in encoded], dtype=torch.long)


def train(task: Task, args: argparse.Namespace) -> dict:
    """Render, train, export; returns the training record for the model card."""
    run_started = time.perf_counter()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = training_device(args.device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and (device.type == "cuda" or hardware_bf16()))
    print(f"training on {device} in {'bf16 autocast' if bf16 else 'fp32'}", flush=True)
    exclude = held_out_labels(task.name, task.kinds, args.held_out, args.workers or None)
    render_deadline = time.monotonic() + RENDER_SHARE * args.time_limit if args.time_limit else None
    images, labels = load_or_render(task, args, exclude, render_deadline)
    val_count = min(2000, len(labels) // 20)
    x_val, y_val = images[:val_count], labels[:val_count]
    x_train, y_train = images[val_count:], labels[val_count:]

    widths = widths_for(args.net_scale)
    if args.init and args.init.endswith(".onnx"):
        from models.training.transfer import init_from_onnx, onnx_widths

        widths = onnx_widths(Path(args.init))
    net = CRNN(len(task.charset) + 1, widths)
    if args.init and args.init.endswith(".onnx"):
        shared = init_from_onnx(net, Path(args.init), task.charset, x_train[:1024])
        print(f"initialised from {args.init}: {shared} of {len(task.charset)} characters shared", flush=True)
    elif args.init:
        net.load_state_dict(torch.load(args.init, map_location="cpu"))
    net.to(device)
    # The whole set and its targets sit on the training device, so a step copies no crops; the target
    # lengths stay on the CPU, where CTC wants them (a GPU copy would be fetched back at every step).
    inputs = torch.from_numpy(x_train).to(device)
    targets, target_lengths = padded_targets(y_train, task.charset)
    targets = targets.to(device)
    steps_per_epoch = math.ceil(len(y_train) / args.batch)
    total_steps = steps_per_epoch * args.epochs
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    generator = torch.Generator().manual_seed(args.seed)
    history = []
    started = time.perf_counter()
    budget = None
    if args.time_limit:
        budget = max(10.0, args.time_limit - (started - run_started) - EXPORT_RESERVE_S)
        print(f"training for {budget:.0f} s on the clock (--time-limit {args.time_limit:g})", flush=True)
    done, epoch, step_count = False, 0, 0
    while not done:
        net.train()
        order = torch.randperm(len(y_train), generator=generator)
        order_on_device = order.to(device)
        total, steps = torch.zeros((), device=device), 0
        for step in range(steps_per_epoch):
            progress = (time.perf_counter() - started) / budget if budget else step_count / total_steps
            if progress >= 1:
                done = True
                break
            lr, beta1 = one_cycle(progress, args.lr)
            for group in optimiser.param_groups:
                group["lr"], group["betas"] = lr, (beta1, group["betas"][1])
            rows = slice(step * args.batch, (step + 1) * args.batch)
            idx = order_on_device[rows]
            batch = inputs[idx].float().div_(127.5).sub_(1.0).unsqueeze(1)
            if args.jitter:
                batch = jitter(batch, args.jitter, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(batch)
            log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # T, N, C
            input_lengths = torch.full((len(idx),), log_probs.shape[0], dtype=torch.long)
            loss = ctc(log_probs, targets[idx], input_lengths, target_lengths[order[rows]])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimiser.step()
            total += loss.detach()
            steps += 1
            step_count += 1
        if steps:
            accuracy = validate(net, x_val, y_val, task.charset, device)
            epoch_done = epoch + steps / steps_per_epoch
            record = {"epoch": round(epoch_done, 2) if budget else epoch + 1,
                      "loss": round(float(total) / steps, 4), "val_exact": round(accuracy, 4),
                      "elapsed_s": round(time.perf_counter() - started)}
            history.append(record)
            print(json.dumps(record), flush=True)
        epoch += 1
        done = done or (budget is None and epoch == args.epochs)
    net.cpu()  # the checkpoint and the ONNX export are the CPU's, wherever it trained
    checkpoint = Path(args.cache) / f"{task.name}-seed{args.seed}-n{args.samples}{_mix_tag(args)}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), checkpoint)
    print(f"checkpoint {checkpoint}", flush=True)
    export(net, task, Path(args.out), province_prior(args) if task.name == "plates" else None)
    quantised = args.quantise and _quantised(Path(args.out))
    epochs = history[-1]["epoch"] if history else 0
    record = {"samples": len(y_train), "validation": val_count, "excluded_held_out_labels": len(exclude),
              "min_legibility": args.min_legibility, "jitter": args.jitter,
              "realistic": args.realistic, "guangxi_share": args.guangxi_share,
              "epochs": epochs, "batch": args.batch, "widths": list(widths), "lr": args.lr, "seed": args.seed,
              "init": args.init, "precision": "bf16" if bf16 else "fp32", "quantised": quantised,
              "device": _device_name(device),
              "train_seconds": round(time.perf_counter() - started), "history": history}
    if budget:
        record["time_limit_s"] = args.time_limit
    return record


def _quantised(out: Path) -> bool:
    """Quantise the exported model in place, as the shipped ones are (8-bit, the first and last layers in
    float); False, with the command to run later, where onnxruntime's quantiser is not installed."""
    try:
        from models.training.quantize import quantise
    except ImportError as missing:
        print(f"{out}: left in float ({missing}); quantise it where smartgate is installed: "
              f"python -m models.training.quantize {out}", flush=True)
        return False
    quantise(out, out)
    print(f"quantised {out}", flush=True)
    return True


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


@torch.no_grad()
def jitter(batch: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """The batch as other crops of the same text would give it: each input shifted, scaled and sheared a
    little (a localiser's box, a slanted view) and its contrast changed, so that a fixed rendered set
    is not learnt by heart. Half the inputs are left as they are. The draws come from `generator` (a
    CPU one), so a batch on a GPU is jittered as the same batch on the CPU would be."""
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    s = strength
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = uniform(1 - 0.08 * s, 1 + 0.08 * s)  # width
    theta[:, 1, 1] = uniform(1 - 0.08 * s, 1 + 0.08 * s)  # height
    theta[:, 0, 1] = uniform(-0.3 * s, 0.3 * s) * 32 / batch.shape[-1]  # shear: up to 0.3 px across a px down
    theta[:, 0, 2] = uniform(-0.04 * s, 0.04 * s)
    theta[:, 1, 2] = uniform(-0.08 * s, 0.08 * s)
    keep = torch.rand(n, generator=generator) < 0.5
    theta[keep] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # non_blocking: a plain copy to a GPU waits for all queued work, every step
    grid = torch.nn.functional.affine_grid(theta.to(batch.device, non_blocking=True), list(batch.shape),
                                           align_corners=False)
    out = torch.nn.functional.grid_sample(batch, grid, padding_mode="border", align_corners=False)
    gain = torch.where(keep, 1.0, uniform(1 - 0.3 * s, 1.0))[:, None, None, None].to(batch.device, non_blocking=True)
    offset = torch.where(keep, 0.0, uniform(-0.15 * s, 0.15 * s))[:, None, None, None].to(batch.device,
                                                                                         non_blocking=True)
    return (out * gain + offset).clamp_(-1.0, 1.0)


@torch.no_grad()
def validate(net: CRNN, images: np.ndarray, labels: list[str], charset: str,
             device: torch.device | None = None) -> float:
    """Greedy-decoded exact-match accuracy on the validation crops (fp32, on `device`: the CPU when None)."""
    net.eval()
    right = 0
    for start in range(0, len(labels), 256):
        batch = torch.from_numpy(images[start:start + 256]).float().div_(127.5).sub_(1.0).unsqueeze(1)
        probs = torch.softmax(net(batch.to(device or "cpu")), -1).float().cpu().numpy()
        right += sum(p == t for p, t in zip(_greedy(probs, charset), labels[start:start + 256], strict=True))
    return right / max(1, len(labels))


def export(net: CRNN, task: Task, out: Path, guangxi_prior: float | None = None) -> None:
    """Write the ONNX file: input `image` (N, 1, 32, W) float32, output `probs` (N, W/4, classes).

    `guangxi_prior`: the share of 桂 among the Chinese plates it learnt from, kept in the metadata
    (`guangxi_prior`) so that the reader can swap the prior for a flat one."""
    import onnx

    net.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 1, 32, task.width)
    torch.onnx.export(ExportWrapper(net), dummy, str(out), input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False)
    model = onnx.load(str(out))
    meta = {"charset": task.charset, "task": task.name, "input_width": str(task.width)}
    if guangxi_prior is not None:
        meta["guangxi_prior"] = f"{guangxi_prior:.4f}"
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))
