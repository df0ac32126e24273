"""Installing like a product: the systemd unit, the backup script, the wheel's package data."""

from __future__ import annotations

import fnmatch
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from edge.cli import build_parser
from edge.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "scripts" / "systemd" / "smartgate.service"


def unit_settings(path: Path) -> dict[str, list[str]]:
    """key → every value it is given (systemd allows a key more than once)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_service_runs_the_node_as_its_own_user_on_a_read_only_system():
    unit = unit_settings(UNIT)
    assert unit["User"] == ["smartgate"] and unit["SupplementaryGroups"] == ["dialout"]
    assert unit["ProtectSystem"] == ["strict"] and unit["ReadWritePaths"] == ["/var/lib/smartgate"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["CapabilityBoundingSet"] == [""]
    assert unit["Restart"] == ["always"] and unit["StartLimitIntervalSec"] == ["0"]
    assert "char-ttyUSB rw" in unit["DeviceAllow"]
    assert unit["Type"] == ["notify"] and unit["WatchdogSec"] == ["30"]  # the node pings from its event loop


def test_the_service_commands_are_ones_the_cli_takes():
    unit = unit_settings(UNIT)
    for command in unit["ExecStartPre"] + unit["ExecStart"]:
        words = shlex.split(command)
        assert words[0] == "/opt/smartgate/bin/smartgate"
        args = build_parser().parse_args(words[1:])  # exits (fails the test) on an option the CLI lacks
        assert args.command in ("check-config", "run")
    run = build_parser().parse_args(shlex.split(unit["ExecStart"][0])[1:])
    assert run.data_dir == "/var/lib/smartgate" and run.site == "/etc/smartgate/site.yaml"


def test_backup_copies_the_databases_and_checks_the_journal_copy(tmp_path: Path):
    data = tmp_path / "node"
    journal = Journal.open(data / "journal.sqlite")
    journal.append("decision", {"outcome": "release", "reasons": []}, lane="IMP-1")
    (data / "pki").mkdir()
    (data / "pki" / "ca.crt").write_text("a certificate\n")
    backups = tmp_path / "backups"
    env = {"SMARTGATE_PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    try:  # while the node holds the journal open
        result = subprocess.run(["bash", str(ROOT / "scripts" / "backup.sh"), str(data), str(backups)],
                                capture_output=True, text=True, timeout=120, env=env)
    finally:
        journal.close()
    assert result.returncode == 0, result.stderr
    (copy,) = backups.iterdir()
    assert (copy / "pki" / "ca.crt").read_text() == "a certificate\n"
    restored = Journal.open(copy / "journal.sqlite")
    try:
        assert restored.verify().ok
        assert [e.kind for e in restored.entries(kinds=["decision"])] == ["decision"]
    finally:
        restored.close()
    refused = subprocess.run(["bash", str(ROOT / "scripts" / "backup.sh"), str(tmp_path), str(backups)],
                             capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "not a node's data folder" in refused.stderr


def test_the_wheel_carries_every_shipped_profile_site_and_scenario():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "firmware_configs*" in config["packages"]["find"]["include"]
    package_data = config["package-data"]
    shipped = [p for p in (ROOT / "firmware_configs").rglob("*") if p.is_file()]
    assert shipped
    for path in shipped:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        patterns = package_data.get(package, [])
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns), f"{path} is left out of the wheel"
