"""One Modbus TCP connection shared by every signal on a PLC: serialised requests, reconnects.

Like Home Assistant's modbus hub: entities (the barrier driver's polling, commands, heartbeat) ask
the hub; the hub queues requests on the connection, reconnects with backoff, and reports whether
the device answers. pymodbus reconnects silently after the first connect, so the hub watches the
connection itself and reconnects on its own terms.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
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
    extra: dict[str, Any] = field(default_factory=dict)


class ModbusTcpHub:
    """A Modbus TCP client that serialises requests and reconnects by itself."""

    def __init__(self, host: str, port: int, device_id: int = 1, timeout_s: float = 1.0):
        self.host, self.port, self.device_id, self.timeout_s = host, port, device_id, timeout_s
        self.health = LinkHealth()
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self._ever_connected = False

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        if self._client is not None:
            self._client.close()
        # reconnect_delay=0: pymodbus must not reconnect behind our back; the hub does it.
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout_s, retries=0, reconnect_delay=0
        )
        ok = await client.connect()
        if not ok:
            client.close()
            raise ModbusIOError(f"cannot connect to {self.host}:{self.port}")
        if self._ever_connected:
            self.health.reconnects += 1
        self._ever_connected = True
        self._client = client
        self.health.connected = True
        return client

    async def request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one client call (e.g. "read_discrete_inputs") and return its response.

        Raises ModbusIOError on connection loss, timeout or an exception reply.
        """
        async with self._lock:
            try:
                client = await self._ensure_connected()
                response = await asyncio.wait_for(
                    getattr(client, method)(*args, device_id=self.device_id, **kwargs),
                    timeout=self.timeout_s * 2,
                )
            except (TimeoutError, ModbusException, OSError, ModbusIOError) as exc:
                self._fail(f"{method}: {exc or type(exc).__name__}")
                raise ModbusIOError(str(exc) or type(exc).__name__) from exc
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
