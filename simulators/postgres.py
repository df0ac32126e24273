"""A PostgreSQL server of one's own (initdb + pg_ctl on a free port, in a temp dir), which its owner may stop.

For central's database in the tests and the soak (`smartgate soak`), which restart it under a
running central as a crash would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from simulators.broker import free_port


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (with initdb), or None when none is installed."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


class PrivatePostgres:
    """A PostgreSQL server its owner may stop and start; RuntimeError when no server is installed."""

    def __init__(self):
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server installed (scripts/setup.sh installs it)")
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

    def create_database(self, name: str) -> str:
        """Create a database on the running server; return its URL."""
        import psycopg

        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
