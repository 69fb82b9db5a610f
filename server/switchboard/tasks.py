"""Stopping background tasks that talk to Redis, reliably on Python 3.11."""

from __future__ import annotations

import asyncio

# How often a task that ran on after a cancel is cancelled again.
STOP_POLL_S = 0.05


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancels `task` until it ends, and waits for it.

    Once is not enough on Python 3.11: redis-py bounds each send with
    `asyncio.wait_for`, which swallows a cancellation that arrives as the
    send completes (CPython gh-86296, fixed in 3.12), and the task runs on.
    A loop that ends otherwise than by cancellation has its error retrieved
    (logged where it happened).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait((task,), timeout=STOP_POLL_S)
    if not task.cancelled():
        task.exception()
