"""What the kiosk, telemetry, metrics and Sparkplug read of a running node, and its one channel of lane notices.

`NodeView` is the narrow read interface those readers take instead of the whole `edge.app.GateNode` (which
implements it): the gate's identity, each lane's snapshot and state, device health, the declaration cache
and the journal (read only), the link to central, the officer's entry point, and ONE subscription to the
lane notices. `NoticeFanOut` is that subscription: the node hangs it once on every lane controller and
hands each notice (lane id, kind, payload) to every subscriber in turn; a subscriber that raises is logged
and the others still get the notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from edge.cache import DeclarationCache
from edge.config import LaneConfig, SiteConfig
from edge.journal import Journal

log = logging.getLogger(__name__)

LaneNoticeCallback = Callable[[str, str, dict[str, Any]], None]
"""A subscriber: called with (lane id, notice kind, payload) on the node's event loop; must not block."""

Unsubscribe = Callable[[], None]


@dataclass(frozen=True)
class LaneStatus:
    """A lane's state in a few words: what telemetry, metrics and Sparkplug publish of it."""

    lane: str
    state: str
    faults: dict[str, str] = field(default_factory=dict)


class NoticeFanOut:
    """One channel of lane notices: every notice goes once to every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[LaneNoticeCallback] = []
        self.delivered = 0
        self.failures = 0

    def subscribe(self, callback: LaneNoticeCallback) -> Unsubscribe:
        """Deliver every later lane notice to `callback`; the returned function stops that (idempotent)."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    @property
    def subscribers(self) -> int:
        """How many subscribers the channel has now."""
        return len(self._subscribers)

    def publish(self, lane_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Hand one notice to every subscriber; a subscriber that raises is logged and counted, never fatal."""
        for callback in list(self._subscribers):  # a subscriber may unsubscribe while being called
            try:
                callback(lane_id, kind, payload)
                self.delivered += 1
            except Exception:
                self.failures += 1
                log.exception("lane notice subscriber %r failed on %s/%s", callback, lane_id, kind)


@runtime_checkable
class NodeView(Protocol):
    """The read side of one gate node, as its kiosk, telemetry, metrics and Sparkplug see it."""

    @property
    def site(self) -> SiteConfig:
        """The site: the gate's id (`site.gate`) and names (`name`, `name_vi`)."""
        ...

    @property
    def cache(self) -> DeclarationCache:
        """The declaration cache (stats, age, look-ups; readers never write it)."""
        ...

    @property
    def journal(self) -> Journal:
        """The journal (history, recent trucks, gate alarms; readers never append to it)."""
        ...

    @property
    def mqtt_insecure(self) -> bool:
        """True when the device bus runs plaintext and anonymous (`mqtt.insecure: true`)."""
        ...

    def lane_ids(self) -> list[str]:
        """The gate's lanes, in configuration order."""
        ...

    def lane_config(self, lane_id: str) -> LaneConfig:
        """A lane's configuration (name, direction, policy); KeyError for an unknown lane."""
        ...

    def lane_snapshot(self, lane_id: str) -> dict[str, Any]:
        """The lane machine's snapshot (state, transaction, faults, alarm) as plain data."""
        ...

    def lane_statuses(self) -> list[LaneStatus]:
        """Every lane's state and faulty devices."""
        ...

    def available_actions(self, lane_id: str) -> list[str]:
        """The officer actions the lane accepts now (roles are the caller's to check)."""
        ...

    def open_transaction(self, lane_id: str) -> dict[str, Any] | None:
        """The lane's open transaction as plain data, or None."""
        ...

    def reading_age(self, lane_id: str) -> float | None:
        """Seconds since the last reading of the lane's open transaction (lane clock), or None."""
        ...

    async def officer_action(self, lane_id: str, action: str, officer: str, reason: str,
                             role: str | None = None) -> dict[str, Any]:
        """An officer's action at a lane, journaled before it acts (LaneError when the lane refuses it)."""
        ...

    async def release_claim(self, number: str, officer: str, role: str | None, reason: str) -> dict[str, Any]:
        """Give up the gate's claim on a declaration, journaled with officer, role and reason before it acts;
        the released claim as plain data (edge.claims.ClaimError when none is held or its truck passes now)."""
        ...

    def device_health(self) -> list[dict[str, Any]]:
        """Health of every device, with its lane."""
        ...

    def sync_status(self) -> dict[str, Any]:
        """Link to central, outbox backlog, feed position."""
        ...

    def journal_status(self) -> dict[str, Any]:
        """Whether the journal writes: {ok, reason, since, held_rows, dropped_rows, ...} (edge/journal_guard.py)."""
        ...

    def subscribe(self, callback: LaneNoticeCallback) -> Unsubscribe:
        """Every lane notice from now on, to `callback`; call the result to stop."""
        ...
