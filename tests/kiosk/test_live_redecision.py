"""Officers see a re-decision live: a late X-ray verdict for a held truck reaches the board's event stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict, SealStatus
from edge.config import site_from_mapping
from tests.kiosk.conftest import GateThread, login, running_gate


@pytest.fixture
def quick_gate(site, broker, tmp_path: Path) -> Iterator[GateThread]:
    """The shipped site, its lanes deciding 1 s after the truck arrives (an X-ray analysis takes longer)."""
    data = site.site.model_dump()
    for lane in data["lanes"]:
        lane["policy"]["collect_timeout_s"] = 1.0
    yield from running_gate(site_from_mapping(data, origin=str(site.path)), tmp_path, broker)


def _wait(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Stream:
    """The board's event stream (`/api/events`) read in a thread: (event, data) pairs as they come."""

    def __init__(self, client: httpx.Client):
        self.events: list[tuple[str, dict]] = []
        self._client = client
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event = ""
        try:
            with self._client.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=60)) as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        self.events.append((event, json.loads(line.removeprefix("data: "))))
        except httpx.HTTPError:
            return  # the test is over and closed the client

    def lane_decisions(self, lane: str) -> list[dict]:
        """The decisions the `lane` events showed for the lane's truck, in order (repeats dropped)."""
        shown: list[dict] = []
        for event, data in list(self.events):
            decision = ((data.get("transaction") or {}).get("decision") if event == "lane" and
                        data.get("lane") == lane else None)
            if decision and (not shown or shown[-1] != decision):
                shown.append(decision)
        return shown


def test_board_stream_shows_the_release_after_a_late_x_ray_clear_without_reload(quick_gate: GateThread):
    rig = quick_gate.gate.rigs["IMP-1"]
    with httpx.Client(base_url=quick_gate.base, timeout=10) as officer:
        login(officer, "officer1")
        stream = Stream(officer)
        _wait(lambda: any(event == "lane" for event, _ in stream.events), what="the board's first lane view")
        rig.camera.publish_plate("29C-123.45", 0.95)
        quick_gate.run(rig.scale.drive_on, 28100)
        quick_gate.run(rig.plc.set_loop, "arrival", True)
        rig.eseal.present_seal("SEAL-888", SealStatus.INTACT, "CSQU3054383")
        scan_id = rig.scanner.new_scan_id()
        rig.scanner.publish(ScanEvent.STARTED, scan_id, ["CSQU3054383"], ScanVerdict.PENDING)
        _wait(lambda: any("SCANNER_PENDING" in d["reasons"] for d in stream.lane_decisions("IMP-1")),
              what="the board showing the truck held for the X-ray analysis")

        rig.scanner.publish(ScanEvent.COMPLETED, scan_id, ["CSQU3054383"], ScanVerdict.CLEAR)
        _wait(lambda: stream.lane_decisions("IMP-1")[-1]["outcome"] == "release",
              what="the board showing the re-decided release")
        shown = stream.lane_decisions("IMP-1")
        assert [d["outcome"] for d in shown][-2:] == ["hold", "release"]
        lane_view = next(data for event, data in reversed(stream.events)
                         if event == "lane" and data["lane"] == "IMP-1" and data["transaction"])
        # (a weighbridge slower than the collect timeout is one more late reading that re-decides)
        redecisions = lane_view["transaction"]["redecisions"]
        assert any(f"{scan_id} clear" in r["changed"] and "SCANNER_PENDING" in r["previous"]["reasons"]
                   for r in redecisions), redecisions
        assert redecisions[-1]["outcome"] == "release"
        assert ("history", {"lane": "IMP-1", "kind": "decision"}) in stream.events
        history = officer.get("/api/lanes/IMP-1/history").json()
        line = next(item for item in history if item["kind"] == "decision")  # newest first
        assert line["outcome"] == "release" and line["redecision"] is True
        _wait(lambda: quick_gate.run(lambda: rig.plc.boom_open), what="the boom opening for the re-decided release")


@pytest.mark.browser
def test_officer_page_turns_from_hold_to_release_after_the_late_x_ray_clear(quick_gate: GateThread, tmp_path: Path):
    from tests.helpers import chromium_browser
    from tests.kiosk.conftest import PASSWORDS

    rig = quick_gate.gate.rigs["IMP-1"]
    with chromium_browser() as browser:
        page = browser.new_context(viewport={"width": 1600, "height": 1200}, locale="en-GB").new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(quick_gate.base + "/")
        page.wait_for_selector("#login-form")
        page.fill("#username", "officer1")
        page.fill("#password", PASSWORDS["officer1"])
        page.click("#login-submit")
        page.wait_for_selector("#lane-IMP-1[data-tone=idle]")
        page.evaluate("window.__noReload = true")
        rig.camera.publish_plate("29C-123.45", 0.95)
        quick_gate.run(rig.scale.drive_on, 28100)
        quick_gate.run(rig.plc.set_loop, "arrival", True)
        rig.eseal.present_seal("SEAL-888", SealStatus.INTACT, "CSQU3054383")
        scan_id = rig.scanner.new_scan_id()
        rig.scanner.publish(ScanEvent.STARTED, scan_id, ["CSQU3054383"], ScanVerdict.PENDING)
        page.locator("#lane-IMP-1[data-tone=hold]", has_text="still being analysed").wait_for()

        rig.scanner.publish(ScanEvent.COMPLETED, scan_id, ["CSQU3054383"], ScanVerdict.CLEAR)
        card = page.locator("#lane-IMP-1[data-tone=release]")
        card.wait_for()
        card.locator(".redecided", has_text="Decided again after a late result (before: hold)").wait_for()
        page.locator("#lane-IMP-1 .hist-decision", has_text="Decided again: release").wait_for()
        assert page.evaluate("window.__noReload") is True  # no reload: the event stream carried it
        assert errors == []
        page.screenshot(path=str(tmp_path / "lane-board-redecided.png"))
