"""One gate transaction: the readings gathered for one truck at one lane, de-duplicated."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from devices.protocols.iso6346 import is_valid_container, normalise_container
from devices.protocols.plates import normalise_plate
from devices.readings import ContainerRead, PlateRead, Reading, ScanRead, SealRead, SealStatus, WeightRead
from edge.rules import Decision, SealSeen, TransactionFacts

_SEAL_SEVERITY = {SealStatus.INTACT: 0, SealStatus.OPENED: 1, SealStatus.TAMPERED: 2}


@dataclass
class Transaction:
    """Readings for one truck. Adding the same reading twice changes nothing."""

    lane_id: str
    opened_at: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    plates: dict[str, PlateRead] = field(default_factory=dict)
    seals: dict[str, SealRead] = field(default_factory=dict)
    containers: dict[str, ContainerRead] = field(default_factory=dict)
    weight_kg: float | None = None
    scan: ScanRead | None = None
    readings: int = 0
    duplicates: int = 0
    last_reading_at: float | None = None
    decision: Decision | None = None
    decided_at: float | None = None
    released_by: str | None = None
    open_commanded: bool = False
    open_pending: bool = False  # released, but the open command has not reached the PLC yet
    vehicle_entered: bool = False
    closing: bool = False
    decision_ms: float | None = None
    manual: bool = False
    inspection_by: str | None = None
    officer_actions: list[dict[str, Any]] = field(default_factory=list)

    def add(self, reading: Reading) -> bool:
        """Add a reading; return True when it changed what the truck is known to carry."""
        self.readings += 1
        self.last_reading_at = reading.received_at or reading.observed_at
        changed = False
        if isinstance(reading, PlateRead):
            key = normalise_plate(reading.plate)
            best = self.plates.get(key)
            if best is None or reading.confidence > best.confidence:
                changed = best is None or best.confidence < reading.confidence
                self.plates[key] = reading
        elif isinstance(reading, SealRead):
            known = self.seals.get(reading.seal_id)
            # A seal never becomes "more intact": keep the worst status seen.
            worse = known is None or _SEAL_SEVERITY[reading.status] > _SEAL_SEVERITY[known.status]
            if worse or (reading.container and not known.container):
                self.seals[reading.seal_id] = reading
                changed = True
        elif isinstance(reading, ContainerRead):
            changed = self._add_container(reading)
        elif isinstance(reading, WeightRead):
            changed = self.weight_kg != reading.gross_kg
            self.weight_kg = reading.gross_kg
        elif isinstance(reading, ScanRead):
            current = self.scan
            # A completed scan's verdict is never replaced by a "scan started" message.
            if current is None or reading.completed or not current.completed:
                changed = current is None or (current.verdict, current.completed) != (
                    reading.verdict, reading.completed)
                self.scan = reading
            for number in reading.containers:
                changed = self._add_container(ContainerRead(reading.device_id, number, 1.0, reading.observed_at,
                                                            reading.received_at)) or changed
        if not changed:
            self.duplicates += 1
        return changed

    def _add_container(self, reading: ContainerRead) -> bool:
        key = normalise_container(reading.container)
        if key in self.containers:
            return False
        self.containers[key] = reading
        return True

    def facts(self) -> TransactionFacts:
        """What the rules need to know about this truck."""
        return TransactionFacts(
            plates=tuple((plate, read.confidence) for plate, read in self.plates.items()),
            containers=tuple(self.containers),
            seals=tuple(
                SealSeen(s.seal_id, s.status, normalise_container(s.container) if s.container else None)
                for s in self.seals.values()
            ),
            weight_kg=self.weight_kg,
            scan_verdict=self.scan.verdict.value if self.scan else None,
        )

    def container_numbers(self) -> list[str]:
        """Every container seen, from cameras and from seals."""
        seen = dict.fromkeys(self.containers)
        for seal in self.seals.values():
            if seal.container:
                seen.setdefault(normalise_container(seal.container))
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view for the kiosk and the journal."""
        return {
            "id": self.id,
            "lane": self.lane_id,
            "opened_at": self.opened_at,
            "plates": [
                {"plate": p.plate, "normalised": key, "confidence": p.confidence, "device": p.device_id}
                for key, p in self.plates.items()
            ],
            "containers": [
                {"number": number, "check_digit_ok": is_valid_container(number)}
                for number in self.container_numbers()
            ],
            "seals": [
                {"seal_id": s.seal_id, "status": s.status.value, "battery_pct": s.battery_pct,
                 "container": s.container, "device": s.device_id}
                for s in self.seals.values()
            ],
            "weight_kg": self.weight_kg,
            "scan": None if self.scan is None else {
                "scan_id": self.scan.scan_id, "verdict": self.scan.verdict.value, "completed": self.scan.completed,
                "image_ref": self.scan.image_ref, "containers": list(self.scan.containers)},
            "readings": self.readings,
            "duplicates": self.duplicates,
            "decision": self.decision.to_dict() if self.decision else None,
            "decided_at": self.decided_at,
            "released_by": self.released_by,
            "barrier_open_commanded": self.open_commanded,
            "decision_ms": self.decision_ms,
            "manual": self.manual,
            "inspection_by": self.inspection_by,
            "officer_actions": list(self.officer_actions),
        }
