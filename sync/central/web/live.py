"""Live updates for central's page: the gates overview and the alarm counts as Server-Sent Events.

One task per process reads the database every `interval_s` while at least one page is open, and puts the
serialised overview on every open stream only when it changed (so several workers, each with its own streams,
all see what any of them stored). A stream that cannot keep up keeps only the newest message: each one is whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"event: {event}\ndata: {text}\n\n".encode()


VOLATILE = frozenset({"now", "waiting_s", "age_s"})  # grow with the clock alone: the page counts them itself


def _stable(value: Any) -> Any:
    """`value` without the keys that change with the clock alone (what decides whether to send it again)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


class LiveFeed:
    """Polls `snapshot()` (a blocking database read, run in a thread) and fans changes out to the open streams."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], interval_s: float = 2.0, keepalive_s: float = 15.0):
        self.snapshot, self.interval_s, self.keepalive_s = snapshot, interval_s, keepalive_s
        self.streams: set[asyncio.Queue[bytes]] = set()
        self.latest: dict[str, bytes] = {}
        self._compared: dict[str, str] = {}
        self._task: asyncio.Task | None = None

    async def _poll(self) -> None:
        while self.streams:
            try:
                parts = await asyncio.to_thread(self.snapshot)
            except Exception:  # the database may be away for a while: keep the streams, try again
                log.exception("live snapshot failed")
                parts = {}
            for event, data in parts.items():
                stable = json.dumps(_stable(data), sort_keys=True, default=str)
                if self._compared.get(event) != stable:
                    self._compared[event] = stable
                    full = self.latest[event] = sse(event, data)
                    for queue in list(self.streams):
                        while queue.full():
                            with contextlib.suppress(asyncio.QueueEmpty):
                                queue.get_nowait()
                        queue.put_nowait(full)
            await asyncio.sleep(self.interval_s)
        self._task = None

    async def stream(self, still_allowed: Callable[[], bool], recheck_s: float = 5.0) -> AsyncIterator[bytes]:
        """The bytes of one stream: the current state at once, then each change; a `logout` event and the end
        when `still_allowed()` (asked every `recheck_s`, in a thread) turns false."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(16)
        self.streams.add(queue)
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="central-live")
        try:
            yield b"retry: 2000\n\n"
            for message in list(self.latest.values()):
                yield message
            last_sent = last_check = time.monotonic()
            while True:
                try:
                    async with asyncio.timeout(1.0):
                        message = await queue.get()
                except TimeoutError:
                    message = None
                now = time.monotonic()
                if now - last_check >= recheck_s:
                    last_check = now
                    if not await asyncio.to_thread(still_allowed):
                        yield sse("logout", {"reason": "session_ended"})
                        return
                if message is not None:
                    last_sent = now
                    yield message
                elif now - last_sent >= self.keepalive_s:
                    last_sent = now
                    yield b": keep-alive\n\n"
        finally:
            self.streams.discard(queue)
