"""Stopping asyncio tasks for certain."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task, retry_s: float = 1.0) -> None:
    """Cancel `task` and wait until it has ended, cancelling it again each `retry_s` while it runs on.

    One cancel is not always enough: on Python 3.11, `asyncio.wait_for` returns the result (or raises
    TimeoutError) when a cancellation meets a finished inner future or its own timeout, and the
    cancellation is lost (fixed in 3.12). A task whose loop lost it would run on, and a stop that
    waited on it would wait for ever (seen: a lane's loop during a journal write the disk held up).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    if not task.cancelled():
        task.exception()  # retrieved: an error it ended with is not reported again as never retrieved
