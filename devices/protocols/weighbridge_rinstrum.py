"""Decodes and encodes the Rinstrum indicators' automatic weight output (sans-I/O).

About ten times a second the indicator sends (format 2 / "format A")::

    STX SIGN WEIGHT(7) S1 S2 S3 S4 UNITS(3) ETX            (17 bytes)

SIGN is a space (``+`` accepted) or ``-``. WEIGHT is seven characters with the decimal point and
leading spaces; with no decimal point the first is a space. S1 is ``G`` gross, ``N`` net, ``U``
underload, ``O`` overload or ``E`` error; S2 ``M`` motion or space; S3 ``Z`` centre of zero or
space; S4 ``-`` single range or the range digit. UNITS is ``" kg"``, ``" lb"``, ``"  t"`` or
``"  g"`` (either alignment accepted); some models blank it (three spaces) while the weight moves,
which decodes with `raw_unit` ``""`` and no `weight_kg`.

The format has no checksum: every fixed field is checked instead. In the U, O and E states the
weight field may hold something other than a number (dashes), which decodes as no value. Feed
the decoder any chunking of the serial stream; it never raises.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from devices.protocols.framing import STX, FixedStxDecoder
from devices.protocols.stable_weight import WeightFrame, as_decimal, to_kg
from devices.readings import FrameRejected

FORMAT = "rinstrum"
ETX = 0x03
FRAME_LENGTH = 17

_NUMBER = re.compile(r" *([0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_SIGNS = {" ": 1, "+": 1, "-": -1}
_STATES = frozenset("GNUOE")
_RANGES = frozenset("-123456789")
_UNITS = frozenset({"kg", "lb", "t", "g"})


def decode_rinstrum_frame(frame: bytes) -> WeightFrame | FrameRejected:
    """Decode one whole frame, STX through ETX. Never raises."""
    raw = bytes(frame)
    if len(raw) != FRAME_LENGTH:
        return FrameRejected(f"wrong frame length: expected {FRAME_LENGTH}, got {len(raw)}", raw[:64])
    if raw[0] != STX or raw[-1] != ETX:
        return FrameRejected("frame does not run from STX to ETX", raw)
    if not _PRINTABLE.fullmatch(raw, 1, FRAME_LENGTH - 1):
        return FrameRejected("control or non-ASCII byte inside the frame", raw)
    text = raw[1:-1].decode("ascii")
    sign, weight_text, state, motion, zero, range_char, units = (text[0], text[1:8], text[8], text[9], text[10],
                                                                 text[11], text[12:15])
    if sign not in _SIGNS:
        return FrameRejected(f"bad sign {sign!r}: expected space, '+' or '-'", raw)
    if state not in _STATES:
        return FrameRejected(f"bad status S1 {state!r}: expected G, N, U, O or E", raw)
    if motion not in " M":
        return FrameRejected(f"bad status S2 {motion!r}: expected 'M' or space", raw)
    if zero not in " Z":
        return FrameRejected(f"bad status S3 {zero!r}: expected 'Z' or space", raw)
    if range_char not in _RANGES:
        return FrameRejected(f"bad status S4 {range_char!r}: expected '-' or a range digit", raw)
    unit = units.strip()
    if unit and (unit not in _UNITS or units not in (unit.rjust(3), unit.ljust(3))):
        return FrameRejected(f"unsupported units {units!r}", raw)
    value: Decimal | None = None
    match = _NUMBER.fullmatch(weight_text)
    if match is not None:
        value = Decimal(match.group(1)) * _SIGNS[sign]
    elif state in "GN":
        return FrameRejected(f"weight field {weight_text!r} is not a number", raw)
    in_range = state in "GN"
    return WeightFrame(
        format=FORMAT,
        weight_kg=to_kg(value, unit) if in_range else None,
        raw_value=value,
        raw_unit=unit,
        net=state == "N",
        motion=motion == "M",
        overload=state == "O",
        underload=state == "U",
        error=state == "E",
    )


class RinstrumDecoder(FixedStxDecoder[WeightFrame]):
    """Incremental decoder of the Rinstrum automatic output (STX ... ETX, 17 bytes).

    Frames may be split across feeds at any byte. Bytes outside a frame are skipped until the next
    STX (CR and LF are idle); each run of garbage is reported once. A frame that ends in ETX where it
    should but has a bad field is reported with the reason.
    """

    frame_length = FRAME_LENGTH
    end_at = FRAME_LENGTH - 1
    end_byte = ETX

    def decode(self, frame: bytes, now: datetime | None) -> WeightFrame | FrameRejected:
        return decode_rinstrum_frame(frame)


def encode_rinstrum_frame(weight: Decimal | int | str | None, *, unit: str = "kg", state: str = "G",
                          motion: bool = False, centre_of_zero: bool = False, range_char: str = "-") -> bytes:
    """Return one automatic-output frame (simulators); raises ValueError for what it cannot carry.

    `weight` None sends dashes, which only the U, O and E states may carry. `unit` ``""`` blanks the
    units field. The weight must fit seven characters (six digits without a decimal point).
    """
    if state not in _STATES:
        raise ValueError(f"state must be one of G, N, U, O, E, got {state!r}")
    if range_char not in _RANGES or len(range_char) != 1:
        raise ValueError(f"range_char must be '-' or a digit 1..9, got {range_char!r}")
    if unit and unit not in _UNITS:
        raise ValueError(f"unit must be kg, lb, t, g or empty, got {unit!r}")
    if weight is None:
        if state in "GN":
            raise ValueError("a gross or net frame needs a weight")
        sign, field = " ", "-------"
    else:
        value = as_decimal(weight)
        sign = "-" if value.is_signed() else " "
        field = format(abs(value), "f")
        width = 7 if "." in field else 6  # without a decimal point the first character is a space
        if len(field) > width:
            raise ValueError(f"weight {weight} does not fit the seven-character field")
        field = field.rjust(7)
    text = (sign + field + state + ("M" if motion else " ") + ("Z" if centre_of_zero else " ") + range_char
            + unit.rjust(3))
    return bytes([STX]) + text.encode("ascii") + bytes([ETX])
