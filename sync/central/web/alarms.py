"""Central's alarm list: what central refused, what the gates raised, and gates going offline; acknowledge and clear.

Three sources, each already stored by central, so nothing is copied at ingest:
  `c<rid>`  central's own alarms (refused uploads: forged rows, a rewritten journal ...), table `alarms`
  `e<rid>`  alarms a gate journaled and uploaded (events of kind `alarm` and `unauthorised_passage`)
  `s<rid>`  a gate's death (Sparkplug / status topic), table `gate_status_log`
An operator's acknowledgement and clearing are kept in `alarm_states` by alarm id, with the operator's name and
the time (the audit); clearing also acknowledges. Severity follows the code (`SEVERITY`). The list reads the newest
`per_source` alarms of each source (older ones leave the list, their audit stays).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from sync.central.store import CentralStore

ALARM_ID = re.compile(r"[ces][0-9]{1,18}")
SEVERITIES = ("critical", "major", "minor")
SEVERITY = {
    # central refused an upload: the gate's record cannot be trusted as sent
    "EVENT_FORGED": "critical", "JOURNAL_REWRITTEN": "critical", "JOURNAL_TRUNCATED": "critical",
    "HEAD_BAD_SIGNATURE": "critical", "EVENT_CONFLICT": "critical",
    "CHAIN_BROKEN": "major", "SEQ_GAP": "major", "HEAD_KEY_NOT_ENROLLED": "major", "HEAD_MISSING": "major",
    "HEAD_MALFORMED": "major", "HEAD_BEHIND_BATCH": "major", "BAD_EVENT": "major", "BAD_BATCH": "major",
    # at the gate
    "BOOM_OPEN_WITHOUT_RELEASE": "critical", "UNAUTHORISED_PASSAGE": "critical", "TAILGATING": "critical",
    "BARRIER_OPEN_FAILED": "major", "CLAIM_NOT_SETTLED": "major",
    "BARRIER_COMMAND_FAILED": "major", "CLOSE_REFUSED_SAFETY_LOOP": "major",
    "DEVICE_FAULT": "major", "DECISION_DURING_FAULT": "major", "BOOM_CLOSED_BEFORE_PASSAGE": "minor",
    "PLATE_CONFLICT": "minor", "SCAN_CONFLICT": "major", "NODE_RESTARTED": "minor", "UNEXPECTED_EVENT": "minor",
    "GATE_OFFLINE": "major", "JOURNAL_FAILED": "critical", "JOURNAL_ROWS_DROPPED": "critical",
    "JOURNAL_RECOVERED": "minor",
}
_TABLE = ("CREATE TABLE IF NOT EXISTS alarm_states (alarm TEXT PRIMARY KEY, acked_by TEXT, acked_at DOUBLE PRECISION, "
          "cleared_by TEXT, cleared_at DOUBLE PRECISION)")


def severity(code: str) -> str:
    return SEVERITY.get(code, "minor")


class AlarmBook:
    """Lists alarms from the three sources with their state; acknowledges and clears them."""

    def __init__(self, store: CentralStore, per_source: int = 500):
        self.store, self.per_source = store, per_source
        store.ensure_schema(_TABLE)

    def _rows(self, gate: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE gate = ?", [gate]) if gate is not None else ("", [])
        n = self.per_source
        out = []
        for rid, gate_id, code, message, at in self.store.query(
                f"SELECT rid, gate, code, message, at FROM alarms {where} ORDER BY rid DESC LIMIT ?", [*params, n]):
            out.append({"id": f"c{rid}", "source": "central", "gate": gate_id, "lane": None, "code": code,
                        "message": message, "at": at})
        event_where = "kind IN ('alarm', 'unauthorised_passage')" + (" AND gate = ?" if gate is not None else "")
        for rid, gate_id, lane, kind, at, text in self.store.query(
                f"SELECT rid, gate, lane, kind, at, payload FROM events WHERE {event_where} ORDER BY rid DESC LIMIT ?",
                [*params, n]):
            try:
                payload = json.loads(text)
            except ValueError:
                payload = {}
            code = "UNAUTHORISED_PASSAGE" if kind == "unauthorised_passage" else str(payload.get("code", "ALARM"))
            out.append({"id": f"e{rid}", "source": "gate", "gate": gate_id, "lane": lane, "code": code,
                        "message": str(payload.get("text") or payload.get("message") or ""), "at": at})
        status_where = "online = 0" + (" AND gate = ?" if gate is not None else "")
        for rid, gate_id, bd_seq, at in self.store.query(
                f"SELECT rid, gate, bd_seq, at FROM gate_status_log WHERE {status_where} ORDER BY rid DESC LIMIT ?",
                [*params, n]):
            out.append({"id": f"s{rid}", "source": "status", "gate": gate_id, "lane": None, "code": "GATE_OFFLINE",
                        "message": f"the gate's node went offline (bdSeq {bd_seq})", "at": at})
        return out

    def list(self, gate: str | None = None, state: str = "active", limit: int = 200) -> list[dict[str, Any]]:
        """Alarms newest first with severity and state; `state` active (not cleared), unacked, cleared or all."""
        rows = self._rows(gate)
        states = {}
        if rows:
            marks = ", ".join("?" * len(rows))
            for alarm, acked_by, acked_at, cleared_by, cleared_at in self.store.query(
                    "SELECT alarm, acked_by, acked_at, cleared_by, cleared_at FROM alarm_states "
                    f"WHERE alarm IN ({marks})",
                    [row["id"] for row in rows]):
                states[alarm] = {"acked_by": acked_by, "acked_at": acked_at, "cleared_by": cleared_by,
                                 "cleared_at": cleared_at}
        out = []
        for row in sorted(rows, key=lambda r: r["at"], reverse=True):
            st = states.get(row["id"], {"acked_by": None, "acked_at": None, "cleared_by": None, "cleared_at": None})
            row = {**row, **st, "severity": severity(row["code"])}
            cleared, acked = st["cleared_at"] is not None, st["acked_at"] is not None
            if state == "all" or (state == "active" and not cleared) or (state == "cleared" and cleared) \
                    or (state == "unacked" and not acked and not cleared):
                out.append(row)
        rank = {name: i for i, name in enumerate(SEVERITIES)}
        if state in ("active", "unacked"):  # what needs a person first: unacknowledged, then severity, then newest
            out.sort(key=lambda r: (r["acked_at"] is not None, rank.get(r["severity"], 9), -r["at"]))
        return out[:limit]

    def counts(self) -> dict[str, int]:
        """Active alarms by severity and how many are not acknowledged."""
        active = self.list(state="active", limit=10**6)
        counts = {name: sum(1 for a in active if a["severity"] == name) for name in SEVERITIES}
        return {**counts, "active": len(active), "unacked": sum(1 for a in active if a["acked_at"] is None)}

    def exists(self, alarm: str) -> bool:
        table, key = {"c": ("alarms", "rid"), "e": ("events", "rid"), "s": ("gate_status_log", "rid")}[alarm[0]]
        extra = {"e": " AND kind IN ('alarm', 'unauthorised_passage')", "s": " AND online = 0"}.get(alarm[0], "")
        return bool(self.store.query(f"SELECT 1 FROM {table} WHERE {key} = ?{extra}", (int(alarm[1:]),)))

    def acknowledge(self, alarm: str, operator: str) -> dict[str, Any]:
        """Acknowledge by `operator` (the first acknowledgement stands); KeyError for an unknown alarm."""
        if not ALARM_ID.fullmatch(alarm) or not self.exists(alarm):
            raise KeyError(alarm)
        self.store.query("INSERT INTO alarm_states (alarm, acked_by, acked_at) VALUES (?, ?, ?) ON CONFLICT (alarm) "
                         "DO UPDATE SET acked_by = coalesce(alarm_states.acked_by, excluded.acked_by), "
                         "acked_at = coalesce(alarm_states.acked_at, excluded.acked_at)",
                         (alarm, operator, time.time()))
        return self.state(alarm)

    def clear(self, alarm: str, operator: str) -> dict[str, Any]:
        """Clear by `operator` (acknowledging it too if nobody had); KeyError for an unknown alarm."""
        if not ALARM_ID.fullmatch(alarm) or not self.exists(alarm):
            raise KeyError(alarm)
        now = time.time()
        self.store.query("INSERT INTO alarm_states (alarm, acked_by, acked_at, cleared_by, cleared_at) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT (alarm) DO UPDATE SET "
                         "acked_by = coalesce(alarm_states.acked_by, excluded.acked_by), "
                         "acked_at = coalesce(alarm_states.acked_at, excluded.acked_at), "
                         "cleared_by = coalesce(alarm_states.cleared_by, excluded.cleared_by), "
                         "cleared_at = coalesce(alarm_states.cleared_at, excluded.cleared_at)",
                         (alarm, operator, now, operator, now))
        return self.state(alarm)

    def state(self, alarm: str) -> dict[str, Any]:
        rows = self.store.query("SELECT acked_by, acked_at, cleared_by, cleared_at FROM alarm_states WHERE alarm = ?",
                                (alarm,))
        acked_by, acked_at, cleared_by, cleared_at = rows[0] if rows else (None, None, None, None)
        return {"id": alarm, "acked_by": acked_by, "acked_at": acked_at, "cleared_by": cleared_by,
                "cleared_at": cleared_at}
