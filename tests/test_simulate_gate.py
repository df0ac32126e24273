"""`smartgate simulate gate`: a tester drives trucks by hand through the real node (`smartgate run`)."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from edge.config import CONFIG_ROOT
from simulators.broker import free_port

SMARTGATE = [sys.executable, "-m", "edge.cli"]
EXAMPLE = CONFIG_ROOT / "sites" / "simulated-gate.yaml"


class Output:
    """A subprocess's output lines, read as they come (never a sleep for luck)."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, text: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        for line in self.lines:
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout_s} s; output:\n{''.join(self.lines)}")


def example_site_on_free_ports(tmp_path: Path) -> Path:
    """The shipped simulated-gate site, with ports nobody else holds (tests run side by side)."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["mqtt"]["port"] = free_port()
    for lane in data["lanes"]:
        for device in lane["devices"]:
            if device["transport"]["type"] == "modbus_tcp":
                device["transport"]["port"] = free_port()
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return site


def start(*args: str, cwd: Path, stdin: bool = False, env: dict[str, str] | None = None
          ) -> tuple[subprocess.Popen, Output]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **(env or {})}
    process = subprocess.Popen([*SMARTGATE, *args], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
    return process, Output(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_cleared_truck_driven_by_hand_opens_the_boom_of_the_real_node(tmp_path: Path):
    site = example_site_on_free_ports(tmp_path)
    (tmp_path / "declarations.csv").write_text(
        "number,kind,gate,plates,containers,seals,gross_weight_kg,channel,status,valid_from,valid_until,version\n"
        "105000000001,import,HUUNGHI,29C-123.45,,SEAL-777,28000,green,cleared,2026-01-01,2099-12-31,1\n",
        encoding="utf-8")
    simulator, sim_out = start("simulate", "gate", "--site", str(site), "--http", "0", cwd=tmp_path, stdin=True)
    node = None
    try:
        ready = sim_out.wait_for("ready:", 60)
        assert f"smartgate run --site {site}" in ready
        api = sim_out.wait_for("HTTP API on")
        imported = subprocess.run([*SMARTGATE, "cache", "import", "declarations.csv", "--site", str(site)],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert imported.returncode == 0, imported.stderr
        systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # as systemd listens for a Type=notify unit
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(30)
        node, node_out = start("run", "--site", str(site), "--port", "0", cwd=tmp_path,
                               env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"})
        node_out.wait_for("running", 60)
        assert systemd.recv(4096).startswith(b"READY=1")
        assert systemd.recv(4096) == b"WATCHDOG=1" and systemd.recv(4096) == b"WATCHDOG=1"
        systemd.close()

        simulator.stdin.write("truck 29C-123.45 arrives at IMP-1 seal SEAL-777 weight 28000 scan clear\n")
        simulator.stdin.flush()
        sim_out.wait_for("IMP-1: boom open", 30)
        sim_out.wait_for("IMP-1: truck 29C-123.45 drove through", 15)

        # The same gate over the HTTP API: an unknown plate is held, the boom stays shut until it backs away.
        base = re.search(r"http://127\.0\.0\.1:\d+", api).group(0)
        body = json.dumps({"command": "truck 51D-999.99 arrives at IMP-1 seal SEAL-1 weight 20000 scan clear"})
        request = urllib.request.Request(f"{base}/commands", body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["ok"] is True
        sim_out.wait_for("IMP-1: truck 51D-999.99 waits for the boom", 15)
        with urllib.request.urlopen(f"{base}/lanes", timeout=10) as answer:
            assert "truck 51D-999.99" in json.load(answer)["IMP-1"]
        simulator.stdin.write("clear IMP-1\n")
        simulator.stdin.flush()
        sim_out.wait_for("IMP-1: truck 51D-999.99 backed away", 15)
        assert sum(line.rstrip().endswith("IMP-1: boom open") for line in sim_out.lines) == 1  # never for 51D
    finally:
        if node is not None:
            stop(node)
        stop(simulator)


def test_console_says_what_is_wrong_with_a_command_and_logs_a_fault_start_and_end(tmp_path: Path):
    site = example_site_on_free_ports(tmp_path)
    simulator, out = start("simulate", "gate", "--site", str(site), cwd=tmp_path, stdin=True)
    try:
        out.wait_for("ready:", 60)
        simulator.stdin.write("truck 29C-123.45 arrives at IMP-9\nfault IMP-1-anpr disconnect 0.5\n")
        simulator.stdin.flush()
        assert "the lanes are IMP-1, EXP-1" in out.wait_for("no lane 'IMP-9'")
        out.wait_for("IMP-1-anpr: fault disconnect starts for 0.5 s")
        out.wait_for("IMP-1-anpr: fault disconnect ended")
        simulator.stdin.write("quit\n")
        simulator.stdin.flush()
        assert simulator.wait(30) == 0
    finally:
        stop(simulator)


def test_site_with_real_device_addresses_is_moved_to_loopback_for_the_node(tmp_path: Path):
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["mqtt"]["port"] = 8883
    imp = data["lanes"][0]["devices"]
    imp[0]["transport"] = {"type": "modbus_tcp", "host": "10.1.1.20", "port": 502}
    imp[1]["transport"] = {"type": "serial", "port": "/dev/ttyUSB0"}
    imp[1]["profile"] = "our-eseal-reader"  # a profile of the site's own, beside it
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "devices").mkdir()
    shipped = (CONFIG_ROOT / "devices" / "ascii-eseal-reader.yaml").read_text(encoding="utf-8")
    (tmp_path / "gate" / "devices" / "our-eseal-reader.yaml").write_text(
        shipped.replace("id: ascii-eseal-reader", "id: our-eseal-reader"), encoding="utf-8")
    data["data_dir"] = str(tmp_path / "var" / "real")
    site = tmp_path / "gate" / "site.yaml"
    site.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    simulator, out = start("simulate", "gate", "--site", str(site), cwd=tmp_path, stdin=True)
    try:
        ready = out.wait_for("ready:", 60)
        written = tmp_path / "var" / "real-sim" / "simulated-site.yaml"
        assert f"smartgate run --site {written}" in ready
        node_site = yaml.safe_load(written.read_text(encoding="utf-8"))
        plc = node_site["lanes"][0]["devices"][0]["transport"]
        assert plc["host"] == "127.0.0.1" and plc["port"] != 502
        assert not node_site["lanes"][0]["devices"][1]["transport"]["port"].startswith("/dev/")
        assert (tmp_path / "var" / "real-sim" / "pki" / "clients" / "smartgate-huunghi-edge.crt").exists()
        checked = subprocess.run([*SMARTGATE, "check-config", str(written)], capture_output=True, text=True,
                                 timeout=60, cwd=tmp_path)
        assert checked.returncode == 0, checked.stderr
        assert "profile our-eseal-reader from" in checked.stdout
        assert not (tmp_path / "var" / "real" / "pki").exists(), "the real gate's data folder is left alone"
    finally:
        stop(simulator)


def test_simulators_never_mix_their_certificates_into_a_real_gates_pki(tmp_path: Path):
    site = example_site_on_free_ports(tmp_path)
    made = subprocess.run([*SMARTGATE, "pki", "init", "--site", str(site)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    before = sorted(p.name for p in (tmp_path / "var" / "simulated-gate" / "pki").rglob("*"))
    result = subprocess.run([*SMARTGATE, "simulate", "gate", "--site", str(site), "--no-console"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "holds a real gate CA" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "var" / "simulated-gate" / "pki").rglob("*")) == before
