"""Weighbridge indicator simulator: continuous (Toledo, Rinstrum) or polled (SMA) output on a pty.

A truck driving on makes the weight swing (motion) for `settle_s`, then hold steady; driving off
brings it back to zero. The node reads the other end of the pty like a real indicator's port.

`variant` sends a vendor's variant of the format (what the profile options of the same names
accept): Toledo `jaguar` (tare as six spaces), `liden` (SWA bits 5/6 = 0/1), `cardinal-short` (no
tare field); SMA `cardinal` (11-character weight field) and `fairbanks` (a `P` request while the
load moves is answered with the stability time-out reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path

from devices.protocols.weighbridge_rinstrum import encode_rinstrum_frame
from devices.protocols.weighbridge_sma import encode_sma_reply
from devices.protocols.weighbridge_toledo import encode_toledo_frame, toledo_checksum
from simulators.serial_wire import make_linked_pty, unlink_port

VARIANTS = {"toledo-continuous": ("jaguar", "liden", "cardinal-short"), "sma": ("cardinal", "fairbanks"),
            "rinstrum": ()}
FAIRBANKS_STABILITY_TIMEOUT = b"\n 1G  ----------   \r"


class WeighbridgeSimulator:
    """One indicator. frame_format: toledo-continuous, sma or rinstrum."""

    def __init__(self, link_path: str | Path, frame_format: str = "toledo-continuous", *, checksum: bool = False,
                 period_s: float = 0.1, settle_s: float = 0.4, variant: str | None = None):
        if variant is not None and variant not in VARIANTS.get(frame_format, ()):
            raise ValueError(f"no variant {variant!r} of {frame_format}: "
                             f"choose from {', '.join(VARIANTS.get(frame_format, ())) or 'none'}")
        self.link_path = Path(link_path)
        self.frame_format, self.checksum, self.variant = frame_format, checksum, variant
        self.period_s, self.settle_s = period_s, settle_s
        self.load_kg = 0.0
        self._settled_at = 0.0
        self.silent = False  # a dead indicator (the port stays open)
        self.reply_delay_s = 0.0
        self.frames_sent = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._task: asyncio.Task | None = None
        self._commands = b""

    # -- lifecycle
    def start(self) -> None:
        master, self._slave = make_linked_pty(self.link_path)
        self._master = master
        loop = asyncio.get_running_loop()
        if self.frame_format == "sma":
            loop.add_reader(master, self._on_command)
        else:
            self._task = loop.create_task(self._stream())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._master is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._master is not None:
            unlink_port(self.link_path)
        self._master = self._slave = None

    # -- what a truck does
    def drive_on(self, weight_kg: float) -> None:
        self.load_kg = weight_kg
        self._settled_at = asyncio.get_running_loop().time() + self.settle_s

    def drive_off(self) -> None:
        self.load_kg = 0.0
        self._settled_at = asyncio.get_running_loop().time() + self.settle_s / 2

    # -- the wire
    def _reading(self) -> tuple[int, bool]:
        moving = asyncio.get_running_loop().time() < self._settled_at
        weight = self.load_kg + (random.uniform(-300, 300) if moving and self.load_kg else 0.0)
        graduation = 20  # a truck scale counts in 20 kg steps
        return int(round(max(weight, 0.0) / graduation) * graduation), moving

    def frame(self) -> bytes:
        weight, moving = self._reading()
        if self.frame_format == "toledo-continuous":
            return self._toledo_variant(encode_toledo_frame(weight, motion=moving, checksum=False))
        if self.frame_format == "rinstrum":
            return encode_rinstrum_frame(weight, motion=moving)
        reply = encode_sma_reply(weight, motion=moving)
        if self.variant == "cardinal":
            reply = reply[:6] + b" " + reply[6:]  # the 11-character weight field
        return reply

    def _toledo_variant(self, body: bytes) -> bytes:
        if self.variant == "jaguar":
            body = body[:10] + b"      " + body[16:]
        elif self.variant == "liden":
            body = body[:1] + bytes([body[1] & ~0x20 | 0x40]) + body[2:]
        elif self.variant == "cardinal-short":
            body = body[:10] + body[16:]
        return body + bytes([toledo_checksum(body)]) if self.checksum else body

    def write_raw(self, data: bytes) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.write(self._master, data)

    async def _stream(self) -> None:
        while True:
            if not self.silent:
                self.write_raw(self.frame())
                self.frames_sent += 1
            await asyncio.sleep(self.period_s)

    def _on_command(self) -> None:
        try:
            self._commands += os.read(self._master, 256)
        except OSError:
            return
        while b"\r" in self._commands:
            line, _, self._commands = self._commands.partition(b"\r")
            command = line.strip(b"\n")
            if command in (b"W", b"P") and not self.silent:
                reply = self.frame()
                if command == b"P" and self.variant == "fairbanks" and self._reading()[1]:
                    reply = FAIRBANKS_STABILITY_TIMEOUT  # no stability within the waiting time
                if self.reply_delay_s:
                    asyncio.get_running_loop().call_later(self.reply_delay_s, self.write_raw, reply)
                else:
                    self.write_raw(reply)
                self.frames_sent += 1

    # -- faults (see simulators/faults.py)
    def fault_disconnect(self) -> None:
        """Pull the cable."""
        self.stop()

    def recover_disconnect(self) -> None:
        if self._master is None:
            self.start()

    def fault_slow(self) -> None:
        """The indicator stops answering in time (silent for continuous output)."""
        self.silent = True

    def recover_slow(self) -> None:
        self.silent = False

    def fault_garbage(self) -> None:
        self.write_raw(bytes(random.randrange(256) for _ in range(48)))

    def fault_torn_frame(self) -> None:
        self.write_raw(self.frame()[:7])

    def fault_bad_checksum(self) -> None:
        """A frame that fails its check (Toledo CHK, or a corrupted status byte elsewhere)."""
        data = bytearray(self.frame())
        data[-1 if self.checksum and self.frame_format == "toledo-continuous" else 1] ^= 0x55
        self.write_raw(bytes(data))

