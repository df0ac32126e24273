"""Log-in throttling: growing delays per client address, per user name and per (address, name) pair.

A hard lock-out (five wrong passwords lock the name for 15 minutes) hands the lock to anyone who
can type the name: the only supervisor of a gate was locked out again and again from a laptop on
the kiosk LAN. Here nobody is locked out; guessing is slowed down where it comes from:

- (address, name): after `free_failures` wrong passwords, each next attempt of this pair waits
  `first_delay_s`, doubled after every further failure, up to `max_delay_s`. This is what stops
  one attacker guessing one account, and it touches no other address.
- address: after `address_free_failures` over all names, the same growing delays for everything
  from that address (an attacker trying many names from one laptop).
- name: after `name_free_failures` over all addresses, delays capped at `name_max_delay_s`
  (many addresses guessing one account; one address adds at most `free_failures` to it). The cap
  is the longest anyone can make the real user wait, and an address the user logged in from
  lately (`known_address_s`) skips the name's delay.

While a key is delayed its attempts are answered at once (429 with the seconds to wait) and not
counted: no password is checked, so nothing is learnt and no CPU is spent. Attempts in flight
count against a key's free attempts, and a pair may have one check under way at once, an address
two, so a burst of concurrent requests from one address cannot slip past before the first failure
is recorded, nor fill the password pool. A success clears its name and pair (not the
address: an attacker must not reset it with an account of their own). A key is forgotten
`forget_after_s` after its last failure. Each table is bounded (least recently failed evicted).

When the password pool is full the kiosk answers "busy" (503, Retry-After); an address that
comes back before that time is up has each such attempt counted as a failure of the address, so
a flood that ignores Retry-After soon meets the address's growing delays and leaves the pool to
those who wait as told (the kiosk page does).

Sans-I/O: no clock, no threads; time is passed in. The kiosk's LoginGuard (edge/kiosk/auth.py)
wires it to the password pool, and `smartgate users unlock` reaches it through the user store.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from edge.users import AuthSettings

PAIR, ADDRESS, NAME = "pair", "address", "name"
MAX_ENTRIES = 20_000  # per table; ~200 bytes each
IN_FLIGHT = {PAIR: 1, ADDRESS: 2}  # password checks one pair / one address may have under way at once


@dataclass
class _Entry:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0
    in_flight: int = 0


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt may go ahead now; if not, how long to wait and which key holds it back."""

    wait_s: float
    key: str = ""  # PAIR, ADDRESS or NAME when held back

    @property
    def allowed(self) -> bool:
        return self.wait_s <= 0

    @property
    def retry_after_s(self) -> int:
        """Whole seconds for a Retry-After header (at least 1)."""
        return max(1, math.ceil(self.wait_s))


def backoff_delay(failures: int, free: int, first_delay_s: float, cap_s: float) -> float:
    """Seconds to wait after `failures` wrong attempts: none while some of `free` are left, then
    `first_delay_s` doubled after every further failure, up to `cap_s` (central's throttle uses it too)."""
    if failures < free:
        return 0.0
    return min(cap_s, first_delay_s * 2.0 ** min(failures - free, 60))


def client_key(host: str | None) -> str:
    """The address a client is throttled by: IPv4 as is, IPv6 by its /64 (one host owns a whole /64)."""
    if not host:
        return "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def name_key(username: str) -> str:
    """User names are case-insensitive; so is their throttling."""
    return username.strip()[:64].lower()


class LoginThrottle:
    """Delays per address, name and pair; decides whether an attempt may check a password now."""

    def __init__(self, settings: AuthSettings | None = None, max_entries: int = MAX_ENTRIES):
        self.settings = settings or AuthSettings()
        self.max_entries = max_entries
        self._tables: dict[str, OrderedDict[str, _Entry]] = {PAIR: OrderedDict(), ADDRESS: OrderedDict(),
                                                              NAME: OrderedDict()}
        self._known: OrderedDict[str, float] = OrderedDict()  # "name|address" -> last successful login
        self._trusted: OrderedDict[str, float] = OrderedDict()  # address -> last successful login of anyone
        self._busy_until: OrderedDict[str, float] = OrderedDict()  # address -> told "busy, come back then"
        self.refused = 0  # attempts answered "wait" since start
        self.impatient = 0  # attempts that came back before the Retry-After of a "busy" answer

    # ------------------------------------------------------------ policy

    def _policy(self, kind: str) -> tuple[int, float]:
        s = self.settings
        if kind == PAIR:
            return s.free_failures, s.max_delay_s
        if kind == ADDRESS:
            return s.address_free_failures, s.max_delay_s
        return s.name_free_failures, s.name_max_delay_s

    def delay_after(self, kind: str, failures: int) -> float:
        """Seconds a key of `kind` waits after `failures` wrong passwords (0 while some are free)."""
        free, cap = self._policy(kind)
        return backoff_delay(failures, free, self.settings.first_delay_s, cap)

    def _keys(self, address: str, name: str) -> list[tuple[str, str]]:
        return [(PAIR, f"{name}|{address}"), (ADDRESS, address), (NAME, name)]

    def _entry(self, kind: str, key: str, now: float, create: bool) -> _Entry | None:
        table = self._tables[kind]
        entry = table.get(key)
        if entry is not None and entry.in_flight == 0 and now - entry.last_failure > self.settings.forget_after_s:
            del table[key]
            entry = None
        if entry is None and create:
            entry = table[key] = _Entry()
            self._evict(table)
        return entry

    def _evict(self, table: OrderedDict[str, _Entry]) -> None:
        while len(table) > self.max_entries:
            oldest = next(iter(table))
            if table[oldest].in_flight:
                table.move_to_end(oldest)  # never drop an attempt being checked
                if all(e.in_flight for e in table.values()):
                    return
                continue
            del table[oldest]

    def is_trusted(self, address: str, now: float) -> bool:
        """True when someone logged in from `address` within `known_address_s` (a kiosk terminal, say)."""
        at = self._trusted.get(address)
        return at is not None and now - at <= self.settings.known_address_s

    def is_known(self, address: str, name: str, now: float) -> bool:
        """True when `name` logged in from `address` within `known_address_s`."""
        at = self._known.get(f"{name}|{address}")
        return at is not None and now - at <= self.settings.known_address_s

    # ------------------------------------------------------------ attempts

    def told_busy(self, address: str, retry_after_s: float, now: float) -> None:
        """The address was answered "busy, come back in `retry_after_s`" (the password pool was full)."""
        self._busy_until[address] = now + 0.9 * retry_after_s  # a little slack for the client's clock
        self._busy_until.move_to_end(address)
        while len(self._busy_until) > self.max_entries:
            self._busy_until.popitem(last=False)

    def check(self, address: str, name: str, now: float) -> Verdict:
        """May (address, name) check a password now? Counts a refusal; changes nothing else, except
        that coming back before a "busy" answer's Retry-After counts as a failure of the address."""
        until = self._busy_until.get(address)
        if until is not None and now < until:
            entry = self._entry(ADDRESS, address, now, create=True)
            assert entry is not None
            entry.failures += 1
            entry.last_failure = now
            entry.blocked_until = max(entry.blocked_until, now + self.delay_after(ADDRESS, entry.failures))
            self.impatient += 1
            self.refused += 1
            return Verdict(max(until, entry.blocked_until) - now, ADDRESS)
        worst = Verdict(0.0)
        known = self.is_known(address, name, now)
        for kind, key in self._keys(address, name):
            if kind == NAME and known:
                continue
            entry = self._entry(kind, key, now, create=False)
            if entry is None:
                continue
            free, _ = self._policy(kind)
            wait = entry.blocked_until - now
            # Attempts being checked count against the free ones; past them, one at a time. A
            # person logs in once at a time: a pair gets one check at once, an address two.
            if entry.in_flight >= min(IN_FLIGHT.get(kind, free), max(1, free - entry.failures)):
                wait = max(wait, min(self.settings.first_delay_s, 1.0))
            if wait > worst.wait_s:
                worst = Verdict(wait, kind)
        if not worst.allowed:
            self.refused += 1
        return worst

    def begin(self, address: str, name: str, now: float) -> None:
        """An attempt that `check` allowed starts checking its password."""
        for kind, key in self._keys(address, name):
            entry = self._entry(kind, key, now, create=True)
            assert entry is not None
            entry.in_flight += 1
            self._tables[kind].move_to_end(key)

    def abandon(self, address: str, name: str, now: float) -> None:
        """An attempt that began was never checked (the password pool was full): it does not count."""
        for kind, key in self._keys(address, name):
            entry = self._tables[kind].get(key)
            if entry is not None:
                entry.in_flight = max(0, entry.in_flight - 1)
                if entry.failures == 0 and entry.in_flight == 0:
                    del self._tables[kind][key]

    def finish(self, address: str, name: str, ok: bool, now: float) -> None:
        """An attempt that began has its answer: a failure delays the keys, a success clears name and pair.

        One address adds at most `free_failures` to a name's count: past that its pair is being
        delayed already, and the name's own delay is for guessing spread over many addresses.
        """
        pair_failures = 0
        for kind, key in self._keys(address, name):
            table = self._tables[kind]
            entry = table.get(key)
            if entry is None:  # evicted meanwhile
                if ok:
                    continue
                entry = table[key] = _Entry(in_flight=1)
                self._evict(table)
            entry.in_flight = max(0, entry.in_flight - 1)
            if ok:
                if kind != ADDRESS:
                    entry.failures, entry.blocked_until = 0, 0.0
                if entry.in_flight == 0 and entry.failures == 0:
                    del table[key]
                continue
            if kind == NAME and pair_failures > self.settings.free_failures:
                continue
            entry.failures += 1
            entry.last_failure = now
            entry.blocked_until = max(entry.blocked_until, now + self.delay_after(kind, entry.failures))
            table.move_to_end(key)
            if kind == PAIR:
                pair_failures = entry.failures
        if ok:
            for table, key in ((self._known, f"{name}|{address}"), (self._trusted, address)):
                table[key] = now
                table.move_to_end(key)
                while len(table) > self.max_entries:
                    table.popitem(last=False)

    def unlock(self, name: str) -> int:
        """Clear a name's delays and those of every (address, name) pair; returns how many keys."""
        cleared = 0
        if self._tables[NAME].pop(name, None) is not None:
            cleared += 1
        pairs = self._tables[PAIR]
        for key in [k for k in pairs if k.partition("|")[0] == name]:
            del pairs[key]
            cleared += 1
        return cleared

    def failures(self, kind: str, key: str) -> int:
        """Wrong passwords counted against a key now (0 when forgotten)."""
        entry = self._tables[kind].get(key)
        return entry.failures if entry else 0

    def stats(self) -> dict[str, int]:
        """Sizes of the tables and how many attempts were told to wait."""
        return {**{f"{kind}_keys": len(table) for kind, table in self._tables.items()},
                "known_addresses": len(self._known), "refused": self.refused, "impatient": self.impatient}
