"""The real page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Log in, see a held truck appear live, release it with a reason, see the barrier open; an officer
is refused a supervisor-only action; a supervisor overrides a refusal; the language switches.
Screenshots of the lane board are saved in the test's own folder (tmp_path).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from edge.users import AuthSettings
from tests.helpers import chromium_browser
from tests.kiosk.conftest import PASSWORDS, GateThread

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as launched:
        yield launched


def _page(browser, gate: GateThread, locale: str = "en-GB"):
    context = browser.new_context(viewport={"width": 1600, "height": 1200}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gate.base + "/")
    return page, errors


def _log_in(page, user: str, password: str | None = None) -> None:
    page.wait_for_selector("#login-form")
    page.fill("#username", user)
    page.fill("#password", password or PASSWORDS[user])
    page.click("#login-submit")


def _save(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("SMARTGATE_TEST_ARTIFACTS"):  # CI may collect them from one place too
        target = Path(os.environ["SMARTGATE_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def test_officer_sees_a_held_truck_live_and_releases_it(browser, gate: GateThread, tmp_path: Path):
    page, errors = _page(browser, gate)
    assert page.url.endswith("/login")
    _log_in(page, "officer1")
    page.wait_for_selector("#lane-IMP-1[data-tone=idle]")
    page.wait_for_selector("#st-live[data-state=up]")
    assert page.inner_text("#user-name") == "Nguyen Van An"
    page.evaluate("window.__noReload = true")

    # A truck with a seal that is not on its declaration arrives: the card turns to HOLD by itself.
    gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")
    card = page.locator("#lane-IMP-1[data-tone=hold]")
    card.wait_for()
    assert page.evaluate("window.__noReload") is True
    text = card.inner_text()
    assert "HOLD" in text and "29C-123.45" in text and "A seal that is not on the declaration was read" in text
    assert "105000000888" in text and "check digit OK" in text and "not declared" in text
    assert "null" not in page.inner_text("#lanes") and "undefined" not in page.inner_text("#lanes")
    shot = _save(page, tmp_path, "lane-board-hold.png")
    assert shot.stat().st_size > 10_000

    # Supervisor-only actions: no buttons for an officer, and the node refuses them anyway.
    assert card.locator("button[data-action=manual_open]").count() == 0
    refused = page.evaluate("SGBoard.submitAction('IMP-1', 'manual_open', 'let it through')")
    assert refused["status"] == 403 and refused["code"] == "supervisor_required"
    page.locator(".toast.error", has_text="Only a supervisor may do this.").wait_for()
    assert not gate.gate.rigs["IMP-1"].plc.boom_open

    # Release with a reason: the dialog insists on one.
    card.locator("button[data-action=release]").click()
    page.wait_for_selector("#action-dialog[open]")
    page.click("#action-confirm")
    assert "reason" in page.inner_text("#action-error").lower()
    page.fill("#action-reason", "Seal replaced at the yard, papers seen")
    page.click("#action-confirm")
    page.locator("#lane-IMP-1 .boom.open").wait_for()  # the PLC reports the boom open
    assert gate.gate.rigs["IMP-1"].plc.boom_open
    page.locator("#lane-IMP-1 .hist-officer_action", has_text="officer1: Release").wait_for()
    page.locator("#lane-IMP-1 .hist-note", has_text="Seal replaced at the yard, papers seen").wait_for()
    entry = gate.gate.node.journal.entries(lane="IMP-1", kinds=["officer_action"])[-1]
    assert entry.payload["officer"] == "officer1" and entry.payload["action"] == "release"
    _save(page, tmp_path, "lane-board-released.png")
    assert errors == []


def test_supervisor_overrides_a_refusal_in_vietnamese(browser, gate: GateThread, tmp_path: Path):
    page, errors = _page(browser, gate, locale="vi-VN")
    _log_in(page, "super1", "wrong-password")
    page.locator("#login-error", has_text="Sai tên đăng nhập hoặc mật khẩu.").wait_for()
    page.click("button.lang[data-lang=en]")
    assert page.inner_text("#login-error") == "Wrong user name or password."
    page.click("button.lang[data-lang=vi]")
    _log_in(page, "super1")
    page.wait_for_selector("#lane-EXP-1")
    gate.present("EXP-1", "51D-999.99", "00A1B2C3")  # its declaration was cancelled: refused
    card = page.locator("#lane-EXP-1[data-tone=refuse]")
    card.wait_for()
    text = card.inner_text()
    assert "TỪ CHỐI" in text and "Tờ khai đã bị hủy" in text
    _save(page, tmp_path, "lane-board-refused-vi.png")

    # The language switch is kept in a cookie across reloads.
    page.click("button.lang[data-lang=en]")
    page.locator("#lane-EXP-1 .outcome-title", has_text="REFUSED").wait_for()
    page.reload()
    page.locator("#lane-EXP-1 .outcome-title", has_text="REFUSED").wait_for()
    assert page.get_attribute("html", "lang") == "en"

    card.locator("button[data-action=release]", has_text="override").click()
    page.fill("#action-reason", "Cancellation was a clerical error, confirmed with the branch")
    page.click("#action-confirm")
    page.locator("#lane-EXP-1 .boom.open").wait_for()
    page.locator("#lane-EXP-1 .hist-officer_action", has_text="super1: Release").wait_for()

    # Manual barrier control is there for a supervisor; opening an empty lane by hand is shown as such,
    # not as a truck passing.
    page.locator("#lane-IMP-1 button[data-action=manual_open]").click()
    page.fill("#action-reason", "Ambulance")
    page.click("#action-confirm")
    page.locator("#lane-IMP-1[data-tone=manual] .outcome-title", has_text="BARRIER OPENED BY HAND").wait_for()
    assert "super1, no truck at the lane" in page.inner_text("#lane-IMP-1 .outcome-sub")
    assert errors == []


def test_status_strip_and_look_up(browser, gate: GateThread, tmp_path: Path):
    page, errors = _page(browser, gate)
    _log_in(page, "admin1")
    page.wait_for_selector("#lane-IMP-1")
    page.locator("#st-link .value", has_text="not configured").wait_for()
    page.locator("#st-devices[data-level=ok]").wait_for()
    assert page.inner_text("#st-outbox .value") == "—"
    assert page.locator("#banner-cache").count() == 0
    # A stale cache is announced on top (the strip refreshes by itself every few seconds).
    gate.gate.node.cache.mark_refreshed(__import__("datetime").datetime(2020, 1, 1))
    page.locator("#banner-cache", has_text="older than policy allows").wait_for(timeout=15_000)
    page.fill("#lookup-q", "CSQU3054383")
    page.click("#lookup-form button")
    page.locator(".decl-card", has_text="105000000999").wait_for()
    assert page.locator(".decl-card").count() == 2
    # Admins manage users on the page.
    page.locator("#users-panel tr", has_text="officer1").wait_for()
    page.fill("#user-form input[name=username]", "new-officer")
    page.fill("#user-form input[name=password]", "new-officer-pass")
    page.click("#user-form button")
    page.locator("#users-panel tr", has_text="new-officer").wait_for()
    _save(page, tmp_path, "lane-board-admin.png")
    started = time.monotonic()
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert time.monotonic() - started < 10
    assert errors == []


def test_a_throttled_log_in_says_how_long_to_wait_then_lets_the_officer_in(browser, gate: GateThread):
    app = gate.gate.node._server.config.app
    app.state.login_guard.throttle.settings = AuthSettings(first_delay_s=3)
    page, errors = _page(browser, gate)
    for _ in range(3):
        _log_in(page, "officer1", "wrong-password")
        page.locator("#login-error", has_text="Wrong user name or password.").wait_for()
        page.wait_for_selector("#login-submit:enabled")
    _log_in(page, "officer1")  # the right password, but too soon: nobody is locked out, only slowed
    page.locator("#login-error", has_text=re.compile(r"Too many failed attempts\. Try again in [1-3] s")).wait_for()
    assert page.is_disabled("#login-submit")
    page.wait_for_selector("#login-submit:enabled")
    _log_in(page, "officer1")
    page.wait_for_selector("#lane-IMP-1")
    assert errors == []
