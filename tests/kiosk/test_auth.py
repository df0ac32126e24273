"""The kiosk over HTTP: nothing without a session or token, CSRF, log-in throttling, disabled users, roles."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import httpx
from starlette.routing import Mount, Route

from edge.users import AuthSettings, UserStore
from tests.kiosk.conftest import PASSWORDS, GateThread, login

PUBLIC = {"/healthz", "/login", "/api/login"}


def _app(gate: GateThread):
    return gate.gate.node._server.config.app


def _users(gate: GateThread) -> UserStore:
    return _app(gate).state.users


def _wait(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _lane_state(gate: GateThread, lane: str) -> str:
    return gate.run(lambda: gate.gate.node.lanes[lane].state.value)


def test_no_route_gives_data_without_a_session(gate: GateThread):
    gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")
    _wait(lambda: _lane_state(gate, "IMP-1") == "DECIDED", what="a decision")
    routes = [r for r in _app(gate).routes if isinstance(r, Route)]
    assert len(routes) >= 15
    secrets = ["29C", "SEAL-WRONG", "105000000888", "officer1", "IMP-1-plc"]
    with httpx.Client(base_url=gate.base, timeout=5, follow_redirects=False) as client:
        for route in routes:
            path = route.path.replace("{lane_id}", "IMP-1").replace("{username}", "officer1")
            for method in sorted(route.methods - {"HEAD"}):
                for headers in ({}, {"authorization": "Bearer sgt_made-up"}, {"cookie": "sg_session=made-up"}):
                    response = client.request(method, path, headers=headers, params={"q": "29C12345"})
                    if route.path in PUBLIC:
                        continue
                    if route.path == "/":
                        assert response.status_code == 303 and response.headers["location"] == "/login"
                    else:
                        assert response.status_code == 401, (method, path, headers, response.status_code)
                    assert not any(s in response.text for s in secrets), (method, path, response.text)
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and not any(s in json.dumps(health) for s in secrets)
        login_page = client.get("/login")
        assert login_page.status_code == 200 and not any(s in login_page.text for s in secrets)
        assert client.get("/static/board.js").status_code == 200  # code and styles, no gate data
        assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
        assert [r.path for r in _app(gate).routes if isinstance(r, Mount)] == ["/static"]
        # Pages carry a strict content security policy: nothing from outside the node.
        assert "default-src 'self'" in login_page.headers["content-security-policy"]


def test_csrf_less_posts_are_refused(gate: GateThread):
    gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")
    _wait(lambda: _lane_state(gate, "IMP-1") == "DECIDED", what="a decision")
    with httpx.Client(base_url=gate.base, timeout=5) as client:
        # Login needs the login page's token (cookie and header must match).
        assert client.post("/api/login", json={"username": "officer1", "password": PASSWORDS["officer1"]}
                           ).status_code == 403
        client.get("/login")
        assert client.post("/api/login", json={"username": "officer1", "password": PASSWORDS["officer1"]},
                           headers={"x-csrf-token": "guessed"}).status_code == 403
        csrf = login(client, "super1")["csrf"]
        action = {"action": "release", "reason": "papers seen"}
        # A form posted from another site: cookie sent by the browser, no header.
        form = client.post("/api/lanes/IMP-1/actions", data=action)
        assert form.status_code == 403 and form.json()["detail"]["code"] == "csrf"
        assert client.post("/api/lanes/IMP-1/actions", json=action).status_code == 403
        assert client.post("/api/lanes/IMP-1/actions", json=action,
                           headers={"x-csrf-token": csrf[:-1] + "x"}).status_code == 403
        assert client.post("/api/logout").status_code == 403
        assert client.post("/api/users/officer1/disable").status_code == 403
        assert _lane_state(gate, "IMP-1") == "DECIDED" and not gate.gate.rigs["IMP-1"].plc.boom_open
        ok = client.post("/api/lanes/IMP-1/actions", json=action, headers={"x-csrf-token": csrf})
        assert ok.status_code == 200, ok.text
        assert ok.json()["officer"] == "super1"
        _wait(lambda: gate.gate.rigs["IMP-1"].plc.boom_open, what="boom open")
        # The officer recorded is the logged-in user; a client-supplied one is refused outright.
        entry = gate.gate.node.journal.entries(lane="IMP-1", kinds=["officer_action"])[-1]
        assert entry.payload["officer"] == "super1" and entry.payload["reason"] == "papers seen"
        spoof = client.post("/api/lanes/IMP-1/actions", headers={"x-csrf-token": csrf},
                            json={"action": "refuse", "reason": "x" * 5, "officer_id": "someone-else"})
        assert spoof.status_code == 422
        # Logging out ends the session on the server.
        assert client.post("/api/logout", headers={"x-csrf-token": csrf}).status_code == 200
        assert client.get("/api/lanes").status_code == 401


def test_wrong_passwords_are_throttled_without_telling_who_exists(gate: GateThread):
    answers = {}
    for name in ("officer1", "no-such-user"):
        with httpx.Client(base_url=gate.base, timeout=10) as client:
            client.get("/login")
            token = client.cookies["sg_login_csrf"]
            codes = [client.post("/api/login", json={"username": name, "password": "wrong-password"},
                                 headers={"x-csrf-token": token}) for _ in range(4)]
            right = client.post("/api/login", json={"username": name, "password": PASSWORDS.get(name, "x")},
                                headers={"x-csrf-token": token})
            answers[name] = [(r.status_code, r.json()["detail"]["code"]) for r in [*codes, right]]
            assert right.headers["retry-after"] == "1" and right.json()["detail"]["retry_after_s"] == 1
    expected = [(401, "bad_credentials")] * 3 + [(429, "throttled"), (429, "throttled")]
    assert answers["officer1"] == expected and answers["no-such-user"] == expected
    with httpx.Client(base_url=gate.base, timeout=10) as client:  # another name is not affected
        login(client, "super1")
    # A long delay (as after many failures): `smartgate users unlock` ends it in the running node.
    guard = _app(gate).state.login_guard
    guard.throttle.settings = AuthSettings(first_delay_s=600)
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        client.get("/login")
        token = {"x-csrf-token": client.cookies["sg_login_csrf"]}
        for _ in range(3):
            client.post("/api/login", json={"username": "admin1", "password": "wrong-again"}, headers=token)
        held = client.post("/api/login", json={"username": "admin1", "password": PASSWORDS["admin1"]},
                           headers=token)
        assert held.status_code == 429 and int(held.headers["retry-after"]) > 500
        unlocked = subprocess.run([sys.executable, "-m", "edge.cli", "users", "unlock", "admin1", "--data-dir",
                                   str(gate.workdir / "node")], capture_output=True, text=True, timeout=60)
        assert unlocked.returncode == 0, unlocked.stderr

        def logged_in() -> bool:
            return client.post("/api/login", json={"username": "admin1", "password": PASSWORDS["admin1"]},
                               headers=token).status_code == 200

        _wait(logged_in, what="the unlocked admin's log-in")


def test_a_disabled_users_session_and_event_stream_stop_working(gate: GateThread):
    with httpx.Client(base_url=gate.base, timeout=10) as officer, \
            httpx.Client(base_url=gate.base, timeout=10) as admin:
        login(officer, "officer1")
        admin_csrf = login(admin, "admin1")["csrf"]
        assert officer.get("/api/lanes").status_code == 200
        events: list[str] = []

        def listen() -> None:
            with officer.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=30)) as stream:
                for line in stream.iter_lines():
                    events.append(line)

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        _wait(lambda: "event: lane" in events, what="the first lane event")
        disabled = admin.post("/api/users/officer1/disable", headers={"x-csrf-token": admin_csrf})
        assert disabled.status_code == 200 and disabled.json()["disabled"] is True
        assert officer.get("/api/lanes").status_code == 401
        assert officer.get("/").status_code in (303, 307) or "login" in officer.get("/").url.path
        listener.join(15)
        assert not listener.is_alive(), "the event stream went on after the user was disabled"
        assert "event: logout" in events
        # An admin cannot lock themselves out; officers cannot manage users.
        assert admin.post("/api/users/admin1/disable", headers={"x-csrf-token": admin_csrf}).status_code == 409
        admin.post("/api/users/officer1/enable", headers={"x-csrf-token": admin_csrf})
        with httpx.Client(base_url=gate.base, timeout=10) as again:
            csrf = login(again, "officer1")["csrf"]
            assert again.get("/api/users").status_code == 403
            assert again.post("/api/users", headers={"x-csrf-token": csrf}, json={
                "username": "x1", "password": "long-enough", "role": "admin"}).status_code == 403


def test_roles_decide_who_may_do_what(gate: GateThread):
    gate.present("EXP-1", "51D-999.99", "00A1B2C3")  # cancelled declaration: refused by the rules
    _wait(lambda: _lane_state(gate, "EXP-1") == "DECIDED", what="a refusal")
    with httpx.Client(base_url=gate.base, timeout=10) as officer:
        csrf = login(officer, "officer1")["csrf"]
        lane = officer.get("/api/lanes/EXP-1").json()
        assert lane["transaction"]["decision"]["outcome"] == "refuse" and lane["refused"] is True
        headers = {"x-csrf-token": csrf}
        for body, code in [({"action": "manual_open", "reason": "ambulance"}, "supervisor_required"),
                           ({"action": "manual_close", "reason": "closing"}, "supervisor_required"),
                           ({"action": "release", "reason": "looks fine"}, "override_requires_supervisor")]:
            refused = officer.post("/api/lanes/EXP-1/actions", json=body, headers=headers)
            assert refused.status_code == 403 and refused.json()["detail"]["code"] == code
        assert not gate.gate.rigs["EXP-1"].plc.boom_open
        inspect = officer.post("/api/lanes/EXP-1/actions", json={"action": "inspect", "reason": "x-ray it"},
                               headers=headers)
        assert inspect.status_code == 200
        assert officer.post("/api/lanes/NOPE/actions", json={"action": "inspect", "reason": "abc"},
                            headers=headers).status_code == 404
    with httpx.Client(base_url=gate.base, timeout=10) as stranger:  # an officer of another gate
        csrf = login(stranger, "other-gate", "other-pass-1")["csrf"]
        wrong = stranger.post("/api/lanes/EXP-1/actions", json={"action": "refuse", "reason": "not mine"},
                              headers={"x-csrf-token": csrf})
        assert wrong.status_code == 403 and wrong.json()["detail"]["code"] == "wrong_gate"
    with httpx.Client(base_url=gate.base, timeout=10) as supervisor:
        csrf = login(supervisor, "super1")["csrf"]
        override = supervisor.post("/api/lanes/EXP-1/actions", headers={"x-csrf-token": csrf},
                                   json={"action": "release", "reason": "cancellation was an error, called HQ"})
        assert override.status_code == 200, override.text
        _wait(lambda: gate.gate.rigs["EXP-1"].plc.boom_open, what="boom open")
        history = supervisor.get("/api/lanes/EXP-1/history").json()
        actions = [(h["officer"], h["action"]) for h in history if h["kind"] == "officer_action"]
        assert actions == [("super1", "release"), ("officer1", "inspect")]


def test_api_tokens_for_machines(gate: GateThread):
    store = _users(gate)
    token = store.create_token("super1", "central monitor")
    with httpx.Client(base_url=gate.base, timeout=10, headers={"authorization": f"Bearer {token}"}) as machine:
        assert machine.get("/api/status").json()["link"] == {"configured": False, "up": None, "since": None}
        status = machine.get("/api/status").json()
        assert status["outbox_backlog"] is None and status["cache"]["stale"] is False
        assert status["devices"]["total"] >= 6
        found = machine.get("/api/declarations", params={"q": "29C-123.45"}).json()["results"]
        assert [d["number"] for d in found] == ["105000000888"]
        assert [d["number"] for d in machine.get("/api/declarations", params={"q": "CSQU3054383"}).json()
                ["results"]] == ["105000000888", "105000000999"]
        assert machine.get("/api/declarations", params={"q": "105000000999"}).json()["results"][0]["status"] \
            == "cancelled"
        spec = machine.get("/openapi.json")
        assert spec.status_code == 200 and "/api/lanes/{lane_id}/actions" in spec.json()["paths"]
        # No CSRF token needed with a Bearer token (a browser never sends one by itself).
        manual = machine.post("/api/lanes/IMP-1/actions", json={"action": "manual_close", "reason": "test"})
        assert manual.status_code == 200
        store.set_disabled("super1", True)
        assert machine.get("/api/lanes").status_code == 401
        store.set_disabled("super1", False)


def test_events_stream_each_lane_change(gate: GateThread):
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        login(client, "officer1")
        seen: list[tuple[float, dict]] = []

        def listen() -> None:
            event = ""
            with client.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=30)) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "lane":
                        seen.append((time.time(), json.loads(line[5:])))
                        if seen[-1][1].get("state") == "DECIDED":
                            return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        _wait(lambda: len(seen) >= 2, what="a view of every lane on connecting")
        assert {view["lane"] for _, view in seen[:2]} == {"IMP-1", "EXP-1"}
        gate.present("IMP-1", "29C-123.45", "SEAL-888")
        listener.join(15)
        at, decided = seen[-1]
        assert decided["lane"] == "IMP-1" and decided["declaration"]["number"] == "105000000888"
        assert decided["transaction"]["decision"]["outcome"] in ("release", "hold")
        decision = gate.gate.node.journal.entries(lane="IMP-1", kinds=["decision"])[-1]
        print(f"decision journaled → lane event received: {(at - decision.at) * 1000:.1f} ms")
        assert re.match(r"^\d", str(decided["updated_at"]))
