"""The real node as a separate process (`smartgate run --site ...`), for runs that SIGKILL and restart it.

Used by the soak (`smartgate soak`) and the sync tests: the node is its own process, started from a
site file, so that a SIGKILL leaves no clean-up of any kind behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from edge.config import LoadedSite

ROOT = Path(__file__).resolve().parents[1]


def write_site(site: LoadedSite | dict[str, Any], path: Path) -> Path:
    """Write a site (a LoadedSite, e.g. bound to simulators, or a plain mapping) as a site file."""
    data = site.site.model_dump(mode="json", exclude_none=True) if isinstance(site, LoadedSite) else site
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class NodeProcess:
    """`python -m edge.cli run` for a site file and data dir; started, SIGKILLed and restarted by tests."""

    def __init__(self, site_path: Path, data_dir: Path, log_path: Path):
        self.site_path, self.data_dir, self.log_path = site_path, data_dir, log_path
        self.process: subprocess.Popen | None = None
        self.running = threading.Event()  # the node printed that it runs (set anew for each start)
        self.starts = 0

    def start(self) -> NodeProcess:
        """Start the node; `running` is set once it says it runs (devices connecting, lanes restored)."""
        self.running.clear()
        self.starts += 1
        log = self.log_path.open("a", encoding="utf-8")
        log.write(f"----- start {self.starts}\n")
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--site", str(self.site_path), "--data-dir", str(self.data_dir),
             "--port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        threading.Thread(target=self._read_stdout, args=(self.process, log), daemon=True).start()
        return self

    def _read_stdout(self, process: subprocess.Popen, log) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            if line.startswith("node ") and " running" in line:
                self.running.set()
        log.close()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the node."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (a clean stop) and wait; return the exit code."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 30.0) -> int:
        if self.process is None:
            return 0
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
