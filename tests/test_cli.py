"""The `smartgate` command as an integrator and a tester use it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from edge.cli import DEFAULT_SITE
from edge.journal import Journal


def smartgate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_shipped_site_config_is_valid():
    result = smartgate("check-config", str(DEFAULT_SITE))
    assert result.returncode == 0, result.stderr
    assert "gate HUUNGHI, 2 lanes" in result.stdout


def test_bad_site_config_names_file_key_line_and_fix(tmp_path: Path):
    text = DEFAULT_SITE.read_text(encoding="utf-8")
    text = text.replace("port: 5020", "port: 99999").replace("direction: export", "direction: outbound")
    text = text.replace("profile: generic-anpr-camera\n        transport: {type: mqtt, topic: gate/HUUNGHI/EXP-1",
                        "profile: no-such-camera\n        transport: {type: mqtt, topic: gate/HUUNGHI/EXP-1")
    bad = tmp_path / "site.yaml"
    bad.write_text(text, encoding="utf-8")
    result = smartgate("check-config", str(bad))
    assert result.returncode == 1
    err = result.stderr
    assert f"{bad}:" in err
    assert "lanes[1].direction" in err and "Fix: use one of 'import' or 'export'" in err
    assert "lanes[0].devices[0].transport.port" in err and "65535" in err


def test_unknown_profile_lists_the_known_ones(tmp_path: Path):
    text = DEFAULT_SITE.read_text(encoding="utf-8").replace("profile: ascii-eseal-reader", "profile: eseal-x", 1)
    bad = tmp_path / "site.yaml"
    bad.write_text(text, encoding="utf-8")
    result = smartgate("check-config", str(bad))
    assert result.returncode == 1
    assert "lanes[0].devices[1].profile" in result.stderr and "ascii-eseal-reader" in result.stderr


def test_lane_requiring_a_reading_no_device_provides_is_refused(tmp_path: Path):
    text = DEFAULT_SITE.read_text(encoding="utf-8").replace("required_readings: [plate, seal]",
                                                            "required_readings: [plate, seal, container]", 1)
    text = text.replace("""      - id: IMP-1-eseal
        kind: eseal
        profile: ascii-eseal-reader
        transport: {type: serial, port: /dev/ttyUSB0}
""", "")
    bad = tmp_path / "site.yaml"
    bad.write_text(text, encoding="utf-8")
    result = smartgate("check-config", str(bad))
    assert result.returncode == 1
    assert "'seal' is required but no device of the lane can read it" in result.stderr


def test_cache_import_reports_bad_rows_and_keeps_the_good_ones(tmp_path: Path):
    csv_file = tmp_path / "decls.csv"
    csv_file.write_text(
        "number,kind,gate,plates,containers,seals,gross_weight_kg,channel,status,valid_from,valid_until,version\n"
        "105000000001,import,HUUNGHI,29C-123.45,CSQU3054383,S1,28000,green,cleared,2026-11-01,2026-12-31,1\n"
        "105000000002,import,HUUNGHI,51D-678.90,,S2,,purple,cleared,2026-11-01,2026-12-31,1\n"
        "105000000003,export,HUUNGHI,桂F·12345,MWCU6059784,S3,30000,red,held,2026-11-01,2026-12-31,2\n",
        encoding="utf-8")
    data = tmp_path / "node"
    result = smartgate("cache", "import", str(csv_file), "--data-dir", str(data))
    assert result.returncode == 1  # some rows were refused
    assert "imported 2" in result.stdout and "line 3" in result.stdout and "purple" in result.stdout
    stats = smartgate("cache", "stats", "--data-dir", str(data))
    assert stats.returncode == 0
    figures = json.loads(stats.stdout)
    assert figures["total"] == 2 and figures["age_s"] is not None


def test_cache_import_of_a_missing_file_is_a_clear_error(tmp_path: Path):
    result = smartgate("cache", "import", str(tmp_path / "nope.csv"), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "nope.csv" in result.stderr


def test_journal_verify_detects_an_edited_row(tmp_path: Path):
    path = tmp_path / "journal.sqlite"
    journal = Journal.open(path)
    journal.append("decision", {"outcome": "hold", "reasons": ["SEAL_MISMATCH"]}, lane="IMP-1")
    journal.append("officer_action", {"action": "release", "officer": "o1"}, lane="IMP-1")
    journal.close()
    assert smartgate("journal", "verify", "--db", str(path)).returncode == 0
    conn = sqlite3.connect(path)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    table = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'journal%' "
                         "AND name != 'journal_head'").fetchone()[0]
    conn.execute(f"UPDATE {table} SET payload = replace(payload, 'hold', 'release') WHERE seq = 1")
    conn.commit()
    conn.close()
    result = smartgate("journal", "verify", "--db", str(path))
    assert result.returncode == 1 and "seq 1" in result.stdout
