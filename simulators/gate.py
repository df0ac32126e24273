"""A whole simulated gate: private broker, every device simulator, and the node wired to them.

The site config's device endpoints are re-pointed at the simulators (free loopback ports, pty
links, the private broker); everything else — profiles, lanes, policies — is the site's own.
The broker is secured as at a gate: the site's ACL is put in force, the node connects with its two
certificates (device bus and uplink) and every MQTT simulator with its device's own.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

from devices.protocols.anpr_json import AnprFields
from devices.transports.mqtt import MqttTls
from edge.app import GateNode, NodeOptions
from edge.config import AnprProfile, BarrierProfile, LoadedSite, WeighbridgeProfile, site_from_mapping
from simulators.anpr_camera import AnprCameraSimulator
from simulators.barrier_plc import BarrierPlcRtuSimulator, BarrierPlcSimulator
from simulators.broker import PrivateBroker, free_port
from simulators.eseal_reader import EsealReaderSimulator
from simulators.scanner import ScannerSimulator
from simulators.serial_wire import SerialWire
from simulators.video_camera import VideoCameraSimulator
from simulators.weighbridge import WeighbridgeSimulator

log = logging.getLogger(__name__)

NODE_STOP_LIMIT_S = 30.0
"""A node that has not stopped by then may be stuck: the log names every pending task and where it waits. The
stop goes on waiting: cut short, it would leave the node's MQTT clients running, and they would take the
client ids of every node started after it."""


def _awaits(coroutine: object) -> str:
    """Where a suspended coroutine waits: each coroutine down its await chain, as file:line function."""
    places = []
    while coroutine is not None and getattr(coroutine, "cr_frame", None) is not None:
        frame = coroutine.cr_frame
        places.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}")
        coroutine = coroutine.cr_await
    return " -> ".join(places) or "(not started)"


def pending_tasks_text() -> str:
    """Every task of the running loop but the caller's, with where it waits (for a stuck stop)."""
    return "\n".join(sorted(f"{task.get_name()}: {_awaits(task.get_coro())}" for task in asyncio.all_tasks()
                            if task is not asyncio.current_task() and not task.done()))


@dataclass
class LaneRig:
    """The simulators of one lane."""

    lane_id: str
    plc: BarrierPlcSimulator
    eseal: EsealReaderSimulator | None = None
    camera: AnprCameraSimulator | None = None  # the lane's first ANPR camera
    scale: WeighbridgeSimulator | None = None
    scanner: ScannerSimulator | None = None
    video: VideoCameraSimulator | None = None
    wires: dict[str, SerialWire] = field(default_factory=dict)  # device id → cable (RTU)
    cameras: dict[str, AnprCameraSimulator] = field(default_factory=dict)  # device id → every ANPR camera (front, rear)

    def by_kind(self) -> dict[str, object]:
        return {"barrier": self.plc, "eseal": self.eseal, "anpr": self.camera, "weighbridge": self.scale,
                "scanner": self.scanner, "camera": self.video}


def bind_site(loaded: LoadedSite, workdir: Path, broker: PrivateBroker) -> tuple[LoadedSite, dict]:
    """Copy of the site with every device pointed at a simulator; returns (site, endpoints).

    The node's TLS files are the broker's credentials for its identities; a plaintext broker
    (`PrivateBroker(secure=False)`) makes the site say `insecure: true`.
    """
    data = copy.deepcopy(loaded.site.model_dump())
    mqtt = data["mqtt"]
    mqtt["host"], mqtt["port"] = broker.host, broker.port
    if broker.secure:
        bus = broker.credentials(loaded.site.mqtt.client_id)
        uplink = broker.credentials(loaded.site.mqtt.session_client_id(loaded.site.gate))
        mqtt["tls"] = {"ca": str(bus.ca), "cert": str(bus.cert), "key": str(bus.key),
                       "uplink_cert": str(uplink.cert), "uplink_key": str(uplink.key)}
        if loaded.site.mqtt.sparkplug:
            sparkplug = broker.credentials(loaded.site.mqtt.sparkplug_id(loaded.site.gate))
            mqtt["tls"].update(sparkplug_cert=str(sparkplug.cert), sparkplug_key=str(sparkplug.key))
        mqtt["insecure"] = False
    else:
        mqtt["insecure"] = True
    endpoints: dict[str, dict] = {}
    for lane in data["lanes"]:
        for device in lane["devices"]:
            transport = device["transport"]
            if transport["type"] == "modbus_tcp":
                transport["host"], transport["port"] = "127.0.0.1", free_port()
            elif transport["type"] in ("serial", "modbus_rtu"):
                transport["port"] = str(workdir / "tty" / device["id"])
            elif transport["type"] == "video":  # an MJPEG camera simulator on loopback
                transport["source"], transport["loop"] = f"http://127.0.0.1:{free_port()}/video.mjpg", False
            endpoints[device["id"]] = transport
    return site_from_mapping(data, origin=str(loaded.path)), endpoints


class _RtuCable:
    """Fault target for a PLC on RS-485: pulling the cable cuts the wire and the PLC's port."""

    def __init__(self, wire: SerialWire, plc: BarrierPlcRtuSimulator):
        self.wire, self.plc = wire, plc

    async def fault_disconnect(self) -> None:
        self.wire.cut()
        await self.plc.fault_disconnect()

    async def recover_disconnect(self) -> None:
        self.wire.reconnect()
        await self.plc.recover_disconnect()

    def __getattr__(self, name: str):
        return getattr(self.plc, name)


class SimulatedGate:
    """Starts and stops the broker, the simulators and the node together."""

    def __init__(self, loaded: LoadedSite, workdir: Path, *, kiosk_port: int | None = 0,
                 boom_travel_s: float = 0.5, broker: PrivateBroker | None = None, rebind: bool = True):
        self.original = loaded
        self.rebind = rebind  # False: the simulators serve the site's own endpoints (a site made for them)
        self.workdir = workdir
        self.kiosk_port = kiosk_port
        self.boom_travel_s = boom_travel_s
        self.broker = broker
        self._own_broker = broker is None
        self.site: LoadedSite | None = None
        self.rigs: dict[str, LaneRig] = {}
        self.node: GateNode | None = None

    async def start(self, *, node: bool = True) -> SimulatedGate:
        """Broker, then simulators, then the node (which connects to them).

        `node=False` starts only the broker and the simulators, for a node run in another process
        from `self.site` (the site bound to the simulators).
        """
        if self.broker is None:
            self.broker = await asyncio.to_thread(PrivateBroker().start)
        if self.rebind:
            self.site, _ = await asyncio.to_thread(bind_site, self.original, self.workdir, self.broker)
        else:
            self.site = self.original
        if self.broker.secure:
            await asyncio.to_thread(self.broker.load_site, self.site.site)
        for lane in self.site.site.lanes:
            self.rigs[lane.id] = await self._start_lane(lane)
        if node:
            await self.start_node()
        return self

    async def _start_lane(self, lane) -> LaneRig:
        rig: dict[str, object] = {"wires": {}, "cameras": {}}
        for device in lane.devices:
            profile = self.site.profile_for(device)
            transport = device.transport
            if device.kind == "barrier":
                assert isinstance(profile, BarrierProfile)
                if transport.type == "modbus_rtu":
                    wire = SerialWire(transport.port, self.workdir / "tty" / f"{device.id}.plc-side")
                    wire.start()
                    plc = BarrierPlcRtuSimulator(profile.modbus, str(wire.device_link), transport.baudrate,
                                                 travel_s=self.boom_travel_s)
                    rig["wires"][device.id] = wire
                else:
                    plc = BarrierPlcSimulator(profile.modbus, transport.host, transport.port,
                                              travel_s=self.boom_travel_s)
                await plc.start()
                rig["plc"] = plc
            elif device.kind == "eseal":
                eseal = EsealReaderSimulator(transport.port, reader_id=f"R-{lane.id}",
                                             frame_format=profile.frame_format)
                eseal.start()
                rig["eseal"] = eseal
            elif device.kind == "weighbridge":
                assert isinstance(profile, WeighbridgeProfile)
                scale = WeighbridgeSimulator(transport.port, profile.frame_format, checksum=profile.checksum)
                scale.start()
                rig["scale"] = scale
            elif device.kind == "anpr":
                assert isinstance(profile, AnprProfile)
                camera = AnprCameraSimulator(self.broker.host, self.broker.port, transport.topic, device.id,
                                             AnprFields(**profile.fields.model_dump()), tls=self._tls(device.id))
                await asyncio.to_thread(camera.start)
                rig["cameras"][device.id] = camera
                rig.setdefault("camera", camera)
            elif device.kind == "scanner":
                scanner = ScannerSimulator(self.broker.host, self.broker.port, transport.topic, lane.id, device.id,
                                           tls=self._tls(device.id))
                await asyncio.to_thread(scanner.start)
                rig["scanner"] = scanner
            elif device.kind == "camera":
                port = int(transport.source.rsplit(":", 1)[1].split("/", 1)[0])
                rig["video"] = VideoCameraSimulator(port=port, fps=profile.max_fps).start()
        return LaneRig(lane.id, **rig)

    def _tls(self, device_id: str) -> MqttTls | None:
        """The device's own client certificate (None on a plaintext broker)."""
        assert self.broker is not None
        return self.broker.credentials(device_id) if self.broker.secure else None

    async def start_node(self) -> GateNode:
        """(Re)start only the node, against the running simulators (restart tests)."""
        assert self.site is not None
        options = NodeOptions(
            data_dir=self.workdir / "node",
            kiosk=self.kiosk_port is not None,
            kiosk_port=self.kiosk_port,
            serial_retry_s=0.2,
        )
        self.node = GateNode(self.site, options)
        await self.node.start()
        await asyncio.wait_for(self.node.bus.connected.wait(), timeout=10)
        return self.node

    async def stop_node(self) -> None:
        """Stop the node only; the PLCs go safe by themselves when the heartbeat stops. A stop that takes
        longer than NODE_STOP_LIMIT_S is logged with what the node still waits on."""
        if self.node is None:
            return
        node, self.node = self.node, None
        stopping = asyncio.ensure_future(node.stop())
        done, _ = await asyncio.wait({stopping}, timeout=NODE_STOP_LIMIT_S)
        if not done:
            log.error("the node has not stopped after %.0f s; pending tasks:\n%s", NODE_STOP_LIMIT_S,
                      pending_tasks_text())
        await stopping

    def simulator(self, device_id: str):
        """The simulator behind a device id ("broker" for the MQTT broker), for fault injection."""
        if device_id == "broker":
            return _BrokerFaults(self.broker)
        assert self.site is not None
        for lane in self.site.site.lanes:
            rig = self.rigs[lane.id]
            for device in lane.devices:
                if device.id == device_id:
                    if device.id in rig.wires:
                        return _RtuCable(rig.wires[device.id], rig.plc)
                    if device.id in rig.cameras:
                        return rig.cameras[device.id]
                    return rig.by_kind()[device.kind]
        raise KeyError(device_id)

    async def stop(self) -> None:
        """Stop the node, then every simulator and the gate's own broker."""
        await self.stop_node()
        for rig in self.rigs.values():
            await rig.plc.stop()
            for wire in rig.wires.values():
                wire.stop()
            for serial_sim in (rig.eseal, rig.scale):
                if serial_sim is not None:
                    serial_sim.stop()
            for mqtt_sim in (*rig.cameras.values(), rig.scanner):
                if mqtt_sim is not None:
                    await asyncio.to_thread(mqtt_sim.stop)
            if rig.video is not None:
                await asyncio.to_thread(rig.video.stop)
        if self._own_broker and self.broker is not None:
            await asyncio.to_thread(self.broker.stop)


class _BrokerFaults:
    """The broker as a fault target: `restart` stops it and starts it again on the same port."""

    def __init__(self, broker: PrivateBroker):
        self.broker = broker

    async def fault_restart(self) -> None:
        await asyncio.to_thread(self.broker.stop)

    async def recover_restart(self) -> None:
        await asyncio.to_thread(self.broker.start)
