"""Scenarios for testers: trucks presented to a simulated gate through the real wire protocols.

A scenario file (YAML) names a site, the declarations the cache holds, and the trucks. Each truck
arrives at its lane: the camera publishes its plate over MQTT, the truck rolls onto the arrival
loop, the e-seal reader reports its seals over serial; the truck drives through when the boom
opens, or backs away after a hold or a refusal. The result says, per truck, what the gate decided.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.config import CONFIG_ROOT, ConfigError, ConfigProblem, load_site, site_from_mapping
from edge.declarations import DeclarationError, declaration_from_mapping
from edge.lane import LaneError
from edge.records import JournalKind, Notice, replay
from simulators.faults import FaultSpec, inject_fault
from simulators.gate import LaneRig, SimulatedGate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SealSpec(_Strict):
    id: str
    status: Literal["intact", "opened", "tampered"] = "intact"
    container: str | None = None
    battery_pct: int | None = Field(default=87, ge=0, le=100)


class Expectation(_Strict):
    outcome: Literal["release", "hold", "refuse"] | None = None
    reasons: list[str] | None = None
    barrier_opened: bool | None = None


class ScanSpec(_Strict):
    """What the lane's container scanner reports for the truck."""

    verdict: Literal["clear", "suspect", "pending"] = "clear"
    analysis_s: float = Field(default=0.2, ge=0, le=60)  # scan_started → scan_completed
    image_ref: str | None = None


class OfficerStep(_Strict):
    """An officer acts on the truck once it is held (scenario-driven officer)."""

    action: Literal["release", "refuse"]
    officer_id: str = "officer-scenario"
    reason: str = "scenario"
    after_s: float = Field(default=0.2, ge=0)


class TruckSpec(_Strict):
    lane: str
    plate: str
    plate_confidence: float = Field(default=0.95, ge=0, le=1)
    containers: list[str] = []
    seals: list[SealSpec] = []
    weight_kg: float | None = Field(default=None, ge=0)
    scan: ScanSpec = ScanSpec()
    arrive_after_s: float = Field(default=0.0, ge=0)
    officer: OfficerStep | None = None
    expect: Expectation | None = None
    name: str | None = None


class Timing(_Strict):
    boom_travel_s: float = Field(default=0.3, ge=0, le=30)
    drive_s: float = Field(default=0.3, ge=0, le=60)
    hold_wait_s: float = Field(default=0.3, ge=0, le=600)
    plate_lead_s: float = Field(default=0.1, ge=0, le=10)
    truck_timeout_s: float = Field(default=60, gt=0)
    collect_timeout_s: float | None = Field(default=None, gt=0, le=600)  # overrides every lane's policy


class ScenarioFile(_Strict):
    site: str
    name: str = ""
    description: str = ""
    timing: Timing = Timing()
    declarations: list[dict[str, Any]] | str = []
    trucks: list[TruckSpec] = Field(min_length=1)
    faults: list[FaultSpec] = []


_RELATIVE = re.compile(r"^now\s*(?:([+-])\s*(\d+(?:\.\d+)?)\s*([smhd]))?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def resolve_time(value: Any, now: datetime) -> Any:
    """`now`, `now+2d`, `now-1h` become ISO timestamps; anything else is left as it is."""
    if isinstance(value, str):
        match = _RELATIVE.match(value.strip())
        if match:
            sign, amount, unit = match.groups()
            delta = timedelta(**{_UNITS[unit]: float(amount)}) if amount else timedelta()
            return (now + delta if sign != "-" else now - delta).isoformat()
    return value


class Scenario:
    """A validated scenario with its site and declarations resolved."""

    def __init__(self, path: Path, spec: ScenarioFile, declarations: list):
        self.path, self.spec, self.declarations = path, spec, declarations
        self.site = load_site(self._resolve(spec.site, CONFIG_ROOT / "sites", ".yaml"))
        if spec.timing.collect_timeout_s is not None:
            data = self.site.site.model_dump()
            for lane in data["lanes"]:
                lane["policy"]["collect_timeout_s"] = spec.timing.collect_timeout_s
            self.site = site_from_mapping(data, origin=str(self.site.path))
        lanes = {lane.id for lane in self.site.site.lanes}
        devices = {d.id for lane in self.site.site.lanes for d in lane.devices} | {"broker"}
        problems = [
            ConfigProblem(str(path), f"trucks[{i}].lane", f"no lane '{truck.lane}' in the site",
                          f"use one of {', '.join(sorted(lanes))}")
            for i, truck in enumerate(spec.trucks) if truck.lane not in lanes
        ] + [
            ConfigProblem(str(path), f"faults[{i}].device", f"no device '{fault.device}' in the site",
                          f"use one of {', '.join(sorted(devices))}")
            for i, fault in enumerate(spec.faults) if fault.device not in devices
        ]
        if problems:
            raise ConfigError(problems)

    def _resolve(self, name: str, default_dir: Path, suffix: str) -> Path:
        candidate = (self.path.parent / name).resolve()
        if candidate.exists():
            return candidate
        return default_dir / (name if name.endswith(suffix) else name + suffix)


def load_scenario(path: str | Path, now: datetime | None = None) -> Scenario:
    """Read and validate a scenario file; ConfigError names file, key and fix."""
    path = Path(path)
    now = now or datetime.now(UTC)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([ConfigProblem(str(path), "", f"cannot read scenario: {exc}",
                                         "check the path and the YAML syntax")]) from exc
    try:
        spec = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([
            ConfigProblem(str(path), ".".join(str(p) for p in e["loc"]), e["msg"],
                          "correct or remove this key (see README: Scenarios)")
            for e in exc.errors()
        ]) from exc
    rows = spec.declarations
    origin = str(path)
    if isinstance(rows, str):
        decl_path = (path.parent / rows).resolve()
        origin = str(decl_path)
        try:
            loaded = yaml.safe_load(decl_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([ConfigProblem(str(path), "declarations", f"cannot read {decl_path}: {exc}",
                                             "give a YAML/JSON file of declarations or an inline list")]) from exc
        rows = loaded.get("declarations", []) if isinstance(loaded, dict) else loaded
    declarations, problems = [], []
    for index, row in enumerate(rows or []):
        try:
            resolved = {k: resolve_time(v, now) for k, v in row.items()}
            declarations.append(declaration_from_mapping(resolved))
        except (DeclarationError, AttributeError) as exc:
            problems.append(ConfigProblem(origin, f"declarations[{index}]", str(exc),
                                          "correct the declaration (see README: Declarations)"))
    if problems:
        raise ConfigError(problems)
    return Scenario(path, spec, declarations)


# ---------------------------------------------------------------- running


class _LaneWatcher:
    """Collects the node's notifications for one lane so a truck can wait on them."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()

    def __call__(self, lane_id: str, kind: str, payload: dict) -> None:
        if kind in (Notice.DECISION, Notice.TX_CLOSED, Notice.OFFICER_ACTION):
            self.events.put_nowait((kind, payload))


async def _wait_until(predicate, timeout_s: float, poll_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(poll_s)
    return predicate()


async def _drive_truck(gate: SimulatedGate, rig: LaneRig, truck: TruckSpec, timing: Timing,
                       watcher: _LaneWatcher, interactive: bool) -> dict[str, Any]:
    """Present one truck and follow it until its transaction closes."""
    plc = rig.plc
    result: dict[str, Any] = {"plate": truck.plate, "lane": truck.lane, "outcome": None, "reasons": [],
                              "barrier_opened": False, "decision_ms": None, "declaration": None,
                              "released_by": None, "officer": None}
    while not watcher.events.empty():
        watcher.events.get_nowait()
    if rig.video is not None:
        await asyncio.to_thread(rig.video.show_truck, truck.plate)  # the video camera sees the truck come in
    if rig.camera is not None:
        await asyncio.to_thread(rig.camera.publish_plate, truck.plate, truck.plate_confidence)
        await asyncio.sleep(timing.plate_lead_s)
    if rig.scale is not None and truck.weight_kg is not None:
        rig.scale.drive_on(truck.weight_kg)  # the weighbridge is under the truck's stopping place
    plc.set_loop("arrival", True)
    # The truck stops on the arrival loop; the reader reads its seals there, the scanner scans it.
    controller = gate.node.lanes[truck.lane]
    await _wait_until(lambda: controller.machine.tx is not None, 2.0)
    if rig.eseal is not None:
        for index, seal in enumerate(truck.seals):
            container = seal.container or (
                truck.containers[index] if index < len(truck.containers) else None)
            rig.eseal.present_seal(seal.id, seal.status, container, seal.battery_pct)
    scan_task = None
    if rig.scanner is not None:
        scan_task = asyncio.create_task(_scan_truck(rig.scanner, truck))

    deadline = time.monotonic() + timing.truck_timeout_s
    officer_done = False
    refused_by_officer = False  # an officer refused it: it backs away, as after a refusal by the rules
    summary = None
    while summary is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not interactive:
            result["error"] = "timed out waiting for the gate"
            plc.set_loop("arrival", False)
            break
        try:
            async with asyncio.timeout(0.05):  # not wait_for: it can swallow a cancel on 3.11
                kind, payload = await watcher.events.get()
        except TimeoutError:
            kind, payload = "", {}
        if kind == Notice.TX_CLOSED:
            summary = payload
            break
        if kind == Notice.OFFICER_ACTION and payload.get("action") == "refuse":
            refused_by_officer = True
            if not interactive:
                await asyncio.sleep(timing.hold_wait_s)
        if kind == Notice.DECISION:
            result["outcome"] = payload["outcome"]
            result["reasons"] = payload["reasons"]
            if payload["outcome"] != "release" and truck.officer and not officer_done:
                officer_done = True
                await asyncio.sleep(truck.officer.after_s)
                try:
                    await gate.node.lanes[truck.lane].officer_action(
                        truck.officer.action, truck.officer.officer_id, truck.officer.reason)
                except LaneError as exc:  # e.g. its declaration is already used: the lane keeps it held
                    result["officer_error"] = str(exc)
                    refused_by_officer = True  # nobody will open: the truck backs away
            elif payload["outcome"] != "release" and not interactive and not truck.officer:
                await asyncio.sleep(timing.hold_wait_s)
                if not plc.boom_open:
                    plc.set_loop("arrival", False)  # the truck backs away from the lane
                    if rig.scale is not None:
                        rig.scale.drive_off()
        if plc.boom_open and plc.model.loops["arrival"]:
            result["barrier_opened"] = True
            await asyncio.sleep(timing.drive_s / 3)
            plc.set_loop("safety", True)
            plc.set_loop("arrival", False)
            if rig.scale is not None:
                rig.scale.drive_off()
            await asyncio.sleep(timing.drive_s / 3)
            plc.set_loop("safety", False)
            plc.set_loop("exit", True)
            await asyncio.sleep(timing.drive_s / 3)
            plc.set_loop("exit", False)
        if (refused_by_officer or interactive and result["outcome"] == "refuse") and not plc.boom_open \
                and plc.model.loops["arrival"]:
            plc.set_loop("arrival", False)  # refused (by the rules or an officer): the truck backs away
            if rig.scale is not None:
                rig.scale.drive_off()
    if rig.scale is not None:
        rig.scale.drive_off()
        # Let the indicator show the empty bridge before the next truck drives on.
        sent = rig.scale.frames_sent
        await _wait_until(lambda: rig.scale.frames_sent >= sent + 3, 3.0)
    if scan_task is not None:
        scan_task.cancel()
    if rig.video is not None:
        await asyncio.to_thread(rig.video.clear)  # the truck has gone: the camera sees the empty lane
    if summary is not None:
        result.update(outcome=summary["outcome"], reasons=summary["reasons"],
                      declaration=summary["declaration"], released_by=summary["released_by"],
                      decision_ms=round(summary["decision_ms"], 3) if summary["decision_ms"] else None,
                      result=summary["result"], officer=summary.get("officer"))
    await _wait_until(lambda: plc.boom_closed, 10)
    return result


async def _scan_truck(scanner, truck: TruckSpec) -> None:
    """scan_started, then (unless the analysis never ends) scan_completed with the verdict."""
    from devices.protocols.scanner_json import ScanEvent
    from devices.readings import ScanVerdict

    scan_id = scanner.new_scan_id()
    await asyncio.to_thread(scanner.publish, ScanEvent.STARTED, scan_id, truck.containers, ScanVerdict.PENDING)
    if truck.scan.verdict == "pending":
        return
    await asyncio.sleep(truck.scan.analysis_s)
    await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, scan_id, truck.containers,
                            ScanVerdict(truck.scan.verdict), truck.scan.image_ref or f"nii://{scan_id}.png")


def _check_expectation(result: dict[str, Any], expect: Expectation | None) -> list[str]:
    if expect is None:
        return []
    failures = []
    if expect.outcome is not None and result["outcome"] != expect.outcome:
        failures.append(f"outcome {result['outcome']} != expected {expect.outcome}")
    if expect.reasons is not None:
        missing = [r for r in expect.reasons if r not in result["reasons"]]
        if missing:
            failures.append(f"missing reasons {missing} (got {result['reasons']})")
        if not expect.reasons and result["reasons"]:
            failures.append(f"expected no reasons, got {result['reasons']}")
    if expect.barrier_opened is not None and result["barrier_opened"] != expect.barrier_opened:
        failures.append(f"barrier_opened {result['barrier_opened']} != expected {expect.barrier_opened}")
    return failures


async def play_scenario(scenario: Scenario, workdir: Path, *, kiosk_port: int | None = None,
                        interactive: bool = False, gate: SimulatedGate | None = None,
                        on_truck: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every truck of the scenario against a simulated gate; return the JSON-ready result.

    `on_truck` is told each truck's result as it finishes (progress output)."""
    timing = scenario.spec.timing
    own_gate = gate is None
    if gate is None:
        gate = SimulatedGate(scenario.site, workdir, kiosk_port=kiosk_port,
                             boom_travel_s=timing.boom_travel_s)
        await gate.start()
    try:
        node = gate.node
        node.cache.upsert_many(scenario.declarations)
        node.cache.mark_refreshed(datetime.now(UTC))
        watchers = {lane_id: _LaneWatcher() for lane_id in node.lanes}
        for lane_id, controller in node.lanes.items():
            controller.listeners.append(watchers[lane_id])
        lane_locks = {lane_id: asyncio.Lock() for lane_id in node.lanes}
        started = time.monotonic()

        async def run_truck(truck: TruckSpec) -> dict[str, Any]:
            await asyncio.sleep(max(0.0, truck.arrive_after_s - (time.monotonic() - started)))
            async with lane_locks[truck.lane]:
                result = await _drive_truck(gate, gate.rigs[truck.lane], truck, timing,
                                            watchers[truck.lane], interactive)
            if truck.name:
                result["name"] = truck.name
            failures = _check_expectation(result, truck.expect)
            if truck.expect is not None:
                result["expect_met"] = not failures
                if failures:
                    result["expect_failures"] = failures
            if on_truck is not None:
                on_truck(result)
            return result

        # Trucks on one lane go in file order; lanes run side by side.
        by_lane: dict[str, list[TruckSpec]] = {}
        for truck in scenario.spec.trucks:
            by_lane.setdefault(truck.lane, []).append(truck)

        async def run_lane(trucks: list[TruckSpec]) -> list[tuple[TruckSpec, dict]]:
            return [(truck, await run_truck(truck)) for truck in trucks]

        fault_log: list[dict[str, Any]] = []
        wall_start = time.time()

        async def run_fault(spec: FaultSpec) -> None:
            await asyncio.sleep(max(0.0, spec.at_s - (time.monotonic() - started)))
            record = {"device": spec.device, "fault": spec.fault, "injected_at_s": round(time.time() - wall_start, 3)}
            fault_log.append(record)
            await inject_fault(gate.simulator(spec.device), spec.fault, spec.duration_s)
            record["device_back_at_s"] = round(time.time() - wall_start, 3)

        fault_tasks = [asyncio.create_task(run_fault(spec)) for spec in scenario.spec.faults]
        lane_results = await asyncio.gather(*(run_lane(t) for t in by_lane.values()))
        await asyncio.gather(*fault_tasks)
        done = {id(truck): result for pairs in lane_results for truck, result in pairs}
        trucks = [done[id(truck)] for truck in scenario.spec.trucks]
        verdict = await asyncio.to_thread(node.journal.verify)
        changes = replay(node.journal.entries(kinds=[JournalKind.DEVICE_FAULT, JournalKind.DEVICE_RECOVERED]))
        device_events = [
            {"device": c["device"], "event": c["event"], "at_s": round(c["at"] - wall_start, 3), "error": c["error"]}
            for c in changes.device_changes if c["at"] >= wall_start
        ]
    finally:
        if own_gate:
            await gate.stop()
    outcomes: dict[str, int] = {}
    for truck in trucks:
        outcomes[str(truck["outcome"])] = outcomes.get(str(truck["outcome"]), 0) + 1
    latencies = sorted(t["decision_ms"] for t in trucks if t["decision_ms"] is not None)
    summary = {
        "scenario": scenario.spec.name or scenario.path.stem,
        "trucks": len(trucks),
        "outcomes": outcomes,
        "barrier_opened": sum(1 for t in trucks if t["barrier_opened"]),
        "expectations": sum(1 for t in trucks if "expect_met" in t),
        "expectations_failed": sum(1 for t in trucks if t.get("expect_met") is False),
        "decision_ms_max": max(latencies) if latencies else None,
        "journal_ok": verify_ok(verdict),
        "duration_s": round(time.monotonic() - started, 2),
    }
    return {"trucks": trucks, "faults": fault_log, "device_events": device_events, "summary": summary}


def verify_ok(report: Any) -> bool:
    """True when a journal verification found no problem."""
    return bool(getattr(report, "ok", False))
