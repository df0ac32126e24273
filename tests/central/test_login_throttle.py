"""Central's page log-in is throttled (sync/central/web/login_throttle.py), over real HTTP on loopback against a real
PostgreSQL: a flood of wrong tokens is locked out with 429 + Retry-After, a right token from that address is refused
too while the lock-out lasts, other addresses are not (up to the global bound), the lock-out ends after its time and
grows with further failures, and two workers on one database share one count. Time is the throttle's injected clock.

Clients come from different loopback addresses (127.0.0.1, 127.0.0.2, ...: Linux routes all of 127/8 to `lo`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sync.central.server import CentralServer
from sync.central.web.login_throttle import ThrottleSettings
from sync.keys import generate_keypair
from tests.central.conftest import MONITOR, ROLE_TOKENS
from tests.sync.conftest import pg_server, pg_url  # noqa: F401  (fixtures)

WRONG = "wrong-token-guessed-by-an-attacker-0000001"
ADDRESS_FREE, FIRST_LOCK_S = ThrottleSettings().address.free, ThrottleSettings().address.first_delay_s


class Clock:
    """The throttle's time, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _start(db_url: str, clock: Clock, private=None) -> CentralServer:
    central = CentralServer(db_url, private or generate_keypair()[0], api_tokens=ROLE_TOKENS).start()
    central.app.state.login_throttle.clock = clock
    return central


@pytest.fixture
def central(pg_url) -> Iterator[tuple[CentralServer, Clock]]:  # noqa: F811
    clock = Clock()
    server = _start(pg_url, clock)
    try:
        yield server, clock
    finally:
        server.stop()


def _browser(url: str, address: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=address))


def _log_in(client: httpx.Client, token: str) -> httpx.Response:
    """What the log-in form does: open the page (CSRF cookie), post the token with the CSRF header."""
    assert client.get("/login").status_code == 200
    return client.post("/api/v1/session", json={"token": token},
                       headers={"x-csrf-token": client.cookies.get("sg_central_login")})


def _lock_out(client: httpx.Client) -> None:
    for _ in range(ADDRESS_FREE):
        assert _log_in(client, WRONG).status_code == 401


def _metrics(url: str) -> dict[str, float]:
    answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {MONITOR}"}, timeout=10)
    assert answer.status_code == 200
    return {s.name: s.value for family in text_string_to_metric_families(answer.text) for s in family.samples
            if s.name.startswith("smartgate_central_login")}


def test_a_flood_of_wrong_tokens_gets_429_with_retry_after_and_a_right_token_is_refused_too(central):
    server, _clock = central
    with _browser(server.url) as attacker:
        _lock_out(attacker)
        for _ in range(3):
            answer = _log_in(attacker, WRONG)
            assert answer.status_code == 429
            assert answer.headers["retry-after"] == str(int(FIRST_LOCK_S))
            assert answer.json()["detail"]["code"] == "TOO_MANY_ATTEMPTS"
        # the right token from the locked address: the same answer, no session (nothing to learn from it)
        right = _log_in(attacker, MONITOR)
        assert right.status_code == 429 and right.headers["retry-after"] == str(int(FIRST_LOCK_S))
        assert "sg_central_session" not in attacker.cookies
        assert attacker.get("/api/v1/monitor/overview").status_code == 401
    figures = _metrics(server.url)
    assert figures["smartgate_central_login_failures_total"] == ADDRESS_FREE
    assert figures["smartgate_central_login_throttled_total"] == 4
    assert figures["smartgate_central_login_locked_addresses"] == 1


def test_another_address_is_not_locked_out_by_one_attacker(central):
    server, _clock = central
    with _browser(server.url, "127.0.0.1") as attacker, _browser(server.url, "127.0.0.2") as operator:
        _lock_out(attacker)
        assert _log_in(attacker, WRONG).status_code == 429
        answer = _log_in(operator, MONITOR)
        assert answer.status_code == 200 and answer.json()["name"] == "mai.monitor"
        assert operator.get("/api/v1/monitor/overview").status_code == 200


def test_the_lock_out_ends_after_its_time_and_doubles_with_the_next_failure(central):
    server, clock = central
    with _browser(server.url) as client:
        _lock_out(client)
        clock.now += FIRST_LOCK_S - 1
        still = _log_in(client, MONITOR)
        assert still.status_code == 429 and still.headers["retry-after"] == "1"
        clock.now += 1
        assert _log_in(client, WRONG).status_code == 401  # allowed again, and wrong once more
        longer = _log_in(client, MONITOR)
        assert longer.status_code == 429 and longer.headers["retry-after"] == str(int(2 * FIRST_LOCK_S))
        clock.now += 2 * FIRST_LOCK_S
        assert _log_in(client, MONITOR).status_code == 200
        assert client.get("/api/v1/monitor/overview").status_code == 200


def test_the_global_bound_holds_back_new_addresses_but_not_one_that_logged_in_lately(central):
    server, clock = central
    throttle = server.app.state.login_throttle
    # a small global bound, so that two addresses reach it: 5 failures from one, 2 from another
    throttle.settings = replace(throttle.settings, global_=replace(throttle.settings.global_, free=ADDRESS_FREE + 2))
    with (_browser(server.url, "127.0.0.1") as first, _browser(server.url, "127.0.0.2") as second,
          _browser(server.url, "127.0.0.3") as regular, _browser(server.url, "127.0.0.4") as newcomer):
        assert _log_in(regular, MONITOR).status_code == 200  # an operator who uses central every day
        _lock_out(first)
        assert _log_in(second, WRONG).status_code == 401  # second's own count is far from its bound ...
        assert _log_in(second, WRONG).status_code == 401
        held = _log_in(newcomer, MONITOR)  # ... but the global bound is reached: a new address waits too
        assert held.status_code == 429 and int(held.headers["retry-after"]) >= 1
        assert _metrics(server.url)["smartgate_central_login_global_locked"] == 1
        regular.cookies.clear()
        assert _log_in(regular, MONITOR).status_code == 200  # known address: not held by the global bound
        clock.now += throttle.settings.global_.max_delay_s
        assert _log_in(newcomer, MONITOR).status_code == 200


def test_a_burst_of_concurrent_guesses_cannot_slip_past_the_count(central):
    server, _clock = central
    with _browser(server.url) as client:
        assert client.get("/login").status_code == 200
        csrf = client.cookies.get("sg_central_login")

        def guess(_: int) -> int:
            return client.post("/api/v1/session", json={"token": WRONG}, headers={"x-csrf-token": csrf}).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(guess, range(60)))
    # checks under way count against the free failures: never more than the bound get a token looked up
    assert answers.count(401) <= ADDRESS_FREE and answers.count(401) + answers.count(429) == len(answers)
    assert _metrics(server.url)["smartgate_central_login_failures_total"] == answers.count(401)


def test_two_workers_on_one_database_share_the_count(pg_url):  # noqa: F811
    clock, private = Clock(), generate_keypair()[0]
    one, two = _start(pg_url, clock, private), _start(pg_url, clock, private)
    try:
        with _browser(one.url) as via_one, _browser(two.url) as via_two:
            for attempt in range(ADDRESS_FREE):
                assert _log_in(via_one if attempt % 2 else via_two, WRONG).status_code == 401
            assert _log_in(via_one, MONITOR).status_code == 429
            assert _log_in(via_two, MONITOR).status_code == 429
    finally:
        one.stop()
        two.stop()


def test_failures_are_logged_once_per_window_not_per_attempt(central, caplog):
    server, clock = central
    caplog.set_level(logging.WARNING, logger="sync.central.web.login_throttle")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "sync.central.web.login_throttle"]

    with _browser(server.url) as client:
        _lock_out(client)
        for _ in range(3):
            assert _log_in(client, WRONG).status_code == 429
        assert len(lines()) == 1 and "from 127.0.0.1: 1 failed" in lines()[0]
        clock.now += ThrottleSettings().log_window_s  # the lock-out (30 s) is over too
        assert _log_in(client, WRONG).status_code == 401
        assert len(lines()) == 2
        assert f"{ADDRESS_FREE} failed and 3 refused" in lines()[1]
