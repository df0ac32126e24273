"""The `smartgate` command as an integrator and a tester use it."""

from __future__ import annotations

import json
import logging
import os
import pty
import sqlite3
import subprocess
import sys
from pathlib import Path

from edge.cli import DEFAULT_SITE, configure_logging
from edge.config import PROFILE_DIR
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


def test_check_config_names_every_mistake_in_one_run_with_did_you_mean(tmp_path: Path):
    text = DEFAULT_SITE.read_text(encoding="utf-8")
    text = text.replace("port: 5020", "port: 99999").replace("direction: export", "direction: exprot")
    text = text.replace("weight_tolerance_pct: 3.0", "weight_tolerence_pct: 3.0", 1)
    text = text.replace("profile: ascii-eseal-reader", "profile: ascii-eseal-raeder", 1)
    bad = tmp_path / "site.yaml"
    bad.write_text(text, encoding="utf-8")
    result = smartgate("check-config", str(bad))
    assert result.returncode == 1
    err = result.stderr
    assert "lanes[0].devices[0].transport.port" in err and "lanes[1].direction" in err
    assert "lanes[0].policy.weight_tolerence_pct: unknown key. Fix: did you mean 'weight_tolerance_pct'?" in err
    assert "lanes[0].devices[1].profile: no device profile 'ascii-eseal-raeder'" in err
    assert "did you mean 'ascii-eseal-reader'?" in err
    assert "did you mean 'export'?" in err  # a misspelt value too
    assert "4 problem(s)" in err


def test_profiles_beside_the_site_file_come_before_the_shipped_ones(tmp_path: Path):
    (tmp_path / "devices").mkdir()
    shipped = (PROFILE_DIR / "generic-barrier-plc.yaml").read_text(encoding="utf-8")
    (tmp_path / "devices" / "generic-barrier-plc.yaml").write_text(
        shipped.replace("modbus:", "modbus:\n  pol_interval_ms: 50", 1), encoding="utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(DEFAULT_SITE.read_text(encoding="utf-8"), encoding="utf-8")
    result = smartgate("check-config", str(site))
    assert result.returncode == 1  # the local copy is the one read, and its typo is found
    assert f"{tmp_path / 'devices' / 'generic-barrier-plc.yaml'}" in result.stderr
    assert "did you mean 'poll_interval_ms'?" in result.stderr
    (tmp_path / "devices" / "generic-barrier-plc.yaml").write_text(shipped, encoding="utf-8")
    result = smartgate("check-config", str(site))
    assert result.returncode == 0, result.stderr
    assert f"profile generic-barrier-plc from {tmp_path / 'devices'}" in result.stdout


def test_wrong_data_dir_is_refused_with_a_message_and_creates_nothing(tmp_path: Path):
    a_file = tmp_path / "declarations.csv"
    a_file.write_text("number\n", encoding="utf-8")
    result = smartgate("cache", "stats", "--data-dir", str(a_file))
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr
    missing = tmp_path / "var" / "huu-ngih"
    result = smartgate("cache", "stats", "--data-dir", str(missing))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not missing.exists(), "a typo must not create an empty cache"
    someone_elses = tmp_path / "photos"
    someone_elses.mkdir()
    (someone_elses / "holiday.jpg").write_bytes(b"\xff\xd8")
    result = smartgate("cache", "import", str(a_file), "--data-dir", str(someone_elses))
    assert result.returncode == 2 and "is not a node's data folder" in result.stderr
    assert not (someone_elses / "declarations.sqlite").exists()
    result = smartgate("journal", "verify", "--data-dir", str(someone_elses))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    first_admin = subprocess.run([sys.executable, "-m", "edge.cli", "users", "add", "admin", "--role", "admin",
                                  "--password-stdin", "--data-dir", str(someone_elses)], input="a long passphrase\n",
                                 capture_output=True, text=True, timeout=120)
    assert first_admin.returncode == 2 and "is not a node's data folder" in first_admin.stderr
    assert not (someone_elses / "users.sqlite").exists()


def test_closed_pipe_ends_quietly(tmp_path: Path):
    data = tmp_path / "node"
    csv_file = tmp_path / "decls.csv"
    csv_file.write_text(
        "number,kind,gate,plates,containers,seals,gross_weight_kg,channel,status,valid_from,valid_until,version\n"
        "105000000001,import,HUUNGHI,29C-123.45,CSQU3054383,S1,28000,green,cleared,2026-11-01,2026-12-31,1\n",
        encoding="utf-8")
    assert smartgate("cache", "import", str(csv_file), "--data-dir", str(data)).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already gone
    try:
        result = subprocess.run([sys.executable, "-m", "edge.cli", "cache", "stats", "--data-dir", str(data)],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == ""


def test_device_libraries_stay_quiet_unless_verbose():
    try:
        configure_logging(verbose=False)
        for name in ("pymodbus", "paho", "uvicorn.error", "httpx"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        # its errors repeat the driver's fault report, with a dump of the last frames
        assert not logging.getLogger("pymodbus").isEnabledFor(logging.ERROR)
        configure_logging(verbose=True)
        assert logging.getLogger("pymodbus").isEnabledFor(logging.INFO)
        assert logging.getLogger("uvicorn.error").isEnabledFor(logging.INFO)
    finally:
        configure_logging(verbose=False)


def test_cache_import_shows_progress_on_a_terminal_only(tmp_path: Path):
    csv_file = tmp_path / "decls.csv"
    rows = [f"1050{i:08d},import,HUUNGHI,29C-{i % 1000:03d}.{i % 100:02d},,S1,28000,green,cleared,2026-11-01,"
            "2026-12-31,1" for i in range(2000)]
    csv_file.write_text("number,kind,gate,plates,containers,seals,gross_weight_kg,channel,status,valid_from,"
                        "valid_until,version\n" + "\n".join(rows) + "\n", encoding="utf-8")
    code, terminal = on_a_terminal("cache", "import", str(csv_file), "--data-dir", str(tmp_path / "a"))
    assert code == 0
    assert b"importing: 100%" in terminal and b"2000/2000" in terminal
    piped = smartgate("cache", "import", str(csv_file), "--data-dir", str(tmp_path / "b"))
    assert piped.returncode == 0 and "importing" not in piped.stderr and "imported 2000" in piped.stdout


def on_a_terminal(*args: str) -> tuple[int, bytes]:
    """Run smartgate with stderr on a real terminal (a pty); its exit code and what the terminal showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", *args], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    terminal = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    return process.wait(120), terminal


def test_scenario_run_shows_its_trucks_progress_on_a_terminal(tmp_path: Path):
    code, terminal = on_a_terminal("demo", "--scenario", str(DEFAULT_SITE.parent.parent / "scenarios" / "basic.yaml"),
                                   "--data-dir", str(tmp_path / "demo"))
    assert code == 0
    assert b"scenario basic: 100%" in terminal and b"4/4" in terminal
