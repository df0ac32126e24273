"""Gate credentials: central refuses a gate without its token; the site's token keys fail clearly at start-up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cache import DeclarationCache
from edge.cli import DEFAULT_SITE
from edge.config import ConfigError, load_site
from edge.journal import Journal
from sync.central.server import CentralServer
from sync.client import SyncService
from tests.conftest import wait_until
from tests.sync.helpers import TOKEN, enrolled, fast_config


def _site_with(tmp_path: Path, central_lines: str) -> Path:
    """The shipped site with a `central:` section (the lines given, indented under it)."""
    text = DEFAULT_SITE.read_text(encoding="utf-8").replace(
        "lanes:\n", "central:\n  url: https://127.0.0.1:8400\n  public_key: central.pub.pem\n"
        + "".join(f"  {line}\n" for line in central_lines.splitlines()) + "lanes:\n", 1)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site(path)
    return [str(problem) for problem in info.value.problems]


@pytest.mark.parametrize(("lines", "key", "says"), [
    ("", "central.token", "needs this gate's token"),
    ("token: short", "central.token", "at least 24"),
    ("token: 'has a space in it, which no token has'", "central.token", "spaces"),
    ("token: \"abcdefghijklmnopqrstuvwxyz0123456789!\"", "central.token", "may only contain"),
    ("token_file: missing.token", "central.token_file", "cannot read"),
    ("token_file: empty.token", "central.token_file", "empty"),
    (f"token: {TOKEN}\ntoken_file: gate.token", "central.token_file", "both"),
])
def test_a_bad_token_setting_names_file_key_line_and_fix(tmp_path, lines, key, says):
    (tmp_path / "empty.token").write_text("\n", encoding="utf-8")
    (tmp_path / "gate.token").write_text(TOKEN + "\n", encoding="utf-8")
    path = _site_with(tmp_path, lines)
    problems = _problems(path)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.startswith(f"{path}:") and f": {key}: " in problem and says in problem, problem
    assert "Fix: " in problem and ("smartgate central token" in problem or "keep only one" in problem), problem


def test_a_token_file_next_to_the_site_file_is_accepted(tmp_path):
    (tmp_path / "gate.token").write_text(TOKEN + "\n", encoding="utf-8")
    loaded = load_site(_site_with(tmp_path, "token_file: gate.token"))
    assert loaded.site.central.token_path(tmp_path) == tmp_path / "gate.token"


def test_smartgate_run_refuses_to_start_with_a_malformed_token(tmp_path):
    path = _site_with(tmp_path, "token: 'pasted with a line break'")
    result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--site", str(path), "--data-dir",
                             str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"{path}:" in result.stderr and "central.token" in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "data" / "journal.sqlite").exists()  # refused before anything started


def test_central_token_command_issues_a_token_central_accepts(tmp_path, keypair):
    db = f"sqlite:///{tmp_path / 'central.sqlite'}"
    out = tmp_path / "HN.token"
    result = subprocess.run([sys.executable, "-m", "edge.cli", "central", "token", "--gate", "HN", "--db", db,
                             "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o077 == 0  # readable by its owner only
    token = out.read_text(encoding="utf-8").strip()
    central = CentralServer(db, keypair[0]).start()
    try:
        assert central.store.gate_token_ok("HN", token) and not central.store.gate_token_ok("HN", TOKEN)
    finally:
        central.stop()


@pytest.mark.timeout(60)
def test_a_node_with_a_wrong_token_is_refused_alarms_once_and_central_stores_nothing(tmp_path, keypair):
    asyncio.run(_wrong_token(tmp_path, keypair))


async def _wrong_token(tmp_path, keypair):
    central = await asyncio.to_thread(
        CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], **enrolled(tmp_path)).start)
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    stale = "hn-old-token-revoked-at-central-0000"
    sync = SyncService("HN", fast_config(central.url, keypair[1], token=stale), journal, cache,
                       public_key=keypair[1])
    sync.start()
    try:
        for i in range(10):
            journal.append("reading", {"i": i}, lane="L1")
        await wait_until(lambda: sync.upload_errors >= 3, 15, "the uploader to retry")
        status = sync.status()
        assert status["auth_refused"] and "401" in status["link"]["last_error"]
        assert central.store.event_count("HN") == 0
        assert "HN" not in {g["gate"] for g in central.store.gates()}  # not even a contact recorded
        alarms = [e for e in journal.entries(kinds=["alarm"]) if e.payload["code"] == "CENTRAL_AUTH_REFUSED"]
        assert len(alarms) == 1, "one alarm, not one per retry"
        # Central issues the token the node holds: the node catches up without a restart.
        central.store.set_gate_token("HN", stale)
        await wait_until(lambda: central.store.event_count("HN") >= journal.count(), 15,
                         "the events to reach central after the token was fixed")
        # A pull sent before the fix may still come back 401 after the upload went through;
        # the flag describes the last answer, so it clears with the next one.
        await wait_until(lambda: not sync.status()["auth_refused"], 15, "the refused-token flag to clear")
    finally:
        await sync.stop()
        journal.close()
        cache.close()
        await asyncio.to_thread(central.stop)
