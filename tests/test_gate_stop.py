"""A simulated gate whose node does not stop says what the node still waits on, and stops the rest anyway
(a stuck stop would otherwise hang a test or `smartgate demo` with no word of why)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

import simulators.gate as gate_module
from simulators.gate import NodeStuck
from tests.helpers import started_gate


def test_a_node_that_does_not_stop_is_named_and_the_gate_stops_all_the_same(site, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(gate_module, "NODE_STOP_LIMIT_S", 1.0)

    async def scenario():
        gate = await started_gate(site, tmp_path, [], kiosk_port=None, boom_travel_s=0.2)
        never = asyncio.Event()

        async def camera_stop_that_never_returns() -> None:
            await never.wait()

        monkeypatch.setattr(gate.node.drivers["IMP-1-anpr"], "stop", camera_stop_that_never_returns)
        broker = (gate.broker.host, gate.broker.port)
        with pytest.raises(NodeStuck) as stuck:
            await gate.stop()
        assert "camera_stop_that_never_returns" in str(stuck.value)  # where the node's stop waits
        assert "app.py" in str(stuck.value)
        with pytest.raises(OSError):  # the gate's own broker was stopped all the same
            socket.create_connection(broker, timeout=1).close()

    asyncio.run(scenario())
