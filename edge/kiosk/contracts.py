"""Kiosk routes that serve the published device contracts (JSON Schemas of the MQTT payloads).

`GET /api/contracts` lists them, `GET /api/contracts/{name}` returns one as
`application/schema+json`. The kiosk includes the router with its own credential dependency, so
an integrator fetches them with an API token like any other API route.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from devices.contracts import CONTRACT_NAMES, load_contract
from edge.kiosk.auth import problem

router = APIRouter(prefix="/api/contracts", tags=["contracts"])


@router.get("")
def list_contracts() -> dict[str, list[dict[str, str]]]:
    """The device contracts this node publishes, with where to fetch each."""
    return {"contracts": [{"name": name, "title": load_contract(name).get("title", name),
                           "href": f"/api/contracts/{name}"} for name in CONTRACT_NAMES]}


@router.get("/{name}")
def get_contract(name: str) -> JSONResponse:
    """One device contract (a JSON Schema), or 404 naming the contracts there are."""
    if name not in CONTRACT_NAMES:
        raise problem(404, "no_contract", f"known contracts: {', '.join(CONTRACT_NAMES)}")
    return JSONResponse(load_contract(name), media_type="application/schema+json")
