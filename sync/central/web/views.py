"""What central's monitoring page shows, read from central's database: gates at a glance, one gate, search.

Sources, per gate: the `gates` row (last contact, the backlog sent with the last upload, JSON birth/death), its
telemetry (`devices`, `lanes`, `sync` from sync/telemetry.py, and `sparkplug` from the Sparkplug host) and the
uploaded journal rows in `events` (decisions, officer actions, finished transactions). Where two sources tell the
same thing (the outbox backlog, lane states), the one most recently reported wins and says when it was reported:
the page shows one number, not two.

Times are epoch seconds here; the page writes them as local times.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

from devices.protocols.identifiers import fold_identifier, stroke_to_d
from sync.central.store import CentralStore

OUTCOMES = ("release", "hold", "refuse")
HOURS = 24
MIN_QUERY = 3

# Read by kind, gate and lane in rid order: the latest decision of each lane, a gate's recent trucks, its hours.
INDEXES = ("CREATE INDEX IF NOT EXISTS events_kind_gate_lane ON events (kind, gate, lane, rid)",
           "CREATE INDEX IF NOT EXISTS events_gate_kind_at ON events (gate, kind, at)")


def ensure_indexes(store: CentralStore) -> None:
    """The indexes the page's queries use (on central's own events table; idempotent)."""
    store.ensure_schema(*INDEXES)


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _iso_epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _freshest(*candidates: tuple[Any, Any, str]) -> dict[str, Any]:
    """{value, at, source} of the most recently reported candidate (value, at, source) that has a value."""
    known = [(at or 0.0, value, source) for value, at, source in candidates if value is not None]
    if not known:
        return {"value": None, "at": None, "source": None}
    at, value, source = max(known, key=lambda c: c[0])
    return {"value": value, "at": at or None, "source": source}


def _sparkplug_lanes(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    lanes: dict[str, dict[str, Any]] = {}
    for name, value in metrics.items():
        match = re.fullmatch(r"Lanes/(.+)/(State|Faulty)", name)
        if match:
            lane = lanes.setdefault(match.group(1), {"lane": match.group(1), "state": None, "faulty": False})
            lane["state" if match.group(2) == "State" else "faulty"] = value
    return [lanes[k] for k in sorted(lanes)]


def _devices(telemetry: dict[str, Any]) -> list[dict[str, Any]]:
    """Every device's health: the JSON telemetry's list, else the Sparkplug devices."""
    listed = (telemetry.get("devices") or {}).get("devices")
    if isinstance(listed, list):
        return [{"device_id": d.get("device_id"), "kind": d.get("kind"), "lane": d.get("lane"),
                 "connected": bool(d.get("connected")), "last_error": d.get("last_error"),
                 "last_reading_at": d.get("last_reading_at"), "frames_bad": d.get("frames_bad"),
                 "reconnects": d.get("reconnects")} for d in listed if isinstance(d, dict)]
    devices = ((telemetry.get("sparkplug") or {}).get("devices") or {})
    return [{"device_id": name, "kind": d.get("Kind"), "lane": d.get("Lane"),
             "connected": bool(d.get("Connected")) and d.get("online", True) is not False,
             "last_error": d.get("Last Error"), "last_reading_at": None, "frames_bad": d.get("Frames Bad"),
             "reconnects": d.get("Reconnects")} for name, d in sorted(devices.items())]


def outbox_backlog(row: dict[str, Any]) -> dict[str, Any]:
    """{value, at, source}: the events waiting in the gate's outbox by its most recent report, of the count sent with
    its last upload (`upload`, taken as the upload left, so that upload's own events are in it), its `sync` telemetry
    and its Sparkplug `Sync/Outbox Backlog` metric. A feed pull is contact but no newer report."""
    telemetry = row.get("telemetry") or {}
    spb = telemetry.get("sparkplug") or {}
    sync = telemetry.get("sync") or {}
    return _freshest((row.get("backlog"), row.get("backlog_at", row.get("last_contact")), "upload"),
                     (sync.get("outbox_backlog"), sync.get("at"), "telemetry"),
                     ((spb.get("metrics") or {}).get("Sync/Outbox Backlog"), spb.get("at"), "sparkplug"))


def gate_summary(row: dict[str, Any], now: float, held: list[dict[str, Any]]) -> dict[str, Any]:
    """One gate at a glance, from its `gates` row (CentralStore.gates) and its held trucks."""
    telemetry = row.get("telemetry") or {}
    spb = telemetry.get("sparkplug") or {}
    spb_metrics = spb.get("metrics") or {}
    sync = telemetry.get("sync") or {}
    if "online" in spb:  # Sparkplug birth/death; else the JSON status topic's
        online = {"value": bool(spb["online"]), "at": spb.get("at"), "source": "sparkplug"}
    else:
        online = {"value": row.get("online"), "at": row.get("status_at"), "source": "status"}
    backlog = outbox_backlog(row)
    json_lanes = telemetry.get("lanes") or {}
    lanes_choice = _freshest(
        ([{"lane": lane.get("lane"), "state": lane.get("state"), "faulty": bool(lane.get("faults"))}
          for lane in json_lanes.get("lanes") or [] if isinstance(lane, dict)] or None, json_lanes.get("at"),
         "telemetry"),
        (_sparkplug_lanes(spb_metrics) or None, spb.get("at"), "sparkplug"))
    held_by_lane = {h["lane"]: h for h in held}
    lanes = [{**lane, "held": held_by_lane.get(lane["lane"])} for lane in lanes_choice["value"] or []]
    known = {lane["lane"] for lane in lanes}
    lanes += [{"lane": h["lane"], "state": None, "faulty": False, "held": h} for h in held if h["lane"] not in known]
    link = sync.get("link") or {}
    cache = sync.get("cache") or {}
    refreshed = _iso_epoch(cache.get("refreshed_at"))
    cache_age = None if refreshed is None else max(0.0, now - refreshed)
    max_age = cache.get("max_age_s")
    devices = _devices(telemetry)
    return {
        "gate": row["gate"],
        "online": online,
        "link": {"up": link.get("up"), "state": link.get("state"), "since": link.get("since"),
                 "reported_at": sync.get("at")},
        "last_contact": row.get("last_contact"),
        "silent": bool(row.get("silent")),
        "cache": {"refreshed_at": refreshed, "age_s": cache_age, "max_age_s": max_age,
                  "stale": None if cache_age is None or not isinstance(max_age, int | float) else cache_age > max_age,
                  "declarations": cache.get("total")},
        "backlog": backlog,
        "lanes": lanes,
        "lanes_at": lanes_choice["at"],
        "devices": {"total": len(devices), "faulty": sum(1 for d in devices if not d["connected"])},
        "held": held,
    }


def held_trucks(store: CentralStore, gate: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Trucks the rules held or refused that are still waiting: the latest decision of each lane with no officer's
    release/refuse and no end of its transaction uploaded after it. Waiting time runs from the decision."""
    now = time.time() if now is None else now
    where, params = ("AND gate = ?", [gate]) if gate is not None else ("", [])
    latest = store.query("SELECT e.rid, e.gate, e.lane, e.at, e.payload FROM events e JOIN "
                         f"(SELECT max(rid) AS rid FROM events WHERE kind = 'decision' {where} GROUP BY gate, lane) m "
                         "ON e.rid = m.rid", params)
    waiting = {}
    for rid, gate_id, lane, at, text in latest:
        payload = _payload(text)
        if payload.get("outcome") in ("hold", "refuse"):
            waiting[(gate_id, lane)] = (rid, at, payload)
    if not waiting:
        return []
    ended = set()
    for (gate_id, lane), (rid, _at, decision) in waiting.items():
        # One index range per waiting lane (kind, gate, lane, rid): only the rows uploaded after its decision.
        for kind, text in store.query("SELECT kind, payload FROM events WHERE kind IN ('tx_closed', 'officer_action') "
                                      "AND gate = ? AND lane = ? AND rid > ?", (gate_id, lane, rid)):
            payload = _payload(text)
            if payload.get("transaction") == decision.get("transaction") and (
                    kind == "tx_closed" or payload.get("action") in ("release", "refuse")):
                ended.add((gate_id, lane))
                break
    out = []
    for (gate_id, lane), (_rid, at, payload) in sorted(waiting.items(), key=lambda kv: kv[1][1]):
        if (gate_id, lane) in ended:
            continue
        facts = payload.get("facts") or {}
        out.append({"gate": gate_id, "lane": lane, "since": at, "waiting_s": max(0.0, now - at),
                    "outcome": payload.get("outcome"), "reasons": list(payload.get("reasons") or []),
                    "plates": [p.get("normalised") or p.get("plate") for p in facts.get("plates") or []
                               if isinstance(p, dict)],
                    "containers": [c.get("number") for c in facts.get("containers") or [] if isinstance(c, dict)],
                    "declaration": payload.get("declaration"), "transaction": payload.get("transaction")})
    return out


def overview(store: CentralStore, silent_after_s: float = 60.0, now: float | None = None) -> dict[str, Any]:
    """Every gate at a glance, with its held trucks."""
    now = time.time() if now is None else now
    held: dict[str, list[dict[str, Any]]] = {}
    for truck in held_trucks(store, now=now):
        held.setdefault(truck["gate"], []).append(truck)
    gates = [gate_summary(row, now, held.get(row["gate"], [])) for row in store.gates(silent_after_s)]
    return {"now": now, "gates": gates}


def throughput(store: CentralStore, gate: str, now: float | None = None, hours: int = HOURS) -> list[dict[str, Any]]:
    """Decisions per hour (released / held / refused) over the last `hours` whole hours and the current one."""
    now = time.time() if now is None else now
    current = now - now % 3600
    start = current - (hours - 1) * 3600
    buckets = [{"hour": start + i * 3600, **dict.fromkeys(OUTCOMES, 0)} for i in range(hours)]
    for at, text in store.query("SELECT at, payload FROM events WHERE gate = ? AND kind = 'decision' AND at >= ?",
                                (gate, start)):
        outcome = _payload(text).get("outcome")
        index = int((at - start) // 3600)
        if outcome in OUTCOMES and 0 <= index < hours:
            buckets[index][outcome] += 1
    return buckets


def recent_trucks(store: CentralStore, gate: str, limit: int = 20) -> list[dict[str, Any]]:
    """The gate's latest finished transactions, newest first."""
    rows = store.query("SELECT lane, at, payload FROM events WHERE gate = ? AND kind = 'tx_closed' "
                       "ORDER BY rid DESC LIMIT ?", (gate, limit))
    return [_truck(gate, lane, at, _payload(text)) for lane, at, text in rows]


def _truck(gate: str, lane: str | None, at: float, payload: dict[str, Any]) -> dict[str, Any]:
    return {"gate": gate, "lane": lane, "at": at, "transaction": payload.get("transaction"),
            "result": payload.get("result"), "outcome": payload.get("outcome"),
            "reasons": list(payload.get("reasons") or []), "plates": list(payload.get("plates") or []),
            "containers": list(payload.get("containers") or []), "seals": list(payload.get("seals") or []),
            "declaration": payload.get("declaration"), "released_by": payload.get("released_by"),
            "opened_at": payload.get("opened_at")}


def gate_detail(store: CentralStore, gate: str, silent_after_s: float = 60.0, now: float | None = None
                ) -> dict[str, Any] | None:
    """One gate: its summary, lanes, devices' health, recent trucks and hourly throughput; None if unknown."""
    now = time.time() if now is None else now
    row = next((r for r in store.gates(silent_after_s) if r["gate"] == gate), None)
    if row is None:
        return None
    summary = gate_summary(row, now, held_trucks(store, gate, now))
    return {**summary, "device_list": _devices(row.get("telemetry") or {}),
            "recent": recent_trucks(store, gate), "throughput": throughput(store, gate, now), "now": now}


def _truck_keys(kind: str, payload: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The plate, container, seal and declaration numbers of a tx_closed or decision row, and the truck it shows."""
    if kind == "tx_closed":
        truck = payload
    else:
        facts = payload.get("facts") or {}
        truck = {"transaction": payload.get("transaction"), "outcome": payload.get("outcome"),
                 "reasons": payload.get("reasons"), "declaration": payload.get("declaration"),
                 "plates": [p.get("normalised") or p.get("plate") for p in facts.get("plates") or []
                            if isinstance(p, dict)],
                 "containers": [c.get("number") for c in facts.get("containers") or [] if isinstance(c, dict)],
                 "seals": [s.get("seal_id") for s in facts.get("seals") or [] if isinstance(s, dict)]}
    keys = [str(k) for k in [*(truck.get("plates") or []), *(truck.get("containers") or []),
                             *(truck.get("seals") or []), truck.get("declaration")] if k]
    return keys, truck


def search_trucks(store: CentralStore, text: str, gate: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Trucks whose plate, container, seal or declaration number contains `text` (folded: `29C-123.45` finds
    `29C12345`), newest first; one line per transaction (its end if uploaded, else its decision)."""
    folded = fold_identifier(text)
    if len(folded) < MIN_QUERY:
        return []
    # A coarse SQL filter on the longest run of letters and digits, then the exact folded match here.
    runs = re.findall(r"\w+", stroke_to_d(text.upper()))
    needle = max(runs, key=len) if runs else folded
    # A `D` may be stored as `Đ` (an event recorded before identifiers folded the stroke): `_` is any one character.
    like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("D", "_") + "%"
    where, params = "kind IN ('tx_closed', 'decision') AND upper(payload) LIKE ? ESCAPE '\\'", [like]
    if gate is not None:
        where += " AND gate = ?"
        params.append(gate)
    rows = store.query(f"SELECT gate, lane, at, kind, payload FROM events WHERE {where} ORDER BY rid DESC LIMIT ?",
                       [*params, limit * 8])
    seen: set[tuple[str, Any]] = set()
    out = []
    for gate_id, lane, at, kind, text_ in rows:
        keys, truck = _truck_keys(kind, _payload(text_))
        if not any(folded in fold_identifier(k) for k in keys):
            continue
        tx = (gate_id, truck.get("transaction"))
        if tx in seen:
            continue
        seen.add(tx)
        out.append({**_truck(gate_id, lane, at, truck), "kind": kind, "matched": [
            k for k in keys if folded in fold_identifier(k)]})
        if len(out) >= limit:
            break
    return out
