"""Red team at the kiosk: oversized and hostile bodies, password floods, from the kiosk LAN.

Every attack is played over HTTP on loopback against a whole simulated gate (the real node, its
PLC simulators over Modbus TCP, the kiosk served by uvicorn). Other client addresses are other
loopback addresses (127.0.0.x): Linux routes all of 127/8 to the loopback interface. Floods come
from a separate process (benchmarks/kiosk_bench.py --flood), as from another machine.

What must hold: the node refuses at once, reads no more than it must, echoes nothing, lets the
real supervisor in while someone else guesses their password, and keeps running its lanes (the
PLC watchdog never sees the node's heartbeat stop, a truck is still decided and released).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.kiosk.conftest import GateThread, login, running_gate

MIB = 1024 * 1024
MARKER = "ZZ-ECHO-7f3a"  # must never come back in any answer


@pytest.fixture
def kiosk(site, broker, tmp_path: Path) -> Iterator[GateThread]:
    yield from running_gate(site, tmp_path, broker)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait (from the test's thread; the gate runs on its own loop) for predicate() to hold."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _client(gate: GateThread, address: str = "127.0.0.1", **kwargs) -> httpx.Client:
    """A client on the kiosk LAN at `address` (a loopback address of its own)."""
    return httpx.Client(base_url=gate.base, timeout=30, transport=httpx.HTTPTransport(local_address=address),
                        **kwargs)


def _login_headers(client: httpx.Client) -> dict[str, str]:
    page = client.get("/login")
    return {"x-csrf-token": re.search(r'name="sg-login-csrf" content="([^"]+)"', page.text).group(1)}


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def _heartbeat_losses(gate: GateThread) -> list[str]:
    """What the PLCs' watchdogs saw: a stalled node stops its heartbeat and the boom drops."""
    return [f"{lane}: {what}" for lane, rig in gate.gate.rigs.items() for _, what in rig.plc.model.history
            if "heartbeat lost" in what]


class _PeakRss:
    """The test process's highest resident memory (the node runs in it) while the block runs."""

    def __enter__(self) -> _PeakRss:
        self.before = self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def growth_mib(self) -> float:
        return self.peak - self.before


# ---------------------------------------------------------------- oversized bodies


def test_a_100_mib_login_post_is_refused_before_it_is_read(kiosk: GateThread):
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        chunk = b"[" * MIB  # 100 MiB of JSON nesting: costly to parse, if anyone tried
        for _ in range(100):
            sent["bytes"] += len(chunk)
            yield chunk

    with _client(kiosk) as client:
        headers = _login_headers(client) | {"content-type": "application/json"}
        with _PeakRss() as memory:
            # Streamed with no length (chunked): counted as it arrives, cut off at the cap.
            chunked = client.post("/api/login", content=body(), headers=headers)
            streamed = sent["bytes"]
            sent["bytes"] = 0
            # A declared length over the cap: answered before a byte of the body is read.
            declared = client.post("/api/login", content=body(), headers=headers | {"content-length": str(100 * MIB)})
    for response in (chunked, declared):
        assert response.status_code == 413
        assert response.json() == {"detail": {"code": "BODY_TOO_LARGE", "message": "request body over 32768 bytes"}}
        # The node hangs up rather than reading the rest to keep the connection alive ...
        assert response.headers["connection"] == "close"
        # ... and the answer carries the kiosk's security headers like every other.
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
    # Only what the sockets' buffers took ever left the client; the node kept none of it.
    assert streamed < 32 * MIB and sent["bytes"] < 32 * MIB
    assert memory.growth_mib < 64, f"the node's memory grew {memory.growth_mib:.0f} MiB"
    with _client(kiosk) as client:
        login(client, "officer1")  # the kiosk serves on
        assert client.get("/api/lanes").status_code == 200
    assert _heartbeat_losses(kiosk) == []


def test_a_write_without_credentials_is_refused_before_its_body_is_read(kiosk: GateThread):
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        for _ in range(100):
            sent["bytes"] += MIB
            yield b" " * MIB

    with _client(kiosk) as client:
        for path in ("/api/lanes/IMP-1/actions", "/api/users", "/api/logout"):
            for headers in ({}, {"cookie": "sg_session=made-up"}, {"authorization": "Bearer sgt_made-up"}):
                sent["bytes"] = 0
                refused = client.post(path, content=body(), headers=headers | {"content-type": "application/json"})
                assert refused.status_code == 401 and refused.json()["detail"]["code"] == "login_required"
                assert refused.headers["connection"] == "close" and sent["bytes"] < 32 * MIB


def test_validation_errors_never_echo_the_input(kiosk: GateThread):
    hostile = f"<script>alert('{MARKER}')</script>" * 40
    with _client(kiosk) as client:
        headers = _login_headers(client)
        answers = [
            client.post("/api/login", headers=headers, json={"username": hostile, "password": "x"}),
            client.post("/api/login", headers=headers, json={"username": "officer1", "password": "x",
                                                             f"{MARKER}<img src=x>": hostile}),
            client.post("/api/login", headers=headers | {"content-type": "application/json"},
                        content=f'{{"username": "{MARKER}", "password": '.encode()),  # malformed JSON
            client.post("/api/login", headers=headers, json=[MARKER, hostile]),
        ]
        csrf = login(client, "super1")["csrf"]
        answers += [
            client.post("/api/lanes/IMP-1/actions", headers={"x-csrf-token": csrf},
                        json={"action": MARKER, "reason": hostile * 2}),
            client.get("/api/declarations", params={"q": hostile}),
            client.get("/api/lanes/IMP-1/history", params={"limit": MARKER}),
        ]
    for response in answers:
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert set(detail) == {"code", "message"} and detail["code"] == "INVALID_REQUEST"
        raw = response.text + json.dumps(dict(response.headers))
        assert MARKER not in raw and "<script>" not in raw and "<img" not in raw, raw
        assert len(response.content) < 1000


def test_integers_beyond_64_bits_are_refused_with_422_not_500(kiosk: GateThread):
    with _client(kiosk) as client:
        headers = _login_headers(client) | {"content-type": "application/json"}
        body = b'{"username": "officer1", "password": "officer-pass-1", "n": ' + b"9" * 4000 + b"}"
        answers = [client.post("/api/login", headers=headers, content=body),
                   client.post("/api/login", headers=headers, json={"username": 2**64, "password": -(2**70)})]
        csrf = login(client, "admin1")["csrf"]
        answers += [
            client.get("/api/lanes/IMP-1/history", params={"limit": str(2**80)}),
            client.get("/api/transactions", params={"limit": str(-(2**70))}),
            client.post("/api/lanes/IMP-1/actions", headers={"x-csrf-token": csrf},
                        json={"action": "refuse", "reason": 2**90}),
            client.post("/api/users", headers={"x-csrf-token": csrf},
                        json={"username": "x1", "password": "long-enough", "role": "officer", "gate": 2**65}),
        ]
    for response in answers:
        assert response.status_code == 422, response.text
        assert response.json()["detail"]["code"] == "INVALID_REQUEST"


# ---------------------------------------------------------------- password guessing


def test_the_guessing_address_waits_longer_after_every_failure(kiosk: GateThread):
    waits = []
    with _client(kiosk, "127.0.0.66") as attacker:
        headers = _login_headers(attacker)

        def guess() -> httpx.Response:
            return attacker.post("/api/login", headers=headers, json={"username": "super1", "password": "guess"})

        assert [guess().status_code for _ in range(3)] == [401, 401, 401]  # a few free mistakes
        for _ in range(3):
            held = guess()
            assert held.status_code == 429 and held.json()["detail"]["code"] == "throttled"
            assert held.headers["retry-after"] == str(held.json()["detail"]["retry_after_s"])
            waits.append(int(held.headers["retry-after"]))
            # Guessing on while told to wait is answered at once and checks no password.
            assert all(guess().status_code == 429 for _ in range(5))
            answered = [429]

            def delay_over(seen: list[int] = answered) -> bool:
                seen.append(guess().status_code)
                return seen[-1] != 429

            wait_until(delay_over, timeout=30, what="the delay to run out")
            assert answered[-1] == 401  # checked again once the delay is over: still wrong
    assert waits == [1, 2, 4]
    # Nobody was locked out: the supervisor at their own kiosk logs in at once.
    with _client(kiosk, "127.0.0.21") as supervisor:
        login(supervisor, "super1")


class Flood:
    """Wrong-password log-ins from another process, as fast as it can send them, never waiting as told."""

    def __init__(self, gate: GateThread, addresses: list[str], names: list[str], concurrency: int = 16):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.kiosk_bench", "--flood", gate.base, ",".join(addresses),
             ",".join(names), str(concurrency), "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> dict:
        out, _ = self.process.communicate("stop\n", timeout=120)
        return json.loads(out)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def test_a_password_flood_from_one_address_does_not_keep_the_supervisor_out(kiosk: GateThread):
    guard = kiosk.gate.node._server.config.app.state.login_guard
    flood = Flood(kiosk, ["127.0.0.66"], ["super1"])
    try:
        wait_until(lambda: guard.throttle.refused >= 50, timeout=30, what="the flood to be held back")
        with _client(kiosk, "127.0.0.21") as supervisor:
            csrf = login(supervisor, "super1")["csrf"]  # in at the first try, while the flood goes on
            closed = supervisor.post("/api/lanes/IMP-1/actions", headers={"x-csrf-token": csrf},
                                     json={"action": "manual_close", "reason": "checking the boom"})
            assert closed.status_code == 200, closed.text
        with _client(kiosk, "127.0.0.22") as officer:
            login(officer, "officer1")
    finally:
        result = flood.stop() if flood.process.poll() is None else {}
        flood.kill()
    codes = result["codes"]
    # Three free guesses, then one each time a delay ran out: everything else was answered 429.
    assert int(codes.get("401", 0)) <= 8 and int(codes["429"]) >= 50
    assert set(codes) <= {"401", "429"}
    assert guard.stats()["hash_checked"] <= 12
    assert _heartbeat_losses(kiosk) == []


def test_lane_work_goes_on_during_a_login_flood_from_many_addresses(kiosk: GateThread):
    guard = kiosk.gate.node._server.config.app.state.login_guard
    with _client(kiosk, "127.0.0.21") as supervisor:  # logged in before the attack: a known address
        login(supervisor, "super1")
        supervisor.post("/api/logout", headers={"x-csrf-token": supervisor.get("/api/session").json()["csrf"]})
    events: list[str] = []
    with _client(kiosk, "127.0.0.22") as board:
        login(board, "officer1")

        def listen() -> None:
            with board.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=60)) as stream:
                for line in stream.iter_lines():
                    events.append(line)
                    if '"state":"DECIDED"' in line:
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        wait_until(lambda: "event: lane" in events, what="the board")
        addresses = [f"127.0.1.{n}" for n in range(2, 42)]
        flood = Flood(kiosk, addresses, ["super1", "admin1", "officer1", "root", "operator"], concurrency=48)
        try:
            wait_until(lambda: guard.pool.refused + guard.throttle.refused >= 50, timeout=30, what="the flood")
            # A truck arrives during the flood: decided, shown live on the board, released.
            kiosk.present("IMP-1", "29C-123.45", "SEAL-888")
            listener.join(30)
            assert not listener.is_alive(), "the board never saw the truck decided"
            wait_until(lambda: kiosk.gate.rigs["IMP-1"].plc.boom_open, timeout=30, what="the boom to open")
            # The supervisor, at the address they logged in from before, gets in.
            with _client(kiosk, "127.0.0.21") as supervisor:
                login(supervisor, "super1")
            running = flood.process.poll() is None
        finally:
            result = flood.stop() if flood.process.poll() is None else {}
            flood.kill()
    assert running, "the flood ended before the checks were done"
    codes = result["codes"]
    assert set(codes) <= {"401", "429", "503"}, codes  # refused or checked; never a server error
    assert int(codes.get("429", 0)) + int(codes.get("503", 0)) >= 50
    # Never more password checks running or waiting than the pool holds (plus its reserve).
    assert guard.pool.peak <= guard.pool.limit + guard.pool.reserve
    assert _heartbeat_losses(kiosk) == []
