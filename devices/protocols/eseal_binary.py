"""Decodes and encodes the binary framed e-seal reader format (Hi-G-Tek / T-Seal style), sans-I/O.

One frame::

    STX(0x02) LEN READER_ID(4) MSG_TYPE SEAL_ID(4) FLAGS TAMPER_COUNT SEAL_COUNT BATTERY
              [CONTAINER(11 ASCII)] CRC16(2) ETX(0x03)

- LEN is the number of bytes from READER_ID through the end of the data, before the CRC: 13
  without the container, 24 with it. Any other LEN is not a frame. A frame is LEN + 5 bytes.
- CRC16 is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
  XOR; ``"123456789"`` gives 0x29B1) over LEN and the data, i.e. every byte between STX and the
  CRC. It is sent big-endian (high byte first). A frame whose CRC does not hold is never a reading.
- READER_ID and SEAL_ID are 32-bit big-endian numbers, decoded as 8 upper-case hex digits.
- MSG_TYPE 0x01 (seal status) and 0x02 (seal event) carry a seal reading; other types with bit 7
  clear are refused as unknown. Bit 7 set marks an error report: it becomes a `SealErrorReport`
  with error code MSG_TYPE & 0x7F, never a reading (same layout; only reader and seal id are read).
- FLAGS: bit 7 sealed, bit 1 tampered, bit 0 activated (other bits ignored). Status: TAMPERED when
  bit 1 is set; INTACT when sealed and activated; otherwise OPENED (an unsealed seal, or one whose
  electronics were never armed, vouches for nothing). TAMPER_COUNT and SEAL_COUNT are checked by
  the CRC but not carried into `SealFrame` (it has no field for them).
- BATTERY: percent 0..100, or 0xFF for unknown (None); 101..254 are refused.
- CONTAINER: 11 ASCII bytes, NUL or space padded; normalised like the ASCII format; blank is None.

The format carries no time, and the codec reads no clock: `feed(data, now)` takes the receive time
(a timezone-aware datetime) from the driver and stamps every frame that completes in that call
with it. That is the only thing `feed` raises for (a naive or missing `now` is a driver bug);
nothing on the wire makes it raise. Resync: bytes before an STX are garbage (each run reported
once); an STX whose LEN is impossible or whose ETX is not where LEN says is garbage; a frame with
its ETX in place whose CRC or fields fail is reported. Either way the scan restarts one byte after
that STX, so an 0x02 inside data never hides the next real frame. A candidate still waiting for
bytes gives way to a complete, CRC-valid frame that starts inside it (a stray STX before a short
frame must not hold that frame back until the next transmission).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from devices.protocols.eseal_ascii import SealFrame
from devices.protocols.framing import STX, StxDecoder
from devices.protocols.identifiers import check_device_text, normalise_container
from devices.readings import FrameRejected, SealStatus

ETX = 0x03
LEN_WITHOUT_CONTAINER = 13
LEN_WITH_CONTAINER = 24
FRAME_OVERHEAD = 5  # STX, LEN, CRC (2), ETX
MAX_FRAME = LEN_WITH_CONTAINER + FRAME_OVERHEAD
MSG_SEAL_STATUS = 0x01
MSG_SEAL_EVENT = 0x02
READING_TYPES = frozenset({MSG_SEAL_STATUS, MSG_SEAL_EVENT})
ERROR_BIT = 0x80
FLAG_SEALED, FLAG_TAMPERED, FLAG_ACTIVATED = 0x80, 0x02, 0x01
BATTERY_UNKNOWN = 0xFF
CONTAINER_BYTES = 11

_LENGTHS = frozenset({LEN_WITHOUT_CONTAINER, LEN_WITH_CONTAINER})
_FLAGS_BY_STATUS = {
    SealStatus.INTACT: FLAG_SEALED | FLAG_ACTIVATED,
    SealStatus.OPENED: FLAG_ACTIVATED,
    SealStatus.TAMPERED: FLAG_SEALED | FLAG_TAMPERED | FLAG_ACTIVATED,
}
_HEX = frozenset("0123456789abcdefABCDEF")
_RAW_SAMPLE = 64


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data` (poly 0x1021, init 0xFFFF): ``crc16_ccitt(b"123456789") == 0x29B1``."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


@dataclass(frozen=True)
class SealErrorReport:
    """A reader's error report (MSG_TYPE bit 7 set): the reader says it could not read a seal properly."""

    reader_id: str
    seal_id: str
    error_code: int
    timestamp: datetime


def _utc(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime (the receive time), got {now!r}")
    return now.astimezone(UTC)


def decode_binary_frame(frame: bytes, now: datetime) -> SealFrame | SealErrorReport | FrameRejected:
    """Decode one whole frame, STX through ETX, received at `now`. Never raises for any bytes."""
    when = _utc(now)
    raw = bytes(frame)
    if len(raw) < 2 or raw[0] != STX:
        return FrameRejected("frame does not start with STX", raw[:_RAW_SAMPLE])
    length = raw[1]
    if length not in _LENGTHS:
        return FrameRejected(f"bad LEN {length}: expected {LEN_WITHOUT_CONTAINER} or {LEN_WITH_CONTAINER}",
                             raw[:_RAW_SAMPLE])
    if len(raw) != length + FRAME_OVERHEAD:
        return FrameRejected(f"frame of {len(raw)} bytes, LEN {length} says {length + FRAME_OVERHEAD}",
                             raw[:_RAW_SAMPLE])
    if raw[-1] != ETX:
        return FrameRejected(f"no ETX where LEN {length} puts it", raw)
    given = int.from_bytes(raw[-3:-1], "big")
    computed = crc16_ccitt(raw[1:-3])
    if given != computed:
        return FrameRejected(f"CRC mismatch: got {given:04X}, computed {computed:04X}", raw)
    data = raw[2:-3]
    reader_id = f"{int.from_bytes(data[0:4], 'big'):08X}"
    msg_type = data[4]
    seal_id = f"{int.from_bytes(data[5:9], 'big'):08X}"
    if msg_type & ERROR_BIT:
        return SealErrorReport(reader_id, seal_id, msg_type & 0x7F, when)
    if msg_type not in READING_TYPES:
        return FrameRejected(f"unknown message type 0x{msg_type:02X}", raw)
    flags, battery_byte = data[9], data[12]
    if flags & FLAG_TAMPERED:
        status = SealStatus.TAMPERED
    elif flags & FLAG_SEALED and flags & FLAG_ACTIVATED:
        status = SealStatus.INTACT
    else:
        status = SealStatus.OPENED
    if battery_byte == BATTERY_UNKNOWN:
        battery = None
    elif battery_byte <= 100:
        battery = battery_byte
    else:
        return FrameRejected(f"bad battery {battery_byte}: expected 0..100 or 0xFF", raw)
    container = None
    if length == LEN_WITH_CONTAINER:
        field = data[13:24].strip(b"\x00 ")
        problem = check_device_text("container field", field.decode("latin-1"))
        if problem is not None:
            return FrameRejected(f"{problem}: not printable ASCII", raw)
        if any(not 0x20 <= byte <= 0x7E for byte in field):
            return FrameRejected(f"container field {data[13:24]!r} is not printable ASCII", raw)
        container = normalise_container(field.decode("ascii")) or None
    return SealFrame(reader_id, seal_id, status, battery, container, when)


class EsealBinaryDecoder(StxDecoder[SealFrame | SealErrorReport]):
    """Incremental decoder: `feed(bytes, now)` returns the frames, error reports and rejections completed.

    Frames may be split across feeds at any byte and several may arrive in one feed. At most one
    frame's worth of bytes (29) is held between feeds. `frames_ok` counts seal frames and error
    reports (frames whose CRC holds), `frames_bad` the rejections. The buffering and resync loop is
    `devices.protocols.framing.StxDecoder`; this class only reads LEN, finds ETX and checks the CRC.
    """

    header_size = 2  # STX, LEN
    idle = b""  # a binary line has no idle bytes: anything between frames is garbage

    def receive_time(self, now: datetime | None) -> datetime:
        """The format carries no time: `now` (timezone-aware) is required and frames are stamped in UTC."""
        if now is None:
            raise TypeError("EsealBinaryDecoder.feed() needs `now`, the receive time: the format carries none")
        return _utc(now)

    def length_at(self, buffer: bytes, start: int) -> int | None:
        length = buffer[start + 1]
        return length + FRAME_OVERHEAD if length in _LENGTHS else None

    def marker_in_place(self, buffer: bytes, start: int, total: int) -> bool:
        return buffer[start + total - 1] == ETX

    def intact(self, frame: bytes) -> bool:
        return crc16_ccitt(frame[1:-3]) == int.from_bytes(frame[-3:-1], "big")

    def decode(self, frame: bytes, now: datetime | None) -> SealFrame | SealErrorReport | FrameRejected:
        assert now is not None  # receive_time made sure
        return decode_binary_frame(frame, now)


def encode_binary_record(reader_id: int, msg_type: int, seal_id: int, flags: int = 0, tamper_count: int = 0,
                         seal_count: int = 0, battery: int = BATTERY_UNKNOWN, container: bytes | None = None,
                         *, crc: int | None = None) -> bytes:
    """Return a frame from raw field values (simulators, tests); `crc` overrides the computed CRC.

    `container`, when given, must be exactly 11 bytes. Raises ValueError for values out of range.
    """
    for name, value, top in (("reader_id", reader_id, 0xFFFFFFFF), ("seal_id", seal_id, 0xFFFFFFFF),
                             ("msg_type", msg_type, 0xFF), ("flags", flags, 0xFF),
                             ("tamper_count", tamper_count, 0xFF), ("seal_count", seal_count, 0xFF),
                             ("battery", battery, 0xFF)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise ValueError(f"{name} must be an integer 0..{top}, got {value!r}")
    if container is not None and len(container) != CONTAINER_BYTES:
        raise ValueError(f"container must be {CONTAINER_BYTES} bytes, got {len(container)}")
    data = (reader_id.to_bytes(4, "big") + bytes([msg_type]) + seal_id.to_bytes(4, "big")
            + bytes([flags, tamper_count, seal_count, battery]) + (container or b""))
    body = bytes([len(data)]) + data
    check = crc16_ccitt(body) if crc is None else crc
    if not 0 <= check <= 0xFFFF:
        raise ValueError(f"crc must be 0..0xFFFF, got {check}")
    return bytes([STX]) + body + check.to_bytes(2, "big") + bytes([ETX])


def _hex_id(name: str, value: str) -> int:
    if len(value) != 8 or not _HEX.issuperset(value):
        raise ValueError(f"{name} must be 8 hex digits, got {value!r}")
    return int(value, 16)


def encode_binary_seal_frame(frame: SealFrame, *, msg_type: int = MSG_SEAL_STATUS, tamper_count: int | None = None,
                             seal_count: int = 1) -> bytes:
    """Return the binary frame for `frame` (simulators); raises ValueError for what it cannot carry.

    reader_id and seal_id must be 8 hex digits. The status sets FLAGS (intact: sealed+activated,
    opened: activated, tampered: sealed+tampered+activated); tamper_count defaults to 1 for a
    tampered seal, else 0. battery None is sent as 0xFF. The container (if any) is written
    normalised and space padded to 11 bytes. The frame's timestamp is not sent: the format has none.
    """
    if msg_type not in READING_TYPES:
        raise ValueError(f"msg_type must be one of {sorted(READING_TYPES)}, got {msg_type!r}")
    status = SealStatus(frame.status)
    if frame.battery_pct is not None and not 0 <= frame.battery_pct <= 100:
        raise ValueError(f"battery_pct must be 0..100, got {frame.battery_pct}")
    container = None
    if frame.container is not None:
        text = normalise_container(frame.container)
        if not text or len(text) > CONTAINER_BYTES or not all(0x21 <= ord(char) <= 0x7E for char in text):
            raise ValueError(f"container {frame.container!r} does not fit 11 printable ASCII bytes")
        container = text.ljust(CONTAINER_BYTES).encode("ascii")
    return encode_binary_record(
        _hex_id("reader_id", frame.reader_id), msg_type, _hex_id("seal_id", frame.seal_id),
        _FLAGS_BY_STATUS[status], (1 if status is SealStatus.TAMPERED else 0) if tamper_count is None else tamper_count,
        seal_count, BATTERY_UNKNOWN if frame.battery_pct is None else int(frame.battery_pct), container)


def encode_binary_error_report(reader_id: str, error_code: int, seal_id: str = "00000000") -> bytes:
    """Return an error report frame (MSG_TYPE = 0x80 | error_code, no container) for the simulator."""
    if isinstance(error_code, bool) or not isinstance(error_code, int) or not 0 <= error_code <= 0x7F:
        raise ValueError(f"error_code must be 0..127, got {error_code!r}")
    return encode_binary_record(_hex_id("reader_id", reader_id), ERROR_BIT | error_code, _hex_id("seal_id", seal_id))
