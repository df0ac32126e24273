"""The board on the wall, in headless Chromium: four lanes at 1280x720, 1366x768 and 1920x1080.

Three trucks are held (IMP-2, EXP-1, EXP-2) and IMP-1's e-seal reader has lost its cable. Every
held truck — its verdict, plate, waiting time and buttons — is on the first screen without
scrolling, held lanes first, in both languages; in Vietnamese no English word is left on the page;
a wall-board (display) log-in shows the same board with no buttons and never acts. Screenshots are
saved in the test's folder (and in $SMARTGATE_TEST_ARTIFACTS when set).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.kiosk import i18n
from tests.conftest import wait_until
from tests.kiosk.conftest import GateThread
from tests.kiosk.test_browser import _log_in, _save, browser  # noqa: F401  (the browser fixture)
from tests.kiosk.wallboard import WALL_PASSWORD, WRONG_SEAL, add_wall_board, four_lane_site

pytestmark = pytest.mark.browser

HELD = ("IMP-2", "EXP-1", "EXP-2")
SCREENS = {"1280x720": (1280, 720), "1366x768": (1366, 768), "1920x1080": (1920, 1080)}
# Words that are the same in both languages on this page: codes, units, names of things.
ALLOWED = {"IMP", "EXP", "HUUNGHI", "CSQU", "kg", "ANPR", "OK", "SL", "Nguyen", "Van", "Wall", "board"}


@pytest.fixture(scope="module")
def four_lanes(tmp_path_factory, broker) -> Iterator[GateThread]:
    """The four-lane gate with three trucks held and one lane's e-seal reader unplugged."""
    from edge.cli import DEFAULT_SITE
    from edge.config import load_site

    workdir = tmp_path_factory.mktemp("four-lanes")
    gate = GateThread(four_lane_site(load_site(DEFAULT_SITE)), workdir, broker).start()
    add_wall_board(workdir / "node")
    try:
        for lane in HELD:  # a seal that is not on the declaration (EXP: the wrong direction as well)
            gate.present(lane, "29C-123.45", WRONG_SEAL)
        gate.gate.rigs["IMP-1"].eseal.fault_disconnect()

        def settled() -> bool:
            views = {lane: c.machine.snapshot() for lane, c in gate.gate.node.lanes.items()}
            return all((views[lane]["transaction"] or {}).get("decision") for lane in HELD) \
                and views["IMP-1"]["state"] == "FAULT"

        gate.call(wait_until(settled, 30, "three held trucks and a faulty lane"), timeout=40)
        yield gate
    finally:
        gate.stop()


def expect(locator):
    """Playwright's expect (imported late: the module is skipped where Playwright is missing)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _open(browser, gate: GateThread, size: tuple[int, int], lang: str, user: str, password: str | None = None):  # noqa: F811
    context = browser.new_context(viewport={"width": size[0], "height": size[1]},
                                  locale="vi-VN" if lang == "vi" else "en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gate.base + "/login")
    _log_in(page, user, password)
    page.wait_for_selector("#st-live[data-state=up]")
    for lane in HELD:
        page.wait_for_selector(f"#lane-{lane}.needs-officer .waiting")
    page.wait_for_selector("#lane-IMP-1[data-state=FAULT]")
    page.wait_for_selector("#banner-fault-IMP-1-eseal")
    expect(page.locator(".lane-card.flash")).to_have_count(0, timeout=10_000)  # the cards have blinked
    return page, errors


def _visible_without_scrolling(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 \
        and box["y"] + box["height"] <= size["height"] and box["x"] + box["width"] <= size["width"]


@pytest.mark.parametrize("lang", ["vi", "en"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_every_held_truck_is_on_the_first_screen(browser, four_lanes: GateThread, tmp_path: Path,  # noqa: F811
                                                 screen: str, lang: str):
    page, errors = _open(browser, four_lanes, SCREENS[screen], lang, "officer1")
    assert page.evaluate("window.scrollY") == 0
    for lane in HELD:
        card = f"#lane-{lane}"
        for part in (".lane-head", ".outcome-banner", ".waiting", ".banner-plate", "button[data-action=release]"):
            assert _visible_without_scrolling(page, f"{card} {part}"), f"{lane} {part} below the fold at {screen}"
    # Held lanes first: the lane without a truck comes after them.
    order = page.evaluate("[...document.querySelectorAll('.lane-card')].map((c) => [c.dataset.lane,"
                          " c.getBoundingClientRect().top, c.getBoundingClientRect().left])")
    order = [lane for lane, _, _ in sorted(order, key=lambda item: (item[1], item[2]))]
    assert order[-1] == "IMP-1" and set(order[:3]) == set(HELD)
    # The tab says so: a count in the title, an alarm icon.
    assert page.title().startswith("(3) ")
    assert "circle" in page.get_attribute("#favicon", "href").replace("%20", " ")
    _save(page, tmp_path, f"wallboard-{screen}-{lang}.png")
    assert errors == []


def test_vietnamese_page_has_no_english_left(browser, four_lanes: GateThread, tmp_path: Path):  # noqa: F811
    # A gate-wide alarm (the outbox overflowed) and a finished truck are on the page too.
    four_lanes.run(four_lanes.gate.node.journal.append, "alarm",
                   {"code": "OUTBOX_FULL", "text": "outbox full (100 rows, 4096 bytes): events from seq 7 dropped"})
    page, errors = _open(browser, four_lanes, SCREENS["1366x768"], "vi", "officer1")
    page.wait_for_selector("[id^=banner-alarm-]")
    page.locator("#lane-IMP-2 .history .hist").first.wait_for()
    left = _english_on(page)
    assert not left, f"English words in Vietnamese mode: {left}"
    # Gate and lane names come from the site's name_vi; a device fault is in plain words, its raw error
    # behind "chi tiết".
    assert page.inner_text("#gate-name") == "Cửa khẩu quốc tế Hữu Nghị"
    assert page.inner_text("#lane-EXP-2 .lane-name") == "Làn xuất 2 (Việt Nam → Trung Quốc)"
    fault = page.locator("#banner-fault-IMP-1-eseal")
    assert "Đầu đọc niêm phong điện tử" in fault.inner_text() or "niêm phong" in fault.inner_text()
    assert "ngừng gửi dữ liệu" in fault.inner_text()
    assert "returned no data" not in fault.inner_text()
    fault.locator("summary").click()
    assert "no data" in fault.locator("code").inner_text()
    _save(page, tmp_path, "wallboard-vi-details.png")
    # The check finds English where there is some: the same page in English.
    page.click("button.lang[data-lang=en]")
    page.locator("#lane-IMP-2 .outcome-title", has_text="HOLD").wait_for()
    assert {"Release", "Refuse", "Plate", "Seals"} <= set(_english_on(page))
    assert errors == []


def _english_on(page) -> list[str]:
    """The English words a person reads on the page (text, title, placeholders), allow-list left out."""
    text = page.evaluate("""() => [document.title, document.body.innerText,
        ...[...document.querySelectorAll('[placeholder]')].map((e) => e.placeholder),
        ...[...document.querySelectorAll('[title]')].filter((e) => e.offsetParent).map((e) => e.title)].join('\\n')""")
    english = _english_words()
    return sorted({w for w in re.findall(r"[A-Za-z]{2,}", text) if w.lower() in english and w not in ALLOWED})


def _english_words() -> set[str]:
    """Words of the English catalogue that the Vietnamese one does not use itself."""
    def words(catalogue: dict[str, str]) -> set[str]:
        texts = (re.sub(r"\{\w+\}", "", text) for text in catalogue.values())
        return {w.lower() for text in texts for w in re.findall(r"[A-Za-z]{2,}", text)}

    return words(i18n.catalogue("en")) - words(i18n.catalogue("vi"))


def test_wall_board_shows_every_lane_and_cannot_act(browser, four_lanes: GateThread, tmp_path: Path):  # noqa: F811
    page, errors = _open(browser, four_lanes, SCREENS["1920x1080"], "vi", "wall-1", WALL_PASSWORD)
    assert page.locator(".lane-card").count() == 4
    assert page.locator(".lane-card button.act").count() == 0  # no buttons at all
    assert page.locator("#lookup-panel").is_hidden()
    assert page.inner_text("#user-role") == i18n.catalogue("vi")["display.badge"]
    refused = page.evaluate("SGBoard.submitAction('IMP-2', 'release', 'from the wall')")
    assert refused["status"] == 403 and refused["code"] == "officer_required"
    assert not four_lanes.gate.rigs["IMP-2"].plc.boom_open
    session = page.evaluate("fetch('/api/session').then((r) => r.json())")
    assert session["display"] is True and session["idle_timeout_s"] is None and session["may_act"] is False
    _save(page, tmp_path, "wallboard-display-1920x1080-vi.png")
    assert errors == []


def test_sound_is_off_until_switched_on_and_stays_as_chosen(browser, four_lanes: GateThread):  # noqa: F811
    page, errors = _open(browser, four_lanes, SCREENS["1366x768"], "en", "officer1")
    button = page.locator("#sound-toggle")
    assert button.get_attribute("aria-pressed") == "false" and button.inner_text() == "Sound off"
    button.click()
    assert button.get_attribute("aria-pressed") == "true" and button.inner_text() == "Sound on"
    page.reload()
    page.wait_for_selector("#lane-IMP-2.needs-officer")
    assert page.get_attribute("#sound-toggle", "aria-pressed") == "true"
    assert json.loads(page.evaluate("JSON.stringify(localStorage.getItem('sg_sound'))")) == "1"
    assert errors == []

