"""The interface every device driver offers the node: `await start()`, `await stop()`, `health`.

The node starts and stops its drivers through this one interface, whatever the device: a barrier
PLC polled over Modbus, a serial reader or indicator, a video stream, an MQTT camera or scanner.
Drivers never decide; they report readings, faults and recoveries to the sink they were given.

- `start()` returns once the driver's background work is running (it never waits for the device:
  a device that does not answer is a fault the driver reports, not an error of `start`).
- `stop()` ends that work and releases what the driver owns (port, Modbus link, reader thread).
- `health` is the driver's `DeviceHealth`, read by the kiosk and telemetry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Protocol, runtime_checkable

from devices.health import DeviceHealth
from devices.tasks import cancel_and_wait


@runtime_checkable
class Driver(Protocol):
    """What the node needs of a device driver."""

    device_id: str
    health: DeviceHealth

    def start(self) -> Awaitable[None]:
        """Start the driver's background work and return (await it)."""
        ...

    def stop(self) -> Awaitable[None]:
        """Stop the driver's work and release what it owns (await it)."""
        ...


class Started:
    """An awaitable that is already done: what `start()` returns when starting needs no waiting.

    A driver whose start is only bookkeeping (the MQTT drivers subscribe on the node's shared bus)
    does it at once, so `driver.start()` works called plainly and `await driver.start()` works
    like every other driver's.
    """

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()  # done at once


class RunsInBackground:
    """For drivers whose work is one long `run()` coroutine (serial lines, video): `start()` runs it."""

    device_id: str
    _run_task: asyncio.Task | None = None

    def run(self) -> Coroutine[Any, Any, None]:  # pragma: no cover - the driver's own
        raise NotImplementedError

    async def start(self) -> None:
        """Run `run()` as a task until `stop()`."""
        self._run_task = asyncio.create_task(self.run(), name=self.device_id)

    async def _end_run(self) -> None:
        """Cancel the task `start()` made, if any, and wait for it to end."""
        task, self._run_task = self._run_task, None
        if task is None:
            return
        await cancel_and_wait(task)
