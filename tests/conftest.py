"""Shared fixtures: a private Mosquitto broker, the Huu Nghi site, and waiting helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from edge.cli import DEFAULT_SITE
from edge.config import load_site
from simulators.broker import PrivateBroker


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Wait for predicate() to hold, checking every 10 ms; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture(scope="session")
def broker():
    """A private broker for the whole session (tests that stop a broker start their own)."""
    with PrivateBroker() as running:
        yield running


@pytest.fixture(scope="session")
def site():
    return load_site(DEFAULT_SITE)
