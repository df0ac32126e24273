"""Per-device health counters that every driver keeps and the kiosk shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class DeviceHealth:
    """What the node knows about one device right now."""

    device_id: str
    kind: str
    connected: bool = False
    last_reading_at: float | None = None
    frames_good: int = 0
    frames_bad: int = 0
    reconnects: int = 0
    last_error: str | None = None
    detail: str | None = None  # what an officer should know that is not an error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
