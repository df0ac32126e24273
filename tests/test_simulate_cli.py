"""`smartgate simulate <kind>`: each simulator on its own, as a tester runs it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from devices.protocols.eseal_ascii import EsealAsciiDecoder, SealFrame
from devices.transports.modbus import ModbusIOError, tcp_hub
from simulators.broker import free_port

SIMULATE = [sys.executable, "-m", "edge.cli", "simulate"]


@pytest.mark.parametrize("kind", ["barrier", "eseal", "weighbridge", "anpr", "scanner"])
def test_every_simulator_explains_itself(kind):
    result = subprocess.run([*SIMULATE, kind, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--fault" in result.stdout


def test_fault_a_simulator_cannot_have_is_refused_with_the_list():
    result = subprocess.run([*SIMULATE, "barrier", "--port", str(free_port()), "--fault", "1:garbage"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "offers disconnect, exception_replies, slow" in result.stdout


def test_standalone_eseal_reader_sends_frames_a_serial_port_can_read(tmp_path: Path):
    link = tmp_path / "eseal0"
    process = subprocess.Popen([*SIMULATE, "eseal", "--link", str(link), "--seal", "5E0000A1:tampered",
                                "--every", "0.2", "--duration", "20", "--fault", "0.1:garbage"],
                               stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not link.exists():
            assert time.monotonic() < deadline, "the simulator never created its port"
            time.sleep(0.05)
        decoder = EsealAsciiDecoder()
        frames: list[SealFrame] = []
        with serial.Serial(str(link), timeout=0.2) as port:
            while not frames:
                assert time.monotonic() < deadline, "no frame arrived"
                frames += [f for f in decoder.feed(port.read(256)) if isinstance(f, SealFrame)]
        assert frames[0].seal_id == "5E0000A1" and frames[0].status.value == "tampered"
    finally:
        process.terminate()
        process.wait(10)


def test_standalone_barrier_plc_answers_modbus_and_drives_trucks():
    port = free_port()
    process = subprocess.Popen([*SIMULATE, "barrier", "--port", str(port), "--trucks", "--every", "0.3",
                                "--duration", "20"], stdout=subprocess.PIPE, text=True)

    async def read_arrivals() -> set[bool]:
        hub = tcp_hub("127.0.0.1", port, timeout_s=0.5)
        seen: set[bool] = set()
        deadline = time.monotonic() + 15
        while len(seen) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(ModbusIOError):  # not listening yet
                seen.add(bool((await hub.request("read_discrete_inputs", 0, count=5)).bits[0]))
            await asyncio.sleep(0.05)
        await hub.close()
        return seen

    try:
        assert asyncio.run(read_arrivals()) == {True, False}
    finally:
        process.terminate()
        process.wait(10)


def test_standalone_barrier_plc_takes_loops_from_the_command_line_and_stdin():
    port = free_port()
    process = subprocess.Popen([*SIMULATE, "barrier", "--port", str(port), "--occupy", "safety", "--stdin",
                                "--duration", "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def read_loops() -> tuple[bool, bool, bool]:
        hub = tcp_hub("127.0.0.1", port, timeout_s=0.5)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    bits = (await hub.request("read_discrete_inputs", 0, count=5)).bits
                    return bool(bits[0]), bool(bits[1]), bool(bits[2])
                except ModbusIOError:  # not listening yet
                    assert time.monotonic() < deadline, "the simulator never answered"
                    await asyncio.sleep(0.05)
        finally:
            await hub.close()

    async def wait_for_loops(expected: tuple[bool, bool, bool]) -> None:
        deadline = time.monotonic() + 10
        while (seen := await read_loops()) != expected:
            assert time.monotonic() < deadline, f"loops {seen}, expected {expected}"
            await asyncio.sleep(0.05)

    try:
        asyncio.run(wait_for_loops((False, True, False)))  # --occupy safety
        process.stdin.write("exit on\nsafety off\narrival on\n")
        process.stdin.flush()
        asyncio.run(wait_for_loops((True, False, True)))
        process.stdin.write("nonsense\nexit off\n")
        process.stdin.flush()
        asyncio.run(wait_for_loops((True, False, False)))
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert "safety loop occupied" in out and "write `arrival|safety|exit on|off`" in out
    assert "armed from power-up" in out


def simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SIMULATE, *args], capture_output=True, text=True, timeout=60)


def assert_one_line_failure(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit non-zero with one line that says why: no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr


def test_busy_port_is_one_line_and_a_non_zero_exit():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert_one_line_failure(simulate("barrier", "--port", str(port), "--duration", "1"), "port is in use")
        assert_one_line_failure(simulate("video", "--port", str(port), "--duration", "1"), "port is in use")


def test_camera_with_no_broker_there_says_so_in_one_line():
    port = free_port()  # nothing listens there
    result = simulate("anpr", "--broker", f"127.0.0.1:{port}", "--topic", "gate/X/anpr", "--duration", "1")
    assert_one_line_failure(result, f"no MQTT broker at 127.0.0.1:{port}")


def test_link_in_a_folder_that_does_not_exist_is_refused(tmp_path: Path):
    link = tmp_path / "no-such-folder" / "eseal0"
    assert_one_line_failure(simulate("eseal", "--link", str(link), "--duration", "1"), "does not exist")
    assert not link.parent.exists()


def test_seal_with_an_unknown_status_is_refused_before_anything_starts(tmp_path: Path):
    result = simulate("eseal", "--link", str(tmp_path / "eseal0"), "--seal", "X:broken", "--duration", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "seal status 'broken' is not one of intact, opened, tampered" in result.stderr
    assert not (tmp_path / "eseal0").exists()


def test_disconnected_reader_logs_the_fault_and_sends_no_seals_until_it_ends(tmp_path: Path):
    result = simulate("eseal", "--link", str(tmp_path / "eseal0"), "--seal", "5E0000A1", "--every", "0.2",
                      "--fault", "0.5:disconnect:1.5", "--duration", "3.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "fault disconnect starts for 1.5 s" in line)
    end = next(i for i, line in enumerate(lines) if "fault disconnect ended" in line)
    assert start < end
    assert not any("seal 5E0000A1" in line for line in lines[start + 1:end])
    assert any("nothing sent (the device is disconnected)" in line for line in lines[start + 1:end])
    assert any("seal 5E0000A1" in line for line in lines[end:]), "seals resume once the cable is back"


def test_simulator_piped_into_head_stops_when_head_has_read_enough():
    read_end, write_end = os.pipe()
    process = subprocess.Popen([*SIMULATE, "barrier", "--port", str(free_port()), "--trucks", "--every", "0.1"],
                               stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as head:  # `| head -2`
        head.readline()
        head.readline()
    try:
        assert process.wait(30) in (0, 141)
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in process.stderr.read()
