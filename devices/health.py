"""Per-device health counters that every driver keeps and the kiosk shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class DeviceHealth:
    """What the node knows about one device right now.

    `frames_bad` counts messages the codec could not use (malformed, hidden characters);
    `frames_refused` counts well-formed messages the driver did not believe (a payload naming another
    camera, lane or scanner than the device its topic belongs to). Either way `last_error` says why
    the latest one was turned away and `last_error_at` when, so `/api/devices` and telemetry show it.
    """

    device_id: str
    kind: str
    connected: bool = False
    last_reading_at: float | None = None
    frames_good: int = 0
    frames_bad: int = 0
    frames_refused: int = 0
    reconnects: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    detail: str | None = None  # what an officer should know that is not an error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def record_bad(self, reason: str, at: float) -> None:
        """Count a message the codec refused and keep its reason as `last_error`."""
        self.frames_bad += 1
        self.last_error, self.last_error_at = reason, at

    def record_refused(self, reason: str, at: float) -> None:
        """Count a well-formed message the driver did not believe and keep its reason as `last_error`."""
        self.frames_refused += 1
        self.last_error, self.last_error_at = reason, at
