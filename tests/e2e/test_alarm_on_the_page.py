"""The officer's page in headless Chromium: a latched tamper alarm and a scanner conflict as a person sees them.

A stray Modbus master opens the boom over a held truck: the lane card shows the alarm until a
supervisor acknowledges it with a reason; a forged `clear` after the real `suspect` leaves the
card showing SUSPECT with a conflict, never clear.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict
from edge.claims import ClaimPassage
from tests.helpers import chromium_browser, write_open_coil
from tests.kiosk.conftest import DECLARATION, PASSWORDS, GateThread, running_gate


@pytest.fixture(scope="module")
def chromium():
    with chromium_browser() as launched:
        yield launched


@pytest.fixture
def gate(site, broker, tmp_path: Path) -> Iterator[GateThread]:
    yield from running_gate(site, tmp_path, broker)


def _logged_in_page(chromium, gate: GateThread, user: str):
    page = chromium.new_context(viewport={"width": 1600, "height": 1200}, locale="en-GB").new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gate.base + "/")
    page.wait_for_selector("#login-form")
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_selector("#st-live[data-state=up]")
    return page, errors


def test_supervisor_sees_the_tamper_alarm_and_acknowledges_it_on_the_page(chromium, gate: GateThread,
                                                                          tmp_path: Path):
    page, errors = _logged_in_page(chromium, gate, "super1")
    gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")
    card = page.locator("#lane-IMP-1[data-tone=hold]")
    card.wait_for()
    write_open_coil(gate.gate.rigs["IMP-1"].plc)
    alarm = page.locator("#lane-IMP-1 .lane-alarm", has_text="The boom opened without a recorded release")
    alarm.wait_for()
    assert "A supervisor must acknowledge it" in alarm.inner_text()
    page.locator("#lane-IMP-1 .boom.closed").wait_for()  # closed again by the node
    assert "HOLD" in card.inner_text()
    page.screenshot(path=str(tmp_path / "lane-board-tamper-alarm.png"))

    card.locator("button[data-action=acknowledge_alarm]").click()
    page.wait_for_selector("#action-dialog[open]")
    page.fill("#action-reason", "PLC port found open, locked; police informed")
    page.click("#action-confirm")
    page.locator("#lane-IMP-1 .lane-alarm").wait_for(state="detached")
    page.locator("#lane-IMP-1 .hist-officer_action", has_text="super1: Acknowledge alarm").wait_for()
    entry = gate.gate.node.journal.entries(lane="IMP-1", kinds=["officer_action"])[-1]
    assert entry.payload["officer"] == "super1" and entry.payload["action"] == "acknowledge_alarm"
    assert card.locator("button[data-action=acknowledge_alarm]").count() == 0
    assert errors == []


def test_forged_clear_after_the_real_suspect_shows_suspect_and_a_conflict_on_the_page(chromium, gate: GateThread):
    page, errors = _logged_in_page(chromium, gate, "officer1")
    gate.present("IMP-1", "29C-123.45", "SEAL-888", verdict=ScanVerdict.SUSPECT)
    card = page.locator("#lane-IMP-1[data-tone=hold]")
    card.wait_for()
    scan_id = gate.run(lambda: gate.gate.node.lanes["IMP-1"].machine.tx.scan.scan_id)
    gate.gate.rigs["IMP-1"].scanner.publish(ScanEvent.COMPLETED, scan_id, ["CSQU3054383"], ScanVerdict.CLEAR)
    page.locator("#lane-IMP-1 .tag.conflict", has_text="CONFLICT").wait_for()
    scan_row = page.locator("#lane-IMP-1 .row", has_text="Scanner").inner_text()
    assert "SUSPECT" in scan_row and "clear" not in scan_row.lower()
    assert card.locator("button[data-action=acknowledge_alarm]").count() == 0  # an officer, and no tamper
    assert errors == []


def test_truck_on_a_declaration_claimed_before_a_restart_shows_who_holds_it(chromium, gate: GateThread,
                                                                             tmp_path: Path):
    page, errors = _logged_in_page(chromium, gate, "officer1")
    cache = gate.gate.node.cache
    # A truck on this declaration was released at EXP-1 when the node died: where it went is unknown.
    assert gate.run(lambda: cache.claim([DECLARATION.number], gate="HUUNGHI", lane="EXP-1", transaction="tx-before",
                                        at=0.0, released_by="auto")) == []
    gate.run(lambda: cache.set_claim_passage("tx-before", ClaimPassage.UNKNOWN))
    gate.present("IMP-1", "29C-123.45", "SEAL-888")
    page.locator("#lane-IMP-1[data-tone=hold]").wait_for()
    claim = page.locator("#lane-IMP-1 .claim-unknown")
    claim.wait_for()
    assert claim.inner_text() == (f"{DECLARATION.number}: claimed by transaction tx-before at lane EXP-1 "
                                  "(passage unknown)")
    reasons = page.locator("#lane-IMP-1 .reasons").inner_text()
    assert "already used at this gate" in reasons
    page.screenshot(path=str(tmp_path / "lane-board-claimed-declaration.png"))
    assert not gate.gate.rigs["IMP-1"].plc.boom_open and errors == []
