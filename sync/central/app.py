"""The reference central service (FastAPI): gate events in, signed declaration feed out, monitoring.

Routes (JSON); the two gate routes need `Authorization: Bearer <the gate's token>` (else 401, and
nothing of the request is stored, not even the contact):
  POST /api/v1/gates/{gate}/events        {"events": [...], "backlog": n} -> {"acked": [event ids]}
  GET  /api/v1/gates/{gate}/feed?cursor=&limit=   -> {"batch": {...}, "signature": base64 Ed25519}
  POST /api/v1/declarations               {"declarations": [...]} publish / amend -> {"cursor"}
  POST /api/v1/declarations/{number}/revoke  {"reason"} -> the revocation
  GET  /api/v1/gates                      every gate: last contact, backlog, online + bd_seq (birth/death),
                                          telemetry
  GET  /api/v1/gates/{gate}/status-log     the gate's online/offline changes, oldest first
  GET  /api/v1/gates/{gate}/events?lane=&after=&limit=   stored events in arrival order
  GET  /healthz

MQTT (optional, `mqtt=(host, port[, client_id, tls])`, TLS with central's own client certificate
from the gate CA (`tls`, a devices.transports.mqtt.MqttTls); a persistent session): subscribes to `smartgate/+/status`
(birth / death with bdSeq, see sync/telemetry.py) and `smartgate/+/telemetry/#`, and publishes
`smartgate/<gate>/feed/notify` (QoS 1) whenever that gate's declarations change, so the gate pulls
at once.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query

from devices.transports.mqtt import MqttTls, new_client
from edge.declarations import DeclarationError, declaration_from_mapping, declaration_to_mapping
from sync.central.store import CentralStore, VersionConflict
from sync.keys import sign
from sync.telemetry import parse_status

log = logging.getLogger(__name__)


class CentralMqtt:
    """Central's MQTT side: gate birth/death and telemetry in, feed notifications out.

    A persistent session (stable client id, clean_session=False): while central is disconnected the
    broker keeps its QoS 1 subscriptions and queues what the gates publish, so on reconnect central
    still learns of a gate that went offline and came back meanwhile (the retained status alone
    would show only the latest state).
    """

    def __init__(self, store: CentralStore, host: str, port: int, client_id: str = "smartgate-central",
                 tls: MqttTls | None = None):
        """`tls=None` is plaintext: only against a broker the site runs `insecure: true`."""
        self.store = store
        self.client = new_client(client_id, tls, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 5)
        self.host, self.port = host, port
        self.events: list[tuple[float, str, str]] = []  # (at, gate, online/offline) applied, for the log and tests

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe("smartgate/+/status", qos=1)
        client.subscribe("smartgate/+/telemetry/#", qos=1)

    def _on_message(self, client, userdata, message) -> None:
        parts = message.topic.split("/")
        try:
            gate = parts[1]
            if parts[2] == "status":
                state, bd_seq = parse_status(message.payload)
                if state not in ("online", "offline"):
                    raise ValueError(f"unknown state {state!r}")
                if self.store.record_status(gate, state == "online", bd_seq):
                    self.events.append((time.time(), gate, state))
                    log.info("gate %s is %s (bdSeq %s)", gate, state, bd_seq)
                else:
                    log.info("gate %s: ignored %s with bdSeq %s (stale or repeated)", gate, state, bd_seq)
            elif parts[2] == "telemetry" and len(parts) > 3:
                self.store.set_telemetry(gate, parts[3], json.loads(message.payload))
        except Exception:  # a bad message must not stop the monitor
            log.exception("bad message on %s", message.topic)

    def notify(self, gate: str, cursor: int) -> None:
        self.client.publish(f"smartgate/{gate}/feed/notify", json.dumps({"cursor": cursor}), qos=1)


def create_central_app(store: CentralStore, private_key, *, mqtt: CentralMqtt | None = None,
                       silent_after_s: float = 60.0) -> FastAPI:
    app = FastAPI(title="smartgate central (reference)")
    app.state.store, app.state.mqtt = store, mqtt
    app.state.refused = {}  # gate -> requests refused for a missing or wrong token

    def gate_credentials(gate: str, authorization: Annotated[str | None, Header()] = None) -> None:
        """401 unless the request carries this gate's token (checked before the body is used)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() and store.gate_token_ok(gate, token.strip()):
            return
        app.state.refused[gate] = app.state.refused.get(gate, 0) + 1
        log.warning("refused a request for gate %s: %s", gate, "wrong token" if authorization else "no token")
        raise HTTPException(401, {"code": "UNAUTHORIZED", "message": f"missing or wrong token for gate {gate}"},
                            headers={"WWW-Authenticate": 'Bearer realm="smartgate-central"'})

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "db": store.kind}

    @app.post("/api/v1/gates/{gate}/events", dependencies=[Depends(gate_credentials)])
    def receive_events(gate: str, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        events = body.get("events")
        if not isinstance(events, list):
            raise HTTPException(422, {"code": "BAD_BATCH", "message": "events must be a list"})
        try:
            acked = store.store_events(gate, events, backlog=body.get("backlog"))
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPException(422, {"code": "BAD_EVENT", "message": str(exc)}) from exc
        return {"acked": acked}

    @app.get("/api/v1/gates/{gate}/feed", dependencies=[Depends(gate_credentials)])
    def feed(gate: str, cursor: int = Query(0, ge=0), limit: int = Query(5000, ge=1, le=100000)) -> dict[str, Any]:
        declarations, revocations, cursor_to = store.feed(gate, cursor, limit)
        batch = {"gate": gate, "cursor_from": cursor, "cursor_to": cursor_to, "issued_at": time.time(),
                 "declarations": declarations, "revocations": revocations}
        store.touch(gate)
        return {"batch": batch, "signature": sign(private_key, batch)}

    @app.post("/api/v1/declarations")
    def publish(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        rows = body.get("declarations")
        if not isinstance(rows, list):
            raise HTTPException(422, {"code": "BAD_BATCH", "message": "declarations must be a list"})
        try:
            normalised = []
            for row in rows:
                mapping = declaration_to_mapping(declaration_from_mapping(row))
                if row.get("version") in (None, ""):
                    mapping["version"] = None
                normalised.append(mapping)
            cursor = store.publish(normalised)
        except DeclarationError as exc:
            raise HTTPException(422, {"code": "BAD_DECLARATION", "message": str(exc)}) from exc
        except VersionConflict as exc:
            raise HTTPException(409, {"code": "VERSION_CONFLICT", "message": str(exc)}) from exc
        if mqtt is not None:
            for gate in {row["gate"] for row in normalised}:
                mqtt.notify(gate, cursor)
        return {"cursor": cursor, "published": len(normalised)}

    @app.post("/api/v1/declarations/{number}/revoke")
    def revoke(number: str, body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
        try:
            revocation = store.revoke(number, str((body or {}).get("reason", "")))
        except KeyError as exc:
            raise HTTPException(404, {"code": "UNKNOWN_DECLARATION", "message": f"no declaration {number}"}) from exc
        if mqtt is not None:
            mqtt.notify(revocation["gate"], revocation["change_id"])
        return revocation

    @app.get("/api/v1/gates")
    def gates() -> list[dict[str, Any]]:
        return store.gates(silent_after_s)

    @app.get("/api/v1/gates/{gate}/status-log")
    def status_log(gate: str, limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        return store.status_log(gate, limit)

    @app.get("/api/v1/gates/{gate}/events")
    def gate_events(gate: str, lane: str | None = None, after: int = 0,
                    limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        return store.events(gate, lane, after, limit)

    return app
