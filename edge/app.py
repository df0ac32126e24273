"""The edge node: builds drivers, lane controllers and the kiosk from a site config, runs them.

One asyncio loop per node. Drivers feed their lane's controller; the controller journals and acts;
the kiosk reads controller snapshots and the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from devices.anpr import AnprCameraDriver
from devices.barrier import BarrierDriver
from devices.driver import Driver
from devices.eseal import EsealReaderDriver
from devices.scanner import ScannerDriver
from devices.transports.modbus import ModbusHub, rtu_hub, tcp_hub
from devices.transports.mqtt import MqttBus, MqttTls
from devices.transports.video import LatestFrameSource
from devices.video_camera import VideoCameraDriver
from devices.weighbridge import WeighbridgeDriver
from edge.cache import DeclarationCache
from edge.claims import ClaimError
from edge.config import (
    JOURNAL_DEVICE,
    BarrierProfile,
    ConfigError,
    DeviceConfig,
    LaneConfig,
    LoadedSite,
    ModbusRtuTransport,
    ModbusTcpTransport,
    MqttTransport,
    SerialTransport,
    VideoTransport,
    mqtt_tls_problems,
)
from edge.journal import Journal
from edge.journal_guard import RESERVE_FILE, JournalGuard
from edge.lane import DeviceFailed, DeviceRestored
from edge.lane_control import LaneController
from edge.metrics import NodeMetrics
from edge.node_view import LaneNoticeCallback, LaneStatus, NodeView, NoticeFanOut, Unsubscribe
from models import load_plate_reader
from sync.sparkplug import SparkplugPublisher, node_snapshot
from sync.telemetry import TelemetryPublisher

log = logging.getLogger(__name__)


@dataclass
class NodeOptions:
    """Where the node keeps its files and whether it serves the kiosk."""

    data_dir: Path
    kiosk: bool = True
    kiosk_host: str | None = None
    kiosk_port: int | None = None
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    restore: bool = True
    serial_retry_s: float = 0.5
    telemetry_period_s: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)


class GateNode:
    """One edge node for one gate; it is the `edge.node_view.NodeView` its kiosk, telemetry, metrics and
    Sparkplug read, and its lane notices reach them all through one fan-out (`subscribe`)."""

    def __init__(self, loaded: LoadedSite, options: NodeOptions):
        self.loaded = loaded
        self.site = loaded.site
        self.options = options
        # TLS with the node's own certificates unless the site says `insecure: true` (refused otherwise).
        problems = mqtt_tls_problems(loaded, options.data_dir)
        if problems:
            raise ConfigError(problems)
        options.data_dir.mkdir(parents=True, exist_ok=True)
        self.cache = DeclarationCache.open(options.data_dir / "declarations.sqlite")
        self.journal = Journal.open(options.data_dir / "journal.sqlite")
        guarding = self.site.journal
        self.journal_guard = JournalGuard(self.journal, options.data_dir / RESERVE_FILE,
                                          reserve_bytes=int(guarding.reserve_mib * (1 << 20)),
                                          buffer_rows=guarding.buffer_rows, write_timeout_s=guarding.write_timeout_s,
                                          retry_s=guarding.retry_s)
        mqtt = self.site.mqtt
        host, port = options.mqtt_host or mqtt.host, options.mqtt_port or mqtt.port
        paths = mqtt.tls_paths(self.site.gate, loaded.path.parent, options.data_dir)
        tls = [None, None, None] if paths is None else [MqttTls(p.ca, p.cert, p.key) for p in paths] + [None]
        bus_tls, uplink_tls, sparkplug_tls = tls[:3]
        self.mqtt_insecure = paths is None
        if self.mqtt_insecure:
            log.warning("%s: mqtt.insecure is true: the device bus is plaintext and anonymous; any client on the "
                        "LAN can forge readings", loaded.path)
        # Devices: a clean session (a plate read queued while the node was away must not reach a
        # later truck). The node's uplink to central: a persistent session with a stable client id
        # (sync/telemetry.py: birth/death, telemetry; sync/client.py: feed notifications).
        self.bus = MqttBus(host, port, mqtt.client_id, username=mqtt.username, password=mqtt.password, tls=bus_tls)
        self.uplink = MqttBus(host, port, mqtt.session_client_id(self.site.gate), username=mqtt.username,
                              password=mqtt.password, clean_session=False, tls=uplink_tls)
        # Sparkplug B (sync/sparkplug.py): a connection of its own, whose will is its NDEATH.
        self.sparkplug_bus = (MqttBus(host, port, mqtt.sparkplug_id(self.site.gate), username=mqtt.username,
                                      password=mqtt.password, tls=sparkplug_tls) if mqtt.sparkplug else None)
        self.sparkplug: SparkplugPublisher | None = None
        self.metrics: NodeMetrics | None = None
        self.lanes: dict[str, LaneController] = {}
        self.notices = NoticeFanOut()  # the one channel of lane notices (NodeView.subscribe)
        self.drivers: dict[str, Driver] = {}
        self.device_lane: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []
        self._server: uvicorn.Server | None = None
        self.kiosk_port: int | None = None
        self.telemetry: TelemetryPublisher | None = None
        self.sync: Any = None  # sync.client.SyncService when the site has a `central:` section

    # ------------------------------------------------------------ build

    def _build(self) -> None:
        for lane in self.site.lanes:
            barrier_cfg = lane.device("barrier")
            assert barrier_cfg is not None  # guaranteed by config validation
            profile = self.loaded.profile_for(barrier_cfg)
            assert isinstance(profile, BarrierProfile)
            hub = self._modbus_hub(barrier_cfg.transport, profile)
            controller_ref: dict[str, LaneController] = {}

            def sink(event, _ref=controller_ref):
                _ref["controller"].submit(event)

            barrier = BarrierDriver(barrier_cfg.id, hub, profile.modbus, sink)
            controller = LaneController(
                lane,
                gate=self.site.gate,
                journal=self.journal,
                cache=self.cache,
                barrier=barrier,
                device_kinds={d.id: d.kind for d in lane.devices},
                guard=self.journal_guard,
            )
            controller_ref["controller"] = controller
            controller.listeners.append(self.notices.publish)
            self.lanes[lane.id] = controller
            self.drivers[barrier_cfg.id] = barrier
            for device in lane.devices:
                self.device_lane[device.id] = lane.id
                if device.kind != "barrier":
                    self.drivers[device.id] = self._reading_driver(device, sink)

    def _reading_driver(self, device: DeviceConfig, sink):
        """The driver of a device that produces readings (everything but the barrier)."""
        profile = self.loaded.profile_for(device)
        transport = device.transport
        if device.kind == "camera":
            assert isinstance(transport, VideoTransport)
            source = LatestFrameSource(transport.source, loop_file=transport.loop, max_fps=profile.max_fps)
            return VideoCameraDriver(device.id, source, sink, reader=load_plate_reader(profile.threads),
                                     reads=profile.read, interval_s=profile.recognise_every_s,
                                     min_confidence=profile.min_confidence, repeat_s=profile.repeat_s,
                                     vote_frames=profile.vote_frames, vote_window_s=profile.vote_window_s)
        if device.kind in ("eseal", "weighbridge"):
            assert isinstance(transport, SerialTransport)
            driver_class = EsealReaderDriver if device.kind == "eseal" else WeighbridgeDriver
            return driver_class(device.id, transport, profile, sink, retry_s=self.options.serial_retry_s)
        assert isinstance(transport, MqttTransport)
        if device.kind == "anpr":
            return AnprCameraDriver(device.id, transport, profile, self.bus, sink)
        return ScannerDriver(device.id, transport, profile, self.bus, sink, lane=self.device_lane[device.id])

    @staticmethod
    def _modbus_hub(transport: ModbusTcpTransport | ModbusRtuTransport, profile: BarrierProfile) -> ModbusHub:
        modbus = profile.modbus
        if isinstance(transport, ModbusTcpTransport):
            return tcp_hub(transport.host, transport.port, modbus.device_id, modbus.request_timeout_s)
        return rtu_hub(transport.port, baudrate=transport.baudrate, bytesize=transport.bytesize,
                       parity=transport.parity, stopbits=transport.stopbits, device_id=modbus.device_id,
                       timeout_s=modbus.request_timeout_s, retries=modbus.retries)

    def _declarations_changed(self) -> None:
        """The declaration feed changed the cache: each lane runs the rules again on a truck they hold."""
        for controller in self.lanes.values():
            controller.reevaluate("declaration feed update")

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect every device, restore lanes from the journal, serve the kiosk."""
        self._build()
        self.journal_guard.listeners.append(self._journal_changed)
        self.journal_guard.start()
        view = self.view()
        self.telemetry = TelemetryPublisher(view, self.uplink, self.options.data_dir / "mqtt_bd_seq",
                                            self.options.telemetry_period_s)
        self.telemetry.prepare()
        self.metrics = NodeMetrics(view)
        self.metrics.attach()
        if self.sparkplug_bus is not None:
            self.sparkplug = SparkplugPublisher(self.sparkplug_bus, self.site.gate, lambda: node_snapshot(view),
                                                self.options.data_dir / "sparkplug_bd_seq",
                                                group=self.site.mqtt.sparkplug_group,
                                                period_s=self.options.telemetry_period_s)
            self.subscribe(self._wake_sparkplug)
        for driver in self.drivers.values():  # before the buses connect: MQTT drivers must see the first "up"
            await driver.start()
        if self.site.central is not None:
            from sync.client import SyncService

            self.sync = SyncService(self.site.gate, self.site.central, self.journal, self.cache, bus=self.uplink,
                                    config_dir=self.loaded.path.parent,
                                    on_declarations_changed=self._declarations_changed, guard=self.journal_guard)
        await self.bus.start()
        await self.uplink.start()
        if self.sparkplug_bus is not None:
            await self.sparkplug_bus.start()
        if self.sync is not None:
            self.sync.start()
        await asyncio.gather(*(c.start(restore=self.options.restore) for c in self.lanes.values()))
        self.telemetry.start()
        if self.sparkplug is not None:
            self.sparkplug.start()
        self._tasks.append(asyncio.create_task(self._watch_lane_stalls(), name="lane-stall-watch"))
        if self.options.kiosk:
            await self._start_kiosk()
        log.info("node for %s running with lanes %s", self.site.gate, ", ".join(self.lanes))

    async def _start_kiosk(self) -> None:
        from edge.kiosk.api import create_app

        config = uvicorn.Config(
            create_app(self.view(), data_dir=self.options.data_dir, settings=self.options.extra.get("kiosk_auth"),
                       metrics=self.metrics, stopping=self._kiosk_stopping),
            host=self.options.kiosk_host or self.site.kiosk.host,
            port=self.options.kiosk_port if self.options.kiosk_port is not None else self.site.kiosk.port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._tasks.append(asyncio.create_task(self._server.serve(), name="kiosk"))
        while not self._server.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()  # raises the bind error
                raise RuntimeError("kiosk did not start")
            await asyncio.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        self.kiosk_port = sockets[0].getsockname()[1] if sockets else None

    async def stop(self) -> None:
        """Stop everything; barrier PLCs then go to their safe state on heartbeat loss."""
        if self._server is not None:
            self._server.should_exit = True
        if self.telemetry is not None:
            await self.telemetry.stop()
        if self.sparkplug is not None:
            await self.sparkplug.stop()
        for controller in self.lanes.values():
            await controller.stop()
        await self.journal_guard.stop()  # rows held in memory: one last try to write them
        for driver in self.drivers.values():
            await driver.stop()
        for task in self._tasks:
            if task.get_name() != "kiosk":
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        if self.sync is not None:
            await self.sync.stop()
        await self.bus.stop()
        await self.uplink.stop()
        if self.sparkplug_bus is not None:
            await self.sparkplug_bus.stop()
        self.journal.close()
        self.cache.close()

    def _journal_changed(self, ok: bool, reason: str | None) -> None:
        """The journal stopped (or started again) writing: every lane hears it as its `journal` device."""
        for lane_id, controller in self.lanes.items():
            controller.submit(DeviceRestored(JOURNAL_DEVICE) if ok else DeviceFailed(JOURNAL_DEVICE, reason or ""))
            # The kiosk's status strip and banners now, not at its next periodic update.
            self.notices.publish(lane_id, "device", {"device": JOURNAL_DEVICE, "connected": ok, "error": reason})
        if self.sparkplug is not None:
            self.sparkplug.wake()

    async def _watch_lane_stalls(self) -> None:
        """A lane stuck on one event (a hung disk) cannot keep its boom safe: withhold its PLC's heartbeat.

        Without the heartbeat the PLC's watchdog puts the boom in its safe state; the heartbeat
        comes back once the lane handles events again.
        """
        bound = self.site.journal.lane_stall_s
        while True:
            for controller in self.lanes.values():
                busy = controller.busy_since
                stuck = busy is not None and time.monotonic() - busy > bound
                reason = f"lane {controller.lane.id} stuck for over {bound:g} s on one event" if stuck else None
                if (controller.barrier.heartbeat_held is None) != (reason is None):
                    controller.barrier.hold_heartbeat(reason)
            await asyncio.sleep(min(0.5, bound / 4))

    def _kiosk_stopping(self) -> bool:
        return bool(self._server is not None and self._server.should_exit)

    def _wake_sparkplug(self, _lane_id: str, kind: str, _payload: dict[str, Any]) -> None:
        if kind in ("lane", "device") and self.sparkplug is not None:
            self.sparkplug.wake()

    # ------------------------------------------------------------ views (edge.node_view.NodeView)

    def view(self) -> NodeView:
        """The node as its readers see it (the node itself, typed narrow: a type checker proves it fits)."""
        return self

    def subscribe(self, callback: LaneNoticeCallback) -> Unsubscribe:
        """Every lane notice from now on, to `callback` (the one fan-out); call the result to stop."""
        return self.notices.subscribe(callback)

    def lane_ids(self) -> list[str]:
        """The gate's lanes, in configuration order."""
        return list(self.lanes)

    def lane_config(self, lane_id: str) -> LaneConfig:
        """A lane's configuration; KeyError for an unknown lane."""
        return self.lanes[lane_id].lane

    def lane_snapshot(self, lane_id: str) -> dict[str, Any]:
        """The lane machine's snapshot as plain data."""
        return self.lanes[lane_id].machine.snapshot()

    def lane_statuses(self) -> list[LaneStatus]:
        """Every lane's state and faulty devices."""
        return [LaneStatus(c.lane.id, c.state.value, dict(c.machine.faulty)) for c in self.lanes.values()]

    def available_actions(self, lane_id: str) -> list[str]:
        """The officer actions the lane accepts now."""
        return self.lanes[lane_id].machine.officer_actions()

    def open_transaction(self, lane_id: str) -> dict[str, Any] | None:
        """The lane's open transaction as plain data, or None."""
        tx = self.lanes[lane_id].machine.tx
        return None if tx is None else tx.to_dict()

    def reading_age(self, lane_id: str) -> float | None:
        """Seconds since the last reading of the lane's open transaction (lane clock), or None."""
        controller = self.lanes.get(lane_id)
        tx = controller.machine.tx if controller is not None else None
        last = getattr(tx, "last_reading_at", None)
        return None if controller is None or last is None else max(0.0, controller.clock() - last)

    async def officer_action(self, lane_id: str, action: str, officer: str, reason: str,
                             role: str | None = None) -> dict[str, Any]:
        """An officer's action at a lane (LaneError when the lane refuses it)."""
        return await self.lanes[lane_id].officer_action(action, officer, reason, role)

    async def release_claim(self, number: str, officer: str, role: str | None, reason: str) -> dict[str, Any]:
        """Give up the gate's claim on a declaration, journaled by the lane that claimed it (ClaimError if none)."""
        claim = self.cache.claims([number]).get(number)
        if claim is None:
            raise ClaimError(f"declaration {number} is not claimed at this gate")
        # A lane since removed from the site: the first lane journals it (the row names the claim's lane).
        controller = self.lanes.get(claim.lane) or next(iter(self.lanes.values()))
        return (await controller.release_claim(number, officer, role, reason)).to_dict()

    def journal_status(self) -> dict[str, Any]:
        """Whether the journal writes, why not, and how many rows wait in memory (kiosk, /healthz, telemetry)."""
        return self.journal_guard.status().to_dict()

    def sync_status(self) -> dict[str, Any]:
        """Link to central, outbox backlog, feed position (the kiosk's status strip and telemetry)."""
        if self.sync is None:
            return {"link": {"configured": False, "up": None, "since": None}, "outbox_backlog": None}
        return self.sync.status()

    def device_health(self) -> list[dict[str, Any]]:
        """Health of every device, with its lane."""
        return [
            {**driver.health.to_dict(), "lane": self.device_lane.get(device_id)}
            for device_id, driver in self.drivers.items()
        ]

    def lane_snapshots(self) -> list[dict[str, Any]]:
        """Every lane as the kiosk shows it."""
        snapshots = []
        for lane_id, controller in self.lanes.items():
            snap = controller.machine.snapshot()
            snap["name"] = controller.lane.name
            snap["direction"] = controller.lane.direction
            snap["devices"] = [h for h in self.device_health() if h["lane"] == lane_id]
            snapshots.append(snap)
        return snapshots
