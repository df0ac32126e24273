"""schemathesis against the kiosk's OpenAPI schema on a live node, with a valid session: no 5xx.

Every operation gets a bounded number of generated requests, valid and invalid (schemathesis'
positive and negative modes), sent over HTTP to a real simulated gate, authenticated with a
logged-in admin's session cookie and CSRF token (the broadest role, so every route is reached).
Path parameters are also pinned to the gate's real lanes and users, so that generated requests
reach the lane controllers and the user store, not only the 404 path. The event stream never ends
and logging out would end the session under test: those two are left out.
"""

from __future__ import annotations

import contextlib

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.kiosk.conftest import GateThread, login

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 15
PINNED = {"lane_id": ["IMP-1", "EXP-1"], "username": ["other-gate"]}


def test_no_server_error_anywhere_in_the_api(gate: GateThread):
    gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")  # something on the board to act on
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        csrf = login(client, "admin1")["csrf"]
        session = client.cookies["sg_session"]
        spec = client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path not in ("/api/events", "/api/logout")]
    assert len(operations) >= 14
    failures: list[str] = []
    statuses: dict[tuple[str, str, int], int] = {}

    def run(operation, strategy) -> None:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case) -> None:
            response = case.call(base_url=gate.base, headers={"x-csrf-token": csrf},
                                 cookies={"sg_session": session}, timeout=10)
            key = (case.method, operation.path, response.status_code)
            statuses[key] = statuses.get(key, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r}: "
                                f"{response.status_code} {response.text[:200]}")

        with contextlib.suppress(Unsatisfiable):  # nothing to make invalid: no parameters, no body
            check()

    for operation in operations:
        for mode in schemathesis.GenerationMode:
            run(operation, operation.as_strategy(generation_mode=mode))
        for name, values in PINNED.items():
            if "{" + name + "}" in operation.path:
                for value in values:
                    run(operation, operation.as_strategy(path_parameters={name: value}))

    print("\n".join(f"{m} {p} {code}: {n}" for (m, p, code), n in sorted(statuses.items())))
    # The session stayed valid throughout (nothing generated logged the admin out or locked them).
    with httpx.Client(base_url=gate.base, timeout=10, cookies={"sg_session": session}) as client:
        assert client.get("/api/session").status_code == 200
    reached = {(m, p) for (m, p, code), _ in statuses.items() if code < 400}
    assert ("POST", "/api/lanes/{lane_id}/actions") in reached and ("POST", "/api/users") in reached
    assert failures == []
