"""The reference central service (FastAPI): gate events in, signed declaration feed out, monitoring.

Every route but `/healthz` needs `Authorization: Bearer <token>`, checked before the request body is
read (an ASGI middleware in front of everything, `CentralAuth`): no token or an unknown one is 401,
a known token without the right is 403, and nothing of a refused request is stored. Who may do what:

  gate token (its own gate only)
    POST /api/v1/gates/{gate}/events   {"events": [...], "backlog": n, "head": {gate, seq, hash},
                                        "head_signature": b64}  -> {"acked": [event ids]}
    GET  /api/v1/gates/{gate}/feed?cursor=&limit=&nonce=  -> {"batch": {..., "nonce", "issued_at"},
                                                              "signature": base64 Ed25519}
    GET  /api/v1/gates/{gate}/anchor   central's copy of the gate's journal head (also monitor)
  publisher
    POST /api/v1/declarations               {"declarations": [...]} publish / amend -> {"cursor"}
    POST /api/v1/declarations/{number}/revoke  {"reason"} -> the revocation
  monitor
    GET  /api/v1/gates                      every gate: last contact, outbox_backlog (latest report) and
                                            upload_backlog (the last upload's; `backlog` its old name),
                                            online + bd_seq, telemetry
    GET  /api/v1/gates/{gate}/status-log    the gate's online/offline changes, oldest first
    GET  /api/v1/gates/{gate}/events?lane=&after=&limit=   stored events in arrival order
    GET  /api/v1/alarms?gate=&after=&limit= refused uploads and other alarms, oldest first
  admin
    POST   /api/v1/tokens {"name", "role"} -> {"token"} (shown once);  GET /api/v1/tokens;
    DELETE /api/v1/tokens/{name}
    POST   /api/v1/gates/{gate}/enrol {"head_key": base64} -> {"token"}: a gate's token and journal key
    DELETE /api/v1/gates/{gate}/token       withdraw a gate's token
  GET /healthz (anyone)
  the monitoring page at `/` (log-in at /login with a monitor, operator or admin token: a session cookie),
  its API under /api/v1/monitor/ and /api/v1/session, GET /metrics (Prometheus), /docs (offline Swagger UI):
  see sync/central/web/routes.py. An operator is a monitor who may also acknowledge and clear alarms.

Bodies are capped before they are read, 422s never echo the input and integers beyond 64 bits are
refused (edge/http_guard.py). Refused event uploads (gap, forged row, rewritten journal) answer
409/422 with a code and are stored as alarms. While the database cannot be reached (a restart, an
outage) every request that needs it answers 503 `DATABASE_UNAVAILABLE` with `Retry-After`, never
500; `/healthz` then answers 503 too.

MQTT (optional, `mqtt=(host, port[, client_id, tls])`, TLS with central's own client certificate
from the gate CA (`tls`, a devices.transports.mqtt.MqttTls); a persistent session): subscribes to `smartgate/+/status`
(birth / death with bdSeq, see sync/telemetry.py) and `smartgate/+/telemetry/#` (with several workers a
shared subscription, `$share/smartgate-central/...`, see sync/central/workers.py), and publishes
`smartgate/<gate>/feed/notify` (QoS 1) whenever that gate's declarations change, so the gate pulls
at once. It is also a Sparkplug B host application (`spBv1.0/smartgate/#`, sync/sparkplug.py): each
gate's node and device metrics are kept as its `sparkplug` telemetry (see `SparkplugHost`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import pysparkplug as spb
from fastapi import Body, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from devices.transports.mqtt import MqttTls, new_client
from edge.declarations import (
    DeclarationError,
    declaration_from_mapping,
    declaration_to_mapping,
    publication_problem,
)
from edge.http_guard import INT64_MAX, install_guards
from sync.central.store import ROLES, CentralStore, DatabaseUnavailable, UploadRefused, VersionConflict
from sync.central.web import WEB_ROUTES, WebAuth, install_web, is_open
from sync.central.web.views import outbox_backlog
from sync.keys import KeyError_, sign
from sync.sparkplug import REBIRTH, decode_message, metrics_of, status_from_sparkplug
from sync.sparkplug import topic as topic_of
from sync.telemetry import parse_status
from sync.tokens import new_token

log = logging.getLogger(__name__)


class SparkplugHost:
    """Central as a Sparkplug B host application: each gate's node and device metrics, kept as the gate's
    `sparkplug` telemetry (online from NBIRTH/NDEATH with its own bdSeq, metrics, devices).

    Data from a node whose birth central has not seen (central started later, or a seq gap) makes it
    send that node `Node Control/Rebirth`, as the specification asks of a host.
    """

    def __init__(self, group: str, store: CentralStore, publish: Callable[[str, bytes], None]):
        self.group, self.store, self.publish = group, store, publish
        self.nodes: dict[str, dict[str, Any]] = {}
        self.rebirths_asked = 0

    def on_message(self, topic: str, payload: bytes) -> None:
        """Apply one Sparkplug message (paho's thread); a bad one is logged and dropped."""
        try:
            message = decode_message(topic, payload)
        except ValueError as exc:
            log.warning("ignored a Sparkplug message: %s", exc)
            return
        if message.message_type in ("NCMD", "DCMD"):
            return
        gate = message.edge_node
        node = self.nodes.get(gate)
        status = status_from_sparkplug(message)
        if message.message_type == "NBIRTH":
            node = self.nodes[gate] = {"online": True, "bd_seq": status[1] if status else None, "seq": message.seq,
                                       "metrics": metrics_of(message), "devices": {}, "at": time.time()}
        elif message.message_type == "NDEATH":
            if node is None or (status and node.get("bd_seq") != status[1]):
                return  # the death of an earlier session (its birth was replaced): not this node's state
            node["online"] = False
        elif node is None or not node["online"] or not self._in_sequence(node, message.seq):
            self._ask_for_birth(gate)
            return
        elif message.message_type == "NDATA":
            node["metrics"].update(metrics_of(message))
        elif message.message_type in ("DBIRTH", "DDATA") and message.device:
            node["devices"].setdefault(message.device, {}).update(metrics_of(message))
        elif message.message_type == "DDEATH" and message.device:
            node["devices"].setdefault(message.device, {})["online"] = False
        node["at"] = time.time()
        self.store.set_telemetry(gate, "sparkplug", node)

    @staticmethod
    def _in_sequence(node: dict[str, Any], seq: int | None) -> bool:
        expected = (node["seq"] + 1) % 256 if node.get("seq") is not None else None
        node["seq"] = seq
        return seq is None or expected is None or seq == expected

    def _ask_for_birth(self, gate: str) -> None:
        now = spb.get_current_timestamp()
        command = spb.NCmd(timestamp=now, metrics=(spb.Metric(timestamp=now, name=REBIRTH,
                                                              datatype=spb.DataType.BOOLEAN, value=True),))
        self.rebirths_asked += 1
        self.publish(topic_of(self.group, "NCMD", gate), command.encode(include_dtypes=True))


class CentralMqtt:
    """Central's MQTT side: gate birth/death and telemetry in, feed notifications out.

    A persistent session (stable client id, clean_session=False): while central is disconnected the
    broker keeps its QoS 1 subscriptions and queues what the gates publish, so on reconnect central
    still learns of a gate that went offline and came back meanwhile (the retained status alone
    would show only the latest state).
    """

    def __init__(self, store: CentralStore, host: str, port: int, client_id: str = "smartgate-central",
                 tls: MqttTls | None = None, sparkplug_group: str = "smartgate", *,
                 shared_group: str | None = None, state_host: bool = True):
        """`tls=None` is plaintext: only against a broker the site runs `insecure: true`.

        Several workers (sync/central/workers.py): each has its own client id; `shared_group` names the
        MQTT shared subscription (`$share/<group>/smartgate/+/telemetry/#`) over which the broker hands
        each telemetry message to one worker of the group, so they split the load. Birth/death and
        Sparkplug B are per-gate state whose order matters (a death applies only to its own birth, a
        Sparkplug seq must follow the last one): only the worker with `state_host` subscribes to them,
        so they arrive in order, as with one central. The other workers use clean sessions: Mosquitto
        hands a shared message to the next session of the group whether it is connected or not, so
        the persistent session of a worker that is gone for good (fewer workers) would swallow its
        share; telemetry is sent again every period, so a message lost in a restart costs nothing.
        """
        self.store, self.shared_group, self.state_host = store, shared_group, state_host
        self.sparkplug = SparkplugHost(sparkplug_group, store, self._ask_rebirth)
        self.client = new_client(client_id, tls, clean_session=not state_host)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.subscribed = threading.Event()  # the broker acknowledged every subscription of the current connection
        self._pending: set[int] = set()
        self.client.reconnect_delay_set(1, 5)
        self.host, self.port = host, port
        self.events: list[tuple[float, str, str]] = []  # (at, gate, online/offline) applied, for the log and tests
        self.telemetry_taken = 0  # telemetry messages this worker stored (its share, with a shared subscription)
        self.database_down = False  # the last message could not be stored (said once per outage in the log)
        self.unstored = 0  # messages not stored because the database was unavailable

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscriptions(self) -> list[str]:
        """The topic filters this worker subscribes to (see __init__)."""
        telemetry = "smartgate/+/telemetry/#"
        topics = [f"$share/{self.shared_group}/{telemetry}" if self.shared_group else telemetry]
        if self.state_host:
            topics += ["smartgate/+/status", f"spBv1.0/{self.sparkplug.group}/#"]
        return topics

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed.clear()
        self._pending = {client.subscribe(topic, qos=1)[1] for topic in self.subscriptions()}

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._pending.discard(mid)
        if not self._pending:
            self.subscribed.set()

    def _ask_rebirth(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        # Nothing may escape: paho re-raises a callback's exception in its network thread, which then ends,
        # and central would hear no gate again until restarted (a Sparkplug message during a database
        # restart did exactly that; found by `smartgate soak`).
        try:
            self._handle(message)
        except DatabaseUnavailable as exc:  # central's database is restarting: this message is not stored
            if not self.database_down:
                log.warning("MQTT messages not stored while central's database is unavailable (%s)", exc)
            self.database_down = True
            self.unstored += 1
        except Exception:  # a bad message must not stop the monitor
            log.exception("bad message on %s", message.topic)
        else:
            self.database_down = False

    def _handle(self, message) -> None:
        if message.topic.startswith("spBv1.0/"):
            self.sparkplug.on_message(message.topic, bytes(message.payload))
            return
        parts = message.topic.split("/")
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
            self.telemetry_taken += 1

    def notify(self, gate: str, cursor: int) -> None:
        self.client.publish(f"smartgate/{gate}/feed/notify", json.dumps({"cursor": cursor}), qos=1)


MAX_BODY = 1024 * 1024  # declarations, tokens: 1 MiB
MAX_UPLOAD = 32 * 1024 * 1024  # an event batch (upload_batch rows of journal payloads)
NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_GATE = r"(?P<gate>[A-Z0-9_-]{1,64})"

# (method, path pattern) -> who may call it: a role name, "gate" (that gate's own token) or "gate|monitor".
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(rf"/api/v1/gates/{_GATE}/events"), "gate"),
    ("GET", re.compile(rf"/api/v1/gates/{_GATE}/feed"), "gate"),
    ("GET", re.compile(rf"/api/v1/gates/{_GATE}/anchor"), "gate|monitor"),
    ("POST", re.compile(r"/api/v1/declarations"), "publisher"),
    ("POST", re.compile(r"/api/v1/declarations/[^/]+/revoke"), "publisher"),
    ("GET", re.compile(r"/api/v1/gates"), "monitor|operator"),
    ("GET", re.compile(rf"/api/v1/gates/{_GATE}/status-log"), "monitor|operator"),
    ("GET", re.compile(rf"/api/v1/gates/{_GATE}/events"), "monitor|operator"),
    ("GET", re.compile(r"/api/v1/alarms"), "monitor|operator"),
    ("GET", re.compile(r"/api/v1/tokens"), "admin"),
    ("POST", re.compile(r"/api/v1/tokens"), "admin"),
    ("DELETE", re.compile(r"/api/v1/tokens/[^/]+"), "admin"),
    ("POST", re.compile(rf"/api/v1/gates/{_GATE}/enrol"), "admin"),
    ("DELETE", re.compile(rf"/api/v1/gates/{_GATE}/token"), "admin"),
    *WEB_ROUTES,  # the monitoring page, /metrics, /openapi.json (sync/central/web/routes.py)
]
OPEN_PATHS = {"/healthz"}


def required_right(method: str, path: str) -> tuple[str | None, str | None]:
    """(who may call, gate named in the path) for a request; (None, None) for a route we do not serve."""
    for route_method, pattern, who in ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method:
            return who, match.groupdict().get("gate")
    return None, None


RETRY_AFTER_S = 1  # what a 503 during a database outage tells the caller to wait


def unavailable(exc: DatabaseUnavailable) -> JSONResponse:
    """The 503 answered while the database cannot be reached (logged once per outage, not per request)."""
    if not _outage["logged"]:
        _outage["logged"] = True
        log.error("database unavailable: answering 503 until it is back (%s)", exc)
    return JSONResponse({"detail": {"code": "DATABASE_UNAVAILABLE",
                                    "message": "central's database is unavailable; retry later"}},
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


_outage = {"logged": False}


def _database_back() -> None:
    if _outage["logged"]:
        _outage["logged"] = False
        log.warning("database reachable again")


def _deny(status: int, code: str, message: str) -> JSONResponse:
    # The body of a refused request is never read; closing the connection keeps the server from draining it.
    headers = {"Connection": "close"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="smartgate-central"'
    return JSONResponse({"detail": {"code": code, "message": message}}, status_code=status, headers=headers)


class CentralAuth:
    """ASGI middleware: authenticates and authorises every request from its headers alone, before any body is read.

    A gate token may call only its own gate's routes; a role token only its role's. Unknown routes
    also need a valid credential (so probing the API anonymously learns nothing but 401).
    """

    def __init__(self, app, store: CentralStore, refused: dict[str, int], web: WebAuth | None = None):
        self.app, self.store, self.refused, self.web = app, store, refused, web

    async def __call__(self, scope, receive, send):
        method, path = scope.get("method", "GET"), scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or is_open(method, path):
            await self.app(scope, receive, send)
            return
        who, gate = required_right(method, path)
        token = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    token = rest.strip()
        operator = None
        try:
            if token is not None:
                identity = await run_in_threadpool(self.store.identify, token)
            elif self.web is not None:  # a browser: the monitoring page's session cookie
                operator = await run_in_threadpool(self.web.session_operator, scope)
                identity = ("role", operator.role) if operator is not None else None
            else:
                identity = None
        except DatabaseUnavailable as exc:
            await unavailable(exc)(scope, receive, send)
            return
        _database_back()
        denial = None
        if identity is None:
            denial = _deny(401, "UNAUTHORIZED", "a valid bearer token or a log-in is required")
        elif who is not None and not _allowed(identity, who, gate):
            denial = _deny(403, "FORBIDDEN", "this credential may not use this route")
        elif operator is not None and self.web.csrf_refused(scope, operator):
            denial = _deny(403, "CSRF", "missing or wrong CSRF token (X-CSRF-Token)")
        if denial is not None:
            if gate is not None and who is not None and "gate" in who:
                self.refused[gate] = self.refused.get(gate, 0) + 1
            log.warning("refused %s %s: %s", method, path[:80], "no or unknown token" if identity is None
                        else f"{identity[0]} {identity[1]} lacks the right or the CSRF token")
            await denial(scope, receive, send)
            return
        if operator is not None:
            scope.setdefault("state", {})["operator"] = operator
        await self.app(scope, receive, send)


def _allowed(identity: tuple[str, str], who: str, gate: str | None) -> bool:
    kind, name = identity
    rights = who.split("|")
    if kind == "gate":
        return "gate" in rights and name == gate
    return name in rights


def gate_row(row: dict[str, Any]) -> dict[str, Any]:
    """One gate as GET /api/v1/gates answers it: the stored row with its two backlog figures named for what they
    count (README "Sync with central"); `backlog` stays for the clients that read it."""
    shown = {k: v for k, v in row.items() if k != "backlog_at"}
    return {**shown, "upload_backlog": {"value": row.get("backlog"), "at": row.get("backlog_at")},
            "outbox_backlog": outbox_backlog(row)}


def create_central_app(store: CentralStore, private_key, *, mqtt: CentralMqtt | None = None,
                       silent_after_s: float = 60.0) -> FastAPI:
    """The central app on `store`, signing feed batches with `private_key` (Ed25519)."""
    app = FastAPI(title="smartgate central (reference)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.mqtt = store, mqtt
    app.state.refused = {}  # gate -> requests refused for a missing or wrong token (this worker's count)
    web = install_web(app, store, silent_after_s=silent_after_s)  # the page, /metrics, /docs (sync/central/web)
    install_guards(app, max_body=MAX_BODY, limits={"/api/v1/gates/": MAX_UPLOAD})
    app.add_middleware(CentralAuth, store=store, refused=app.state.refused, web=web)  # outermost: before any body

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(_request, exc: DatabaseUnavailable) -> JSONResponse:
        return unavailable(exc)

    @app.get("/healthz")
    def healthz() -> Any:
        try:
            store.ping()
        except DatabaseUnavailable as exc:
            return unavailable(exc)
        return {"status": "ok", "db": store.kind, "worker": os.getpid()}

    @app.post("/api/v1/gates/{gate}/events")
    def receive_events(gate: str, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        try:
            acked = store.store_events(gate, body.get("events"), backlog=body.get("backlog"),
                                       head=body.get("head"), head_signature=body.get("head_signature"))
        except UploadRefused as exc:
            store.raise_alarm(gate, exc.code, str(exc))
            log.error("refused an upload from gate %s: %s: %s", gate, exc.code, exc)
            raise HTTPException(exc.status, {"code": exc.code, "message": str(exc)}) from exc
        return {"acked": acked}

    @app.get("/api/v1/gates/{gate}/feed")
    def feed(gate: str, nonce: str, cursor: int = Query(0, ge=0, le=INT64_MAX),
             limit: int = Query(5000, ge=1, le=100000)) -> dict[str, Any]:
        if not NONCE.fullmatch(nonce):
            raise HTTPException(422, {"code": "INVALID_REQUEST", "message": "nonce must be 16 to 128 characters of "
                                                                            "A-Z a-z 0-9 - _"})
        declarations, revocations, cursor_to = store.feed(gate, cursor, limit)
        batch = {"gate": gate, "cursor_from": cursor, "cursor_to": cursor_to, "issued_at": time.time(),
                 "nonce": nonce, "declarations": declarations, "revocations": revocations}
        store.touch(gate)
        return {"batch": batch, "signature": sign(private_key, batch)}

    @app.get("/api/v1/gates/{gate}/anchor")
    def anchor(gate: str) -> dict[str, Any]:
        return store.anchor(gate)

    @app.post("/api/v1/declarations")
    def publish(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        rows = body.get("declarations")
        if not isinstance(rows, list):
            raise HTTPException(422, {"code": "BAD_BATCH", "message": "declarations must be a list"})
        normalised = []
        for index, row in enumerate(rows):
            try:
                declaration = declaration_from_mapping(row)
                problem = publication_problem(declaration)
                if problem is not None:
                    raise DeclarationError(problem)
                mapping = declaration_to_mapping(declaration)
            except DeclarationError as exc:
                field = str(exc).split(":", 1)[0] if ":" in str(exc) else "the row"
                raise HTTPException(422, {"code": "BAD_DECLARATION",
                                          "message": f"declaration #{index}: {field[:40]} is invalid"}) from exc
            if row.get("version") in (None, ""):
                mapping["version"] = None
            elif not 0 <= int(mapping["version"]) <= INT64_MAX:
                raise HTTPException(422, {"code": "BAD_DECLARATION",
                                          "message": f"declaration #{index}: version is out of range (64-bit)"})
            normalised.append(mapping)
        try:
            cursor = store.publish(normalised)
        except VersionConflict as exc:
            raise HTTPException(409, {"code": "VERSION_CONFLICT", "message": str(exc)}) from exc
        if mqtt is not None:
            for gate in {row["gate"] for row in normalised}:
                mqtt.notify(gate, cursor)
        return {"cursor": cursor, "published": len(normalised)}

    @app.post("/api/v1/declarations/{number}/revoke")
    def revoke(number: str, body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
        try:
            revocation = store.revoke(number, str((body or {}).get("reason", ""))[:500])
        except KeyError as exc:
            raise HTTPException(404, {"code": "UNKNOWN_DECLARATION", "message": "no such declaration"}) from exc
        if mqtt is not None:
            mqtt.notify(revocation["gate"], revocation["change_id"])
        return revocation

    @app.get("/api/v1/gates")
    def gates() -> list[dict[str, Any]]:
        """Every gate: last contact, its outbox backlog (`outbox_backlog`: the latest report, what the page shows;
        `upload_backlog`: what the last upload said; `backlog`: the same number, the field's old name), last seq,
        online and bd_seq, silence, latest telemetry."""
        return [gate_row(row) for row in store.gates(silent_after_s)]

    @app.get("/api/v1/gates/{gate}/status-log")
    def status_log(gate: str, limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        return store.status_log(gate, limit)

    @app.get("/api/v1/gates/{gate}/events")
    def gate_events(gate: str, lane: str | None = None, after: int = Query(0, ge=0, le=INT64_MAX),
                    limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        return store.events(gate, lane, after, limit)

    @app.get("/api/v1/alarms")
    def alarms(gate: str | None = None, after: int = Query(0, ge=0, le=INT64_MAX),
               limit: int = Query(1000, ge=1, le=100000)) -> list[dict[str, Any]]:
        return store.alarms(gate, after, limit)

    @app.get("/api/v1/tokens")
    def tokens() -> list[dict[str, Any]]:
        return store.api_tokens()

    @app.post("/api/v1/tokens")
    def issue_token(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        name, role = body.get("name"), body.get("role")
        if role not in ROLES or not isinstance(name, str):
            raise HTTPException(422, {"code": "INVALID_REQUEST",
                                      "message": f"give a name and a role ({', '.join(ROLES)})"})
        token = new_token()
        try:
            store.set_api_token(name, role, token)
        except ValueError as exc:
            raise HTTPException(422, {"code": "INVALID_REQUEST", "message": "a token name is 1 to 100 printable "
                                                                            "characters"}) from exc
        return {"name": name, "role": role, "token": token}

    @app.delete("/api/v1/tokens/{name}")
    def revoke_token(name: str) -> dict[str, Any]:
        if not store.revoke_api_token(name):
            raise HTTPException(404, {"code": "UNKNOWN_TOKEN", "message": "no token of that name"})
        return {"revoked": name}

    @app.post("/api/v1/gates/{gate}/enrol")
    def enrol(gate: str, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        head_key = body.get("head_key")
        token = new_token()
        try:
            if not isinstance(head_key, str):
                raise KeyError_("head_key missing")
            store.enrol_gate(gate, token, head_key)
        except (KeyError_, ValueError) as exc:
            raise HTTPException(422, {"code": "INVALID_REQUEST", "message": "head_key must be the node's Ed25519 "
                                                                            "public key (base64 of 32 bytes)"}) from exc
        return {"gate": gate, "token": token}

    @app.delete("/api/v1/gates/{gate}/token")
    def revoke_gate(gate: str) -> dict[str, Any]:
        if not store.revoke_gate(gate):
            raise HTTPException(404, {"code": "UNKNOWN_GATE", "message": "that gate holds no token"})
        return {"revoked": gate}

    return app
