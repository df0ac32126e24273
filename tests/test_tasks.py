"""Stopping a task for certain, even when its loop loses a cancellation (Python 3.11's wait_for can)."""

from __future__ import annotations

import asyncio

from devices.tasks import cancel_and_wait


async def _loop_that_loses_one_cancellation(lost: list[int]) -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if not lost:  # as 3.11's wait_for does when the cancellation meets a result or its timeout
                lost.append(1)
                continue
            raise


def test_a_task_that_loses_a_cancellation_is_stopped_all_the_same():
    async def scenario():
        lost: list[int] = []
        task = asyncio.create_task(_loop_that_loses_one_cancellation(lost))
        await asyncio.sleep(0)
        task.cancel()  # what a plain stop did: cancel once, then wait for ever
        done, _ = await asyncio.wait({task}, timeout=0.2)
        assert not done and lost == [1]
        await asyncio.wait_for(cancel_and_wait(task, retry_s=0.05), timeout=5)
        assert task.cancelled()

    asyncio.run(scenario())


def test_a_task_that_ended_with_an_error_is_waited_for_without_raising_it():
    async def scenario():
        async def fails() -> None:
            raise RuntimeError("device gone")

        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        assert isinstance(task.exception(), RuntimeError)

    asyncio.run(scenario())
