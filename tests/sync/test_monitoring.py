"""Central monitoring: the node's birth and death (Sparkplug-B style, one bdSeq per connection) show it
go offline (its last will, after a SIGKILL) and come back; MQTT sessions persist over reconnects."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from devices.transports.mqtt import MqttBus, new_client
from edge.broker_policy import CENTRAL_IDENTITY
from edge.cache import DeclarationCache
from edge.declarations import DeclarationStatus
from edge.journal import Journal
from simulators.central_sim import central_mqtt
from simulators.link_proxy import LinkProxy
from sync.central.app import CentralMqtt
from sync.central.server import CentralServer
from sync.client import SyncService
from sync.telemetry import parse_status
from tests.sync.helpers import AS_MONITOR, AS_PUBLISHER, enrolled, fast_config
from tests.sync.node_process import NodeProcess, secure_small_site, write_site
from tests.sync.test_outbox_feed import _decl


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _gate(central: CentralServer, gate: str = "HN") -> dict:
    return {g["gate"]: g for g in central.store.gates()}.get(gate, {})


def _log(central: CentralServer, gate: str = "HN") -> list[tuple[str, int | None]]:
    return [(row["state"], row["bd_seq"]) for row in central.store.status_log(gate)]


@pytest.mark.timeout(120)
def test_birth_and_death_share_a_bd_seq_and_central_sees_the_node_go_offline_and_back(tmp_path, own_broker,
                                                                                     keypair):
    broker = own_broker
    central = CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], mqtt=central_mqtt(broker),
                            **enrolled(tmp_path)).start()
    node = NodeProcess(write_site(secure_small_site("HN", broker), tmp_path / "site.yaml"), tmp_path / "node",
                       tmp_path / "node.log")
    try:
        node.start()
        _wait(lambda: _gate(central).get("online") is True, 30, "the birth")
        first = _gate(central)["bd_seq"]
        node.kill()
        _wait(lambda: _gate(central).get("online") is False, 15, "the death (last will) after SIGKILL")
        assert _gate(central)["bd_seq"] == first  # the will carries the bdSeq of the birth it ends
        node.start()
        _wait(lambda: _gate(central).get("online") is True, 30, "the node back online")
        second = _gate(central)["bd_seq"]
        assert second == (first + 1) % 256  # the restarted node did not reuse its previous life's bdSeq

        # The will of an earlier connection, delivered late, must not mark the live node offline.
        probe = new_client("test-late-will", broker.allow(
            "test-late-will", publish=("smartgate/HN/status", "smartgate/HN/telemetry/probe")))
        probe.connect("127.0.0.1", broker.port)
        probe.loop_start()
        late_will = json.dumps({"state": "offline", "bd_seq": first})
        probe.publish("smartgate/HN/status", late_will, qos=1).wait_for_publish(5)
        probe.publish("smartgate/HN/telemetry/probe", json.dumps({"after": "late will"}), qos=1).wait_for_publish(5)
        _wait(lambda: "probe" in _gate(central).get("telemetry", {}), 10, "central to read past the late will")
        probe.loop_stop()
        probe.disconnect()
        assert _gate(central)["online"] is True

        _wait(node.running.is_set, 30, "the node to finish starting")
        assert node.stop() == 0
        _wait(lambda: _gate(central).get("online") is False, 15, "the death a clean stop publishes")
        assert _log(central) == [("online", first), ("offline", first), ("online", second), ("offline", second)]
        with httpx.Client(base_url=central.url, headers=AS_MONITOR) as client:
            shown = {g["gate"]: g for g in client.get("/api/v1/gates").json()}["HN"]
            assert shown["online"] is False and shown["bd_seq"] == second
            assert [r["state"] for r in client.get("/api/v1/gates/HN/status-log").json()] == \
                ["online", "offline", "online", "offline"]
    finally:
        node.kill()
        central.stop()


@pytest.mark.timeout(120)
def test_central_monitor_learns_of_an_outage_that_happened_while_it_was_away(tmp_path, own_broker, keypair):
    """Central's persistent session: the death and birth published while central was down are queued
    for it, so after its restart its log shows the outage (the retained status alone says only 'online')."""
    broker = own_broker
    central = CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], mqtt=central_mqtt(broker),
                            **enrolled(tmp_path)).start()
    node = NodeProcess(write_site(secure_small_site("HN", broker), tmp_path / "site.yaml"), tmp_path / "node",
                       tmp_path / "node.log")
    try:
        node.start()
        _wait(lambda: _gate(central).get("online") is True, 30, "the birth")
        first = _gate(central)["bd_seq"]
        seen: list[tuple[str, int | None]] = []  # what a bystander sees on the status topic
        bystander = new_client("test-bystander", broker.allow("test-bystander", subscribe=("smartgate/HN/status",)))
        bystander.on_message = lambda _c, _u, m: seen.append(parse_status(m.payload))
        bystander.connect("127.0.0.1", broker.port)
        bystander.subscribe("smartgate/HN/status", qos=1)
        bystander.loop_start()
        central.mqtt.stop()  # central's MQTT side goes away (a restart of central's monitor)
        node.kill()
        node.start()
        _wait(lambda: ("online", (first + 1) % 256) in seen, 30, "the node's new birth")
        bystander.loop_stop()
        bystander.disconnect()
        assert _log(central) == [("online", first)]  # central missed both so far
        central.mqtt = CentralMqtt(central.store, "127.0.0.1", broker.port, CENTRAL_IDENTITY,  # same identity, session
                                   broker.credentials(CENTRAL_IDENTITY))
        central.mqtt.start()
        _wait(lambda: len(_log(central)) >= 3, 15, "the messages queued for central's session")
        assert _log(central) == [("online", first), ("offline", first), ("online", (first + 1) % 256)]
    finally:
        node.kill()
        central.stop()


@pytest.mark.timeout(60)
def test_a_feed_notification_sent_while_the_nodes_mqtt_link_was_down_arrives_when_it_returns(tmp_path, own_broker,
                                                                                               keypair):
    asyncio.run(_notify_after_reconnect(tmp_path, own_broker, keypair))


async def _notify_after_reconnect(tmp_path, broker, keypair):
    """The node's persistent session keeps its QoS 1 subscription to feed/notify while its link to the
    broker is cut: the notification of a revocation is delivered on reconnect and the node pulls at once
    (the feed's own poll is 60 s away, and the HTTP link to central never went down)."""
    central = await asyncio.to_thread(CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0],
                                                    mqtt=central_mqtt(broker), **enrolled(tmp_path)).start)
    await asyncio.to_thread(secure_small_site, "HN", broker)  # the ACL of gate HN
    proxy = await LinkProxy("127.0.0.1", broker.port).start()
    bus = MqttBus("127.0.0.1", proxy.port, "smartgate-HN-node", clean_session=False,
                  tls=broker.credentials("smartgate-HN-node"))
    journal = Journal.open(tmp_path / "journal.sqlite")
    cache = DeclarationCache.open(tmp_path / "declarations.sqlite")
    sync = SyncService("HN", fast_config(central.url, keypair[1], feed_poll_s=60.0), journal, cache,
                       public_key=keypair[1], bus=bus)
    admin = httpx.AsyncClient(base_url=central.url, headers=AS_PUBLISHER)

    async def until(predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    try:
        sync.start()
        await bus.start()
        await asyncio.wait_for(bus.connected.wait(), 10)
        await until(lambda: sync.feed_applied_batches >= 1, 10, "the first feed pull")
        (await admin.post("/api/v1/declarations", json={"declarations": [_decl("D1")]})).raise_for_status()
        await until(lambda: cache.get("D1") is not None, 10, "the declaration, pulled on its notification")
        proxy.set_mode("drop")
        await until(lambda: not bus.health.connected, 10, "the node's MQTT link to go down")
        (await admin.post("/api/v1/declarations/D1/revoke", json={"reason": "test"})).raise_for_status()
        await asyncio.sleep(1.0)  # the link stays down a while; the notification waits at the broker
        assert cache.get("D1").status == DeclarationStatus.CLEARED
        proxy.set_mode("pass")
        back = time.monotonic()
        await until(lambda: bus.health.connected, 15, "the node's MQTT link to come back")
        assert bus.session_present, "the broker kept the node's session"
        await until(lambda: cache.get("D1").status == DeclarationStatus.CANCELLED, 10,
                    "the revocation, pulled on the notification queued for the node's session")
        assert time.monotonic() - back < 15 < sync.config.feed_poll_s
    finally:
        await admin.aclose()
        await sync.stop()
        await bus.stop()
        await proxy.stop()
        journal.close()
        cache.close()
        await asyncio.to_thread(central.stop)


@pytest.mark.timeout(120)
def test_sync_bench_quick_reports_every_figure():
    from benchmarks.sync_bench import run_sync_bench

    figures = run_sync_bench(quick=True)
    for key in ("enqueue_events_per_s_one_commit_each", "drain_s", "apply_declarations_per_s_new",
                "link_up_to_revocation_s_median"):
        assert figures[key] > 0, key
    assert figures["central_events"] == figures["drain_events"]


@pytest.mark.timeout(120)
def test_central_takes_the_nodes_sparkplug_births_data_and_death(tmp_path, own_broker, keypair):
    """Central as a Sparkplug B host: the node's NBIRTH and DBIRTHs make it online with its lane and device
    metrics; the NDEATH (its will, after a SIGKILL) with the same bdSeq makes it offline."""
    broker = own_broker
    central = CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], mqtt=central_mqtt(broker),
                            **enrolled(tmp_path)).start()
    node = NodeProcess(write_site(secure_small_site("HN", broker), tmp_path / "site.yaml"), tmp_path / "node",
                       tmp_path / "node.log")

    def sparkplug() -> dict:
        return (_gate(central).get("telemetry") or {}).get("sparkplug") or {}

    try:
        node.start()
        _wait(lambda: sparkplug().get("online") is True and "L1-anpr" in sparkplug().get("devices", {}), 30,
              "the node's Sparkplug births at central")
        # nobody serves the lane's PLC: the lane's fault reaches central as Sparkplug data
        _wait(lambda: sparkplug()["metrics"].get("Lanes/L1/State") == "FAULT", 20, "the lane's FAULT as NDATA")
        state = sparkplug()
        assert state["metrics"]["Lanes/L1/Faulty"] is True and state["devices"]["L1-plc"]["Connected"] is False
        assert set(state["devices"]) >= {"L1-anpr", "L1-plc"} and "Connected" in state["devices"]["L1-anpr"]
        node.kill()
        _wait(lambda: sparkplug().get("online") is False, 20, "the NDEATH (the will) after SIGKILL")
        assert sparkplug()["bd_seq"] == state["bd_seq"]
    finally:
        node.kill()
        central.stop()
