"""Decodes and encodes the Toledo continuous output of weighbridge indicators (sans-I/O).

Mettler Toledo, Cardinal, Fairbanks, Kern and many clones send, several times a second::

    STX SWA SWB SWC W W W W W W T T T T T T CR [CHK]      (17 bytes, 18 with CHK)

W is the displayed weight and T the tare, six ASCII digits each, no sign, no decimal point (leading
zeros may be sent as spaces). CHK, when the indicator is set to send it, is the two's complement of
the low 7 bits of the sum of all preceding bytes, STX and CR included: the low 7 bits of the sum of
all 18 bytes are zero. Whether CHK is sent is a device-profile setting (`checksum=`); with it on, a
frame whose checksum does not hold is never a reading. CHK cannot see bit 7 of any byte, so the
decoder checks that itself: digits must be ASCII digits (an over-range display may blank them, but
only with printable ASCII).

Status words (bit 7 of each may carry parity and is ignored; CHK's bit 7 likewise):

- SWA bits 0-2: decimal code. The weight is the digits x100 (code 0, ``XXXX00``), x10 (1,
  ``XXXXX0``), x1 (2, ``XXXXXX``), /10 (3, ``XXXXX.X``), /100 (4) ... /100000 (7). The dummy zeros
  of codes 0 and 1 are not among the six digits sent. Bits 3-4: increment x1 (01), x2 (10), x5
  (11); 00 is invalid. Bit 5 is always 1, bit 6 always 0: both are checked, which is what keeps a
  checksum-less line from framing on noise.
- SWB bit 0 net, 1 negative, 2 out of range (over when positive, under when negative), 3 motion,
  4 kg (0 = lb), 6 not zeroed since power-up (reported as `zero_error`). Bit 5 is not checked:
  Mettler Toledo sends 1, Fairbanks 0.
- SWC bits 0-2 unit code: 0 lb/kg as SWB says, 1 grams, 2 tonnes; other codes (ounces, ...) are
  refused. Bit 4 "expanded display x10" (a calibration mode) is refused: its value is not a weight
  for trade. Bit 5 is always 1 (checked). Bits 3 (print request) and 6 (keyboard tare) are ignored.

Field variants, each accepted only when the device profile says so (the default stays strict):

- ``blank_tare``: the tare field sent as six spaces when there is no tare, as in METTLER TOLEDO's
  own JAGUAR continuous-output example; decoded as tare 0.
- ``clone_status_bits``: SWA's constant bits 5 and 6 as Liden and several Chinese indicators send
  them (bit 5 = 0 and bit 6 = 1, or both 1) as well as Toledo's (1, 0); 0 and 0 stays refused, so
  a status byte still has to look like one.
- ``short_frame``: Cardinal's "short" continuous format ``STX SWA SWB SWC W×6 CR [CHK]`` (11
  bytes, 12 with CHK): no tare field.

Feed the decoder whatever the serial port gave, in any chunking: `feed(bytes)` returns the frames
that completed and a `FrameRejected` for everything refused, and never raises.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from devices.protocols.framing import STX, FixedStxDecoder
from devices.protocols.stable_weight import WeightFrame, as_decimal, to_kg
from devices.readings import FrameRejected

FORMAT = "toledo"
CR = 0x0D
FRAME_LENGTH = 17
"""Bytes in a frame without the checksum byte (18 with it)."""
SHORT_FRAME_LENGTH = 11
"""Bytes in Cardinal's short frame (no tare) without the checksum byte."""

_DIGITS = re.compile(rb" *[0-9]+")  # leading zeros may be blanked to spaces
_BLANK_TARE = b"      "
_TOLEDO_SWA_CONSTANTS = frozenset({0x20})  # bit 5 set, bit 6 clear
_CLONE_SWA_CONSTANTS = frozenset({0x20, 0x40, 0x60})  # Liden / Chinese copies: b5=0 b6=1, or both set
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_INCREMENT_BY_CODE = {1: 1, 2: 2, 3: 5}
_CODE_BY_INCREMENT = {increment: code for code, increment in _INCREMENT_BY_CODE.items()}
_UNIT_CODES = {1: "g", 2: "t"}  # SWC bits 0-2; 0 means lb or kg as SWB bit 4 says
_SWC_CODE_BY_UNIT = {"kg": 0, "lb": 0, "g": 1, "t": 2}


def toledo_checksum(body: bytes) -> int:
    """Return CHK for `body` (STX through CR): the 7-bit two's complement of the sum of its bytes."""
    return -sum(body) & 0x7F


def decode_toledo_frame(frame: bytes, checksum: bool, *, blank_tare: bool = False, clone_status_bits: bool = False,
                        short_frame: bool = False) -> WeightFrame | FrameRejected:
    """Decode one whole frame (STX through CR, plus CHK when `checksum`). Never raises.

    The keyword options accept the vendors' variants described in the module docstring.
    """
    raw = bytes(frame)
    body_length = SHORT_FRAME_LENGTH if short_frame else FRAME_LENGTH
    expected = body_length + checksum
    if len(raw) != expected:
        return FrameRejected(f"wrong frame length: expected {expected}, got {len(raw)}", raw[:64])
    if raw[0] != STX or raw[body_length - 1] != CR:
        return FrameRejected("frame does not run from STX to CR", raw)
    if checksum:
        computed = toledo_checksum(raw[:body_length])
        if raw[body_length] & 0x7F != computed:
            return FrameRejected(f"checksum mismatch: got {raw[body_length] & 0x7F:02X}, computed {computed:02X}",
                                 raw)
    swa, swb, swc = raw[1] & 0x7F, raw[2] & 0x7F, raw[3] & 0x7F
    if swa & 0x60 not in (_CLONE_SWA_CONSTANTS if clone_status_bits else _TOLEDO_SWA_CONSTANTS):
        expected_bits = "bits 5 and 6 must not both be 0" if clone_status_bits else "bit 5 must be 1 and bit 6 0"
        return FrameRejected(f"bad status word A 0x{raw[1]:02X}: {expected_bits}", raw)
    if swc & 0x20 != 0x20:
        return FrameRejected(f"bad status word C 0x{raw[3]:02X}: bit 5 must be 1", raw)
    increment_code = (swa >> 3) & 0x03
    if increment_code not in _INCREMENT_BY_CODE:
        return FrameRejected(f"bad status word A 0x{raw[1]:02X}: increment code 00", raw)
    if swc & 0x10:
        return FrameRejected("expanded display (x10, calibration mode): not a weight for trade", raw)
    unit_code = swc & 0x07
    if unit_code == 0:
        unit = "kg" if swb & 0x10 else "lb"
    elif unit_code in _UNIT_CODES:
        unit = _UNIT_CODES[unit_code]
    else:
        return FrameRejected(f"unsupported unit code {unit_code} in status word C", raw)
    weight_field, tare_field = raw[4:10], (b"000000" if short_frame else raw[10:16])
    if blank_tare and tare_field == _BLANK_TARE:
        tare_field = b"000000"  # METTLER TOLEDO JAGUAR: no tare is six spaces
    out_of_range, negative = bool(swb & 0x04), bool(swb & 0x02)
    weight_ok = _DIGITS.fullmatch(weight_field) is not None
    if not _PRINTABLE.fullmatch(weight_field):  # CHK covers only the low 7 bits: bit 7 must be checked here
        return FrameRejected(f"weight field {weight_field!r} holds a control or non-ASCII byte", raw)
    if not weight_ok and not out_of_range:
        return FrameRejected(f"weight field {weight_field!r} is not six digits", raw)
    if not _DIGITS.fullmatch(tare_field):
        return FrameRejected(f"tare field {tare_field!r} is not six digits", raw)
    value: Decimal | None = None
    if weight_ok:
        value = Decimal(int(weight_field))
        decimal_code = swa & 0x07
        value = value * 10 ** (2 - decimal_code) if decimal_code < 2 else value.scaleb(2 - decimal_code)
        if negative:
            value = -value
    overload, underload = out_of_range and not negative, out_of_range and negative
    return WeightFrame(
        format=FORMAT,
        weight_kg=None if out_of_range else to_kg(value, unit),
        raw_value=value,
        raw_unit=unit,
        net=bool(swb & 0x01),
        motion=bool(swb & 0x08),
        overload=overload,
        underload=underload,
        zero_error=bool(swb & 0x40),
    )


class ToledoDecoder(FixedStxDecoder[WeightFrame]):
    """Incremental decoder of Toledo continuous output; `checksum` says whether frames end with CHK.

    Frames may be split across feeds at any byte. Bytes outside a frame are skipped until the next
    STX (CR and LF are idle); each run of garbage is reported once. A frame that ends in CR where
    it should but fails validation (checksum, status bits, digits) is reported with the reason.
    """

    end_byte = CR

    def __init__(self, checksum: bool, *, blank_tare: bool = False, clone_status_bits: bool = False,
                 short_frame: bool = False):
        super().__init__()
        self.checksum = bool(checksum)
        self.options = {"blank_tare": blank_tare, "clone_status_bits": clone_status_bits, "short_frame": short_frame}
        body_length = SHORT_FRAME_LENGTH if short_frame else FRAME_LENGTH
        self.end_at = body_length - 1
        self.frame_length = body_length + self.checksum

    def decode(self, frame: bytes, now: datetime | None) -> WeightFrame | FrameRejected:
        return decode_toledo_frame(frame, self.checksum, **self.options)


def _parity(byte: int) -> int:
    """`byte` with bit 7 set so that the byte has even parity."""
    return byte | (bin(byte).count("1") & 1) << 7


def _digits(value: Decimal, decimal_code: int, name: str) -> bytes:
    scaled = value.scaleb(decimal_code - 2)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{name} {value} has more decimals than decimal code {decimal_code} shows")
    number = int(scaled)
    if not 0 <= number <= 999_999:
        raise ValueError(f"{name} {value} does not fit six digits at decimal code {decimal_code}")
    return f"{number:06d}".encode("ascii")


def encode_toledo_frame(weight: Decimal | int | str, *, unit: str = "kg", decimal_code: int = 2,
                        increment: int = 1, tare: Decimal | int | str = 0, net: bool = False,
                        motion: bool = False, out_of_range: bool = False, not_zeroed: bool = False,
                        checksum: bool = True, parity: bool = False) -> bytes:
    """Return one frame as an indicator sends it (simulators); raises ValueError for what it cannot carry.

    `weight` and `tare` are in `unit` (kg, lb, g, t) and must fit six digits at `decimal_code`
    (e.g. 45680 at code 2, 4568.0 at code 3, 456800 at code 0 as digits 004568). A negative weight
    sets the sign bit. `parity` puts even parity in bit 7 of the status bytes and CHK.
    """
    value, tare_value = as_decimal(weight), as_decimal(tare)
    if not 0 <= decimal_code <= 7:
        raise ValueError(f"decimal_code must be 0..7, got {decimal_code}")
    if increment not in _CODE_BY_INCREMENT:
        raise ValueError(f"increment must be 1, 2 or 5, got {increment}")
    if unit not in _SWC_CODE_BY_UNIT:
        raise ValueError(f"unit must be kg, lb, g or t, got {unit!r}")
    if tare_value < 0:
        raise ValueError("tare cannot be negative")
    swa = 0x20 | _CODE_BY_INCREMENT[increment] << 3 | decimal_code
    swb = (0x20 | net | value.is_signed() << 1 | out_of_range << 2 | motion << 3 | (unit != "lb") << 4
           | not_zeroed << 6)
    swc = 0x20 | _SWC_CODE_BY_UNIT[unit]
    status = [swa, swb, swc]
    if parity:
        status = [_parity(byte) for byte in status]
    body = (bytes([STX, *status]) + _digits(abs(value), decimal_code, "weight")
            + _digits(tare_value, decimal_code, "tare") + bytes([CR]))
    if not checksum:
        return body
    chk = toledo_checksum(body)
    return body + bytes([_parity(chk) if parity else chk])
