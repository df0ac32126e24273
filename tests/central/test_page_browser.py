"""Central's monitoring page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

An operator logs in with their token, sees gate HN online with its lanes, the held truck and its waiting time,
acknowledges the tailgating alarm (their name is shown), finds the released truck by its plate, and the page
follows a new upload live. A monitor sees the same but has no acknowledge button; the language switches; no
request leaves loopback, /docs included. Screenshots are saved in the test's folder (tmp_path).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from sync.central.web.login_throttle import ThrottleSettings
from tests.central.conftest import HELD_PLATE, MONITOR, OPERATOR, RELEASED_CONTAINER, apply_birth_and_telemetry
from tests.helpers import chromium_browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as launched:
        yield launched


def _page(browser, url: str, locale: str = "en-GB"):
    context = browser.new_context(viewport={"width": 1600, "height": 1100}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # (a refused log-in's 401 is logged by the browser as a failed resource: the test's own doing)
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("request", lambda request: outside.append(request.url)
            if urlparse(request.url).hostname not in ("127.0.0.1", None) and not request.url.startswith("data:")
            else None)
    page.goto(url + "/")
    return page, errors, outside


def _log_in(page, token: str) -> None:
    page.wait_for_selector("#login-form")
    page.fill("#token", token)
    page.click("#login-submit")
    page.wait_for_selector(".gate-card")


def _save(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SMARTGATE_TEST_ARTIFACTS"):
        target = Path(os.environ["SMARTGATE_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def test_operator_sees_the_gate_acknowledges_an_alarm_and_finds_a_truck(browser, monitored_page, tmp_path):
    page, errors, outside = _page(browser, monitored_page.url)
    assert page.url.endswith("/login")
    page.fill("#token", "not-a-token-anyone-holds-000000000000")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:has-text('not valid')")
    _log_in(page, OPERATOR)
    card = page.locator(".gate-card[data-gate='HN']")
    assert "online" in card.inner_text()
    assert card.locator(".lane-chip").count() == 2
    held = card.locator(".held-truck")
    assert HELD_PLATE in held.inner_text() and "SEAL_MISMATCH" in held.inner_text()
    assert "waiting 3 min" in held.inner_text()  # decided 190 s ago: a duration, not an epoch
    assert "3 waiting" in card.inner_text()  # one outbox backlog number
    assert page.locator("#user-name").inner_text() == "an.operator"

    page.click(".gate-card[data-gate='HN'] .gate-link")
    page.wait_for_selector("#detail svg.chart")
    detail = page.locator("#detail").inner_text()
    assert RELEASED_CONTAINER in detail and "L2-eseal" in detail and "FAULT" in detail
    assert "1 released, 1 held, 0 refused in 24 h" in detail
    _save(page, tmp_path, "central-gate.png")

    alarm = page.locator("#alarms li[data-alarm]").first
    assert "TAILGATING" in alarm.inner_text() and "critical" in alarm.inner_text().lower()
    alarm.locator("button[data-action='ack']").click()
    page.wait_for_selector("#alarms .alarm-audit:has-text('acknowledged by an.operator')")
    page.wait_for_selector("#st-alarms-value:has-text('0 not acknowledged')")

    page.fill("#search-q", "29C-123.45")
    page.press("#search-q", "Enter")
    page.wait_for_selector("#search-results .found-truck")
    assert RELEASED_CONTAINER in page.locator("#search-results").inner_text()
    _save(page, tmp_path, "central-operator.png")

    apply_birth_and_telemetry(monitored_page.central, backlog=57)  # a new report: the page follows without a reload
    page.wait_for_selector(".gate-card[data-gate='HN']:has-text('57 waiting')", timeout=15_000)

    page.click("button.lang[data-lang='vi']")
    assert "trực tuyến" in page.locator(".gate-card[data-gate='HN']").inner_text()
    buttons = page.locator("#alarms li[data-alarm] button")  # acknowledged: only Clear is left, now in Vietnamese
    assert buttons.count() == 1 and buttons.first.inner_text() == "Xóa"
    _save(page, tmp_path, "central-vi.png")
    page.click("#logout")
    page.wait_for_url("**/login")
    assert errors == [] and outside == []


def test_monitor_may_look_but_not_acknowledge(browser, monitored_page, tmp_path):
    page, errors, outside = _page(browser, monitored_page.url)
    _log_in(page, MONITOR)
    page.wait_for_selector("#alarms li[data-alarm]")
    assert page.locator("#alarms button").count() == 0
    assert page.locator("#alarm-readonly").is_visible()
    # by keyboard: the gate's link opens it and moves the focus to its panel; the chart names itself
    page.focus(".gate-card[data-gate='HN'] .gate-link")
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail svg.chart[role='img']")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'detail-panel'")
    assert page.locator("#detail svg.chart title").first.text_content() == "Decisions per hour (last 24 h)"
    _save(page, tmp_path, "central-monitor.png")
    assert errors == [] and outside == []


def test_docs_load_from_central_itself_with_no_request_leaving_loopback(browser, monitored_page, tmp_path):
    page, errors, outside = _page(browser, monitored_page.url)
    _log_in(page, MONITOR)
    page.goto(monitored_page.url + "/docs")
    page.wait_for_selector("#swagger-ui .opblock", timeout=15_000)
    assert page.locator("#swagger-ui").inner_text().count("/api/v1/monitor/") >= 3
    _save(page, tmp_path, "central-docs.png")
    assert outside == [] and errors == []


def test_a_locked_out_browser_is_told_how_long_to_wait_in_its_language(browser, monitored_page):
    page, errors, outside = _page(browser, monitored_page.url)
    for _ in range(ThrottleSettings().address.free):
        page.fill("#token", "not-a-token-anyone-holds-000000000000")
        page.click("#login-submit")  # clears the last error at once, then shows this answer's
        page.wait_for_selector("#login-error:has-text('not valid')")
    page.fill("#token", MONITOR)  # the right token, from the locked-out browser
    page.click("#login-submit")
    page.wait_for_selector("#login-error:has-text('try again in 30 s')")
    page.click("button.lang[data-lang='vi']")
    page.wait_for_selector("#login-error:has-text('thử lại sau 30 giây')")
    assert page.url.endswith("/login") and errors == [] and outside == []
