"""Sparkplug B telemetry: the node as a Sparkplug edge node, each device as a Sparkplug device.

Central tools (Ignition, HiveMQ, Node-RED, ThingsBoard) speak Sparkplug B; the payloads are the
Sparkplug protobuf, encoded and decoded by the `pysparkplug` library (not by us).

Topics (`spBv1.0/<group>/<type>/<edge node>[/<device>]`, group `smartgate`, edge node = gate id):
  NBIRTH  first message of every connection: every node metric, with `bdSeq` and
          `Node Control/Rebirth`; seq 0
  DBIRTH  one per device right after the NBIRTH: every metric of the device
  NDATA   node metrics that changed (lane states and faults, link, outbox, cache)
  DDATA   device metrics that changed (connected, last error, counters)
  NDEATH  the connection's MQTT will, carrying the same `bdSeq` as its NBIRTH
  NCMD    `Node Control/Rebirth = true` makes the node publish its births again
Every metric carries its datatype, in data messages too, so a host that missed the birth can still
decode them. `seq` runs 0..255 over every NBIRTH/DBIRTH/NDATA/DDATA of a connection; `bdSeq` 0..255 is kept in
the node's data folder so a restarted node never reuses the bdSeq of its previous life.

The codec half (`SparkplugEncoder`, `decode_message`) is sans-I/O; `SparkplugPublisher` wires it to an
`MqttBus` connection of its own (a connection has one will, and the JSON status topic of
sync/telemetry.py keeps the other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pysparkplug as spb

from devices.tasks import cancel_and_wait
from edge.node_view import NodeView
from sync.telemetry import next_bd_seq

if TYPE_CHECKING:
    from devices.transports.mqtt import MqttBus

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
DEFAULT_GROUP = "smartgate"
SEQ_MODULO = 256
REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class Snapshot:
    """Every metric of the node and of each device, as plain values."""

    node: dict[str, Scalar]
    devices: dict[str, dict[str, Scalar]] = field(default_factory=dict)


def topic(group: str, message_type: str, edge_node: str, device: str | None = None) -> str:
    """The Sparkplug topic string of one message."""
    parts = [NAMESPACE, group, message_type, edge_node] + ([device] if device else [])
    return "/".join(parts)


def _datatype(value: Scalar) -> spb.DataType:
    if isinstance(value, bool):
        return spb.DataType.BOOLEAN
    if isinstance(value, int):
        return spb.DataType.INT64
    if isinstance(value, float):
        return spb.DataType.DOUBLE
    return spb.DataType.STRING


def _encode(payload: Any) -> bytes:
    """Protobuf bytes of a payload, every metric with its datatype."""
    return payload.encode(include_dtypes=True)


def _metric(name: str, value: Scalar, timestamp: int, datatype: spb.DataType | None = None) -> spb.Metric:
    datatype = datatype or _datatype(value)
    if value is None:
        return spb.Metric(timestamp=timestamp, name=name, datatype=datatype, value=None, is_null=True)
    if datatype == spb.DataType.DOUBLE:
        value = float(value)
    return spb.Metric(timestamp=timestamp, name=name, datatype=datatype, value=value)


class SparkplugEncoder:
    """Sans-I/O: turns successive snapshots into the Sparkplug messages to publish, as (topic, bytes)."""

    def __init__(self, edge_node: str, group: str = DEFAULT_GROUP):
        self.edge_node, self.group = edge_node, group
        self._seq = 0
        self._types: dict[tuple[str | None, str], spb.DataType] = {}
        self._last_node: dict[str, Scalar] = {}
        self._last_devices: dict[str, dict[str, Scalar]] = {}

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % SEQ_MODULO
        return seq

    def _metrics(self, device: str | None, values: dict[str, Scalar], now: int, *, birth: bool) -> tuple:
        metrics = []
        for name, value in sorted(values.items()):
            key = (device, name)
            if birth and value is not None:
                self._types[key] = _datatype(value)
            datatype = self._types.setdefault(key, _datatype(value))
            metrics.append(_metric(name, value, now, datatype))
        return tuple(metrics)

    def death(self, bd_seq: int, now: int | None = None) -> tuple[str, bytes]:
        """The NDEATH for a connection with this bdSeq (its will)."""
        now = now if now is not None else spb.get_current_timestamp()
        payload = spb.NDeath(timestamp=now, bd_seq_metric=_metric(BD_SEQ, bd_seq, now, spb.DataType.INT64))
        return topic(self.group, "NDEATH", self.edge_node), _encode(payload)

    def _message(self, kind: str, device: str | None, values: dict[str, Scalar], now: int) -> tuple[str, bytes]:
        payload_class = {"NBIRTH": spb.NBirth, "DBIRTH": spb.DBirth, "NDATA": spb.NData, "DDATA": spb.DData}[kind]
        metrics = self._metrics(device, values, now, birth=kind.endswith("BIRTH"))
        payload = payload_class(timestamp=now, seq=self._next_seq(), metrics=metrics)
        return topic(self.group, kind, self.edge_node, device), _encode(payload)

    def births(self, snapshot: Snapshot, bd_seq: int, now: int | None = None) -> list[tuple[str, bytes]]:
        """NBIRTH (seq 0) then a DBIRTH per device: the first messages of a connection, or a rebirth."""
        now = now if now is not None else spb.get_current_timestamp()
        self._seq = 0
        self._types[(None, BD_SEQ)] = spb.DataType.INT64
        out = [self._message("NBIRTH", None, {**snapshot.node, BD_SEQ: bd_seq, REBIRTH: False}, now)]
        out += [self._message("DBIRTH", device, values, now) for device, values in sorted(snapshot.devices.items())]
        self._last_node = dict(snapshot.node)
        self._last_devices = {device: dict(values) for device, values in snapshot.devices.items()}
        return out

    def changes(self, snapshot: Snapshot, now: int | None = None) -> list[tuple[str, bytes]]:
        """NDATA / DDATA with the metrics that changed since the last message (DBIRTH for a new device)."""
        now = now if now is not None else spb.get_current_timestamp()
        out = []
        changed = {k: v for k, v in snapshot.node.items() if k not in self._last_node or self._last_node[k] != v}
        if changed:
            out.append(self._message("NDATA", None, changed, now))
            self._last_node.update(changed)
        for device, values in sorted(snapshot.devices.items()):
            last = self._last_devices.get(device)
            if last is None:
                out.append(self._message("DBIRTH", device, values, now))
                self._last_devices[device] = dict(values)
                continue
            diff = {k: v for k, v in values.items() if k not in last or last[k] != v}
            if diff:
                out.append(self._message("DDATA", device, diff, now))
                last.update(diff)
        return out


@dataclass(frozen=True)
class SparkplugMessage:
    """One decoded Sparkplug message: its topic parts and metrics by name."""

    group: str
    message_type: str
    edge_node: str
    device: str | None
    seq: int | None
    metrics: dict[str, Scalar]


def decode_message(topic_text: str, payload: bytes, birth: Any = None) -> SparkplugMessage:
    """Decode a Sparkplug B message with pysparkplug; ValueError when the topic or payload is not Sparkplug B.

    `birth` (a pysparkplug NBirth/DBirth) supplies the datatypes of metrics sent without one."""
    parts = topic_text.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        raise ValueError(f"not a Sparkplug B topic: {topic_text!r}")
    kinds = {"NBIRTH": spb.NBirth, "DBIRTH": spb.DBirth, "NDATA": spb.NData, "DDATA": spb.DData,
             "NDEATH": spb.NDeath, "DDEATH": spb.DDeath, "NCMD": spb.NCmd, "DCMD": spb.DCmd}
    kind = kinds.get(parts[2])
    if kind is None:
        raise ValueError(f"unknown Sparkplug message type {parts[2]!r}")
    try:
        decoded = kind.decode(payload, birth=birth)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ValueError(f"bad Sparkplug payload on {topic_text}: {exc}") from exc
    if isinstance(decoded, spb.NDeath):
        metrics = {decoded.bd_seq_metric.name: decoded.bd_seq_metric.value}
    else:
        metrics = {m.name: (None if m.is_null else m.value) for m in getattr(decoded, "metrics", ())}
    return SparkplugMessage(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None,
                            getattr(decoded, "seq", None), metrics)


def node_snapshot(node: NodeView) -> Snapshot:
    """The metrics of a running node: lanes, link and cache as node metrics, device health as device metrics."""
    values: dict[str, Scalar] = {}
    for lane in node.lane_statuses():
        values[f"Lanes/{lane.lane}/State"] = lane.state
        values[f"Lanes/{lane.lane}/Faulty"] = bool(lane.faults)
    status = node.sync_status()
    link = status.get("link") or {}
    values["Sync/Link Configured"] = bool(link.get("configured", True))
    values["Sync/Link Up"] = bool(link.get("up"))
    backlog = status.get("outbox_backlog")
    values["Sync/Outbox Backlog"] = int(backlog) if isinstance(backlog, int) else None
    values["Cache/Declarations"] = int(node.cache.count())
    devices: dict[str, dict[str, Scalar]] = {}
    for health in node.device_health():
        devices[health["device_id"]] = {
            "Kind": health["kind"], "Lane": health.get("lane"), "Connected": bool(health["connected"]),
            "Frames Good": int(health["frames_good"]), "Frames Bad": int(health["frames_bad"]),
            "Reconnects": int(health["reconnects"]), "Last Error": health.get("last_error"),
        }
    return Snapshot(values, devices)


_COMMAND_BIRTH = spb.NBirth(timestamp=0, seq=0, metrics=(
    spb.Metric(timestamp=0, name=REBIRTH, datatype=spb.DataType.BOOLEAN, value=False),))


class SparkplugPublisher:
    """Publishes a node's Sparkplug B births, data and death over an MqttBus connection of its own."""

    def __init__(self, bus: MqttBus, edge_node: str, snapshot: Callable[[], Snapshot], state_file: Path, *,
                 group: str = DEFAULT_GROUP, period_s: float = 5.0):
        self.bus, self.snapshot, self.state_file, self.period_s = bus, snapshot, state_file, period_s
        self.encoder = SparkplugEncoder(edge_node, group)
        self.bd_seq: int | None = None
        self.published = 0
        self._lock = threading.Lock()
        self._rebirth_wanted = False
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        bus.before_each_connect(self._before_connect)
        bus.on_state(lambda up, _error: self._on_state(up))
        bus.subscribe(topic(group, "NCMD", edge_node), self._on_command)

    def _before_connect(self) -> None:  # paho's thread: the will of the coming connection
        with self._lock:
            self.bd_seq = next_bd_seq(self.state_file)
            will_topic, will = self.encoder.death(self.bd_seq)
            self.bus.set_will(will_topic, will, qos=1, retain=False)

    def _on_state(self, up: bool) -> None:
        if up:
            self._rebirth_wanted = True
            self._wake.set()

    def _on_command(self, _topic: str, payload: bytes) -> None:
        try:  # a host may leave out the metric's datatype: ours (from the birth) then applies
            command = decode_message(_topic, payload, birth=_COMMAND_BIRTH)
        except ValueError as exc:
            log.warning("ignored a bad Sparkplug command: %s", exc)
            return
        if command.metrics.get(REBIRTH) is True:
            self._rebirth_wanted = True
            self._wake.set()

    def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        for message_topic, payload in messages:
            self.bus.publish(message_topic, payload, qos=0, retain=False)  # Sparkplug: data at QoS 0
            self.published += 1

    def publish_now(self) -> None:
        """Births after a (re)connection or a rebirth command, else the metrics that changed."""
        snapshot = self.snapshot()
        with self._lock:
            if self._rebirth_wanted and self.bd_seq is not None:
                self._rebirth_wanted = False
                self._publish(self.encoder.births(snapshot, self.bd_seq))
            elif self.bd_seq is not None:
                self._publish(self.encoder.changes(snapshot))

    def start(self) -> None:
        """Publish periodically (and at once after each connection) until stop()."""
        self._task = asyncio.create_task(self._run(), name="sparkplug")

    def wake(self) -> None:
        """Publish at once (a fault changed)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop publishing and send the death the will would have (a clean disconnect drops the will)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self.bd_seq is not None and self.bus.health.connected:
            death_topic, death = self.encoder.death(self.bd_seq)
            info = self.bus.publish(death_topic, death, qos=1, retain=False)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(info.wait_for_publish, 2.0)

    async def _run(self) -> None:
        while True:
            if self.bus.health.connected:
                self.publish_now()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.period_s):
                    await self._wake.wait()


def status_from_sparkplug(message: SparkplugMessage) -> tuple[str, int | None] | None:
    """(online|offline, bdSeq) for a node birth or death, None for other messages (central's host side)."""
    if message.message_type == "NBIRTH":
        bd_seq = message.metrics.get(BD_SEQ)
        return "online", bd_seq if isinstance(bd_seq, int) else None
    if message.message_type == "NDEATH":
        bd_seq = message.metrics.get(BD_SEQ)
        return "offline", bd_seq if isinstance(bd_seq, int) else None
    return None


def metrics_of(message: SparkplugMessage) -> dict[str, Any]:
    """The message's metrics without the Sparkplug bookkeeping ones."""
    return {k: v for k, v in message.metrics.items() if k not in (BD_SEQ, REBIRTH)}
