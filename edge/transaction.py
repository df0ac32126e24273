"""One gate transaction: the readings gathered for one truck at one lane, de-duplicated.

Scanner verdicts never improve within a transaction: per scan id a final verdict (clear, suspect)
is kept; a different final verdict for the same truck (a clear after a suspect, a suspect after a
clear, or a verdict for a scan that is not the one in progress) is a conflict, and the worst
verdict stands. Readings that arrive after the truck was decided are kept apart as late readings
(see `add_late`): they are shown, never merged into what the decision was made on. (The lane
machine re-decides a truck the rules hold: such a reading is `add`ed, and `redecisions` says so.)

A transaction holds what is known about the truck and what was decided; how far the truck got
towards and under the boom (released, open commanded, under the boom...) is the lane machine's
(`edge/lane.py`, Passage).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devices.protocols.iso6346 import is_valid_container, normalise_container
from devices.protocols.plates import normalise_plate
from devices.readings import (
    ContainerRead,
    PlateRead,
    Reading,
    ScanRead,
    ScanVerdict,
    SealRead,
    SealStatus,
    WeightRead,
)
from edge.records import AlarmCode
from edge.rules import Decision, SealSeen, TransactionFacts

_SEAL_SEVERITY = {SealStatus.INTACT: 0, SealStatus.OPENED: 1, SealStatus.TAMPERED: 2}
_SCAN_SEVERITY = {ScanVerdict.CLEAR: 0, ScanVerdict.PENDING: 1, ScanVerdict.SUSPECT: 2}
OFFICER_DECISIONS = ("release", "refuse", "inspect", "manual_open")
"""Officer actions that decide on the truck (the closed-transaction record names the last one)."""
MAX_LATE_READINGS = 50
"""Late readings kept per transaction for the officer (all of them are journaled)."""


def _is_final(scan: ScanRead) -> bool:
    return scan.completed and scan.verdict != ScanVerdict.PENDING


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
    scan: ScanRead | None = None  # the scan with the worst verdict (ties: the latest)
    scans: dict[str, ScanRead] = field(default_factory=dict)  # scan id → its latest believed state
    scan_conflicts: list[str] = field(default_factory=list)
    readings: int = 0
    duplicates: int = 0
    last_reading_at: float | None = None
    decision: Decision | None = None
    decided_at: float | None = None
    decision_ms: float | None = None
    officer_actions: list[dict[str, Any]] = field(default_factory=list)
    late: list[Reading] = field(default_factory=list)  # readings after the decision, not used by it
    late_count: int = 0
    late_conflicts: list[dict[str, str]] = field(default_factory=list)  # {code, detail} raised after the decision
    seen_scan: ScanRead | None = None  # the worst scan verdict seen, late ones included (what the officer sees)
    redecisions: list[dict[str, Any]] = field(default_factory=list)  # {at, changed, previous, outcome, reasons}

    @property
    def decided(self) -> bool:
        """True once the rules or an officer decided: later readings are late, never merged."""
        return self.decision is not None or bool(self.officer_actions)

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
            changed = self._add_scan(reading)
            for number in reading.containers:
                changed = self._add_container(ContainerRead(reading.device_id, number, 1.0, reading.observed_at,
                                                            reading.received_at)) or changed
        if not changed:
            self.duplicates += 1
        return changed

    def _add_scan(self, reading: ScanRead) -> bool:
        """Merge one scanner message; True when the verdict the rules see (or a conflict) changed."""
        before = (self.scan, len(self.scan_conflicts))
        known = self.scans.get(reading.scan_id)
        in_progress = [s for s in self.scans.values() if not _is_final(s) and s.scan_id != reading.scan_id]
        if known is not None and _is_final(known):
            if _is_final(reading) and reading.verdict != known.verdict:
                self._scan_conflict(f"scan {reading.scan_id}: {reading.verdict.value} after {known.verdict.value}")
                if _SCAN_SEVERITY[reading.verdict] > _SCAN_SEVERITY[known.verdict]:
                    self.scans[reading.scan_id] = reading
            # otherwise a repeat or a stale "started"/"pending": the final verdict stands
        elif known is None or reading.completed or not known.completed:
            if known is None and _is_final(reading) and in_progress:
                # A verdict for a scan nobody started while another scan is being analysed.
                self._scan_conflict(f"scan {reading.scan_id}: {reading.verdict.value} while scan "
                                    f"{in_progress[0].scan_id} is still in progress")
            self.scans[reading.scan_id] = reading
        finals = [s for s in self.scans.values() if _is_final(s)]
        if len({s.verdict for s in finals}) > 1 and not self.scan_conflicts:
            self.scan_conflicts.append(" / ".join(f"scan {s.scan_id}: {s.verdict.value}" for s in finals))
        worst = max((_SCAN_SEVERITY[s.verdict] for s in self.scans.values()), default=None)
        self.scan = None if worst is None else [
            s for s in self.scans.values() if _SCAN_SEVERITY[s.verdict] == worst][-1]
        self.seen_scan = self.scan
        return (self.scan, len(self.scan_conflicts)) != before

    def _scan_conflict(self, detail: str) -> None:
        if detail not in self.scan_conflicts:  # the same forged message again is no news
            self.scan_conflicts.append(detail)

    def add_late(self, reading: Reading) -> tuple[bool, list[dict[str, str]]]:
        """Keep a reading that came after the decision apart; (is it news, conflicts it raises).

        The decided facts do not change. The reading is tried on a copy of the transaction: if the
        copy would have changed, it is news to the officer (kept in `late`, bounded); a scanner
        verdict that contradicts the ones seen is a SCAN_CONFLICT, and the worst verdict seen
        (late ones included) is what `to_dict` shows.
        """
        shadow = copy.copy(self)
        shadow.plates, shadow.seals, shadow.containers = dict(self.plates), dict(self.seals), dict(self.containers)
        shadow.scans, shadow.scan_conflicts = dict(self.scans), list(self.scan_conflicts)
        for late in self.late:
            shadow.add(late)
        conflicts_before = len(shadow.scan_conflicts)
        if not shadow.add(reading):
            self.duplicates += 1
            return False, []
        self.late_count += 1
        self.late.append(reading)
        del self.late[:-MAX_LATE_READINGS]
        self.seen_scan = shadow.scan
        conflicts = [{"code": AlarmCode.SCAN_CONFLICT.value, "detail": detail}
                     for detail in shadow.scan_conflicts[conflicts_before:]]
        self.late_conflicts.extend(conflicts)
        return True, conflicts

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
            scan_conflict="; ".join(self.scan_conflicts) or None,
        )

    def container_numbers(self) -> list[str]:
        """Every container seen, from cameras and from seals."""
        seen = dict.fromkeys(self.containers)
        for seal in self.seals.values():
            if seal.container:
                seen.setdefault(normalise_container(seal.container))
        return list(seen)

    def to_dict(self, passage: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """JSON-friendly view for the kiosk and the journal.

        passage: how far the truck got towards the boom, as the lane machine knows it
        (`released_by`, `barrier_open_commanded`, `manual`, `inspection_by`; see edge/lane.py Passage).
        """
        passage = passage or {}
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
            "scan": _scan_view(self.seen_scan or self.scan, self.scan,
                               [*self.scan_conflicts, *(c["detail"] for c in self.late_conflicts)]),
            "late_readings": [_late_view(r) for r in self.late],
            "late_count": self.late_count,
            "conflicts": [*({"code": AlarmCode.SCAN_CONFLICT.value, "detail": d} for d in self.scan_conflicts),
                          *self.late_conflicts],
            "readings": self.readings,
            "duplicates": self.duplicates,
            "decision": self.decision.to_dict() if self.decision else None,
            "decided_at": self.decided_at,
            "released_by": passage.get("released_by"),
            "barrier_open_commanded": passage.get("barrier_open_commanded", False),
            "decision_ms": self.decision_ms,
            "manual": passage.get("manual", False),
            "inspection_by": passage.get("inspection_by"),
            "officer_actions": list(self.officer_actions),
            "redecisions": [dict(r) for r in self.redecisions],
        }


    def closing_summary(self, result: str, closed_at: float, released_by: str | None) -> dict[str, Any]:
        """The summary journaled when the transaction ends (tx_closed), and shown as a recent truck."""
        return {
            "transaction": self.id,
            "result": str(result),
            "opened_at": self.opened_at,
            "closed_at": closed_at,
            "plates": list(self.plates),
            "containers": self.container_numbers(),
            "seals": list(self.seals),
            "outcome": self.decision.outcome.value if self.decision else None,
            "reasons": self.decision.reasons if self.decision else [],
            "declaration": self.decision.declaration if self.decision else None,
            "declarations": list(self.decision.declarations) if self.decision else [],
            "released_by": released_by,
            "decision_ms": self.decision_ms,
            "officer": self.officer_decision(),
        }

    def officer_decision(self) -> dict[str, Any] | None:
        """The officer's last decision on the truck (release, refuse, inspect, manual open): who, role, why, when."""
        deciding = [a for a in self.officer_actions if a["action"] in OFFICER_DECISIONS]
        if not deciding:
            return None
        last = deciding[-1]
        return {"action": last["action"], "officer": last["officer"], "role": last.get("role"),
                "reason": last["reason"], "at": last["at"]}


def _scan_view(shown: ScanRead | None, decided: ScanRead | None, conflicts: list[str]) -> dict[str, Any] | None:
    """The worst scan verdict seen for the truck, with the conflicts and the verdict the decision used."""
    if shown is None:
        return None
    return {"scan_id": shown.scan_id, "verdict": shown.verdict.value, "completed": shown.completed,
            "image_ref": shown.image_ref, "containers": list(shown.containers),
            "decided_verdict": decided.verdict.value if decided else None,
            "late": decided is None or shown is not decided, "conflicts": list(conflicts)}


def reading_said(reading: Reading) -> str:
    """What a reading said, in a few words (`S7 intact`, `X1 clear`, `28050 kg`)."""
    if isinstance(reading, PlateRead):
        return f"{reading.plate} ({reading.confidence:.2f})"
    if isinstance(reading, SealRead):
        return f"{reading.seal_id} {reading.status.value}"
    if isinstance(reading, ContainerRead):
        return reading.container
    if isinstance(reading, WeightRead):
        return f"{reading.gross_kg:.0f} kg"
    return f"{reading.scan_id} {reading.verdict.value}"


def _late_view(reading: Reading) -> dict[str, Any]:
    """One late reading in a line: what kind, from which device, what it said, when."""
    return {"type": type(reading).__name__, "device": reading.device_id, "said": reading_said(reading),
            "at": reading.received_at or reading.observed_at}
