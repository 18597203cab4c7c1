"""Waiting on a condition instead of sleeping for a fixed time.

A test that waits for something to happen polls for it with a deadline: a passing test
waits only as long as the thing takes, and a failing one says what it waited for.
Generous deadlines keep the suite steady on a loaded machine.

- :func:`wait_until` polls a plain function, from a test's own thread.
- :func:`eventually` polls a coroutine function, inside a running event loop, so that the
  work the test waits for (a runtime's loops, a server in the same loop) goes on between
  polls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL = 0.02  # seconds between two looks at the condition


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something true, and return that; fail after
    ``timeout`` seconds with an error that names ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20.0
) -> T:
    """Await ``check`` until it gives something true, and return that; fail after
    ``timeout`` seconds with an error that names ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(POLL)


def when(check: Callable[[], T | None]) -> Callable[[], Awaitable[T | None]]:
    """A plain check as a coroutine function, for :func:`eventually` to await: for a
    condition on what the tasks of the test's own loop change."""

    async def look() -> T | None:
        return check()

    return look


async def turns(count: int = 50) -> None:
    """Let every task of the loop that can go on, go on, for ``count`` turns of the loop.

    For checking that something does *not* happen next, where nothing on the way to it
    waits for I/O or time: no clock passes, the tasks just get their turns.
    """
    for _ in range(count):
        await asyncio.sleep(0)
