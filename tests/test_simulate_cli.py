"""`smartgate simulate <kind>`: each simulator on its own, as a tester runs it."""

from __future__ import annotations

import asyncio
import contextlib
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
