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
    for codec in ("eseal_ascii", "eseal_binary", "weighbridge_toledo", "weighbridge_sma", "weighbridge_rinstrum"):
        assert figures["codec"][codec]["frames_per_s"] > 0, codec
    for codec in ("anpr_json", "scanner_json"):
        assert figures["codec"][codec]["messages_per_s"] > 0, codec
