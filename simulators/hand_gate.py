"""A gate a tester drives by hand: every simulator of a site on one clock, a console and an HTTP API.

`smartgate simulate gate --site SITE` starts the private broker (TLS, the site's ACL) and a simulator
for every device of the site, writes what `smartgate run` needs to run the real node against them
(the certificates in `<data dir>/pki`, and a site file when the endpoints had to be moved to
loopback), and takes commands, one a line, on standard input and on `POST /commands` (loopback):

    truck 29C-123.45 arrives at IMP-1 seal SEAL-777 weight 28000 scan clear
    clear IMP-1                        the truck waiting at IMP-1 backs away
    fault IMP-1-anpr disconnect 10     a fault on a device (for 10 s when it lasts)
    loop IMP-1 safety on               a loop by hand
    status | help | quit

The node is another process; this side sees only what a gate's devices see: the boom moves when the
node commands the PLC. A truck drives through when the boom opens and waits at it until then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from edge.config import PROFILE_DIR, LoadedSite, load_site
from simulators.faults import FAULT_HELP, inject_fault, supported_faults
from simulators.standalone import SimulatorError, say

HELP = """commands (one a line):
  truck PLATE arrives at LANE [seal ID[:intact|opened|tampered]]... [container NUMBER]... [weight KG]
        [scan clear|suspect|pending] [confidence 0..1]
                                   a truck: the camera reads its plate, it rolls onto the arrival loop
                                   (and the weighbridge), the reader reads its seals, the scanner scans it;
                                   it drives through when the boom opens, else waits
  clear LANE                       the truck waiting at LANE backs away
  fault DEVICE FAULT [SECONDS]     e.g. fault IMP-1-anpr disconnect 10 (faults: {faults})
  loop LANE arrival|safety|exit on|off
  status                           boom, loops and truck of every lane
  help, quit"""

SCAN_VERDICTS = ("clear", "suspect", "pending")
SEAL_STATUSES = ("intact", "opened", "tampered")


class CommandError(ValueError):
    """A console or API command that cannot be carried out; the message says how to write it."""


@dataclass
class TruckOrder:
    """A truck as a tester describes it."""

    plate: str
    lane: str
    seals: list[tuple[str, str]] = field(default_factory=list)  # (seal id, status)
    containers: list[str] = field(default_factory=list)
    weight_kg: float | None = None
    scan: str | None = None
    confidence: float = 0.95


def parse_truck(words: list[str]) -> TruckOrder:
    """`truck PLATE arrives at LANE seal S weight W scan V ...` (words after `truck`) → TruckOrder."""
    if not words:
        raise CommandError("write `truck PLATE arrives at LANE ...` (see `help`)")
    plate, rest = words[0], [w for w in words[1:] if w.lower() not in ("arrives", "with", "and", ",")]
    seals: list[tuple[str, str]] = []
    containers: list[str] = []
    options: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        word = rest[i].lower()
        value = rest[i + 1] if i + 1 < len(rest) else None
        if value is None:
            raise CommandError(f"'{rest[i]}' needs a value (see `help`)")
        if word in ("at", "lane", "on"):
            options["lane"] = value
        elif word == "seal":
            seal_id, _, status = value.partition(":")
            status = status or "intact"
            if status not in SEAL_STATUSES:
                raise CommandError(f"seal status '{status}': write one of {', '.join(SEAL_STATUSES)}")
            seals.append((seal_id, status))
        elif word == "container":
            containers.append(value)
        elif word == "weight":
            try:
                options["weight_kg"] = float(value.lower().removesuffix("kg"))
            except ValueError:
                raise CommandError(f"weight '{value}': write kilograms, e.g. weight 28000") from None
        elif word == "scan":
            if value not in SCAN_VERDICTS:
                raise CommandError(f"scan '{value}': write one of {', '.join(SCAN_VERDICTS)}")
            options["scan"] = value
        elif word == "confidence":
            try:
                options["confidence"] = float(value)
            except ValueError:
                raise CommandError(f"confidence '{value}': write a number from 0 to 1") from None
        else:
            raise CommandError(f"'{rest[i]}' is not part of a truck: write seal, container, weight, scan, "
                               "confidence (see `help`)")
        i += 2
    if "lane" not in options:
        raise CommandError(f"truck {plate}: say where it arrives, e.g. `truck {plate} arrives at IMP-1`")
    return TruckOrder(plate, seals=seals, containers=containers, **options)


class HandDrivenGate:
    """The simulators of one site, driven by commands; a truck at a time per lane."""

    def __init__(self, gate: Any, say=None):
        self.gate = gate  # simulators.gate.SimulatedGate, started with node=False
        self.say = say or _say
        self._trucks: dict[str, tuple[str, asyncio.Task]] = {}
        self._back_off: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()

    # -- commands

    async def execute(self, line: str) -> str:
        """Carry out one command line; returns the reply (raises CommandError for a bad one)."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise CommandError(f"cannot read the line: {exc}") from None
        if not words:
            return ""
        verb, args = words[0].lower(), words[1:]
        if verb == "help":
            return HELP.format(faults=", ".join(FAULT_HELP))
        if verb in ("quit", "exit", "stop"):
            self.stopping.set()
            return "stopping"
        if verb == "status":
            return "\n".join(f"{lane}: {state}" for lane, state in self.status().items())
        if verb == "truck":
            order = parse_truck(args)
            self._lane(order.lane)
            if order.lane in self._trucks and not self._trucks[order.lane][1].done():
                raise CommandError(f"{order.lane}: truck {self._trucks[order.lane][0]} is still there "
                                   f"(`clear {order.lane}` backs it away)")
            self._back_off[order.lane] = asyncio.Event()
            task = self._spawn(self._drive(order))
            self._trucks[order.lane] = (order.plate, task)
            return f"{order.lane}: truck {order.plate} coming"
        if verb == "clear":
            if len(args) != 1:
                raise CommandError("write `clear LANE`")
            lane = self._lane(args[0])
            if lane not in self._trucks or self._trucks[lane][1].done():
                return f"{lane}: no truck waiting"
            self._back_off[lane].set()
            return f"{lane}: truck {self._trucks[lane][0]} backs away"
        if verb == "fault":
            return self._fault(args)
        if verb == "loop":
            if len(args) != 3 or args[1] not in ("arrival", "safety", "exit") or args[2] not in ("on", "off"):
                raise CommandError("write `loop LANE arrival|safety|exit on|off`")
            rig = self.gate.rigs[self._lane(args[0])]
            rig.plc.set_loop(args[1], args[2] == "on")
            return f"{args[0]}: {args[1]} loop {'occupied' if args[2] == 'on' else 'clear'}"
        raise CommandError(f"unknown command '{verb}': write help, truck, clear, fault, loop, status or quit")

    def _lane(self, lane: str) -> str:
        if lane not in self.gate.rigs:
            raise CommandError(f"no lane '{lane}': the lanes are {', '.join(self.gate.rigs)}")
        return lane

    def _fault(self, args: list[str]) -> str:
        if len(args) not in (2, 3):
            raise CommandError("write `fault DEVICE FAULT [SECONDS]`, e.g. fault IMP-1-anpr disconnect 10")
        device, fault = args[0], args[1]
        try:
            sim = self.gate.simulator(device)
        except KeyError:
            devices = [d.id for lane in self.gate.site.site.lanes for d in lane.devices]
            raise CommandError(f"no device '{device}': the devices are {', '.join(devices)}, broker") from None
        offered = supported_faults(sim)
        if fault not in offered:
            raise CommandError(f"{device} cannot have '{fault}'; it offers {', '.join(offered)}")
        try:
            duration = float(args[2]) if len(args) == 3 else 5.0
        except ValueError:
            raise CommandError(f"'{args[2]}' is not a number of seconds") from None
        self._spawn(inject_fault(sim, fault, duration, log=self.say, name=device))
        return f"{device}: {fault}"

    def status(self) -> dict[str, str]:
        """One line per lane: boom, occupied loops, the truck there."""
        lines = {}
        for lane, rig in self.gate.rigs.items():
            loops = [name for name, on in rig.plc.model.loops.items() if on]
            truck = self._trucks.get(lane)
            here = f", truck {truck[0]}" if truck and not truck[1].done() else ""
            lines[lane] = f"boom {_boom(rig.plc)}, loops occupied: {', '.join(loops) or 'none'}{here}"
        return lines

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.say(f"error: {task.exception()}")

    # -- a truck

    async def _drive(self, order: TruckOrder) -> None:
        lane, rig = order.lane, self.gate.rigs[order.lane]
        plc, say = rig.plc, self.say
        if rig.video is not None:
            await asyncio.to_thread(rig.video.show_truck, order.plate)
        if rig.camera is not None:
            await asyncio.to_thread(rig.camera.publish_plate, order.plate, order.confidence)
            say(f"{lane}: camera read plate {order.plate}")
        await asyncio.sleep(0.1)
        if order.weight_kg is not None:
            if rig.scale is not None:
                rig.scale.drive_on(order.weight_kg)
                say(f"{lane}: weighbridge shows {order.weight_kg:.0f} kg")
            else:
                say(f"{lane}: has no weighbridge: weight ignored")
        plc.set_loop("arrival", True)
        say(f"{lane}: truck {order.plate} on the arrival loop")
        await asyncio.sleep(0.2)
        for index, (seal_id, status) in enumerate(order.seals):
            if rig.eseal is None:
                say(f"{lane}: has no e-seal reader: seal {seal_id} ignored")
                break
            container = order.containers[index] if index < len(order.containers) else None
            sent = rig.eseal.present_seal(seal_id, status, container)
            say(f"{lane}: e-seal reader read {seal_id} {status}" if sent
                else f"{lane}: e-seal reader is disconnected: seal {seal_id} not sent")
        scan = None
        if order.scan is not None:
            if rig.scanner is None:
                say(f"{lane}: has no scanner: scan ignored")
            else:
                scan = asyncio.create_task(self._scan(lane, rig.scanner, order))
        say(f"{lane}: truck {order.plate} waits for the boom (release it at the kiosk if held; "
            f"`clear {lane}` backs it away)")
        back_off = self._back_off[lane]
        while not plc.boom_open and not back_off.is_set():
            await asyncio.sleep(0.05)
        if plc.boom_open and not back_off.is_set():
            plc.set_loop("safety", True)
            plc.set_loop("arrival", False)
            if rig.video is not None:
                rig.video.clear()  # aimed at the arrival loop, it no longer sees the truck
            if rig.scale is not None:
                rig.scale.drive_off()
            await asyncio.sleep(0.4)
            plc.set_loop("safety", False)
            plc.set_loop("exit", True)
            await asyncio.sleep(0.4)
            plc.set_loop("exit", False)
            say(f"{lane}: truck {order.plate} drove through")
        else:
            plc.set_loop("arrival", False)
            if rig.video is not None:
                rig.video.clear()
            if rig.scale is not None:
                rig.scale.drive_off()
            say(f"{lane}: truck {order.plate} backed away")
        if scan is not None:
            scan.cancel()
        if rig.video is not None:
            await asyncio.to_thread(rig.video.clear)

    async def _scan(self, lane: str, scanner: Any, order: TruckOrder) -> None:
        from devices.protocols.scanner_json import ScanEvent
        from devices.readings import ScanVerdict

        scan_id = scanner.new_scan_id()
        await asyncio.to_thread(scanner.publish, ScanEvent.STARTED, scan_id, order.containers, ScanVerdict.PENDING)
        self.say(f"{lane}: scan {scan_id} started")
        if order.scan == "pending":
            return
        await asyncio.sleep(0.3)
        await asyncio.to_thread(scanner.publish, ScanEvent.COMPLETED, scan_id, order.containers,
                                ScanVerdict(order.scan), f"nii://{scan_id}.png")
        self.say(f"{lane}: scan {scan_id} completed: {order.scan}")

    async def watch_booms(self) -> None:
        """Say every boom movement the node commands (the one thing the node's decisions show here)."""
        seen = {lane: _boom(rig.plc) for lane, rig in self.gate.rigs.items()}
        while True:
            await asyncio.sleep(0.05)
            for lane, rig in self.gate.rigs.items():
                now = _boom(rig.plc)
                if now != seen[lane]:
                    if now == "moving":
                        now = {"closed": "opening", "open": "closing"}.get(seen[lane], seen[lane])
                    if now != seen[lane]:
                        seen[lane] = now
                        self.say(f"{lane}: boom {now}")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _boom(plc: Any) -> str:
    if plc.boom_open:
        return "open"
    if plc.boom_closed:
        return "closed"
    return "moving"  # watch_booms tells opening from closing


def _say(text: str) -> None:
    say(text)


# ---------------------------------------------------------------- the node's side


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serves_as_is(loaded: LoadedSite) -> bool:
    """True when the site was made for the simulators: every endpoint on loopback, no /dev serial port."""
    site = loaded.site
    if not _loopback(site.mqtt.host):
        return False
    for lane in site.lanes:
        for device in lane.devices:
            t = device.transport
            if t.type == "modbus_tcp" and not _loopback(t.host):
                return False
            if t.type in ("serial", "modbus_rtu") and t.port.startswith("/dev/"):
                return False
            if t.type == "video" and not t.source.startswith(("http://127.0.0.1:", "http://localhost:")):
                return False
    return True


def write_node_site(site: LoadedSite, data_dir: Path, out: Path) -> Path:
    """A site file for `smartgate run`: the simulators' endpoints, data_dir, TLS files in <data_dir>/pki."""
    data = site.site.model_dump(mode="json", exclude_none=True)
    data["data_dir"] = str(data_dir.resolve())
    data["mqtt"].pop("tls", None)  # the node finds its certificates in <data_dir>/pki, where the broker's CA is
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, path in site.profile_files.items():  # profiles that lived beside the original site go with it
        if path.parent.resolve() != PROFILE_DIR.resolve():
            (out.parent / "devices").mkdir(exist_ok=True)
            (out.parent / "devices" / f"{name}.yaml").write_bytes(path.read_bytes())
    header = (f"# Written by `smartgate simulate gate --site {site.path}`: the node's view of the simulated gate.\n"
              f"# Run the node against it: smartgate run --site {out}\n")
    out.write_text(header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """Read standard input in a daemon thread (a pipe, a file or a terminal); None at its end."""

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="console", daemon=True).start()


async def _console(driver: HandDrivenGate) -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    _stdin_lines(asyncio.get_running_loop(), queue)
    while (line := await queue.get()) is not None:
        try:
            reply = await driver.execute(line)
        except CommandError as exc:
            reply = f"error: {exc}"
        if reply:
            driver.say(reply)


class CommandBody(BaseModel):
    """The body of `POST /commands`: one console line."""

    command: str = Field(max_length=1000)


def http_app(driver: HandDrivenGate):
    """The HTTP API: `POST /commands {"command": "..."}`, `GET /lanes`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI(title="smartgate simulated gate", docs_url=None, redoc_url=None)

    @app.post("/commands")
    async def command(body: CommandBody):
        try:
            return {"ok": True, "reply": await driver.execute(body.command)}
        except CommandError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=422)

    @app.get("/lanes")
    async def lanes():
        return driver.status()

    return app


async def _serve_http(driver: HandDrivenGate, port: int) -> Any:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(http_app(driver), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise OSError(f"port {port} is in use")  # uvicorn exits without raising when bind fails
        await asyncio.sleep(0.02)
    return server, task


def _check_ports_free(ports: list[tuple[str, int]]) -> None:
    """A one-line error when a port the simulators need is taken (another gate still running?)."""
    import socket

    for who, port in ports:
        fix = "give another --http PORT (0: a free one)" if who == "HTTP API" else \
            "is another simulated gate running? Stop it, or change the port in the site file"
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise SimulatorError(f"port {port} ({who}) is in use: {fix}") from None


async def run_hand_gate(args: argparse.Namespace) -> int:
    """`smartgate simulate gate`: start, print the node's command, take commands until quit or Ctrl-C."""
    from edge.broker_policy import bus_identities
    from simulators.broker import PrivateBroker
    from simulators.gate import SimulatedGate

    loaded = load_site(args.site)
    as_is = serves_as_is(loaded) and not args.rebind
    data_dir = Path(args.data_dir or (loaded.site.data_dir if as_is else f"{loaded.site.data_dir}-sim"))
    if data_dir.exists() and not data_dir.is_dir():
        raise SimulatorError(f"--data-dir {data_dir} is a file, not a folder")
    ports = [("HTTP API", args.http)] if args.http else []
    if as_is:
        ports += [("MQTT broker", loaded.site.mqtt.port)]
        ports += [(d.id, d.transport.port) for lane in loaded.site.lanes for d in lane.devices
                  if d.transport.type == "modbus_tcp"]
    _check_ports_free(ports)
    broker = PrivateBroker(port=loaded.site.mqtt.port if as_is else None, pki_dir=data_dir / "pki")
    await asyncio.to_thread(broker.start)
    gate = SimulatedGate(loaded, data_dir.resolve() / "sim", kiosk_port=None, boom_travel_s=args.travel, broker=broker,
                         rebind=not as_is)
    driver: HandDrivenGate | None = None
    server = None
    try:
        await gate.start(node=False)
        for identity in bus_identities(gate.site.site).node_identities():
            broker.credentials(identity)  # the node's certificates (bus, uplink, Sparkplug), in <data_dir>/pki/clients
        site_file = loaded.path if as_is else write_node_site(gate.site, data_dir, data_dir / "simulated-site.yaml")
        driver = HandDrivenGate(gate)
        print_endpoints(gate, broker, driver.say)
        run = f"smartgate run --site {site_file}"
        if as_is and args.data_dir:
            run += f" --data-dir {data_dir}"
        tasks = [asyncio.create_task(driver.watch_booms())]
        if args.http is not None:
            server, http_task = await _serve_http(driver, args.http)
            tasks.append(http_task)
            port = server.servers[0].sockets[0].getsockname()[1]
            driver.say(f"HTTP API on http://127.0.0.1:{port} : POST /commands "
                       '{"command": "truck ..."}, GET /lanes')
        if not args.no_console:
            tasks.append(asyncio.create_task(_console(driver)))
        driver.say(f"ready: run the node against these simulators with `{run}`; type `help` for commands")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, driver.stopping.set)
        await driver.stopping.wait()
        if server is not None:
            server.should_exit = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if driver is not None:
            await driver.close()
        await gate.stop()
        await asyncio.to_thread(broker.stop)
    _say("stopped")
    return 0


def endpoint_text(transport: Any) -> str:
    """Where a device's simulator listens or writes, in words (`Modbus TCP 127.0.0.1:15020`)."""
    if transport.type == "modbus_tcp":
        return f"Modbus TCP {transport.host}:{transport.port}"
    if transport.type == "modbus_rtu":
        return f"Modbus RTU, serial port {transport.port}"
    if transport.type == "serial":
        return f"serial port {transport.port}"
    if transport.type == "mqtt":
        return f"MQTT topic {transport.topic}"
    return f"video {transport.source}"


def print_endpoints(gate: Any, broker: Any, say) -> None:
    """Every port and path the simulated gate opened, one line each."""
    say(f"MQTT broker (TLS) on {broker.host}:{broker.port}, gate CA {broker.pki.ca_cert}")
    for lane in gate.site.site.lanes:
        for device in lane.devices:
            say(f"{lane.id}: {device.id} ({device.kind}) on {endpoint_text(device.transport)}")
