"""A whole simulated gate with its kiosk, run on an event loop in a background thread, so that
tests (and Playwright's synchronous API) can drive it from the main thread; users and logins."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict, SealStatus
from edge.declarations import Declaration, DeclarationKind, DeclarationStatus, RiskChannel
from edge.users import UserStore
from simulators.gate import SimulatedGate

NOW = datetime.now(UTC)
DECLARATION = Declaration(
    number="105000000888", kind=DeclarationKind.IMPORT, gate="HUUNGHI", plates=("29C12345",),
    containers=("CSQU3054383",), seals=("SEAL-888",), gross_weight_kg=28000, channel=RiskChannel.GREEN,
    status=DeclarationStatus.CLEARED, valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
)
REFUSED = Declaration(
    number="105000000999", kind=DeclarationKind.EXPORT, gate="HUUNGHI", plates=("51D99999",),
    containers=("CSQU3054383",), seals=("00A1B2C3",), gross_weight_kg=28000, channel=RiskChannel.GREEN,
    status=DeclarationStatus.CANCELLED, valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=1),
)
PASSWORDS = {"officer1": "officer-pass-1", "super1": "super-pass-1", "admin1": "admin-pass-1"}


class GateThread:
    """A SimulatedGate on its own event loop in a daemon thread."""

    def __init__(self, site, workdir: Path, broker=None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gate-loop", daemon=True)
        self.gate = SimulatedGate(site, workdir, kiosk_port=0, boom_travel_s=0.2, broker=broker)
        self.workdir = workdir

    def call(self, coro, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn, *args, timeout: float = 10) -> Any:
        """Run a plain function on the gate's loop (lane state lives there)."""
        async def wrapper():
            return fn(*args)
        return self.call(wrapper(), timeout)

    def start(self) -> GateThread:
        self.thread.start()
        data_dir = self.workdir / "node"
        with UserStore(data_dir / "users.sqlite") as users:
            users.add_user("officer1", PASSWORDS["officer1"], "officer", "HUUNGHI", "Nguyen Van An")
            users.add_user("super1", PASSWORDS["super1"], "supervisor", "HUUNGHI", "Tran Thi Binh")
            users.add_user("admin1", PASSWORDS["admin1"], "admin", "*", "Le Van Cuong")
            users.add_user("other-gate", "other-pass-1", "officer", "LAOBAO")

        async def start():
            await self.gate.start()
            self.gate.node.cache.upsert_many([DECLARATION, REFUSED])
            self.gate.node.cache.mark_refreshed(datetime.now(UTC))

        self.call(start(), timeout=60)
        self.wait_devices_up()
        return self

    def wait_devices_up(self, timeout: float = 20.0) -> None:
        """Wait until the node has every device up: a serial port opened after a frame was written drops the
        frame (pyserial flushes its input on open), and a plate published before the node's subscription is
        lost, so a test's first truck must wait for both (the status topic's retained birth message comes in
        over the same subscriptions)."""
        deadline = time.monotonic() + timeout
        while True:
            down = [h["device_id"] for h in self.run(self.gate.node.device_health) if not h["connected"]]
            if not down:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"devices still down {timeout:.0f} s after the gate started: {down}")
            time.sleep(0.02)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gate.node.kiosk_port}"

    def present(self, lane: str, plate: str, seal: str, status: SealStatus = SealStatus.INTACT,
                container: str = "CSQU3054383", weight_kg: float = 28100,
                verdict: ScanVerdict = ScanVerdict.CLEAR) -> None:
        """A truck at a lane: plate, weighbridge, arrival loop, seal, and an X-ray scan where there is one."""
        rig = self.gate.rigs[lane]
        rig.camera.publish_plate(plate, 0.95)
        if rig.scale is not None:
            self.run(rig.scale.drive_on, weight_kg)
        self.run(rig.plc.set_loop, "arrival", True)
        rig.eseal.present_seal(seal, status, container)
        if rig.scanner is not None:
            rig.scanner.publish(ScanEvent.COMPLETED, rig.scanner.new_scan_id(), [container], verdict)

    def stop(self) -> None:
        try:
            self.call(self.gate.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def running_gate(site, workdir: Path, broker=None) -> Iterator[GateThread]:
    """Start a GateThread, yield it and stop it: the body of every suite's `gate` fixture."""
    running = GateThread(site, workdir, broker).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def gate(site, broker, tmp_path: Path) -> Iterator[GateThread]:
    yield from running_gate(site, tmp_path, broker)


def login(client: httpx.Client, username: str, password: str | None = None) -> dict:
    """Log in like the page does: fetch the login page's CSRF token, post the form as JSON."""
    page = client.get("/login")
    token = re.search(r'name="sg-login-csrf" content="([^"]+)"', page.text).group(1)
    response = client.post("/api/login", json={"username": username, "password": password or PASSWORDS[username]},
                           headers={"x-csrf-token": token})
    response.raise_for_status()
    return response.json()

