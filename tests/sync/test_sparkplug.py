"""Sparkplug B telemetry: what the node publishes decodes with pysparkplug (a library we did not write) and
follows the specification's session rules (NBIRTH first with seq 0 and bdSeq, DBIRTH per device, NDATA with
changes only, NDEATH as the will with the birth's bdSeq, rebirth on NCMD)."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as mqtt
import pysparkplug as spb
from paho.mqtt.enums import CallbackAPIVersion

from devices.transports.mqtt import MqttBus
from sync.sparkplug import (
    BD_SEQ,
    REBIRTH,
    Snapshot,
    SparkplugEncoder,
    SparkplugPublisher,
    decode_message,
    status_from_sparkplug,
)
from tests.conftest import wait_until


def _snapshot(state: str = "IDLE", connected: bool = True, error: str | None = None) -> Snapshot:
    return Snapshot({"Lanes/IMP-1/State": state, "Lanes/IMP-1/Faulty": False, "Sync/Outbox Backlog": 3},
                    {"IMP-1-anpr": {"Kind": "anpr", "Connected": connected, "Last Error": error, "Reconnects": 0}})


def test_births_decode_with_pysparkplug_and_carry_the_bd_seq():
    encoder = SparkplugEncoder("HUUNGHI")
    (n_topic, n_payload), (d_topic, d_payload) = encoder.births(_snapshot(), bd_seq=7)
    assert n_topic == "spBv1.0/smartgate/NBIRTH/HUUNGHI"
    assert d_topic == "spBv1.0/smartgate/DBIRTH/HUUNGHI/IMP-1-anpr"
    birth = spb.NBirth.decode(n_payload)
    assert birth.seq == 0
    metrics = {m.name: m for m in birth.metrics}
    assert metrics[BD_SEQ].value == 7 and metrics[BD_SEQ].datatype == spb.DataType.INT64
    assert metrics[REBIRTH].value is False
    assert metrics["Lanes/IMP-1/State"].value == "IDLE"
    device = spb.DBirth.decode(d_payload)
    assert device.seq == 1
    device_metrics = {m.name: m for m in device.metrics}
    assert device_metrics["Connected"].value is True
    assert device_metrics["Last Error"].is_null


def test_data_carries_only_what_changed_and_seq_wraps_at_256():
    encoder = SparkplugEncoder("HUUNGHI")
    encoder.births(_snapshot(), bd_seq=0)
    assert encoder.changes(_snapshot()) == []  # nothing changed: nothing to say
    messages = encoder.changes(_snapshot(state="COLLECTING", connected=False, error="broker refused"))
    kinds = [decode_message(t, p) for t, p in messages]
    assert [(m.message_type, m.device) for m in kinds] == [("NDATA", None), ("DDATA", "IMP-1-anpr")]
    assert kinds[0].metrics == {"Lanes/IMP-1/State": "COLLECTING"}
    assert kinds[1].metrics == {"Connected": False, "Last Error": "broker refused"}
    seqs = []
    for i in range(300):
        for t, p in encoder.changes(_snapshot(state=f"S{i}")):
            seqs.append(decode_message(t, p).seq)
    assert max(seqs) == 255 and 0 in seqs[250:]


def test_death_carries_the_birth_bd_seq_and_central_reads_both():
    encoder = SparkplugEncoder("HUUNGHI")
    birth_topic, birth = encoder.births(_snapshot(), bd_seq=42)[0]
    death_topic, death = encoder.death(42)
    assert death_topic == "spBv1.0/smartgate/NDEATH/HUUNGHI"
    assert spb.NDeath.decode(death).bd_seq_metric.value == 42
    assert status_from_sparkplug(decode_message(birth_topic, birth)) == ("online", 42)
    assert status_from_sparkplug(decode_message(death_topic, death)) == ("offline", 42)


def test_a_non_sparkplug_payload_is_refused_with_a_clear_error():
    try:
        decode_message("spBv1.0/smartgate/NBIRTH/HUUNGHI", b"\xff\x00 not protobuf")
    except ValueError as exc:
        assert "NBIRTH" in str(exc) or "payload" in str(exc)
    else:
        raise AssertionError("garbage decoded as a birth")


def test_publisher_births_on_connect_rebirths_on_ncmd_and_dies_by_will(tmp_path, broker):
    received: list[tuple[str, bytes]] = []
    arrived = threading.Event()

    def on_message(client, userdata, message):
        received.append((message.topic, bytes(message.payload)))
        arrived.set()

    host_tls = broker.allow("test-sparkplug-host", subscribe=("spBv1.0/smartgate/#",),
                            publish=("spBv1.0/smartgate/NCMD/HUUNGHI",))
    node_tls = broker.allow("HUUNGHI-sparkplug", subscribe=("spBv1.0/smartgate/NCMD/HUUNGHI",),
                            publish=("spBv1.0/smartgate/+/HUUNGHI", "spBv1.0/smartgate/+/HUUNGHI/+"))
    subscribed = threading.Event()
    monitor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-sparkplug-host")
    host_tls.apply(monitor)
    monitor.on_subscribe = lambda *_args: subscribed.set()
    monitor.on_message = on_message
    monitor.connect(broker.host, broker.port)
    monitor.subscribe("spBv1.0/smartgate/#", qos=1)
    monitor.loop_start()
    assert subscribed.wait(10)

    async def scenario() -> None:
        bus = MqttBus(broker.host, broker.port, "HUUNGHI-sparkplug", tls=node_tls)
        current = {"snapshot": _snapshot()}
        publisher = SparkplugPublisher(bus, "HUUNGHI", lambda: current["snapshot"], tmp_path / "bd", period_s=0.2)
        await bus.start()
        publisher.start()
        await wait_until(lambda: any("/NBIRTH/" in t for t, _ in received), 10, "the NBIRTH")
        births = [decode_message(t, p) for t, p in received if "BIRTH" in t]
        assert births[0].message_type == "NBIRTH" and births[0].seq == 0
        assert births[0].metrics[BD_SEQ] == publisher.bd_seq
        current["snapshot"] = _snapshot(state="DECIDED")
        publisher.wake()
        await wait_until(lambda: any("/NDATA/" in t for t, _ in received), 10, "the NDATA")
        data = [decode_message(t, p) for t, p in received if "/NDATA/" in t]
        assert data[-1].metrics == {"Lanes/IMP-1/State": "DECIDED"}
        count = sum("/NBIRTH/" in t for t, _ in received)
        command = spb.NCmd(timestamp=spb.get_current_timestamp(),
                           metrics=(spb.Metric(timestamp=spb.get_current_timestamp(), name=REBIRTH,
                                               datatype=spb.DataType.BOOLEAN, value=True),)).encode()
        monitor.publish("spBv1.0/smartgate/NCMD/HUUNGHI", command, qos=1)
        await wait_until(lambda: sum("/NBIRTH/" in t for t, _ in received) > count, 10, "the rebirth")
        await publisher.stop()
        await bus.stop()
        await wait_until(lambda: any("/NDEATH/" in t for t, _ in received), 10, "the NDEATH")
        death = next(decode_message(t, p) for t, p in received if "/NDEATH/" in t)
        assert death.metrics[BD_SEQ] == publisher.bd_seq

    try:
        asyncio.run(scenario())
    finally:
        monitor.loop_stop()
        monitor.disconnect()
