"""Central's Prometheus metrics (`GET /metrics`, a monitor, operator or admin token: see README "Central metrics").

Counted as requests pass (this process): event uploads by gate and HTTP status, events acknowledged to gates,
feed pulls by gate and status, and every request's latency by route template (edge/metrics.py's HttpMetrics).
Read from the database when scraped (the same for every worker): each gate's last contact, online state and outbox
backlog as the page shows them, events stored, alarms by code and how many are active and not acknowledged, and
page log-ins refused or throttled (sync/central/web/login_throttle.py).

A gate label is only ever a gate whose own token passed (central refuses any other before the route), so an
anonymous caller cannot grow the label set.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.metrics import HttpMetrics
from sync.central.store import CentralStore
from sync.central.web.alarms import AlarmBook
from sync.central.web.login_throttle import LoginThrottle
from sync.central.web.views import gate_summary

_UPLOAD = re.compile(r"/api/v1/gates/(?P<gate>[A-Z0-9_-]{1,64})/events")
_FEED = re.compile(r"/api/v1/gates/(?P<gate>[A-Z0-9_-]{1,64})/feed")
_PASSED_AUTH = frozenset(range(200, 600)) - {401, 403}


class _StoreCollector(Collector):
    def __init__(self, store: CentralStore, alarms: AlarmBook, silent_after_s: float, login: LoginThrottle | None):
        self.store, self.alarms, self.silent_after_s, self.login = store, alarms, silent_after_s, login

    def collect(self) -> Iterable[Any]:
        now = time.time()
        contact = GaugeMetricFamily("smartgate_central_gate_last_contact_timestamp_seconds",
                                    "When the gate last uploaded or pulled its feed (epoch seconds)", labels=["gate"])
        online = GaugeMetricFamily("smartgate_central_gate_online", "1 while the gate's node is born (Sparkplug / "
                                   "status birth), 0 after its death", labels=["gate"])
        backlog = GaugeMetricFamily("smartgate_central_gate_outbox_backlog", "Events waiting in the gate's outbox "
                                    "(its most recent report)", labels=["gate"])
        for row in self.store.gates(self.silent_after_s):
            summary = gate_summary(row, now, [])
            if row.get("last_contact") is not None:
                contact.add_metric([row["gate"]], float(row["last_contact"]))
            if summary["online"]["value"] is not None:
                online.add_metric([row["gate"]], 1.0 if summary["online"]["value"] else 0.0)
            if isinstance(summary["backlog"]["value"], int | float):
                backlog.add_metric([row["gate"]], float(summary["backlog"]["value"]))
        yield from (contact, online, backlog)
        stored = CounterMetricFamily("smartgate_central_events_stored", "Gate events stored at central",
                                     labels=["gate"])
        for gate, count in self.store.query("SELECT gate, count(*) FROM events GROUP BY gate"):
            stored.add_metric([gate], float(count))
        yield stored
        raised = CounterMetricFamily("smartgate_central_alarms", "Alarms central raised (refused uploads) by code",
                                     labels=["code"])
        for code, count in self.store.query("SELECT code, count(*) FROM alarms GROUP BY code"):
            raised.add_metric([code], float(count))
        yield raised
        counts = self.alarms.counts()
        active = GaugeMetricFamily("smartgate_central_alarms_active", "Alarms not cleared, by severity",
                                   labels=["severity"])
        for severity in ("critical", "major", "minor"):
            active.add_metric([severity], float(counts[severity]))
        yield active
        yield GaugeMetricFamily("smartgate_central_alarms_unacknowledged", "Active alarms nobody has acknowledged",
                                value=float(counts["unacked"]))
        if self.login is not None:
            figures = self.login.figures()
            yield CounterMetricFamily("smartgate_central_login_failures", "Page log-ins refused for a wrong token or "
                                      "role (every worker's)", value=figures["failed"])
            yield CounterMetricFamily("smartgate_central_login_throttled", "Page log-ins answered 429 while their "
                                      "address or the global bound was locked out", value=figures["throttled"])
            yield GaugeMetricFamily("smartgate_central_login_locked_addresses", "Client addresses locked out of "
                                    "log-in now", value=figures["locked_addresses"])
            yield GaugeMetricFamily("smartgate_central_login_global_locked", "1 while the global log-in bound holds "
                                    "back addresses nobody logged in from lately", value=figures["global_locked"])


class CentralMetrics:
    """Central's registry (one per app: no global state between apps or tests) and its ASGI counting middleware."""

    def __init__(self, store: CentralStore, alarms: AlarmBook, silent_after_s: float = 60.0,
                 login: LoginThrottle | None = None):
        self.registry = CollectorRegistry()
        self.uploads = Counter("smartgate_central_uploads", "Event uploads by gate and HTTP status",
                               ["gate", "status"], registry=self.registry)
        self.events_acked = Counter("smartgate_central_events_acked", "Events acknowledged to gates (re-sent ones "
                                    "included: their effect is once)", ["gate"], registry=self.registry)
        self.feed_pulls = Counter("smartgate_central_feed_pulls", "Declaration feed pulls by gate and HTTP status",
                                  ["gate", "status"], registry=self.registry)
        self.http = HttpMetrics(self.registry, prefix="smartgate_central")
        self.registry.register(_StoreCollector(store, alarms, silent_after_s, login))

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def count(self, method: str, path: str, status: int, body: bytes) -> None:
        """Count one finished request to the gate routes (`body`: the response, read only for an upload)."""
        if status not in _PASSED_AUTH:
            return
        if method == "POST" and (match := _UPLOAD.fullmatch(path)):
            self.uploads.labels(match["gate"], str(status)).inc()
            if status == 200:
                try:
                    acked = len(json.loads(body).get("acked") or [])
                except (ValueError, AttributeError):
                    acked = 0
                self.events_acked.labels(match["gate"]).inc(acked)
        elif method == "GET" and (match := _FEED.fullmatch(path)):
            self.feed_pulls.labels(match["gate"], str(status)).inc()


class GateRouteCounter:
    """Pure ASGI middleware: hands each gate upload's and feed pull's status (and an upload's answer) to
    CentralMetrics.count. Other requests pass untouched."""

    def __init__(self, app, metrics: CentralMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/v1/gates/"):
            await self.app(scope, receive, send)
            return
        status, body = {"code": 500}, bytearray()
        upload = scope.get("method") == "POST"

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body":
                if upload and len(body) < 4 * 1024 * 1024:
                    body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    self.metrics.count(scope.get("method", ""), path, status["code"], bytes(body))
            await send(message)

        await self.app(scope, receive, counting_send)
