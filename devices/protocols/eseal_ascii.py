"""Decodes and encodes the e-seal reader's ASCII line format (sans-I/O: bytes in, frames out).

One frame per line, NMEA style::

    $ESEAL,<reader>,<seal_id>,<S|O|T>,<battery %>,<container>,<yyyymmddhhmmss>*<XOR hex>\\r\\n

The checksum is the XOR of every byte between ``$`` and ``*``, written as two hex digits (either
case accepted, upper case emitted). ``S`` is intact (sealed), ``O`` opened, ``T`` tampered.
Battery and container may be empty. The timestamp is UTC.

The decoder owns no I/O and no clock: feed it whatever bytes the serial port gave, in any
chunking, and it returns the frames that completed plus a `FrameRejected` for everything it
refused. It never raises for any input. The driver and the e-seal reader simulator share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from devices.protocols.framing import LineDecoder
from devices.protocols.identifiers import check_device_text, normalise_container, normalise_seal
from devices.readings import FrameRejected, SealRead, SealStatus

SENTENCE = "ESEAL"
FIELD_COUNT = 7  # ESEAL + six data fields
MAX_LINE = 512
"""Longest line (between `$` and the line end) the decoder buffers before dropping it."""

_STATUS_BY_LETTER: dict[str, SealStatus] = {
    "S": SealStatus.INTACT,
    "O": SealStatus.OPENED,
    "T": SealStatus.TAMPERED,
}
_LETTER_BY_STATUS: dict[SealStatus, str] = {status: letter for letter, status in _STATUS_BY_LETTER.items()}

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_TIMESTAMP = re.compile(r"\d{14}")
_BATTERY = re.compile(r"\d{1,3}")
_FORBIDDEN_IN_FIELD = re.compile(r"[^\x20-\x7e]|[,*$]")


@dataclass(frozen=True)
class SealFrame:
    """One decoded reader line: what the reader says about one seal, at one time (UTC)."""

    reader_id: str
    seal_id: str
    status: SealStatus
    battery_pct: int | None
    container: str | None
    timestamp: datetime


def xor_checksum(body: bytes) -> int:
    """Return the XOR of all bytes of `body` (the text between `$` and `*`)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


class EsealAsciiDecoder(LineDecoder[SealFrame]):
    """Incremental decoder: `feed(bytes)` returns the frames (and rejections) completed so far.

    Frames may be split across feeds at any byte and several may arrive in one feed. Bytes outside
    a frame are skipped until the next `$` (line ends between frames are idle, not garbage); each
    run of garbage is reported once. A new `$` inside a line tears the line (reported) and starts
    a new frame. Lines end at LF, CR or CRLF. A line longer than `max_line` is dropped and
    reported. `frames_ok` and `frames_bad` count what `feed` returned. The buffering and resync
    loop is `devices.protocols.framing.LineDecoder`; `now`, if given, is not used (lines carry
    their own time).
    """

    start_byte = 0x24  # `$`
    resync_at = "'$'"

    def __init__(self, max_line: int = MAX_LINE):
        super().__init__(max_line)

    def decode(self, line: bytes, now: datetime | None) -> SealFrame | FrameRejected:
        return decode_line(line)

    def torn(self, line: bytes) -> FrameRejected:
        return FrameRejected("torn frame: '$' before the end of the line", b"$" + line)


def decode_line(line: bytes) -> SealFrame | FrameRejected:
    """Decode one line given without its leading `$` and line end. Never raises."""
    raw = b"$" + line
    star = line.find(b"*")
    if star < 0:
        return FrameRejected("no '*' checksum marker", raw)
    body, given = line[:star], line[star + 1:]
    if len(given) != 2 or not _HEX_DIGITS.issuperset(given):
        return FrameRejected(f"bad checksum field {given[:8]!r}: expected two hex digits", raw)
    computed = xor_checksum(body)
    if int(given, 16) != computed:
        return FrameRejected(f"checksum mismatch: got {given.decode('ascii').upper()}, computed {computed:02X}", raw)
    bad = _NOT_PRINTABLE.search(body)
    if bad is not None:
        byte = body[bad.start()]
        kind = "non-ASCII" if byte > 0x7F else "control"
        return FrameRejected(f"{kind} byte 0x{byte:02X} at offset {bad.start() + 1}", raw)
    fields = body.decode("ascii").split(",")
    if fields[0] != SENTENCE:
        return FrameRejected(f"unknown sentence {fields[0][:16]!r}: expected {SENTENCE!r}", raw)
    if len(fields) != FIELD_COUNT:
        return FrameRejected(f"wrong field count: expected {FIELD_COUNT}, got {len(fields)}", raw)
    _, reader_id, seal_id, letter, battery_text, container_text, stamp = fields
    for name, value in (("reader id", reader_id), ("seal id", seal_id), ("container", container_text)):
        problem = check_device_text(name, value)  # the printable-ASCII check above already holds; one rule for all
        if problem is not None:
            return FrameRejected(problem, raw)
    if not reader_id:
        return FrameRejected("empty reader id", raw)
    if not seal_id:
        return FrameRejected("empty seal id", raw)
    status = _STATUS_BY_LETTER.get(letter)
    if status is None:
        return FrameRejected(f"bad status {letter[:8]!r}: expected S, O or T", raw)
    battery: int | None = None
    if battery_text:
        if not _BATTERY.fullmatch(battery_text) or int(battery_text) > 100:
            return FrameRejected(f"bad battery {battery_text[:8]!r}: expected 0..100 or empty", raw)
        battery = int(battery_text)
    container = normalise_container(container_text) or None
    timestamp = _parse_timestamp(stamp)
    if timestamp is None:
        return FrameRejected(f"bad timestamp {stamp[:20]!r}: expected yyyymmddhhmmss", raw)
    return SealFrame(reader_id, seal_id, status, battery, container, timestamp)


def _parse_timestamp(text: str) -> datetime | None:
    if not _TIMESTAMP.fullmatch(text):
        return None
    try:
        return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                        int(text[12:14]), tzinfo=UTC)
    except ValueError:
        return None


def encode_raw_line(body: str, checksum: str | None = None) -> bytes:
    """Return `$<body>*<checksum>\\r\\n`; the checksum is computed unless given (any text, even wrong).

    Simulators use this to send deliberately broken frames; `body` is sent as UTF-8 as it is.
    """
    data = body.encode("utf-8")
    mark = f"{xor_checksum(data):02X}" if checksum is None else checksum
    return b"$" + data + b"*" + mark.encode("utf-8") + b"\r\n"


def encode_seal_frame(frame: SealFrame) -> bytes:
    """Return the reader line for `frame`; raises ValueError for a frame the format cannot carry.

    The timestamp is converted to UTC and written to the second (sub-seconds are dropped).
    """
    if frame.timestamp.tzinfo is None or frame.timestamp.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    if frame.battery_pct is not None and not 0 <= frame.battery_pct <= 100:
        raise ValueError(f"battery_pct must be 0..100, got {frame.battery_pct}")
    for name, value in (("reader_id", frame.reader_id), ("seal_id", frame.seal_id),
                        ("container", frame.container or "")):
        if _FORBIDDEN_IN_FIELD.search(value):
            raise ValueError(f"{name} {value!r} holds a character the line format cannot carry")
    if not frame.reader_id or not frame.seal_id:
        raise ValueError("reader_id and seal_id must not be empty")
    when = frame.timestamp.astimezone(UTC)
    stamp = (f"{when.year:04d}{when.month:02d}{when.day:02d}"
             f"{when.hour:02d}{when.minute:02d}{when.second:02d}")
    battery = "" if frame.battery_pct is None else str(int(frame.battery_pct))
    body = ",".join((SENTENCE, frame.reader_id, frame.seal_id, _LETTER_BY_STATUS[SealStatus(frame.status)],
                     battery, frame.container or "", stamp))
    return encode_raw_line(body)


def seal_frame_to_read(frame: SealFrame, device_id: str, received_at: float) -> SealRead:
    """Turn a decoded frame into the driver's `SealRead` (observed_at is the frame's own UTC time).

    The seal id is folded to matching form (`normalise_seal`: upper case, no separators), so it
    compares case-insensitively with the declaration's.
    """
    return SealRead(
        device_id=device_id,
        seal_id=normalise_seal(frame.seal_id),
        status=frame.status,
        battery_pct=frame.battery_pct,
        container=frame.container,
        observed_at=frame.timestamp.timestamp(),
        received_at=received_at,
        reader_id=frame.reader_id,
    )
