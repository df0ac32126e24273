"""The site's `journal:` section (edge/journal_guard.py) and the device id the node keeps for its journal."""

from __future__ import annotations

from pathlib import Path

from edge.cli import DEFAULT_SITE
from edge.config import JournalGuardConfig, load_site
from tests.test_cli import smartgate


def test_the_journal_section_has_sensible_defaults():
    guard = load_site(DEFAULT_SITE).site.journal
    assert guard == JournalGuardConfig()
    assert guard.reserve_mib == 8 and guard.buffer_rows == 10_000 and guard.write_timeout_s == 2.0


def test_a_device_named_journal_is_refused_with_the_key_and_the_fix(tmp_path: Path):
    text = DEFAULT_SITE.read_text(encoding="utf-8").replace("id: IMP-1-eseal", "id: journal", 1)
    bad = tmp_path / "site.yaml"
    bad.write_text(text, encoding="utf-8")
    result = smartgate("check-config", str(bad))
    assert result.returncode == 1
    assert "lanes[0].devices[1].id" in result.stderr and "give the device another id" in result.stderr


def test_a_bad_journal_setting_names_its_key(tmp_path: Path):
    text = DEFAULT_SITE.read_text(encoding="utf-8") + "journal:\n  reserve_mib: -1\n  buffer_rows: 3\n"
    bad = tmp_path / "site.yaml"
    bad.write_text(text, encoding="utf-8")
    result = smartgate("check-config", str(bad))
    assert result.returncode == 1
    assert "journal.reserve_mib" in result.stderr and "journal.buffer_rows" in result.stderr
