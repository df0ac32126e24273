"""A consolidated load on the real page (headless Chromium): the officer sees both declarations, which
containers and seals each declares, and the declaration each reason belongs to."""

from __future__ import annotations

from dataclasses import replace

import pytest

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict, SealStatus
from edge.declarations import RiskChannel
from tests.helpers import chromium_browser
from tests.kiosk.conftest import DECLARATION, GateThread
from tests.kiosk.test_browser import _log_in, _page

pytestmark = pytest.mark.browser

FIRST = replace(DECLARATION, number="105000000901", plates=("29C55555",), containers=("CSQU3054383",),
                seals=("SEAL901",), gross_weight_kg=14000)
SECOND = replace(DECLARATION, number="105000000902", plates=("29C55555",), containers=("MWCU6059784",),
                 seals=("SEAL902",), gross_weight_kg=14000, channel=RiskChannel.YELLOW)


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as launched:
        yield launched


def test_officer_sees_both_declarations_of_a_consolidated_load_and_whose_reason_it_is(browser, gate: GateThread):
    gate.run(gate.gate.node.cache.upsert_many, [FIRST, SECOND])
    page, errors = _page(browser, gate)
    _log_in(page, "officer1")
    page.wait_for_selector("#lane-IMP-1[data-tone=idle]")

    rig = gate.gate.rigs["IMP-1"]
    rig.camera.publish_plate("29C-555.55", 0.95)
    gate.run(rig.scale.drive_on, 28100)
    gate.run(rig.plc.set_loop, "arrival", True)
    rig.eseal.present_seal("SEAL901", SealStatus.INTACT, "CSQU3054383")
    rig.eseal.present_seal("SEAL902", SealStatus.INTACT, "MWCU6059784")
    rig.scanner.publish(ScanEvent.COMPLETED, rig.scanner.new_scan_id(), ["CSQU3054383", "MWCU6059784"],
                        ScanVerdict.CLEAR)

    card = page.locator("#lane-IMP-1[data-tone=hold]")
    card.wait_for()
    text = card.inner_text()
    assert FIRST.number in text and SECOND.number in text
    assert "Yellow channel" in text
    reason = card.locator(".reasons li").first
    assert reason.locator(".reason-declaration").inner_text() == SECOND.number
    assert "not declared" not in text  # each container and seal is on one of the two declarations
    assert not errors
