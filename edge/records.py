"""The lane's record vocabulary: journal kinds, alarm codes, notices, payload codecs, and `replay`.

Everything a lane writes to the journal, or tells its listeners, is named here once. The enums are
`StrEnum`s whose values are the strings already in the journal, so a row written with
`JournalKind.TX_CLOSED` is byte for byte the row that `"tx_closed"` wrote, and a row read back
(a plain `str` kind) compares equal to its enum member.

`replay(entries)` is the one reader of a lane's journal rows: it folds them (oldest first) into
what a restarted lane, the kiosk or the scenario runner needs to know, with no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from devices.readings import ContainerRead, PlateRead, Reading, ScanRead, ScanVerdict, SealRead, SealStatus, WeightRead
from edge.rules import Decision, Finding, Outcome


class JournalKind(StrEnum):
    """The kind of a journal row written by a lane (values are the journal's strings)."""

    READING = "reading"  # a device reading, as it arrived
    LOOP = "loop"  # an induction loop changed
    BOOM = "boom"  # the boom reached open or closed
    DEVICE_FAULT = "device_fault"
    DEVICE_RECOVERED = "device_recovered"
    TX_OPENED = "tx_opened"  # a truck's transaction began
    READING_ATTACHED = "reading_attached"  # a reading joined the transaction: from before the arrival loop, or
    # one that came for a truck the rules hold (it is re-decided on)
    DECISION = "decision"  # the rules' decision, with the facts it was made on (`redecision: true`: again)
    OFFICER_ACTION = "officer_action"  # release/refuse/inspect/manual_open/manual_close/acknowledge_alarm
    BARRIER_COMMAND = "barrier_command"  # open or close, committed before the PLC is told
    TX_CLOSED = "tx_closed"  # the transaction's summary: how it ended
    LATE_READING = "late_reading"  # a reading after the decision, not used by it
    UNAUTHORISED_PASSAGE = "unauthorised_passage"  # a vehicle went under a boom opened with no release
    ALARM = "alarm"
    LANE_STATE = "lane_state"  # the lane machine moved {from, to}
    CLAIM_RELEASED = "claim_released"  # a declaration's claim at the gate was given up (by an officer, or no passage)


class AlarmCode(StrEnum):
    """The `code` of an alarm row (values are the journal's strings)."""

    DEVICE_FAULT = "DEVICE_FAULT"
    TAILGATING = "TAILGATING"
    BOOM_CLOSED_BEFORE_PASSAGE = "BOOM_CLOSED_BEFORE_PASSAGE"
    BOOM_OPEN_WITHOUT_RELEASE = "BOOM_OPEN_WITHOUT_RELEASE"  # latched until a supervisor acknowledges it
    PLATE_CONFLICT = "PLATE_CONFLICT"
    SCAN_CONFLICT = "SCAN_CONFLICT"
    DECISION_DURING_FAULT = "DECISION_DURING_FAULT"
    BARRIER_OPEN_FAILED = "BARRIER_OPEN_FAILED"
    BARRIER_COMMAND_FAILED = "BARRIER_COMMAND_FAILED"
    CLOSE_REFUSED_SAFETY_LOOP = "CLOSE_REFUSED_SAFETY_LOOP"
    UNEXPECTED_EVENT = "UNEXPECTED_EVENT"
    NODE_RESTARTED = "NODE_RESTARTED"
    JOURNAL_FAILED = "JOURNAL_FAILED"  # the journal cannot write: lanes degraded, rows held in memory
    JOURNAL_RECOVERED = "JOURNAL_RECOVERED"  # it writes again: the held rows are written back before this row
    JOURNAL_ROWS_DROPPED = "JOURNAL_ROWS_DROPPED"  # the in-memory buffer was full: how many rows, of which kinds
    CLAIM_NOT_SETTLED = "CLAIM_NOT_SETTLED"  # a claim's passage could not be written: it stays claimed


LATCHED_ALARMS = frozenset({AlarmCode.BOOM_OPEN_WITHOUT_RELEASE})
TAMPER_TEXT = "Boom opened without a recorded release: closed by the node"


class TxResult(StrEnum):
    """How a transaction ended (`result` of a tx_closed row)."""

    PASSED = "passed"
    LEFT_LANE = "left_lane"
    CLOSED_BEFORE_PASSAGE = "closed_before_passage"
    UNAUTHORISED_PASSAGE = "unauthorised_passage"


class Notice(StrEnum):
    """What a lane controller tells its listeners (kiosk, metrics, telemetry, scenario runner)."""

    LANE = "lane"  # the lane's snapshot changed
    READING = "reading"
    DEVICE = "device"  # a device failed or recovered
    DECISION = "decision"
    OFFICER_ACTION = "officer_action"
    BARRIER = "barrier"  # an open command reached the PLC
    TX_CLOSED = "tx_closed"
    LATE_READING = "late_reading"
    UNAUTHORISED_PASSAGE = "unauthorised_passage"
    ALARM = "alarm"
    CLAIM_RELEASED = "claim_released"


# Journal kinds shown in a lane's history (kiosk), and the notices after which it has a new line.
HISTORY_KINDS = (JournalKind.OFFICER_ACTION, JournalKind.DECISION, JournalKind.BARRIER_COMMAND, JournalKind.TX_CLOSED,
                 JournalKind.ALARM, JournalKind.DEVICE_FAULT, JournalKind.DEVICE_RECOVERED, JournalKind.LATE_READING,
                 JournalKind.UNAUTHORISED_PASSAGE, JournalKind.CLAIM_RELEASED)
HISTORY_NOTICES = frozenset({Notice.DECISION, Notice.OFFICER_ACTION, Notice.BARRIER, Notice.TX_CLOSED, Notice.ALARM,
                             Notice.LATE_READING, Notice.UNAUTHORISED_PASSAGE, Notice.CLAIM_RELEASED})


class Entry(Protocol):
    """A journal row as replay reads it (edge.journal.JournalEntry)."""

    seq: int
    at: float
    lane: str | None
    kind: str
    payload: dict[str, Any]


# ---------------------------------------------------------------- payload codecs

_READING_TYPES = {cls.__name__: cls for cls in (PlateRead, SealRead, ContainerRead, WeightRead, ScanRead)}


def reading_payload(reading: Reading) -> dict[str, Any]:
    """JSON-friendly form of a reading, with its type."""
    data = asdict(reading)
    if isinstance(reading, SealRead):
        data["status"] = reading.status.value
    elif isinstance(reading, ScanRead):
        data["verdict"] = reading.verdict.value
        data["containers"] = list(reading.containers)
    data["type"] = type(reading).__name__
    return data


def reading_from_payload(data: dict[str, Any]) -> Reading:
    """Inverse of reading_payload (for rebuilding a transaction from the journal)."""
    data = dict(data)
    kind = data.pop("type")
    data.pop("transaction", None)
    if kind == "SealRead":
        data["status"] = SealStatus(data["status"])
    elif kind == "ScanRead":
        data["verdict"] = ScanVerdict(data["verdict"])
        data["containers"] = tuple(data["containers"])
    return _READING_TYPES[kind](**data)


def decision_declarations(data: dict[str, Any]) -> list[str]:
    """Every declaration a journaled decision or closed transaction covers (rows written before
    consolidated loads carry only `declaration`)."""
    numbers = data.get("declarations")
    if numbers:
        return [str(n) for n in numbers]
    return [data["declaration"]] if data.get("declaration") else []


def decision_from_dict(data: dict[str, Any]) -> Decision:
    """Rebuild a Decision from its journaled form."""
    return Decision(
        outcome=Outcome(data["outcome"]),
        findings=tuple(Finding(f["code"], f.get("detail", ""), f.get("declaration"))
                       for f in data.get("findings", [])),
        declaration=data.get("declaration"),
        declarations=tuple(decision_declarations(data)),
        ruleset_version=data.get("ruleset_version", ""),
        awaiting_readings=data.get("awaiting_readings", False),
    )


def history_line(entry: Entry) -> dict[str, Any]:
    """A journal row as one line of a lane's history (decisions without the bulky facts)."""
    payload = dict(entry.payload)
    payload.pop("facts", None)
    if entry.kind == JournalKind.DECISION:
        payload = {**{k: payload.get(k) for k in ("transaction", "outcome", "reasons", "declaration")},
                   **{k: payload[k] for k in ("redecision", "changed") if k in payload}}
        payload["declarations"] = decision_declarations(entry.payload)
    return {"seq": entry.seq, "at": entry.at, "lane": entry.lane, "kind": entry.kind, **payload}


# ---------------------------------------------------------------- replay


@dataclass
class ReplayedTransaction:
    """The transaction a restart interrupted, as its rows tell it."""

    id: str
    lane: str | None
    opened_at: float
    readings: list[Reading] = field(default_factory=list)  # what its decision was (or will be) made on
    decision: Decision | None = None
    open_commanded: bool = False  # its release was journaled as an open command
    released_by: str | None = None  # who released it (as that command says)


@dataclass
class LaneReplay:
    """What a lane's journal rows say, folded oldest first."""

    open_transaction: ReplayedTransaction | None = None  # opened and never closed
    latched_alarm: dict[str, Any] | None = None  # the tamper alarm raised since the last acknowledgement
    device_changes: list[dict[str, Any]] = field(default_factory=list)  # {device, event, at, error}


def replay(entries: Iterable[Entry]) -> LaneReplay:
    """Fold one lane's journal rows (oldest first, any subset by kind) into a LaneReplay. Pure."""
    out = LaneReplay()
    for entry in entries:
        kind, payload, tx = entry.kind, entry.payload, out.open_transaction
        if kind == JournalKind.TX_OPENED:
            out.open_transaction = ReplayedTransaction(payload["transaction"], entry.lane, entry.at)
        elif kind == JournalKind.TX_CLOSED:
            if tx is not None and payload.get("transaction") == tx.id:
                out.open_transaction = None
        elif kind == JournalKind.READING:
            if tx is not None and tx.decision is None and not tx.open_commanded:  # later ones are late
                tx.readings.append(reading_from_payload(payload))
        elif kind == JournalKind.READING_ATTACHED:  # early, or for a held truck it re-decided
            if tx is not None and payload.get("transaction") == tx.id and not tx.open_commanded:
                tx.readings.append(reading_from_payload(payload))
        elif kind == JournalKind.DECISION:
            if tx is not None and payload.get("transaction") == tx.id:
                tx.decision = decision_from_dict(payload)
        elif kind == JournalKind.BARRIER_COMMAND:
            if tx is not None and payload.get("transaction") == tx.id and payload.get("command") == "open":
                tx.open_commanded, tx.released_by = True, payload.get("released_by")
        elif kind == JournalKind.ALARM and payload.get("code") in LATCHED_ALARMS:
            if out.latched_alarm is None:
                out.latched_alarm = {"code": payload["code"], "since": entry.at, "openings": 0, "text": TAMPER_TEXT}
            out.latched_alarm["openings"] += 1
        elif kind == JournalKind.OFFICER_ACTION and payload.get("action") == "acknowledge_alarm":
            out.latched_alarm = None
        elif kind in (JournalKind.DEVICE_FAULT, JournalKind.DEVICE_RECOVERED):
            out.device_changes.append({"device": payload["device"],
                                       "event": "fault" if kind == JournalKind.DEVICE_FAULT else "recovered",
                                       "at": entry.at, "error": payload.get("error")})
    return out
