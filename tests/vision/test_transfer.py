"""Starting a recogniser from a shipped one (the container reader from the plate reader) keeps
what the shipped one computes. Needs the `train` extra (torch, onnx); skipped without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from models.training.dataset import container_sample, plate_sample  # noqa: E402
from models.training.net import CRNN, widths_for  # noqa: E402
from models.training.transfer import init_from_onnx, onnx_widths  # noqa: E402
from models.vision.charsets import CONTAINER_CHARS, PLATE_CHARS  # noqa: E402
from models.vision.ctc import greedy  # noqa: E402
from models.vision.preprocess import container_input, plate_input  # noqa: E402

PLATE_MODEL = Path(__file__).resolve().parents[2] / "models" / "plate_reader.onnx"


def _inputs(make, to_input, count: int) -> np.ndarray:
    return np.stack([np.round((to_input(make(77, i).crop)[0] + 1) * 127.5).astype(np.uint8) for i in range(count)])


def _probs(net: CRNN, images: np.ndarray) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        x = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)
        return torch.softmax(net(x), -1).numpy()


def test_a_net_started_from_the_plate_reader_reads_what_the_plate_reader_reads():
    """The shipped reader is 8-bit; the net gets its weights back as floats and computes in float, so
    its probabilities differ by the 8-bit rounding of the activations, and its readings only where
    the shipped reader itself is unsure (crops of this seed forced into one line: garbage)."""
    images = _inputs(plate_sample, plate_input, 64)
    net = CRNN(len(PLATE_CHARS) + 1, onnx_widths(PLATE_MODEL))
    assert init_from_onnx(net, PLATE_MODEL, PLATE_CHARS, images) == len(PLATE_CHARS)
    session = ort.InferenceSession(str(PLATE_MODEL), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": images[:, None].astype(np.float32) / 127.5 - 1})[0]
    ours = [greedy(p, PLATE_CHARS) for p in _probs(net, images)]
    theirs = [greedy(p, PLATE_CHARS) for p in expected]
    assert all(mine[0] == shipped[0] for mine, shipped in zip(ours, theirs, strict=True) if shipped[1] >= 0.5)
    assert sum(mine[0] == shipped[0] for mine, shipped in zip(ours, theirs, strict=True)) >= 60


def test_the_container_reader_starts_with_the_plate_readers_digits_and_letters():
    images = _inputs(container_sample, container_input, 64)
    net = CRNN(len(CONTAINER_CHARS) + 1, onnx_widths(PLATE_MODEL))
    assert init_from_onnx(net, PLATE_MODEL, CONTAINER_CHARS, images) == 36
    probs = _probs(net, images)
    assert probs.shape == (64, 64, 37) and np.allclose(probs.sum(-1), 1, atol=1e-4)
    assert (probs.argmax(-1) > 0).any()  # it already sees characters before any container training


def test_a_wider_network_exports_and_a_net_started_from_it_is_as_wide(tmp_path):
    from models.training.containers import TASK

    wide = CRNN(len(CONTAINER_CHARS) + 1, widths_for(1.25))
    assert wide.widths == (40, 80, 120, 160, 200)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # norms as training leaves them (untrained ones all fold to the same zero bias)
        for norm in (m for m in wide.modules() if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)):
            norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
            norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
    from models.training.train import export

    export(wide, TASK, tmp_path / "wide.onnx")
    assert onnx_widths(tmp_path / "wide.onnx") == (40, 80, 120, 160, 200)
    images = _inputs(container_sample, container_input, 16)
    again = CRNN(len(CONTAINER_CHARS) + 1, onnx_widths(tmp_path / "wide.onnx"))
    assert init_from_onnx(again, tmp_path / "wide.onnx", CONTAINER_CHARS, images) == len(CONTAINER_CHARS)
    session = ort.InferenceSession(str(tmp_path / "wide.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": images[:, None].astype(np.float32) / 127.5 - 1})[0]
    assert np.abs(_probs(again, images) - expected).max() < 1e-4


def test_training_jitter_moves_half_the_inputs_a_little_and_keeps_them_in_range():
    from models.training.train import jitter

    images = _inputs(container_sample, container_input, 32)
    batch = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)
    out = jitter(batch, 1.0, torch.Generator().manual_seed(5))
    assert out.shape == batch.shape and out.min() >= -1.0 and out.max() <= 1.0
    moved = [(out[i] - batch[i]).abs().mean().item() for i in range(len(batch))]
    unchanged = sum(m < 1e-5 for m in moved)
    assert 4 <= unchanged <= 28  # about half are left as they are
    assert all(m < 0.6 for m in moved)  # the others stay the same text, not noise
    again = jitter(batch, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(out, again)  # seeded: a retrain gets the same batches


@pytest.mark.parametrize("option, value", [("--jitter", "-1"), ("--jitter", "4"), ("--min-legibility", "-0.5"),
                                           ("--epochs", "0"), ("--lr", "nan"), ("--net-scale", "9")])
def test_a_training_option_out_of_its_range_stops_the_command_naming_the_option(option, value, capsys):
    from models.training.containers import TASK
    from models.training.train import parse_args

    with pytest.raises(SystemExit) as stopped:
        parse_args(TASK, "/tmp/unused.onnx", argv=[option, value])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"{option} {float(value)}" in error or f"{option} {value}" in error


def test_training_options_in_range_are_taken_as_given():
    from models.training.containers import TASK
    from models.training.train import parse_args

    args = parse_args(TASK, "/tmp/unused.onnx", argv=["--jitter", "0", "--min-legibility", "0", "--epochs", "2"])
    assert (args.jitter, args.min_legibility, args.epochs) == (0.0, 0.0, 2)


def test_training_precision_is_bf16_only_where_the_cpu_computes_it_in_hardware(capsys):
    from models.training.containers import TASK
    from models.training.train import hardware_bf16, parse_args

    assert parse_args(TASK, "/tmp/unused.onnx", argv=[]).precision == "auto"
    assert parse_args(TASK, "/tmp/unused.onnx", argv=["--precision", "fp32"]).precision == "fp32"
    with pytest.raises(SystemExit):
        parse_args(TASK, "/tmp/unused.onnx", argv=["--precision", "fp16"])
    assert "--precision" in capsys.readouterr().err
    # emulated bf16 made training 11-13x slower on an AVX2-only CPU: auto must follow the hardware
    assert hardware_bf16() == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def test_a_small_training_run_writes_a_model_the_reader_loads_and_records_where_it_trained(tmp_path):
    """The whole training command on a few crops: render, train, export, on the device it names."""
    from models.training.containers import TASK
    from models.training.train import parse_args, train
    from models.vision.recogniser import Recogniser

    out = tmp_path / "tiny.onnx"
    args = parse_args(TASK, str(out), argv=["--samples", "96", "--epochs", "1", "--batch", "32", "--held-out", "4",
                                            "--cache", str(tmp_path / "cache"), "--device", "cpu",
                                            "--precision", "fp32", "--init", ""])
    record = train(TASK, args)
    assert (record["device"], record["precision"], record["epochs"], record["quantised"]) == ("cpu", "fp32", 1, True)
    assert len(record["history"]) == 1 and 0.0 <= record["history"][0]["val_exact"] <= 1.0
    model = Recogniser(out, CONTAINER_CHARS, TASK.width)
    assert model.session.get_modelmeta().custom_metadata_map["precision"] == "int8"  # as the shipped ones
    probs = model.probabilities([container_input(container_sample(5, 0).crop)])
    assert probs.shape == (1, TASK.width // 4, len(CONTAINER_CHARS) + 1)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-4)


def test_asking_for_a_gpu_torch_cannot_see_stops_the_training_naming_the_fix():
    from models.training.train import training_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit, match="--device cuda: torch sees no GPU.*--device cpu"):
        training_device("cuda")
    with pytest.raises(SystemExit, match="--device gpu0: not a torch device"):
        training_device("gpu0")
    assert training_device("auto").type == "cpu"


def test_the_one_cycle_schedule_is_torchs_one_cycle():
    """The clock-driven schedule of --time-limit, driven by steps, gives what OneCycleLR gave the shipped models."""
    from models.training.train import one_cycle

    net = torch.nn.Linear(2, 2)
    optimiser = torch.optim.AdamW(net.parameters(), lr=0.002)
    total = 2000
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=0.002, total_steps=total, pct_start=0.15)
    for step in range(total):
        lr, beta1 = one_cycle(step / total, 0.002)
        group = optimiser.param_groups[0]
        assert lr == pytest.approx(group["lr"], rel=0.02, abs=1e-6), step
        assert beta1 == pytest.approx(group["betas"][0], abs=2e-3), step
        optimiser.step()
        schedule.step()
    assert one_cycle(0.0, 0.002)[0] == pytest.approx(0.002 / 25)
    assert one_cycle(0.15, 0.002) == pytest.approx((0.002, 0.85))
    assert one_cycle(1.0, 0.002)[0] == pytest.approx(0.002 / 25 / 1e4)


def test_a_training_run_with_a_time_limit_trains_on_the_clock(tmp_path):
    """--time-limit: rendering stops at its share of the limit, the one-cycle schedule runs on the clock
    rather than over --epochs, and the run still exports its model."""
    from models.training.containers import TASK
    from models.training.train import parse_args, train

    out = tmp_path / "timed.onnx"
    args = parse_args(TASK, str(out), argv=["--samples", "200000", "--epochs", "50", "--time-limit", "45",
                                            "--batch", "32", "--held-out", "4", "--cache", str(tmp_path / "cache"),
                                            "--device", "cpu", "--workers", "2", "--init", "", "--float"])
    record = train(TASK, args)
    assert record["time_limit_s"] == 45 and record["quantised"] is False
    assert 0 < record["samples"] < 200_000  # rendering was cut at its share of the limit
    epochs = [entry["epoch"] for entry in record["history"]]
    assert epochs and epochs == sorted(epochs) and record["epochs"] == epochs[-1] < 50  # the clock, not --epochs
    assert out.exists() and not list((tmp_path / "cache").glob("*.npz"))  # a set cut short is not cached
