"""State of the WAN link to central, as the uploader and the feed see it.

* up: the last request succeeded and was not slow;
* degraded: the last request failed or was slow, but some request succeeded within `down_after_s`;
* down: nothing succeeded for `down_after_s` (or never, after a failure).
`since` is when the state last changed (epoch seconds). The state is derived from real requests
only (no pings): an idle node with nothing to send still polls the feed, which keeps it fresh.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any


class LinkState:
    def __init__(self, down_after_s: float = 30.0, slow_s: float = 5.0, clock: Callable[[], float] = time.time):
        self.down_after_s, self.slow_s, self._clock = down_after_s, slow_s, clock
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._last_failed = False
        self._last_slow = False
        self._state = "down"
        self.since = clock()
        self._listeners: list[Callable[[str, str], None]] = []

    def on_change(self, listener: Callable[[str, str], None]) -> None:
        """Call listener(old, new) on every state change."""
        self._listeners.append(listener)

    def record_ok(self, latency_s: float = 0.0) -> None:
        self.last_ok_at = self._clock()
        self._last_failed = False
        self._last_slow = latency_s > self.slow_s
        self._update()

    def record_error(self, error: str) -> None:
        self.last_error, self.last_error_at = error, self._clock()
        self._last_failed = True
        self._update()

    @property
    def state(self) -> str:
        self._update()
        return self._state

    def _compute(self) -> str:
        now = self._clock()
        if self.last_ok_at is None or now - self.last_ok_at > self.down_after_s:
            return "down"
        if self._last_failed or self._last_slow:
            return "degraded"
        return "up"

    def _update(self) -> None:
        new = self._compute()
        if new != self._state:
            old, self._state, self.since = self._state, new, self._clock()
            for listener in list(self._listeners):
                listener(old, new)

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        return {"configured": True, "up": state == "up", "state": state, "since": self.since,
                "last_ok_at": self.last_ok_at, "last_error": self.last_error}


class Backoff:
    """Exponential backoff with full jitter: the n-th retry waits uniform(0, min(max, initial * 2**n)).

    Full jitter (rather than a fixed doubling) keeps many gates that lost the same link from all
    hammering central in step when it comes back.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None):
        self.initial_s, self.max_s = initial_s, max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2 ** min(self.failures, 30)))
        self.failures += 1
        return self._rng.uniform(self.initial_s / 4, ceiling)
