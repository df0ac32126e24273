"""Sync fixtures: a real PostgreSQL for central (the running one, or a private one), keys, a central server."""

from __future__ import annotations

import contextlib
import socket
import uuid

import pytest

from simulators.postgres import PrivatePostgres, pg_bin
from sync.keys import generate_keypair


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _new_postgres() -> PrivatePostgres:
    """A private PostgreSQL server (simulators/postgres.py); the test is skipped when none is installed."""
    if pg_bin() is None:
        pytest.skip("no PostgreSQL server running on 127.0.0.1:5432 and none installed "
                    "(scripts/setup.sh installs it)")
    return PrivatePostgres()


@contextlib.contextmanager
def _private_postgres():
    """initdb + pg_ctl on a free port in a temp dir (as the `postgres` user when run as root)."""
    server = _new_postgres()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def own_postgres():
    """A running PostgreSQL of this test alone, with a `central` database: the test may stop and restart it."""

    server = _new_postgres()
    server.start()
    try:
        server.create_database("central")
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
