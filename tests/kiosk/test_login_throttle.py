"""Log-in throttling (edge/login_throttle.py): growing delays where guessing comes from, no lock-out;
the bounded password pool (edge/kiosk/auth.py)."""

from __future__ import annotations

import threading
import time

import pytest

from edge.kiosk.auth import HashPool, PoolFull
from edge.login_throttle import ADDRESS, NAME, PAIR, LoginThrottle, client_key
from edge.users import AuthSettings

ATTACKER, KIOSK, OFFICE = "10.9.9.9", "10.0.0.21", "10.0.0.30"


def _fail(throttle: LoginThrottle, address: str, name: str, now: float) -> None:
    assert throttle.check(address, name, now).allowed
    throttle.begin(address, name, now)
    throttle.finish(address, name, False, now)


def _succeed(throttle: LoginThrottle, address: str, name: str, now: float) -> None:
    throttle.begin(address, name, now)
    throttle.finish(address, name, True, now)


def test_wrong_passwords_from_one_address_grow_its_delay_up_to_the_cap():
    throttle = LoginThrottle(AuthSettings(free_failures=3, first_delay_s=1, max_delay_s=60))
    now = 1000.0
    waits = []
    for _ in range(12):
        verdict = throttle.check(ATTACKER, "super1", now)
        now += verdict.wait_s  # the attacker waits exactly as long as told, then guesses again
        _fail(throttle, ATTACKER, "super1", now)
        waits.append(throttle.check(ATTACKER, "super1", now).wait_s)
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    held = throttle.check(ATTACKER, "super1", now)
    assert held.key == PAIR and held.retry_after_s == 60
    # The real supervisor at the kiosk is not held back at all.
    assert throttle.check(KIOSK, "super1", now).allowed


def test_the_real_user_keeps_access_while_an_attacker_guesses_from_one_address():
    throttle = LoginThrottle(AuthSettings())
    now = 0.0
    for _ in range(5000):  # a day of guessing, answered with waits, not checked passwords
        verdict = throttle.check(ATTACKER, "super1", now)
        if verdict.allowed:
            _fail(throttle, ATTACKER, "super1", now)
        now += 17
    assert throttle.refused > 4000
    # One address adds at most `free_failures` to the name's count: the name itself is not delayed.
    assert throttle.failures(NAME, "super1") <= 3
    assert throttle.check(OFFICE, "super1", now).allowed


def test_a_name_guessed_from_many_addresses_waits_at_most_the_name_cap():
    settings = AuthSettings(name_free_failures=10, name_max_delay_s=30)
    throttle = LoginThrottle(settings)
    now = 0.0
    for round_ in range(20):
        for n in range(50):
            address = f"10.7.{round_}.{n}"
            if throttle.check(address, "super1", now).allowed:
                _fail(throttle, address, "super1", now)
        now += 1
    held = throttle.check(OFFICE, "super1", now)
    assert held.key == NAME and 0 < held.wait_s <= 30
    # After the bounded wait, the real supervisor's attempt is checked (and succeeds).
    now += held.wait_s
    assert throttle.check(OFFICE, "super1", now).allowed
    _succeed(throttle, OFFICE, "super1", now)
    # A success clears the name; from then on that address skips the name's delay altogether.
    for n in range(50):
        if throttle.check(f"10.8.0.{n}", "super1", now).allowed:
            _fail(throttle, f"10.8.0.{n}", "super1", now)
    assert throttle.check("10.0.0.31", "super1", now).key == NAME
    assert throttle.check(OFFICE, "super1", now).allowed


def test_an_address_guessing_many_names_is_slowed_for_every_name():
    throttle = LoginThrottle(AuthSettings(address_free_failures=20))
    for n in range(20):
        _fail(throttle, ATTACKER, f"user{n}", 0.0)
    held = throttle.check(ATTACKER, "someone-new", 0.0)
    assert held.key == ADDRESS and held.wait_s == 1
    assert throttle.check(KIOSK, "someone-new", 0.0).allowed


def test_success_clears_name_and_pair_but_not_the_address():
    throttle = LoginThrottle(AuthSettings(free_failures=3, address_free_failures=4))
    for name in ("officer1", "officer1", "officer1", "x"):
        _fail(throttle, KIOSK, name, 0.0)
    assert not throttle.check(KIOSK, "officer1", 0.0).allowed
    _succeed(throttle, KIOSK, "officer1", 5.0)  # e.g. after an unlock
    assert throttle.failures(PAIR, f"officer1|{KIOSK}") == 0 and throttle.failures(NAME, "officer1") == 0
    # An attacker cannot wipe their address's count by logging in to an account of their own.
    assert throttle.failures(ADDRESS, KIOSK) == 4


def test_a_burst_of_concurrent_attempts_cannot_slip_past_the_first_failure():
    throttle = LoginThrottle(AuthSettings(free_failures=3))
    started = []
    for n in range(100):  # all arrive before any password check has finished
        name = "super1" if n % 2 else f"user{n}"
        if throttle.check(ATTACKER, name, 0.0).allowed:
            throttle.begin(ATTACKER, name, 0.0)
            started.append(name)
    # One check at once for the pair, two for the address: the rest are told to wait a second.
    assert len(started) == 2 and started.count("super1") == 1
    assert throttle.check(ATTACKER, "super1", 0.0).wait_s == 1
    for name in started:
        throttle.finish(ATTACKER, name, False, 0.1)
    assert throttle.check(ATTACKER, "super1", 0.1).allowed  # two failures: still free
    assert throttle.check(KIOSK, "super1", 0.1).allowed


def test_unlock_clears_a_name_from_every_address():
    throttle = LoginThrottle(AuthSettings(free_failures=1))
    for address in (ATTACKER, KIOSK):
        _fail(throttle, address, "super1", 0.0)
    assert not throttle.check(KIOSK, "super1", 0.0).allowed
    assert throttle.unlock("super1") == 3  # the name and both pairs
    assert throttle.check(KIOSK, "super1", 0.0).allowed


def test_failures_are_forgotten_after_a_quiet_hour_and_tables_stay_bounded():
    throttle = LoginThrottle(AuthSettings(free_failures=1, forget_after_s=3600), max_entries=100)
    now = 0.0
    for _ in range(8):
        now += throttle.check(ATTACKER, "super1", now).wait_s
        _fail(throttle, ATTACKER, "super1", now)
    assert throttle.check(ATTACKER, "super1", now).wait_s == 128
    now += 3601  # a quiet hour: the count starts afresh
    _fail(throttle, ATTACKER, "super1", now)
    assert throttle.check(ATTACKER, "super1", now).wait_s == 1
    for n in range(1000):  # names and addresses sprayed: memory stays bounded
        _fail(throttle, f"10.1.{n // 250}.{n % 250}", f"name{n}", now + n)
    assert max(throttle.stats()[f"{kind}_keys"] for kind in (PAIR, ADDRESS, NAME)) <= 100


def test_clients_are_keyed_by_address_and_ipv6_by_its_64():
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key(None) == "?"


def test_an_address_someone_logged_in_from_is_trusted_for_every_name():
    throttle = LoginThrottle(AuthSettings(known_address_s=3600))
    assert not throttle.is_trusted(KIOSK, 0.0)
    _succeed(throttle, KIOSK, "officer1", 0.0)
    assert throttle.is_trusted(KIOSK, 10.0) and not throttle.is_known(KIOSK, "super1", 10.0)
    assert not throttle.is_trusted(ATTACKER, 10.0) and not throttle.is_trusted(KIOSK, 3601.0)


def test_the_password_pool_refuses_at_once_when_full_and_serves_kiosk_terminals_first():
    pool = HashPool(threads=1, queue=2, reserve=1)
    release, running = threading.Event(), threading.Event()
    order: list[str] = []

    def check(label: str) -> str:
        running.set()
        release.wait(10)
        order.append(label)
        return label

    try:
        futures = [pool.submit(check, "flood0")]
        assert running.wait(10)
        futures += [pool.submit(check, f"flood{n}") for n in (1, 2)]  # one running, two waiting
        with pytest.raises(PoolFull):
            pool.submit(check, "flood3")
        futures.append(pool.submit(check, "terminal", priority=True))  # an officer at a kiosk terminal
        with pytest.raises(PoolFull):
            pool.submit(check, "terminal2", priority=True)
        assert pool.pending == pool.peak == 4 and pool.refused == 2
    finally:
        release.set()
    assert [f.result(10) for f in futures] == ["flood0", "flood1", "flood2", "terminal"]
    assert order == ["flood0", "terminal", "flood1", "flood2"]  # ahead of every check still waiting
    deadline = time.monotonic() + 10
    while pool.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.pending == 0 and pool.checked == 4
    pool.close()


def test_coming_back_before_a_busy_answers_retry_after_counts_against_the_address():
    throttle = LoginThrottle(AuthSettings(address_free_failures=10))
    throttle.told_busy(ATTACKER, 1, 0.0)
    throttle.told_busy(KIOSK, 1, 0.0)
    for n in range(14):  # the flood comes straight back, again and again
        held = throttle.check(ATTACKER, f"user{n}", 0.01 * n)
        assert held.key == ADDRESS and not held.allowed
    assert throttle.stats()["impatient"] == 14
    assert throttle.check(ATTACKER, "user0", 2.0).wait_s > 0  # now delayed on its own account
    assert throttle.check(KIOSK, "officer1", 1.0).allowed  # the kiosk page waited as it was told
