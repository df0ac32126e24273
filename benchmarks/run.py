"""Runs the selected benchmarks and gathers their JSON figures (`smartgate bench`)."""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

# vector extensions that change onnxruntime's and torch's speed on a CPU by several times
_SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """What the figures were measured on: Python, cores, platform, and (on Linux) the CPU's model and
    the vector extensions it has that matter to inference speed, so two runs' figures can be compared."""
    facts: dict = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return facts
    first_cpu = text.split("\n\n", 1)[0]  # every processor block repeats the same model and flags
    fields = dict(line.split(":", 1) for line in first_cpu.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    if "model name" in fields:
        facts["cpu_model"] = fields["model name"]
    flags = set(fields.get("flags", "").split())
    if flags:
        facts["cpu_speed_flags"] = [flag for flag in _SPEED_FLAGS if flag in flags]
    return facts


def run_benchmarks(which: list[str], quick: bool = False, baseline: bool = True, gates: int | None = None,
                   only: str | None = None, real_crops: list[str] | None = None,
                   real_frames: str | None = None) -> dict:
    """Run benchmarks by name (decision, cache, journal, archive, codec, modbus, kiosk, sync, security, vision,
    central, all)."""
    names = (["decision", "cache", "journal", "archive", "codec", "modbus", "kiosk", "sync", "security", "vision",
              "central"] if "all" in which else which)
    result: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": quick,
    }
    for name in names:
        started = time.perf_counter()
        if name == "decision":
            from benchmarks.decision_bench import run_decision_bench

            figures = run_decision_bench(trucks=200 if quick else 1000)
        elif name == "cache":
            from benchmarks.cache_bench import run_cache_bench

            figures = run_cache_bench(n_declarations=50_000 if quick else 1_000_000)
        elif name == "journal":
            from benchmarks.journal_bench import run_journal_bench

            figures = run_journal_bench(n=500 if quick else 2000)
        elif name == "archive":
            from benchmarks.journal_archive_bench import run_journal_archive_bench

            figures = run_journal_archive_bench(days=2, trucks_a_day=200 if quick else 2000)
        elif name == "codec":
            from benchmarks.codec_bench import run_codec_bench

            figures = run_codec_bench(frames=5_000 if quick else 50_000)
        elif name == "modbus":
            from benchmarks.modbus_bench import run_modbus_bench

            figures = run_modbus_bench(n=300 if quick else 2000)
        elif name == "kiosk":
            from benchmarks.kiosk_bench import run_kiosk_bench

            figures = run_kiosk_bench(lanes=4, streams=20, updates=30 if quick else 150)
        elif name == "sync":
            from benchmarks.sync_bench import run_sync_bench

            figures = run_sync_bench(quick=quick)
        elif name == "security":
            from benchmarks.security_bench import run_security_bench

            figures = run_security_bench(trucks=200 if quick else 1000, connects=10 if quick else 50,
                                         messages=400 if quick else 2000)
        elif name == "vision":
            from benchmarks.vision_bench import run_vision_bench

            figures = run_vision_bench(per_class=100 if quick else 1000, frames=20 if quick else 100,
                                       baseline_per_class=5 if quick else 50, with_baseline=baseline,
                                       real_limit=15 if quick else None, only=only,
                                       real_crops=[Path(f) for f in real_crops or []],
                                       real_frames=Path(real_frames) if real_frames else None,
                                       realistic_per_class=50 if quick else 300)
        elif name == "central":
            from benchmarks.central_bench import run_central_bench

            figures = (run_central_bench(gates=gates or 4, events=200, batch=100, runs=1) if quick
                       else run_central_bench(gates=gates or 50))
        else:
            raise SystemExit(f"unknown benchmark {name!r}: use decision, cache, journal, archive, codec, modbus, "
                             "kiosk, sync, security, vision, central or all")
        figures["bench_seconds"] = round(time.perf_counter() - started, 2)
        result[name] = figures
    return result
