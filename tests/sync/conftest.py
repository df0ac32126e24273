"""Sync fixtures: a real PostgreSQL for central (the running one, or a private one), keys, a central server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from simulators.broker import free_port
from sync.keys import generate_keypair


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


class PrivatePostgres:
    """A PostgreSQL server this test owns (initdb + pg_ctl on a free port, in a temp dir), so it may stop it."""

    def __init__(self):
        bindir = _pg_bin()
        if bindir is None:
            pytest.skip("no PostgreSQL server running on 127.0.0.1:5432 and none installed "
                        "(scripts/setup.sh installs it)")
        self.bindir, self.tmp, self.port = bindir, Path(tempfile.mkdtemp(prefix="sg-pg-")), free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.tmp, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.tmp / "data"
        subprocess.run([*self.prefix, str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args], check=check,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        self._ctl("-l", str(self.tmp / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: as a crash would; every client connection is cut)."""
        self._ctl("-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def _private_postgres():
    """initdb + pg_ctl on a free port in a temp dir (as the `postgres` user when run as root)."""
    server = PrivatePostgres()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def own_postgres():
    """A running PostgreSQL of this test alone, with a `central` database: the test may stop and restart it."""
    import psycopg

    server = PrivatePostgres()
    server.start()
    try:
        with psycopg.connect(f"{server.url}/postgres", autocommit=True) as conn:
            conn.execute('CREATE DATABASE "central"')
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def pg_server():
    """Base URL of a PostgreSQL server (no database part)."""
    if _reachable("127.0.0.1", 5432):
        import psycopg

        try:
            psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
        except psycopg.Error:
            pass
        else:
            yield "postgresql://postgres@127.0.0.1:5432"
            return
    with _private_postgres() as url:
        yield url


@pytest.fixture
def pg_url(pg_server):
    """A uniquely named database for one test, dropped after it."""
    import psycopg

    name = f"sg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def keypair():
    return generate_keypair()


@pytest.fixture
def own_broker():
    """A broker for one test: persistent MQTT sessions (central's, the node's) must not leak between tests."""
    from simulators.broker import PrivateBroker

    with PrivateBroker() as running:
        yield running
