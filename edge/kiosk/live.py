"""Live updates for the board: the node's lane notices (NodeView.subscribe) → Server-Sent Events, one queue per stream.

Each lane change is turned into the lane's full view once, serialised once, and the same bytes
are put on every open stream's queue. Queues are bounded: a stream that does not keep up loses
its oldest messages (each lane message is a whole lane view, so the newest one is enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from edge.kiosk.board import GateAlarms, board_lane_view, board_lane_views, board_status_view
from edge.node_view import NodeView
from edge.records import HISTORY_NOTICES, Notice

log = logging.getLogger(__name__)

# Controller notices after which a lane's history has a new line.
HISTORY_EVENTS = HISTORY_NOTICES


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"event: {event}\ndata: {text}\n\n".encode()


class Subscriber:
    """One open event stream: a bounded queue that drops its oldest message when full."""

    def __init__(self, maxsize: int):
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, message: bytes) -> None:
        while True:
            try:
                self.queue.put_nowait(message)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                    self.dropped += 1


class LiveHub:
    """Fans lane events out to the open streams."""

    def __init__(self, node: NodeView, *, queue_size: int = 256, keepalive_s: float = 15.0,
                 status_interval_s: float = 5.0, alarms: GateAlarms | None = None,
                 stopping: Callable[[], bool] | None = None):
        self.node = node
        self.stopping = stopping  # True once the server that carries the streams is shutting down
        self.alarms = alarms
        self.queue_size = queue_size
        self.keepalive_s = keepalive_s
        self.status_interval_s = status_interval_s
        self.subscribers: set[Subscriber] = set()
        self.published = 0
        self._status_task: asyncio.Task | None = None
        self._closed = False
        self._unsubscribe = node.subscribe(self._on_lane_event)

    # ------------------------------------------------------------ publishing

    def _on_lane_event(self, lane_id: str, kind: str, payload: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        if kind in (Notice.LANE, Notice.DEVICE):
            self.publish(sse("lane", board_lane_view(self.node, lane_id)))
            if kind == Notice.DEVICE:
                self.publish(sse("status", board_status_view(self.node, alarms=self.alarms)))
        elif kind in HISTORY_EVENTS:
            self.publish(sse("history", {"lane": lane_id, "kind": kind}))
            if kind == Notice.ALARM:
                self.publish(sse("alarm", {"lane": lane_id, **payload}))
            elif kind == Notice.CLAIM_RELEASED:  # a card at any lane may show that claim
                for other in self.node.lane_ids():
                    self.publish(sse("lane", board_lane_view(self.node, other)))

    def publish(self, message: bytes) -> None:
        self.published += 1
        for subscriber in list(self.subscribers):
            subscriber.put(message)

    async def _status_loop(self) -> None:
        while self.subscribers:
            await asyncio.sleep(self.status_interval_s)
            if not self.subscribers:
                break
            try:
                stats = await asyncio.to_thread(self.node.cache.stats)
                self.publish(sse("status", board_status_view(self.node, stats, self.alarms)))
            except Exception:  # the status strip is informative; never kill the streams over it
                log.exception("status update failed")
        self._status_task = None

    # ------------------------------------------------------------ streams

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(self.queue_size)
        self.subscribers.add(subscriber)
        if self._status_task is None:
            self._status_task = asyncio.create_task(self._status_loop(), name="kiosk-status")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def close(self) -> None:
        """End every stream (node shutting down)."""
        self._closed = True
        self._unsubscribe()

    def _stopping(self) -> bool:
        if self._closed:
            return True
        return bool(self.stopping is not None and self.stopping())

    async def stream(self, still_allowed: Callable[[], bool], *, recheck_s: float = 5.0,
                     first: list[bytes] | None = None) -> AsyncIterator[bytes]:
        """The bytes of one event stream: the board's current state, then every change.

        still_allowed() is asked every `recheck_s`: when the session has expired, been ended or its
        user disabled, a `logout` event is sent and the stream ends.
        """
        subscriber = self.subscribe()
        try:
            yield b"retry: 2000\n\n"
            for message in first or []:
                yield message
            for view in board_lane_views(self.node):
                yield sse("lane", view)
            last_sent = last_check = time.monotonic()
            while not self._stopping():
                try:
                    async with asyncio.timeout(1.0):  # not wait_for: it can swallow a cancel on 3.11
                        message = await subscriber.queue.get()
                except TimeoutError:
                    message = None
                now = time.monotonic()
                if now - last_check >= recheck_s:
                    last_check = now
                    if not still_allowed():
                        yield sse("logout", {"reason": "session_ended"})
                        return
                if message is None:
                    if now - last_sent >= self.keepalive_s:
                        last_sent = now
                        yield b": keep-alive\n\n"
                    continue
                batch = [message]
                while not subscriber.queue.empty() and len(batch) < 64:
                    batch.append(subscriber.queue.get_nowait())
                last_sent = now
                yield b"".join(batch)
        finally:
            self.unsubscribe(subscriber)
