"""Scenarios for testers: trucks presented to a simulated gate through the real wire protocols.

A scenario file (YAML, simulators/scenario_format.py) names a site, the declarations the cache
holds, and the trucks. Each truck arrives at its lane: its cameras publish its plates over MQTT
(front and rear, tractor and trailer), the truck rolls onto the arrival loop, the e-seal reader
reports its seals over serial; the truck drives through when the boom opens for it, or backs away
after a hold or a refusal. While a held truck waits, officers act through the kiosk's HTTP API and
central revokes or amends declarations through the signed feed (simulators/scenario_actions.py).
Trucks of one lane go in file order; a truck that `follow_closely` rolls onto the arrival loop as
soon as the one before it has left it, so the node's own queue takes it. A truck that cannot be
played is reported as not played, and the others still run. The result says, per truck, what the
gate decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.protocols.plates import normalise_plate
from edge.records import JournalKind, Notice, replay
from simulators.faults import FaultSpec, inject_fault
from simulators.gate import LaneRig, SimulatedGate
from simulators.scenario_actions import FeedDesk, KioskOfficers
from simulators.scenario_format import (  # noqa: F401 - the scenario format, re-exported for callers of this module
    Expectation,
    FeedEvent,
    OfficerStep,
    PlateSpec,
    ScanSpec,
    Scenario,
    ScenarioFile,
    SealSpec,
    Timing,
    TruckSpec,
    WaitingEvent,
    lane_cameras,
    load_scenario,
    resolve_time,
)


class _LaneWatcher:
    """Collects the node's notifications for one lane, per transaction, so each truck waits on its own."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[tuple[str, dict]]] = defaultdict(asyncio.Queue)

    def __call__(self, lane_id: str, kind: str, payload: dict) -> None:
        if kind in (Notice.DECISION, Notice.TX_CLOSED, Notice.BARRIER, Notice.OFFICER_ACTION) \
                and payload.get("transaction"):
            self._queues[payload["transaction"]].put_nowait((kind, payload))

    def for_transaction(self, tx_id: str) -> asyncio.Queue[tuple[str, dict]]:
        """The notices for one transaction, from its first (none are lost before the truck asks)."""
        return self._queues[tx_id]


@dataclass
class _Turn:
    """One truck's place in its lane's line: the next truck waits on one of these."""

    left_arrival: asyncio.Event = field(default_factory=asyncio.Event)  # it drove under the boom or backed away
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # its transaction closed and the boom is down
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # it is on the arrival loop (or never will be)
    follower: _Turn | None = None  # the next truck of the lane, when it follows closely


@dataclass
class _Presence:
    """Where the truck is, so that whatever happens it leaves the lane clean for the next one."""

    on_arrival: bool = False
    on_scale: bool = False
    shown: str | None = None  # the plate the video camera shows for it


@dataclass
class _Play:
    """What every truck of one run shares."""

    gate: SimulatedGate
    timing: Timing
    interactive: bool
    started: float
    watchers: dict[str, _LaneWatcher]
    officers: KioskOfficers | None = None
    desk: FeedDesk | None = None
    claimed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # lane → tx ids taken
    scale_left: dict[str, int] = field(default_factory=dict)  # lane → scale frame count when a truck drove off


class NotPlayable(Exception):
    """The truck cannot be presented to this gate (the message says why); the other trucks still run."""


async def _wait_until(predicate, timeout_s: float, poll_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(poll_s)
    return predicate()


def _cannot_play(rig: LaneRig, truck: TruckSpec) -> str | None:
    """Why the lane's simulators cannot present this truck as written, or None."""
    if rig.eseal is not None:
        for index, seal in enumerate(truck.seals):
            container = seal.container or (truck.containers[index] if index < len(truck.containers) else None)
            problem = rig.eseal.cannot_carry(seal.id, seal.status, container, seal.battery_pct)
            if problem is not None:
                return f"seals[{index}]: {problem}"
    return None


def _show_plates(play: _Play, rig: LaneRig, truck: TruckSpec) -> tuple[list[tuple[Any, PlateSpec]], str]:
    """(ANPR camera simulator, read) for each plate read, and the plate the video camera shows."""
    names = lane_cameras(play.gate.site, truck.lane)
    reads, video_plate = [], None
    for read in truck.plate_reads():
        device = names.get(read.camera) if read.camera is not None else None
        if device is not None and device not in rig.cameras:  # the lane's video camera: it shows the plate
            video_plate = video_plate or read.plate
            continue
        camera = rig.cameras.get(device) if device is not None else rig.camera
        if camera is not None:
            reads.append((camera, read))
    return reads, video_plate or truck.label


def _leave_arrival(play: _Play, rig: LaneRig, truck: TruckSpec, presence: _Presence, turn: _Turn) -> None:
    """The truck is off the arrival loop (and the weighbridge): the next truck may roll on. The video
    camera, aimed at the loop, no longer sees it."""
    if presence.on_arrival:
        rig.plc.set_loop("arrival", False)
        presence.on_arrival = False
    if rig.video is not None and presence.shown is not None and rig.video.showing == presence.shown:
        rig.video.clear()
    if presence.on_scale and rig.scale is not None:
        rig.scale.drive_off()
        play.scale_left[truck.lane] = rig.scale.frames_sent
        presence.on_scale = False
    turn.left_arrival.set()


async def _drive_truck(play: _Play, truck: TruckSpec, presence: _Presence, turn: _Turn,
                       result: dict[str, Any]) -> None:
    """Present one truck and follow it until its transaction closes; fills `result`."""
    gate, timing = play.gate, play.timing
    rig = gate.rigs[truck.lane]
    plc = rig.plc
    problem = _cannot_play(rig, truck)
    if problem is not None:
        raise NotPlayable(problem)
    reads, video_plate = _show_plates(play, rig, truck)
    if rig.video is not None:
        await asyncio.to_thread(rig.video.show_truck, video_plate)  # the video camera sees the truck come in
        presence.shown = normalise_plate(video_plate)
    for camera, read in reads:
        await asyncio.to_thread(camera.publish_plate, read.plate, read.confidence)
    if reads:
        await asyncio.sleep(timing.plate_lead_s)
    if rig.scale is not None and truck.weight_kg is not None:
        # The indicator must have shown the empty bridge since the truck before drove off.
        left = play.scale_left.get(truck.lane)
        if left is not None:
            await _wait_until(lambda: rig.scale.frames_sent >= left + 3, 3.0)
        rig.scale.drive_on(truck.weight_kg)  # the weighbridge is under the truck's stopping place
        presence.on_scale = True
    plc.set_loop("arrival", True)
    presence.on_arrival = True
    turn.arrived.set()
    result["arrived_at_s"] = round(time.monotonic() - play.started, 3)
    # The truck stops on the arrival loop; the reader reads its seals there, the scanner scans it.
    tx_id = await _own_transaction(play, truck.lane, timing.truck_timeout_s)
    if tx_id is None:
        result["error"] = "the node opened no transaction for the truck"
        return
    if rig.eseal is not None:
        for index, seal in enumerate(truck.seals):
            container = seal.container or (truck.containers[index] if index < len(truck.containers) else None)
            rig.eseal.present_seal(seal.id, seal.status, container, seal.battery_pct)
    scan_task = asyncio.create_task(_scan_truck(rig.scanner, truck)) if rig.scanner is not None else None
    try:
        summary = await _follow(play, truck, tx_id, presence, turn, result)
    finally:
        if scan_task is not None:
            scan_task.cancel()
    if summary is not None:
        result.update(outcome=summary["outcome"], reasons=summary["reasons"],
                      declaration=summary["declaration"], declarations=summary.get("declarations", []),
                      officer=summary.get("officer"),
                      released_by=summary["released_by"],
                      decision_ms=round(summary["decision_ms"], 3) if summary["decision_ms"] else None,
                      result=summary["result"], closed_at_s=round(time.monotonic() - play.started, 3))
    await _wait_until(lambda: plc.boom_closed, 10)


async def _own_transaction(play: _Play, lane_id: str, timeout_s: float) -> str | None:
    """The id of the transaction the node opened for this truck (not one an earlier truck has), or None."""
    controller = play.gate.node.lanes[lane_id]
    claimed = play.claimed[lane_id]

    def fresh() -> bool:
        tx = controller.machine.tx
        return tx is not None and tx.id not in claimed

    if not await _wait_until(fresh, timeout_s):
        return None
    tx_id = controller.machine.tx.id
    claimed.add(tx_id)
    return tx_id


async def _follow(play: _Play, truck: TruckSpec, tx_id: str, presence: _Presence, turn: _Turn,
                  result: dict[str, Any]) -> dict[str, Any] | None:
    """Wait on the truck's transaction: drive through when the boom opens for it, run what happens while it
    waits, back away after a hold; return the closing summary (None when the gate never closed it)."""
    timing, interactive = play.timing, play.interactive
    rig = play.gate.rigs[truck.lane]
    plc = rig.plc
    events = play.watchers[truck.lane].for_transaction(tx_id)
    deadline = time.monotonic() + timing.truck_timeout_s
    released = False
    refused_by_officer = False  # an officer refused it: it backs away, as after a refusal by the rules
    waiting: asyncio.Task | None = None
    back_away_at: float | None = None
    try:
        while True:
            if time.monotonic() > deadline and not interactive:
                result["error"] = "timed out waiting for the gate"
                _leave_arrival(play, rig, truck, presence, turn)
                return None
            try:
                async with asyncio.timeout(0.05):  # not wait_for: it can swallow a cancel on 3.11
                    kind, payload = await events.get()
            except TimeoutError:
                kind, payload = "", {}
            if kind == Notice.TX_CLOSED:
                return payload
            if kind == Notice.BARRIER:
                released = True
            if kind == Notice.OFFICER_ACTION and payload.get("action") == "refuse":
                refused_by_officer = True
            if kind == Notice.DECISION:
                result["outcome"], result["reasons"] = payload["outcome"], payload["reasons"]
                if payload["outcome"] != "release" and waiting is None and (truck.officer or truck.while_waiting):
                    waiting = asyncio.create_task(_while_waiting(play, truck, result, time.monotonic()))
            if released and presence.on_arrival and plc.boom_open:
                result["barrier_opened"] = True
                await _drive_through(play, rig, truck, presence, turn)
            held = result["outcome"] not in (None, "release") and not released and presence.on_arrival
            if held and not interactive and (waiting is None or waiting.done()):
                back_away_at = back_away_at or time.monotonic() + timing.hold_wait_s
                if time.monotonic() >= back_away_at and not plc.boom_open:
                    _leave_arrival(play, rig, truck, presence, turn)  # the truck backs away from the lane
            if held and interactive and (result["outcome"] == "refuse" or refused_by_officer) and not plc.boom_open:
                _leave_arrival(play, rig, truck, presence, turn)
    finally:
        if waiting is not None and not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)


async def _drive_through(play: _Play, rig: LaneRig, truck: TruckSpec, presence: _Presence, turn: _Turn) -> None:
    """Under the open boom (safety loop), off the arrival loop and the weighbridge, over the exit loop."""
    plc, drive_s = rig.plc, play.timing.drive_s
    await asyncio.sleep(drive_s / 3)
    plc.set_loop("safety", True)
    _leave_arrival(play, rig, truck, presence, turn)
    await asyncio.sleep(drive_s / 3)
    if turn.follower is not None:  # a truck following closely rolls on while this one is still under the boom
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(5.0, play.timing.plate_lead_s + 3.0)):
                await turn.follower.arrived.wait()
    plc.set_loop("safety", False)
    plc.set_loop("exit", True)
    await asyncio.sleep(drive_s / 3)
    plc.set_loop("exit", False)


async def _while_waiting(play: _Play, truck: TruckSpec, result: dict[str, Any], decided_at: float) -> None:
    """The truck's officer steps and feed changes, each `after_s` after its decision, in time order."""
    steps: list[tuple[float, OfficerStep | WaitingEvent]] = sorted(
        [(step.after_s, step) for step in truck.officer] + [(event.after_s, event) for event in truck.while_waiting],
        key=lambda pair: pair[0])
    for after_s, step in steps:
        await asyncio.sleep(max(0.0, decided_at + after_s - time.monotonic()))
        if isinstance(step, OfficerStep):
            port = play.gate.node.kiosk_port
            if play.officers is None or port is None:
                record = {"action": step.action, "officer_id": step.officer_id, "role": step.role, "ok": False,
                          "status": None, "code": "no_kiosk", "message": "the gate serves no kiosk"}
            else:
                record = await play.officers.act(port, truck.lane, step)
            result.setdefault("officer_steps", []).append(record)
        else:
            record = (await play.desk.apply(step, play.started) if play.desk is not None
                      else {"error": "no central runs beside this gate"})
            result.setdefault("while_waiting", []).append(record)


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
    if not result["played"]:
        if expect is not None and expect.played is False:
            return []
        return [f"not played: {result['not_played']}"]
    if expect is None:
        return []
    failures = []
    if expect.played is False:
        failures.append("played, expected not to be playable")
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
    if expect.officer_refusals is not None:
        refusals = [step.get("code") for step in result.get("officer_steps", []) if not step["ok"]]
        if refusals != expect.officer_refusals:
            failures.append(f"officer refusals {refusals} != expected {expect.officer_refusals}")
    return failures


async def _play_truck(play: _Play, truck: TruckSpec, turn: _Turn) -> dict[str, Any]:
    """One truck, start to end; whatever goes wrong is its result's, and the lane is left clean."""
    rig = play.gate.rigs[truck.lane]
    result: dict[str, Any] = {"plate": truck.label, "lane": truck.lane, "played": True, "outcome": None,
                              "reasons": [], "barrier_opened": False, "decision_ms": None, "declaration": None,
                              "released_by": None}
    if truck.plates is not None:
        result["plates"] = [read.model_dump(exclude_none=True) for read in truck.plate_reads()]
    if truck.name:
        result["name"] = truck.name
    presence = _Presence()
    try:
        await _drive_truck(play, truck, presence, turn, result)
    except NotPlayable as exc:
        result.update(played=False, not_played=str(exc))
    except Exception as exc:  # a simulator failed mid-way: this truck is lost, the run goes on
        result.update(played=False, not_played=f"stopped mid-way: {type(exc).__name__}: {exc}")
    finally:
        _leave_arrival(play, rig, truck, presence, turn)
        if rig.video is not None and presence.shown is not None and rig.video.showing == presence.shown:
            await asyncio.to_thread(rig.video.clear)  # the truck has gone: the camera sees the empty lane
        turn.arrived.set()
        turn.gone.set()
    failures = _check_expectation(result, truck.expect)
    if truck.expect is not None or not result["played"]:
        result["expect_met"] = not failures
        if failures:
            result["expect_failures"] = failures
    return result


async def _start_gate(scenario: Scenario, workdir: Path, kiosk_port: int | None) -> tuple[SimulatedGate, Any, Any]:
    """A fresh gate for the scenario: (gate, central or None, broker central shares or None)."""
    site, broker, central = scenario.site, None, None
    if scenario.has_feed:  # central beside the gate: the feed reaches the node as in service
        from simulators.broker import PrivateBroker
        from simulators.central_sim import start_central, with_central

        broker = await asyncio.to_thread(PrivateBroker().start)
        central, section = await asyncio.to_thread(start_central, workdir / "central", broker, site.site.gate)
        site = with_central(site, section)
    if scenario.has_officers and kiosk_port is None:
        kiosk_port = 0  # officers act through the kiosk
    gate = SimulatedGate(site, workdir, kiosk_port=kiosk_port, boom_travel_s=scenario.spec.timing.boom_travel_s,
                         broker=broker)
    await gate.start()
    return gate, central, broker


async def play_scenario(scenario: Scenario, workdir: Path, *, kiosk_port: int | None = None,
                        interactive: bool = False, gate: SimulatedGate | None = None, central: Any = None,
                        on_truck: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every truck of the scenario against a simulated gate; return the JSON-ready result.

    A given `gate` is played on as it is (with `central`, the central it syncs with, for feed changes).
    `on_truck` is told each truck's result as it finishes (progress output)."""
    timing = scenario.spec.timing
    own_gate = gate is None
    broker = None
    if gate is None:
        gate, central, broker = await _start_gate(scenario, workdir, kiosk_port)
    desk = None
    try:
        node = gate.node
        node.cache.upsert_many(scenario.declarations)
        node.cache.mark_refreshed(datetime.now(UTC))
        watchers = {lane_id: _LaneWatcher() for lane_id in node.lanes}
        for lane_id, controller in node.lanes.items():
            controller.listeners.append(watchers[lane_id])
        officers = None
        if scenario.has_officers:
            steps = [step for truck in scenario.spec.trucks for step in truck.officer]
            officers = await asyncio.to_thread(KioskOfficers, gate.workdir / "node", gate.site.site.gate, steps)
        if central is not None and scenario.has_feed:
            desk = FeedDesk(central, node, scenario.rows, timing.feed_timeout_s)
            await desk.publish_all()
        started = time.monotonic()
        play = _Play(gate, timing, interactive, started, watchers, officers, desk)

        async def run_truck(truck: TruckSpec, before: _Turn | None, turn: _Turn) -> dict[str, Any]:
            if before is not None:  # trucks of one lane go in file order
                await (before.left_arrival if truck.follow_closely else before.gone).wait()
            await asyncio.sleep(max(0.0, truck.arrive_after_s - (time.monotonic() - started)))
            result = await _play_truck(play, truck, turn)
            if on_truck is not None:
                on_truck(result)
            return result

        last: dict[str, _Turn] = {}
        truck_tasks = []
        for truck in scenario.spec.trucks:
            turn, before = _Turn(), last.get(truck.lane)
            if before is not None and truck.follow_closely:
                before.follower = turn
            truck_tasks.append(run_truck(truck, before, turn))
            last[truck.lane] = turn

        fault_log: list[dict[str, Any]] = []
        feed_log: list[dict[str, Any]] = []
        wall_start = time.time()

        async def run_fault(spec: FaultSpec) -> None:
            await asyncio.sleep(max(0.0, spec.at_s - (time.monotonic() - started)))
            record = {"device": spec.device, "fault": spec.fault, "injected_at_s": round(time.time() - wall_start, 3)}
            fault_log.append(record)
            await inject_fault(gate.simulator(spec.device), spec.fault, spec.duration_s)
            record["device_back_at_s"] = round(time.time() - wall_start, 3)

        async def run_feed(event: FeedEvent) -> None:
            await asyncio.sleep(max(0.0, event.at_s - (time.monotonic() - started)))
            record = (await desk.apply(event, started) if desk is not None
                      else {"error": "no central runs beside this gate"})
            feed_log.append({"at_s": event.at_s, **record})

        side_tasks = [asyncio.create_task(run_fault(spec)) for spec in scenario.spec.faults]
        side_tasks += [asyncio.create_task(run_feed(event)) for event in scenario.spec.feed]
        trucks = list(await asyncio.gather(*truck_tasks))
        await asyncio.gather(*side_tasks)
        verdict = await asyncio.to_thread(node.journal.verify)
        changes = replay(node.journal.entries(kinds=[JournalKind.DEVICE_FAULT, JournalKind.DEVICE_RECOVERED]))
        device_events = [
            {"device": c["device"], "event": c["event"], "at_s": round(c["at"] - wall_start, 3), "error": c["error"]}
            for c in changes.device_changes if c["at"] >= wall_start
        ]
    finally:
        if desk is not None:
            await desk.close()
        if own_gate:
            await gate.stop()
            if central is not None:
                await asyncio.to_thread(central.stop)
            if broker is not None:
                await asyncio.to_thread(broker.stop)
    return {"trucks": trucks, "faults": fault_log, "feed": feed_log, "device_events": device_events,
            "summary": _summary(scenario, trucks, verify_ok(verdict), time.monotonic() - started)}


def _summary(scenario: Scenario, trucks: list[dict[str, Any]], journal_ok: bool, duration_s: float) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for truck in trucks:
        if truck["played"]:
            outcomes[str(truck["outcome"])] = outcomes.get(str(truck["outcome"]), 0) + 1
    latencies = sorted(t["decision_ms"] for t in trucks if t["decision_ms"] is not None)
    return {
        "scenario": scenario.spec.name or scenario.path.stem,
        "trucks": len(trucks),
        "not_played": sum(1 for t in trucks if not t["played"]),
        "outcomes": outcomes,
        "barrier_opened": sum(1 for t in trucks if t["barrier_opened"]),
        "expectations": sum(1 for t in trucks if "expect_met" in t),
        "expectations_failed": sum(1 for t in trucks if t.get("expect_met") is False),
        "decision_ms_max": max(latencies) if latencies else None,
        "journal_ok": journal_ok,
        "duration_s": round(duration_s, 2),
    }


def verify_ok(report: Any) -> bool:
    """True when a journal verification found no problem."""
    return bool(getattr(report, "ok", False))
