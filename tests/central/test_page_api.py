"""Central's page API over real HTTP on loopback: log-in, roles, CSRF, acknowledgement audit, search, metrics."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.central.conftest import (
    ADMIN,
    HELD_PLATE,
    MONITOR,
    OPERATOR,
    PUBLISHER,
    RELEASED_CONTAINER,
    RELEASED_DECL,
    RELEASED_PLATE,
    RELEASED_SEAL,
)
from tests.sync.helpers import TOKEN


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=10)


def _log_in(client: httpx.Client, token: str) -> httpx.Response:
    """What the log-in form does: open the page (CSRF cookie), post the token with the CSRF header."""
    page = client.get("/login")
    assert page.status_code == 200
    csrf = client.cookies.get("sg_central_login")
    return client.post("/api/v1/session", json={"token": token}, headers={"x-csrf-token": csrf})


def test_a_browser_without_a_session_is_sent_to_the_log_in_and_the_api_answers_401(monitored):
    with _browser(monitored.url) as client:
        assert client.get("/").headers["location"] == "/login"
        for path in ("/docs", "/api/v1/monitor/overview", "/api/v1/monitor/alarms", "/metrics", "/openapi.json",
                     "/api/v1/monitor/live"):
            assert client.get(path).status_code == 401, path


def test_log_in_exchanges_the_token_for_an_httponly_strict_cookie(monitored):
    with _browser(monitored.url) as client:
        answer = _log_in(client, MONITOR)
        assert answer.status_code == 200 and answer.json()["name"] == "mai.monitor"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and MONITOR.lower() not in cookie
        assert client.get("/").status_code == 200
        assert client.get("/api/v1/monitor/overview").json()["gates"][0]["gate"] == "HN"
        assert client.delete("/api/v1/session").status_code == 403  # a write with the cookie needs the CSRF token
        csrf = answer.json()["csrf"]
        assert client.delete("/api/v1/session", headers={"x-csrf-token": csrf}).status_code == 200
        assert client.get("/api/v1/monitor/overview").status_code == 401


def test_log_in_without_the_forms_csrf_token_is_refused(monitored):
    with _browser(monitored.url) as client:
        assert client.post("/api/v1/session", json={"token": MONITOR}).status_code == 403
        assert "sg_central_session" not in client.cookies


@pytest.mark.parametrize("token, status, code", [(PUBLISHER, 403, "ROLE_NOT_ALLOWED"), (TOKEN, 401, "BAD_TOKEN"),
                                                 ("x" * 43, 401, "BAD_TOKEN")])
def test_a_publisher_or_gate_token_cannot_open_the_page(monitored, token, status, code):
    with _browser(monitored.url) as client:
        answer = _log_in(client, token)
        assert (answer.status_code, answer.json()["detail"]["code"]) == (status, code)
        assert client.get("/").headers["location"] == "/login"
    assert httpx.get(f"{monitored.url}/api/v1/monitor/overview", headers=_bearer(PUBLISHER)).status_code == 403
    assert httpx.get(f"{monitored.url}/metrics", headers=_bearer(TOKEN)).status_code == 403


def test_a_revoked_token_ends_its_sessions(monitored):
    with _browser(monitored.url) as client:
        assert _log_in(client, MONITOR).status_code == 200
        assert httpx.delete(f"{monitored.url}/api/v1/tokens/mai.monitor", headers=_bearer(ADMIN)).status_code == 200
        assert client.get("/api/v1/monitor/overview").status_code == 401


def test_overview_shows_the_held_truck_one_backlog_and_cache_age_against_policy(monitored):
    gate = httpx.get(f"{monitored.url}/api/v1/monitor/overview", headers=_bearer(MONITOR)).json()["gates"][0]
    assert gate["online"]["value"] is True and gate["link"]["up"] is True
    # the upload said 0 waiting, the telemetry sent after it says 3: one number, the latest report's
    assert gate["backlog"]["value"] == 3 and gate["backlog"]["source"] == "telemetry"
    cache = gate["cache"]
    assert cache["max_age_s"] == 21600 and 590 < cache["age_s"] < 700 and cache["stale"] is False
    [held] = gate["held"]
    assert (held["lane"], held["plates"], held["reasons"]) == ("L2", [HELD_PLATE], ["SEAL_MISMATCH"])
    assert 180 < held["waiting_s"] < 260
    assert {lane["lane"]: lane["state"] for lane in gate["lanes"]} == {"L1": "IDLE", "L2": "DECIDED"}


def test_gate_detail_counts_decisions_per_hour_and_lists_recent_trucks(monitored):
    detail = httpx.get(f"{monitored.url}/api/v1/monitor/gates/HN", headers=_bearer(MONITOR)).json()
    assert len(detail["throughput"]) == 24
    assert sum(b["release"] for b in detail["throughput"]) == 1 and sum(b["hold"] for b in detail["throughput"]) == 1
    assert [t["plates"] for t in detail["recent"]] == [[RELEASED_PLATE]]
    assert {d["device_id"]: d["connected"] for d in detail["device_list"]} == {"L1-anpr": True, "L2-eseal": False}
    assert httpx.get(f"{monitored.url}/api/v1/monitor/gates/NOPE", headers=_bearer(MONITOR)).status_code == 404


@pytest.mark.parametrize("query", ["29C-123.45", "29c 12345", "MSKU 123456-5", "vnseal0101", RELEASED_DECL])
def test_a_truck_is_found_by_plate_container_seal_or_declaration(monitored, query):
    found = httpx.get(f"{monitored.url}/api/v1/monitor/search", params={"q": query}, headers=_bearer(MONITOR)).json()
    assert [(t["gate"], t["containers"], t["seals"]) for t in found["trucks"]] == [
        ("HN", [RELEASED_CONTAINER], [RELEASED_SEAL])]


def test_a_held_truck_not_yet_closed_is_found_by_its_plate(monitored):
    found = httpx.get(f"{monitored.url}/api/v1/monitor/search", params={"q": HELD_PLATE},
                      headers=_bearer(MONITOR)).json()["trucks"]
    assert [(t["lane"], t["outcome"]) for t in found] == [("L2", "hold")]


def test_only_an_operator_or_admin_acknowledges_and_the_ack_names_them(monitored):
    url = monitored.url
    [alarm] = httpx.get(f"{url}/api/v1/monitor/alarms", headers=_bearer(MONITOR)).json()["alarms"]
    assert (alarm["code"], alarm["severity"], alarm["lane"]) == ("TAILGATING", "critical", "L1")
    assert httpx.post(f"{url}/api/v1/monitor/alarms/{alarm['id']}/ack", headers=_bearer(MONITOR)).status_code == 403
    with _browser(url) as client:
        csrf = _log_in(client, OPERATOR).json()["csrf"]
        assert client.post(f"/api/v1/monitor/alarms/{alarm['id']}/ack").status_code == 403  # no CSRF header
        acked = client.post(f"/api/v1/monitor/alarms/{alarm['id']}/ack", headers={"x-csrf-token": csrf}).json()
        assert acked["acked_by"] == "an.operator" and acked["acked_at"] > 0
        assert client.post("/api/v1/monitor/alarms/e999999/ack", headers={"x-csrf-token": csrf}).status_code == 404
    cleared = httpx.post(f"{url}/api/v1/monitor/alarms/{alarm['id']}/clear", headers=_bearer(ADMIN)).json()
    assert (cleared["acked_by"], cleared["cleared_by"]) == ("an.operator", "root.admin")  # the first ack stands
    assert httpx.get(f"{url}/api/v1/monitor/alarms", headers=_bearer(MONITOR)).json()["alarms"] == []
    [old] = httpx.get(f"{url}/api/v1/monitor/alarms", params={"state": "cleared"}, headers=_bearer(MONITOR)).json()[
        "alarms"]
    assert old["id"] == alarm["id"]


def test_a_gates_death_is_an_alarm(monitored):
    monitored.central.store.record_status("HN", False, 0)
    alarms = httpx.get(f"{monitored.url}/api/v1/monitor/alarms", headers=_bearer(MONITOR)).json()["alarms"]
    assert "GATE_OFFLINE" in {a["code"] for a in alarms}
    gate = httpx.get(f"{monitored.url}/api/v1/monitor/overview", headers=_bearer(MONITOR)).json()["gates"][0]
    assert gate["online"]["value"] is False


def test_metrics_are_prometheus_text_for_a_monitor_token(monitored):
    url = monitored.url
    httpx.get(f"{url}/api/v1/gates/HN/feed", params={"nonce": "a-fresh-nonce-for-metrics"}, headers=_bearer(TOKEN))
    answer = httpx.get(f"{url}/metrics", headers=_bearer(MONITOR))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(answer.text) for s in family.samples}
    assert samples[("smartgate_central_uploads_total", (("gate", "HN"), ("status", "200")))] == 1
    assert samples[("smartgate_central_events_acked_total", (("gate", "HN"),))] == 6
    assert samples[("smartgate_central_events_stored_total", (("gate", "HN"),))] == 6
    assert samples[("smartgate_central_feed_pulls_total", (("gate", "HN"), ("status", "200")))] == 1
    assert samples[("smartgate_central_gate_online", (("gate", "HN"),))] == 1
    assert samples[("smartgate_central_gate_outbox_backlog", (("gate", "HN"),))] == 3
    assert samples[("smartgate_central_alarms_unacknowledged", ())] == 1
    assert any(name == "smartgate_central_http_request_duration_seconds_count" and dict(labels).get("route") ==
               "/api/v1/gates/{gate}/events" for name, labels in samples)
    assert httpx.get(f"{url}/metrics").status_code == 401


def test_docs_and_their_assets_come_from_central(monitored):
    docs = httpx.get(f"{monitored.url}/docs", headers=_bearer(MONITOR))
    assert docs.status_code == 200 and "http" not in docs.text.split("<body")[0].replace('http-equiv', '')
    for asset in ("/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css"):
        assert httpx.get(monitored.url + asset).status_code == 200
    spec = httpx.get(f"{monitored.url}/openapi.json", headers=_bearer(MONITOR)).json()
    assert "/api/v1/monitor/alarms/{alarm}/ack" in spec["paths"]


def test_the_live_stream_sends_the_overview_and_ends_a_revoked_session(monitored):
    with _browser(monitored.url) as client:
        assert _log_in(client, MONITOR).status_code == 200
        with client.stream("GET", "/api/v1/monitor/live", timeout=20) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) in ("event: overview", "event: alarms")
            httpx.delete(f"{monitored.url}/api/v1/tokens/mai.monitor", headers=_bearer(ADMIN)).raise_for_status()
            assert "event: logout" in list(lines)  # within the stream's 5 s recheck, then the stream ends


def test_every_alarm_a_node_raises_has_a_severity_on_the_page():
    from edge.records import AlarmCode
    from sync.central.web.alarms import SEVERITY

    missing = sorted(code.value for code in AlarmCode if code.value not in SEVERITY)
    assert not missing, f"add these node alarm codes to SEVERITY in sync/central/web/alarms.py: {missing}"
