"""Who is asking: session cookies for officers' browsers, Bearer tokens for machines; CSRF; roles.

A browser session is a random token in an HttpOnly, SameSite=Strict cookie; every state-changing
request made with that cookie must carry the session's CSRF token in the X-CSRF-Token header
(a form posted from another site cannot set a header). Login itself is guarded the same way by a
token the login page hands out (double submit: cookie and header must match). Requests with
`Authorization: Bearer <token>` need no CSRF token: a browser never adds that header by itself.

Log-ins go through a LoginGuard: the throttle (edge/login_throttle.py) answers a delayed address
or name at once, and passwords are checked in a small thread pool of its own with a bounded
number waiting, so a flood of log-ins is refused quickly instead of queueing scrypt work, and the
event loop that runs the lanes never waits for a hash.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from edge.login_throttle import LoginThrottle, client_key, name_key
from edge.users import AuthSettings, LoginResult, Role, Session, User, UserStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "sg_session"
LOGIN_CSRF_COOKIE = "sg_login_csrf"
LANG_COOKIE = "sg_lang"
CSRF_HEADER = "x-csrf-token"
# Requests the page makes by itself (status refresh, history reload) say so, and do not count as
# the officer's activity: an unattended board logs out after the idle time.
BACKGROUND_HEADER = "x-sg-background"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def problem(status: int, code: str, message: str, headers: dict[str, str] | None = None,
            **extra: Any) -> HTTPException:
    """An HTTP error whose detail carries a machine-readable code (the page translates it)."""
    return HTTPException(status, {"code": code, "message": message, **extra}, headers=headers)


@dataclass(frozen=True)
class Principal:
    """The user a request acts for, and how they proved it."""

    user: User
    via: str  # "session" or "token"
    session: Session | None = None

    def require(self, role: Role) -> None:
        if not self.user.role.at_least(role):
            article = "an" if role.value[0] in "aeiou" else "a"
            raise problem(403, f"{role.value}_required", f"only {article} {role.value} may do this")


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Authenticator:
    """FastAPI dependency: the request's Principal, or 401; CSRF for cookie-authenticated writes."""

    def __init__(self, store: UserStore):
        self.store = store
        self._flushing = False
        self._flush_task: asyncio.Future | None = None

    def _flush_later(self) -> None:
        """Write session activity back in a worker thread: a request never waits for the disk."""
        if self._flushing or not self.store.flush_due():
            return
        self._flushing = True

        def flush() -> None:
            try:
                self.store.flush_activity()
            finally:
                self._flushing = False

        self._flush_task = asyncio.get_running_loop().run_in_executor(None, flush)

    def principal_or_none(self, request: Request, touch: bool = False) -> Principal | None:
        token = bearer_token(request)
        if token is not None:
            user = self.store.token_user(token)
            return Principal(user, "token") if user else None
        session = self.store.session(request.cookies.get(SESSION_COOKIE), touch=touch)
        return Principal(session.user, "session", session) if session else None

    async def __call__(self, request: Request) -> Principal:
        background = request.headers.get(BACKGROUND_HEADER) == "1" or request.url.path == "/api/events"
        principal = self.principal_or_none(request, touch=not background)
        self._flush_later()
        if principal is None:
            raise problem(401, "login_required", "log in first (or send an API token)")
        if principal.via == "session" and request.method not in SAFE_METHODS:
            assert principal.session is not None
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), principal.session.csrf.encode()):
                raise problem(403, "csrf", "missing or wrong CSRF token")
        return principal


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def login_csrf_ok(request: Request) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


# ---------------------------------------------------------------- log-in


IDLE_WORKER_S = 30.0  # a password thread with nothing to do for this long ends


class PoolFull(Exception):
    """Too many password checks are waiting already."""


class HashPool:
    """A few threads for password checks, with a bounded number waiting: a flood is refused, not queued.

    scrypt releases the GIL, so a check in a worker thread costs the event loop nothing but the
    hand-over; the bound keeps a flood from piling up memory (16 MiB per running hash) and
    seconds of queue in front of an officer's own log-in. Checks from addresses someone logged
    in from before (the kiosk terminals) have `reserve` places of their own and go first, so a
    flood from many new addresses neither keeps the officers out nor makes them wait behind it.
    """

    def __init__(self, threads: int = 1, queue: int = 16, reserve: int = 0):
        self.threads = max(1, threads)
        self.limit = self.threads + max(0, queue)
        self.reserve = max(0, reserve)
        self._waiting: tuple[collections.deque, collections.deque] = (collections.deque(), collections.deque())
        self._ready = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self.pending = 0
        self.peak = 0
        self.refused = 0
        self.checked = 0

    def submit(self, fn: Callable[..., Any], *args: Any, priority: bool = False) -> concurrent.futures.Future:
        """Run fn(*args) in the pool; PoolFull at once when `limit` checks are running or waiting
        (`limit + reserve` for a priority check, which also goes before every other waiting one)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._ready:
            if self._closed or self.pending >= self.limit + (self.reserve if priority else 0):
                self.refused += 1
                raise PoolFull
            self.pending += 1
            self.peak = max(self.peak, self.pending)
            self._waiting[0 if priority else 1].append((future, fn, args))
            if len(self._workers) < self.threads:
                worker = threading.Thread(target=self._work, name=f"kiosk-hash-{len(self._workers)}", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._closed and not (self._waiting[0] or self._waiting[1]):
                    if not self._ready.wait(IDLE_WORKER_S) and not (self._waiting[0] or self._waiting[1]):
                        self._workers.remove(threading.current_thread())  # started again when needed
                        return
                if self._closed:
                    return
                future, fn, args = (self._waiting[0] or self._waiting[1]).popleft()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # handed to the waiting request
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            with self._ready:
                self.pending -= 1
                self.checked += 1

    def close(self) -> None:
        """Stop the workers; checks still waiting are cancelled."""
        with self._ready:
            self._closed = True
            for waiting in self._waiting:
                while waiting:
                    waiting.popleft()[0].cancel()
                    self.pending -= 1
            self._ready.notify_all()


@dataclass(frozen=True)
class LoginAttempt:
    """What a log-in attempt came to: the result, the user on success, the seconds to wait otherwise."""

    result: LoginResult
    user: User | None = None
    retry_after_s: int = 0
    held_by: str = ""  # for THROTTLED: "pair", "address" or "name"


class LoginGuard:
    """Throttle, then check the password in the bounded pool; the throttle learns every answer.

    Runs on the event loop; only the password check itself leaves it. `smartgate users unlock`
    (another process) writes to the user store; the guard reads those requests at most four times
    a second, and only while some attempt is being held back.
    """

    def __init__(self, store: UserStore, settings: AuthSettings | None = None,
                 clock: Callable[[], float] = time.monotonic):
        settings = settings or store.settings
        self.store = store
        self.throttle = LoginThrottle(settings)
        self.pool = HashPool(settings.hash_threads, settings.hash_queue, settings.hash_reserve)
        self.clock = clock
        self._unlocks_seen = store.clock()
        self._unlocks_read_at = -1e18

    def _read_unlocks(self) -> None:
        now = self.clock()
        if now - self._unlocks_read_at < 0.25:
            return
        self._unlocks_read_at = now
        try:
            for name, at in self.store.unlocks_since(self._unlocks_seen):
                self.throttle.unlock(name_key(name))
                self._unlocks_seen = max(self._unlocks_seen, at)
        except Exception:  # an unreadable file must not stop log-ins
            log.exception("could not read unlock requests")

    async def attempt(self, username: str, password: str, host: str | None) -> LoginAttempt:
        """One log-in attempt from `host`: OK with the user, BAD, THROTTLED or BUSY with seconds to wait."""
        address, name = client_key(host), name_key(username)
        verdict = self.throttle.check(address, name, self.clock())
        if not verdict.allowed:
            self._read_unlocks()
            verdict = self.throttle.check(address, name, self.clock())
            if not verdict.allowed:
                return LoginAttempt(LoginResult.THROTTLED, retry_after_s=verdict.retry_after_s, held_by=verdict.key)
        self.throttle.begin(address, name, self.clock())
        trusted = self.throttle.is_trusted(address, self.clock())
        try:
            future = self.pool.submit(self.store.authenticate, username, password, priority=trusted)
        except PoolFull:
            self.throttle.abandon(address, name, self.clock())
            self.throttle.told_busy(address, 1, self.clock())
            return LoginAttempt(LoginResult.BUSY, retry_after_s=1)
        loop = asyncio.get_running_loop()

        def learn(done: concurrent.futures.Future) -> None:
            ok = not done.cancelled() and done.exception() is None and done.result()[0] == LoginResult.OK
            with contextlib.suppress(RuntimeError):  # the loop has closed: the node is stopping
                loop.call_soon_threadsafe(self.throttle.finish, address, name, ok, self.clock())

        # Added before wrap_future's own callback, so the throttle learns the answer before the
        # request goes on, and even when the request is cancelled (client gone) meanwhile.
        future.add_done_callback(learn)
        result, user = await asyncio.wrap_future(future)
        return LoginAttempt(result, user)

    def stats(self) -> dict[str, Any]:
        """Throttle table sizes and refusals; pool pending, peak, refused and checked."""
        return {**self.throttle.stats(), "hash_pending": self.pool.pending, "hash_peak": self.pool.peak,
                "hash_refused": self.pool.refused, "hash_checked": self.pool.checked}
