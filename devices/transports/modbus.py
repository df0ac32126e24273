"""One Modbus connection (TCP or RTU over serial) shared by every signal on a PLC.

Like Home Assistant's modbus hub: entities (the barrier driver's polling, commands, heartbeat) ask
the hub; the hub queues requests on the connection, reconnects with backoff, and reports whether
the device answers. pymodbus reconnects silently after the first connect, so the hub watches the
connection itself and reconnects on its own terms.

Retries, bounded: a request that gets no valid answer (a timeout, a frame lost to noise on RS-485:
pymodbus drops a frame whose CRC is wrong, so it is a timeout too) is sent again up to `retries`
times before the caller sees ModbusIOError (and the barrier lane a FAULT). An exception reply is an
answer and is never retried. Once one request has spent all its retries the PLC is taken as gone:
the following requests get one attempt each until it answers again, so a dead PLC costs its line
one timeout per request, not 1 + retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException

log = logging.getLogger(__name__)


class ModbusIOError(Exception):
    """A request could not be completed (no connection, timeout, or an exception reply)."""


@dataclass
class LinkHealth:
    """What a transport knows about its device's reachability."""

    connected: bool = False
    last_ok_at: float | None = None
    last_error: str | None = None
    reconnects: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    retries: int = 0  # requests sent again after a lost answer
    extra: dict[str, Any] = field(default_factory=dict)


class ModbusHub:
    """A Modbus client that serialises requests and reconnects by itself."""

    def __init__(self, make_client: Callable[[], ModbusBaseClient], endpoint: str, device_id: int = 1,
                 timeout_s: float = 1.0, retries: int = 0):
        self.make_client, self.endpoint = make_client, endpoint
        self.device_id, self.timeout_s = device_id, timeout_s
        self.retries = retries
        self.health = LinkHealth()
        self._client: ModbusBaseClient | None = None
        self._lock = asyncio.Lock()
        self._ever_connected = False
        self._answering = True  # False after a request spent its retries: no retries until an answer

    async def _ensure_connected(self) -> ModbusBaseClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self._client is not None:
            self._client.close()
        client = self.make_client()
        ok = await client.connect()
        if not ok:
            client.close()
            raise ModbusIOError(f"cannot connect to {self.endpoint}")
        if self._ever_connected:
            self.health.reconnects += 1
        self._ever_connected = True
        self._client = client
        self.health.connected = True
        return client

    async def request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one client call (e.g. "read_discrete_inputs") and return its response.

        Sent again (up to `retries` times) when no valid answer came; raises ModbusIOError on
        connection loss or timeout once the retries are spent, and at once on an exception reply.
        """
        async with self._lock:
            attempts = 1 + (self.retries if self._answering else 0)
            for attempt in range(attempts):
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the driver's stop cancel.
                    async with asyncio.timeout(self.timeout_s * 2):
                        client = await self._ensure_connected()
                    async with asyncio.timeout(self.timeout_s * 2):
                        response = await getattr(client, method)(*args, device_id=self.device_id, **kwargs)
                except (TimeoutError, ModbusException, OSError, ModbusIOError) as exc:
                    self._fail(f"{method}: {exc or type(exc).__name__}")
                    if attempt + 1 < attempts:
                        self.health.retries += 1
                        continue
                    self._answering = False
                    raise ModbusIOError(str(exc) or type(exc).__name__) from exc
                break
            self._answering = True
            if response.isError():
                self.health.requests_failed += 1
                self.health.last_error = f"{method}: exception reply {response}"
                raise ModbusIOError(f"{method}: exception reply {getattr(response, 'exception_code', '?')}")
            self.health.requests_ok += 1
            self.health.last_ok_at = time.time()
            return response

    def _fail(self, error: str) -> None:
        self.health.requests_failed += 1
        self.health.last_error = error
        self.health.connected = False
        if self._client is not None:
            self._client.close()
            self._client = None

    async def close(self) -> None:
        """Drop the connection."""
        async with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            self.health.connected = False


def tcp_hub(host: str, port: int, device_id: int = 1, timeout_s: float = 1.0, retries: int = 0) -> ModbusHub:
    """A hub for a PLC on Modbus TCP (TCP recovers lost segments itself: no retries by default)."""
    # reconnect_delay=0: pymodbus must not reconnect behind our back; the hub does it.
    return ModbusHub(
        lambda: AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0),
        f"{host}:{port}", device_id, timeout_s, retries,
    )


def rtu_hub(port: str, *, baudrate: int = 19200, bytesize: int = 8, parity: str = "N", stopbits: int = 1,
            device_id: int = 1, timeout_s: float = 1.0, retries: int = 2) -> ModbusHub:
    """A hub for a PLC on Modbus RTU over a serial line (retried: RS-485 noise loses frames)."""
    return ModbusHub(
        lambda: AsyncModbusSerialClient(port, baudrate=baudrate, bytesize=bytesize, parity=parity,
                                        stopbits=stopbits, timeout=timeout_s, retries=0, reconnect_delay=0),
        port, device_id, timeout_s, retries,
    )
