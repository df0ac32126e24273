"""Prometheus metrics of the node (prometheus-client), and HTTP request timing for any of our FastAPI apps.

Counted as they happen, from the lane controllers' notifications: decisions by outcome, reasons,
alarms, barrier commands, and the reading-to-decision latency. Read when scraped, from the node's
own views: devices (up, bad frames, reconnects), journal rows, outbox backlog, uploads, feed
rejections and cache age. Each node has its own registry (no global state shared between nodes or tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.node_view import NodeView
from edge.records import Notice

if TYPE_CHECKING:
    from fastapi import FastAPI

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _NodeStateCollector(Collector):
    """Gauges and counters read from the node at scrape time."""

    def __init__(self, node: NodeView):
        self.node = node

    def collect(self) -> Iterable[Any]:
        node = self.node
        device_labels = ["device", "kind", "lane"]
        up = GaugeMetricFamily("smartgate_device_up", "1 when the device is connected", labels=device_labels)
        bad = CounterMetricFamily("smartgate_device_frames_bad", "Frames or messages refused from the device",
                                  labels=["device", "kind", "lane"])
        good = CounterMetricFamily("smartgate_device_frames_good", "Frames or messages accepted from the device",
                                   labels=["device", "kind", "lane"])
        reconnects = CounterMetricFamily("smartgate_device_reconnects", "Reconnections of the device",
                                         labels=["device", "kind", "lane"])
        for health in node.device_health():
            labels = [health["device_id"], health["kind"], health.get("lane") or ""]
            up.add_metric(labels, 1.0 if health["connected"] else 0.0)
            bad.add_metric(labels, float(health["frames_bad"]))
            good.add_metric(labels, float(health["frames_good"]))
            reconnects.add_metric(labels, float(health["reconnects"]))
        yield from (up, bad, good, reconnects)
        lanes = GaugeMetricFamily("smartgate_lane_faulty", "1 when the lane is in FAULT or has a faulty device",
                                  labels=["lane", "state"])
        for status in node.lane_statuses():
            lanes.add_metric([status.lane, status.state], 1.0 if status.faults else 0.0)
        yield lanes
        yield GaugeMetricFamily("smartgate_journal_rows", "Rows in the node's journal", value=node.journal.count())
        journal = node.journal_status()
        yield GaugeMetricFamily("smartgate_journal_ok", "1 while the journal writes; 0: lanes degraded, rows held "
                                "in memory", value=1.0 if journal["ok"] else 0.0)
        yield GaugeMetricFamily("smartgate_journal_held_rows", "Rows held in memory until the journal writes again",
                                value=float(journal["held_rows"]))
        yield CounterMetricFamily("smartgate_journal_dropped_rows", "Rows dropped because the in-memory buffer was "
                                  "full (counted in the journal)", value=float(journal["dropped_rows"]))
        yield GaugeMetricFamily("smartgate_cache_declarations", "Declarations in the local cache",
                                value=node.cache.count())
        age = node.cache.age_seconds(datetime.now(UTC))
        if age is not None:
            yield GaugeMetricFamily("smartgate_feed_lag_seconds", "Age of the declaration cache (since the last "
                                    "signed feed batch)", value=age)
        status = node.sync_status()
        backlog = _number(status.get("outbox_backlog"))
        if backlog is not None:
            yield GaugeMetricFamily("smartgate_outbox_backlog", "Events waiting for central", value=backlog)
        link = status.get("link") or {}
        if link.get("configured", True) and link.get("up") is not None:
            yield GaugeMetricFamily("smartgate_link_up", "1 when the link to central is up",
                                    value=1.0 if link.get("up") else 0.0)
        for key, name, text in (("uploaded", "smartgate_uploads", "Events uploaded to central"),
                                ("upload_errors", "smartgate_upload_errors", "Failed uploads to central")):
            value = _number(status.get(key))
            if value is not None:
                yield CounterMetricFamily(name, text, value=value)
        rejected = _number((status.get("feed") or {}).get("rejected"))
        if rejected is not None:
            yield CounterMetricFamily("smartgate_feed_rejected", "Feed batches refused (signature, replay, gate)",
                                      value=rejected)


class NodeMetrics:
    """The node's registry: lane counters fed by controller notifications, state read at scrape time."""

    def __init__(self, node: NodeView, clock: Callable[[], float] = time.time):
        self.node, self.clock = node, clock
        self._unsubscribe: Callable[[], None] | None = None
        self.registry = CollectorRegistry()
        self.decisions = Counter("smartgate_decisions", "Decisions by outcome", ["lane", "outcome"],
                                 registry=self.registry)
        self.reasons = Counter("smartgate_decision_reasons", "Reason codes of decisions", ["lane", "reason"],
                               registry=self.registry)
        self.alarms = Counter("smartgate_alarms", "Alarms raised", ["lane", "code"], registry=self.registry)
        self.barrier_commands = Counter("smartgate_barrier_commands", "Barrier commands", ["lane", "command"],
                                        registry=self.registry)
        self.latency = Histogram("smartgate_decision_latency_seconds", "From the last reading to the decision",
                                 ["lane"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_NodeStateCollector(node))
        self.http = HttpMetrics(self.registry)

    def attach(self) -> None:
        """Count the node's lane notices from now on (its one subscription; a second call changes nothing)."""
        if self._unsubscribe is None:
            self._unsubscribe = self.node.subscribe(self.on_lane_event)

    def detach(self) -> None:
        """Stop counting lane notices."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def on_lane_event(self, lane_id: str, kind: str, payload: dict[str, Any]) -> None:
        """Count one lane notice (the NodeView subscription)."""
        if kind == Notice.DECISION:
            self.decisions.labels(lane_id, str(payload.get("outcome", "unknown"))).inc()
            for reason in payload.get("reasons") or ():
                code = reason.get("code") if isinstance(reason, dict) else reason
                self.reasons.labels(lane_id, str(code)).inc()
            age = self.node.reading_age(lane_id)
            if age is not None:
                self.latency.labels(lane_id).observe(age)
        elif kind == Notice.ALARM:
            self.alarms.labels(lane_id, str(payload.get("code", "unknown"))).inc()
        elif kind == Notice.BARRIER:
            self.barrier_commands.labels(lane_id, str(payload.get("command", "unknown"))).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class HttpMetrics:
    """Request count and latency per route template (never per raw path: no label explosion)."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "smartgate"):
        self.duration = Histogram(f"{prefix}_http_request_duration_seconds", "HTTP request latency",
                                  ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=registry)

    def instrument(self, app: FastAPI) -> None:
        """Time every request of `app` from its start to its response's headers (pure ASGI: streams such as
        SSE are not buffered). Call before other middleware is added, so that it times the routes."""
        app.add_middleware(_TimingMiddleware, histogram=self.duration)


class _TimingMiddleware:
    def __init__(self, app, histogram: Histogram):
        self.app, self.histogram = app, histogram

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def timed_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self.histogram.labels(scope.get("method", ""), template, str(status["code"])).observe(
                    time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)
