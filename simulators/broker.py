"""A private Mosquitto broker on a free loopback port, for the demo and tests."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

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


class PrivateBroker:
    """Runs `mosquitto -c <private config>` listening on 127.0.0.1:<port>."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._dir = Path(tempfile.mkdtemp(prefix="smartgate-broker-"))
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> PrivateBroker:
        """Start the broker and wait until it accepts connections."""
        config = self._dir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {self._dir / 'mosquitto.log'}\n"
        )
        self._process = subprocess.Popen(
            [find_mosquitto(), "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self._dir / 'mosquitto.log'}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

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
