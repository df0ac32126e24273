"""Eight lanes with six trucks held on a 1280x720 screen, in headless Chromium (screenshot saved).

A module of its own: the four-lane gate of test_wallboard_browser.py must be gone first (the two
nodes would share the broker and the node's MQTT client id).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kiosk.conftest import GateThread
from tests.kiosk.test_browser import _log_in, _save, browser  # noqa: F401  (the browser fixture)
from tests.kiosk.test_wallboard_browser import _visible_without_scrolling, expect
from tests.kiosk.wallboard import WRONG_SEAL, many_lane_site

pytestmark = pytest.mark.browser


def test_eight_lanes_with_six_held_fit_a_1280x720_screen(browser, broker, tmp_path: Path):  # noqa: F811
    from edge.cli import DEFAULT_SITE
    from edge.config import load_site

    held = ("IMP-2", "EXP-2", "IMP-3", "EXP-3", "IMP-4", "EXP-4")
    gate = GateThread(many_lane_site(load_site(DEFAULT_SITE), 4), tmp_path, broker).start()
    try:
        for lane in held:
            gate.present(lane, "29C-123.45", WRONG_SEAL)
        context = browser.new_context(viewport={"width": 1280, "height": 720}, locale="vi-VN")
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(gate.base + "/login")
        _log_in(page, "officer1")
        for lane in held:
            page.wait_for_selector(f"#lane-{lane}.needs-officer .waiting")
        expect(page.locator(".lane-card.flash")).to_have_count(0, timeout=10_000)
        assert page.locator(".lane-card").count() == 8
        for lane in held:
            for part in (".lane-head", ".outcome-banner", ".waiting", "button[data-action=release]"):
                assert _visible_without_scrolling(page, f"#lane-{lane} {part}"), f"{lane} {part} below the fold"
        _save(page, tmp_path, "wallboard-8-lanes-1280x720-vi.png")
    finally:
        gate.stop()
