"""Typed readings and device events that drivers emit. Plain frozen data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class SealStatus(StrEnum):
    """State an e-seal reports for itself."""

    INTACT = "intact"
    OPENED = "opened"
    TAMPERED = "tampered"


class Loop(StrEnum):
    """Induction loops wired to the barrier PLC."""

    ARRIVAL = "arrival"
    SAFETY = "safety"
    EXIT = "exit"


class BoomPosition(StrEnum):
    """Where the barrier boom is, from its limit switches."""

    OPEN = "open"
    CLOSED = "closed"
    MOVING = "moving"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PlateRead:
    """A number plate read by an ANPR camera."""

    device_id: str
    plate: str
    confidence: float
    observed_at: float
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ContainerRead:
    """An ISO 6346 container number read by a camera or reported by a seal."""

    device_id: str
    container: str
    confidence: float
    observed_at: float
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SealRead:
    """An e-seal seen by a reader."""

    device_id: str
    seal_id: str
    status: SealStatus
    battery_pct: int | None
    container: str | None
    observed_at: float
    received_at: float = 0.0
    reader_id: str = ""


class ScanVerdict(StrEnum):
    """A container scanner's (NII) verdict on a scan."""

    CLEAR = "clear"
    SUSPECT = "suspect"
    PENDING = "pending"  # image analysis not finished


@dataclass(frozen=True, slots=True)
class WeightRead:
    """A stable gross weight from a weighbridge indicator, in kilograms."""

    device_id: str
    gross_kg: float
    observed_at: float
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ScanRead:
    """A container scanner's scan of one truck: started (verdict pending) or completed."""

    device_id: str
    scan_id: str
    verdict: ScanVerdict
    containers: tuple[str, ...]
    image_ref: str | None
    completed: bool
    observed_at: float
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class LoopChanged:
    """An induction loop became occupied or clear."""

    device_id: str
    loop: Loop
    occupied: bool
    at: float


@dataclass(frozen=True, slots=True)
class BoomChanged:
    """The boom reached a new position (from the PLC's limit switches)."""

    device_id: str
    position: BoomPosition
    at: float


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """A device stopped answering or reported a fault."""

    device_id: str
    error: str
    at: float


@dataclass(frozen=True, slots=True)
class DeviceRecovered:
    """A device that was faulty answers again."""

    device_id: str
    at: float


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A codec refused a frame (bad checksum, torn, unparsable). Counted, never a reading."""

    reason: str
    raw: bytes = field(default=b"", repr=False)


Reading = PlateRead | ContainerRead | SealRead | WeightRead | ScanRead
DeviceEvent = Reading | LoopChanged | BoomChanged | DeviceFault | DeviceRecovered
