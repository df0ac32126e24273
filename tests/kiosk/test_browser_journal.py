"""The page while the journal cannot write: the strip, a banner and every lane card say so, in both languages.

The journal is locked by another connection (as a `sqlite3` shell left in a transaction would hold it),
so the node's next write runs past `journal.write_timeout_s` and the lanes degrade; the lock goes and
the page says the journal writes again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.helpers import chromium_browser
from tests.kiosk.conftest import GateThread
from tests.kiosk.test_browser import _log_in, _page, _save

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as launched:
        yield launched


def test_officers_see_in_words_that_the_journal_cannot_write(browser, gate: GateThread, tmp_path: Path):
    page, errors = _page(browser, gate)
    _log_in(page, "super1")
    page.wait_for_selector("#lane-IMP-1[data-tone=idle]")
    page.locator("#st-journal[data-level=ok]", has_text="writing").wait_for()
    lock = sqlite3.connect(gate.workdir / "node" / "journal.sqlite", isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")  # the lane's next write waits on the lock
        page.locator("#st-journal[data-level=bad]", has_text="CANNOT WRITE").wait_for()
        banner = page.locator("#banner-journal")
        banner.wait_for()
        assert "No truck is released" in banner.inner_text()
        for lane in ("IMP-1", "EXP-1"):
            card_text = page.locator(f"#journal-{lane}").inner_text()
            assert "JOURNAL CANNOT WRITE" in card_text and "still closes behind a truck" in card_text
        _save(page, tmp_path, "lane-board-journal-down.png")
        page.click("button.lang[data-lang=vi]")
        page.locator("#journal-IMP-1", has_text="NHẬT KÝ KHÔNG GHI ĐƯỢC").wait_for()
        assert "KHÔNG GHI ĐƯỢC" in page.inner_text("#st-journal")
        page.click("button.lang[data-lang=en]")
    finally:
        if lock.in_transaction:
            lock.execute("COMMIT")
        lock.close()
    page.locator("#st-journal[data-level=ok]", has_text="writing").wait_for(timeout=20_000)
    assert page.locator("#banner-journal").count() == 0 and page.locator("#journal-IMP-1").count() == 0
    assert errors == []
