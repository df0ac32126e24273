"""What central monitoring receives from a real node: Sparkplug B births and data (decoded by pysparkplug,
a library we did not write) and the Prometheus exposition of the kiosk's /metrics."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from simulators.gate import SimulatedGate
from sync.sparkplug import BD_SEQ, decode_message
from tests.conftest import wait_until
from tests.security.test_lane_attacks import CLEARED, LANE, _tokens, _truck


def _monitor(gate: SimulatedGate, received: list[tuple[str, bytes]]) -> mqtt.Client:
    """A Sparkplug host application with its own certificate, allowed to read the gate's Sparkplug topics."""
    tls = gate.broker.allow("test-scada-host", subscribe=("spBv1.0/smartgate/#",))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-scada-host")
    tls.apply(client)
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, message: received.append((message.topic, bytes(message.payload)))
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe("spBv1.0/smartgate/#", qos=1)
    client.connect(gate.broker.host, gate.broker.port)
    client.loop_start()
    assert subscribed.wait(10), "the monitor could not subscribe"
    return client


def test_the_node_publishes_sparkplug_births_and_data_a_scada_host_can_decode(site, tmp_path):
    async def scenario():
        gate = SimulatedGate(site, tmp_path, kiosk_port=0, boom_travel_s=0.3)
        await gate.start(node=False)
        received: list[tuple[str, bytes]] = []
        monitor = await asyncio.to_thread(_monitor, gate, received)
        try:
            await gate.start_node()
            device_ids = {d.id for lane in site.site.lanes for d in lane.devices}
            await wait_until(lambda: device_ids <= {t.rsplit("/", 1)[1] for t, _ in received if "/DBIRTH/" in t},
                             15, "the node's NBIRTH and a DBIRTH for every device")
            messages = [decode_message(t, p) for t, p in received]
            birth = next(m for m in messages if m.message_type == "NBIRTH")
            assert birth.seq == 0 and isinstance(birth.metrics[BD_SEQ], int)
            assert birth.metrics[f"Lanes/{LANE}/State"] == "IDLE" and "Lanes/EXP-1/State" in birth.metrics
            assert messages[0].message_type == "NBIRTH"  # the first message of the session
            gate.node.cache.upsert_many([CLEARED])
            gate.node.cache.mark_refreshed(datetime.now(UTC))
            await _truck(gate, ["桂F·54321"])
            await wait_until(lambda: any(m.metrics.get(f"Lanes/{LANE}/State") not in (None, "IDLE")
                                         for m in (decode_message(t, p) for t, p in received if "/NDATA/" in t)),
                             15, "an NDATA with the lane's new state")
        finally:
            monitor.loop_stop()
            monitor.disconnect()
            await gate.stop()

    asyncio.run(scenario())


def test_metrics_count_decisions_by_outcome_for_a_scraper_with_a_token(site, tmp_path):
    async def scenario():
        gate = SimulatedGate(site, tmp_path, kiosk_port=0, boom_travel_s=0.3)
        await gate.start()
        try:
            gate.node.cache.upsert_many([CLEARED])
            gate.node.cache.mark_refreshed(datetime.now(UTC))
            token = _tokens(gate)["officer"]
            base = f"http://127.0.0.1:{gate.node.kiosk_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                assert (await client.get("/metrics")).status_code == 401  # no credential, no figures
                await _truck(gate, ["桂F·54321"])
                await wait_until(lambda: gate.node.lanes[LANE].machine.tx is not None
                                 and gate.node.lanes[LANE].machine.tx.decision is not None, 15, "the decision")
                outcome = gate.node.lanes[LANE].machine.tx.decision.outcome.value
                counted = ("smartgate_decisions_total", (("lane", LANE), ("outcome", outcome)))
                samples: dict = {}

                async def scrape() -> bool:  # the counter moves once the decision's journal row is written
                    reply = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
                    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
                    samples.clear()
                    samples.update({(s.name, tuple(sorted(s.labels.items()))): s.value
                                    for family in text_string_to_metric_families(reply.text) for s in family.samples})
                    return counted in samples

                deadline = asyncio.get_running_loop().time() + 15
                while not await scrape():
                    assert asyncio.get_running_loop().time() < deadline, "the decision was never counted"
                    await asyncio.sleep(0.05)
            assert samples[counted] == 1
            assert samples[("smartgate_decision_latency_seconds_count", (("lane", LANE),))] == 1
            assert samples[("smartgate_device_up", (("device", "IMP-1-anpr"), ("kind", "anpr"), ("lane", LANE)))] == 1
            assert samples[("smartgate_journal_rows", ())] > 0
            assert any(name == "smartgate_http_request_duration_seconds_count" for name, _ in samples)
        finally:
            await gate.stop()

    asyncio.run(scenario())
