"""What the kiosk shows, built from the node's `NodeView`: lane views, lane history, the status strip.

Everything here runs on the node's event loop (the lane machines live there), and only does
indexed SQLite look-ups, so it is cheap enough to run on every lane change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge.declarations import declaration_to_mapping
from edge.node_view import NodeView
from edge.records import HISTORY_KINDS, decision_declarations, history_line


def declaration_view(node: NodeView, number: str | None) -> dict[str, Any] | None:
    """The matched declaration as the officer needs it, or None."""
    if not number:
        return None
    declaration = node.cache.get(number)
    if declaration is None:
        return {"number": number, "missing": True}
    return declaration_to_mapping(declaration)


def claims_view(node: NodeView, tx: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The gate's claims on the truck's declaration and those its transaction holds (who, passage), so the
    officer sees why a declaration is already used: `declaration N claimed by tx T at lane L, passage unknown`."""
    if not tx:
        return []
    decision = tx.get("decision") or {}
    claims = node.cache.claims(decision_declarations(decision))
    claims.update((c.number, c) for c in node.cache.claims_of(tx["id"]))
    return [{**claim.to_dict(), "this_truck": claim.transaction == tx["id"]} for claim in claims.values()]


def was_refused(tx: dict[str, Any] | None) -> bool:
    """True when the rules or an officer refused the truck: releasing it is an override."""
    if not tx:
        return False
    decision = tx.get("decision") or {}
    if decision.get("outcome") == "refuse":
        return True
    return any(a.get("action") == "refuse" for a in tx.get("officer_actions") or [])


def lane_view(node: NodeView, lane_id: str, devices: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One lane for the board: the machine's snapshot plus name, devices, policy and declaration."""
    lane = node.lane_config(lane_id)
    view = node.lane_snapshot(lane_id)
    view["name"] = lane.name
    view["direction"] = lane.direction
    health = devices if devices is not None else node.device_health()
    view["devices"] = [h for h in health if h.get("lane") == lane_id]
    view["policy"] = {"max_cache_age_s": lane.policy.max_cache_age_s,
                      "weight_tolerance_pct": lane.policy.weight_tolerance_pct,
                      "required_readings": list(lane.policy.required_readings)}
    tx = view.get("transaction")
    decision = (tx or {}).get("decision") or {}
    view["declaration"] = declaration_view(node, decision.get("declaration"))
    # A consolidated load travels under several declarations: the board shows each of them.
    view["declarations"] = [declaration_view(node, number) for number in decision_declarations(decision)]
    view["claims"] = claims_view(node, tx)
    view["refused"] = was_refused(tx)
    view["available_actions"] = node.available_actions(lane_id)  # roles are checked by the API
    view["updated_at"] = time.time()
    return view


def lane_views(node: NodeView) -> list[dict[str, Any]]:
    health = node.device_health()
    return [lane_view(node, lane_id, health) for lane_id in node.lane_ids()]


def lane_history(node: NodeView, lane_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The lane's latest decisions, officer actions, barrier commands and alarms, newest first."""
    return [history_line(e) for e in node.journal.latest(lane_id, kinds=HISTORY_KINDS, limit=limit)]


SyncStatusProvider = Callable[[], dict[str, Any]]


def sync_status(node: NodeView) -> dict[str, Any]:
    """The link to central and the outbox backlog.

    The sync work fills this in by giving the node a `sync_status` callable returning
    {"link": {"configured": True, "up": bool, "since": epoch seconds}, "outbox_backlog": int}.
    Until then the link is "not configured" and the backlog unknown (None): no number is made up.
    """
    provider = getattr(node, "sync_status", None)
    if callable(provider):
        try:
            status = dict(provider())
        except Exception as exc:  # a failing provider must not take the status strip down
            return {"link": {"configured": True, "up": None, "since": None, "error": str(exc)},
                    "outbox_backlog": None}
        status.setdefault("link", {"configured": True, "up": None, "since": None})
        status.setdefault("outbox_backlog", None)
        return status
    return {"link": {"configured": False, "up": None, "since": None}, "outbox_backlog": None}


def status_view(node: NodeView, cache_stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status strip: devices, link to central, declaration cache age against policy, outbox."""
    now = datetime.now(UTC)
    health = node.device_health()
    faulty = [{"device_id": h["device_id"], "lane": h.get("lane"), "kind": h.get("kind"),
               "last_error": h.get("last_error")} for h in health if not h.get("connected")]
    age = node.cache.age_seconds(now)
    max_age = min((node.lane_config(lane_id).policy.max_cache_age_s for lane_id in node.lane_ids()), default=None)
    stats = cache_stats or {}
    sync = sync_status(node)
    return {
        "gate": node.site.gate,
        "gate_name": node.site.name or node.site.gate,
        "now": now.timestamp(),
        "devices": {"total": len(health), "ok": len(health) - len(faulty), "faulty": faulty},
        "link": sync["link"],
        "outbox_backlog": sync["outbox_backlog"],
        "cache": {
            "age_s": None if age is None else round(age, 1),
            "refreshed_at": stats.get("refreshed_at") or (
                None if node.cache.refreshed_at() is None else node.cache.refreshed_at().isoformat()),
            "total": stats.get("total"),
            "max_age_s": max_age,
            # Never refreshed counts as stale: the rules will not auto-release either.
            "stale": age is None or (max_age is not None and age > max_age),
        },
        "lanes": {status.lane: status.state for status in node.lane_statuses()},
        # The journal cannot write: no release anywhere, rows held in memory (edge/journal_guard.py).
        "journal": node.journal_status(),
        # The site runs its device bus plaintext and anonymous (`mqtt.insecure: true`): shown on every page.
        "mqtt_insecure": bool(getattr(node, "mqtt_insecure", False)),
    }
