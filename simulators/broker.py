"""A private Mosquitto broker on a free loopback port, for the demo and tests: secured as at a gate.

By default it is the gate's broker as `smartgate pki broker-config` writes it: a TLS listener with
its own throwaway gate CA, a client certificate required, the certificate's common name as user
name and client id, anonymous clients refused, and an ACL (deny unless granted). `credentials(id)`
hands out a client certificate for an identity, `load_site(site)` puts a site's ACL in force
(edge/broker_policy.py) and `allow(id, publish=..., subscribe=...)` grants more (tests of one
driver). `PrivateBroker(secure=False)` is the old anonymous plaintext broker: only for the test that
proves the node refuses it.
"""

from __future__ import annotations

import getpass
import itertools
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from devices.transports.mqtt import MqttTls, new_client
from edge.broker_policy import acl_text, mosquitto_conf
from edge.config import SiteConfig
from edge.pki import GatePki

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10000
_choose = random.SystemRandom()  # not the global generator, which a test may have seeded


def _ephemeral_low(range_file: Path = EPHEMERAL_RANGE) -> int:
    """The first port the kernel hands out for outgoing connections and bind(0) (Linux's default where unknown)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(range_file: Path = EPHEMERAL_RANGE) -> int:
    """A TCP port on 127.0.0.1 that nothing holds right now, for a server that binds it later.

    It is drawn below the kernel's ephemeral range: a port that bind(0) picks comes from that range,
    and before the server binds it the kernel may give it to an outgoing connection's local end (a
    simulator connecting to the broker), which made a camera simulator fail with 'Address already
    in use' in a CI run.
    """
    low = _ephemeral_low(range_file)
    for _ in range(100 if low > _LOWEST_PORT + 1000 else 0):
        port = _choose.randrange(_LOWEST_PORT, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a port in TIME_WAIT counts as taken
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or a RuntimeError that says how to install it."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("mosquitto is not installed: run `sudo apt-get install -y mosquitto`")


SIMULATED_MARK = ".simulated"  # in a PKI folder the simulators made (never a real gate's CA)


def simulated_pki(directory: Path, hosts: tuple[str, ...]) -> GatePki:
    """A throwaway gate CA in directory, made there once and used again by later runs.

    A folder that holds a CA the simulators did not make (a real gate's, from `smartgate pki init`) is
    refused with a RuntimeError: a simulator never mixes its certificates into a real gate's PKI.
    """
    pki = GatePki(Path(directory))
    if pki.ca_cert.exists() and pki.server.cert.exists():
        if not (pki.dir / SIMULATED_MARK).exists():
            raise RuntimeError(f"{pki.dir} holds a real gate CA (not made by the simulators): give the simulated "
                               "gate a data directory of its own (--data-dir)")
        return pki
    pki.init("smartgate private broker CA", hosts=hosts)
    (pki.dir / SIMULATED_MARK).write_text("made by smartgate's simulators: a throwaway CA\n")
    return pki


PROBE_IDENTITY = "smartgate-broker-probe"  # the broker object's own client: proves an ACL reload took effect


class PrivateBroker:
    """Runs `mosquitto -c <private config>` listening on 127.0.0.1:<port> (TLS + ACL unless secure=False)."""

    def __init__(self, port: int | None = None, *, secure: bool = True, site: SiteConfig | None = None,
                 pki_dir: Path | None = None):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.secure = secure
        self._dir = Path(tempfile.mkdtemp(prefix="smartgate-broker-"))
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._site_acl = ""
        self._grants: dict[str, tuple[set[str], set[str]]] = {}  # identity → (publish, subscribe)
        self._generation = itertools.count(1)
        self._probe_topic = "smartgate-probe/0"
        self.pki: GatePki | None = None
        if secure:
            self.pki = simulated_pki(pki_dir or self._dir / "pki", (self.host, "localhost", "::1"))
        if site is not None:
            self._site_acl = acl_text(site)
        self._write_acl()

    @property
    def log_file(self) -> Path:
        return self._dir / "mosquitto.log"

    # -- identities and the ACL

    def credentials(self, identity: str) -> MqttTls:
        """A client certificate (from this broker's CA) whose common name is identity; the same files on every call."""
        if self.pki is None:
            raise RuntimeError("a plaintext broker (secure=False) has no credentials")
        with self._lock:
            issued = self.pki.client(identity)
            if not issued.cert.exists():
                issued = self.pki.enrol(identity)
        return MqttTls(self.pki.ca_cert, issued.cert, issued.key)

    def load_site(self, site: SiteConfig) -> PrivateBroker:
        """Put the site's ACL in force (devices publish their own topics, only the node reads them)."""
        text = acl_text(site)
        if text != self._site_acl:
            self._site_acl = text
            self._apply_acl()
        return self

    def allow(self, identity: str, *, publish: tuple[str, ...] | list[str] = (),
              subscribe: tuple[str, ...] | list[str] = ()) -> MqttTls:
        """Grant identity these topics (on top of the site's ACL); returns its credentials."""
        grant = self._grants.setdefault(identity, (set(), set()))
        grant[0].update(publish)
        grant[1].update(subscribe)
        self._apply_acl()
        return self.credentials(identity)

    def revoke(self, identity: str) -> None:
        """Revoke the identity's certificate (the CRL) and restart the broker so that it reads the CRL."""
        assert self.pki is not None
        with self._lock:
            self.pki.revoke(identity)
        if self.running:
            self.stop()
            self.start()

    def _write_acl(self) -> None:
        self._probe_topic = f"smartgate-probe/{next(self._generation)}"
        lines = [self._site_acl, "# granted by the tests", f"user {PROBE_IDENTITY}",
                 f"topic readwrite {self._probe_topic}"]
        for identity, (publish, subscribe) in sorted(self._grants.items()):
            lines += ["", f"user {identity}", *(f"topic write {t}" for t in sorted(publish)),
                      *(f"topic read {t}" for t in sorted(subscribe))]
        (self._dir / "acl").write_text("\n".join(lines) + "\n")

    def _apply_acl(self) -> None:
        with self._lock:
            self._write_acl()
        if self.running and self.secure:
            self.reload()

    def reload(self, timeout_s: float = 10.0) -> None:
        """SIGHUP (Mosquitto re-reads its ACL); returns once the new ACL is in force (its probe topic works)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)
        received = threading.Event()
        topic = self._probe_topic
        client = new_client(f"{PROBE_IDENTITY}-{topic}", self.credentials(PROBE_IDENTITY))
        client.on_message = lambda _c, _u, message: received.set() if message.topic == topic else None
        client.connect(self.host, self.port, keepalive=5)
        client.loop_start()
        try:
            deadline = time.monotonic() + timeout_s
            while not received.is_set():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not take its new ACL within {timeout_s} s; see {self.log_file}")
                client.subscribe(topic, qos=1)
                client.publish(topic, b"probe", qos=1)
                received.wait(0.05)
        finally:
            client.disconnect()
            client.loop_stop()

    # -- process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _config(self) -> str:
        if self.pki is None:
            return (f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"user {getpass.getuser()}\nlog_dest file {self.log_file}\n")
        server = self.pki.server
        return mosquitto_conf(port=self.port, bind=self.host, ca=self.pki.ca_cert, cert=server.cert, key=server.key,
                              crl=self.pki.crl, acl=self._dir / "acl", log_file=self.log_file,
                              user=getpass.getuser())  # as root, Mosquitto would drop to `mosquitto`

    def start(self, timeout_s: float = 10.0) -> PrivateBroker:
        """Start the broker and wait until it accepts connections."""
        config = self._dir / "mosquitto.conf"
        config.write_text(self._config())
        self._process = subprocess.Popen(
            [find_mosquitto(), "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self.log_file}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            # Listening is not ready: until its main loop runs, a SIGHUP (an ACL reload) would end
            # Mosquitto (seen as 'connection refused' in a test's first grant). A CONNACK shows the loop runs.
            if self._answers_connect(max(0.5, deadline - time.monotonic())):
                return self
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s; see {self.log_file}")

    def _answers_connect(self, timeout_s: float) -> bool:
        """True once an MQTT client (the probe identity, over TLS when secure) gets its CONNACK."""
        if self.pki is None:
            return True
        connected = threading.Event()
        client = new_client(f"{PROBE_IDENTITY}-start", self.credentials(PROBE_IDENTITY))
        client.on_connect = lambda *_args: connected.set()
        try:
            client.connect(self.host, self.port, keepalive=5)
            client.loop_start()
            return connected.wait(timeout_s)
        except OSError:
            return False
        finally:
            client.disconnect()
            client.loop_stop()

    def stop(self) -> None:
        """Stop the broker (used by tests to simulate a broker outage)."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
