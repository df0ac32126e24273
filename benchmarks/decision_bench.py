"""Decision latency: last reading received → barrier open command written, over many trucks.

The node's real parts run: journal (fsync per row), declaration cache, rules, lane state machine,
lane controller, and the barrier driver writing coils over Modbus TCP to the PLC simulator. The
bench plays the loops and limit switches itself (as the PLC would report them) so that a truck
cycle takes milliseconds instead of boom travel time; the measured path is unchanged.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.stats import percentiles
from devices.barrier import BarrierDriver
from devices.readings import (
    BoomChanged,
    BoomPosition,
    Loop,
    LoopChanged,
    PlateRead,
    ScanRead,
    ScanVerdict,
    SealRead,
    SealStatus,
    WeightRead,
)
from devices.transports.modbus import tcp_hub
from edge.cache import DeclarationCache
from edge.config import CONFIG_ROOT, LaneConfig, LoadedSite, load_site
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.journal import Journal
from edge.lane_control import LaneController
from simulators.barrier_plc import BarrierPlcSimulator
from simulators.broker import free_port


def _declarations(n: int, gate: str) -> list[Declaration]:
    now = datetime.now(UTC)
    return [
        Declaration(
            number=f"10{i:010d}", kind=DeclarationKind.IMPORT, gate=gate, plates=(f"29C{i:05d}",),
            containers=(), seals=(f"SEAL{i:06d}",), gross_weight_kg=28_000,
            channel=RiskChannel.GREEN, status=DeclarationStatus.CLEARED,
            valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=1),
        )
        for i in range(n)
    ]


@dataclass
class LaneRig:
    """A lane controller with its journal and the queue of its (kind, payload) events; journal_rows once stopped."""

    controller: LaneController
    journal: Journal
    events: asyncio.Queue
    barrier_id: str
    journal_rows: int = 0

    async def next_of(self, kind: str) -> dict:
        """Wait for the lane's next `kind` event and return its payload (the events before it are dropped)."""
        while True:
            got, payload = await self.events.get()
            if got == kind:
                return payload

    def drive_through(self, t: float) -> None:
        """The released truck passes as the PLC reports it: boom up, safety loop on, arrival off, safety off, down."""
        for event in (BoomChanged(self.barrier_id, BoomPosition.OPEN, t),
                      LoopChanged(self.barrier_id, Loop.SAFETY, True, t),
                      LoopChanged(self.barrier_id, Loop.ARRIVAL, False, t),
                      LoopChanged(self.barrier_id, Loop.SAFETY, False, t),
                      BoomChanged(self.barrier_id, BoomPosition.CLOSED, t)):
            self.controller.submit(event)


@asynccontextmanager
async def lane_rig(loaded: LoadedSite, lane_cfg: LaneConfig, declarations: int, prefix: str) -> AsyncIterator[LaneRig]:
    """The lane's real controller, journal and cache (`declarations` cleared ones, fresh) in a temporary folder and
    its barrier driver on the PLC simulator (no boom travel), the controller not started; on leaving, all stopped."""
    barrier_cfg = lane_cfg.device("barrier")
    profile = loaded.profile_for(barrier_cfg)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        port = free_port()
        plc = BarrierPlcSimulator(profile.modbus, port=port, travel_s=0.0)
        await plc.start()
        cache = DeclarationCache.open(Path(tmp) / "declarations.sqlite")
        cache.upsert_many(_declarations(declarations, loaded.site.gate))
        cache.mark_refreshed(datetime.now(UTC))
        journal = Journal.open(Path(tmp) / "journal.sqlite")
        hub = tcp_hub("127.0.0.1", port, profile.modbus.device_id)
        events: asyncio.Queue = asyncio.Queue()
        barrier = BarrierDriver(barrier_cfg.id, hub, profile.modbus, lambda e: None)
        controller = LaneController(lane_cfg, gate=loaded.site.gate, journal=journal, cache=cache,
                                    barrier=barrier, device_kinds={d.id: d.kind for d in lane_cfg.devices})
        controller.listeners.append(lambda lane, kind, payload: events.put_nowait((kind, payload)))
        rig = LaneRig(controller, journal, events, barrier_cfg.id)
        try:
            yield rig
        finally:
            await controller.stop()
            await hub.close()
            await plc.stop()
            rig.journal_rows = journal.count()
            journal.close()
            cache.close()


async def _run(trucks: int, hold_share: float, seed: int) -> dict:
    loaded = load_site(CONFIG_ROOT / "sites" / "huu-nghi.yaml")  # the CLI's default site
    lane_cfg = loaded.site.lanes[0]  # IMP-1: plate, seal, weight and scan required
    barrier_cfg = lane_cfg.device("barrier")
    rng = random.Random(seed)
    async with lane_rig(loaded, lane_cfg, max(trucks, 1000), "smartgate-bench-") as rig:
        controller, events = rig.controller, rig.events
        await controller.start(restore=False)
        release_ms, hold_ms = [], []
        started = time.perf_counter()
        for i in range(trucks):
            hold = rng.random() < hold_share
            now = time.time()
            controller.submit(LoopChanged(barrier_cfg.id, Loop.ARRIVAL, True, now))
            controller.submit(PlateRead("cam", f"29C-{i // 100:03d}.{i % 100:02d}", 0.97, now, time.time()))
            seal = f"SEAL{i:06d}" if not hold else "SEAL-WRONG"
            controller.submit(SealRead("rdr", seal, SealStatus.INTACT, 90, None, now, time.time()))
            # IMP-1 also requires a stable weight and a completed X-ray scan; the scan comes last.
            controller.submit(WeightRead("scale", 28_020, now, time.time()))
            controller.submit(ScanRead("xray", f"S{i}", ScanVerdict.CLEAR, (), None, True, now, time.time()))
            while True:
                kind, payload = await events.get()
                if kind == "barrier" or (kind == "decision" and payload["outcome"] != "release"):
                    break
            tx = controller.machine.tx
            (hold_ms if hold else release_ms).append(tx.decision_ms)
            t = time.time()
            if not hold:
                rig.drive_through(t)
            else:
                controller.submit(LoopChanged(barrier_cfg.id, Loop.ARRIVAL, False, t))
            await rig.next_of("tx_closed")
        elapsed = time.perf_counter() - started
    return {
        "decision_release_ms": percentiles(release_ms),
        "decision_hold_ms": percentiles(hold_ms),
        "decision_all_ms": percentiles(release_ms + hold_ms),
        "trucks": trucks,
        "trucks_per_s": round(trucks / elapsed, 1),
        "journal_rows": rig.journal_rows,
        "target": "decision p99 <= 20 ms",
    }


def run_decision_bench(trucks: int = 1000, hold_share: float = 0.2, seed: int = 7) -> dict:
    """Decision latency over `trucks` simulated trucks (a share of them held)."""
    return asyncio.run(_run(trucks, hold_share, seed))


if __name__ == "__main__":
    print(json.dumps(run_decision_bench(), indent=2))
