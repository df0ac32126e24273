"""`smartgate soak`: trucks through the real node (`smartgate run`, its own process) under random faults.

Everything is real and on loopback: the private MQTT broker (TLS, the site's ACL), every device
simulator of the site (its cameras left out), central (HTTPS, on a private PostgreSQL when one is
installed, else SQLite) behind the link proxy of `smartgate simulate link`, and the node's data dir on
a small tmpfs of its own (so that the disk can be filled). Trucks keep coming in every lane, driven
through the simulators' wire protocols (simulators/traffic.py); one fault at a time is drawn from the
seed (`--seed`: the same seed gives the same faults, in the same order, at the same moments):

  node_kill           SIGKILL of the node, restarted after a pause
  broker_restart      the MQTT broker stops and starts again
  central_db_restart  central's PostgreSQL stops as in a crash and starts again (SQLite: central restarts)
  link_cut            the link to central blackholes, drops, resets or crawls (500 ms a chunk)
  disk_full           the node's data dir fills up to the last byte, then the filler file is deleted
  device              a device simulator's own fault (simulators/faults.py): disconnect, garbage, slow, ...

At the end the node drains its backlog and stops, and the invariants are checked (simulators/invariants.py):
`journal verify` passes; central holds the journal exactly once and in order; no barrier opened without
a journaled release before it; no boom left open after its truck; no declaration released twice; and
central's monitor heard the running node's last birth (its MQTT side lived through every fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULT_KINDS = ("node_kill", "broker_restart", "central_db_restart", "link_cut", "disk_full", "device")
LINK_MODES = ("blackhole", "drop", "reset", "delay")
OPEN_TIMEOUT_S = 6.0  # a driver waits this long at a closed boom, then backs away
SOAK_DEPARTED_CLOSE_S = 5.0  # the lanes' departed_close_s in the soak (the site's default is 30 s)
BOOM_OPEN_LIMIT_S = 600.0  # how long a boom left open after its truck is watched before the lane gives up


@dataclass
class SoakOptions:
    """What `smartgate soak` was asked for."""

    minutes: float
    seed: int = 1
    fault_every_s: float = 20.0
    repeat_fraction: float = 0.05  # of presentations: a truck that passed before comes back on the same declaration
    faults: tuple[str, ...] = FAULT_KINDS
    central: str = "auto"  # auto | postgresql | sqlite
    disk_mb: int = 256
    workdir: Path | None = None
    keep: bool = False


@dataclass
class _Run:
    """What happened, for the summary."""

    started: float = field(default_factory=time.monotonic)
    faults: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trucks: Counter = field(default_factory=Counter)
    booms_left_open: list[str] = field(default_factory=list)
    repeat_passes: list[str] = field(default_factory=list)  # a truck through the boom twice on one declaration
    crashes: list[str] = field(default_factory=list)
    peak_bytes: Counter = field(default_factory=Counter)  # the largest size seen of each file in the data dir

    def at(self) -> float:
        return round(time.monotonic() - self.started, 1)


def say(text: str) -> None:
    """Progress on stderr (stdout carries the JSON summary alone)."""
    print(f"{time.strftime('%H:%M:%S')} soak: {text}", file=sys.stderr, flush=True)


def draw_faults(options: SoakOptions, duration_s: float) -> list[dict[str, Any]]:
    """The run's fault plan, from the seed alone: [{at_s, kind, duration_s, ...}], one fault at a time."""
    rng = random.Random(options.seed)
    plan, t = [], 0.0
    while True:
        t += rng.uniform(0.5, 1.5) * options.fault_every_s
        kind = rng.choice(options.faults)
        step: dict[str, Any] = {"at_s": round(t, 1), "kind": kind,
                                "duration_s": round(rng.uniform(1.0, min(20.0, options.fault_every_s)), 1)}
        if kind == "link_cut":
            step["mode"] = rng.choice(LINK_MODES)
        elif kind == "device":
            step["pick"] = rng.random()  # the device and its fault, chosen once the site's simulators run
            step["pick_fault"] = rng.random()
        elif kind == "node_kill":
            step["duration_s"] = round(rng.uniform(0.0, 3.0), 1)  # down this long before the restart
        if t + step["duration_s"] > duration_s - 5.0:
            return plan
        plan.append(step)
        t += step["duration_s"]


def fill_disk(folder: Path) -> int:
    """Write a filler file in `folder` until the file system says it is full; return the bytes written."""
    written = 0
    fd = os.open(folder / "soak-disk-fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 512):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    written += os.write(fd, chunk)
    finally:
        os.close(fd)
    return written


def free_disk(folder: Path) -> None:
    (folder / "soak-disk-fill").unlink(missing_ok=True)


def mount_tmpfs(folder: Path, size_mb: int) -> str | None:
    """Mount a tmpfs of `size_mb` on `folder`; None when done, else why not (not root, mount refused)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs for the node's data dir"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}"
    return None


def _du(folder: Path) -> dict[str, int]:
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "soak-disk-fill"}
    sizes["total"] = sum(sizes.values())
    return sizes


class Soak:
    """One soak run: start everything, drive trucks and faults for the run's minutes, check, clean up."""

    def __init__(self, options: SoakOptions):
        self.options = options
        self.run = _Run()
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="smartgate-soak-"))
        self.node_dir = self.workdir / "node"
        self.stopping = asyncio.Event()
        self.killing = False  # the node is down on purpose (a node_kill fault)
        self.pg = self.central = self.proxy = self.gate = self.broker = self.node = None
        self.tmpfs = False
        self.journal_bytes_at_start = 0
        self.node_started_at = 0.0

    # ------------------------------------------------------------------ set-up

    async def _start(self) -> list[dict]:
        from edge.config import CONFIG_ROOT, load_site
        from simulators.broker import PrivateBroker
        from simulators.central_sim import central_client, start_central, with_central
        from simulators.gate import SimulatedGate
        from simulators.link_proxy import LinkProxy
        from simulators.node_process import NodeProcess, write_site
        from simulators.postgres import PrivatePostgres, pg_bin
        from simulators.traffic import blind_fleet

        options = self.options
        if "disk_full" in options.faults:
            why = mount_tmpfs(self.node_dir, options.disk_mb)
            self.tmpfs = why is None
            if why:
                self.run.notes.append(f"disk_full skipped: {why}")
                options.faults = tuple(f for f in options.faults if f != "disk_full") or ("node_kill",)
        self.node_dir.mkdir(parents=True, exist_ok=True)
        db_url = None
        if options.central != "sqlite":
            if pg_bin() is None:
                if options.central == "postgresql":
                    raise RuntimeError("--central postgresql: no PostgreSQL server installed")
                self.run.notes.append("central on SQLite: no PostgreSQL installed (a database restart restarts "
                                      "central)")
            else:
                self.pg = PrivatePostgres()
                await asyncio.to_thread(self.pg.start)
                db_url = await asyncio.to_thread(self.pg.create_database, "central")
        site = load_site(CONFIG_ROOT / "sites" / "huu-nghi.yaml")  # smartgate's default site
        gate_id = site.site.gate
        self.broker = await asyncio.to_thread(PrivateBroker().start)
        self.central, section = await asyncio.to_thread(start_central, self.workdir / "central", self.broker, gate_id,
                                                        node_data_dir=self.node_dir, db_url=db_url)
        self.proxy = await LinkProxy("127.0.0.1", self.central.port).start()
        section.update(url=f"https://127.0.0.1:{self.proxy.port}", feed_poll_s=2.0, down_after_s=6.0,
                       backoff_initial_s=0.2, backoff_max_s=2.0, upload_batch=200)
        self.gate = SimulatedGate(with_central(site, section), self.workdir, kiosk_port=None, boom_travel_s=0.2,
                                  broker=self.broker)
        await self.gate.start(node=False)
        data = self.gate.site.site.model_dump(mode="json", exclude_none=True)
        for lane in data["lanes"]:  # plate reading from video is tested elsewhere; it would slow every start-up
            lane["devices"] = [d for d in lane["devices"] if d["kind"] != "camera"]
            # Its trucks back away at once and never come back to a boom that opened late: the boom must be
            # down again within the check's 10 s, so the lanes close behind a departed truck after 5 s.
            lane.setdefault("policy", {})["departed_close_s"] = SOAK_DEPARTED_CLOSE_S
        per_lane = min(40_000, max(50, int(options.minutes * 60 / 1.5)))  # more than a lane can take
        self.fleets, declarations = {}, []
        for lane in data["lanes"]:
            self.fleets[lane["id"]], rows = blind_fleet(lane["direction"], per_lane, gate_id)
            declarations += rows
        async with central_client(self.central, "publisher", timeout_s=60) as client:
            for i in range(0, len(declarations), 1000):
                answer = await client.post("/api/v1/declarations", json={"declarations": declarations[i:i + 1000]})
                answer.raise_for_status()
        self.gate_id = gate_id
        self.node = NodeProcess(write_site(data, self.workdir / "site.yaml"), self.node_dir,
                                self.workdir / "node.log")
        self._start_node()
        await self._until(self.node.running.is_set, 120, "the node to run")
        await self._until(lambda: self._rows("declarations.sqlite", "SELECT count(*) FROM declarations")
                          >= len(declarations), 180, "the declarations to reach the node through the feed")
        self.journal_bytes_at_start = (self.node_dir / "journal.sqlite").stat().st_size
        return data["lanes"]

    def _start_node(self) -> None:
        self.node_started_at = time.time()
        self.node.start()

    async def _until(self, predicate, timeout_s: float, what: str) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}; see {self.node.log_path}")
            await asyncio.sleep(0.1)
        return True

    def _rows(self, db: str, sql: str) -> int:
        from simulators.invariants import count_rows

        return count_rows(self.node_dir / db, sql)

    # ------------------------------------------------------------------ traffic and faults

    async def _traffic(self, lane_id: str) -> None:
        """Trucks of the lane's fleet, one after another; now and then one that passed comes back (a second
        trip on the same declaration, or a cloned plate), which the gate must not release again."""
        from simulators.traffic import drive_blind

        rig = self.gate.rigs[lane_id]
        rng = random.Random(f"{self.options.seed}-{lane_id}")
        fleet, passed = iter(self.fleets[lane_id]), []
        while not self.stopping.is_set():
            repeat = bool(passed) and rng.random() < self.options.repeat_fraction
            truck = rng.choice(passed) if repeat else next(fleet, None)
            if truck is None:
                self.run.notes.append(f"lane {lane_id}: fleet used up")
                return
            try:
                opened = await drive_blind(rig, truck, open_timeout_s=OPEN_TIMEOUT_S)
            except Exception as exc:  # a simulator that could not send (its broker restarting): the truck leaves
                self.run.trucks["driver_errors"] += 1
                self.run.notes.append(f"t={self.run.at()} s lane {lane_id} truck {truck.plate}: "
                                      f"{type(exc).__name__}: {exc}")
                rig.plc.set_loop("arrival", False)
                continue
            self.run.trucks["presented"] += 1
            self.run.trucks["passed" if opened else "turned_away"] += 1
            if repeat:
                self.run.trucks["repeat_presented"] += 1
                if opened:
                    self.run.trucks["repeat_passed"] += 1
                    self.run.repeat_passes.append(f"t={self.run.at()} s lane {lane_id}: truck {truck.plate} passed "
                                                  "again on a declaration it had already passed on")
            elif opened:
                passed.append(truck)
            if not rig.plc.boom_closed:
                since, at = time.monotonic(), self.run.at()
                while not rig.plc.boom_closed and time.monotonic() - since < BOOM_OPEN_LIMIT_S:
                    await asyncio.sleep(0.1)
                self.run.booms_left_open.append(
                    f"lane {lane_id}: boom still open 10 s after truck {truck.plate} left (t={at} s); "
                    f"closed {time.monotonic() - since:.1f} s later" if rig.plc.boom_closed else
                    f"lane {lane_id}: boom still open after truck {truck.plate} (t={at} s) and "
                    f"{BOOM_OPEN_LIMIT_S:g} s more")
            await asyncio.sleep(rng.uniform(0.2, 1.0))

    async def _supervise(self) -> None:
        """A node that died without being killed is a finding: say so, and start it again."""
        while not self.stopping.is_set():
            await asyncio.sleep(1.0)
            if not self.killing and not self.node.alive():
                tail = self.node.log_path.read_text(errors="replace").splitlines()[-5:]
                self.run.crashes.append(f"t={self.run.at()} s: the node exited by itself "
                                        f"(code {self.node.process.returncode}): {' | '.join(tail)}")
                say(self.run.crashes[-1])
                self._start_node()

    async def _sample_disk(self) -> None:
        """Every 2 s, the size of each file of the node's data dir (the WAL grows and shrinks between checkpoints)."""
        while not self.stopping.is_set():
            with contextlib.suppress(OSError):
                for name, size in _du(self.node_dir).items():
                    if name != "soak-disk-fill":
                        self.run.peak_bytes[name] = max(self.run.peak_bytes[name], size)
            await asyncio.sleep(2.0)

    async def _faults(self, plan: list[dict[str, Any]]) -> None:
        for step in plan:
            delay = self.run.started + step["at_s"] - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            record = {**{k: v for k, v in step.items() if not k.startswith("pick")}, "planned_at_s": step["at_s"],
                      "at_s": self.run.at()}  # later than planned when the fault before it overran
            try:
                record.update(await self._inject(step) or {})
            except Exception as exc:  # a fault that cannot be injected is reported, the run goes on
                record["error"] = f"{type(exc).__name__}: {exc}"
            say(f"fault {json.dumps(record)}")
            self.run.faults.append(record)

    async def _inject(self, step: dict[str, Any]) -> dict[str, Any] | None:
        from simulators.central_sim import restart_central
        from simulators.faults import inject_fault, supported_faults

        kind, duration = step["kind"], step["duration_s"]
        if kind == "node_kill":
            self.killing = True
            try:
                self.node.kill()
                await asyncio.sleep(duration)
                self._start_node()
                await self._until(self.node.running.is_set, 120, "the node to run again")
            finally:
                self.killing = False
            return None
        if kind == "broker_restart":
            await inject_fault(self.gate.simulator("broker"), "restart", duration)
            return None
        if kind == "central_db_restart":
            if self.pg is not None:
                await asyncio.to_thread(self.pg.stop)
                await asyncio.sleep(duration)
                await asyncio.to_thread(self.pg.start)
                return {"database": "postgresql"}
            self.central = await asyncio.to_thread(restart_central, self.central, duration)
            return {"database": "sqlite (central restarted)"}
        if kind == "link_cut":
            self.proxy.set_mode(step["mode"], delay_ms=500.0)
            await asyncio.sleep(duration)
            self.proxy.set_mode("pass")
            return None
        if kind == "disk_full":
            written = await asyncio.to_thread(fill_disk, self.node_dir)
            try:
                await asyncio.sleep(duration)
            finally:
                free_disk(self.node_dir)
            return {"filled_bytes": written}
        devices = sorted(d.id for lane in self.gate.site.site.lanes for d in lane.devices if d.kind != "camera")
        device = devices[int(step["pick"] * len(devices))]
        simulator = self.gate.simulator(device)
        offered = [f for f in supported_faults(simulator) if f != "restart"]
        fault = offered[int(step["pick_fault"] * len(offered))]
        await inject_fault(simulator, fault, duration)
        return {"device": device, "fault": fault}

    # ------------------------------------------------------------------ the end

    async def _drain(self) -> str | None:
        """The node, stopped cleanly and started once more (a death and a birth central's monitor must hear),
        uploads everything; None when central caught up, else why not."""
        await asyncio.to_thread(self.node.stop, 60)
        self._start_node()
        with contextlib.suppress(TimeoutError):
            await self._until(self.node.running.is_set, 120, "the node to run for the drain")
        try:
            await self._until(lambda: self._rows("journal.sqlite", "SELECT count(*) FROM outbox") == 0
                              and self.central.store.event_count(self.gate_id)
                              >= self._rows("journal.sqlite", "SELECT count(*) FROM journal"),
                              300, "central to hold every journal event")
        except TimeoutError as exc:
            return str(exc)
        return None

    async def _central_hears_the_gate(self) -> list[str]:
        """Central's monitor heard the running node's birth (its MQTT side survived every fault)."""
        def row() -> dict[str, Any]:
            return next((g for g in self.central.store.gates() if g["gate"] == self.gate_id), {})

        with contextlib.suppress(TimeoutError):
            await self._until(lambda: row().get("online") and (row().get("status_at") or 0) >= self.node_started_at,
                              30, "central to hear the node's birth")
            return []
        seen = row()
        return [f"central's status of {self.gate_id}: online {seen.get('online')}, bdSeq {seen.get('bd_seq')}, "
                f"set at {seen.get('status_at')}; the node last started at {self.node_started_at:.3f}"]

    def _check(self, drained: str | None, stop_code: int | None, heard: list[str]) -> dict[str, Any]:
        from edge.journal import Journal
        from simulators.invariants import declarations_released_twice, exactly_once_in_order, opens_without_release

        journal_file = self.node_dir / "journal.sqlite"
        verify = subprocess.run([sys.executable, "-m", "edge.cli", "journal", "verify", "--db", str(journal_file)],
                                capture_output=True, text=True, timeout=600)
        with Journal.open(journal_file) as journal:
            entries = journal.entries()
        central_events = self.central.store.events(self.gate_id)
        mono_to_wall = time.time() - time.monotonic()  # the PLC simulators stamp their history with monotonic time
        opens = {lane_id: [at + mono_to_wall for at, what in rig.plc.model.history if what == "opening"]
                 for lane_id, rig in self.gate.rigs.items()}
        open_problems, checked = opens_without_release(entries, opens)
        once = exactly_once_in_order(central_events, entries)
        if drained:
            once.insert(0, drained)

        def held(problems: list[str], **more: Any) -> dict[str, Any]:
            return {"held": not problems, **({"evidence": problems} if problems else {}), **more}

        decisions = Counter(e.payload.get("outcome") for e in entries if e.kind == "decision")
        closed = Counter(e.payload.get("result") for e in entries if e.kind == "tx_closed")
        self.run.trucks.update({f"journal_{k}": v for k, v in closed.items()})
        return {
            "invariants": {
                "journal_verifies": held([] if verify.returncode == 0 else
                                         [(verify.stdout + verify.stderr).strip()[-2000:]],
                                         report=verify.stdout.strip().splitlines()[:1]),
                "central_exactly_once_in_order": held(once, journal_rows=len(entries),
                                                      central_events=len(central_events)),
                "no_open_without_release": held(open_problems, plc_opens_checked=checked),
                "no_boom_left_open": held(self.run.booms_left_open),
                "no_declaration_released_twice": held(declarations_released_twice(entries) + self.run.repeat_passes,
                                                      repeat_visits=self.run.trucks["repeat_presented"]),
                "central_hears_the_gate": held(heard),
            },
            "decisions": dict(decisions),
            "node": {"starts": self.node.starts, "crashes": self.run.crashes, "clean_stop_exit_code": stop_code},
            "storage": self._storage(len(entries)),
        }

    def _storage(self, rows: int) -> dict[str, Any]:
        """The node's data dir after the run (WAL checkpointed by the clean stop), its peaks, and per truck."""
        end = _du(self.node_dir)
        trucks = max(1, self.run.trucks["presented"])
        journal = end.get("journal.sqlite", 0) - self.journal_bytes_at_start
        return {"end_bytes": end, "peak_bytes": dict(self.run.peak_bytes),
                "journal_rows_per_truck": round(rows / trucks, 1),
                "journal_bytes_per_truck": round(journal / trucks),
                "note": "per truck: the journal file's growth over the run (every row, alarms and faults included, "
                        "the outbox's pages reused once central acknowledged them) / trucks presented"}

    async def execute(self) -> dict[str, Any]:
        """The whole run; returns the summary (see the module docstring)."""
        duration_s = self.options.minutes * 60
        summary: dict[str, Any] = {"seed": self.options.seed, "minutes": self.options.minutes}
        tasks: list[asyncio.Task] = []
        try:
            lanes = await self._start()
            summary["central_database"] = "postgresql" if self.pg is not None else "sqlite"
            self.run.started = time.monotonic()  # the plan's clock starts with the traffic
            plan = draw_faults(self.options, duration_s)
            names = ', '.join(lane['id'] for lane in lanes)
            say(f"running {duration_s:g} s: {len(plan)} faults planned, lanes {names}")
            tasks = [asyncio.create_task(self._traffic(lane["id"])) for lane in lanes]
            tasks += [asyncio.create_task(self._supervise()), asyncio.create_task(self._sample_disk())]
            faults = asyncio.create_task(self._faults(plan))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), duration_s)
            await faults  # the last fault planned ends before the run does
            self.stopping.set()
            await asyncio.gather(*tasks)
            say("traffic stopped; draining the node's backlog to central")
            drained = await self._drain()
            heard = await self._central_hears_the_gate()
            stop_code = await asyncio.to_thread(self.node.stop, 60)
            summary.update(self._check(drained, stop_code, heard))
        finally:
            self.stopping.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._clean_up()
        summary["faults"] = dict(Counter(f["kind"] for f in self.run.faults))
        summary["fault_log"] = self.run.faults
        summary["trucks"] = dict(self.run.trucks)
        summary["notes"] = self.run.notes
        summary["ok"] = all(i["held"] for i in summary.get("invariants", {}).values()) and "invariants" in summary
        return summary

    async def _clean_up(self) -> None:
        if self.node is not None:
            self.node.kill()
        if self.gate is not None:
            with contextlib.suppress(Exception):
                await self.gate.stop()  # the simulators; the broker was handed in, stopped below
        if self.proxy is not None:
            await self.proxy.stop()
        if self.central is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.central.stop)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.broker.stop)
        if self.pg is not None:
            await asyncio.to_thread(self.pg.remove)
        if self.tmpfs:
            if self.options.keep:  # the node's files outlive the tmpfs
                shutil.copytree(self.node_dir, self.workdir / "node-kept", dirs_exist_ok=True)
            subprocess.run(["umount", str(self.node_dir)], capture_output=True)
        if not self.options.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            say(f"files kept in {self.workdir}")


def run_soak(options: SoakOptions) -> int:
    """`smartgate soak`: print the JSON summary; 0 when every invariant held, 1 when one failed, 2 on a set-up error."""
    unknown = [f for f in options.faults if f not in FAULT_KINDS]
    if unknown:
        print(f"smartgate soak: unknown fault kind {', '.join(unknown)}; kinds are {', '.join(FAULT_KINDS)}",
              file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(Soak(options).execute())
    except (RuntimeError, TimeoutError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.EADDRINUSE, errno.ENOSPC, None):
            raise
        print(f"smartgate soak: cannot run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0 if summary["ok"] else 1
