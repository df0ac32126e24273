"""What the wall board adds to the lane views: names in both languages, held trucks, faults in plain words.

edge/kiosk/views.py builds a lane's view from the lane machine; this module adds what a board on
the wall needs to say it in words an officer reads from across the room: the Vietnamese names of
the gate and its lanes (site YAML `name_vi`), whether a truck waits for an officer and since when,
each device fault as a short code the page translates (the raw error stays for a "details"
toggle), gate-wide alarms (sync to central), recent trucks with what finally happened and who did
it, and declaration look-up by the end of a plate.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devices.protocols.identifiers import normalise_plate
from edge.kiosk.views import lane_view, status_view
from edge.node_view import NodeView

if TYPE_CHECKING:
    from edge.journal import Journal

# Device errors, by what an officer can do about them; the first pattern that matches names the fault.
# The page says each in plain words (i18n `fault.<code>`), the raw error behind a "details" toggle.
FAULT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((code, re.compile(pattern, re.I)) for code, pattern in (
    ("no_data", r"no data|unplugged|end of file|\beof\b|broken pipe|disconnected|device not configured"),
    ("cannot_open", r"could not open|cannot open port|no such file|permission denied|errno 2\b|errno 13\b"),
    ("no_video", r"video"),
    ("security", r"certificate|\btls\b|\bssl\b|not authori[sz]ed|acl|handshake"),
    ("timeout", r"timed? ?out|no response|no answer|heartbeat"),
    ("unreachable", r"connection refused|unreachable|connect(ion)? (failed|lost|reset)|name or service|errno 111"),
    ("device_error", r"exception reply|reports? (an )?error|error code|\berror \d+"),
    ("bad_data", r"crc|checksum|malformed|frame|invalid|unexpected|refused|garbled|decode"),
))

# Outcomes a truck can wait on an officer for (a release or a truck passing waits for nobody).
_WAITING_OUTCOMES = {"hold", "refuse"}
_DECIDING_ACTIONS = {"release", "refuse", "inspect", "manual_open"}
GATE_ALARMS_KEPT = 5
GATE_ALARMS_FIRST_SCAN = 20_000  # journal rows read back at start for gate alarms raised before the kiosk


def fault_code(error: str | None) -> str:
    """The kind of a device fault, for plain words on the board (`unknown` when nothing matches)."""
    if not error:
        return "unknown"
    for code, pattern in FAULT_PATTERNS:
        if pattern.search(error):
            return code
    return "unknown"


def needs_officer(view: dict[str, Any]) -> bool:
    """True when a truck waits at the lane for an officer: held or refused by the rules, or at a faulty lane,
    with nobody having decided on it yet and no release given."""
    tx = view.get("transaction")
    if not tx or tx.get("barrier_open_commanded") or tx.get("manual"):
        return False
    if any(a.get("action") in _DECIDING_ACTIONS for a in tx.get("officer_actions") or []):
        return False
    outcome = (tx.get("decision") or {}).get("outcome")
    return outcome in _WAITING_OUTCOMES or (view.get("state") == "FAULT" and bool(tx.get("plates")))


def board_lane_view(node: NodeView, lane_id: str, devices: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A lane as the board shows it: the lane view plus `name_vi`, `needs_officer`, `waiting_since` and each
    device's `fault` code."""
    view = lane_view(node, lane_id, devices)
    lane = node.lane_config(lane_id)
    view["name_vi"] = lane.name_vi
    view["needs_officer"] = needs_officer(view)
    tx = view.get("transaction") or {}
    view["waiting_since"] = tx.get("opened_at") if view["needs_officer"] else None
    view["devices"] = [{**d, "fault": None if d.get("connected") else fault_code(d.get("last_error"))}
                       for d in view.get("devices") or []]
    return view


def board_lane_views(node: NodeView) -> list[dict[str, Any]]:
    """Every lane as the board shows it (device health read once)."""
    health = node.device_health()
    return [board_lane_view(node, lane_id, health) for lane_id in node.lane_ids()]


class GateAlarms:
    """The latest alarms that belong to no lane (the link to central, the outbox, the declaration feed).

    They are journal rows with no lane; this reads the journal forward from where it stopped (by
    seq, cheap), so the status strip can show them every few seconds without scanning the journal.
    """

    def __init__(self, journal: Journal, keep: int = GATE_ALARMS_KEPT):
        self.journal = journal
        self.latest: deque[dict[str, Any]] = deque(maxlen=keep)
        head = journal.head()
        self._after = max(0, (head.seq if head else 0) - GATE_ALARMS_FIRST_SCAN)

    def poll(self) -> list[dict[str, Any]]:
        """Read what was journaled since the last poll; the latest gate alarms, newest first."""
        head = self.journal.head()
        for entry in self.journal.entries(kinds=["alarm"], after_seq=self._after):
            self._after = max(self._after, entry.seq)
            if entry.lane is None:
                payload = entry.payload
                self.latest.append({"seq": entry.seq, "at": entry.at, "code": payload.get("code") or "UNKNOWN",
                                    "text": payload.get("text") or ""})
        if head is not None:
            self._after = max(self._after, head.seq)
        return list(reversed(self.latest))


def board_status_view(node: NodeView, cache_stats: dict[str, Any] | None = None,
                      alarms: GateAlarms | None = None) -> dict[str, Any]:
    """The status strip with the gate's Vietnamese name, faults in plain words, the link's state and gate alarms."""
    status = status_view(node, cache_stats)
    status["gate_name_vi"] = node.site.name_vi
    for device in status["devices"]["faulty"]:
        device["fault"] = fault_code(device.get("last_error"))
    link = status.get("link") or {}
    if link.get("configured") and not link.get("state"):
        link["state"] = "up" if link.get("up") else ("down" if link.get("up") is False else "unknown")
    status["gate_alarms"] = alarms.poll() if alarms is not None else []
    return status


# ---------------------------------------------------------------- recent trucks


FINAL_CODES = ("manual_open", "released_auto", "released_by", "refused_by", "inspect_by", "refused_rules", "held",
               "unauthorised_passage")


def final_result(closed: dict[str, Any], actions: list[dict[str, Any]]) -> dict[str, Any]:
    """What finally happened to a truck and who did it: {"code", "by"} from its tx_closed row and the
    officer actions journaled for it (oldest first).

    Codes: manual_open (a supervisor opened an empty lane by hand), released_auto, released_by,
    refused_by, inspect_by, refused_rules, held (nobody decided: it left), unauthorised_passage.
    """
    deciding = [a for a in actions if a.get("action") in _DECIDING_ACTIONS]
    released_by = closed.get("released_by")
    if closed.get("officer"):  # the row names the officer's decision that took effect
        deciding = [closed["officer"]]
    elif not released_by:  # a release asked for and refused (its declaration was already used) is none
        deciding = [a for a in deciding if a.get("action") not in ("release", "manual_open")]
    last = deciding[-1] if deciding else None
    if deciding and deciding[0].get("action") == "manual_open" and not closed.get("plates") \
            and not closed.get("outcome"):
        return {"code": "manual_open", "by": deciding[0].get("officer")}
    if closed.get("result") == "unauthorised_passage":
        return {"code": "unauthorised_passage", "by": None}
    if released_by == "auto":
        return {"code": "released_auto", "by": None}
    if released_by:
        return {"code": "released_by", "by": released_by}
    if last is not None:
        return {"code": {"refuse": "refused_by", "inspect": "inspect_by"}.get(last["action"], "released_by"),
                "by": last.get("officer")}
    if closed.get("outcome") == "refuse":
        return {"code": "refused_rules", "by": None}
    if closed.get("outcome") == "release":
        return {"code": "released_auto", "by": None}
    return {"code": "held", "by": None}


def recent_trucks(node: NodeView, lane: str | None, limit: int,
                  display_name: Callable[[str], str] = str) -> list[dict[str, Any]]:
    """Finished transactions, newest first, each with `final` ({code, by, by_name}): the result and who."""
    entries = node.journal.latest(lane, kinds=["tx_closed"], limit=limit)  # type: ignore[arg-type]
    lanes = {e.lane for e in entries if e.lane}
    actions: dict[str, list[dict[str, Any]]] = {}
    for lane_id in lanes:  # by lane: the journal's (lane, kind, seq) index answers each at once
        for action in reversed(node.journal.latest(lane_id, kinds=["officer_action"], limit=4 * limit)):
            tx = action.payload.get("transaction")
            if tx:
                actions.setdefault(tx, []).append(action.payload)
    out = []
    for e in entries:
        row = {"seq": e.seq, "lane": e.lane, "at": e.at, **e.payload}
        final = final_result(row, actions.get(row.get("transaction") or "", []))
        final["by_name"] = display_name(final["by"]) if final["by"] else None
        out.append({**row, "final": final})
    return out


# ---------------------------------------------------------------- look-up

MIN_PARTIAL_PLATE = 4


def plate_query(text: str) -> str | None:
    """The normalised end of a plate to look for (`123.45`, `12345` give `12345`), or None when too short."""
    folded = normalise_plate(text)
    return folded if len(folded) >= MIN_PARTIAL_PLATE else None
