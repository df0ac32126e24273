"""Runs one device simulator on its own for testers (`smartgate simulate <kind> ...`).

Each simulator speaks the device's real wire protocol on a real transport (a pty, a Modbus TCP
port, an MQTT broker), repeats its traffic every `--every` seconds, and takes faults on a
timeline: `--fault AT_S:NAME[:DURATION_S]`, e.g. `--fault 10:disconnect:5 --fault 20:garbage`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge.config import CONFIG_ROOT, load_profile
from simulators.faults import FAULT_HELP, FaultSpec, inject_fault, supported_faults

KINDS = ("barrier", "eseal", "weighbridge", "anpr", "scanner", "video", "gate")
LOOPS = ("arrival", "safety", "exit")
SIM_SITE = CONFIG_ROOT / "sites" / "simulated-gate.yaml"  # a site whose devices are the simulators


def parse_fault(text: str) -> FaultSpec:
    """`AT_S:NAME[:DURATION_S]` → FaultSpec (argparse type)."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r}: write AT_S:NAME or AT_S:NAME:DURATION_S, e.g. 10:disconnect:5")
    try:
        spec = {"at_s": float(parts[0]), "device": "this", "fault": parts[1]}
        if len(parts) == 3:
            spec["duration_s"] = float(parts[2])
        return FaultSpec.model_validate(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {exc.__class__.__name__}; faults are {', '.join(FAULT_HELP)}") from exc


SEAL_STATUSES = ("intact", "opened", "tampered")


def parse_seal(text: str) -> tuple[str, str, str | None]:
    """`ID[:STATUS[:CONTAINER]]` → (id, status, container) (argparse type); a wrong status is refused."""
    parts = text.split(":")
    if not parts[0] or len(parts) > 3:
        raise argparse.ArgumentTypeError(f"{text!r}: write ID[:STATUS[:CONTAINER]], e.g. 5E0000A1:tampered")
    status = parts[1] if len(parts) > 1 and parts[1] else "intact"
    if status not in SEAL_STATUSES:
        raise argparse.ArgumentTypeError(f"{text!r}: seal status '{status}' is not one of {', '.join(SEAL_STATUSES)}")
    return parts[0], status, parts[2] if len(parts) > 2 and parts[2] else None


def add_parsers(sub: Any) -> None:
    """Add `simulate <kind>` parsers to the CLI."""
    simulate = sub.add_parser("simulate", help="run one device simulator on its own (for testers)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = simulate.add_subparsers(dest="kind", required=True)
    fault_help = "; ".join(f"{name}: {text}" for name, text in FAULT_HELP.items())

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--every", type=float, default=5.0, help="seconds between simulated trucks (default 5)")
        p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
        p.add_argument("--fault", type=parse_fault, action="append", default=[],
                       metavar="AT_S:NAME[:DURATION_S]", help=f"inject a fault ({fault_help})")

    p = kinds.add_parser(
        "gate", help="every simulator of a site on one clock, driven by hand (console, HTTP API), for `smartgate run`",
        description="Runs the MQTT broker (TLS) and a simulator for every device of the site, writes the "
                    "certificates (and, for a site with real device addresses, a site file) that `smartgate run` "
                    "needs to run the real node against them, then takes commands: `truck 29C-123.45 arrives at "
                    "IMP-1 seal SEAL-777 weight 28000 scan clear`, `clear IMP-1`, `fault IMP-1-anpr disconnect "
                    "10`, `help`.")
    p.add_argument("--site", default=str(SIM_SITE), help=f"site file (default: {SIM_SITE.name}, made for this)")
    p.add_argument("--data-dir", help="the node's data directory: certificates go to <data-dir>/pki (default: "
                                      "the site's data_dir; <data_dir>-sim for a site with real device addresses)")
    p.add_argument("--rebind", action="store_true",
                   help="move every endpoint to a free loopback port and write <data-dir>/simulated-site.yaml "
                        "(the default for a site whose devices are not on loopback)")
    p.add_argument("--http", type=int, metavar="PORT", help="also take commands over HTTP on 127.0.0.1:PORT "
                                                            "(0: a free port)")
    p.add_argument("--no-console", action="store_true", help="do not read commands from standard input")
    p.add_argument("--travel", type=float, default=1.0, help="boom travel time in seconds (default 1)")

    p = kinds.add_parser("barrier", help="barrier PLC on Modbus TCP (or RTU on a pty)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020, help="Modbus TCP port (default 5020)")
    p.add_argument("--rtu-link", help="serve Modbus RTU instead: the node opens this path (a pty)")
    p.add_argument("--profile", default="generic-barrier-plc")
    p.add_argument("--travel", type=float, default=2.0, help="boom travel time in seconds")
    p.add_argument("--trucks", action="store_true",
                   help="drive a truck through every --every s: arrival loop, then (once the boom is open) safety "
                        "loop, then exit loop, then clear")
    p.add_argument("--occupy", action="append", default=[], choices=LOOPS, metavar="LOOP",
                   help=f"a loop occupied from the start ({', '.join(LOOPS)}); repeatable")
    p.add_argument("--stdin", action="store_true",
                   help="read loop commands from standard input, one a line: `arrival|safety|exit on|off`")
    common(p)

    p = kinds.add_parser("eseal", help="e-seal reader on a serial line (pty)")
    p.add_argument("--link", required=True, help="path the node opens as its serial port (a symlink to a pty)")
    p.add_argument("--format", choices=["eseal-ascii", "eseal-binary"], default="eseal-ascii")
    p.add_argument("--seal", type=parse_seal, action="append", default=[], metavar="ID[:STATUS[:CONTAINER]]",
                   help="seal to report each time (status intact|opened|tampered); repeatable")
    common(p)

    p = kinds.add_parser("weighbridge", help="weighbridge indicator on a serial line (pty)")
    p.add_argument("--link", required=True, help="path the node opens as its serial port (a symlink to a pty)")
    p.add_argument("--format", choices=["toledo-continuous", "sma", "rinstrum"], default="toledo-continuous")
    p.add_argument("--checksum", action="store_true", help="Toledo: send the CHK byte")
    p.add_argument("--variant", choices=["jaguar", "liden", "cardinal-short", "cardinal", "fairbanks"],
                   help="a vendor's variant: Toledo jaguar (blank tare), liden (clone status bits), cardinal-short "
                        "(no tare); SMA cardinal (11-character weights), fairbanks (stability time-out reply)")
    p.add_argument("--weight", type=float, default=28000.0, help="gross weight of each truck in kg")
    p.add_argument("--on-bridge", type=float, default=3.0, help="seconds each truck stands on the bridge")
    common(p)

    p = kinds.add_parser("anpr", help="number-plate camera publishing JSON over MQTT")
    p.add_argument("--broker", default="127.0.0.1:1883", help="host:port of the MQTT broker")
    p.add_argument("--tls", nargs=3, metavar=("CA", "CERT", "KEY"),
                   help="connect over TLS with this device certificate (smartgate pki enrol); default: plaintext")
    p.add_argument("--topic", required=True)
    p.add_argument("--plate", action="append", default=[], help="plate to publish, in turn; repeatable")
    p.add_argument("--confidence", type=float, default=0.95)
    common(p)

    p = kinds.add_parser("video", help="IP camera streaming MJPEG over HTTP: the empty lane, then each truck")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8554, help="HTTP port; the stream is http://HOST:PORT/video.mjpg")
    p.add_argument("--plate", action="append", default=[], help="plate each truck shows, in turn; repeatable")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--in-view", type=float, default=3.0, help="seconds each truck stays in view")
    common(p)

    p = kinds.add_parser("scanner", help="container X-ray scanner publishing scans over MQTT")
    p.add_argument("--broker", default="127.0.0.1:1883", help="host:port of the MQTT broker")
    p.add_argument("--tls", nargs=3, metavar=("CA", "CERT", "KEY"),
                   help="connect over TLS with this device certificate (smartgate pki enrol); default: plaintext")
    p.add_argument("--topic", required=True)
    p.add_argument("--lane", default="IMP-1")
    p.add_argument("--verdict", choices=["clear", "suspect", "pending"], default="clear")
    p.add_argument("--container", action="append", default=[], help="container number scanned; repeatable")
    p.add_argument("--analysis", type=float, default=2.0, help="seconds from scan_started to scan_completed")
    common(p)


def set_loop(sim: Any, loop: str, occupied: bool) -> None:
    """Occupy or clear one of the barrier PLC's loops, and say so."""
    sim.set_loop(loop, occupied)
    say(f"{loop} loop {'occupied' if occupied else 'clear'}")


async def _truck_passage(sim: Any, patience_s: float) -> None:
    """A truck drives up; once the boom is open it passes under it and leaves; else it waits, then backs off."""
    set_loop(sim, "arrival", True)
    deadline = time.monotonic() + patience_s
    while not sim.boom_open and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if not sim.boom_open:
        set_loop(sim, "arrival", False)
        say("boom stayed closed: the truck backs off")
        return
    set_loop(sim, "safety", True)
    set_loop(sim, "arrival", False)
    await asyncio.sleep(0.3)
    set_loop(sim, "safety", False)
    set_loop(sim, "exit", True)
    await asyncio.sleep(0.3)
    set_loop(sim, "exit", False)


def _loop_command(sim: Any, line: str) -> None:
    words = line.split()
    if not words:
        return
    if len(words) != 2 or words[0] not in LOOPS or words[1] not in ("on", "off"):
        say(f"error: {line.strip()!r}: write `arrival|safety|exit on|off`")
        return
    set_loop(sim, words[0], words[1] == "on")


def _read_loop_commands(sim: Any) -> None:
    """Apply `LOOP on|off` lines from standard input as they arrive."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    pending = bytearray()

    def readable() -> None:
        data = os.read(fd, 1024)
        if not data:
            loop.remove_reader(fd)
            return
        pending.extend(data)
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            _loop_command(sim, line.decode("utf-8", "replace"))

    loop.add_reader(fd, readable)


def _broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise SimulatorError(f"--broker {text}: write HOST:PORT, e.g. 127.0.0.1:8883") from None


async def _connect(sim: Any, host: str, port: int) -> None:
    """Connect an MQTT simulator; a broker that is not there (or refuses it) is one line, not a traceback."""
    try:
        await asyncio.to_thread(sim.start, 5.0)
    except ConnectionRefusedError:
        raise SimulatorError(f"no MQTT broker at {host}:{port} (connection refused): start it, or give --broker "
                             "HOST:PORT") from None
    except OSError as exc:  # TLS refused, host unknown, unreachable
        raise SimulatorError(f"cannot connect to the MQTT broker at {host}:{port}: {exc}") from None
    except RuntimeError as exc:  # connected at TCP level, but the broker never accepted us
        raise SimulatorError(f"the MQTT broker at {host}:{port} did not accept the connection ({exc}); with a "
                             "TLS broker give --tls CA CERT KEY") from None


def say(text: str) -> None:
    """One timestamped line on stdout; when its reader has gone (`| head`), the simulator stops cleanly."""
    try:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # later lines go nowhere
        os.kill(os.getpid(), signal.SIGTERM)  # the same clean stop as Ctrl-C


Step = Callable[[int], Awaitable[None]]


class SimulatorError(RuntimeError):
    """A simulator cannot start; the message is one line that says why and what to do."""


def _check_link(option: str, link: str) -> None:
    """The folder of a --link path must exist (a typo must not make a port nobody opens)."""
    folder = Path(link).parent
    if not folder.is_dir():
        raise SimulatorError(f"{option} {link}: the folder {folder} does not exist; create it or give another path")
    if Path(link).exists() and not Path(link).is_symlink():
        raise SimulatorError(f"{option} {link}: a file is already there (the simulator makes a link of its own)")


async def _build(args: argparse.Namespace) -> tuple[Any, Step, Callable[[], Awaitable[None]]]:
    """The simulator, what it does for truck n, and how it stops."""
    for option in ("link", "rtu_link"):
        if getattr(args, option, None):
            _check_link("--" + option.replace("_", "-"), getattr(args, option))
    if args.kind == "barrier":
        from simulators.barrier_plc import BarrierPlcRtuSimulator, BarrierPlcSimulator

        regmap = load_profile(args.profile).modbus
        if args.rtu_link:
            from simulators.serial_wire import SerialWire

            wire = SerialWire(args.rtu_link, Path(args.rtu_link).with_name(Path(args.rtu_link).name + ".plc-side"))
            wire.start()
            sim = BarrierPlcRtuSimulator(regmap, str(wire.device_link), travel_s=args.travel)
            say(f"barrier PLC on Modbus RTU: the node opens {args.rtu_link}")
        else:
            wire = None
            sim = BarrierPlcSimulator(regmap, args.host, args.port, travel_s=args.travel)
        await sim.start()
        if not args.rtu_link:
            say(f"barrier PLC on Modbus TCP {args.host}:{args.port} (device id {regmap.device_id})")
        say("heartbeat watchdog armed from power-up: until the node writes a heartbeat the boom stays closed-safe")
        for loop in args.occupy:
            set_loop(sim, loop, True)
        if args.stdin:
            _read_loop_commands(sim)

        async def truck(n: int) -> None:
            if args.trucks:
                await _truck_passage(sim, patience_s=max(1.0, args.every * 0.8))

        async def stop() -> None:
            if args.stdin:
                with contextlib.suppress(ValueError, OSError):
                    asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            await sim.stop()
            if wire:
                wire.stop()

        return sim, truck, stop

    if args.kind == "eseal":
        from simulators.eseal_reader import EsealReaderSimulator

        sim = EsealReaderSimulator(args.link, reader_id="SIM-READER", frame_format=args.format)
        sim.start()
        say(f"e-seal reader ({args.format}): the node opens {args.link}")
        seals = args.seal or [("5E0000A1", "intact", None)]

        async def truck(n: int) -> None:
            for seal_id, status, container in seals:
                if sim.present_seal(seal_id, status, container):
                    say(f"seal {seal_id} {status}")

        async def stop() -> None:
            sim.stop()

        return sim, truck, stop

    if args.kind == "weighbridge":
        from simulators.weighbridge import WeighbridgeSimulator

        try:
            sim = WeighbridgeSimulator(args.link, args.format, checksum=args.checksum, variant=args.variant)
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from exc
        sim.start()
        say(f"weighbridge indicator ({args.format}): the node opens {args.link}")

        async def truck(n: int) -> None:
            sim.drive_on(args.weight)
            say(f"truck on the bridge: {args.weight:.0f} kg")
            await asyncio.sleep(args.on_bridge)
            sim.drive_off()
            say("bridge empty")

        async def stop() -> None:
            sim.stop()

        return sim, truck, stop

    if args.kind == "video":
        from simulators.video_camera import VideoCameraSimulator

        sim = VideoCameraSimulator(args.host, args.port, fps=args.fps).start()
        plates = args.plate or ["29C-123.45"]
        say(f"video camera streaming on {sim.url}")

        async def truck(n: int) -> None:
            plate = plates[n % len(plates)]
            await asyncio.to_thread(sim.show_truck, plate)
            say(f"truck {plate} in view")
            await asyncio.sleep(min(args.in_view, args.every * 0.8))
            await asyncio.to_thread(sim.clear)

        async def stop() -> None:
            await asyncio.to_thread(sim.stop)

        return sim, truck, stop

    host, port = _broker(args.broker)
    from devices.transports.mqtt import MqttTls

    if args.tls:
        for name in args.tls:
            if not Path(name).is_file():
                raise SimulatorError(f"--tls: {name} does not exist")

    tls = MqttTls(*(Path(f) for f in args.tls)) if args.tls else None
    if args.kind == "anpr":
        from edge.pki import common_name
        from simulators.anpr_camera import AnprCameraSimulator

        # The node believes a plate only from the camera the topic belongs to: with a certificate, the
        # camera names itself by the identity it was enrolled as (the site's device id).
        camera_id = common_name(tls.cert) if tls else "sim-camera"
        sim = AnprCameraSimulator(host, port, args.topic, camera_id, tls=tls)
        await _connect(sim, host, port)
        plates = args.plate or ["29C-123.45"]
        say(f"camera publishing to {args.topic} on {host}:{port}")

        async def truck(n: int) -> None:
            plate = plates[n % len(plates)]
            await asyncio.to_thread(sim.publish_plate, plate, args.confidence)
            say(f"plate {plate}")

        async def stop() -> None:
            await asyncio.to_thread(sim.stop)

        return sim, truck, stop

    from devices.protocols.scanner_json import ScanEvent
    from devices.readings import ScanVerdict
    from simulators.scanner import ScannerSimulator

    sim = ScannerSimulator(host, port, args.topic, args.lane, "sim-scanner", tls=tls)
    await _connect(sim, host, port)
    say(f"scanner publishing to {args.topic} on {host}:{port}")

    async def truck(n: int) -> None:
        scan_id = sim.new_scan_id()
        await asyncio.to_thread(sim.publish, ScanEvent.STARTED, scan_id, args.container, ScanVerdict.PENDING)
        say(f"scan {scan_id} started")
        if args.verdict != "pending":
            await asyncio.sleep(args.analysis)
            await asyncio.to_thread(sim.publish, ScanEvent.COMPLETED, scan_id, args.container,
                                    ScanVerdict(args.verdict), f"nii://{scan_id}.png")
            say(f"scan {scan_id} completed: {args.verdict}")

    async def stop() -> None:
        await asyncio.to_thread(sim.stop)

    return sim, truck, stop


async def run_simulator(args: argparse.Namespace) -> int:
    """Run one simulator until Ctrl-C or --duration; returns the exit code.

    A simulator that cannot start (a busy port, a broker that is not there, a link in a folder that does
    not exist) says why in one line on stderr and exits 1.
    """
    try:
        sim, truck, stop = await _build(args)
    except SimulatorError as exc:
        print(f"smartgate simulate {args.kind}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        why = "the port is in use: stop what holds it or give another --port" if exc.errno == errno.EADDRINUSE \
            else str(exc)
        print(f"smartgate simulate {args.kind}: cannot start: {why}", file=sys.stderr)
        return 1
    offered = supported_faults(sim)
    for spec in args.fault:
        if spec.fault not in offered:
            await stop()
            say(f"error: a {args.kind} simulator cannot do '{spec.fault}'; it offers {', '.join(offered)}")
            return 2
    started = time.monotonic()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    down: set[str] = set()  # lasting faults under way that silence the device (disconnect)

    async def one_fault(spec: FaultSpec) -> None:
        if spec.fault == "disconnect":
            down.add(spec.fault)
        try:
            await inject_fault(sim, spec.fault, spec.duration_s, log=say)
        finally:
            down.discard(spec.fault)

    async def faults() -> None:
        running = []
        for spec in sorted(args.fault, key=lambda f: f.at_s):
            await asyncio.sleep(max(0.0, spec.at_s - (time.monotonic() - started)))
            running.append(asyncio.create_task(one_fault(spec)))
        await asyncio.gather(*running)

    async def traffic() -> None:
        n = 0
        while True:
            if down:
                say(f"truck {n + 1}: nothing sent (the device is disconnected)")
            else:
                await truck(n)
            n += 1
            await asyncio.sleep(args.every)

    tasks = [asyncio.create_task(faults()), asyncio.create_task(traffic())]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), args.duration)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await stop()
    say("stopped")
    return 0
