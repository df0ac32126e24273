"""Test helpers shared between test files: a simulated gate with its declarations loaded, an intruder's Modbus write,
a device topic granted on the private broker and headless Chromium for the page tests."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from devices.transports.mqtt import MqttTls
from edge.declarations import Declaration
from simulators.barrier_plc import BarrierPlcSimulator
from simulators.broker import PrivateBroker
from simulators.gate import SimulatedGate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


async def started_gate(site, tmp_path: Path, declarations: Iterable[Declaration], **options) -> SimulatedGate:
    """Start a SimulatedGate (options go to its constructor) whose cache holds `declarations` and is fresh."""
    gate = SimulatedGate(site, tmp_path, **options)
    await gate.start()
    gate.node.cache.upsert_many(list(declarations))
    gate.node.cache.mark_refreshed(datetime.now(UTC))
    return gate


def write_open_coil(plc: BarrierPlcSimulator) -> None:
    """Another Modbus master on the PLC's segment sets the open coil (FC5), as any client can."""
    client = ModbusTcpClient(plc.host, port=plc.port, timeout=2)
    try:
        assert client.connect(), "the intruder could not reach the PLC"
        reply = client.write_coil(plc.regmap.coils.open, True, device_id=plc.regmap.device_id)
        assert not reply.isError(), reply
    finally:
        client.close()


def grant_device_topic(broker: PrivateBroker, topic: str, device: str) -> tuple[MqttTls, str, MqttTls]:
    """The device may publish its topic and `topic/status`, a node identity of the test's own (named after the topic)
    may read them; returns the node's credentials, its client id and the device's credentials."""
    node = f"test-node-{topic.replace('/', '-')}"
    device_tls = broker.allow(device, publish=(topic, f"{topic}/status"))
    return broker.allow(node, subscribe=(topic, f"{topic}/status")), node, device_tls


@contextmanager
def chromium_browser() -> Iterator:
    """Debian's headless Chromium under Playwright; missing, the test fails in CI and is skipped elsewhere."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: scripts/setup.sh installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
