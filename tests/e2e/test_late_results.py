"""The late-results scenario: X-ray verdicts that come after the collect timeout re-decide the waiting truck."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.config import CONFIG_ROOT
from edge.records import JournalKind
from simulators.gate import SimulatedGate
from simulators.scenario import load_scenario, play_scenario

SCENARIO = CONFIG_ROOT / "scenarios" / "late-results.yaml"


def test_late_results_scenario_releases_on_a_late_clear_and_keeps_a_late_suspect_held(tmp_path: Path):
    scenario = load_scenario(SCENARIO)
    assert all(t.scan.analysis_s > scenario.spec.timing.collect_timeout_s for t in scenario.spec.trucks)

    async def play() -> tuple[dict, list]:
        gate = SimulatedGate(scenario.site, tmp_path, kiosk_port=None, boom_travel_s=scenario.spec.timing.boom_travel_s)
        await gate.start()
        try:
            report = await play_scenario(scenario, tmp_path, gate=gate)
            return report, gate.node.journal.entries(lane="IMP-1")
        finally:
            await gate.stop()

    report, rows = asyncio.run(play())
    assert report["summary"]["expectations_failed"] == 0, report["trucks"]
    assert report["summary"]["journal_ok"]
    cleared, suspect = report["trucks"]
    assert cleared["outcome"] == "release" and cleared["barrier_opened"] and cleared["result"] == "passed"
    assert cleared["released_by"] == "auto"
    assert suspect["outcome"] == "hold" and "SCANNER_SUSPECT" in suspect["reasons"] and not suspect["barrier_opened"]

    decisions = [e for e in rows if e.kind == JournalKind.DECISION]
    released = next(e for e in decisions if e.payload["outcome"] == "release")
    first = next(e for e in decisions if e.payload["transaction"] == released.payload["transaction"])
    assert "SCANNER_PENDING" in first.payload["reasons"] and not first.payload.get("redecision")  # held first...
    assert released.payload["redecision"] is True and "clear" in released.payload["changed"]  # ...then re-decided
    opening = next(e for e in rows if e.kind == JournalKind.BARRIER_COMMAND and e.payload["command"] == "open")
    assert opening.seq > released.seq and opening.payload["transaction"] == released.payload["transaction"]
    suspect_rows = [e.payload for e in decisions if e.payload["transaction"] != released.payload["transaction"]]
    assert suspect_rows[-1]["redecision"] is True and "SCANNER_SUSPECT" in suspect_rows[-1]["reasons"]
