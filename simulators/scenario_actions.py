"""What people do while a scenario plays, through the node's own doors.

`KioskOfficers`: officers act through the kiosk's HTTP API, each as a kiosk user of the role the
scenario gives (with an API token), so the kiosk's role rules apply: a wall board may not act, an
officer may not release a truck the rules refused. A refusal is a result, never an error.

`FeedDesk`: central publishes an amendment or revokes a declaration (the reference central service,
as its publisher), central notifies the gate over MQTT, the node pulls the signed batch and applies
it to its cache (sync/client.py → sync/feed.py → cache.apply_feed), exactly as in service. The desk
then waits until the node's cache holds the new version.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from edge.declarations import declaration_from_mapping, declaration_to_mapping
from edge.users import UserError, UserStore
from simulators.scenario_format import FeedChange, OfficerStep


class KioskOfficers:
    """Kiosk users (one per officer_id, of its role) with API tokens, acting at the node's kiosk over HTTP."""

    def __init__(self, data_dir: Path, gate: str, steps: list[OfficerStep]):
        self.tokens: dict[str, str] = {}
        self.problems: dict[str, str] = {}  # officer_id → why it cannot act (a user of another role exists)
        with UserStore(data_dir / "users.sqlite") as store:
            for step in steps:
                if step.officer_id in self.tokens or step.officer_id in self.problems:
                    continue
                user = store.get_user(step.officer_id)
                try:
                    if user is None:
                        store.add_user(step.officer_id, secrets.token_urlsafe(18), step.role, gate,
                                       f"scenario {step.role}")
                    elif user.role.value != step.role:
                        raise UserError(f"user {step.officer_id} exists with role {user.role.value}, not {step.role}")
                    self.tokens[step.officer_id] = store.create_token(step.officer_id, "scenario")
                except UserError as exc:
                    self.problems[step.officer_id] = str(exc)

    async def act(self, port: int, lane_id: str, step: OfficerStep) -> dict[str, Any]:
        """POST the step to /api/lanes/{lane}/actions; the record says whether the kiosk took it, and if not why."""
        record: dict[str, Any] = {"action": step.action, "officer_id": step.officer_id, "role": step.role}
        if step.officer_id in self.problems:
            return {**record, "ok": False, "status": None, "code": "no_user", "message": self.problems[step.officer_id]}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            response = await client.post(f"/api/lanes/{lane_id}/actions",
                                         json={"action": step.action, "reason": step.reason},
                                         headers={"Authorization": f"Bearer {self.tokens[step.officer_id]}"})
        record.update(ok=response.is_success, status=response.status_code)
        if not response.is_success:
            detail = _detail(response)
            record.update(code=detail.get("code"), message=detail.get("message"))
        return record


def _detail(response: httpx.Response) -> dict[str, Any]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return {"code": None, "message": response.text[:200]}
    return detail if isinstance(detail, dict) else {"code": None, "message": str(detail)[:200]}


class FeedDesk:
    """Publishes the scenario's declarations at central, then its revocations and amendments, and sees them applied."""

    def __init__(self, central: Any, node: Any, rows: dict[str, dict[str, Any]], timeout_s: float):
        from simulators.central_sim import central_client

        self.node, self.timeout_s = node, timeout_s
        self.client: httpx.AsyncClient = central_client(central, "publisher")
        self.rows = {number: dict(row) for number, row in rows.items()}
        self.versions: dict[str, int] = {}

    async def publish_all(self) -> None:
        """Every declaration of the scenario at central (the node pulls them through the feed too)."""
        mappings = [declaration_to_mapping(declaration_from_mapping(row)) for row in self.rows.values()]
        for mapping in mappings:
            response = await self.client.post("/api/v1/declarations", json={"declarations": [mapping]})
            if response.is_success:  # central refuses what it would never publish (a bad container number)
                self.versions[mapping["number"]] = int(mapping["version"])
        await self._until_applied({number: version for number, version in self.versions.items()})

    async def apply(self, change: FeedChange, started: float) -> dict[str, Any]:
        """Make the change at central; the record says when it was sent and when the node's cache had it."""
        number = change.number
        record: dict[str, Any] = {"revoke" if change.revoke is not None else "amend": number,
                                  "sent_at_s": round(time.monotonic() - started, 3)}
        if number not in self.versions:
            return {**record, "error": f"central does not hold declaration {number} (it refused to publish it)"}
        if change.revoke is not None:
            response = await self.client.post(f"/api/v1/declarations/{number}/revoke", json={"reason": change.reason})
        else:
            self.rows[number].update(change.amend or {})
            mapping = declaration_to_mapping(declaration_from_mapping(self.rows[number]))
            mapping["version"] = self.versions[number] + 1
            response = await self.client.post("/api/v1/declarations", json={"declarations": [mapping]})
        if not response.is_success:
            return {**record, "error": f"central answered {response.status_code}: {response.text[:200]}"}
        self.versions[number] += 1
        record["version"] = self.versions[number]
        if await self._until_applied({number: self.versions[number]}):
            record["applied_at_s"] = round(time.monotonic() - started, 3)
        else:
            record["error"] = f"the node's cache did not hold version {self.versions[number]} within {self.timeout_s} s"
        return record

    async def _until_applied(self, wanted: dict[str, int]) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            held = {n: self.node.cache.get(n) for n in wanted}
            if all(d is not None and d.version >= wanted[n] for n, d in held.items()):
                return True
            await asyncio.sleep(0.02)
        return False

    async def close(self) -> None:
        await self.client.aclose()
