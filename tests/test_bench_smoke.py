"""`smartgate bench` runs and reports its figures (a smoke run: no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_quick_bench_reports_every_figure():
    result = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "decision", "journal", "codec", "modbus",
                             "--quick"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["decision"]["decision_release_ms"]["n"] > 0
    assert figures["decision"]["decision_hold_ms"]["n"] > 0
    assert figures["journal"]["journal_append_ms"]["n"] > 0
    assert figures["modbus"]["modbus_tcp"]["write_coil_ms"]["n"] > 0
    assert figures["modbus"]["modbus_rtu_pty"]["read_inputs_ms"]["n"] > 0
    for codec in ("eseal_ascii", "eseal_binary", "weighbridge_toledo", "weighbridge_sma", "weighbridge_rinstrum"):
        assert figures["codec"][codec]["frames_per_s"] > 0, codec
    for codec in ("anpr_json", "scanner_json"):
        assert figures["codec"][codec]["messages_per_s"] > 0, codec


@pytest.mark.timeout(400)  # the baseline's detector takes about half a second a crop on 2 vCPU
def test_quick_vision_bench_reports_accuracy_speed_and_the_baseline():
    result = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "vision", "--quick"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    vision = json.loads(result.stdout)["vision"]
    keys = ["plates:vn1", "plates:vn2", "plates:cn1", "plates:cn2"]
    if "containers" not in vision:  # the container-code model is installed
        keys += ["containers:h1", "containers:h2", "containers:v"]
        assert vision["held_out"]["containers:all"]["check_digit_invalid_reported"] == 0
    for key in keys:
        assert vision["held_out"][key]["n"] == 100, key
        assert vision["held_out"][key]["exact_match"] >= 0.8, key  # a broken model or preprocessing shows here
        legible, illegible = vision["held_out"][key]["legible"], vision["held_out"][key]["illegible"]
        assert legible["n"] + illegible["n"] == 100, key
        assert illegible["no_reading"] + illegible["read_right"] + illegible["wrong_reading"] == illegible["n"], key
    assert vision["crop_ms"]["n"] == 100 * len(keys) and vision["frames_1920x1080"]["ms"]["n"] == 20
    assert vision["baseline_rapidocr"]["plates:vn1"]["n"] == 5
    assert "ece" in vision["calibration"]
    real = vision["real_cn_crops"]
    if real["n"]:  # shared/data is there: every real crop is read right, read wrong or not read
        counted = round(real["exact_match"] * real["n"]) + round(real["no_reading"] * real["n"]) + real["wrong_reading"]
        assert counted == real["n"]


def test_quick_sync_bench_reports_every_figure():
    result = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "sync", "--quick"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)["sync"]
    assert figures["enqueue_events_per_s_one_commit_each"] > 0
    assert figures["central_events"] == figures["drain_events"] == 10_000
    assert figures["link_up_to_revocation_s_median"] >= 0


def test_a_sync_bench_phase_that_never_ends_fails_naming_what_it_waited_for():
    import asyncio

    from benchmarks.sync_bench import _until

    with pytest.raises(TimeoutError, match="the outbox to drain"):
        asyncio.run(_until(lambda: False, 0.2, "the outbox to drain to central"))


def test_bench_records_the_cpu_its_figures_were_measured_on(tmp_path):
    from benchmarks.run import machine

    cpuinfo = tmp_path / "cpuinfo"
    block = "processor\t: {n}\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 fma\n"
    cpuinfo.write_text(block.format(n=0) + "\n" + block.format(n=1))
    facts = machine(cpuinfo)
    assert facts["cpu_model"] == "AMD EPYC 9654"
    assert facts["cpu_speed_flags"] == ["avx2", "avx512f", "avx512_bf16"]
    assert facts["cpus"] >= 1
    missing = machine(tmp_path / "absent")  # not Linux: the figures still run, without the CPU's name
    assert "cpu_model" not in missing and missing["python"]
