"""The lanes' way into the journal when the journal may fail: a bounded in-memory buffer, a space reserve, a retry loop.

Theory of operation. `JournalGuard.append` is `Journal.append_async` for the lanes, with one difference:
when the journal cannot write (SQLITE_FULL, an I/O error, a lock held past the busy timeout, or a
write that takes longer than `write_timeout_s`) the row is not lost and the caller is not stuck. The
guard goes DEGRADED, keeps the row in memory and returns None instead of the committed entry; from
then on every row is held in memory, in the order the appends came, until the journal writes
again. The lanes treat DEGRADED as a fault of the lane (edge/app.py feeds them a `DeviceFailed` for
the pseudo-device `journal`): no release, automatic or by an officer, but events are still handled
in memory, so a boom open for a released truck closes as soon as the safety loop clears.

The buffer holds at most `buffer_rows` rows. A row that comes when it is full is dropped and
counted (per kind, first and last time); the count is written as a JOURNAL_ROWS_DROPPED alarm row
in the place where the rows went missing, and logged once when the first one is dropped.

The space reserve is a file of `reserve_bytes` (`<data_dir>/journal-reserve.bin`) allocated at
start. When the disk fills, the guard deletes it and uses the space so freed for one write: the
rows held so far and a JOURNAL_FAILED alarm, so the journal records the fault itself (and the
outbox sends the alarm to central when the link allows). It then holds rows in memory until it can
allocate the reserve again, which is how it knows that space came back. The retry loop (every
`retry_s`) waits for writes still in flight, re-allocates the reserve, writes the held rows in
order (the hash chain links them like any other rows: seq and hash are given at write time) and a
JOURNAL_RECOVERED alarm, and only then says the journal is back, so a lane never acts on a release
whose rows are not on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.tasks import cancel_and_wait
from edge.journal import AppendItem, Journal, JournalEntry, check_item
from edge.records import AlarmCode, JournalKind

log = logging.getLogger(__name__)

RESERVE_FILE = "journal-reserve.bin"
FLUSH_CHUNK = 500  # rows per transaction when the held rows are written back

StateListener = Callable[[bool, "str | None"], None]


@dataclass
class _Held:
    """One row kept in memory (or, with `dropped`, the place where rows were dropped and how many)."""

    item: AppendItem
    inflight: asyncio.Future | None = None  # the append that ran past write_timeout_s: it may still commit
    dropped: Counter | None = None
    dropped_first: float = 0.0
    dropped_last: float = 0.0
    sealed: bool = False  # being written: later drops need a marker of their own
    recovery: bool = False  # the JOURNAL_RECOVERED row: taken back out if writing back fails


@dataclass
class GuardStatus:
    """What the kiosk, /healthz and telemetry show of the journal."""

    ok: bool
    reason: str | None
    since: float | None
    held_rows: int
    dropped_rows: int
    buffer_rows: int
    reserve_bytes: int
    reserve_present: bool
    written_back: int = 0
    faults: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"ok": self.ok, "reason": self.reason, "since": self.since, "held_rows": self.held_rows,
                "dropped_rows": self.dropped_rows, "buffer_rows": self.buffer_rows,
                "reserve_bytes": self.reserve_bytes, "reserve_present": self.reserve_present,
                "written_back": self.written_back, "faults": self.faults}


def storage_failure(exc: BaseException) -> bool:
    """True for an error of the disk or the database file (the journal cannot write), not of the caller."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return True
    return type(exc) is sqlite3.DatabaseError  # SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL surface as these


def disk_full(exc: BaseException) -> bool:
    """True when the error says the disk is full (SQLITE_FULL, ENOSPC)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    return "disk is full" in str(exc)


def describe(exc: BaseException) -> str:
    """The reason in words, for the log, /healthz and the kiosk."""
    if disk_full(exc):
        return f"disk full: the journal cannot write ({exc})"
    return f"the journal cannot write: {exc}"


class JournalGuard:
    """The journal as the lanes use it: appends that degrade to memory instead of failing."""

    def __init__(self, journal: Journal, reserve_path: Path | None, *, reserve_bytes: int = 8 << 20,
                 buffer_rows: int = 10_000, write_timeout_s: float = 2.0, retry_s: float = 1.0,
                 clock: Callable[[], float] = time.time):
        self.journal = journal
        self.reserve_path = reserve_path if reserve_bytes > 0 else None
        self.reserve_bytes = reserve_bytes if reserve_path is not None else 0
        self.buffer_rows = buffer_rows
        self.write_timeout_s = write_timeout_s
        self.retry_s = retry_s
        self.clock = clock
        self.listeners: list[StateListener] = []
        self._ok = True
        self.reason: str | None = None
        self.since: float | None = None
        self._held: list[_Held] = []
        self._held_rows = 0
        self.dropped = 0
        self.written_back = 0
        self.faults = 0
        self._base_written = self._base_dropped = 0  # the counters when the journal failed last
        self._fault_unrecorded = False  # the reserve was freed for the fault's rows: write them once
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._flushing = False

    # ------------------------------------------------------------ state

    @property
    def ok(self) -> bool:
        """True while rows go straight to the journal."""
        return self._ok

    def status(self) -> GuardStatus:
        """The guard's state, for /healthz, the kiosk and telemetry."""
        return GuardStatus(self._ok, self.reason, self.since, self._held_rows, self.dropped, self.buffer_rows,
                           self.reserve_bytes, self._reserve_present(), self.written_back, self.faults)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Allocate the reserve (degraded at once when there is no room for it) and start the retry loop."""
        if self.reserve_path is not None and not self._reserve_present():
            try:
                self._make_reserve()
            except OSError as exc:
                log.error("journal: cannot allocate the %s space reserve %s: %s", self._mib(), self.reserve_path, exc)
                self._fail(f"no room for the journal's {self._mib()} space reserve ({exc.strerror or exc})",
                           full=False)
        self._task = asyncio.create_task(self._retry_forever(), name="journal-guard")

    async def stop(self) -> None:
        """Stop the retry loop after one last try to write what is held; log what could not be written."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        pending = {h.inflight for h in self._held if h.inflight is not None and not h.inflight.done()}
        if pending:  # writes that may still commit: wait a little, never write their rows twice
            await asyncio.wait(pending, timeout=self.write_timeout_s)
        if self._held and not any(h.inflight is not None and not h.inflight.done() for h in self._held):
            self._settle_inflight()
            with contextlib.suppress(Exception):
                await self._flush()
        if self._held_rows:
            log.error("journal: %d rows held in memory could not be written before the stop; they are lost",
                      self._held_rows)

    # ------------------------------------------------------------ appending

    async def append(self, kind: str, payload: dict[str, Any], *, lane: str | None = None,
                     at: float | None = None) -> JournalEntry | None:
        """Append a row: the committed entry, or None when the row is held in memory (the journal is down).

        A None means the row is NOT on disk yet: never act on it as on a persisted row (no barrier
        open). Errors in the row itself (not JSON, no kind) are raised as by `Journal.append`.
        """
        item: AppendItem = (kind, payload, lane, self.clock() if at is None else float(at))
        check_item(item)
        if not self._ok or self._held:
            self._hold(_Held(item))
            return None
        future = asyncio.ensure_future(self.journal.append_many_async([item]))
        try:
            entries = await asyncio.wait_for(asyncio.shield(future), self.write_timeout_s)
        except TimeoutError:
            self._hold(_Held(item, inflight=future))
            self._fail(f"a journal write took longer than {self.write_timeout_s:g} s (disk or lock hanging)",
                       full=False)
            return None
        except Exception as exc:
            if not storage_failure(exc):
                raise
            self._hold(_Held(item))
            self._fail(describe(exc), full=disk_full(exc))
            return None
        return entries[0]

    def _hold(self, held: _Held) -> None:
        if self._held_rows < self.buffer_rows:
            self._held.append(held)
            self._held_rows += 1
            return
        kind, _payload, _lane, at = held.item
        last = self._held[-1] if self._held else None
        marker = last if last is not None and last.dropped is not None and not last.sealed else None
        if marker is None:
            if not any(h.dropped is not None for h in self._held):
                log.error("journal: the in-memory buffer is full (%d rows): further rows are DROPPED and counted until "
                          "the journal writes again", self.buffer_rows)
            marker = _Held(held.item, dropped=Counter(), dropped_first=at)
            self._held.append(marker)
        assert marker.dropped is not None
        marker.dropped[kind] += 1
        marker.dropped_last = at
        self.dropped += 1

    def _fail(self, reason: str, *, full: bool) -> None:
        """The journal failed: degrade (and say so once), free the reserve when the disk is full."""
        if self._ok:
            self._ok = False
            self.reason = reason
            self.since = self.clock()
            self.faults += 1
            self._base_written, self._base_dropped = self.written_back, self.dropped
            log.error("journal DEGRADED: %s; lanes release nothing and hold rows in memory (up to %d) until it "
                      "writes again", reason, self.buffer_rows)
            self._hold(_Held((JournalKind.ALARM.value, {"code": AlarmCode.JOURNAL_FAILED.value, "text": reason},
                              None, self.clock())))
            self._tell(False, reason)
        elif reason != self.reason and self.reason is not None and not self.reason.startswith("disk full"):
            self.reason = reason  # a more telling reason (the disk filled while a lock was being waited out)
        if full and self._reserve_present():
            self._free_reserve()
            self._fault_unrecorded = True
        self._wake.set()

    def _tell(self, ok: bool, reason: str | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(ok, reason)
            except Exception:
                log.exception("journal guard listener failed")

    # ------------------------------------------------------------ getting back

    async def _retry_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.retry_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._ok and self.reserve_path is not None and not self._reserve_present():
                with contextlib.suppress(OSError):  # the reserve freed by an earlier fault: back when space is
                    self._make_reserve()
            if not self._ok:
                try:
                    await self._recover()
                except Exception as exc:
                    if not storage_failure(exc):
                        log.exception("journal guard: writing the held rows failed")
                    self._fail(describe(exc), full=disk_full(exc))

    async def _recover(self) -> None:
        """One try: settle writes in flight, record the fault in the freed reserve, then write everything back."""
        if any(h.inflight is not None and not h.inflight.done() for h in self._held):
            return  # a write past its bound may still commit; its row must not be written twice
        self._settle_inflight()
        if self._fault_unrecorded:
            # The space of the reserve: write what is held (the JOURNAL_FAILED row with it) once.
            self._fault_unrecorded = False
            await self._flush()
            log.warning("journal: the fault is recorded (in the space of the freed reserve); rows are held in memory "
                        "until space comes back")
        if self.reserve_path is not None and not self._reserve_present():
            try:
                self._make_reserve()
            except OSError:
                return  # no space yet
        duration = self.clock() - (self.since or self.clock())
        written = self.written_back - self._base_written + self._held_rows
        dropped = self.dropped - self._base_dropped
        text = (f"the journal writes again after {duration:.0f} s: {written} rows held in memory written back, "
                f"{dropped} dropped")
        # The recovery row goes in after what is held; the lanes hear of it only once everything is on disk.
        self._held.append(_Held((JournalKind.ALARM.value, {"code": AlarmCode.JOURNAL_RECOVERED.value, "text": text,
                                                           "written_back": written, "dropped": dropped,
                                                           "down_s": round(duration, 1)}, None, self.clock()),
                                 recovery=True))
        self._held_rows += 1
        try:
            await self._flush()  # returns once nothing is held, rows held meanwhile included
        except BaseException:
            self._held_rows -= sum(1 for held in self._held if held.recovery)
            self._held = [held for held in self._held if not held.recovery]
            raise
        self._ok, self.reason, self.since = True, None, None
        log.warning("journal RECOVERED: %s", text)
        self._tell(True, None)

    def _settle_inflight(self) -> None:
        """Drop held rows whose slow write did commit after all (they are on disk already, in their place)."""
        kept: list[_Held] = []
        for held in self._held:
            future = held.inflight
            if future is not None and not future.cancelled() and future.exception() is None:
                self._held_rows -= 1 if held.dropped is None else 0
                continue
            held.inflight = None
            kept.append(held)
        self._held = kept

    async def _flush(self) -> None:
        """Write the held rows in order, FLUSH_CHUNK at a time; raises (rows kept) when the journal fails again."""
        while self._held:
            chunk = self._held[:FLUSH_CHUNK]
            items = [self._item(held) for held in chunk]
            future = asyncio.ensure_future(self.journal.append_many_async(items))
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                for held in chunk:  # stopped meanwhile: the chunk may still commit; settled before a rewrite
                    held.inflight = future
                raise
            del self._held[:len(chunk)]
            rows = sum(1 for held in chunk if held.dropped is None)
            self._held_rows -= rows
            self.written_back += rows

    @staticmethod
    def _item(held: _Held) -> AppendItem:
        if held.dropped is None:
            return held.item
        held.sealed = True
        total = sum(held.dropped.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in held.dropped.most_common())
        text = f"{total} journal rows dropped: the in-memory buffer was full ({kinds})"
        return (JournalKind.ALARM.value, {"code": AlarmCode.JOURNAL_ROWS_DROPPED.value, "text": text,
                                          "dropped": total, "kinds": dict(held.dropped),
                                          "first_at": held.dropped_first, "last_at": held.dropped_last},
                None, held.dropped_last)

    # ------------------------------------------------------------ the reserve

    def _mib(self) -> str:
        return f"{self.reserve_bytes / (1 << 20):g} MiB"

    def _reserve_present(self) -> bool:
        return self.reserve_path is not None and self.reserve_path.exists()

    def _make_reserve(self) -> None:
        """Allocate the reserve (real blocks, not sparse); OSError, nothing left behind, when there is no room."""
        assert self.reserve_path is not None
        partial = self.reserve_path.with_name(self.reserve_path.name + ".part")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, self.reserve_path)
        except OSError:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        log.info("journal space reserve of %s at %s", self._mib(), self.reserve_path)

    def _free_reserve(self) -> None:
        assert self.reserve_path is not None
        with contextlib.suppress(FileNotFoundError):
            self.reserve_path.unlink()
        log.warning("journal: disk full: freed the %s space reserve %s so the journal can record the fault",
                    self._mib(), self.reserve_path)
