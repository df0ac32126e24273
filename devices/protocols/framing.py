"""The one stream-decoder loop of the serial codecs: append, find a frame, decode it, slice, resync.

In the spirit of pymodbus's `FramerBase.processIncomingPacket`: the loop that buffers whatever the
serial port gave, in any chunking, finds frame boundaries, hands each candidate to the format's
decoder, and drops bytes to resynchronise after garbage lives here once. A wire format writes only
how its frames are found (a start byte and line ends, or a header that gives the length) and how
one frame is decoded. Sans-I/O: bytes in, frames and `FrameRejected` out, no clock.

Every decoder has the one signature ``feed(data, now=None)``. `now` is the receive time (a
timezone-aware datetime) for formats that carry no time of their own (the binary e-seal frame);
the others ignore it, so a driver can always pass it and never needs to know which format it holds.
`feed` never raises for anything on the wire: a decoder bug is reported as a `FrameRejected` and
the decoder starts afresh; only a format that needs `now` raises when it is missing or naive.

Two frame finders:

- `LineDecoder`: a frame starts at a start byte (``$``, LF) and ends at CR or LF. The start byte
  inside a line tears it (the format says whether that is reported) and starts the next frame. A
  line longer than `max_line` is dropped and reported; at most `max_line` + 1 bytes are buffered.
- `StxDecoder`: a frame starts at STX; its header gives its length and an end marker sits at a
  known place. A candidate with an impossible header or without its end marker is garbage, one
  that fails the format's checks is reported; either way the scan resumes one byte after its STX,
  so an STX inside data never hides the next real frame. A candidate still waiting for bytes gives
  way to a complete, intact frame that starts inside it. At most one frame's worth is buffered.
  `FixedStxDecoder` is the fixed-length case (Toledo, Rinstrum).

Bytes outside a frame are skipped up to the next start; each run of them is reported once (line
ends between frames are idle where the format says so) and counted in `resyncs`. `frames_ok` and
`frames_bad` count what `feed` returned.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Generic, TypeVar

from devices.readings import FrameRejected

STX = 0x02
RAW_SAMPLE = 64
"""Bytes of the offending input kept in a `FrameRejected`."""

FrameT = TypeVar("FrameT")


class StreamDecoder(Generic[FrameT]):
    """Base of the incremental decoders: `feed` owns counting, error containment and garbage reports.

    Subclasses implement `_scan(data, now, out)` (the frame finder) and `_restart()` (forget a
    half frame), and set `unit` and `resync_at` (the words of a garbage report) and `idle` (bytes
    that are not garbage between frames).
    """

    unit = "frame"
    resync_at = "STX"
    idle = b"\r\n"

    def __init__(self) -> None:
        self.frames_ok = 0
        self.frames_bad = 0
        self.resyncs = 0  # runs of garbage skipped to find the next frame
        self._garbage_reported = False  # the current run of garbage was already reported

    def receive_time(self, now: datetime | None) -> datetime | None:
        """The time to stamp frames with; formats that need one override this to check it."""
        return now

    def feed(self, data: bytes, now: datetime | None = None) -> list[FrameT | FrameRejected]:
        """Consume `data` (any bytes-like) received at `now` and return what completed, in order."""
        when = self.receive_time(now)
        out: list[FrameT | FrameRejected] = []
        try:
            self._scan(bytes(data), when, out)
        except Exception as exc:  # a decoder bug must not kill the driver's read loop
            self._restart()
            self._garbage_reported = True
            out.append(FrameRejected(f"internal decoder error: {type(exc).__name__}: {exc}"))
        for item in out:
            if isinstance(item, FrameRejected):
                self.frames_bad += 1
            else:
                self.frames_ok += 1
        return out

    def _scan(self, data: bytes, now: datetime | None, out: list) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restart(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _skip(self, skipped: bytes, out: list) -> None:
        """Account for bytes outside any frame: report a run of garbage once; idle bytes are not garbage."""
        if self._garbage_reported or not skipped:
            return
        garbage = skipped.strip(self.idle)
        if garbage:
            self._garbage_reported = True
            self.resyncs += 1
            out.append(FrameRejected(f"garbage outside a {self.unit} (resync at {self.resync_at}): {garbage[:24]!r}",
                                     garbage[:RAW_SAMPLE]))


class LineDecoder(StreamDecoder[FrameT]):
    """Frames are lines: `start_byte` opens one, CR or LF ends it (see the module docstring).

    Subclasses set `start_byte`, `resync_at`, `line_end_name` and implement `decode(line, now)`
    (the bytes between the start byte and the line end; None for an idle line) and `torn(line)`
    (what to report when the start byte came before the line end; None: nothing).
    """

    start_byte: int
    line_end_name = "a line end"

    def __init__(self, max_line: int):
        super().__init__()
        self.max_line = max_line
        self._line = bytearray()  # bytes after the start byte of the frame being collected
        self._in_frame = False
        self._stops = re.compile(b"[\r\n" + re.escape(bytes([self.start_byte])) + b"]")

    def decode(self, line: bytes, now: datetime | None) -> FrameT | FrameRejected | None:  # pragma: no cover
        raise NotImplementedError

    def torn(self, line: bytes) -> FrameRejected | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restart(self) -> None:
        self._line.clear()
        self._in_frame = False

    def _scan(self, data: bytes, now: datetime | None, out: list) -> None:
        position, end = 0, len(data)
        while position < end:
            if not self._in_frame:
                start = data.find(self.start_byte, position)
                self._skip(data[position:] if start < 0 else data[position:start], out)
                if start < 0:
                    return
                self._in_frame = True
                self._garbage_reported = False
                self._line.clear()
                position = start + 1
                continue
            match = self._stops.search(data, position)
            stop = end if match is None else match.start()
            room = self.max_line + 1 - len(self._line)  # one byte over the bound is enough to know
            self._line += data[position:min(stop, position + room)]
            if len(self._line) > self.max_line:
                out.append(FrameRejected(f"line too long: more than {self.max_line} bytes without "
                                         f"{self.line_end_name}", bytes(self._line[:RAW_SAMPLE])))
                self._restart()
                self._garbage_reported = True  # the rest of the long line is part of this report
                position = stop
                continue
            if match is None:
                return
            line = bytes(self._line)
            self._line.clear()
            position = stop + 1
            if data[stop] == self.start_byte:  # a new frame began before this one ended: stay in frame
                torn = self.torn(line)
                if torn is not None:
                    out.append(torn)
                continue
            self._in_frame = False
            decoded = self.decode(line, now)
            if decoded is not None:
                out.append(decoded)


class StxDecoder(StreamDecoder[FrameT]):
    """Frames start with STX and their header gives their length (see the module docstring).

    Subclasses set `header_size` (bytes from STX on that `length_at` reads) and implement
    `length_at(buffer, start)` (None for an impossible header), `marker_in_place(buffer, start,
    total)` (the end marker is where the length puts it) and `decode(frame, now)`; `intact(frame)`
    (a CRC that holds) decides whether a frame inside a waiting candidate may overtake it.
    """

    header_size = 1

    def __init__(self) -> None:
        super().__init__()
        self._pending = b""  # the start of a frame still waiting for its remaining bytes

    def length_at(self, buffer: bytes, start: int) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def marker_in_place(self, buffer: bytes, start: int, total: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, frame: bytes, now: datetime | None) -> FrameT | FrameRejected:  # pragma: no cover
        raise NotImplementedError

    def intact(self, frame: bytes) -> bool:
        """Whether a complete candidate is a real frame (formats with a CRC check it); True by default."""
        return True

    def _restart(self) -> None:
        self._pending = b""

    def _scan(self, data: bytes, now: datetime | None, out: list) -> None:
        buffer = self._pending + data if self._pending else data
        position, end = 0, len(buffer)
        while position < end:
            start = buffer.find(STX, position)
            if start < 0:
                self._skip(buffer[position:], out)
                position = end
                break
            if start > position:
                self._skip(buffer[position:start], out)
            if end - start < self.header_size:
                position = start
                break
            total = self.length_at(buffer, start)
            if total is None:
                self._skip(buffer[start:start + 1], out)  # an STX with an impossible header: garbage
                position = start + 1
                continue
            if end - start < total:
                if self._frame_starts_inside(buffer, start):
                    self._skip(buffer[start:start + 1], out)
                    position = start + 1
                    continue
                position = start  # wait for the rest of this frame
                break
            if not self.marker_in_place(buffer, start, total):
                self._skip(buffer[start:start + 1], out)  # a stray STX: garbage
                position = start + 1
                continue
            decoded = self.decode(buffer[start:start + total], now)
            out.append(decoded)
            if isinstance(decoded, FrameRejected):
                self._garbage_reported = True  # the rest of this damaged frame is covered by its report
                position = start + 1
            else:
                self._garbage_reported = False
                position = start + total
        self._pending = buffer[position:]

    def _frame_starts_inside(self, buffer: bytes, start: int) -> bool:
        """Whether a complete, intact frame starts inside the waiting candidate at `start`."""
        following = buffer.find(STX, start + 1)
        while following >= 0:
            if len(buffer) - following >= self.header_size:
                total = self.length_at(buffer, following)
                if (total is not None and len(buffer) - following >= total
                        and self.marker_in_place(buffer, following, total)
                        and self.intact(buffer[following:following + total])):
                    return True
            following = buffer.find(STX, following + 1)
        return False


class FixedStxDecoder(StxDecoder[FrameT]):
    """STX frames of one length with a fixed end byte at `end_at` (subclasses set all three)."""

    frame_length: int
    end_at: int
    end_byte: int

    def length_at(self, buffer: bytes, start: int) -> int | None:
        return self.frame_length

    def marker_in_place(self, buffer: bytes, start: int, total: int) -> bool:
        return buffer[start + self.end_at] == self.end_byte
