"""`smartgate bench` runs and reports its figures (a smoke run: no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys


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
    assert all(key.endswith("per_s") or isinstance(value, dict | int | float)
               for key, value in figures["codec"].items())
