"""A serial port read in a worker thread, reopened when it fails (cable pulled, pty closed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import serial

from devices.transports.modbus import LinkHealth

log = logging.getLogger(__name__)


class SerialLink:
    """Reads bytes from a serial port and hands them to `on_bytes` on the event loop.

    The port is opened in a worker thread (pyserial blocks); on any error the link reports it
    through `on_down`, waits `retry_s`, and opens the port again, reporting `on_up` when it does.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        on_bytes: Callable[[bytes], None],
        on_up: Callable[[], Awaitable[None] | None] | None = None,
        on_down: Callable[[str], Awaitable[None] | None] | None = None,
        retry_s: float = 0.5,
    ):
        self.port = port
        self.settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity,
                         "stopbits": stopbits}
        self.on_bytes, self.on_up, self.on_down = on_bytes, on_up, on_down
        self.retry_s = retry_s
        self.health = LinkHealth()
        self._serial: serial.Serial | None = None
        self._stopping = False
        self._opened_once = False
        self._down_reported = False

    async def run(self) -> None:
        """Open, read until failure, reopen; until stop()."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                self._serial = await loop.run_in_executor(None, self._open)
            except (serial.SerialException, OSError) as exc:
                await self._down(f"cannot open {self.port}: {exc}")
                await asyncio.sleep(self.retry_s)
                continue
            if self._opened_once:
                self.health.reconnects += 1
            self._opened_once = True
            self.health.connected = True
            self.health.last_error = None
            self._down_reported = False
            await _maybe_await(self.on_up() if self.on_up else None)
            try:
                while not self._stopping:
                    data = await loop.run_in_executor(None, self._read)
                    if data:
                        self.health.last_ok_at = time.time()
                        self.on_bytes(data)
            except (serial.SerialException, OSError, TypeError) as exc:
                if self._stopping:
                    break
                await self._down(f"read from {self.port} failed: {exc}")
            finally:
                self._close()
            if not self._stopping:
                await asyncio.sleep(self.retry_s)

    def _open(self) -> serial.Serial:
        return serial.Serial(self.port, timeout=0.2, **self.settings)

    def _read(self) -> bytes:
        port = self._serial
        if port is None:
            raise serial.SerialException("port closed")
        return port.read(max(1, port.in_waiting or 1)) + port.read(port.in_waiting or 0)

    async def write(self, data: bytes) -> bool:
        """Send bytes (e.g. a poll command); False when the port is not open."""
        port = self._serial
        if port is None:
            return False
        try:
            await asyncio.get_running_loop().run_in_executor(None, port.write, data)
        except (serial.SerialException, OSError, TypeError):
            return False
        return True

    async def _down(self, error: str) -> None:
        self.health.connected = False
        self.health.last_error = error
        if not self._down_reported:
            self._down_reported = True
            log.warning("%s", error)
            await _maybe_await(self.on_down(error) if self.on_down else None)

    def _close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    async def stop(self) -> None:
        """Stop reading and close the port."""
        self._stopping = True
        self._close()


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value
