"""Trucks driven through a lane's simulators alone, for a node that runs in another process.

`simulators/scenario.py` follows each truck through the in-process node's notifications. A node in
another process (one a test SIGKILLs and restarts) cannot be watched that way, so this driver does
what a driver at the gate sees: the truck shows its plate to the camera, rolls onto the arrival
loop (onto the weighbridge), its seals are read and it is scanned; it drives through if the boom
opens within `open_timeout_s`, otherwise it backs away. Everything goes through the simulators'
wire protocols, so the node under test cannot tell this from the scenario runner.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devices.protocols.iso6346 import check_digit
from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict
from simulators.gate import LaneRig


@dataclass(frozen=True)
class BlindTruck:
    """What a truck shows the lane's devices."""

    plate: str
    seal: str
    container: str
    weight_kg: float


async def _until(predicate, timeout_s: float, poll_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_s)
    return True


async def drive_blind(rig: LaneRig, truck: BlindTruck, *, open_timeout_s: float = 5.0, drive_s: float = 0.3,
                      plate_lead_s: float = 0.1, close_timeout_s: float = 10.0) -> bool:
    """Present one truck; return True when the boom opened for it and it drove through."""
    plc = rig.plc
    if rig.camera is not None:
        await asyncio.to_thread(rig.camera.publish_plate, truck.plate)
        await asyncio.sleep(plate_lead_s)
    if rig.scale is not None:
        rig.scale.drive_on(truck.weight_kg)
    plc.set_loop("arrival", True)
    await asyncio.sleep(0.1)  # the truck comes to a stop on the loop before the reader sees its seal
    if rig.eseal is not None:
        rig.eseal.present_seal(truck.seal, "intact", truck.container)
    if rig.scanner is not None:
        scan_id = rig.scanner.new_scan_id()
        await asyncio.to_thread(rig.scanner.publish, ScanEvent.STARTED, scan_id, [truck.container],
                                ScanVerdict.PENDING)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(rig.scanner.publish, ScanEvent.COMPLETED, scan_id, [truck.container],
                                ScanVerdict.CLEAR, f"nii://{scan_id}.png")
    opened = await _until(lambda: plc.boom_open, open_timeout_s)
    if opened:
        await asyncio.sleep(drive_s / 3)
        plc.set_loop("safety", True)
        plc.set_loop("arrival", False)
        if rig.scale is not None:
            rig.scale.drive_off()
        await asyncio.sleep(drive_s / 3)
        plc.set_loop("safety", False)
        plc.set_loop("exit", True)
        await asyncio.sleep(drive_s / 3)
        plc.set_loop("exit", False)
    else:
        plc.set_loop("arrival", False)  # nobody opened: the truck backs away
    if rig.scale is not None:
        rig.scale.drive_off()
        sent = rig.scale.frames_sent  # let the indicator show the empty bridge before the next truck
        await _until(lambda: rig.scale.frames_sent >= sent + 3, 3.0)
    # A boom left open by a node that died closes when the PLC's heartbeat watchdog trips.
    await _until(lambda: plc.boom_closed, close_timeout_s)
    return opened


def _container(index: int) -> str:
    first_ten = f"TSTU{index:06d}"
    return first_ten + str(check_digit(first_ten))


def blind_fleet(direction: str, count: int, gate: str, *,
                valid_for: timedelta = timedelta(days=1)) -> tuple[list[BlindTruck], list[dict]]:
    """`count` (at most 40,000) trucks for a lane of this direction, and a cleared green declaration for each
    (central's form); an import and an export fleet never share a plate, seal, container or declaration."""
    now = datetime.now(UTC)
    trucks, declarations = [], []
    for i in range(count):
        n = (1 if direction == "import" else 5) * 10_000 + i
        truck = BlindTruck(plate=f"29C{n:05d}", seal=f"CN-SEAL-{n:06d}" if direction == "import" else f"5E{n:06X}",
                           container=_container(n), weight_kg=25_000 + 10 * (i % 1000))
        trucks.append(truck)
        declarations.append({
            "number": f"{'1' if direction == 'import' else '3'}05{n:09d}", "kind": direction, "gate": gate,
            "plates": [truck.plate], "containers": [truck.container], "seals": [truck.seal],
            "gross_weight_kg": truck.weight_kg, "channel": "green", "status": "cleared",
            "valid_from": (now - timedelta(days=1)).isoformat(), "valid_until": (now + valid_for).isoformat()})
    return trucks, declarations
