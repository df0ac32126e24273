"""The node's side of sync: outbox uploader, declaration feed puller, link state, one status view.

Runs on the node's asyncio loop with httpx.AsyncClient. The uploader sends the oldest outbox rows
(seq order) one batch at a time and deletes them only once central acknowledged their event ids;
on any failure it backs off (exponential, full jitter) and re-sends the same rows, which central
ignores if it already has them. The feed puller pulls at `feed_poll_s`, at once on an MQTT
`smartgate/<gate>/feed/notify`, and at once when the link comes back (so a revocation made while
the link was down reaches the cache within a second or two of the link returning).

Zero trust on the WAN: central is reached over HTTPS and its certificate checked against the site's
`central.ca_file`; every feed pull sends a fresh random nonce that central must sign into the
batch (a replayed batch is refused as `FEED_REPLAY`, counted in `status()["feed"]["replays"]`);
every upload carries the journal head signed with the node's own key (`<data_dir>/journal-head.key`),
so central can tell a truncated or rewritten journal. An upload central refuses (409/422: a gap, a
broken chain, a rewritten journal) is raised once as an alarm and retried with backoff; nothing is
dropped from the outbox. A 503 (central's database is restarting) is counted in
`status()["central_unavailable"]` and retried after at least its `Retry-After`.

A returning link is used within about a second: connections to central are opened with a connect
timeout of half `request_timeout_s` (at least 2 s, TLS included) and TCP keepalive (a peer that
vanished is noticed in seconds, not at the read timeout), and a request that has been waiting
longer than `stuck_after_s` is watched by probes (`GET /healthz` on a fresh connection every
`probe_every_s`): when a probe failed and a later one gets through, the link went away and came
back while the request waited, so it is stuck on a dead connection; it is abandoned (counted in
`status()["abandoned"]`) and sent again at once, where it would otherwise wait out
`request_timeout_s`. A slow central (probes answering all along) is never abandoned, nor is the
retry of an abandoned request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from devices.tasks import cancel_and_wait
from edge.cache import DeclarationCache
from edge.config import CentralConfig
from edge.journal import HEAD_KEY_FILE, Journal, load_or_create_head_key, signed_head
from edge.journal_guard import JournalGuard
from edge.records import JournalKind
from sync.feed import FeedRejected, apply_batch, check_batch, feed_position
from sync.keys import load_public_key, parse_public_key
from sync.link import Backoff, LinkState
from sync.outbox import Outbox
from sync.tokens import TokenError, read_token_file

log = logging.getLogger(__name__)


def resolve_public_key(value: str, base: Path | None = None):
    """Central's public key from a file path (PEM or base64) or inline base64."""
    path = Path(value)
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.exists():
        return load_public_key(path)
    return parse_public_key(value)


def central_keys(config: CentralConfig, base: Path | None = None) -> list:
    """Central's public key(s) the feed must verify with: `public_key`, and `next_public_key` during a rotation."""
    keys = [resolve_public_key(config.public_key, base)]
    if config.next_public_key is not None:
        keys.append(resolve_public_key(config.next_public_key, base))
    return keys


def tls_verify(config: CentralConfig, base: Path | None = None) -> ssl.SSLContext | bool:
    """What httpx verifies central's certificate with: the site's CA file, else the system's CAs."""
    path = config.ca_path(base or Path.cwd())
    if path is None:
        return True
    return ssl.create_default_context(cafile=str(path))


CONNECT_TIMEOUT_S = 2.0  # the shortest budget to open a connection to central (TCP and TLS handshake)


def keepalive_options() -> list[tuple[int, int, int]]:
    """TCP keepalive for connections to central: probe after 2 s idle, every 1 s, give up after 3 misses."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", 2), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):  # Linux; other systems keep their defaults
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


def http_timeout(request_timeout_s: float) -> httpx.Timeout:
    """Half `request_timeout_s` (at least 2 s) to connect, TLS included; `request_timeout_s` to read an answer.

    The connect budget stays a share of the request timeout: a site on a slow, high-latency link
    raises `request_timeout_s`, and its TLS handshake takes several round trips.
    """
    connect = min(request_timeout_s, max(CONNECT_TIMEOUT_S, request_timeout_s / 2))
    return httpx.Timeout(request_timeout_s, connect=connect)


class LinkReturned(Exception):
    """A request was abandoned: it waited on a connection from before the link went away and came back."""


def fetch_anchor(gate: str, config: CentralConfig, base: Path | None = None) -> dict[str, Any]:
    """Central's copy of this gate's journal head and last event (`GET /api/v1/gates/{gate}/anchor`)."""
    token = resolve_token(config, base)
    with httpx.Client(base_url=config.url.rstrip("/"), verify=tls_verify(config, base),
                      headers={"Authorization": f"Bearer {token}"},
                      timeout=http_timeout(config.request_timeout_s)) as client:
        response = client.get(f"/api/v1/gates/{gate}/anchor")
        response.raise_for_status()
        return response.json()


def resolve_token(config: CentralConfig, base: Path | None = None) -> str:
    """The gate's token: inline, or read from `token_file` (relative to `base`, the site file's folder)."""
    if config.token is not None:
        return config.token
    path = config.token_path(base or Path.cwd())
    if path is None:
        raise TokenError("central.token or central.token_file is required: central refuses gates without a token")
    return read_token_file(path)


class SyncService:
    stuck_after_s = 1.0  # a request waiting longer than this is watched by link probes
    probe_every_s = 0.25  # probe pace while a request is stuck
    probe_timeout_s = 1.0  # one probe's whole budget

    def __init__(self, gate: str, config: CentralConfig, journal: Journal, cache: DeclarationCache, *,
                 public_key=None, bus=None, alarm: Callable[[str, str], None] | None = None,
                 config_dir: Path | None = None, head_key=None,
                 on_declarations_changed: Callable[[], None] | None = None, guard: JournalGuard | None = None):
        """`guard`: the node's journal guard, through which sync alarms are journaled (as the lanes' rows are),
        so an alarm raised while the journal cannot write is held and written when it can."""
        self.gate, self.config, self.journal, self.cache, self.bus = gate, config, journal, cache, bus
        self.guard = guard
        self._alarm_tasks: set[asyncio.Task] = set()
        self.on_declarations_changed = on_declarations_changed  # a feed batch changed the cache (the event loop)
        self.public_key = public_key or central_keys(config, config_dir)
        self._token = resolve_token(config, config_dir)
        self._verify = tls_verify(config, config_dir)
        if head_key is None and not (journal.path.parent / HEAD_KEY_FILE).exists():
            log.warning("no journal-head key in %s: making one; central refuses this node's uploads until it is "
                        "enrolled (smartgate central node-key, then smartgate central enrol-gate on central)",
                        journal.path.parent)
        self._head_key = head_key or load_or_create_head_key(journal.path.parent)
        self.auth_refused = False  # central answered 401/403 to the last request (wrong or revoked token)
        self.upload_refused: str | None = None  # central's code for the last refused upload (409/422)
        self.feed_replays = 0  # batches refused as FEED_REPLAY (not the nonce this node sent)
        self._alarm = alarm or self._journal_alarm
        self.outbox = Outbox(journal, max_rows=config.outbox_max_rows, max_bytes=config.outbox_max_bytes,
                             on_alarm=self._alarm)
        self.link = LinkState(config.down_after_s, config.slow_s)
        self.feed_rejected = 0
        self.feed_applied_batches = 0
        self.feed_last_error: str | None = None
        self.uploaded = 0
        self.upload_errors = 0  # failed upload attempts since start
        self.outbox_error: str | None = None  # the outbox cannot be written (a full disk): said once in the log
        self.central_unavailable = 0  # 503 answers (central's database away) since start
        self.abandoned = 0  # requests abandoned because the link came back while they waited
        self._wake_upload = asyncio.Event()
        self._wake_feed = asyncio.Event()
        self._link_back = asyncio.Event()  # ends an upload backoff early: a request got through again
        self._tasks: list[asyncio.Task] = []
        self._client: httpx.AsyncClient | None = None
        self.link.on_change(self._on_link_change)
        self._loop: asyncio.AbstractEventLoop | None = None
        journal.add_listener(self._on_append)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        headers = {"Authorization": f"Bearer {self._token}"}
        base = self.config.url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=base, headers=headers, timeout=http_timeout(self.config.request_timeout_s),
            transport=httpx.AsyncHTTPTransport(verify=self._verify, socket_options=keepalive_options()))
        # Probes: a fresh connection each time (no keep-alive), so a probe never waits on a dead one.
        self._probe_client = httpx.AsyncClient(
            base_url=base, timeout=httpx.Timeout(self.probe_timeout_s),
            transport=httpx.AsyncHTTPTransport(verify=self._verify, socket_options=keepalive_options(),
                                               limits=httpx.Limits(max_keepalive_connections=0)))
        if self.bus is not None:
            self.bus.subscribe(f"smartgate/{self.gate}/feed/notify", lambda _t, _p: self.pull_now())
        self._tasks = [asyncio.create_task(self._upload_loop(), name="sync-upload"),
                       asyncio.create_task(self._feed_loop(), name="sync-feed")]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        if self._alarm_tasks:  # written (or held by the guard) before the outbox stops queueing rows
            await asyncio.gather(*self._alarm_tasks, return_exceptions=True)
        self.journal.remove_listener(self._on_append)
        if self._client is not None:
            await self._client.aclose()
            await self._probe_client.aclose()
        self.outbox.close()

    def _on_append(self, _entry) -> None:
        """Journal listener: wake the uploader."""
        self._set(self._wake_upload)

    def _set(self, event: asyncio.Event) -> None:
        """Set an event of the loop from any thread (journal appends and status reads may come from workers)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def pull_now(self) -> None:
        self._wake_feed.set()

    def _on_link_change(self, old: str, new: str) -> None:
        log.warning("link to central: %s -> %s", old, new)
        if new == "up" or (new == "degraded" and old == "down"):
            # Something got through (a feed pull, usually): an uploader backing off retries now
            # rather than at the end of its backoff, and the feed pulls what it missed.
            self._set(self._link_back)
            self._set(self._wake_upload)
            if old == "down":
                self._set(self._wake_feed)

    def _journal_alarm(self, code: str, text: str) -> None:
        """Journal a sync alarm: through the guard when there is one (never raises, never blocks the loop).

        Called on the loop and from journal listeners on other threads (the outbox's OUTBOX_FULL), so
        the guarded append is handed to the loop; without a guard (tools, tests) it is written at once.
        """
        payload = {"code": code, "text": text}
        if self.guard is None:
            try:
                self.journal.append(JournalKind.ALARM.value, payload)
            except Exception:
                log.exception("could not journal alarm %s", code)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = running or self._loop
        if loop is None or loop.is_closed():
            log.error("sync alarm %s not journaled (the node's loop is not running): %s", code, text)
            return
        if running is loop:
            self._guarded_alarm(payload)
        else:
            loop.call_soon_threadsafe(self._guarded_alarm, payload)

    def _guarded_alarm(self, payload: dict[str, Any]) -> None:
        """On the loop: start the guarded append, keep it until done (stop() waits for it)."""
        assert self.guard is not None
        task = asyncio.ensure_future(self._append_alarm(self.guard, payload))
        self._alarm_tasks.add(task)
        task.add_done_callback(self._alarm_tasks.discard)

    @staticmethod
    async def _append_alarm(guard: JournalGuard, payload: dict[str, Any]) -> None:
        try:
            if await guard.append(JournalKind.ALARM.value, payload) is None:
                log.warning("sync alarm %s held in memory until the journal writes again", payload["code"])
        except Exception:
            log.exception("could not journal alarm %s", payload["code"])

    def _check(self, response: httpx.Response) -> None:
        """Raise for an error answer; a 401/403 (central refuses this gate's token) is alarmed once."""
        if response.status_code in (401, 403) and _code(response) in ("UNAUTHORIZED", "FORBIDDEN"):
            if not self.auth_refused:
                self.auth_refused = True
                text = (f"central refuses gate {self.gate}'s token (HTTP {response.status_code}): nothing is "
                        "uploaded or pulled until the site's central.token / central.token_file holds the token "
                        "central issued")
                log.error("%s", text)
                self._alarm("CENTRAL_AUTH_REFUSED", text)
        elif response.is_success:
            self.auth_refused = False
        response.raise_for_status()

    # ------------------------------------------------------------ upload

    async def upload_once(self, *, watch: bool = True) -> int:
        """Send one batch; return how many rows central acknowledged (0 when the outbox is empty).

        `watch`: abandon the request (LinkReturned) if probes see the link go and come back meanwhile.
        """
        assert self._client is not None
        if self.outbox.overflow_from is not None:
            await asyncio.to_thread(self.outbox.backfill)
        rows = await asyncio.to_thread(self.outbox.peek, self.config.upload_batch)
        if not rows:
            return 0
        started = time.monotonic()
        head = await asyncio.to_thread(signed_head, self.journal, self._head_key, self.gate)  # after the peek
        response = await self._watched(self._client.post(
            f"/api/v1/gates/{self.gate}/events", json={"events": rows, "backlog": self.outbox.backlog(), **head}),
            watch)
        if response.status_code in (403, 409, 422) and _code(response) not in ("UNAUTHORIZED", "FORBIDDEN"):
            self._upload_refused(response)
        self._check(response)
        self.upload_refused = None
        acked = response.json().get("acked", [])
        self.link.record_ok(time.monotonic() - started)
        sent = {row["event_id"] for row in rows}
        deleted = await asyncio.to_thread(self.outbox.ack, [e for e in acked if e in sent])
        self.uploaded += deleted
        return deleted

    def _upload_refused(self, response: httpx.Response) -> None:
        """Central refused the batch itself (a gap, a broken chain, a rewritten journal): alarm once per code."""
        code = _code(response) or f"HTTP_{response.status_code}"
        if code != self.upload_refused:
            self.upload_refused = code
            text = f"central refused an event upload: {code} (HTTP {response.status_code}); events stay queued"
            log.error("%s", text)
            self._alarm("CENTRAL_UPLOAD_REFUSED", f"{text}: {_message(response)}")

    async def _watched(self, request, watch: bool = True) -> httpx.Response:
        """Await one request to central; abandon it (LinkReturned) when probes show the link went and came back."""
        if not watch:
            return await request
        task = asyncio.ensure_future(request)
        watcher = asyncio.create_task(self._watch_link())
        try:
            done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            task.cancel()  # httpx closes the stuck connection
            await asyncio.gather(task, return_exceptions=True)
            self.abandoned += 1
            log.warning("abandoned a request to central stuck on a connection from before the link came back")
            raise LinkReturned("the link came back while the request waited on a dead connection")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _watch_link(self) -> None:
        """Return once a probe fails and a later one gets through (the link came back); never while all answer.

        A probe starts every `probe_every_s`, each on a fresh connection with `probe_timeout_s`, without
        waiting for the one before (in a black hole each would hang for its whole budget), so a link
        that returns is seen within about `probe_every_s`.
        """
        await asyncio.sleep(self.stuck_after_s)
        failed, back = False, asyncio.Event()

        async def probe() -> None:
            nonlocal failed
            started = time.monotonic()
            try:
                await self._probe_client.get("/healthz")  # any answer, even 503, means the link carries
            except (httpx.HTTPError, OSError) as exc:
                # Not a link error by itself: on a high-latency link a probe may outlast its budget while
                # the watched request is progressing (that request records its own outcome).
                failed = True
                log.debug("link probe failed: %s: %s", type(exc).__name__, exc)
                return
            self.link.record_ok(time.monotonic() - started)
            if failed:
                back.set()

        probes: set[asyncio.Task] = set()
        try:
            while not back.is_set():
                task = asyncio.create_task(probe())
                probes.add(task)
                task.add_done_callback(probes.discard)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.probe_every_s):
                        await back.wait()
        finally:
            for task in list(probes):
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)

    def _retry_after(self, exc: Exception) -> float:
        """Seconds central's 503 asks to wait (Retry-After), capped at backoff_max_s; 0 for any other failure."""
        if not isinstance(exc, httpx.HTTPStatusError) or exc.response.status_code != 503:
            return 0.0
        try:
            return min(float(exc.response.headers.get("Retry-After", "1")), self.config.backoff_max_s)
        except ValueError:
            return 1.0

    async def _upload_loop(self) -> None:
        backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
        watch = True
        while True:
            try:
                sent = await self.upload_once(watch=watch)
            except LinkReturned:
                backoff.reset()
                # The link is back: send again at once, on a fresh connection. That retry is not
                # abandoned in turn (a jittery slow link must not abandon a large batch forever).
                watch = False
                continue
            except (httpx.HTTPError, OSError, ValueError) as exc:
                watch = True
                self.upload_errors += 1
                wait = self._retry_after(exc)
                if wait:
                    self.central_unavailable += 1
                    self.link.record_error(f"upload: central unavailable (HTTP 503, {_code(exc.response)})")
                    # Central answered: its database is away. Wait at least what it asks; a returning
                    # link does not end this wait (the link was never the problem).
                    await asyncio.sleep(max(wait, backoff.next_delay()))
                    continue
                self.link.record_error(f"upload: {type(exc).__name__}: {exc}")
                # New journal rows do not end the backoff (that would hammer a dead link at the
                # lanes' pace); the link coming back does.
                self._link_back.clear()
                await self._sleep(self._link_back, backoff.next_delay())
                continue
            except sqlite3.Error as exc:
                # The outbox file cannot be written (the disk is full): the link is fine and central may
                # hold the batch already (it keeps each event once); try again after a pause, never give up.
                self.upload_errors += 1
                if self.outbox_error is None:
                    log.warning("outbox: %s; uploads go on, acknowledged rows stay queued until it can be written",
                                exc)
                self.outbox_error = str(exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            if self.outbox_error is not None:
                log.warning("outbox: written again")
                self.outbox_error = None
            backoff.reset()
            watch = True
            if sent == 0:
                await self._sleep(self._wake_upload, self.config.feed_poll_s)

    # ------------------------------------------------------------ feed

    async def pull_once(self, *, watch: bool = True) -> int:
        """Pull and apply batches until central has nothing newer; return batches applied (`watch`: see upload_once)."""
        assert self._client is not None
        applied = 0
        while True:
            cursor, last_issued = await asyncio.to_thread(feed_position, self.cache)
            nonce = secrets.token_urlsafe(24)  # fresh for this request only: central signs it into the batch
            started = time.monotonic()
            response = await self._watched(self._client.get(
                f"/api/v1/gates/{self.gate}/feed",
                params={"cursor": cursor, "limit": self.config.feed_batch, "nonce": nonce}), watch)
            self._check(response)
            self.link.record_ok(time.monotonic() - started)
            message = response.json()
            if not await self.accept(message, cursor, last_issued, nonce=nonce):
                return applied
            applied += 1
            batch = message["batch"]
            if batch["cursor_to"] == batch["cursor_from"]:
                return applied

    async def accept(self, message: Any, cursor: int | None = None, last_issued: float | None = None, *,
                     nonce: str | None = None) -> bool:
        """Check and apply one feed answer to the pull that sent `nonce`; on refusal log, count, alarm, return False.

        A message with no pull of ours behind it (`nonce` None) is refused as FEED_REPLAY.
        """
        if cursor is None or last_issued is None:
            cursor, last_issued = await asyncio.to_thread(feed_position, self.cache)
        try:
            batch = check_batch(message, self.gate, self.public_key, cursor, last_issued, nonce=nonce)
            changes = await asyncio.to_thread(apply_batch, self.cache, batch, self.gate)
        except FeedRejected as exc:
            self.feed_rejected += 1
            if exc.code == "FEED_REPLAY":
                self.feed_replays += 1
            self.feed_last_error = f"{exc.code}: {exc}"
            log.error("declaration feed batch refused: %s: %s", exc.code, exc)
            self._alarm(exc.code, f"declaration feed batch refused: {exc}")
            return False
        self.feed_applied_batches += 1
        if changes and self.on_declarations_changed is not None:
            self.on_declarations_changed()  # trucks held at the lanes may be decided again on what changed
        return True

    async def _feed_loop(self) -> None:
        # The feed retries at least every 2 s, so a revocation arrives soon after the link returns.
        backoff = Backoff(min(self.config.backoff_initial_s, 2.0), min(self.config.backoff_max_s, 2.0))
        watch = True
        while True:
            try:
                await self.pull_once(watch=watch)
            except LinkReturned:
                backoff.reset()
                watch = False
                continue
            except (httpx.HTTPError, OSError, ValueError) as exc:
                watch = True
                self.link.record_error(f"feed: {type(exc).__name__}: {exc}")
                await self._sleep(self._wake_feed, max(self._retry_after(exc), backoff.next_delay()))
                continue
            except sqlite3.Error as exc:  # the cache cannot be written (a full disk): the batch is pulled again
                if self.feed_last_error != f"cache: {exc}":
                    log.warning("feed: the declaration cache cannot be written (%s); pulled again later", exc)
                self.feed_last_error = f"cache: {exc}"
                await self._sleep(self._wake_feed, backoff.next_delay())
                continue
            backoff.reset()
            watch = True
            await self._sleep(self._wake_feed, self.config.feed_poll_s)

    @staticmethod
    async def _sleep(event: asyncio.Event, seconds: float) -> None:
        """Sleep `seconds`, or less when `event` is set meanwhile; clear it after.

        asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as the
        event is set, and the loop then never stops (seen as a hung SyncService.stop)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
        event.clear()

    # ------------------------------------------------------------ view

    def status(self) -> dict[str, Any]:
        """What the kiosk's status strip and telemetry show (see edge/kiosk/views.py sync_status)."""
        cursor, issued = feed_position(self.cache)
        outbox = self.outbox.status()
        return {
            "link": self.link.to_dict(),
            "outbox_backlog": outbox["backlog"],
            "outbox": outbox,
            "feed": {"cursor": cursor, "issued_at": issued or None, "applied_batches": self.feed_applied_batches,
                     "rejected": self.feed_rejected, "replays": self.feed_replays, "last_error": self.feed_last_error},
            "uploaded": self.uploaded,
            "upload_errors": self.upload_errors,
            "central_unavailable": self.central_unavailable,
            "abandoned": self.abandoned,
            "upload_refused": self.upload_refused,
            "auth_refused": self.auth_refused,
            "warning": outbox["warning"],
        }


def _code(response: httpx.Response) -> str | None:
    """The machine-readable code of central's error answer (`{"detail": {"code"}}`), if any."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return None
    return detail.get("code") if isinstance(detail, dict) else None


def _message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return ""
    return str(detail.get("message", ""))[:300] if isinstance(detail, dict) else ""
