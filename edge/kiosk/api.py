"""Kiosk JSON API and the plain lane page. Officer actions reach the barrier only via the lane."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from edge.lane import LaneError

if TYPE_CHECKING:
    from edge.app import GateNode

PAGE = Path(__file__).parent / "templates" / "lanes.html"


class OfficerActionRequest(BaseModel):
    """An officer's release or refusal of the truck at a lane."""

    action: Literal["release", "refuse", "inspect", "manual_open", "manual_close"]
    officer_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=3, max_length=500)


def create_app(node: GateNode) -> FastAPI:
    """The kiosk application for one node."""
    app = FastAPI(title=f"smartgate kiosk — {node.site.gate}", version="0.1.0")
    started = time.time()

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness: the node answers and its lanes run."""
        return {"status": "ok", "gate": node.site.gate, "uptime_s": round(time.time() - started, 1),
                "lanes": {lane_id: c.state.value for lane_id, c in node.lanes.items()}}

    @app.get("/api/lanes")
    def lanes() -> list[dict]:
        """Every lane: state, current transaction with readings, decision with reasons, devices."""
        return node.lane_snapshots()

    @app.get("/api/lanes/{lane_id}")
    def lane(lane_id: str) -> dict:
        """One lane."""
        for snapshot in node.lane_snapshots():
            if snapshot["lane"] == lane_id:
                return snapshot
        raise HTTPException(404, f"no lane {lane_id}")

    @app.post("/api/lanes/{lane_id}/actions")
    async def act(lane_id: str, request: OfficerActionRequest) -> dict:
        """Release or refuse the truck at a lane; the release is journaled before the barrier opens."""
        controller = node.lanes.get(lane_id)
        if controller is None:
            raise HTTPException(404, f"no lane {lane_id}")
        try:
            return await controller.officer_action(request.action, request.officer_id, request.reason)
        except LaneError as exc:
            raise HTTPException(409, str(exc)) from exc

    @app.get("/api/transactions")
    def transactions(lane: str | None = None, limit: int = Query(50, ge=1, le=1000)) -> list[dict]:
        """Finished transactions, newest first, from the journal."""
        entries = node.journal.entries(lane=lane, kinds=["tx_closed"])
        return [{"seq": e.seq, "lane": e.lane, "at": e.at, **e.payload} for e in reversed(entries)][:limit]

    @app.get("/api/devices")
    def devices() -> list[dict]:
        """Health of every device."""
        return node.device_health()

    @app.get("/api/cache")
    def cache() -> dict:
        """Declaration cache size and age."""
        return node.cache.stats()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        """The plain lane page."""
        return PAGE.read_text(encoding="utf-8")

    return app
