"""The `smartgate` command: thin argument parsing over edge, simulators and benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.config import CONFIG_ROOT, PROFILE_DIR, ConfigError, DataDirError, check_data_dir, load_site

DEFAULT_SITE = CONFIG_ROOT / "sites" / "huu-nghi.yaml"
DEFAULT_SCENARIO = CONFIG_ROOT / "scenarios" / "basic.yaml"
ALL_BENCHMARKS = ["decision", "cache", "journal", "archive", "codec", "modbus", "kiosk", "sync", "security", "vision",
                  "central"]


QUIET_LIBRARIES = {"pymodbus": logging.CRITICAL, "paho": logging.WARNING, "uvicorn": logging.WARNING,
                   "uvicorn.error": logging.WARNING, "uvicorn.access": logging.WARNING, "httpx": logging.WARNING,
                   "httpcore": logging.WARNING, "PIL": logging.WARNING, "onnxruntime": logging.WARNING}


def _data_dir(args: argparse.Namespace, **checks) -> Path:
    if args.data_dir:
        return check_data_dir(Path(args.data_dir), given=True, **checks)
    return check_data_dir(Path(load_site(args.site).site.data_dir), given=False, **checks)


class _NoBar:
    """Stands in for a progress bar where tqdm is missing."""

    def update(self, n: int = 1) -> None:
        """Nothing to draw."""

    def set_postfix_str(self, text: str) -> None:
        """Nothing to draw."""

    def close(self) -> None:
        """Nothing to close."""


def progress_bar(total: int | None, desc: str, unit: str) -> Any:
    """A progress bar on stderr for long work (tqdm); drawn only on a terminal, so pipes and logs stay clean."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    import shutil

    size = shutil.get_terminal_size((100, 24))  # a terminal that reports no size (0 x 0) would hide the bar
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, ncols=min(size.columns, 120),
                nrows=max(size.lines, 2),
                unit_scale=total is not None and total > 10_000)


class _CountingCache:
    """A declaration cache whose bulk upsert advances a progress bar (one step per declaration)."""

    def __init__(self, cache: Any, bar: Any):
        self._cache, self._bar = cache, bar

    def upsert_many(self, declarations):
        def counted():
            for declaration in declarations:
                self._bar.update(1)
                yield declaration

        return self._cache.upsert_many(counted())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)


def _rows_in(path: Path) -> int | None:
    """About how many records a declarations file holds (for the progress bar), or None."""
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        return None
    try:
        with path.open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None
    return max(0, lines - 1) if path.suffix.lower() == ".csv" else lines


# ---------------------------------------------------------------- commands


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        loaded = load_site(args.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {args.path}", file=sys.stderr)
        return 1
    site = loaded.site
    print(f"{args.path}: OK — gate {site.gate}, {len(site.lanes)} lanes, "
          f"{sum(len(lane.devices) for lane in site.lanes)} devices, profiles: {', '.join(loaded.profiles)}")
    for name, path in loaded.profile_files.items():
        if path.parent.resolve() != PROFILE_DIR.resolve():
            print(f"  profile {name} from {path} (beside the site: it takes precedence over a shipped one)")
    return 0


def cmd_cache_import(args: argparse.Namespace) -> int:
    from edge.cache import DeclarationCache
    from edge.declaration_import import format_import_report, import_declarations
    from edge.declarations import DeclarationError

    data_dir = _data_dir(args, writes=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    cache = DeclarationCache.open(data_dir / "declarations.sqlite")
    bar = progress_bar(_rows_in(Path(args.file)), "importing", "declarations")
    try:
        report = import_declarations(_CountingCache(cache, bar), Path(args.file))
    except DeclarationError as exc:
        bar.close()
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        cache.close()
    print(format_import_report(report))
    return 0 if not report.errors else 1


def cmd_cache_stats(args: argparse.Namespace) -> int:
    from edge.cache import DeclarationCache

    cache = DeclarationCache.open(_data_dir(args, must_exist=True, needs="declarations.sqlite")
                                  / "declarations.sqlite")
    try:
        stats = cache.stats()
        age = cache.age_seconds(datetime.now(UTC))
    finally:
        cache.close()
    stats["age_s"] = None if age is None else round(age, 1)
    print(json.dumps(stats, indent=2, ensure_ascii=False, default=str))
    return 0


def cmd_journal_verify(args: argparse.Namespace) -> int:
    from edge.journal import Journal, format_verify_report, verify_against_anchor

    path = Path(args.db) if args.db else _data_dir(args, must_exist=True) / "journal.sqlite"
    if not path.exists():
        print(f"no journal at {path}", file=sys.stderr)
        return 2
    anchor = None
    if args.against_central:
        import httpx

        from sync.client import fetch_anchor

        loaded = load_site(args.site)
        if loaded.site.central is None:
            print(f"{args.site}: no central: section, nothing to verify against", file=sys.stderr)
            return 2
        try:
            anchor = fetch_anchor(loaded.site.gate, loaded.site.central, loaded.path.parent)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            print(f"cannot fetch the journal anchor from central: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    journal = Journal.open(path)
    try:
        report = journal.verify() if anchor is None else verify_against_anchor(journal, anchor)
        anchors = journal.archive_anchors()
    finally:
        journal.close()
    print(format_verify_report(report))
    if anchor is not None and report.ok:
        head = anchor.get("head") or {}
        print(f"matches central: signed head seq {head.get('seq', 0)}, "
              f"last event seq {(anchor.get('last_event') or {}).get('seq', 0)}")
    archives_ok = _verify_archive_files(args.archive, anchors) if args.archive else True
    return 0 if report.ok and archives_ok else 1


def _archive_files(given: list[str]) -> list[Path]:
    """Archive files named on the command line; a folder stands for every journal archive in it."""
    files: list[Path] = []
    for item in given:
        path = Path(item)
        files.extend(sorted(path.glob("journal-*.jsonl.gz")) if path.is_dir() else [path])
    return files


def _verify_archive_files(given: list[str], anchors: list | None) -> bool:
    """Check archive files alone and, with `anchors` (the live journal's), as the ones it recorded."""
    from sync.journal_archive import check_against_journal, not_given, verify_archive

    files = _archive_files(given)
    if not files:
        print(f"no journal archive files in {', '.join(given)}", file=sys.stderr)
        return False
    reports = [verify_archive(path) for path in files]
    for report in reports:
        if report.ok:
            print(f"archive OK: {report.path.name}: seq {report.first_seq}..{report.last_seq}, {report.rows} rows, "
                  "chain intact")
        else:
            print(f"archive NOT OK: {report.path.name}: {len(report.problems)} problem(s)")
            print("\n".join(f"  - {problem}" for problem in report.problems))
    if anchors is None:
        return all(r.ok for r in reports)
    problems = check_against_journal(reports, anchors)
    if problems:
        print("archives NOT OK against the journal's anchors:")
        print("\n".join(f"  - {problem}" for problem in problems))
    else:
        print(f"archives match the journal's anchors: the chain runs from seq 1 through the archives into the live "
              f"journal{'' if anchors else ' (the journal records no archive)'}")
    for anchor in not_given(reports, anchors):
        print(f"note: {anchor.file} (seq {anchor.first_seq}..{anchor.last_seq}) not given, not checked")
    return all(r.ok for r in reports) and not problems


def _wrap(text: str) -> str:
    """A --help description wrapped for a terminal (the raw formatter keeps the examples' lines as written)."""
    import textwrap

    return textwrap.fill(text, 100)


def cmd_journal_archive(args: argparse.Namespace) -> int:
    from sync.journal_archive import ArchiveError, archive_journal

    path = Path(args.db) if args.db else _data_dir(args, must_exist=True) / "journal.sqlite"
    if args.before is not None:
        try:
            cut = datetime.fromisoformat(args.before)
        except ValueError:
            print(f"--before {args.before!r}: not a date; give YYYY-MM-DD or an ISO date-time", file=sys.stderr)
            return 2
        before = (cut if cut.tzinfo else cut.replace(tzinfo=UTC)).timestamp()
    elif args.keep_days < 0:
        print(f"--keep-days {args.keep_days:g}: must be 0 or more (0 archives every row central acknowledged)",
              file=sys.stderr)
        return 2
    else:
        before = datetime.now(UTC).timestamp() - args.keep_days * 86400
    try:
        result = archive_journal(path, before, out_dir=args.out, chunk=args.chunk, dry_run=args.dry_run,
                                 vacuum=args.vacuum)
    except (ArchiveError, sqlite3.Error, OSError) as exc:  # OSError: no room for the file (see --out)
        print(f"journal archive refused: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.app import GateNode, NodeOptions
    from edge.config import mqtt_tls_problems

    try:
        loaded = load_site(args.site)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    options = NodeOptions(data_dir=check_data_dir(Path(args.data_dir or loaded.site.data_dir),
                                                  given=bool(args.data_dir), writes=True),
                          kiosk_port=args.port)
    problems = mqtt_tls_problems(loaded, options.data_dir)
    if problems:  # a plaintext or anonymous device bus is refused unless the site says `insecure: true`
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"smartgate run: refused to start: the MQTT broker of {args.site} would be used without TLS "
              "client certificates", file=sys.stderr)
        return 2
    if loaded.site.mqtt.insecure:
        print(f"WARNING: {args.site}: mqtt.insecure is true: the device bus is plaintext and anonymous; "
              "the kiosk shows every lane as insecure", file=sys.stderr)

    async def main() -> None:
        node = GateNode(loaded, options)
        await node.start()
        print(f"node {loaded.site.gate} running; kiosk on http://{loaded.site.kiosk.host}:{node.kiosk_port}",
              flush=True)
        systemd_notify(f"READY=1\nSTATUS=gate {loaded.site.gate}, {len(loaded.site.lanes)} lanes")
        watchdog = asyncio.create_task(_systemd_watchdog())
        await _until_interrupted()
        systemd_notify("STOPPING=1")
        watchdog.cancel()
        await node.stop()

    asyncio.run(main())
    return 0


def systemd_notify(message: str) -> bool:
    """Tell systemd (a `Type=notify` unit) about the node: READY=1, WATCHDOG=1, STOPPING=1; False outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    import socket

    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)
        return True
    return False


async def _systemd_watchdog() -> None:
    """Ping systemd's watchdog (`WatchdogSec=`) from the event loop: a hung loop stops the pings and gets the
    node restarted. Nothing to do when the unit has no watchdog."""
    try:
        period_s = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6 / 2
    except ValueError:
        return
    if period_s <= 0 or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return
    while True:
        systemd_notify("WATCHDOG=1")
        await asyncio.sleep(period_s)


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def cmd_demo(args: argparse.Namespace) -> int:
    from simulators.scenario import load_scenario, play_scenario

    try:
        scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    workdir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="smartgate-demo-"))

    if args.scenario:
        if args.kiosk:
            _demo_users(workdir)
        bar = progress_bar(len(scenario.spec.trucks), f"scenario {scenario.spec.name or scenario.path.stem}",
                           "trucks")

        def truck_done(truck: dict) -> None:
            bar.update(1)
            outcome = truck["outcome"] if truck["played"] else "not played"
            bar.set_postfix_str(f"{truck['lane']} {truck['plate']} {outcome}")

        try:
            result = asyncio.run(play_scenario(scenario, workdir, kiosk_port=args.port if args.kiosk else None,
                                               on_truck=truck_done))
        finally:
            bar.close()
        if args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            for truck in result["trucks"]:
                mark = {True: "ok", False: "UNEXPECTED", None: ""}[truck.get("expect_met")]
                if not truck["played"]:
                    print(f"{truck['lane']:6} {truck['plate']:14} NOT PLAYED: {truck['not_played']} {mark}")
                    continue
                barrier = "opened" if truck["barrier_opened"] else "closed"
                print(f"{truck['lane']:6} {truck['plate']:14} {str(truck['outcome']):8} "
                      f"{','.join(truck['reasons']) or '-':40} barrier {barrier} {mark}")
                for step in truck.get("officer_steps", []):
                    if not step["ok"]:
                        print(f"{'':21} kiosk refused {step['action']} by {step['officer_id']} ({step['role']}): "
                              f"{step['code']}")
            print(json.dumps(result["summary"], ensure_ascii=False))
        return 1 if result["summary"]["expectations_failed"] else 0
    return asyncio.run(_interactive_demo(scenario, workdir, args.port))


def _demo_users(workdir: Path) -> list[tuple[str, str, str]]:
    """The demo's well-known kiosk users, in the demo node's data dir (simulators/gate.py: workdir/node)."""
    from edge.users import create_demo_users

    return create_demo_users(workdir / "node")


async def _interactive_demo(scenario, workdir: Path, port: int) -> int:
    from simulators.broker import PrivateBroker
    from simulators.central_sim import publish_declarations, start_central, with_central
    from simulators.gate import SimulatedGate
    from simulators.hand_gate import print_endpoints
    from simulators.scenario import play_scenario

    broker = await asyncio.to_thread(PrivateBroker().start)
    central, central_section = await asyncio.to_thread(start_central, workdir / "central", broker,
                                                       scenario.site.site.gate)
    gate = SimulatedGate(with_central(scenario.site, central_section), workdir, kiosk_port=port,
                         boom_travel_s=max(scenario.spec.timing.boom_travel_s, 1.0), broker=broker)
    demo_users = _demo_users(workdir)
    await gate.start()
    # The declarations reach the gate the way they do in service: published at central, then
    # pulled by the node through the signed feed.
    await publish_declarations(central, scenario.declarations, gate.node)
    print(f"smartgate demo: gate {scenario.site.site.gate}, lanes {', '.join(gate.rigs)}")
    print(f"kiosk: http://127.0.0.1:{gate.node.kiosk_port}  (data in {workdir})")
    from sync.tokens import new_token

    operator_token = new_token()  # to log in to central's page and acknowledge its alarms
    await asyncio.to_thread(central.store.set_api_token, "demo-operator", "operator", operator_token)
    print(f"central monitoring page: {central.url}/  (HTTPS with the demo's own CA {central.ca_file}: trust it "
          "or accept the browser's warning)")
    print(f"  log in with the operator token {operator_token}  (acknowledges and clears alarms), or the "
          f"monitor token {central.monitor_token}  (views only)")
    print(f"  API docs {central.url}/docs; Prometheus: curl --cacert {central.ca_file} -H 'Authorization: Bearer "
          f"{central.monitor_token}' {central.url}/metrics")
    print_endpoints(gate, broker, lambda line: print(f"  {line}"))
    print("kiosk log-ins (demo only): " + ", ".join(f"{role} {name}/{password}" for name, password, role in demo_users))
    print("Trucks arrive now; held trucks wait for an officer release/refuse on the kiosk. Ctrl-C stops.")
    finished = []

    def truck_done(truck: dict) -> None:
        finished.append(truck)
        print(f"{truck['lane']:6} {truck['plate']:14} {str(truck['outcome']):8} {','.join(truck['reasons']) or '-'}"
              f"  ({len(finished)}/{len(scenario.spec.trucks)} trucks)", flush=True)

    play = asyncio.create_task(play_scenario(scenario, workdir, interactive=True, gate=gate, central=central,
                                             on_truck=truck_done))
    stop = asyncio.create_task(_until_interrupted())
    await asyncio.wait({play, stop}, return_when=asyncio.FIRST_COMPLETED)
    if play.done() and not play.cancelled() and play.exception() is None:
        print("All trucks done; the gate keeps running. Ctrl-C stops.")
        await stop
    play.cancel()
    await gate.stop()
    await asyncio.to_thread(central.stop)
    await asyncio.to_thread(broker.stop)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.standalone import run_simulator

    if args.kind == "gate":
        from simulators.hand_gate import SimulatorError, run_hand_gate

        try:
            return asyncio.run(run_hand_gate(args))
        except (SimulatorError, RuntimeError, OSError) as exc:  # a busy port, no mosquitto, a real CA there
            print(f"smartgate simulate gate: {exc}", file=sys.stderr)
            return 1
    if args.kind == "link":
        from simulators.link_proxy import run_proxy

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_proxy(args.target, args.listen, args.step))
        return 0

    return asyncio.run(run_simulator(args))


def cmd_soak(args: argparse.Namespace) -> int:
    from simulators.soak import SoakOptions, run_soak  # simulators sit above the node: imported only when asked for

    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip()) if args.faults else None
    options = SoakOptions(minutes=args.minutes, seed=args.seed, fault_every_s=args.fault_every, central=args.central,
                          repeat_fraction=args.repeat_fraction, disk_mb=args.disk_mb,
                          workdir=Path(args.workdir) if args.workdir else None, keep=args.keep)
    if faults is not None:
        options.faults = faults
    return run_soak(options)


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.run import run_benchmarks  # benchmarks sit above the node: imported only when asked for
    from benchmarks.vision_bench import LabelsError

    names = ALL_BENCHMARKS if "all" in args.which else args.which
    result: dict = {}
    bar = progress_bar(len(names), "bench", "benchmarks")
    try:
        for name in names:  # one at a time, so that the bar (and its clock) says which one is running
            bar.set_postfix_str(name)
            figures = run_benchmarks([name], quick=args.quick, baseline=not args.no_baseline, gates=args.gates,
                                     only=args.only, real_crops=args.real_crops, real_frames=args.real_frames)
            result = result or {key: figures[key] for key in ("started_at", "machine", "quick")}
            result[name] = figures[name]
            bar.update(1)
    except LabelsError as exc:  # a folder of real crops or frames given that cannot be measured
        print(f"smartgate bench: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def cmd_pki(args: argparse.Namespace) -> int:
    """`smartgate pki init|enrol|revoke|broker-config`: the gate CA and the broker's identities and ACL."""
    from edge.broker_policy import (
        PolicyError,
        bus_identities,
        default_pki_dir,
        enrol_identity,
        init_site_pki,
        revoke_identity,
        write_broker_config,
    )
    from edge.pki import GatePki, PkiError

    loaded = load_site(args.site)
    site = loaded.site
    pki_dir = Path(args.dir) if args.dir else default_pki_dir(_data_dir(args))
    try:
        if args.pki_cmd == "init":
            issued = init_site_pki(site, pki_dir, tuple(args.broker_host))
            print(f"gate CA, CRL and broker certificate in {pki_dir}")
            for item in issued:
                print(f"  client certificate {item.cert} (key {item.key}, mode 600)")
            devices = [d.identity for d in bus_identities(site).devices]
            print(f"next: `smartgate pki enrol DEVICE_ID` for each MQTT device ({', '.join(devices) or 'none'}), "
                  "then `smartgate pki broker-config`")
        elif args.pki_cmd == "enrol":
            ids = [d.identity for d in bus_identities(site).devices] if args.all else args.device_id
            if not ids:
                print("smartgate pki enrol: name a device id or give --all", file=sys.stderr)
                return 2
            ca = GatePki(pki_dir).ca_cert
            for identity in ids:
                item = enrol_identity(site, pki_dir, identity)
                print(f"{identity}: certificate {item.cert}, key {item.key} (mode 600), gate CA {ca}; install the "
                      "three on the device (its MQTT TLS client settings); any previous certificate is revoked")
            print("reload the broker so that it reads the new CRL (`systemctl reload mosquitto` or SIGHUP)")
        elif args.pki_cmd == "revoke":
            serial = revoke_identity(pki_dir, args.device_id)
            print(f"{args.device_id}: certificate {serial:x} revoked (in {GatePki(pki_dir).crl}); reload the broker "
                  "(`systemctl reload mosquitto` or SIGHUP) to refuse new connections, restart it to end the "
                  "current one")
        elif args.pki_cmd == "broker-config":
            out = Path(args.out) if args.out else pki_dir / "mosquitto"
            conf, acl = write_broker_config(site, pki_dir, out, port=args.port, bind=args.bind, user=args.user)
            who = args.user or "mosquitto"
            print(f"wrote {conf} and {acl}; run `mosquitto -c {conf}`. Started as root, Mosquitto runs as {who}: "
                  f"`chown {who} {GatePki(pki_dir).server.key}` and let {who} read the CA, CRL and ACL and write "
                  f"{out / 'data'}")
    except (PkiError, PolicyError) as exc:
        print(f"smartgate pki {args.pki_cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_pki_parser(sub, site_args) -> None:
    pki = sub.add_parser("pki", help="the gate CA: certificates for the broker, node, central and each MQTT device")
    cmds = pki.add_subparsers(dest="pki_cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        site_args(p)
        p.add_argument("--dir", help="the PKI folder (default: <data-dir>/pki)")
        p.set_defaults(func=cmd_pki)

    p = cmds.add_parser("init", help="new gate CA, CRL, broker certificate, the node's and central's certificates")
    p.add_argument("--broker-host", action="append", default=[],
                   help="another DNS name or IP address the devices reach the broker by (repeatable)")
    common(p)
    p = cmds.add_parser("enrol", help="issue (or rotate) a device's client certificate; CN = its id in the site")
    p.add_argument("device_id", nargs="*", help="device id(s) from the site file")
    p.add_argument("--all", action="store_true", help="every MQTT device of the site")
    common(p)
    p = cmds.add_parser("revoke", help="revoke a device's (or the node's, central's) certificate via the CRL")
    p.add_argument("device_id")
    common(p)
    p = cmds.add_parser("broker-config", help="write mosquitto.conf and the ACL for the site")
    p.add_argument("--out", help="folder for mosquitto.conf and acl (default: <pki dir>/mosquitto)")
    p.add_argument("--port", type=int, help="TLS listener port (default: the site's mqtt.port)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--user", help="account Mosquitto runs as when started by root (default: mosquitto)")
    common(p)


def cmd_central_serve(args: argparse.Namespace) -> int:
    from sync.central.server import CentralServer
    from sync.central.workers import CentralWorkers, WorkerOptions, mqtt_settings

    if bool(args.tls_cert) != bool(args.tls_key):
        print("give both --tls-cert and --tls-key", file=sys.stderr)
        return 2
    if not args.tls_cert and not args.insecure_http:
        print("central serves HTTPS only: give --tls-cert and --tls-key (make them with `smartgate central "
              "tls`), or --insecure-http for a loopback test", file=sys.stderr)
        return 2
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    scheme = "https" if tls else "http"
    if args.workers > 1:
        from edge.broker_policy import CENTRAL_WORKERS_MAX

        if args.workers > CENTRAL_WORKERS_MAX:
            print(f"--workers: at most {CENTRAL_WORKERS_MAX} (the broker's ACL names that many central identities)",
                  file=sys.stderr)
            return 2
        options = WorkerOptions(args.db, args.key, args.tls_cert, args.tls_key, args.mqtt, args.mqtt_tls_dir)
        try:
            workers = CentralWorkers(options, workers=args.workers, host=args.host, port=args.port).start()
        except ValueError as exc:
            print(f"--workers {args.workers}: {exc}", file=sys.stderr)
            return 2
        print(f"smartgate central on {scheme}://{args.host}:{workers.port} ({args.workers} workers, pids "
              f"{' '.join(map(str, workers.pids()))}, db postgresql)", flush=True)
        workers.serve_forever()
        return 0
    try:
        mqtt, _ = mqtt_settings(args.mqtt, args.mqtt_tls_dir)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    server = CentralServer(args.db, args.key, host=args.host, port=args.port, mqtt=mqtt, tls=tls)
    print(f"smartgate central on {scheme}://{args.host}:{args.port} (db {server.store.kind})", flush=True)
    print(f"monitoring page {scheme}://{args.host}:{args.port}/ (log in with a monitor, operator or admin token: "
          "smartgate central token --role operator --name NAME); API docs at /docs, Prometheus at /metrics",
          flush=True)
    server.serve_forever()
    return 0


def cmd_central_keygen(args: argparse.Namespace) -> int:
    from sync.keys import public_b64, write_keypair

    private = Path(args.out)
    public_path = Path(args.public) if args.public else private.with_suffix(".pub.pem")
    public = write_keypair(private, public_path)
    print(f"central private key: {private} (keep it on central only)")
    print(f"central public key for sites: {public_path}")
    print(f"  or inline in the site file:  central: {{public_key: {public_b64(public)}}}")
    return 0


def _hand_out(token: str, out: str | None, what: str) -> None:
    """Print a new token, or write it to a file (mode 600)."""
    from sync.tokens import write_token_file

    if out:
        write_token_file(Path(out), token)
        print(f"new token for {what} written to {out}")
    else:
        print(token)


def cmd_central_token(args: argparse.Namespace) -> int:
    from sync.central.store import CentralStore
    from sync.tokens import new_token

    if bool(args.gate) == bool(args.role):
        print("give either --gate G (a gate's token) or --role R --name N (an operator's token)", file=sys.stderr)
        return 2
    if args.role and not args.name:
        print("--role needs --name (who holds the token; it names it for revoking)", file=sys.stderr)
        return 2
    token = new_token()
    store = CentralStore(args.db)
    try:
        if args.gate:
            store.set_gate_token(args.gate, token)
        else:
            store.set_api_token(args.name, args.role, token)
    finally:
        store.close()
    what = f"gate {args.gate}" if args.gate else f"{args.role} {args.name}"
    _hand_out(token, args.out, what)
    if args.gate and args.out:
        print(f"in the site file: central: {{token_file: {args.out}}}")
    print(f"the previous token of {what}, if any, is no longer accepted", file=sys.stderr)
    return 0


def cmd_central_revoke(args: argparse.Namespace) -> int:
    from sync.central.store import CentralStore

    if bool(args.gate) == bool(args.name):
        print("give either --gate G or --name N", file=sys.stderr)
        return 2
    store = CentralStore(args.db)
    try:
        done = store.revoke_gate(args.gate) if args.gate else store.revoke_api_token(args.name)
    finally:
        store.close()
    what = f"gate {args.gate}" if args.gate else f"token {args.name}"
    if not done:
        print(f"{what}: no such token", file=sys.stderr)
        return 1
    print(f"{what}: revoked; central refuses it from now on")
    return 0


def cmd_central_node_key(args: argparse.Namespace) -> int:
    from edge.journal import HEAD_KEY_FILE, head_public_b64, load_or_create_head_key

    data_dir = _data_dir(args)
    key = load_or_create_head_key(data_dir)
    print(f"journal-head key: {data_dir / HEAD_KEY_FILE} (mode 600; stays on this node)", file=sys.stderr)
    print(head_public_b64(key))
    return 0


def cmd_central_enrol_gate(args: argparse.Namespace) -> int:
    from sync.central.store import CentralStore
    from sync.keys import KeyError_, parse_public_key
    from sync.tokens import new_token

    text = args.node_key
    if Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8").strip()
    try:
        parse_public_key(text)
    except (KeyError_, ValueError) as exc:
        print(f"--node-key: {exc}; give what `smartgate central node-key` printed on the node", file=sys.stderr)
        return 2
    token = new_token()
    store = CentralStore(args.db)
    try:
        store.enrol_gate(args.gate, token, text)
    finally:
        store.close()
    _hand_out(token, args.out, f"gate {args.gate}")
    print(f"gate {args.gate} enrolled: its journal heads verify with the key given; its previous token, if any, "
          "is no longer accepted", file=sys.stderr)
    return 0


def cmd_central_tls(args: argparse.Namespace) -> int:
    from edge.pki import issue, make_ca

    ca_dir, out = Path(args.ca_dir), Path(args.out)
    if not (ca_dir / "ca.crt").exists():
        make_ca(ca_dir, args.ca_name)
        print(f"made CA {ca_dir / 'ca.crt'} (give it to the sites as central.ca_file)")
    issued = issue(ca_dir, out, "central", server=True, hosts=tuple(args.host))
    print(f"server certificate {issued.cert} and key {issued.key} for {', '.join(args.host)}")
    print(f"serve with: smartgate central serve --tls-cert {issued.cert} --tls-key {issued.key} ...")
    return 0


def _add_central_parser(sub) -> None:
    db_help = "central's database: sqlite:///PATH (default var/central/central.sqlite) or postgresql://..."
    db_default = "sqlite:///var/central/central.sqlite"
    central = sub.add_parser("central", help="the reference central service").add_subparsers(
        dest="central_cmd", required=True)
    p = central.add_parser("serve", help="serve events in, signed declaration feed out, gate monitoring (HTTPS)")
    p.add_argument("--db", default=db_default, help=db_help)
    p.add_argument("--key", required=True, help="central's Ed25519 private key (smartgate central keygen)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8400)
    p.add_argument("--mqtt", help="HOST:PORT of the broker for gate status/telemetry and feed notifications")
    p.add_argument("--mqtt-tls-dir", help="the gate's PKI folder (smartgate pki init): connect over TLS as "
                                          "smartgate-central (without it: plaintext, for an insecure broker)")
    p.add_argument("--tls-cert", help="central's TLS server certificate (PEM; smartgate central tls)")
    p.add_argument("--tls-key", help="its private key (PEM)")
    p.add_argument("--insecure-http", action="store_true", help="serve plain HTTP (loopback tests only)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes on the one port (PostgreSQL only; default 1); with --mqtt-tls-dir worker i "
                        "connects as smartgate-central-i (`smartgate pki enrol smartgate-central-2` ...)")
    p.set_defaults(func=cmd_central_serve)
    p = central.add_parser("token", help="issue a token: a gate's (--gate) or an operator's (--role --name); "
                                         "replaces the holder's old one; central keeps only a digest")
    p.add_argument("--gate", help="gate id, as in the site file (e.g. HUUNGHI): the gate's upload/feed token")
    p.add_argument("--role", choices=["publisher", "monitor", "operator", "admin"],
                   help="publisher: declarations; monitor: events, gates, alarms, the web page, /metrics; "
                        "operator: a monitor who also acknowledges and clears alarms; admin: all that, tokens and keys")
    p.add_argument("--name", help="who holds the role token (names it for revoking)")
    p.add_argument("--db", default=db_default, help=db_help)
    p.add_argument("--out", help="write the token to this file (mode 600) instead of printing it")
    p.set_defaults(func=cmd_central_token)
    p = central.add_parser("revoke", help="withdraw a gate's token (--gate) or an operator's (--name)")
    p.add_argument("--gate")
    p.add_argument("--name")
    p.add_argument("--db", default=db_default, help=db_help)
    p.set_defaults(func=cmd_central_revoke)
    p = central.add_parser("node-key", help="on the node: make (if absent) its journal-head key, print the public key")
    p.add_argument("--site", default=str(DEFAULT_SITE), help="site config (default: Huu Nghi)")
    p.add_argument("--data-dir", help="node data directory (default: the site's data_dir)")
    p.set_defaults(func=cmd_central_node_key)
    p = central.add_parser("enrol-gate", help="on central: register a gate's journal-head key and issue its token")
    p.add_argument("--gate", required=True)
    p.add_argument("--node-key", required=True, help="what `smartgate central node-key` printed (or a file of it)")
    p.add_argument("--db", default=db_default, help=db_help)
    p.add_argument("--out", help="write the gate's token to this file (mode 600) instead of printing it")
    p.set_defaults(func=cmd_central_enrol_gate)
    p = central.add_parser("tls", help="make a CA (if absent) and central's TLS server certificate")
    p.add_argument("--ca-dir", default="var/central/ca", help="CA directory (ca.crt, ca.key)")
    p.add_argument("--ca-name", default="smartgate central CA")
    p.add_argument("--out", default="var/central/tls", help="where central.crt and central.key go")
    p.add_argument("--host", action="append", default=[], help="DNS name or IP of central (repeat); default loopback")
    p.set_defaults(func=cmd_central_tls)
    p = central.add_parser("keygen", help="write a new Ed25519 key pair for central")
    p.add_argument("--out", default="central.key", help="private key file (default central.key)")
    p.add_argument("--public", help="public key PEM file (default: <out>.pub.pem)")
    p.set_defaults(func=cmd_central_keygen)


def _add_link_parser(simulate: argparse.ArgumentParser) -> None:
    from simulators.link_proxy import parse_step

    kinds = next(a for a in simulate._actions if isinstance(a, argparse._SubParsersAction))
    p = kinds.add_parser("link", help="TCP proxy node <-> central that drops, delays, blackholes or resets")
    p.add_argument("--target", required=True, help="HOST:PORT of central")
    p.add_argument("--listen", type=int, default=8401, help="port the node connects to (default 8401)")
    p.add_argument("--step", type=parse_step, action="append", default=[], metavar="AT_S:MODE[:DURATION_S[:MS]]",
                   help="e.g. 10:blackhole:60, 80:drop:5, 90:delay:30:500, 100:reset (modes: pass drop "
                        "blackhole delay reset)")


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartgate", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a site config and its device profiles")
    p.add_argument("path", nargs="?", default=str(DEFAULT_SITE))
    p.set_defaults(func=cmd_check_config)

    def site_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--site", default=str(DEFAULT_SITE), help="site config (default: Huu Nghi)")
        p.add_argument("--data-dir", help="node data directory (default: the site's data_dir)")

    cache = sub.add_parser("cache", help="declaration cache").add_subparsers(dest="cache_cmd", required=True)
    p = cache.add_parser("import", help="import declarations from CSV, JSON or JSON lines")
    p.add_argument("file")
    site_args(p)
    p.set_defaults(func=cmd_cache_import)
    p = cache.add_parser("stats", help="show cache size and age")
    site_args(p)
    p.set_defaults(func=cmd_cache_stats)

    journal = sub.add_parser("journal", help="the node's journal").add_subparsers(dest="journal_cmd", required=True)
    p = journal.add_parser("verify", help="check the hash chain: detects edited or deleted rows")
    p.add_argument("--db", help="journal file (default: <data-dir>/journal.sqlite)")
    p.add_argument("--against-central", action="store_true",
                   help="also compare with the head central holds: detects a truncated or re-chained journal")
    p.add_argument("--archive", action="append", metavar="FILE_OR_DIR",
                   help="also check archive files (`journal archive`): each alone, and as the ones the journal's "
                        "anchors recorded; a folder means every journal-*.jsonl.gz in it (repeatable)")
    site_args(p)
    p.set_defaults(func=cmd_journal_verify)
    p = journal.add_parser(
        "archive", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="move old rows central acknowledged to a compressed archive file; the chain stays verifiable",
        description=_wrap("Move the journal's oldest rows, up to the cut-off and never past what central has "
                          "acknowledged, to <data-dir>/archive/journal-<first>-<last>.jsonl.gz (gzip'd JSON lines: "
                          "a header, then one row per line; `zcat FILE | jq`), with a .sha256 beside it. The journal "
                          "records an anchor (range, chain ends, the file's SHA-256) and verifies from it; `journal "
                          "verify --archive DIR` checks the files. Safe while the node runs: it reads from a "
                          "snapshot and writes in short transactions (--chunk rows each). Space goes back to the "
                          "file system at once for journals made since archiving exists; an older journal needs "
                          "--vacuum once. Prints JSON: the range archived, the file, and the journal's size before "
                          "and after."),
        epilog="examples:\n  smartgate journal archive --keep-days 90\n"
               "  smartgate journal archive --before 2026-11-01 --dry-run\n"
               "  smartgate journal verify --archive var/huu-nghi/archive")
    cut = p.add_mutually_exclusive_group(required=True)
    cut.add_argument("--before", help="archive rows recorded before this UTC date or ISO date-time")
    cut.add_argument("--keep-days", type=float, help="archive rows older than this many days")
    p.add_argument("--db", help="journal file (default: <data-dir>/journal.sqlite)")
    p.add_argument("--out", help="folder for archive files (default: archive/ beside the journal; another disk "
                                 "when the data disk is full)")
    p.add_argument("--chunk", type=int, default=2000, help="rows deleted per transaction (default 2000)")
    p.add_argument("--dry-run", action="store_true", help="say what would be archived; change nothing")
    p.add_argument("--vacuum", action="store_true",
                   help="end with a full VACUUM (holds the journal's write lock while it runs: stop the node "
                        "first); needed once for a journal made before archiving existed")
    site_args(p)
    p.set_defaults(func=cmd_journal_archive)

    p = sub.add_parser("run", help="run the edge node for a site (real devices)")
    site_args(p)
    p.add_argument("--port", type=int, default=None, help="kiosk port (default: the site's)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run a simulated gate: broker, simulators, node, kiosk")
    p.add_argument("--scenario", help="play this scenario file and exit")
    p.add_argument("--json", action="store_true", help="print the scenario result as JSON")
    p.add_argument("--port", type=int, default=8080, help="kiosk port (default 8080)")
    p.add_argument("--kiosk", action="store_true", help="serve the kiosk while a scenario plays")
    p.add_argument("--data-dir", help="where the demo node keeps its files (default: a temp dir)")
    p.set_defaults(func=cmd_demo)

    from simulators.standalone import add_parsers as add_simulator_parsers

    add_simulator_parsers(sub)
    sub.choices["simulate"].set_defaults(func=cmd_simulate)
    _add_link_parser(sub.choices["simulate"])
    _add_central_parser(sub)

    from edge.users import add_users_parser

    add_users_parser(sub, site_args)
    _add_pki_parser(sub, site_args)

    p = sub.add_parser("soak", help="trucks through the real node under random faults; checks the invariants, "
                                    "prints JSON", description="Runs `smartgate run` against the simulators, a "
                       "private broker and central behind a link proxy, drives trucks through every lane and injects "
                       "one seeded random fault at a time (node SIGKILL, broker restart, central database restart, "
                       "link cut, full disk, device faults). At the end: journal verifies, central = journal exactly "
                       "once in order, no open without a release, no boom left open, no declaration released twice. "
                       "Exit 1 when an invariant failed.")
    p.add_argument("--minutes", type=float, required=True, help="how long trucks and faults go on")
    p.add_argument("--seed", type=int, default=1, help="the same seed draws the same faults at the same moments")
    p.add_argument("--fault-every", type=float, default=20.0, metavar="S",
                   help="mean seconds from one fault to the next (default 20)")
    p.add_argument("--faults", help="comma-separated kinds (default all): node_kill, broker_restart, "
                                    "central_db_restart, link_cut, disk_full, device")
    p.add_argument("--repeat-fraction", type=float, default=0.05, metavar="F",
                   help="share of trucks that come back on a declaration they already passed on (default 0.05); "
                        "the gate must not release them again")
    p.add_argument("--central", choices=["auto", "postgresql", "sqlite"], default="auto",
                   help="central's database (auto: a private PostgreSQL when installed, else SQLite)")
    p.add_argument("--disk-mb", type=int, default=256, help="size of the node's tmpfs data dir (default 256)")
    p.add_argument("--workdir", help="where the run keeps its files (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the files (logs, the node's data) after the run")
    p.set_defaults(func=cmd_soak)

    p = sub.add_parser("bench", help="run benchmarks and print JSON figures")
    p.add_argument("which", nargs="*", default=["all"],
                   help="decision, cache, journal, archive, codec, modbus, kiosk, sync, security, vision, central "
                        "or all (default)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--no-baseline", action="store_true",
                   help="vision: skip the rapidocr baseline (about 0.5 s a crop), for repeated timing runs")
    p.add_argument("--gates", type=int, help="central: simulated gates of 4 lanes (default 50; 4 with --quick)")
    p.add_argument("--only", choices=["real", "real-frames", "realistic"],
                   help="vision: measure only the real sets, only the real container frames, or only the "
                        "realistic synthetic plates (the stand-in for real Vietnamese crops)")
    p.add_argument("--real-crops", action="append", metavar="DIR",
                   help="vision: also measure this folder of real crops (plates of either country or container "
                        "codes; labels from the file names, or a labels.csv `file,label` / labels.jsonl beside "
                        "them); repeat for more folders")
    p.add_argument("--real-frames", metavar="DIR",
                   help="vision: real container frames to measure instead of the shared ones (a labels.jsonl "
                        "as in shared/data/containers/real-frames)")
    p.add_argument("--out", help="also write the JSON to this file")
    p.set_defaults(func=cmd_bench)
    return parser


def configure_logging(verbose: bool) -> None:
    """WARNING and up (device libraries' chatter included) unless -v, then INFO for everyone."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for name, quiet in QUIET_LIBRARIES.items():
        # The drivers report device faults themselves; the libraries' own retries and frame dumps would only
        # repeat them (pymodbus: not even its errors, which carry a dump of the last frames).
        logging.getLogger(name).setLevel(logging.INFO if verbose else quiet)
    if not verbose:  # FFmpeg's and OpenCV's own messages (a camera stream that drops) go to stderr directly
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def _quiet_closed_pipe() -> int:
    """stdout's reader went away (`smartgate cache stats | head`): stop quietly, as a SIGPIPE would."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    return 141


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `smartgate` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except KeyboardInterrupt:
        return 130
    except DataDirError as exc:
        print(f"smartgate: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:
        # A recognition model or its calibration missing or broken: said in one line, not a traceback.
        # Looked up lazily so that commands without cameras never load onnxruntime.
        recogniser = sys.modules.get("models.vision.recogniser")
        if recogniser is None or not isinstance(exc, recogniser.ModelError):
            raise
        print(f"smartgate: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
