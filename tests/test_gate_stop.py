"""A simulated gate whose node is slow to stop says in its log what the node still waits on (a stuck stop
would otherwise hang a test or `smartgate demo` with no word of why)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import simulators.gate as gate_module
from tests.conftest import wait_until
from tests.helpers import started_gate


def test_a_node_slow_to_stop_is_named_in_the_log_and_the_gate_still_stops(site, tmp_path: Path, monkeypatch,
                                                                           caplog):
    monkeypatch.setattr(gate_module, "NODE_STOP_LIMIT_S", 0.5)

    async def scenario():
        gate = await started_gate(site, tmp_path, [], kiosk_port=None, boom_travel_s=0.2)
        held = asyncio.Event()
        camera = gate.node.drivers["IMP-1-anpr"]
        real_stop = camera.stop

        async def camera_stop_held_up() -> None:
            await held.wait()
            await real_stop()

        monkeypatch.setattr(camera, "stop", camera_stop_held_up)
        with caplog.at_level(logging.ERROR, logger="simulators.gate"):
            stopping = asyncio.create_task(gate.stop())
            await wait_until(lambda: "has not stopped after" in caplog.text, what="the slow stop logged")
            assert "camera_stop_held_up" in caplog.text and "app.py" in caplog.text  # where it waits
            assert not stopping.done()  # it goes on waiting: cut short, its MQTT clients would run on
            held.set()
            await asyncio.wait_for(stopping, timeout=30)

    asyncio.run(scenario())
