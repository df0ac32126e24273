"""Central as several worker processes on one socket and one PostgreSQL (`smartgate central serve --workers N`).

The supervisor binds the port once and starts N `python -m sync.central.workers` children that inherit the
listening socket: the kernel hands each new connection to one of them. A worker holds nothing a request
needs from an earlier one: tokens, declarations, the feed cursor, events, journal heads, alarms and gate
status are rows in PostgreSQL, read per request (each worker has a small connection pool); uploads of one
gate are serialised across workers by an advisory lock (sync/central/store.py). What each worker does keep
in its memory is safe to lose or to differ per worker: the count of refused credentials (per worker), the
"database away" log flag, and (worker 1 only) the Sparkplug host's view of each node, rebuilt by asking a
node to rebirth.

MQTT: each worker connects with its own identity (edge/broker_policy.py `central_identities`); telemetry
is a shared subscription (`$share/smartgate-central/...`) so the broker splits it between them; birth/death
and Sparkplug B go to worker 1 alone, in order. A worker that dies is started again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SHARE_GROUP = "smartgate-central"


@dataclass(frozen=True)
class WorkerOptions:
    """What every worker is started with (sent on its stdin: nothing secret goes on a command line)."""

    db_url: str
    key: str
    tls_cert: str | None = None
    tls_key: str | None = None
    mqtt: str | None = None  # HOST:PORT of the broker
    mqtt_tls_dir: str | None = None  # the gate PKI folder holding central's worker certificates
    silent_after_s: float = 60.0


def mqtt_settings(mqtt: str | None, tls_dir: str | None, index: int = 0,
                  workers: int = 1) -> tuple[tuple | None, dict]:
    """(CentralServer's `mqtt=`, its `mqtt_options=`) for worker `index` (0-based) of `workers`; ValueError naming
    the fix when the worker's certificate is missing."""
    if not mqtt:
        return None, {}
    from edge.broker_policy import central_identities

    host, _, port = mqtt.rpartition(":")
    identity = central_identities(index + 1)[index]
    settings: tuple = (host or "127.0.0.1", int(port), identity)
    if tls_dir:
        from devices.transports.mqtt import MqttTls
        from edge.pki import GatePki

        pki = GatePki(Path(tls_dir))
        issued = pki.client(identity)
        if not issued.cert.exists():
            raise ValueError(f"--mqtt-tls-dir {tls_dir}: no certificate for central's worker {index + 1} "
                             f"({issued.cert}); issue it with `smartgate pki enrol {identity}` and write the broker's "
                             "ACL again (`smartgate pki broker-config`)")
        settings = (*settings, MqttTls(pki.ca_cert, issued.cert, issued.key))
    options = {"shared_group": SHARE_GROUP, "state_host": index == 0} if workers > 1 else {}
    return settings, options


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A bound, listening TCP socket that children may inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class CentralWorkers:
    """N central workers on one port: start them, start a dead one again, stop them all."""

    def __init__(self, options: WorkerOptions, *, workers: int = 2, host: str = "127.0.0.1", port: int = 0):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not options.db_url.startswith(("postgresql://", "postgres://")):
            raise ValueError("several central workers need a PostgreSQL database (--db postgresql://...): an SQLite "
                             "file belongs to one process")
        for index in range(workers):  # a missing worker certificate is named now, not by a worker that cannot start
            mqtt_settings(options.mqtt, options.mqtt_tls_dir, index, workers)
        self.options, self.workers, self.host = options, workers, host
        self._sock = listening_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._procs: list[subprocess.Popen | None] = [None] * workers
        self._stopping = threading.Event()
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.options.tls_cert else 'http'}://{self.host}:{self.port}"

    def pids(self) -> list[int]:
        """The workers' process ids (the ones running now)."""
        return [p.pid for p in self._procs if p is not None and p.poll() is None]

    def _spawn(self, index: int) -> subprocess.Popen:
        fd = self._sock.fileno()
        proc = subprocess.Popen([sys.executable, "-m", "sync.central.workers", "--fd", str(fd), "--index", str(index),
                                 "--workers", str(self.workers)],
                                pass_fds=(fd,), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        with proc.stdin:  # on stdin, not the command line: the database URL may hold a password
            proc.stdin.write(json.dumps(asdict(self.options)))
        return proc

    def _wait_ready(self, procs: dict[int, subprocess.Popen], timeout_s: float) -> None:
        selector = selectors.DefaultSelector()
        for index, proc in procs.items():
            selector.register(proc.stdout, selectors.EVENT_READ, index)
        waiting, deadline = set(procs), time.monotonic() + timeout_s
        try:
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"central workers {sorted(i + 1 for i in waiting)} did not start in "
                                       f"{timeout_s:.0f} s")
                for key, _ in selector.select(min(left, 0.5)):
                    line = key.fileobj.readline()
                    if not line:
                        raise RuntimeError(f"central worker {key.data + 1} exited while starting (see its log above)")
                    if line.startswith("ready"):
                        waiting.discard(key.data)
                        selector.unregister(key.fileobj)
        finally:
            selector.close()

    def start(self, timeout_s: float = 30.0) -> CentralWorkers:
        """Make the schema once, then start every worker and wait until each serves."""
        from sync.central.store import CentralStore

        CentralStore(self.options.db_url).close()  # the tables, before N workers race to make them
        for index in range(self.workers):
            self._procs[index] = self._spawn(index)
        try:
            self._wait_ready({i: p for i, p in enumerate(self._procs) if p is not None}, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def serve_forever(self, poll_s: float = 0.5) -> None:
        """Supervise until SIGTERM or SIGINT: a worker that exits is started again."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self._stopping.set())
        try:
            while not self._stopping.wait(poll_s):
                for index, proc in enumerate(self._procs):
                    if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                        log.error("central worker %d (pid %d) exited with %s: starting it again", index + 1, proc.pid,
                                  proc.returncode)
                        self.restarts += 1
                        self._procs[index] = self._spawn(index)
        finally:
            self.stop()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every worker (SIGTERM: they finish their requests), then close the socket."""
        self._stopping.set()
        running = [p for p in self._procs if p is not None and p.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proc in self._procs:
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
        self._sock.close()


def _worker(argv: list[str]) -> int:
    """One worker: serve on the inherited socket until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m sync.central.workers")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args(argv)
    options = WorkerOptions(**json.loads(sys.stdin.read()))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {args.index + 1} %(levelname)s %(name)s: "
                                                   "%(message)s")
    from sync.central.server import CentralServer

    mqtt, mqtt_options = mqtt_settings(options.mqtt, options.mqtt_tls_dir, args.index, args.workers)
    tls = (options.tls_cert, options.tls_key) if options.tls_cert and options.tls_key else None
    server = CentralServer(options.db_url, options.key, mqtt=mqtt, mqtt_options=mqtt_options, tls=tls,
                           silent_after_s=options.silent_after_s, sock=socket.socket(fileno=args.fd))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.request_stop())

    def announce() -> None:
        while not server.started:
            time.sleep(0.02)
        print(f"ready {os.getpid()}", flush=True)

    threading.Thread(target=announce, name="announce", daemon=True).start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
