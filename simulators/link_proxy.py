"""A TCP proxy between the node and central that misbehaves on command or on a schedule.

Modes:
  pass        forward bytes both ways
  drop        refuse service: new connections are closed at once, existing ones are cut
  blackhole   accept, never forward, never answer (the nastiest WAN failure: only timeouts tell)
  delay       forward, each chunk delayed by `delay_ms`
  reset       cut every open connection with a TCP RST (SO_LINGER 0), then behave as `pass`
A schedule is a list of (at_s, mode, duration_s): at `at_s` after start the mode is set, and after
`duration_s` (if given) the proxy goes back to `pass`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

MODES = ("pass", "drop", "blackhole", "delay", "reset")


@dataclass
class ScheduleStep:
    at_s: float
    mode: str
    duration_s: float | None = None
    delay_ms: float = 0.0


def parse_step(text: str) -> ScheduleStep:
    """`AT:MODE[:DURATION[:DELAY_MS]]`, e.g. `10:blackhole:60` or `5:delay:30:500`."""
    parts = text.split(":")
    if len(parts) < 2 or parts[1] not in MODES:
        raise ValueError(f"{text!r}: write AT:MODE[:DURATION[:DELAY_MS]] with MODE one of {', '.join(MODES)}")
    return ScheduleStep(float(parts[0]), parts[1], float(parts[2]) if len(parts) > 2 and parts[2] else None,
                        float(parts[3]) if len(parts) > 3 else 0.0)


class LinkProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", listen_port: int = 0):
        self.target = (target_host, target_port)
        self.listen_host, self.listen_port = listen_host, listen_port
        self.mode = "pass"
        self.delay_ms = 0.0
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._schedule_task: asyncio.Task | None = None
        self.history: list[tuple[float, str]] = []

    async def start(self) -> LinkProxy:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.listen_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._schedule_task is not None:
            self._schedule_task.cancel()
        if self._server is not None:
            self._server.close()
        self._cut_all(rst=False)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def set_mode(self, mode: str, delay_ms: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        loop_time = asyncio.get_running_loop().time()
        self.history.append((loop_time, mode))
        log.info("link proxy :%s -> %s", self.port, mode)
        if mode == "reset":
            self._cut_all(rst=True)
            mode = "pass"
        elif mode == "drop":
            self._cut_all(rst=False)
        elif mode == "blackhole":
            pass  # open connections stall from now on (the pumps stop forwarding)
        self.mode, self.delay_ms = mode, delay_ms

    def run_schedule(self, steps: list[ScheduleStep]) -> asyncio.Task:
        async def play() -> None:
            start = asyncio.get_running_loop().time()
            for step in sorted(steps, key=lambda s: s.at_s):
                await asyncio.sleep(max(0.0, start + step.at_s - asyncio.get_running_loop().time()))
                self.set_mode(step.mode, step.delay_ms)
                if step.duration_s is not None:
                    asyncio.get_running_loop().call_later(step.duration_s, self._back_to_pass, step.mode)

        self._schedule_task = asyncio.create_task(play(), name="link-schedule")
        return self._schedule_task

    def _back_to_pass(self, mode: str) -> None:
        if self.mode == mode or mode == "reset":
            self.set_mode("pass")

    def _cut_all(self, rst: bool) -> None:
        for client, upstream in list(self._conns):
            for writer in (client, upstream):
                if writer is None:
                    continue
                if rst:
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(Exception):
                    writer.transport.abort() if rst else writer.close()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":
            writer.close()
            return
        if self.mode == "blackhole":
            pair = (writer, None)
            self._conns.add(pair)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            self._conns.discard(pair)
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)
        self._conns.discard(pair)
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                while self.mode == "blackhole":
                    await asyncio.sleep(0.05)
                if self.mode == "delay" and self.delay_ms > 0:
                    await asyncio.sleep(self.delay_ms / 1000)
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()


async def run_proxy(target: str, listen_port: int, steps: list[ScheduleStep]) -> None:
    """`smartgate simulate link`: run until interrupted, playing the schedule."""
    host, _, port = target.rpartition(":")
    proxy = await LinkProxy(host or "127.0.0.1", int(port), listen_port=listen_port).start()
    print(f"link proxy 127.0.0.1:{proxy.port} -> {target}; schedule: "
          + (", ".join(f"{s.at_s}s {s.mode}" + (f" for {s.duration_s}s" if s.duration_s else "") for s in steps)
             or "none (pass)"), flush=True)
    if steps:
        proxy.run_schedule(steps)
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.stop()
