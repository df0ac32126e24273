"""Central's monitoring page with the real demo stack: a simulated gate's node (its devices on the private broker),
central on HTTPS with its MQTT side (JSON birth/death, telemetry, Sparkplug), the node's uploader, and the page in
headless Chromium. Nothing is seeded at central: all it shows came from the node.

The operator opens the page before the truck comes, sees the gate and its lanes, the held truck appear live, the
tamper alarm the node raised, acknowledges it, and finds the truck by its plate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.central_sim import start_central, with_central
from sync.tokens import new_token
from tests.helpers import chromium_browser, write_open_coil
from tests.kiosk.conftest import running_gate

pytestmark = pytest.mark.browser


@pytest.fixture
def central_and_gate(site, broker, tmp_path: Path) -> Iterator[tuple]:
    """Central as the demo starts it, and the demo site's node syncing with it (its kiosk users as the kiosk tests')."""
    central, section = start_central(tmp_path / "central", broker, site.site.gate, node_data_dir=tmp_path / "node")
    gates = running_gate(with_central(site, section), tmp_path, broker)
    try:
        yield central, next(gates)
    finally:
        gates.close()  # stops the gate (running_gate's finally)
        central.stop()


def test_operator_watches_the_demo_gate_live_acknowledges_its_alarm_and_finds_the_truck(central_and_gate, tmp_path):
    central, gate = central_and_gate
    operator = new_token()
    central.store.set_api_token("Pham Thu Ha", "operator", operator)
    with chromium_browser() as chromium:
        context = chromium.new_context(ignore_https_errors=True,  # the demo CA is not the browser's
                                       viewport={"width": 1600, "height": 1100}, locale="en-GB")
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(central.url + "/")
        page.fill("#token", operator)
        page.click("#login-submit")
        card = page.locator(".gate-card[data-gate='HUUNGHI']")
        card.locator(".badge.ok", has_text="online").wait_for()
        card.locator(".lane-chip", has_text="IMP-1").wait_for()
        card.locator(".lane-chip", has_text="EXP-1").wait_for()

        gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")  # the seal is not the declaration's: held
        held = card.locator(".held-truck", has_text="29C12345")
        held.wait_for()
        assert "SEAL_MISMATCH" in held.inner_text() and "waiting" in held.inner_text()

        write_open_coil(gate.gate.rigs["IMP-1"].plc)  # a stray Modbus master opens the boom: the node alarms
        alarm = page.locator("#alarms li[data-alarm]", has_text="BOOM_OPEN_WITHOUT_RELEASE")
        alarm.wait_for()
        page.click(".gate-card[data-gate='HUUNGHI'] .gate-link")
        page.wait_for_selector("#detail svg.chart")
        page.screenshot(path=str(tmp_path / "central-demo-gate.png"), full_page=True)
        alarm.locator("button[data-action='ack']").click()
        page.locator("#alarms .alarm-audit", has_text="acknowledged by Pham Thu Ha").wait_for()

        page.fill("#search-q", "29c 123.45")
        page.press("#search-q", "Enter")
        found = page.locator("#search-results .found-truck", has_text="29C12345")
        found.wait_for()
        assert "HUUNGHI" in found.inner_text()
        page.screenshot(path=str(tmp_path / "central-demo-acked.png"), full_page=True)
        assert errors == []
