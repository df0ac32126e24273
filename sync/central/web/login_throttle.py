"""Log-in throttling for central's monitoring page: per client address and over all addresses, kept in central's
database so that every worker (`smartgate central serve --workers N`) counts against one bound.

A log-in (`POST /api/v1/session`) exchanges a role token for a session. Tokens are 256-bit random, so guessing
one is hopeless; the throttle keeps a flood from costing central a database look-up per guess and from
filling its log, and it is the bound the security review asks for:

- address (edge/login_throttle.py's `client_key`: IPv4 as is, IPv6 by its /64): `address.free` failures,
  then each further failure locks the address for `address.first_delay_s`, doubled after every further
  failure, up to `address.max_delay_s`. Forgotten `address.forget_after_s` after its last failure.
- global (every address together): `global_.free` failures, then the same growing lock-out, capped at
  `global_.max_delay_s`, for every address nobody logged in from within `known_address_s` (so a
  distributed flood cannot keep the operators who use central every day out). Forgotten after
  `global_.forget_after_s` without a failure.

While an address (or the global bound) is locked, its attempts are answered 429 with Retry-After at once and
not counted: no token is looked up, so a right token is refused too and the answer tells nothing. Attempts
being checked count against the free ones (at most `in_flight` at once per scope once few are left), so a
burst of concurrent requests cannot slip past before the first failure is recorded. A success is not a
failure and clears nothing (an attacker holding a monitor token of their own cannot reset their address).

Failures and refusals are logged once per `log_window_s` per address (a summary line, not one per attempt)
and counted in the `counters` table, which `/metrics` reads (the same figure from every worker).

The policy is pure (`Count`, `wait_s`, `failed`: no clock, no I/O); `LoginThrottle` keeps the counts in the
database, each step one transaction under one database-wide lock, with time from its `clock`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from edge.login_throttle import Verdict, backoff_delay, client_key
from sync.central.store import CentralStore

log = logging.getLogger(__name__)

ADDRESS, GLOBAL = "address", "global"
_GLOBAL_KEY = "global"
_COLUMNS = ("failures", "pending", "pending_at", "last_failure", "blocked_until", "logged_at", "quiet_failed",
            "quiet_refused")
_TABLES = (
    "CREATE TABLE IF NOT EXISTS login_throttle (key TEXT PRIMARY KEY, failures BIGINT NOT NULL, "
    "pending BIGINT NOT NULL, pending_at DOUBLE PRECISION NOT NULL, last_failure DOUBLE PRECISION NOT NULL, "
    "blocked_until DOUBLE PRECISION NOT NULL, logged_at DOUBLE PRECISION NOT NULL, quiet_failed BIGINT NOT NULL, "
    "quiet_refused BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS login_known (address TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL)",
    "INSERT INTO counters (name, value) VALUES ('login_failed', 0) ON CONFLICT (name) DO NOTHING",
    "INSERT INTO counters (name, value) VALUES ('login_throttled', 0) ON CONFLICT (name) DO NOTHING",
)
FAILED_COUNTER, THROTTLED_COUNTER = "login_failed", "login_throttled"


@dataclass(frozen=True)
class Limits:
    """One scope's bound: `free` failures, then lock-outs from `first_delay_s` doubling up to `max_delay_s`."""

    free: int
    first_delay_s: float
    max_delay_s: float
    forget_after_s: float
    in_flight: int  # checks under way at once, once fewer than this many free failures are left

    def delay_after(self, failures: int) -> float:
        """Seconds locked after `failures` failures (0 while some are free)."""
        return backoff_delay(failures, self.free, self.first_delay_s, self.max_delay_s)


@dataclass(frozen=True)
class ThrottleSettings:
    """Central's log-in bounds (README "Central security")."""

    address: Limits = field(default_factory=lambda: Limits(free=5, first_delay_s=30.0, max_delay_s=900.0,
                                                           forget_after_s=3600.0, in_flight=2))
    global_: Limits = field(default_factory=lambda: Limits(free=100, first_delay_s=1.0, max_delay_s=60.0,
                                                           forget_after_s=600.0, in_flight=16))
    known_address_s: float = 12 * 3600.0  # an address someone logged in from this lately skips the global bound
    log_window_s: float = 60.0  # one log line per address per window
    pending_s: float = 30.0  # a check not finished by then (its worker died) no longer counts as under way


@dataclass(frozen=True)
class Count:
    """One scope's state: failures in a row, checks under way, lock-out, what is not logged yet."""

    failures: int = 0
    pending: int = 0
    pending_at: float = 0.0
    last_failure: float = 0.0
    blocked_until: float = 0.0
    logged_at: float = 0.0
    quiet_failed: int = 0
    quiet_refused: int = 0

    def at(self, now: float, limits: Limits, pending_s: float) -> Count:
        """The count as it stands at `now`: failures forgotten after a quiet spell, stale checks dropped."""
        count = self
        if count.pending and now - count.pending_at > pending_s:
            count = replace(count, pending=0)
        if count.failures and now - count.last_failure > limits.forget_after_s and now >= count.blocked_until:
            count = replace(count, failures=0, blocked_until=0.0)
        return count


def wait_s(count: Count, limits: Limits, now: float) -> float:
    """Seconds an attempt in this scope must wait now (<= 0: it may go ahead)."""
    wait = count.blocked_until - now
    if count.pending >= max(1, min(limits.in_flight, limits.free - count.failures)):
        wait = max(wait, 1.0)
    return wait


def failed(count: Count, limits: Limits, now: float) -> Count:
    """The count after one of its checks failed."""
    failures = count.failures + 1
    return replace(count, failures=failures, pending=max(0, count.pending - 1), last_failure=now,
                   blocked_until=max(count.blocked_until, now + limits.delay_after(failures)),
                   quiet_failed=count.quiet_failed + 1)


class LoginThrottle:
    """Central's log-in throttle on its database: `admit` before a token is looked up, `finish` with the answer."""

    def __init__(self, store: CentralStore, settings: ThrottleSettings | None = None,
                 clock: Callable[[], float] = time.time):
        self.store, self.settings, self.clock = store, settings or ThrottleSettings(), clock
        store.ensure_schema(*_TABLES)
        self._pruned_at = 0.0

    # ------------------------------------------------------------ storage

    def _load(self, execute, key: str, limits: Limits, now: float) -> Count:
        rows = execute(f"SELECT {', '.join(_COLUMNS)} FROM login_throttle WHERE key = ?", (key,))
        return Count(*rows[0]).at(now, limits, self.settings.pending_s) if rows else Count()

    @staticmethod
    def _save(execute, key: str, count: Count) -> None:
        values = [getattr(count, column) for column in _COLUMNS]
        execute(f"INSERT INTO login_throttle (key, {', '.join(_COLUMNS)}) VALUES (?, {', '.join('?' * len(_COLUMNS))}) "
                f"ON CONFLICT (key) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS)}",
                (key, *values))

    @staticmethod
    def _bump(execute, counter: str) -> None:
        execute("UPDATE counters SET value = value + 1 WHERE name = ?", (counter,))

    def _known(self, execute, address: str, now: float) -> bool:
        rows = execute("SELECT at FROM login_known WHERE address = ?", (address,))
        return bool(rows) and now - rows[0][0] <= self.settings.known_address_s

    # ------------------------------------------------------------ attempts

    def admit(self, host: str | None) -> Verdict:
        """May a log-in from `host` look up its token now? If so it counts as under way until `finish`."""
        address = client_key(host)
        s = self.settings

        def work(execute) -> Verdict:
            now = self.clock()
            mine = self._load(execute, f"{ADDRESS}:{address}", s.address, now)
            total = self._load(execute, _GLOBAL_KEY, s.global_, now)
            verdict = Verdict(wait_s(mine, s.address, now), ADDRESS)
            if verdict.allowed and not self._known(execute, address, now):
                verdict = Verdict(wait_s(total, s.global_, now), GLOBAL)
            if not verdict.allowed:
                self._bump(execute, THROTTLED_COUNTER)
                if mine != Count() or verdict.key == ADDRESS:
                    mine = replace(mine, quiet_refused=mine.quiet_refused + 1)
                    self._save(execute, f"{ADDRESS}:{address}", self._logged(address, mine, now))
                return verdict
            self._save(execute, f"{ADDRESS}:{address}", replace(mine, pending=mine.pending + 1, pending_at=now))
            self._save(execute, _GLOBAL_KEY, replace(total, pending=total.pending + 1, pending_at=now))
            return verdict

        return self.store.transaction("login", work)

    def finish(self, host: str | None, ok: bool) -> None:
        """An admitted attempt has its answer: a failure counts against its address and the global bound."""
        address = client_key(host)
        s = self.settings

        def work(execute) -> None:
            now = self.clock()
            mine = self._load(execute, f"{ADDRESS}:{address}", s.address, now)
            total = self._load(execute, _GLOBAL_KEY, s.global_, now)
            if ok:
                mine = replace(mine, pending=max(0, mine.pending - 1))
                total = replace(total, pending=max(0, total.pending - 1))
                execute("INSERT INTO login_known (address, at) VALUES (?, ?) ON CONFLICT (address) DO UPDATE "
                        "SET at = excluded.at", (address, now))
            else:
                self._bump(execute, FAILED_COUNTER)
                mine = self._logged(address, failed(mine, s.address, now), now)
                was_locked = total.blocked_until > now
                total = failed(total, s.global_, now)
                if total.blocked_until > now and not was_locked and now - total.logged_at >= s.log_window_s:
                    log.warning("central log-in: %d failed log-ins over all addresses; log-ins from addresses "
                                "nobody logged in from lately wait %.0f s", total.failures, total.blocked_until - now)
                    total = replace(total, logged_at=now, quiet_failed=0)
            self._save(execute, f"{ADDRESS}:{address}", mine)
            self._save(execute, _GLOBAL_KEY, total)
            if now - self._pruned_at > 60.0:
                self._pruned_at = now
                execute("DELETE FROM login_throttle WHERE key <> ? AND pending = 0 AND last_failure < ? "
                        "AND blocked_until < ?", (_GLOBAL_KEY, now - s.address.forget_after_s, now))
                execute("DELETE FROM login_known WHERE at < ?", (now - s.known_address_s,))

        self.store.transaction("login", work)

    def abandon(self, host: str | None) -> None:
        """An admitted attempt never got its answer (the database failed meanwhile): it no longer counts."""
        address = client_key(host)
        s = self.settings

        def work(execute) -> None:
            now = self.clock()
            for key, limits in ((f"{ADDRESS}:{address}", s.address), (_GLOBAL_KEY, s.global_)):
                count = self._load(execute, key, limits, now)
                self._save(execute, key, replace(count, pending=max(0, count.pending - 1)))

        self.store.transaction("login", work)

    def _logged(self, address: str, count: Count, now: float) -> Count:
        """Log the address's failures and refusals since its last line, at most once per `log_window_s`."""
        if now - count.logged_at < self.settings.log_window_s or not (count.quiet_failed or count.quiet_refused):
            return count
        locked = max(0.0, count.blocked_until - now)
        log.warning("central log-in from %s: %d failed and %d refused while locked since the last report; "
                    "%d failures in a row, locked for %.0f s", address, count.quiet_failed, count.quiet_refused,
                    count.failures, locked)
        return replace(count, logged_at=now, quiet_failed=0, quiet_refused=0)

    # ------------------------------------------------------------ figures

    def figures(self) -> dict[str, float]:
        """Failed and refused log-ins since the database was made, and addresses locked now (for /metrics)."""
        now = self.clock()
        counters = dict(self.store.query("SELECT name, value FROM counters WHERE name IN (?, ?)",
                                         (FAILED_COUNTER, THROTTLED_COUNTER)))
        locked = self.store.query("SELECT count(*) FROM login_throttle WHERE key <> ? AND blocked_until > ?",
                                  (_GLOBAL_KEY, now))[0][0]
        total = self.store.query("SELECT blocked_until FROM login_throttle WHERE key = ?", (_GLOBAL_KEY,))
        return {"failed": float(counters.get(FAILED_COUNTER, 0)),
                "throttled": float(counters.get(THROTTLED_COUNTER, 0)), "locked_addresses": float(locked),
                "global_locked": 1.0 if total and total[0][0] > now else 0.0}
